"""Small helpers for the words of progress lines and messages."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """`1 round`, `65 rounds`, `1,000 trials`: a booster that early stopping cut to one round
    read "1 rounds"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
