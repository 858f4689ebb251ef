"""Typed, frozen configs of the training and tuning areas: configs/train.yaml, configs/tune.yaml.

They reuse the features area's loader, so a bad file fails the same way (file and field named).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from crm_ltv.features.config import FrozenConfig, Seed


def _mlflow_name(kind: Literal["experiment", "model", "alias"]) -> AfterValidator:
    """A name MLflow would refuse fails as the config is read, naming file and key: MLflow
    refused it after a whole training, some versions already registered."""

    def check(value: str) -> str:
        from mlflow.exceptions import MlflowException
        from mlflow.utils import validation

        checks = {
            "experiment": (validation._validate_experiment_name,),
            "model": (validation._validate_model_name,),
            "alias": (
                validation._validate_model_alias_name,
                validation._validate_model_alias_name_reserved,
            ),
        }
        try:
            for mlflow_check in checks[kind]:
                mlflow_check(value)
        except MlflowException as exc:
            raise ValueError(exc.message) from None
        return value

    return AfterValidator(check)


ExperimentName = Annotated[str, _mlflow_name("experiment")]
ModelName = Annotated[str, _mlflow_name("model")]
AliasName = Annotated[str, _mlflow_name("alias")]


class SnapshotConfig(FrozenConfig):
    every_days: int = Field(30, ge=1)
    horizon_days: int = Field(90, ge=1, le=3650)  # ten years; more overflowed date arithmetic
    min_history_days: int = Field(180, ge=0)


class SplitConfig(FrozenConfig):
    max_train_cutoffs: int | None = Field(None, ge=1)


class BoosterConfig(FrozenConfig):
    """One LightGBM model: rounds, early stopping, params and monotone constraints."""

    n_estimators: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    monotone: dict[str, Literal[-1, 1]] = Field(default_factory=dict)
    # A training row weighs half as much for every this many days its cutoff lies before the
    # newest training cutoff: a shop's customers change, and older windows say less about the
    # next one. None: equal weights.
    cutoff_half_life_days: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _no_reserved_params(self) -> BoosterConfig:
        check_lightgbm_params(self.params, "params")
        return self


def check_lightgbm_params(params: Mapping[str, Any], where: str) -> None:
    """Names and values of LightGBM params, when a config is read (training, uplift); none of
    those the project sets itself (the rounds too: n_estimators, or early stopping's)."""
    if not params:  # none given (the defaults, built on import): nothing to ask LightGBM
        return
    _check_lightgbm_names(params, where)
    _check_lightgbm_values(params, where)


# Each with every alias LightGBM gives it. Early stopping is the project's callback (patience
# `early_stopping_rounds`, first metric only, no minimum gain): in params, LightGBM added a
# second one (and a refit, with no validation set, failed); its other two settings went unread.
RESERVED_PARAMS = (
    "objective", "seed", "num_threads", "monotone_constraints", "verbosity", "num_iterations",
    "early_stopping_round", "first_metric_only", "early_stopping_min_delta",
)  # fmt: skip


def _check_lightgbm_names(names: Iterable[str], where: str) -> None:
    """Names the project sets itself (in any alias) are refused; and, as LightGBM ignores a
    misspelt parameter name (silently, at the project's verbosity), names it does not know,
    with the closest it does."""
    import difflib

    import lightgbm as lgb

    names = list(names)
    reserved = lgb.basic._ConfigAliases.get(*RESERVED_PARAMS)
    clash = sorted(reserved.intersection(names))
    if clash:
        raise ValueError(f"{where}: {clash} are set by the project, not in {where}")
    aliases = lgb.basic._ConfigAliases._get_all_param_aliases()  # pinned LightGBM's own table
    known = {a for names_ in aliases.values() for a in names_}
    unknown = [n for n in names if n not in known]
    if unknown:
        said = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            # the name the alias stands for: num_leafs read 'num_leaf', an alias of num_leaves
            meant = [main for main, names_ in aliases.items() if close and close[0] in names_]
            said.append(f"{where}.{name}" + (f" (did you mean {meant[0]!r}?)" if meant else ""))
        raise ValueError(f"not LightGBM parameters: {', '.join(said)}")


# Checked where they apply, not on a two-row booster: other machines (network), the GPU this
# machine may lack (device), the real feature count (per-feature lists), files to read.
UNCHECKED_PARAMS = (
    "num_machines", "local_listen_port", "time_out", "machine_list_filename", "machines",
    "device_type", "gpu_platform_id", "gpu_device_id", "gpu_use_dp", "num_gpu",
    "feature_contri", "cegb_penalty_feature_lazy", "cegb_penalty_feature_coupled",
    "max_bin_by_feature", "forcedsplits_filename", "forcedbins_filename",
)  # fmt: skip


def _check_lightgbm_values(params: Mapping[str, Any], where: str) -> None:
    """Values LightGBM refuses (a fraction over 1, one leaf, a negative rate), found when the
    config is read rather than when training starts: LightGBM checks them on a two-row booster
    (a millisecond)."""
    import lightgbm as lgb
    import numpy as np

    unchecked = lgb.basic._ConfigAliases.get(*UNCHECKED_PARAMS)
    checked = {k: v for k, v in params.items() if k not in unchecked}
    data = lgb.Dataset(np.array([[0.0], [1.0]]), np.array([0.0, 1.0]), params={"verbosity": -1})
    try:
        with _c_stderr_silenced():  # LightGBM prints its [Fatal] line there, past verbosity
            lgb.Booster({**checked, "objective": "binary", "verbosity": -1}, data)
    except lgb.basic.LightGBMError as exc:
        reason = str(exc).split(" at ")[0].strip()  # without LightGBM's source file and line
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise ValueError(f"LightGBM refuses {where} ({shown}): {reason}") from None


@contextlib.contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class ChurnConfig(BoosterConfig):
    calibration: Literal["sigmoid", "isotonic"] = "sigmoid"


class LtvConfig(BoosterConfig):
    objective: Literal["tweedie", "hurdle"] = "tweedie"
    tweedie_variance_power: float = Field(1.5, gt=1.0, lt=2.0)


class BaselineConfig(FrozenConfig):
    bgnbd_time_unit_days: float = Field(7.0, gt=0)
    bgnbd_as_features: bool = True  # BG/NBD's P(alive) etc. as LightGBM inputs
    # With bgnbd_as_features: both boosters start from BG/NBD's prediction (churn: its log-odds,
    # LTV: its log value) and learn corrections to it.
    bgnbd_as_offset: bool = False


class LevelConfig(FrozenConfig):
    """Each fit's level (LTV scale, churn intercept) set to what the history expects of the
    horizon it scores (datasets.LevelTarget): the newest labelled window x the season, or its
    level per customer when that predicted the earlier labelled windows better."""

    seasonal: bool = True
    # Share of the last year-over-year growth carried into the horizon (a damped trend):
    # 0 = none, 1 = all of it; one window's growth is a noisy estimate.
    growth: float = Field(0.5, ge=0.0, le=1.0)
    # Models whose training rows boost from their own label window's level (with
    # bgnbd_as_offset): they learn who is above or below it, not each window's season.
    per_window: tuple[Literal["churn", "ltv"], ...] = ("churn",)


class Threshold(FrozenConfig):
    min: float | None = None
    max: float | None = None
    # A max on a metric that noise alone pushes up (expected_calibration_error): passed up to
    # what 95% of perfect models read on the test snapshot, never past twice the max
    within_chance: bool = False


# Direction of every metric a gate can use (training.metrics computes them); the others a run
# logs (e.g. lift_top10pct_ceiling, the best lift possible) say something but rank nothing.
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "brier": False,
    "expected_calibration_error": False,
    "lift_top10pct": True,
    "sample_truth_dropout_auc": True,
    "normalized_gini": True,
    "spearman": True,
    "rmse": False,
    "mae": False,
    "top10_value_share": True,
    "qini_coefficient": True,  # uplift models (crm-ltv uplift): random ranking = 0
    "auuc_margin": True,
}


