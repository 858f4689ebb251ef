"""Request and response bodies of POST /score (pydantic: they are also the OpenAPI schema).

Every validation error names the customer: a problem inside a customer's object is reported as
`customer 'c7': transactions.2.amount: ...` at `customers.<index>` (ScoreRequest, the body).
"""

from __future__ import annotations

import json
import math
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    Strict,
    StrictFloat,
    ValidationError,
    WithJsonSchema,
    model_validator,
    with_config,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from typing_extensions import TypedDict  # pydantic refuses typing's before Python 3.12

from crm_ltv.features.actions import misspelt_action
from crm_ltv.features.contract import MAX_ABS_NUMBER, iso_dated, out_of_range_year
from crm_ltv.features.loading import id_of, label_of

MAX_PROBLEMS = 50  # listed in one 400 answer
# Characters of an id or a label in a request, and of the X-Request-ID header: each is echoed
# in the answer and written to the decision log (a 1 MB id once was, every time).
MAX_TEXT = 256
MAX_REQUEST_ID = 128
# A contact without as_of is refused only a day after the server's clock: naive times may be
# the shop's local time (up to 14 hours ahead of UTC), and clocks differ
CLOCK_SKEW = timedelta(days=1)
# Said with the times an error shows: a time given with a zone is compared (and shown) in UTC,
# so "23:30+02:00" came back as 21:30 without a word on why
IN_UTC = "times given with a zone are shown in UTC"


def naive_utc(moment: datetime) -> datetime:
    """Time-zone aware times in UTC without the zone; naive ones as given (as the loader does).
    Years outside the contract's are refused first: converting 0001-01-01 00:30+01:00 to UTC
    or taking a contact cap from a year-1 as_of would overflow."""
    problem = out_of_range_year(moment.year)
    if problem is not None:
        raise ValueError(problem)
    if moment.tzinfo is None:
        return moment
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    problem = out_of_range_year(utc.year)  # 2199-12-31T23:30-05:00 is 2200 in UTC
    if problem is not None:
        raise ValueError(f"{problem} (in UTC: {utc:%Y-%m-%dT%H:%M})")
    return utc


def catalogue_action(name: str) -> str:
    """A contact's action: a misspelt catalogue name would slip past the contact cap unnoticed.
    Other names (a shop's own actions, no_action) are taken and not capped."""
    meant = misspelt_action(name)
    if meant is not None:
        raise ValueError(f"{name!r} is not in the action catalogue; did you mean {meant!r}?")
    return name


# A JSON number above this may not be the integer the caller meant (a double's 53-bit mantissa)
MAX_ID_NUMBER = 2**53


