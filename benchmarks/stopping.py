"""How a benchmark stops on a SIGTERM (a CI cancel, `timeout`): as on Ctrl-C."""

from __future__ import annotations

import signal
import sys


def stop_on_sigterm() -> None:
    """A SIGTERM ends the run through its `finally` blocks, which stop its servers and remove
    its scratch home: without this, both were left behind (the service reparented to init)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
