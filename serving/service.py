"""The BentoML service: POST /score, with /readyz, /livez, /metrics and the OpenAPI page.

Start it with `make serve` (copies the champions from the registry into the BentoML model store
first) or from a Bento built by `make bento`. The models are class attributes so that a Bento
carries them; they load in the background, and /readyz answers 503 until they have.
"""

from __future__ import annotations

import contextvars
import functools
import gc
import hmac
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import bentoml
import pandas as pd
from _bentoml_impl.serde import JSONSerde  # BentoML's JSON reader (pinned: bentoml==1.4.39)
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from starlette.responses import JSONResponse

from crm_ltv.features.config import ConfigError, load_config
from crm_ltv.features.contract import DataError
from crm_ltv.features.paths import HOME_ENV, Paths
from crm_ltv.serving.admission import SCORING_PATHS, ConcurrencyLimit, NotServing, answer
from crm_ltv.serving.answers import ErrorCountInWords, SpecOfTheAnswers
from crm_ltv.serving.config import (
    SERVICE_NAME,
    TOKEN_ENV,
    ScoringConfigs,
    ServingConfig,
    api_token,
    bentoml_settings,
    blank_token,
    configs_said,
    outdated_rules,
)
from crm_ltv.serving.decisions import DecisionLog
from crm_ltv.serving.holdout import apply_holdout
from crm_ltv.serving.schemas import (
    MAX_REQUEST_ID,
    CustomerIn,
    CustomerScore,
    ScoreRequest,
    ScoreResponse,
    request_error,
)
from crm_ltv.serving.scorer import Scorer
from crm_ltv.serving.store import (
    STORE_NAMES,
    UPLIFT_STORE_NAME,
    load_stored_champions,
    load_stored_uplift,
    served_from_bento,
    served_tag,
)
from crm_ltv.serving.watchdog import stop_with_parent
from crm_ltv.training.errors import ChampionError

logger = logging.getLogger("bentoml.crm_ltv")
OPEN_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json", "/")
# The caller's X-Request-ID of the call being answered (EchoRequestId sets it): the log line
# of a refused call names it, as its answer does.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("REQUEST_ID", default=None)
# BentoML's metrics name a call to a path no route serves so (one_series_for_unknown_paths).
UNKNOWN_PATH = "/<unknown path>"
REAL_PATH = "crm_ltv.real_path"  # the scope key that carries a labelled call's own path


class ClientErrorsInOneLine(logging.Filter):
    """BentoML 1.4 logs every answer it gives to a bad request (400: a validation error of the
    body, or of ours) as an error with its traceback, which buries real failures in a log
    full of callers' mistakes. A 4xx is the caller's: one line at INFO, with the reason; 5xx
    keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or not _client_error(error):
            return True
        record.msg, record.args = f"{record.getMessage()}: client error: %s", (_said(error),)
        given = REQUEST_ID.get()
        if given is not None:  # tester H: none of 2,215 refused calls' ids was in the log
            record.msg, record.args = f"{record.msg} (X-Request-ID %s)", (*record.args, given)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _said(error: BaseException) -> str:
    """The problems of a bad request, as its answer names them (the first three)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        shown = [str(e["msg"]) for e in error.errors(include_url=False)[:3]]
        more = error.error_count() - len(shown)
        return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _client_error(error: BaseException) -> bool:
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return True
    return isinstance(error, BentoMLException) and 400 <= error.error_code.value < 500


def quiet_client_errors() -> None:
    """Installs ClientErrorsInOneLine on BentoML's HTTP logger, once per worker."""
    http_log = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, ClientErrorsInOneLine) for f in http_log.filters):
        http_log.addFilter(ClientErrorsInOneLine())


@functools.cache
def settings() -> ServingConfig:
    """configs/serving.yaml of the project home, read once per worker on first use (never on
    import: `crm-ltv serve` passes its worker count and logging to BentoML as overrides)."""
    return load_config(ServingConfig, Paths.from_env().config_file("serving"))