def id_number_text(value: Any) -> Any:
    """A whole JSON number is its text: a backend with integer keys sends 13085, which the
    loader reads from a file as '13085' (13085.0 too). Texts pass on, and integers of any size
    (exact in JSON and Python); a boolean, a fraction or a float too large to be exact is
    refused, not turned into an id nobody has."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value  # text is read by the field's own validators; the rest is refused there
    if isinstance(value, int):
        return str(value)
    if not value.is_integer() or abs(value) > MAX_ID_NUMBER:
        raise ValueError(
            f"{value!r} is a fraction, or a number with a point or exponent over 2**53 (a "
            "double may not hold it exactly): send an id as text or an integer"
        )
    return str(int(value))


def customer_id_text(value: str) -> str:
    """The id as the loader reads it from a file (features.loading: stripped, '13085.0' is
    '13085'), so that ' a ' and 'a' are one customer and decisions join to the transactions
    `crm-ltv outcomes` loads; what it reads as no id (blank, 'NULL', 'N/A', ...) is refused."""
    text = id_of(value)
    if text is None:
        raise ValueError(f"{value!r} is blank or a marker of no value: the loader reads no id")
    control = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if control is not None:  # a newline or NUL went into the answer, the log and campaigns.csv
        raise ValueError(
            f"{_cut(repr(text))} holds a control character ({control!r}): ids are echoed and "
            "logged as sent"
        )
    return text


def moment_text(value: Any) -> Any:
    """A time is ISO 8601 text with its dashes (2024-01-01, 2024-01-01T10:00:00): pydantic
    reads a number, or text of digits (1700000000, 20240101, 1.5e9), as seconds since 1970,
    so '20240101' (2024-01-01 to the loader) was 1970-08-23 06:15. Datetimes pass (Python)."""
    if isinstance(value, datetime) or (isinstance(value, str) and iso_dated(value)):
        return value
    raise ValueError(f"{value!r}: give a date or date-time as ISO 8601 text, e.g. "
                     "'2024-01-01' or '2024-01-01T10:00:00'")  # fmt: skip


# Times: ISO 8601 text; aware ones converted to UTC and made naive, naive ones taken as given
# (as the loader).
Moment = Annotated[datetime, BeforeValidator(moment_text), AfterValidator(naive_utc)]
# Amounts and quantities: finite and within the contract's bound, as the loader reads them;
# JSON numbers only (strict: true would be 1.0, "40" a number the caller sent as text).
Number = Annotated[FiniteFloat, Strict(), Field(ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]


def _text_or_integer(**text: int) -> WithJsonSchema:
    """An id is text or a whole JSON number (id_number_text): the OpenAPI page says both, else
    a client generated from it could not send the integer keys its backend has (tester M)."""
    return WithJsonSchema({"anyOf": [{"type": "string", **text}, {"type": "integer"}]})


# Read as the loader reads a file's: an order id as ids are ('13085.0' is '13085', 'NULL' none),
# a category or channel stripped, blank none; else ' books ' and 'books' were two categories
# here and one in `crm-ltv score`, and the same customer scored twice differently.
OrderId = Annotated[
    str,
    Field(max_length=MAX_TEXT),
    BeforeValidator(id_number_text),
    AfterValidator(id_of),
    _text_or_integer(maxLength=MAX_TEXT),
]
Label = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(label_of)]


# A feature row's value: a number (strict, as above), a category's text (at most MAX_TEXT
# characters: CustomerIn.inconsistency, for errors without pydantic's type tags), or null.
FeatureValue = StrictFloat | str | None  # its errors made one (`_feature_value_error`)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# A plain dict, not a model: pydantic validates a 100-customer request's 2,000 of these about
# three times faster so. Read them as `tx["timestamp"]`, `tx.get("category")`.
@with_config(ConfigDict(extra="forbid"))
class Transaction(TypedDict):
    """One line of the customer's history up to as_of."""

    timestamp: Moment
    amount: Annotated[Number, Field(description="Negative = refund.")]
    order_id: NotRequired[OrderId | None]
    quantity: NotRequired[Number | None]
    category: NotRequired[Label | None]
    channel: NotRequired[Label | None]


class Contact(_Strict):
    action: Annotated[str, AfterValidator(catalogue_action)] = Field(
        min_length=1,
        max_length=MAX_TEXT,
        description="The action sent: the contact cap reads the catalogue's names (README: "
        "Next-best-action); a near miss of one is refused, other names are ignored.",
    )
    sent_at: Moment


