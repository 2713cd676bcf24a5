"""One-Euro smoothing of the reported keypoints, per track and per joint (Casiez et al., CHI 2012).

The One-Euro filter is a first-order low-pass whose cutoff rises with speed: at rest it
smooths strongly (jitter is what a still person shows), when a joint moves fast it
follows closely (lag is what a moving person shows). For each joint, given the
detection ``x`` (frame pixels) at time ``t`` (seconds) and the previous filtered
position ``x_prev``, velocity ``dx_prev`` and time ``t_prev``::

    te     = t - t_prev                                  sampling period (s), from timestamps
    a(fc)  = 1 / (1 + 1 / (2 pi fc te))                  smoothing factor of a cutoff fc (Hz)
    dx     = a(d_cutoff) * (x - x_prev) / te + (1 - a(d_cutoff)) * dx_prev
    fc     = min_cutoff + beta * |dx| / scale            |dx| the joint's 2-D speed (px/s)
    x_hat  = a(fc) * x + (1 - a(fc)) * x_prev

``scale`` is the person's ``sqrt(box area)`` in pixels, so ``beta`` is per person scale
per second and one setting fits every resolution. Both coordinates of a joint share one
cutoff (the speed is the 2-D norm), so smoothing never bends a straight path.

What happens when a joint or a track is not seen (the state is ``TrackerState.filters``):

- the first time a joint is detected (score > ``keypoint_threshold``) its filter starts at
  the detection, velocity 0, and the detection is reported as it is;
- a joint at or below ``keypoint_threshold`` is reported as detected (its low score tells
  the user it is a guess) and leaves its filter untouched; a track unmatched in a frame
  leaves all its joints untouched. When the joint is seen again, ``te`` is the real time
  since its last update, so the longer the gap the closer ``a`` is to 1 and the more the
  new detection is trusted: after a gap of a few ``1 / min_cutoff`` the filter has in
  effect restarted. A timestamp that does not increase (``te <= 0``) restarts the joint
  (so a stream whose timestamps never advance, e.g. all 0, is reported unsmoothed);
- only people with a track id are smoothed (tentative tracks reported as -1 are not);
  a track's filter is dropped as soon as the track leaves the active set (lost,
  dropped, or its id replaced by a re-identified one), so the state stays bounded by
  ``max_tracks`` rows; a revived id starts a new filter.

Scores, boxes and track ids are reported unchanged, and the tracker's association keeps
comparing the raw detections: smoothing changes what is reported, never who is who.
"""

from __future__ import annotations

import math

import numpy as np

from posestream.models.poses import FramePoses
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.tracker.state import Filters

__all__ = ["one_euro_alpha", "smooth_poses"]


def one_euro_alpha(cutoff_hz: np.ndarray | float, period_s: np.ndarray | float) -> np.ndarray:
    """Smoothing factor ``1 / (1 + 1 / (2 pi cutoff period))`` of a first-order low-pass, in (0, 1)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, np.float64))
    return 1.0 / (1.0 + tau / np.asarray(period_s, np.float64))


def smooth_poses(
    filters: Filters | None,
    poses: FramePoses,
    active_ids: np.ndarray,
    *,
    min_cutoff: float,
    beta: float,
    d_cutoff: float,
    keypoint_threshold: float,
) -> tuple[Filters, FramePoses]:
    """One frame of One-Euro smoothing (see the module docstring).

    Args:
        filters: the filter state after the previous frame (``None``: none yet).
        poses: the frame's people with their track ids (``step``'s output), keypoints
            (N, 17, 3) in frame pixels, ``poses.timestamp`` in seconds.
        active_ids: the ids of the tracks active after this frame (-1 entries ignored);
            filters of other ids are dropped.
        min_cutoff, beta, d_cutoff, keypoint_threshold: as ``TrackerConfig.smooth_min_cutoff``,
            ``smooth_beta``, ``smooth_d_cutoff`` and ``keypoint_threshold``.
    Returns:
        The new filter state (rows sorted by id) and ``poses`` with smoothed (x, y) for the
        people with a track id; the score column, boxes and everything else unchanged.
    """
    if filters is None:
        filters = Filters.empty()
    keep_ids = np.unique(active_ids[active_ids >= 0])
    # Rows of the kept ids: their previous state, or NaN time (never updated) for new ones.
    n = len(keep_ids)
    x = np.zeros((n, NUM_KEYPOINTS, 2), np.float32)
    dx = np.zeros((n, NUM_KEYPOINTS, 2), np.float32)
    t = np.full((n, NUM_KEYPOINTS), np.nan, np.float64)
    if len(filters) and n:
        old_row = {int(i): r for r, i in enumerate(filters.ids)}
        for r, i in enumerate(keep_ids):
            o = old_row.get(int(i))
            if o is not None:
                x[r], dx[r], t[r] = filters.x[o], filters.dx[o], filters.t[o]

    keypoints = poses.keypoints.copy()
    row_of = {int(i): r for r, i in enumerate(keep_ids)}
    people = [(p, row_of[int(i)]) for p, i in enumerate(poses.track_ids) if int(i) in row_of]
    if people:
        det = np.array([p for p, _ in people])
        rows = np.array([r for _, r in people])
        now = float(poses.timestamp)
        raw = poses.keypoints[det, :, :2].astype(np.float64)  # (P, 17, 2)
        seen = poses.keypoints[det, :, 2] > keypoint_threshold  # (P, 17)
        x_prev, dx_prev, t_prev = x[rows].astype(np.float64), dx[rows].astype(np.float64), t[rows]
        te = now - t_prev  # NaN for a joint never updated
        restart = seen & ~(te > 0)  # first sighting, or a clock that did not advance
        update = seen & (te > 0)
        te_ok = np.where(update, te, 1.0)  # placeholder where not updated, never used
        a_d = one_euro_alpha(d_cutoff, te_ok)[..., None]
        dx_hat = a_d * (raw - x_prev) / te_ok[..., None] + (1.0 - a_d) * dx_prev
        box = poses.boxes[det].astype(np.float64)
        scale = np.sqrt(np.maximum((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]), 1.0))  # (P,)
        cutoff = min_cutoff + beta * np.linalg.norm(dx_hat, axis=2) / scale[:, None]
        a = one_euro_alpha(cutoff, te_ok)[..., None]
        x_hat = a * raw + (1.0 - a) * x_prev

        new_x = np.where(update[..., None], x_hat, np.where(restart[..., None], raw, x_prev))
        new_dx = np.where(update[..., None], dx_hat, np.where(restart[..., None], 0.0, dx_prev))
        x[rows] = new_x.astype(np.float32)
        dx[rows] = new_dx.astype(np.float32)
        t[rows] = np.where(seen, now, t_prev)
        # Report what the state holds (float32), so a run resumed from a stored state
        # reports exactly what an uninterrupted one does.
        keypoints[det, :, :2] = np.where(seen[..., None], x[rows], keypoints[det, :, :2])
    return Filters._owning(ids=keep_ids.astype(np.int64), x=x, dx=dx, t=t), poses.with_keypoints(keypoints)
