"""The decision log: one JSON line per decision, what the next round learns from.

Each line says what was sent (`action`), what the policy wanted (`policy_action`), whether the
customer was held out or explored, the propensity of the action sent and the holdout share and
exploration it was drawn with, the eligible actions and their expected values, what the answer's
expected value was priced with (the action weighed, its effect and the effect's source), and
what joining outcomes needs: as_of, request id, model versions.
`crm-ltv outcomes` turns these lines and later transactions into a campaigns table.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydantic_core import to_json

from crm_ltv.features.config import ConfigError
from crm_ltv.features.paths import write_refused
from crm_ltv.serving.holdout import Assignment
from crm_ltv.serving.nba import Customer
from crm_ltv.serving.schemas import CustomerScore

# Read too: the last byte says whether the log ends in a whole line
_APPEND = os.O_RDWR | os.O_APPEND | os.O_CREAT
# customer ids and scores: read and written by its owner, read by the group (it was 0o777,
# executable by all, less the umask: tester S)
LOG_MODE = 0o640


class DecisionLog:
    def __init__(self, path: Path) -> None:
        """Refuses a log that cannot be written (ConfigError, with the reason `crm-ltv serve`
        gives): a worker without one is not ready and says why, where it crashed as it started
        (its folder could not be made) or answered every call with an error. Its folder is
        made when it is first written, and again if it was removed."""
        problem = write_refused(path) or _lock_refused(path)
        if problem is not None:
            raise ConfigError(f"decision log: {problem}")
        self.path = path
        # The size of the last batch when it could not be written; 0 once one was.
        self.unwritten_bytes = 0

    def append(
        self,
        answers: list[CustomerScore],
        request_id: str,
        decided_at: datetime,
        assignments: Sequence[Assignment] | None = None,
        views: Sequence[Customer] | None = None,
    ) -> None:
        """One write per request, all of it or nothing (OSError): a call refused for it leaves
        no decision on record. Without assignments (no holdout applied) the policy's action was
        sent for sure. The views (the policy's, Scorer.score_with_views) add what its rules read
        beyond the answer, so that policy-eval can judge other policies on it."""
        lines = b"".join(
            to_json(
                _line(
                    a,
                    request_id,
                    decided_at,
                    assignments[i] if assignments else None,
                    views[i] if views else None,
                ),
                inf_nan_mode="null",  # its default writes NaN and Infinity: not JSON
            )
            + b"\n"  # pydantic's encoder: five times json.dumps' speed
            for i, a in enumerate(answers)
        )
        try:
            self._write(lines, keep=True)
        except OSError:
            self.unwritten_bytes = len(lines)
            raise
        self.unwritten_bytes = 0

    def writable(self) -> bool:
        """False while the last batch could not be written, until a probe of its size goes
        through (blank lines, which readers skip, taken back at once): a worker that readiness
        takes out of rotation gets no call to find out that space was freed."""
        pending = self.unwritten_bytes  # read by readiness, set by each scoring call
        if not pending:
            return True
        try:
            self._write(b"\n" * pending, keep=False)
        except OSError:
            return False
        if self.unwritten_bytes == pending:  # no batch failed meanwhile
            self.unwritten_bytes = 0
        return True

    def _write(self, data: bytes, keep: bool) -> None:
        """Appends `data` under an exclusive lock, so that workers write one at a time and a
        failed write can be taken back without cutting another's lines; taken back too when
        not `keep`. A log whose last line was cut short (a stop mid-write) gets its newline
        first, so that these lines do not glue onto it (both then unreadable)."""
        try:
            fd = os.open(self.path, _APPEND, LOG_MODE)
        except FileNotFoundError:  # no folder yet, or it was removed while serving
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, _APPEND, LOG_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            start = os.lseek(fd, 0, os.SEEK_END)
            if start and os.pread(fd, 1, start - 1) != b"\n":
                data = b"\n" + data
            try:
                _write_all(fd, data)
            except OSError:
                # if even this fails, the next write still starts on a line of its own
                _take_back(fd, start)
                raise
            if not keep:
                _take_back(fd, start)  # a probe's blank lines: harmless where they stay
        finally:
            os.close(fd)  # and the lock with it


def _lock_refused(path: Path) -> str | None:
    """Why a log that exists cannot be opened and locked as `_write` does (read and write, an
    exclusive lock), or None: a write-only file, or one on a file system without locks (NFS
    without lockd), passed the append check and then refused every call."""
    if not path.is_file():
        return None  # made on its first write, in a folder write_refused has checked
    try:
        fd = os.open(path, _APPEND, LOG_MODE)
    except OSError as exc:
        return f"{path} cannot be opened for reading and appending ({exc.strerror or exc})"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None  # another worker holds it: locks work
    except OSError as exc:
        return f"{path} cannot be locked ({exc.strerror or exc}): put it on a local disk"
    finally:
        os.close(fd)
    return None


def _take_back(fd: int, start: int) -> None:
    """Cut the file back to `start`, unless it is shorter (emptied meanwhile, e.g. by a rotation's
    copytruncate: cutting would fill it with NUL bytes) or refuses (an append-only file)."""
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_size >= start:
            os.ftruncate(fd, start)


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write part of `data` (a disk filling up): the rest goes on, or fails."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _line(
    a: CustomerScore,
    request_id: str,
    decided_at: datetime,
    assigned: Assignment | None,
    view: Customer | None,
) -> dict:
    action = a.next_best_action.action
    return {
        "request_id": request_id,
        "decided_at": decided_at.isoformat(),
        "customer_id": a.customer_id,
        "as_of": a.as_of.isoformat(),
        "cold_start": a.cold_start,
        "action": action,
        "policy_action": assigned.policy_action if assigned else action,
        "holdout": assigned.holdout if assigned else False,
        "explored": assigned.explored if assigned else False,
        "propensity": assigned.propensity if assigned else 1.0,
        "period": assigned.period if assigned else None,
        # the randomization the propensity came from (serving.yaml holdout: share, exploration)
        "holdout_share": assigned.share if assigned else 0.0,
        "exploration": assigned.exploration if assigned else 0.0,
        "eligible_actions": list(assigned.eligible_actions) if assigned else None,
        "expected_value": a.next_best_action.expected_value,
        # what it was priced with, as the answer says (tester G: a logged value could not be
        # traced to its effect): the action weighed, the effect and where it came from
        "weighed_action": a.next_best_action.weighed_action,
        "effect": assigned.effect if assigned else None,
        "effect_source": a.next_best_action.effect_source,
        "uplift_version": a.next_best_action.uplift_version,
        "prior_expected_values": assigned.prior_expected_values if assigned else None,
        "churn_probability": a.churn_probability,
        "predicted_value": a.predicted_value,
        "rfm_segment": a.rfm_segment,
        "lifecycle_stage": a.lifecycle_stage,
        "frequency": view.frequency if view else None,
        "recency_days": view.recency_days if view else None,
        "favourite_category": view.favourite_category if view else None,
        "horizon_days": a.horizon_days,
        "model_versions": a.model_versions,
    }
