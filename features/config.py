"""Typed, frozen configs of the features area, read from configs/*.yaml.

Nothing here reads a file on import: callers ask for a config with `load_config`.
Each function downstream receives only the section it needs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from crm_ltv.features.actions import check_actions
from crm_ltv.features.paths import default_config_file

LIFECYCLE_STAGES = ("new", "developing", "loyal", "at-risk", "lapsed")
Stage = Literal["new", "developing", "loyal", "at-risk", "lapsed"]
Comparison = Literal["lt", "le", "gt", "ge", "eq"]


class ConfigError(ValueError):
    """A config file is missing or does not validate; the message names file and field."""


class FrozenConfig(BaseModel):
    """The base of every config class: frozen, no unknown key, no NaN, no true/false for a
    number (pydantic reads `horizon_days: yes` as a 1-day horizon) and nothing else for a
    true/false (it reads `refit: 1` or `refit: "no"` as one)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: object, info: ValidationInfo) -> object:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _bool_where_number(value, field.annotation):
            raise ValueError(f"{value!r}: true/false where a number belongs")
        if field is not None and _other_where_bool(value, field.annotation):
            raise ValueError(f"{value!r}: give true or false")
        return value


def _kinds(annotation: object) -> set[object]:
    """The types a field takes: `int | None` -> {int, NoneType}."""
    if get_origin(annotation) in (Union, types.UnionType):
        return set(get_args(annotation))
    return {annotation}


def _other_where_bool(value: object, annotation: object) -> bool:
    """Whether `value` is not a true/false (nor a null allowed) where `annotation` takes only
    those."""
    kinds = _kinds(annotation)
    return (
        bool in kinds
        and kinds <= {bool, type(None)}
        and value is not None
        and not isinstance(value, bool)
    )


def _bool_where_number(value: object, annotation: object) -> bool:
    """Whether `value` holds a true/false (itself, or in a list or mapping) where `annotation`
    takes a number and no bool: YAML's yes/on/true."""
    kinds: set[object] = set()
    for kind in _kinds(annotation):
        kind = get_args(kind)[0] if get_origin(kind) is Annotated else kind
        kinds |= _kinds(kind)
    if isinstance(value, bool):
        literals = [a for k in kinds if get_origin(k) is Literal for a in get_args(k)]
        takes_bool = bool in kinds or any(isinstance(a, bool) for a in literals)
        takes_number = kinds & {int, float} or any(type(a) in (int, float) for a in literals)
        return bool(takes_number) and not takes_bool
    for kind in kinds:
        origin, args = get_origin(kind), get_args(kind)
        if isinstance(value, list | tuple) and origin in (list, tuple, set, frozenset):
            return any(_bool_where_number(v, args[0]) for v in value)
        if isinstance(value, dict) and origin is dict and len(args) == 2:
            return any(_bool_where_number(v, args[1]) for v in value.values())
    return False


# A seed: numpy's generators take none below 0
Seed = Annotated[int, Field(ge=0)]


# --- data area: configs/data.yaml -------------------------------------------------------------


