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


def stop_with_parent(every: float = EVERY_SECONDS) -> threading.Thread:
    """Watch the parent process from a daemon thread; once this process has another parent
    (the first one died: it was adopted), stop as a SIGTERM stops a worker, its calls in
    flight answered. Polled, not PR_SET_PDEATHSIG, which fires when the forking thread ends."""
    parent = os.getppid()

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
