"""Gated Hungarian assignment."""

import numpy as np
import pytest

from posestream.tracker.assignment import assign

INF = np.inf


def as_pairs(matches):
    return [tuple(int(v) for v in row) for row in matches]


def test_minimum_total_cost():
    matches, ut, ud = assign(np.array([[1.0, 2.0], [2.0, 10.0]]))
    assert as_pairs(matches) == [(1, 0), (0, 1)]  # 2 + 2 beats 1 + 10
    assert ut.size == 0 and ud.size == 0


def test_gate_leaves_impossible_pairs_unmatched():
    matches, ut, ud = assign(np.array([[1.0, 10.0], [10.0, 10.0]]), max_cost=5.0)
    assert as_pairs(matches) == [(0, 0)]
    assert ut.tolist() == [1] and ud.tolist() == [1]


def test_infinite_entries_and_rows_without_any_possible_pair():
    cost = np.array([[INF, INF, INF], [0.5, INF, 0.2], [INF, np.nan, INF]])
    matches, ut, ud = assign(cost)
    assert as_pairs(matches) == [(1, 2)]
    assert ut.tolist() == [0, 2] and ud.tolist() == [0, 1]


def test_prefers_more_possible_pairs_over_a_cheaper_single_one():
    matches, _, _ = assign(np.array([[0.1, 0.9], [0.5, INF]]))
    assert as_pairs(matches) == [(1, 0), (0, 1)]


def test_rectangular_and_empty():
    matches, ut, ud = assign(np.array([[3.0], [1.0], [2.0]]))
    assert as_pairs(matches) == [(1, 0)] and ut.tolist() == [0, 2] and ud.size == 0
    for shape in [(0, 3), (3, 0), (0, 0)]:
        matches, ut, ud = assign(np.zeros(shape))
        assert matches.shape == (0, 2) and len(ut) == shape[0] and len(ud) == shape[1]
    matches, ut, ud = assign(np.full((2, 2), INF))
    assert matches.shape == (0, 2) and ut.tolist() == [0, 1] and ud.tolist() == [0, 1]


def test_matches_are_sorted_by_detection_and_typed():
    cost = np.array([[5.0, 0.0, 5.0], [5.0, 5.0, 0.0], [0.0, 5.0, 5.0]])
    matches, _, _ = assign(cost)
    assert matches.dtype == np.int64
    assert as_pairs(matches) == [(2, 0), (0, 1), (1, 2)]


def test_rejects_non_matrix():
    with pytest.raises(ValueError, match="matrix"):
        assign(np.zeros(3))
