"""Gated minimum-cost bipartite matching (seed 000 Eq. 8, solved with the Hungarian method)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def assign(cost: np.ndarray, max_cost: float = np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match rows (tracks) to columns (detections) at minimum total cost, with gating.

    A pair is impossible when its cost is not finite (``inf``/NaN) or is > ``max_cost``;
    impossible pairs are never returned as matches. The solver sees them as one large
    finite value (bigger than any sum of possible costs) because
    ``linear_sum_assignment`` cannot handle a row or column with no finite entry; the
    consequence is that, among assignments, it first maximises the number of possible
    pairs and then minimises their total cost.

    Args:
        cost: (T, N) cost matrix, lower is better.
        max_cost: gate; pairs costing more stay unmatched.
    Returns:
        matches (M, 2) int64 of (track index, detection index), sorted by detection index;
        unmatched track indices (T - M,) int64, ascending;
        unmatched detection indices (N - M,) int64, ascending.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a (T, N) matrix, got shape {c.shape}")
    n_t, n_d = c.shape
    feasible = np.isfinite(c) & (c <= max_cost)
    if not feasible.any():
        return np.zeros((0, 2), np.int64), np.arange(n_t, dtype=np.int64), np.arange(n_d, dtype=np.int64)
    possible = c[feasible]
    big = (float(np.abs(possible).max()) + 1.0) * (min(n_t, n_d) + 1)
    rows, cols = linear_sum_assignment(np.where(feasible, c, big))
    keep = feasible[rows, cols]
    rows, cols = rows[keep], cols[keep]
    order = np.argsort(cols, kind="stable")
    matches = np.stack([rows[order], cols[order]], axis=1).astype(np.int64)
    track_free = np.ones(n_t, bool)
    track_free[rows] = False
    det_free = np.ones(n_d, bool)
    det_free[cols] = False
    return matches, np.flatnonzero(track_free).astype(np.int64), np.flatnonzero(det_free).astype(np.int64)
