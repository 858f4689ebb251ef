"""Typed, frozen configs of the serving area: configs/serving.yaml and configs/nba.yaml."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from crm_ltv.features.actions import NO_ACTION, check_actions
from crm_ltv.features.config import (
    LIFECYCLE_STAGES,
    ConfigError,
    FeatureConfig,
    FrozenConfig,
    load_config,
)
from crm_ltv.features.paths import Paths, default_config_file, write_refused
from crm_ltv.features.rfm import RFM_SEGMENTS
from crm_ltv.training.attributions import Method

SERVICE_NAME = "crm-ltv"
# The config areas a service reads where it runs (a Bento carries the models, not these)
SERVICE_AREAS = ("nba", "serving", "features")
BENTOML_OVERRIDES_ENV = "BENTOML_CONFIG_OVERRIDES"
TOKEN_ENV = "CRM_LTV_API_TOKEN"


def api_token() -> str:
    """The bearer token API calls need ('' for none: the variable unset). Its surrounding
    whitespace is not part of it: a token read from a secret file often ends in a newline."""
    return os.environ.get(TOKEN_ENV, "").strip()


def blank_token() -> str | None:
    """Why not to serve when the variable is set but blank (an empty secret): refused, not
    taken for no auth, so that an API meant to be closed is not opened by it."""
    if TOKEN_ENV in os.environ and not api_token():
        return f"{TOKEN_ENV} is set but blank: set the token, or unset it"
    return None


class HoldoutConfig(FrozenConfig):
    """The randomized control group and exploration (serving.holdout; README: "Holdouts").

    A customer is held out (gets no_action whatever the policy chose) when a hash of their id
    and the period of as_of falls under `share`: stable within a period, fresh in the next.
    Of the others, an `exploration` share gets a uniformly random eligible action, so that the
    policy's rivals can be evaluated off-policy; every decision logs its true propensity."""

    share: float = Field(0.1, ge=0, lt=1)
    # ISO week or calendar month of as_of. Month by default: a held-out customer stays held out
    # for most of a 30-day response window (with week, later weeks may contact them inside it).
    period: Literal["week", "month"] = "month"
    exploration: float = Field(0.05, ge=0, lt=1)
    salt: str = Field("crm-ltv", min_length=1)  # change it to draw a new control group


class ServingConfig(FrozenConfig):
    area: ClassVar[str] = "serving"  # configs/serving.yaml

    max_batch_customers: int = Field(1000, ge=1)
    max_transactions_per_customer: int = Field(10_000, ge=1)
    top_reasons: int = Field(3, ge=0)  # reason codes per model in each answer
    reason_method: Method = "path"  # decision-path attributions, or "shap" (training.attributions)
    workers: int = Field(2, ge=1)  # BentoML worker processes, LightGBM on one thread in each
    decision_log: str = "logs/decisions.jsonl"  # relative to the project home, or absolute
    model_load_wait_seconds: float = Field(30.0, ge=0)  # a call during model loading waits
    access_log: bool = False  # BentoML's line per HTTP call; the decision log records each call
    trace_scoring: bool = False  # OpenTelemetry spans for /score (README: Operations)
    # /score calls in flight per worker before more get 503 + Retry-After (serving.admission)
    max_in_flight: int = Field(4, ge=1)
    retry_after_seconds: int = Field(1, ge=1)  # the Retry-After of those 503s
    max_request_mb: int = Field(32, ge=1)  # a larger body gets 413 before it is held in memory
    holdout: HoldoutConfig = Field(default_factory=HoldoutConfig)

    @field_validator("decision_log")
    @classmethod
    def _a_file(cls, value: str) -> str:
        """An empty path is the project home itself: every decision would fail to be written."""
        if not value.strip():
            raise ValueError("empty: give a file, such as logs/decisions.jsonl")
        if value.endswith(("/", "\\")):
            raise ValueError(f"{value!r} names a folder: give a file, such as logs/decisions.jsonl")
        return value


def bentoml_settings(config: ServingConfig) -> dict[str, Any]:
    """BentoML's service settings from ours: the service decorator's defaults, and the
    overrides `crm-ltv serve` passes (so the service module reads no config on import)."""
    return {
        "workers": config.workers,
        "traffic": {"timeout": 60},
        "logging": {"access": {"enabled": config.access_log}},
        # BentoML samples no traces by default, yet its OpenTelemetry middleware still makes
        # five spans per call: about a millisecond, a tenth of a single-customer answer.
        "tracing": {"excluded_urls": [] if config.trace_scoring else ["/score"]},
    }


def bentoml_overrides(config: ServingConfig, given: str | None = None) -> tuple[str, list[str]]:
    """The JSON of BENTOML_CONFIG_OVERRIDES that applies `config` to `bentoml serve`, merged
    into the user's own (`given`, the variable's value): theirs are kept, and where both set a
    key, theirs wins (set for this one start). Also the keys theirs overrode."""
    ours: dict[str, Any] = {"services": {SERVICE_NAME: bentoml_settings(config)}}
    if not given or not given.strip():
        return json.dumps(ours), []
    try:
        theirs = json.loads(given)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{BENTOML_OVERRIDES_ENV}: not JSON ({exc.msg} at {exc.pos})") from exc
    if not isinstance(theirs, dict):
        raise ConfigError(f"{BENTOML_OVERRIDES_ENV}: expected a JSON object, got {given[:60]!r}")
    overridden: list[str] = []
    merged = _merge(ours, theirs, "", overridden)
    _check_with_bentoml(merged)
    return json.dumps(merged), overridden


