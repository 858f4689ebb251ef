"""RFM quintile scores and the named-segment grid."""

from __future__ import annotations

import numpy as np
import pytest

from crm_ltv.features.rfm import RFM_SEGMENTS, RfmCuts, quintile_scores, rfm_segments


def test_distinct_values_fall_into_five_equal_quintiles():
    assert quintile_scores(np.arange(1, 11)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_lower_is_better_reverses_the_scores():
    assert quintile_scores(np.arange(1, 11), higher_is_better=False).tolist() == [
        5, 5, 4, 4, 3, 3, 2, 2, 1, 1,
    ]  # fmt: skip


def test_a_large_block_of_ties_shares_the_lowest_score():
    frequency = np.array([1] * 60 + [2] * 20 + [5] * 20)  # 60% one-time buyers
    scores = quintile_scores(frequency)
    assert set(scores[:60]) == {1}
    assert scores[60:80].tolist() == [4] * 20
    assert scores[80:].tolist() == [5] * 20


def test_empty_and_single_inputs():
    assert quintile_scores(np.array([])).size == 0
    assert quintile_scores(np.array([7.0])).tolist() == [1]


@pytest.mark.parametrize(
    ("r", "f", "segment"),
    [
        (5, 5, "Champions"), (5, 4, "Champions"), (5, 1, "New"), (5, 2, "Potential Loyalist"),
        (4, 1, "Promising"), (4, 3, "Potential Loyalist"), (4, 4, "Loyal"), (3, 5, "Loyal"),
        (3, 3, "Need Attention"), (3, 1, "About to Sleep"), (3, 2, "About to Sleep"),
        (2, 3, "At Risk"), (1, 4, "At Risk"), (1, 5, "Can't Lose Them"), (2, 5, "Can't Lose Them"),
        (2, 1, "Hibernating"), (1, 2, "Hibernating"),
    ],
)  # fmt: skip
def test_grid_cells(r, f, segment):
    assert rfm_segments(np.array([r]), np.array([f]), np.array([5]))[0] == segment


def test_lost_is_the_lowest_corner_of_hibernating():
    r, f = np.array([1, 1, 1, 2]), np.array([1, 1, 1, 1])
    m = np.array([1, 2, 3, 1])
    assert list(rfm_segments(r, f, m)) == ["Lost", "Lost", "Hibernating", "Hibernating"]


def test_every_cell_maps_to_a_known_segment_and_all_segments_are_reachable():
    r, f, m = (g.ravel() for g in np.meshgrid(np.arange(1, 6), np.arange(1, 6), np.arange(1, 6)))
    segments = rfm_segments(r, f, m)
    assert list(segments.categories) == list(RFM_SEGMENTS)
    assert set(segments) == set(RFM_SEGMENTS)


def test_cut_points_read_back_only_with_four_of_each():
    """Four cut points make five quintiles: a model bundle's cuts with fewer would score every
    customer on a shorter scale without a word."""
    cuts = RfmCuts((-90.0, -30.0, -10.0, -5.0), (1.0, 2.0, 3.0, 5.0), (10.0, 20.0, 30.0, 40.0))
    assert RfmCuts.from_dict(cuts.to_dict()) == cuts
    short = cuts.to_dict() | {"recency": [-90, -30, -10]}
    with pytest.raises(ValueError, match="expected 4 cut points each"):
        RfmCuts.from_dict(short)