class CustomerIn(_Strict):
    """One customer: raw `transactions` with `as_of`, or precomputed `features`."""

    customer_id: Annotated[
        str,
        BeforeValidator(id_number_text),
        AfterValidator(customer_id_text),
        _text_or_integer(minLength=1, maxLength=MAX_TEXT),
    ] = Field(
        min_length=1,
        max_length=MAX_TEXT,
        description="Text or a whole number, read as the loader reads ids: stripped, "
        "'13085.0' and 13085 are '13085'.",
    )
    as_of: Moment | None = Field(
        None,
        description="Cutoff: history up to this instant (a date alone = 00:00). Required with "
        "transactions; with features it dates the contact cap (default: now, UTC).",
    )
    transactions: list[Transaction] | None = None
    features: dict[Text, FeatureValue] | None = Field(
        None, description="A row of the feature table (README: Features)."
    )
    signup_date: Moment | None = None
    acquisition_channel: Label | None = None
    contacts: list[Contact] = Field(
        default_factory=list, description="Actions already sent, for the contact cap."
    )

    @model_validator(mode="after")
    def _consistent(self) -> CustomerIn:
        problem = self.inconsistency()
        if problem is not None:
            raise ValueError(problem)
        return self

    def last_contacts(self) -> dict[str, datetime]:
        """When each action was last sent: what the policy's contact cap reads."""
        last: dict[str, datetime] = {}
        for contact in self.contacts:
            last[contact.action] = max(last.get(contact.action, contact.sent_at), contact.sent_at)
        return last

    def inconsistency(self) -> str | None:
        if (self.transactions is None) == (self.features is None):
            return "give exactly one of transactions (with as_of) or features"
        for name, value in (self.features or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                return f"features.{name}: {value} is not a finite number"
            if isinstance(value, str) and len(value) > MAX_TEXT:
                return f"features.{name}: {len(value):,} characters; at most {MAX_TEXT}"
        if self.transactions is not None and self.as_of is None:
            return "as_of: required with transactions"
        if self.as_of is None:  # a feature row scored as of the server's clock
            latest = datetime.now(UTC).replace(tzinfo=None) + CLOCK_SKEW
            for i, contact in enumerate(self.contacts):
                if contact.sent_at > latest:
                    return (
                        f"contacts.{i}.sent_at: {contact.sent_at:%Y-%m-%dT%H:%M:%S} is in the "
                        f"future (no as_of: scored as of now, in UTC)"
                    )
            return None
        for i, tx in enumerate(self.transactions or ()):
            if tx["timestamp"] > self.as_of:
                return _after(f"transactions.{i}.timestamp", tx["timestamp"], self.as_of)
        for i, contact in enumerate(self.contacts):
            if contact.sent_at > self.as_of:
                return _after(f"contacts.{i}.sent_at", contact.sent_at, self.as_of)
        return None


def _after(where: str, moment: datetime, as_of: datetime) -> str:
    return (
        f"{where}: {moment:%Y-%m-%dT%H:%M:%S} is after as_of {as_of:%Y-%m-%dT%H:%M:%S} ({IN_UTC})"
    )


def customer_label(customer_id: object) -> str:
    if customer_id is None:
        return "customer (no customer_id)"
    if isinstance(customer_id, str) and len(customer_id) > MAX_TEXT:  # counted without quotes
        return f"customer {customer_id[:40]!r}... ({len(customer_id):,} characters)"
    return f"customer {_cut(repr(customer_id))}"


def _cut(text: str) -> str:
    """The caller's text as an error quotes it: cut when longer than any text a request may
    hold (a 1 MB customer id came back whole in its 400)."""
    return text if len(text) <= MAX_TEXT + 2 else f"{text[:40]}... ({len(text):,} characters)"


class ScoreRequest(_Strict):
    """The body of POST /score."""

    customers: list[CustomerIn]

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Errors inside a customer come back as `customer 'c7': transactions.2.amount: ...`.

        Named here, on the error path only: a wrap validator on CustomerIn that named them
        made pydantic hand every request to Python as objects first, costing 40% of parsing.
        """
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise _customers_named(exc, json_data) from None


def _customer_index(loc: tuple[str | int, ...]) -> int | None:
    """The customer an error is inside of (`customers.<i>...`), if any."""
    if len(loc) >= 2 and loc[0] == "customers" and isinstance(loc[1], int):
        return loc[1]
    return None


def _customers_named(exc: ValidationError, body: str | bytes | bytearray) -> ValidationError:
    """The same errors, each within a customer prefixed by its customer id (as given), in the
    caller's terms: pydantic's own title named BentoML's internal class
    (ScoreRequestIODescriptor) and linked its documentation."""
    errors = exc.errors(include_url=False)
    blank = body.strip() in ("", "{}", b"", b"{}")  # BentoML reads an empty body as {}
    # not parsed again where pydantic found no JSON (a body nested too deep raised here: 500)
    invalid = any(e["type"] == "json_invalid" for e in errors)
    try:
        given = [] if invalid else json.loads(body)["customers"]
    except (ValueError, TypeError, KeyError, RecursionError):  # no customers list
        given = []
    if not isinstance(given, list):
        given = []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    said: set[tuple[str | int, ...]] = set()
    for error in errors:
        loc, message = error["loc"], error["msg"].removeprefix("Value error, ")
        if len(loc) == 5 and loc[2] == "features" and loc[4] in ("float", "str"):
            # a feature value of no allowed type: one error, not one per union member
            if loc[:4] in said:
                continue
            said.add(loc[:4])
            loc, message = loc[:4], _feature_value_error(error.get("input"))
        message = _in_callers_terms(error, message, blank)
        i = _customer_index(loc)
        if i is None:
            problems.append((loc, message))
            continue
        customer = given[i] if i < len(given) else None
        who = customer.get("customer_id") if isinstance(customer, dict) else None
        where = [customer_label(who), ".".join(_cut(str(part)) for part in loc[2:])]
        problems.append((loc[:2], ": ".join([*filter(None, where), message])))
    return request_error(problems)


def _in_callers_terms(error: Any, message: str, blank: bool = False) -> str:
    """pydantic's message, with what the caller can do about it where it says too little."""
    given = error.get("input")
    if error["type"] == "json_invalid":
        return f"the request body is not valid JSON: {error['ctx']['error']}"
    if error["type"] == "model_type" and error["loc"] == ():
        return 'the request body should be a JSON object: {"customers": [...]}'
    if error["type"] == "missing" and error["loc"] == ("customers",):
        said = 'Field required: the body should be {"customers": [...]}'
        return said + (" (an empty body reads as {})" if blank else "")
    if error["type"] in ("float_type", "float_parsing") and isinstance(given, str):
        said = f"{message}: {_cut(repr(given))} is text; send a JSON number, without quotes"
        if "," in given and any(c.isdigit() for c in given):  # a spreadsheet's decimal comma
            said += " and with '.' as its decimal mark (12.5, not \"12,50\")"
        return said
    return message


def _feature_value_error(value: Any) -> str:
    kind = "a boolean" if isinstance(value, bool) else type(value).__name__
    return f"{kind}: give a number, a category's text or null"


def request_error(problems: list[tuple[tuple[str | int, ...], str]]) -> ValidationError:
    """Checks beyond the schema (batch size, duplicates, feature names) in the schema's format;
    the first MAX_PROBLEMS, then how many more (a batch of bad customers once answered 68 MB)."""
    shown = problems[:MAX_PROBLEMS]
    title = "ScoreRequest"
    if len(problems) > MAX_PROBLEMS:  # pydantic counts what is shown: the title says the rest
        title += f" ({len(problems):,} problems, the first {MAX_PROBLEMS} shown)"
    details: list[InitErrorDetails] = [
        {
            "type": PydanticCustomError("invalid_request", "{message}", {"message": message}),
            "loc": loc,
            "input": None,
        }
        for loc, message in shown
    ]
    return ValidationError.from_exception_data(title, details)


class Reason(BaseModel):
    model: str = Field(description="churn (contribution to log-odds) or ltv (to log value).")
    feature: str
    value: float | str | None
    contribution: float


class NextBestAction(BaseModel):
    action: str
    expected_value: float | None = Field(description="Expected incremental value net of cost.")
    reason: str
    category: str | None = Field(None, description="Category to recommend, where it applies.")
    effect_source: Literal["uplift", "prior"] | None = Field(
        None,
        description="Where the chosen (or best unpaid) action's effect came from: the uplift "
        "model, or the prior of configs/nba.yaml for an action it has no model of. None when "
        "no action was weighed (cold start, nothing eligible).",
    )
    uplift_version: str | None = Field(
        None, description="Registered version of the uplift model, when effect_source is uplift."
    )
    weighed_action: str | None = Field(
        None,
        description="The action effect_source describes: the chosen one, or the best one when "
        "none pays (action no_action). None when no action was weighed.",
    )


class CustomerScore(BaseModel):
    customer_id: str
    as_of: datetime = Field(
        description="The instant scored at: the request's as_of, or for a feature row without "
        "one the server's clock (UTC), as the decision log records it."
    )
    cold_start: bool = Field(description="No purchase up to as_of: no model scores.")
    churn_probability: float | None
    predicted_value: float | None
    horizon_days: int
    rfm_segment: str | None
    lifecycle_stage: str | None
    reasons: list[Reason]
    next_best_action: NextBestAction
    model_versions: dict[str, str]
    holdout: bool = Field(
        False,
        description="In the randomized control group: no_action whatever the policy chose "
        "(configs/serving.yaml holdout; README: Holdouts and propensities).",
    )
    explored: bool = Field(
        False, description="The action was drawn at random among the candidates (exploration)."
    )
    propensity: float = Field(
        1.0,
        description="Probability of the action sent for this customer under the policy with "
        "holdout and exploration: the weight of off-policy evaluation (`crm-ltv policy-eval`).",
    )


class ScoreResponse(BaseModel):
    request_id: str
    customers: list[CustomerScore]
