"""Words of progress lines."""

from __future__ import annotations

from crm_ltv.features.wording import plural


def test_one_is_singular_and_counts_get_thousands_separators():
    assert [plural(n, "round") for n in (0, 1, 2, 1000)] == [
        "0 rounds", "1 round", "2 rounds", "1,000 rounds"
    ]  # fmt: skip