class SourceConfig(FrozenConfig):
    """Where one table comes from, how its columns map onto the data contract, and which of
    its lines are not sales at all (postage, fees, adjustments): left out by the value of a
    source column, counted per rule, never rejected."""

    # YAML reads a bare 85048 as a number; exclusion values are compared as text.
    model_config = ConfigDict(
        frozen=True, extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False
    )

    path: Path | None = None  # None: the built-in sample's file for this table
    # contract name -> source column name; null: not in this file (an optional column whose
    # name the file uses for something else: `channel: null`, `category: channel`)
    columns: dict[str, str | None] = Field(default_factory=dict)
    timestamp_format: str = "ISO8601"  # a strftime format, "ISO8601" or "mixed"
    sep: str = Field(",", min_length=1)
    encoding: str = "utf-8"  # of a CSV file: latin-1, cp1252, utf-16, ...
    decimal: Literal[".", ","] = "."  # of numbers in a CSV file: 12,50 with ","
    thousands: Literal[".", ",", " ", "'"] | None = None  # grouping to drop: 1.234,56 with "."
    # source column -> values (exact, after stripping blanks) whose lines are left out
    exclude: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # source column -> prefixes whose lines are left out
    exclude_prefix: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("timestamp_format")
    @classmethod
    def _known_directives(cls, value: str) -> str:
        """A format pandas cannot use fails here, naming it, not in the middle of a load."""
        import pandas as pd

        try:
            pd.to_datetime(pd.Series(["2024-01-31 10:00:00"]), format=value, errors="coerce")
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a usable format: {exc}") from None
        if value not in ("ISO8601", "mixed") and "%" not in value:  # e.g. 'dd/mm/yyyy'
            raise ValueError(
                f"{value!r} has no strftime directive, so it matches no timestamp: write the "
                "layout with % codes, e.g. '%d/%m/%Y' for 31/01/2024, '%d/%m/%Y %H:%M' with times"
            )
        return value

    @field_validator("columns", "exclude", "exclude_prefix")
    @classmethod
    def _trimmed_names(cls, value: dict) -> dict:
        """Header names are read trimmed: so are the names that refer to them."""
        if all(isinstance(v, str) for v in value.values()):
            return {k: v.strip() for k, v in value.items()}
        return {k.strip(): v for k, v in value.items()}

    @field_validator("sep")
    @classmethod
    def _one_character(cls, value: str) -> str:
        """A shell passes `--sep '\\t'` as backslash-t: a tab is meant. One character: the
        reader takes no more (pandas' message named neither the option nor the setting)."""
        value = "\t" if value == "\\t" else value
        if len(value) != 1:
            raise ValueError(f"{value!r} is not one character (e.g. ',', ';', '|' or '\\t')")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, latin-1, cp1252)") from None
        return value

    @model_validator(mode="after")
    def _distinct_marks(self) -> SourceConfig:
        if self.thousands == self.decimal:
            raise ValueError(f"thousands and decimal are both {self.decimal!r}")
        return self

    @field_validator("exclude_prefix")
    @classmethod
    def _no_empty_prefix(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if any(p == "" for prefixes in value.values() for p in prefixes):
            raise ValueError("an empty prefix would leave out every line")
        return value


class ValidationConfig(FrozenConfig):
    max_reject_share: float = Field(0.01, ge=0.0, le=1.0)
    drop_duplicates: bool = True
    # Transactions without a customer id (guest or unattributed sales): "keep_out" counts and
    # reports them apart, out of the customer frame and of the reject share; "reject" rejects
    # them row by row like any other problem.
    anonymous_lines: Literal["keep_out", "reject"] = "keep_out"


class DataConfig(FrozenConfig):
    area: ClassVar[str] = "data"  # configs/data.yaml

    transactions: SourceConfig = SourceConfig()
    customers: SourceConfig | None = SourceConfig()
    campaigns: SourceConfig | None = SourceConfig()
    validation: ValidationConfig = ValidationConfig()

    @model_validator(mode="after")
    def _contract_names(self) -> DataConfig:
        """A mapping names contract columns: a typo is said when the config is read, not once
        every file is being loaded (on Dask, after the cluster started)."""
        from crm_ltv.features.contract import CAMPAIGNS, CUSTOMERS, TRANSACTIONS

        for schema in (TRANSACTIONS, CUSTOMERS, CAMPAIGNS):
            source = getattr(self, schema.name)
            problem = schema.unknown_in_mapping(source.columns) if source else None
            if problem is not None:
                raise ValueError(problem)
        return self


# --- features area: configs/features.yaml -----------------------------------------------------


class LifecycleRule(FrozenConfig):
    stage: Stage
    when: dict[str, dict[Comparison, float]]


class LifecycleConfig(FrozenConfig):
    """Ordered rules: the first rule whose conditions all hold names the stage."""

    rules: tuple[LifecycleRule, ...]
    default: Stage = "developing"


class HistoricLtvConfig(FrozenConfig):
    """Classic LTV = AOV x purchases per year x expected lifespan, optionally discounted."""

    lifespan_years: float = Field(3.0, gt=0)
    annual_retention: float | None = Field(None, gt=0, le=1)
    discount_rate: float = Field(0.0, ge=0)
    min_tenure_days: int = Field(90, ge=1)


class FeatureConfig(FrozenConfig):
    area: ClassVar[str] = "features"  # configs/features.yaml

    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    trend_window_days: int = Field(90, ge=1)
    max_categories: int = Field(50, ge=2)
    lifecycle: LifecycleConfig
    historic_ltv: HistoricLtvConfig = HistoricLtvConfig()

    @field_validator("windows_days")
    @classmethod
    def _positive_windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(w <= 0 for w in value) or len(set(value)) != len(value):
            raise ValueError("windows_days must be distinct positive numbers of days")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _rules_read_features(self) -> FeatureConfig:
        """A rule naming no numeric feature (a typo, a segment) is refused as the config is read:
        found only when the stages were computed, it stopped `features` and `train` after
        loading every line, and failed each of the service's calls after it said it was ready."""
        from crm_ltv.features.registry import check_feature_names, feature_registry  # reads us

        known = [s.name for s in feature_registry(self) if s.kind == "numeric"]  # compared
        for number, rule in enumerate(self.lifecycle.rules):
            check_feature_names(rule.when, known, f"lifecycle.rules.{number}.when")
        return self


# --- sample data: configs/sample.yaml ---------------------------------------------------------


class AcquisitionChannelConfig(FrozenConfig):
    share: float = Field(gt=0)
    cost: float = Field(ge=0)
    rate_multiplier: float = Field(1.0, gt=0)
    lifetime_multiplier: float = Field(1.0, gt=0)


class CampaignConfig(FrozenConfig):
    first_send_after_days: int = Field(ge=0)
    every_days: int = Field(gt=0)
    share_contacted: float = Field(gt=0, le=1)
    treatment_share: float = Field(0.5, gt=0, lt=1)
    response_window_days: int = Field(30, gt=0)
    # action (a name of the action catalogue, features.actions) -> customer type (new, regular,
    # loyal, lapsing) -> added probability of a purchase
    effects: dict[str, dict[Literal["new", "regular", "loyal", "lapsing"], float]]

    @model_validator(mode="after")
    def _every_type_has_an_effect(self) -> CampaignConfig:
        check_actions(self.effects, "effects")
        for action, by_type in self.effects.items():
            missing = {"new", "regular", "loyal", "lapsing"} - set(by_type)
            if missing:
                raise ValueError(f"effects.{action} lacks customer types {sorted(missing)}")
            if any(not 0 <= p <= 1 for p in by_type.values()):
                raise ValueError(f"effects.{action} must be probabilities in [0, 1]")
        return self


class SampleConfig(FrozenConfig):
    area: ClassVar[str] = "sample"  # configs/sample.yaml

    seed: Seed = 42
    n_customers: int = Field(50_000, ge=10)
    start_date: dt.date = dt.date(2023, 1, 1)
    years: float = Field(3.0, gt=0)
    acquisition_growth: float = Field(1.0, ge=0)  # acquisitions at the end vs the start, minus 1
    purchases_per_year: float = Field(gt=0)  # mean repeat-purchase rate while alive
    rate_shape: float = Field(gt=0)  # gamma shape of purchase rates: lower = more heterogeneous
    lifetime_years: float = Field(gt=0)  # mean time until a customer stops buying
    lifetime_shape: float = Field(gt=0)
    order_value: float = Field(gt=0)  # mean order value across customers
    order_value_shape: float = Field(gt=0)  # gamma shape of one customer's order values
    spend_heterogeneity: float = Field(gt=1)  # gamma-gamma q: lower = more spread of mean spend
    lines_per_order: float = Field(ge=1)
    refund_share: float = Field(ge=0, lt=1)
    favourite_category_share: float = Field(ge=0, le=1)
    categories: tuple[str, ...] = Field(min_length=1)
    sales_channels: dict[str, float] = Field(min_length=1)  # channel -> share of customers
    acquisition: dict[str, AcquisitionChannelConfig] = Field(min_length=1)
    campaigns: CampaignConfig

    @field_validator("categories")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({c for c in value if value.count(c) > 1})
        if repeated:
            raise ValueError(f"{repeated} given more than once")
        return value

    @field_validator("sales_channels")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if any(share < 0 for share in value.values()) or sum(value.values()) <= 0:
            raise ValueError("shares must be at least 0, and one above 0")
        return value

    @model_validator(mode="after")
    def _within_contract_years(self) -> SampleConfig:
        """The loader rejects timestamps outside the contract's years: a sample there would
        be generated, then rejected line by line."""
        from crm_ltv.features.contract import YEARS  # pandas: not on import

        end = self.start_date.year + self.years
        if self.start_date.year not in YEARS or end >= YEARS.stop:
            raise ValueError(
                f"start_date {self.start_date} and years {self.years} reach {end:.0f}: the "
                f"data contract takes the years {YEARS.start}..{YEARS.stop - 1}"
            )
        return self


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def config_digest(config: BaseModel) -> str:
    """A short fingerprint of a config's values: a model bundle records its features config's,
    so scoring with another one (other windows, rules or categories) can be warned about."""
    untuned = set(getattr(config, "not_in_digest", ()))
    return hashlib.sha256(config.model_dump_json(exclude=untuned).encode()).hexdigest()[:16]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping: PyYAML keeps the last one, so a
    second `snapshots:` block would silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`, merged by PyYAML
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line
            key = key if isinstance(key, str | int | float | bool) else str(key)
            if key in lines:
                where = f"lines {lines[key] + 1} and {line + 1}"
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice ({where})", key_node.start_mark
                )
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> object:
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{path}: a link to {os.readlink(path)}, which does not exist")
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open(encoding="utf-8") as text:  # the error's marks name the file
            return yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The config class a field holds (`X` or `X | None`), else None: a mapping of free keys
    (LightGBM params, actions, thresholds) or a list is a value, replaced as a whole."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        return next((a for a in _kinds(annotation) if _section_model(a)), None)
    return None


def merged_over(model: type[BaseModel], default: object, own: object) -> object:
    """`own` read over `default` section by section: a setting `own` leaves out keeps its
    default. Without this a home's file with one setting dropped every other shipped one for
    the code's fallbacks (the promotion thresholds, LightGBM params, monotone constraints)."""
    if not isinstance(default, dict) or not isinstance(own, dict):
        return own
    merged = dict(default)
    for key, value in own.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        section = _section_model(field.annotation) if field is not None else None
        if section is not None and isinstance(merged.get(key), dict):
            merged[key] = merged_over(section, merged[key], value)
        else:
            merged[key] = value
    return merged


def config_area(config: BaseModel) -> str:
    """The configs/<area>.yaml a config is read from (its class's name for a section)."""
    return getattr(config, "area", type(config).__name__)


def config_digests(*configs: BaseModel) -> dict[str, str]:
    """`config_digest` per area (train, features, data): what `crm-ltv tune` tuned with, so
    that training with other settings is warned about."""
    return {config_area(c): config_digest(c) for c in configs}


def load_config(model: type[ConfigT], path: Path) -> ConfigT:
    """Read a YAML file into a typed config; any problem becomes one ConfigError line. A file
    other than the packaged default of the model's area is read over that default."""
    area = getattr(model, "area", None)
    default = default_config_file(area) if area is not None else None
    if default is not None and path.resolve() != default.resolve():
        twin = path.with_suffix(".yml" if path.suffix == ".yaml" else ".yaml")
        if path.parent.name == "configs" and twin.exists():  # a home's: which one is read?
            raise ConfigError(f"{path} and {twin.name} are both there: keep one")
        return _validate(
            model, merged_over(model, _read_yaml(default), _read_yaml(path)), str(path)
        )
    return _validate(model, _read_yaml(path), str(path))


def override(config: ConfigT, where: str, **changes: object) -> ConfigT:
    """A copy of a config with some fields changed (None = unchanged), validated again."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return _validate(type(config), {**config.model_dump(), **changes}, where)


def _problem(error: Any) -> str:
    """One validation error: the field's dotted path (none for the config as a whole) and why."""
    field = ".".join(str(p) for p in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def _validate(model: type[ConfigT], raw: object, where: str) -> ConfigT:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None