# Metrics that noise alone pushes over a max bound, and the metric of the test snapshot that
# says how far (training.metrics.CHANCE_METRIC; the config reads no metrics module).
BY_CHANCE = {"expected_calibration_error": "calibration_error_by_chance"}


class GateConfig(FrozenConfig):
    compare: str
    baseline: Literal["bgnbd", "rfm"] | None = "bgnbd"  # must beat it on `compare` too
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    # A new version replaces the champion only when ahead by more than this on `compare` (one
    # snapshot's noise: a retrain moved the sample's AUC by 0.00002); 0 = strictly ahead.
    min_gain_over_champion: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _known_metrics(self) -> GateConfig:
        for where, name in [
            ("compare", self.compare),
            *(("thresholds", n) for n in self.thresholds),
        ]:
            if name not in HIGHER_IS_BETTER:
                raise ValueError(
                    f"{where}: unknown metric {name!r}; a gate can use {sorted(HIGHER_IS_BETTER)}"
                )
        for name, bound in self.thresholds.items():
            if bound.within_chance and (name not in BY_CHANCE or bound.max is None):
                raise ValueError(
                    f"thresholds: {name}: within_chance needs a max on {', '.join(BY_CHANCE)}"
                )
        return self


class PromotionConfig(FrozenConfig):
    churn: GateConfig = GateConfig(compare="roc_auc")
    ltv: GateConfig = GateConfig(compare="normalized_gini")