def _check_with_bentoml(merged: dict[str, Any]) -> None:
    """BentoML checks its settings only once `bentoml serve` has started, after `serve` said
    "serving on ...", with a dump of its schema (`Or(<function <lambda> at 0x...>, ...) did
    not validate 0` for `"workers": 0`: tester A): checked here first, one line naming the key."""
    try:
        import schema
        from bentoml.exceptions import BentoMLConfigException
    except ImportError:
        return
    try:
        # BentoML's own (private) reader: another release may move it, then it says itself.
        # Its import reads the variable as the user set it (tester Z: a bad top-level key)
        from bentoml._internal.configuration.containers import BentoMLConfiguration

        for version in (1, 2):  # the server's settings (1), the services' (2), as 1.4 reads
            BentoMLConfiguration(override_config_json=merged, use_version=version)
    except ImportError:
        return
    except (BentoMLConfigException, schema.SchemaError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        keys = [m.group(1) for line in lines if (m := re.fullmatch(r"Key '(.+)' error:", line))]
        detail = next(
            (line for line in lines if "did not validate" in line or "should be" in line),
            lines[-1] if lines else "refused",
        )
        value = re.search(r"did not validate (.+)$", detail) or re.fullmatch(
            r"\S+\((.+)\) should evaluate to True", detail
        )
        kind = re.fullmatch(r"(.+) should be instance of '(\w+)'", detail)
        detail = detail.split(" in {", 1)[0]  # "Wrong key 'x' in {...the whole config...}"
        said = (
            f"{value.group(1)} is not a value it takes"
            if value
            else f"{kind.group(1)} is not of type {kind.group(2)}"
            if kind
            else detail
        )
        where = ".".join(keys) or "its settings"
        raise ConfigError(f"{BENTOML_OVERRIDES_ENV}: BentoML refuses {where}: {said}") from None


def _merge(
    ours: dict[str, Any], theirs: dict[str, Any], prefix: str, overridden: list[str]
) -> dict[str, Any]:
    out = dict(ours)
    for key, value in theirs.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{name}.", overridden)
        else:
            if key in out:
                overridden.append(name)
            out[key] = value
    return out


class Eligibility(FrozenConfig):
    """Who may get an action; a condition left out holds for everyone."""

    lifecycle_stages: tuple[str, ...] | None = None
    rfm_segments: tuple[str, ...] | None = None
    min_churn_probability: float | None = Field(None, ge=0, le=1)
    max_churn_probability: float | None = Field(None, ge=0, le=1)
    min_predicted_value: float | None = None
    min_value_if_purchase: float | None = None
    min_frequency: int | None = Field(None, ge=1)  # purchase days: 2 = a repeat buyer
    min_recency_days: int | None = Field(None, ge=0)  # days since the last purchase: went quiet

    @model_validator(mode="after")
    def _known_names(self) -> Eligibility:
        for field, known in (
            ("lifecycle_stages", LIFECYCLE_STAGES),
            ("rfm_segments", RFM_SEGMENTS),
        ):
            unknown = sorted(set(getattr(self, field) or ()) - set(known))
            if unknown:
                raise ValueError(f"{field}: unknown {unknown}; known: {list(known)}")
        return self

    @model_validator(mode="after")
    def _bounds_can_both_hold(self) -> Eligibility:
        """A min above its max makes the action eligible for no one: refused, not served."""
        for low in type(self).model_fields:
            high = f"max_{low.removeprefix('min_')}"
            if low.startswith("min_") and high in type(self).model_fields:
                least, most = getattr(self, low), getattr(self, high)
                if least is not None and most is not None and least > most:
                    raise ValueError(
                        f"{low} {least} > {high} {most}: no customer could be eligible"
                    )
        return self


class Effect(FrozenConfig):
    """Expected increase of the purchase probability in the horizon: a prior per RFM segment
    for now (an uplift model later)."""

    default: float = Field(ge=0, le=1)
    segments: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_segments(self) -> Effect:
        unknown = sorted(set(self.segments) - set(RFM_SEGMENTS))
        if unknown:
            raise ValueError(f"segments: unknown {unknown}; known: {list(RFM_SEGMENTS)}")
        if any(not 0 <= v <= 1 for v in self.segments.values()):
            raise ValueError("segments: effects are probabilities between 0 and 1")
        return self

    def of(self, segment: str | None) -> float:
        return self.segments.get(segment or "", self.default)


class Action(FrozenConfig):
    """How the policy prices and targets one action of the catalogue (features.actions, which
    says what the action is)."""

    cost: float = Field(ge=0)  # per contact
    eligible: Eligibility = Field(default_factory=Eligibility)
    effect: Effect
    recommend_favourite_category: bool = False
    # Read and ignored: the catalogue (features.actions) says what an action is. Kept so that an
    # nba.yaml written before the catalogue still loads.
    description: str | None = None


class ColdStart(FrozenConfig):
    """Customers without a purchase up to as_of: no model score, a configured action."""

    action: str = NO_ACTION
    reason: str = "no purchase history up to as_of"


class NbaConfig(FrozenConfig):
    area: ClassVar[str] = "nba"  # configs/nba.yaml

    contact_cap_days: int = Field(30, ge=0)  # an action is not repeated within this many days
    min_purchase_probability: float = Field(0.05, gt=0, le=1)  # floor of 1 - churn probability
    actions: dict[str, Action]
    cold_start: ColdStart = Field(default_factory=ColdStart)

    @model_validator(mode="after")
    def _cold_start_action_exists(self) -> NbaConfig:
        if NO_ACTION in self.actions:
            raise ValueError(f"actions: {NO_ACTION!r} is reserved for 'do nothing'")
        check_actions(self.actions, "actions")
        if self.cold_start.action not in (*self.actions, NO_ACTION):
            raise ValueError(
                f"cold_start.action: {self.cold_start.action!r} is not one of the actions "
                f"{sorted(self.actions)} or {NO_ACTION!r}"
            )
        return self


# Rules of the packaged nba.yaml that a home's copy written by an older `crm-ltv init` keeps
# (its actions replace the packaged ones whole): each with the day it changed and what it holds
# since. Served as written, without a word, while `uplift` warned of its file's stale list
# (tester K).
_SEGMENTS_BEFORE = ("Potential Loyalist", "Promising", "Need Attention", "About to Sleep", "New")
_REPEAT_BUYER = "min_frequency: 2 in any segment: the list left most developing customers out"
_OUTDATED_RULES: tuple[tuple[str, Eligibility, str, str], ...] = (
    (
        "welcome_offer",
        Eligibility(lifecycle_stages=("new",), min_churn_probability=0.5),
        "2026-12-05",
        "min_recency_days: 14, gone quiet rather than the day after a first order",
    ),
    (
        "recommendation",
        Eligibility(lifecycle_stages=("developing", "new"), rfm_segments=_SEGMENTS_BEFORE),
        "2026-12-05",
        _REPEAT_BUYER,
    ),
    (
        "recommendation",
        Eligibility(
            lifecycle_stages=("developing", "new"), rfm_segments=_SEGMENTS_BEFORE, min_frequency=2
        ),
        "2026-12-06",
        _REPEAT_BUYER,
    ),
)


def outdated_rules(config: NbaConfig, where: Path) -> str | None:
    """A warning naming the actions whose eligibility is, to the letter, one the packaged
    nba.yaml had before it changed, and what it holds now; None when there are none."""
    stale = [
        f"{name} (before {day}; now {change})"
        for name, rule, day, change in _OUTDATED_RULES
        if name in config.actions and config.actions[name].eligible == rule
    ]
    if not stale:
        return None
    return (
        f"warning: {where}: eligibility as an older `crm-ltv init` wrote it, a packaged default "
        f"since changed, for {'; '.join(stale)}: edit it, or compare with the file `crm-ltv "
        "init FOLDER` writes (README: Next-best-action)"
    )


@dataclass(frozen=True)
class ScoringConfigs:
    """What a worker reads besides serving.yaml when it loads its models: the feature config
    and the policy."""

    features: FeatureConfig
    nba: NbaConfig

    @classmethod
    def load(cls, paths: Paths) -> ScoringConfigs:
        return cls(
            load_config(FeatureConfig, paths.config_file("features")),
            load_config(NbaConfig, paths.config_file("nba")),
        )


def configs_said(paths: Paths) -> str:
    """The home and, per area the service reads, whether its file is the home's or the packaged
    default: a Bento served with an empty home answered with the packaged policy, its log
    saying only which models were ready."""
    own: list[str] = []
    packaged: list[str] = []
    for area in SERVICE_AREAS:
        file = paths.config_file(area)
        (packaged if file == default_config_file(area) else own).append(file.name)
    said = [f"{', '.join(own)} from {paths.configs_dir}"] if own else []
    said += [f"{', '.join(packaged)} packaged"] if packaged else []
    return f"home {paths.root}; configs: {'; '.join(said)}"


def check_service_configs(paths: Paths) -> ScoringConfigs:
    """Every config the service reads as it starts, and its decision log, checked by `crm-ltv
    serve` before it starts BentoML: a mistake is one ConfigError naming the file and field,
    not a server that says it serves and never gets ready (a worker only logs it)."""
    where = paths.config_file("serving")
    serving = load_config(ServingConfig, where)
    # a worker that cannot make the log's folder crashed as it started, again and again; one
    # that cannot open the log answered every call with a 500
    problem = write_refused(paths.root / serving.decision_log)
    if problem is not None:
        raise ConfigError(f"{where}: decision_log: {problem}")
    return ScoringConfigs.load(paths)
