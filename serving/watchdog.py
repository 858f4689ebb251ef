"""A worker stops when the server process that started it is gone.

BentoML's supervisor (circus) starts each worker in a session of its own, so a SIGKILL of
`crm-ltv serve` (or the OOM killer choosing it) left both workers running with no supervisor:
ready to probes, scoring, logging decisions and holding the port, so a restarted `serve` was
refused (tester A). Killing the server's process group does not reach them either.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

logger = logging.getLogger("bentoml.crm_ltv")
EVERY_SECONDS = 1.0
# `crm-ltv serve` sets it to its own pid before it execs `bentoml serve` (the same process: the
# supervisor), so a worker knows its server even when that died while the worker was still
# importing (review: read later, the worker took its adoptive parent for its server).
SERVER_PID_ENV = "CRM_LTV_SERVER_PID"
# Without it (a Bento served by hand), the parent as soon as this module is imported.
_PARENT_AT_IMPORT = os.getppid()


def server_pid() -> int:
    """The process whose end stops this worker."""
    given = os.environ.get(SERVER_PID_ENV, "").strip()
    return int(given) if given.isdigit() else _PARENT_AT_IMPORT


def stop_with_parent(every: float = EVERY_SECONDS) -> threading.Thread:
    """Watch the parent process from a daemon thread; once this process has another parent
    (the first one died: it was adopted), stop as a SIGTERM stops a worker, its calls in
    flight answered. Polled, not PR_SET_PDEATHSIG, which fires when the forking thread ends."""
    parent = server_pid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        logger.error(
            "the server process (pid %d) that started this worker (pid %d) is gone: stopping",
            parent,
            os.getpid(),
        )
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="stop-with-parent", daemon=True)
    thread.start()
    return thread