class RegistryConfig(FrozenConfig):
    experiment: ExperimentName = "crm-ltv"
    churn_model: ModelName = "churn"
    ltv_model: ModelName = "ltv"
    alias: AliasName = "champion"

    @model_validator(mode="after")
    def _two_models(self) -> RegistryConfig:
        """One name for both would let the LTV gate move the alias onto a version whose churn
        model had just failed its own gate."""
        if self.churn_model == self.ltv_model:
            raise ValueError(f"churn_model and ltv_model are both {self.churn_model!r}")
        return self


class TrainConfig(FrozenConfig):
    area: ClassVar[str] = "train"  # configs/train.yaml
    # what no trial's score depends on: a tuning's digest leaves them out (config_digest)
    not_in_digest: ClassVar[tuple[str, ...]] = ("refit", "promotion", "registry")

    seed: Seed = 42
    num_threads: int = Field(2, ge=1)
    refit: bool = True  # register models refit on every labelled cutoff (README: Training)
    level: LevelConfig = LevelConfig()
    snapshots: SnapshotConfig = SnapshotConfig()
    split: SplitConfig = SplitConfig()
    churn: ChurnConfig = ChurnConfig()
    ltv: LtvConfig = LtvConfig()
    baselines: BaselineConfig = BaselineConfig()
    promotion: PromotionConfig = PromotionConfig()
    registry: RegistryConfig = RegistryConfig()

    def booster(self, kind: str) -> ChurnConfig | LtvConfig:
        """The settings of the churn or LTV booster: one place that maps a model's kind to
        them, for the one-process and the Dask fits alike."""
        return self.churn if kind == "churn" else self.ltv

    def model_settings(self, kind: str) -> dict[str, Any]:
        """The values the churn or LTV model's fit reads, for its tuning study's digest: a
        change of the other model's section (or of its place in `level.per_window`) left a
        new study repeating the old one's trials exactly. Not `not_in_digest` either, nor the
        level's seasonal and growth: they set the level after a fit, which no trial does."""
        other = "ltv" if kind == "churn" else "churn"
        values = self.model_dump(mode="json", exclude={*self.not_in_digest, other})
        values["level"] = {"per_window": kind in self.level.per_window}
        return values


class ParamRange(FrozenConfig):
    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError("needs low < high (and low > 0 on a log scale)")
        if self.integer and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError("integer: needs whole numbers as low and high")
        if self.integer and self.log and self.low < 1:
            raise ValueError("integer on a log scale: needs low >= 1")
        return self


class TuneConfig(FrozenConfig):
    area: ClassVar[str] = "tune"  # configs/tune.yaml

    trials: int = Field(20, ge=1)
    timeout_minutes: float | None = Field(None, gt=0)
    pruning_warmup_rounds: int = Field(50, ge=0)
    report_every_rounds: int = Field(10, ge=1)
    study_prefix: str = "crm-ltv"
    search_space: dict[str, ParamRange] = Field(min_length=1)

    @model_validator(mode="after")
    def _lightgbm_names(self) -> TuneConfig:
        import lightgbm as lgb

        # LightGBM takes any text as a metric, and a number named none: early stopping then
        # had nothing to watch, and the trial failed in LightGBM with a traceback
        metric = sorted(lgb.basic._ConfigAliases.get("metric").intersection(self.search_space))
        if metric:
            raise ValueError(
                f"search_space: {metric} is the validation metric early stopping and the study "
                "watch, set in train.yaml params, not in search_space"
            )
        _check_lightgbm_names(self.search_space, "search_space")
        for name, space in self.search_space.items():  # both ends, each alone
            for end in ("low", "high"):
                value = getattr(space, end)
                value = int(value) if space.integer else value
                _check_lightgbm_values({name: value}, f"search_space.{name}.{end}")
        return self
