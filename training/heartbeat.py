"""A progress line while a blocking fit runs, so that a long silence does not read as a hang."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

# A line this often: a booster says nothing until it is done (the sample's LTV fit: ~55 s on
# a busy machine; lightgbm.dask's 2,000 churn rounds on the sample: 147 s).
EVERY_SECONDS = 20.0


@contextlib.contextmanager
def heartbeat(
    progress: Callable[[str], None], what: str, every: float | None = None
) -> Iterator[None]:
    """`still <what> (N s)` every `every` seconds (EVERY_SECONDS) while the block runs."""
    interval = EVERY_SECONDS if every is None else every
    stop, start = threading.Event(), time.monotonic()

    def beat() -> None:
        while not stop.wait(interval):
            progress(f"still {what} ({time.monotonic() - start:.0f} s)")

    thread = threading.Thread(target=beat, name="progress-heartbeat", daemon=True)
    try:  # started inside: a stop between start and try would leave it beating
        thread.start()
        yield
    finally:
        stop.set()
        if thread.ident is not None:
            thread.join()
