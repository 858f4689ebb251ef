"""A serving worker stops once the server process that started it is gone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

WORKER = (
    "import logging, time; logging.basicConfig(); "
    "from crm_ltv.serving.watchdog import stop_with_parent; "
    "stop_with_parent(every=0.05); time.sleep(30)"
)


def _worker(server_pid: str) -> subprocess.Popen:
    env = {**os.environ, "CRM_LTV_SERVER_PID": server_pid}
    return subprocess.Popen([sys.executable, "-c", WORKER], env=env, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def test_a_worker_whose_server_died_before_it_watched_stops_at_once():
    """Review: a server killed while its workers were still importing left them running for
    good, each taking its adoptive parent for its server. `crm-ltv serve` names its own pid."""
    gone = _worker("999999999")  # no such process: the server died before this one watched
    _, said = gone.communicate(timeout=60)
    assert gone.returncode == -signal.SIGTERM, said
    assert "the server process (pid 999999999) that started this worker (pid " in said
    alive = _worker(str(os.getpid()))  # this test is its server, and stays
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            alive.wait(timeout=2)
        assert alive.returncode is None
    finally:
        alive.kill()
        alive.communicate()
