"""Small helpers for the words of progress lines and messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module before any command: pandas only if used
    import pandas as pd


def plural(count: int, noun: str) -> str:
    """`1 round`, `65 rounds`, `1,000 trials`: a booster that early stopping cut to one round
    read "1 rounds"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def minute_or_finer(moment: pd.Timestamp) -> str:
    """To the minute, finer where the moment is: `2025-06-30 00:00`, `2023-01-01 00:00:24`
    (a score's progress lines print it whole, and its warning cut it to the minute)."""
    return f"{moment:%Y-%m-%d %H:%M}" if moment == moment.floor("min") else str(moment)
