"""Drawing poses over frames, for visual inspection and annotated output videos.

Torch-free (numpy + cv2), so the gateway and the service's video writer can use it.
Keypoints are continuous pixel coordinates (pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``,
as in ``posestream.models.poses``); frames are RGB ``(H, W, 3)`` uint8, so every colour here is RGB.
"""

from __future__ import annotations

import cv2
import numpy as np

from posestream.models.poses import FramePoses
from posestream.models.skeleton import EDGES, KEYPOINT_NAMES, NUM_KEYPOINTS

RGB = tuple[int, int, int]

# Distinct, saturated colours that read on both light and dark backgrounds (a reordered
# tab20 / Glasbey mix); a track keeps its colour for the whole video.
TRACK_PALETTE: tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 255, 255),
)  # fmt: skip
UNTRACKED_COLOR: RGB = (200, 200, 200)
# Colours by body side when not colouring by track (the person's own left / right).
LEFT_COLOR: RGB = (255, 140, 0)
RIGHT_COLOR: RGB = (0, 170, 255)
CENTRE_COLOR: RGB = (80, 230, 80)

_SHIFT = 4
_ONE = 1 << _SHIFT
_SIDE = np.array(
    [1 if n.startswith("left_") else -1 if n.startswith("right_") else 0 for n in KEYPOINT_NAMES]
)
_HEAD_KPS = (0, 1, 2, 3, 4)


def track_color(track_id: int) -> RGB:
    """The palette colour of a track id (``UNTRACKED_COLOR`` for negative ids)."""
    if track_id < 0:
        return UNTRACKED_COLOR
    return TRACK_PALETTE[track_id % len(TRACK_PALETTE)]


def _side_color(side: int) -> RGB:
    return LEFT_COLOR if side > 0 else RIGHT_COLOR if side < 0 else CENTRE_COLOR


def _fp(x: float, y: float) -> tuple[int, int]:
    # Continuous coordinates -> cv2's (pixel centres at integers), in fixed point.
    return int(round((x - 0.5) * _ONE)), int(round((y - 0.5) * _ONE))


def _dim(color: RGB, f: float = 0.55) -> RGB:
    return (
        int(color[0] * f + 128 * (1 - f)),
        int(color[1] * f + 128 * (1 - f)),
        int(color[2] * f + 128 * (1 - f)),
    )


def draw_poses(
    rgb: np.ndarray,
    frame: FramePoses,
    min_score: float = 0.0,
    color_by_track: bool = True,
    solid_score: float | None = None,
    draw_ids: bool = True,
    draw_boxes: bool = False,
    thickness: int | None = None,
) -> np.ndarray:
    """Skeletons, keypoint dots and track ids over a copy of ``rgb``.

    Args:
        rgb: (H, W, 3) uint8 RGB frame; not modified.
        frame: the poses; keypoints (N, 17, 3) as (x, y, score) in pixels.
        min_score: keypoints with score <= this are not drawn, nor edges touching them.
        color_by_track: one palette colour per track id; otherwise colour by body side
            (left orange, right blue, centre green).
        solid_score: keypoints scoring >= this are drawn solid (filled dot, full line);
            those between ``min_score`` and it faint (hollow ring, thin dimmed line). For
            ground truth with visibility scores use ``min_score=0.5, solid_score=1.5`` to
            show occluded keypoints faint. ``None``: everything drawn is solid.
        draw_ids: write the track id in a tag above each head (skipped for untracked).
        draw_boxes: also draw each person's box.
        thickness: line width in pixels; ``None`` scales it with each person's size.
    Returns:
        (H, W, 3) uint8 annotated copy.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    out = np.ascontiguousarray(rgb).copy()
    kps = frame.keypoints
    solid_at = min_score if solid_score is None else solid_score
    for i in range(len(frame)):
        kp = kps[i]
        finite = np.isfinite(kp).all(axis=1)
        present = finite & (kp[:, 2] > min_score)
        if not present.any():
            continue
        solid = present & (kp[:, 2] >= solid_at)
        tid = int(frame.track_ids[i])
        base = track_color(tid)
        pts = kp[present, :2]
        size = float(max(np.ptp(pts[:, 1]), np.ptp(pts[:, 0]), 1.0))
        t = thickness or int(np.clip(round(size / 90.0), 1, 4))
        for a, b in EDGES:
            if not (present[a] and present[b]):
                continue
            col = base if color_by_track else _side_color(int(_SIDE[a] if _SIDE[a] == _SIDE[b] else 0))
            p, q = _fp(kp[a, 0], kp[a, 1]), _fp(kp[b, 0], kp[b, 1])
            if solid[a] and solid[b]:
                cv2.line(out, p, q, (0, 0, 0), t + 2, cv2.LINE_AA, _SHIFT)  # dark rim: readable anywhere
                cv2.line(out, p, q, col, t, cv2.LINE_AA, _SHIFT)
            else:
                cv2.line(out, p, q, _dim(col), max(1, t // 2), cv2.LINE_AA, _SHIFT)
        r = (t + 1.5) * _ONE
        for k in range(NUM_KEYPOINTS):
            if not present[k]:
                continue
            col = base if color_by_track else _side_color(int(_SIDE[k]))
            c = _fp(kp[k, 0], kp[k, 1])
            if solid[k]:
                cv2.circle(out, c, int(r), col, -1, cv2.LINE_AA, _SHIFT)
                cv2.circle(out, c, int(r), (0, 0, 0), 1, cv2.LINE_AA, _SHIFT)
            else:
                cv2.circle(out, c, int(r), _dim(col, 0.8), 1, cv2.LINE_AA, _SHIFT)
        if draw_boxes:
            x1, y1, x2, y2 = (float(v) for v in frame.boxes[i])
            cv2.rectangle(out, _fp(x1 + 0.5, y1 + 0.5), _fp(x2 - 0.5, y2 - 0.5), base, 1, cv2.LINE_AA, _SHIFT)
        if draw_ids and tid >= 0:
            _id_tag(out, str(tid), kp, present, base, size)
    return out


def _id_tag(out: np.ndarray, text: str, kp: np.ndarray, present: np.ndarray, color: RGB, size: float) -> None:
    """A filled tag with the id, centred above the head (or the topmost keypoint)."""
    head = [k for k in _HEAD_KPS if present[k]]
    x = float(np.mean(kp[head, 0])) if head else float(np.mean(kp[present, 0]))
    top = float(kp[present, 1].min())
    scale = float(np.clip(size / 250.0, 0.35, 0.7))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    pad = 2
    h, w = out.shape[:2]
    x0 = int(np.clip(round(x - tw / 2 - pad), 0, max(0, w - tw - 2 * pad)))
    y1 = int(np.clip(round(top - 0.08 * size - 2), th + 2 * pad, h))
    y0 = y1 - th - base - 2 * pad
    cv2.rectangle(out, (x0, y0), (x0 + tw + 2 * pad, y1), color, -1)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(
        out, text, (x0 + pad, y1 - base - pad + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1, cv2.LINE_AA
    )