class BearerAuth:
    """With CRM_LTV_API_TOKEN set, every API call needs `Authorization: Bearer <token>`;
    probes, metrics and the OpenAPI page stay open for the platform that runs the service."""

    def __init__(self, app: Any) -> None:
        """Said once per worker as it starts."""
        self.app = app
        self.token, self.blank = api_token(), blank_token()
        if self.token:
            logger.info("bearer auth on: API calls need the token of %s", TOKEN_ENV)
        elif self.blank:
            logger.error("not serving: %s; every API call is refused", self.blank)
        else:
            logger.info("bearer auth off: %s is not set", TOKEN_ENV)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        closed = self.token or self.blank
        if scope["type"] != "http" or not closed or self._open(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.blank:
            await answer(send, 503, {"error": f"not serving: {self.blank}"})
            return
        headers = dict(scope.get("headers") or ())
        scheme, _, credential = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(
            credential.lstrip(b" "), self.token.encode()
        ):  # the scheme's case is free (RFC 7235), the token's is not
            await self.app(scope, receive, send)
            return
        said = "missing or wrong bearer token (Authorization: Bearer <token>)"
        await answer(send, 401, {"error": said}, [(b"www-authenticate", b"Bearer")])

    @staticmethod
    def _open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(("/static_content", "/assets"))


class EchoRequestId:
    """Every /score answer carries the caller's X-Request-ID, refusals (400, 401, 413, 503)
    too, so that a caller can match an error to its call (the endpoint sets it on the answers
    it gives, a new one where none was sent). An id the endpoint would refuse is not echoed."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"")
        if scope["type"] != "http" or scope["path"] not in SCORING_PATHS or not _echoable(given):
            await self.app(scope, receive, send)
            return
        REQUEST_ID.set(given.decode("latin-1"))  # this call's context only

        async def echoed(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if all(name.lower() != b"x-request-id" for name, _ in headers):
                    message = {**message, "headers": [*headers, (b"x-request-id", given)]}
            await send(message)

        await self.app(scope, receive, echoed)


def one_series_for_unknown_paths() -> None:
    """BentoML's HTTP metrics label every call by its path: each path a scanner tried added
    about 20 /metrics series (and grew every worker's Prometheus files) for as long as the
    workers ran (tester H: 200 random paths took /metrics from 101 series to 4,101, 19 KB to
    767 KB). A call to a path no route serves is labelled UNKNOWN_PATH, one under a mount
    (the OpenAPI page's files) or a route with parameters by its template; the call itself
    goes on with its own path (RealPath puts it back), answered as before (404, 405, 307 to
    the path without its trailing slash). BentoML 1.4 puts its metrics middleware outside
    any a service adds, so the label is set on that middleware's own call (bentoml==1.4.39 is
    pinned; a test checks it)."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    original = RunnerTrafficMetricsMiddleware.__call__
    if getattr(original, "unknown_paths_in_one_series", False):
        return

    async def labelled(self: Any, scope: dict, receive: Any, send: Any) -> None:
        routes = getattr(scope.get("app"), "routes", None)  # Starlette's, set before middleware
        label = _metrics_path(routes, scope) if scope["type"] == "http" and routes else None
        if label is not None:
            real = (scope["path"], scope.get("raw_path"))
            scope = {**scope, "path": label, "raw_path": label.encode(), REAL_PATH: real}
        await original(self, scope, receive, send)

    labelled.unknown_paths_in_one_series = True  # type: ignore[attr-defined]
    RunnerTrafficMetricsMiddleware.__call__ = labelled  # type: ignore[method-assign]


def _metrics_path(routes: list[Any], scope: dict) -> str | None:
    """The label of a call whose path is not a route's own (None: the path is one)."""
    from starlette.routing import Match, Mount

    for route in routes:
        if route.matches(scope)[0] == Match.NONE:
            continue
        if isinstance(route, Mount):
            return f"{route.path}/*"
        return route.path if getattr(route, "param_convertors", None) else None
    return UNKNOWN_PATH


class RealPath:
    """Gives a call labelled for the metrics (one_series_for_unknown_paths) its own path
    back, before any of the service's middleware or its routes read it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if REAL_PATH in scope:
            path, raw = scope[REAL_PATH]
            scope = {**scope, "path": path, "raw_path": raw}
            del scope[REAL_PATH]
        await self.app(scope, receive, send)


def _echoable(given: bytes) -> bool:
    """An id the endpoint would take (ASGI headers are latin-1 bytes)."""
    return bool(given) and _request_id_problem(given.decode("latin-1")) is None


@dataclass
class _NotServing:
    """This worker's reason not to serve, once known (set by the service as it starts or loads
    its models; NotServing answers it to every scoring call)."""

    reason: str | None = None


NOT_SERVING = _NotServing()


def _absolute_hint(home: str) -> str:
    """The shell's way to an absolute path: a '~' left unexpanded (quoted) is $HOME's."""
    if home == "~" or home.startswith("~/"):
        return f'"$HOME{home[1:]}"'
    return f'"$PWD/{home}"'


def decision_log_path() -> Path:
    """The decision log in the project home (CRM_LTV_HOME, else the working directory). A Bento
    served by hand runs from its own src folder: decisions written there (customer ids and
    scores) would travel with the Bento on `bentoml export`, and outcomes would never look
    there, so such a service is not ready until it is given a home, an absolute one: BentoML
    changes into that folder before the service reads the variable, so a relative home
    (`CRM_LTV_HOME=.`) lay inside the Bento too, its configs/ the packaged defaults."""
    home = os.environ.get(HOME_ENV)
    if home and not Path(home).is_absolute():
        raise ConfigError(
            f"{HOME_ENV}={home!r} is a relative path, which would be read from the folder "
            f"BentoML serves from (a Bento's own src folder), not where you started it: give "
            f"the project home as an absolute path (e.g. {HOME_ENV}={_absolute_hint(home)})"
        )
    path = Paths.from_env().root / settings().decision_log
    if not os.environ.get(HOME_ENV) and served_from_bento(Path.cwd()):
        raise ConfigError(
            f"decision log {path} would lie inside the Bento (BentoML serves it from its src "
            f"folder): set {HOME_ENV} to the project home (its configs/ and logs/)"
        )
    return path


def checked_request_id(given: str | None) -> str:
    """The caller's X-Request-ID, or a new one. It is echoed and written to the decision log
    with every customer of the call, so a long one is refused rather than copied."""
    if not given:
        return uuid.uuid4().hex
    problem = _request_id_problem(given)
    if problem is not None:
        raise request_error([(("X-Request-ID",), f"header X-Request-ID: {problem}")])
    return given


def _request_id_problem(given: str) -> str | None:
    if len(given) > MAX_REQUEST_ID:
        return f"{len(given):,} characters; at most {MAX_REQUEST_ID}"
    if not (given.isascii() and given.isprintable()):  # read as latin-1: 'é' came back 'Ã©'
        return "printable ASCII characters only (the id is echoed and logged as sent)"
    return None


# A request weighing up to this (20 per customer, its models, reasons and log line; 1 per
# transaction line or contact) is scored on the event loop: about 10 ms at most (2.5 ms for one
# customer, about 0.2 ms for each further one of 20 lines). A heavier one goes to a thread.
THREAD_FROM_WEIGHT = 1_000
CUSTOMER_WEIGHT = 20


def _small(customers: list[CustomerIn]) -> bool:
    """Contacts weigh as lines: the contact cap reads every one (tester M: one customer with
    300,000 contacts was scored on the loop, and held the health probes for 1.4 s)."""
    lines = sum(len(c.transactions or ()) + len(c.contacts) for c in customers)
    return CUSTOMER_WEIGHT * len(customers) + lines <= THREAD_FROM_WEIGHT


# A body up to this size is parsed on the event loop (about 8 ms); a larger one in a thread.
PARSE_ON_LOOP_BYTES = 256 * 2**10


# BentoML parses every body on the event loop: 27 MB of JSON (1,000 customers of 300 lines,
# under the size cap) took about a second there, and the health probes waited for it (tester
# M: /livez up to 2.5 s with four such calls in flight). A large body is parsed in a thread,
# between whose steps the loop answers. The class has the name BentoML gave the body's schema
# before (clients generated from the OpenAPI page keep their types); its docstring is the
# schema's description there.
class ScoreRequestIODescriptor(bentoml.IODescriptor, ScoreRequest):
    """The body of POST /score."""

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> Any:
        body = await request.body()  # read once: Starlette keeps it for BentoML's own read
        if len(body) <= PARSE_ON_LOOP_BYTES or type(serde) is not JSONSerde:  # not a subclass
            return await super().from_http_request(request, serde)
        return await anyio.to_thread.run_sync(cls.model_validate_json, body)


@bentoml.service(
    name=SERVICE_NAME,
    # Defaults of configs/serving.yaml; `crm-ltv serve` overrides them from the home's config
    # (serving.config.bentoml_overrides), a Bento served by hand with BENTOML_CONFIG_OVERRIDES.
    **bentoml_settings(ServingConfig()),
)
class CrmLtv:
    churn_model = bentoml.models.BentoModel(served_tag(STORE_NAMES["churn"]))
    ltv_model = bentoml.models.BentoModel(served_tag(STORE_NAMES["ltv"]))
    # Always declared (so a Bento carries it); without an uplift champion the store's latest is
    # a placeholder (serving.store.retire_uplift) and next-best-action uses the nba.yaml priors.
    uplift_model = bentoml.models.BentoModel(served_tag(UPLIFT_STORE_NAME))

    def __init__(self) -> None:
        quiet_client_errors()
        stop_with_parent()
        self.scorer: Scorer | None = None
        self.scoring: anyio.Lock | None = None  # one scoring at a time (one LightGBM thread)
        self.level_said = False  # Champions.level_warning, logged once per worker
        self.loaded = threading.Event()
        NOT_SERVING.reason = None  # this instance's own, in a process that made one before
        try:
            self.decisions = DecisionLog(decision_log_path())
        except (ConfigError, OSError) as exc:  # not ready, and every call says why (NotServing)
            NOT_SERVING.reason = f"{type(exc).__name__}: {exc}"
            logger.error("not serving: %s", NOT_SERVING.reason)
            self.loaded.set()
            return
        threading.Thread(target=self._load, name="load-models", daemon=True).start()

    def _load(self) -> None:
        try:
            self._load_scorer()
        finally:
            self.loaded.set()

    def _load_scorer(self) -> None:
        try:
            champions = load_stored_champions(self.churn_model, self.ltv_model)
            try:
                uplift = load_stored_uplift(self.uplift_model)
            except bentoml.exceptions.NotFound:  # a store filled before uplift models existed
                uplift = None
            paths = Paths.from_env()
            logger.info(configs_said(paths))
            configs = ScoringConfigs.load(paths)
            uplift_stale = uplift.features_config_warning(configs.features) if uplift else None
            outdated = outdated_rules(configs.nba, paths.config_file("nba"))  # a Bento's too
            for stale in [*champions.warnings(configs.features), uplift_stale, outdated]:
                if stale is not None:
                    logger.warning(stale.removeprefix("warning: "))
            more = (
                {f"{uplift.name} v{uplift.version}": uplift.bundle.feature_names} if uplift else {}
            )
            unbuilt = champions.unbuilt_features(configs.features, more)
            if unbuilt is not None:  # else every request would fail, one at a time
                raise ChampionError(unbuilt)
            self.scorer = Scorer(champions, configs.features, configs.nba, settings(), uplift)
        except (ConfigError, ValueError, OSError, ChampionError, BentoMLException) as exc:
            # BentoMLException: a pinned copy deleted from the store (NotFound)
            NOT_SERVING.reason = f"{type(exc).__name__}: {exc}"
            logger.error("models not loaded: %s", NOT_SERVING.reason)
            return
        # The models and modules live as long as the worker: keep the cyclic GC from scanning
        # them again and again while requests allocate.
        gc.freeze()
        versions = ", ".join(f"{k} v{v}" for k, v in self.scorer.versions.items())
        # the exact store copies too: versions alone do not tell two homes' v1 apart
        copies = ", ".join(
            str(m.tag) for m in (self.churn_model, self.ltv_model, self.uplift_model)
        )
        logger.info(
            "ready: %s (%d-day horizon; store copies %s)", versions, champions.horizon_days, copies
        )

    def __is_ready__(self) -> bool:
        """Not while the decision log cannot be written, nor with a blank token: every call
        would be refused."""
        return self.scorer is not None and blank_token() is None and self.decisions.writable()

    # The input spec names customers in its errors; the output spec is the answer of a decision
    # on record (a refusal is a JSONResponse of its own)
    @bentoml.api(route="/score", input_spec=ScoreRequestIODescriptor, output_spec=ScoreResponse)
    async def score(
        self, customers: list[CustomerIn], ctx: bentoml.Context
    ) -> ScoreResponse | JSONResponse:
        """Churn probability, predicted value, segment, stage, reasons and next-best-action."""
        request_id = checked_request_id(ctx.request.headers.get("x-request-id"))
        if not self.loaded.is_set():
            # /readyz is answered by whichever worker takes the probe: a call that reaches a
            # worker still loading waits for its models instead of failing while its siblings
            # serve (waiting in a thread, so this worker's probes still answer meanwhile).
            await anyio.to_thread.run_sync(self.loaded.wait, settings().model_load_wait_seconds)
        if self.scorer is None:
            raise ServiceUnavailable(NOT_SERVING.reason or "models still loading; see /readyz")
        now = datetime.now(UTC).replace(tzinfo=None)
        if self.scoring is None:
            self.scoring = anyio.Lock()  # made on the loop, as anyio requires
        ctx.response.metadata["X-Request-ID"] = request_id
        decide = functools.partial(self._decide, self.scorer, customers, request_id, now)
        try:
            async with self.scoring:
                # A large request is scored in a thread: on the event loop, batches of 1,000
                # customers held the health probes for up to 2 s (README: Overload), long
                # enough for a platform to restart a busy worker as dead. A small one is
                # scored on the loop, in a few milliseconds: in a thread, the loop waited for
                # the interpreter lock at every step (single calls lost about a quarter of
                # their throughput in one measurement on a busy machine).
                answers = decide() if _small(customers) else await anyio.to_thread.run_sync(decide)
        except DataError as exc:
            raise request_error([(("customers",), str(exc))]) from None
        except OSError as exc:  # a full disk, a log made read-only: a 503 that says so
            # Answered, not raised: BentoML words every 5xx raised "please check the server
            # log", and logs a traceback for each.
            logger.error("decision log not written: %s", exc)
            ctx.response.status_code = 503  # BentoML gives the answer the context's status
            message = (
                f"the decision log could not be written ({exc.strerror or exc}): decisions "
                "are not answered unless they are on record (outcomes and policy-eval read it)"
            )
            return JSONResponse({"error": message})
        return ScoreResponse(request_id=request_id, customers=answers)

    def _decide(
        self, scorer: Scorer, customers: list[CustomerIn], request_id: str, now: datetime
    ) -> list[CustomerScore]:
        """Scores, holds out and puts the decisions on record (DataError: a bad request;
        OSError: the decision log refused them)."""
        scored = scorer.score_with_views(customers, now)
        answers, assigned = apply_holdout(scored, scorer.nba, settings().holdout)
        if not self.level_said:  # before the record: a call on record is answered
            self._say_level(scorer, [c.as_of or now for c in customers])
        self.decisions.append(answers, request_id, now, assigned, [v for _, v in scored])
        return answers

    def _say_level(self, scorer: Scorer, moments: list[datetime]) -> None:
        """`crm-ltv score` warns when it scores far from the date the champions' level was
        set for (a seasonal shop's totals are off then); the service says it in its log, once
        per worker rather than on every call."""
        for moment in (min(moments), max(moments)):
            said = scorer.champions.level_warning(pd.Timestamp(moment))
            if said is not None:
                logger.warning("%s (said once per worker)", said.removeprefix("warning: "))
                self.level_said = True
                return


CrmLtv.add_asgi_middleware(RealPath)  # first added, outermost of ours: before any reads it

CrmLtv.add_asgi_middleware(EchoRequestId)  # round the others' answers

one_series_for_unknown_paths()

CrmLtv.add_asgi_middleware(SpecOfTheAnswers, spec=lambda: CrmLtv.openapi_spec.asdict())

CrmLtv.add_asgi_middleware(ErrorCountInWords)

CrmLtv.add_asgi_middleware(BearerAuth)

# Before the limit, whose options read serving.yaml: a worker not serving because that file is
# wrong answered every call with a 500 (after BentoML's 60 s timeout) from the limit's options.
CrmLtv.add_asgi_middleware(NotServing, reason=lambda: NOT_SERVING.reason)

CrmLtv.add_asgi_middleware(
    ConcurrencyLimit,
    limit=lambda: settings().max_in_flight,
    retry_after=lambda: settings().retry_after_seconds,
    max_body_bytes=lambda: settings().max_request_mb * 2**20,
)
