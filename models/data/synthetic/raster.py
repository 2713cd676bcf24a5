"""Raster helpers for the synthetic renderer.

Label crops are uint8 part codes; coordinates are cv2's (pixel centres at integers), drawn
with ``_SHIFT`` sub-pixel bits. Also the background painter.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from posestream.models.data.synthetic.body import _LAYER_OF
from posestream.models.data.synthetic.specs import BackgroundSpec, Perspective, _hsv_to_rgb

_SHIFT = 4  # sub-pixel bits for cv2 drawing: smooth motion without anti-aliasing
_ONE = 1 << _SHIFT


def _fp(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def _capsule(img: np.ndarray, p1: np.ndarray, p2: np.ndarray, r1: float, r2: float, code: int) -> None:
    """A tapered limb: round ends of radius r1 at p1 and r2 at p2 joined by a trapezoid."""
    r1, r2 = max(r1, 0.6), max(r2, 0.6)
    d = p2 - p1
    length = math.hypot(float(d[0]), float(d[1]))
    if length > 1e-3:
        n = np.array([-d[1], d[0]]) / length
        quad = np.array([p1 + n * r1, p2 + n * r2, p2 - n * r2, p1 - n * r1])
        cv2.fillConvexPoly(img, np.round(quad * _ONE).astype(np.int32), code, cv2.LINE_8, _SHIFT)
    cv2.circle(img, _fp(p1), int(round(r1 * _ONE)), code, -1, cv2.LINE_8, _SHIFT)
    cv2.circle(img, _fp(p2), int(round(r2 * _ONE)), code, -1, cv2.LINE_8, _SHIFT)


def _hull(img: np.ndarray, pts: np.ndarray, code: int) -> None:
    fixed = np.round(pts * _ONE).astype(np.int32)
    cv2.fillConvexPoly(img, cv2.convexHull(fixed), code, cv2.LINE_8, _SHIFT)


def _ellipse(img: np.ndarray, centre: np.ndarray, ax: float, ay: float, angle: float, code: int) -> None:
    axes = (max(1, int(round(ax * _ONE))), max(1, int(round(ay * _ONE))))
    cv2.ellipse(img, _fp(centre), axes, angle, 0, 360, code, -1, cv2.LINE_8, _SHIFT)


def _outline(col: np.ndarray, codes: np.ndarray) -> None:
    """Darken pixels on the border between layers (and the silhouette), in place."""
    lm = _LAYER_OF[codes]
    edge = np.zeros(codes.shape, bool)
    dh = lm[:, 1:] != lm[:, :-1]
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    dv = lm[1:] != lm[:-1]
    edge[1:] |= dv
    edge[:-1] |= dv
    edge &= codes > 0
    col[edge] *= 0.62


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float, wrap: bool = False) -> np.ndarray:
    """(h, w) float32 smooth noise in about [-1, 1] with blobs of ``cell`` pixels."""
    if wrap:  # blur a 3x3 tiling and keep the middle: the tile repeats seamlessly
        base = rng.standard_normal((h, w)).astype(np.float32)
        out = cv2.GaussianBlur(np.tile(base, (3, 3)), (0, 0), cell / 2.0)[h : 2 * h, w : 2 * w]
    else:
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
        base = rng.standard_normal((gh, gw)).astype(np.float32)
        out = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    out = out - out.mean()
    return (out / (3.0 * out.std() + 1e-6)).clip(-1, 1).astype(np.float32)


def _draw_background(
    spec: BackgroundSpec, bw: int, bh: int, ox: int, oy: int, width: int, height: int, persp: Perspective
) -> np.ndarray:
    """A (bh, bw, 3) uint8 canvas whose pixel (i, j) covers world [ox + i, ox + i + 1) x ..."""
    rng = np.random.default_rng(spec.seed)
    a = np.asarray(spec.color_a, np.float32)
    b = np.asarray(spec.color_b, np.float32)
    yw = np.arange(bh, dtype=np.float32) + oy + 0.5  # world rows
    xw = np.arange(bw, dtype=np.float32) + ox + 0.5
    horizon = persp.horizon_y
    img = np.empty((bh, bw, 3), np.float32)
    if spec.style == "room":
        floor_y = horizon + 0.3 * (height - horizon)
        t = np.clip((yw - (floor_y - height)) / max(height, 1), 0, 1)
        wall = a[None, :] * (1.08 - 0.18 * t[:, None])
        img[:] = wall[:, None, :]
        if rng.uniform() < 0.6:  # wallpaper stripes
            period = rng.uniform(12, 40)
            stripe = (np.floor(xw / period) % 2 == 1).astype(np.float32)
            img *= (1.0 - 0.06 * stripe)[None, :, None]
        for _ in range(int(rng.integers(2, 6))):  # doors, posters, windows
            rw = rng.uniform(0.06, 0.2) * width
            rh = rng.uniform(0.1, 0.35) * height
            rx = rng.uniform(xw[0], xw[-1])
            ry = floor_y - rh - rng.uniform(0, 0.25) * height
            col = _hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.7), rng.uniform(0.25, 0.9))
            p1 = (int(rx - ox), int(ry - oy))
            p2 = (int(rx + rw - ox), int(ry + rh - oy))
            cv2.rectangle(img, p1, p2, tuple(float(v) for v in col), -1)
            cv2.rectangle(img, p1, p2, tuple(float(v) * 0.5 for v in col), 2)
        floor_rows = yw >= floor_y
        depth = np.clip((yw - floor_y) / max(height - floor_y, 1), 0, 1.5)
        img[floor_rows] = (b[None, :] * (0.8 + 0.3 * depth[floor_rows, None]))[:, None, :]
        fy = int(round(floor_y - oy))
        # Tiles converge to the vanishing point at the horizon, as the people's scaling does.
        vp = (width / 2.0 - ox, horizon - oy)
        line = tuple(float(v) * 0.75 for v in b)
        tile_w = rng.uniform(0.06, 0.14) * width
        for k in range(-40, 41):
            xb = width / 2.0 + k * tile_w - ox
            bottom = (vp[0] + (xb - vp[0]) * (bh - vp[1]) / max(fy - vp[1], 1), bh)
            start = (vp[0] + (xb - vp[0]), float(fy))
            cv2.line(
                img, (int(start[0]), int(start[1])), (int(bottom[0]), int(bottom[1])), line, 1, cv2.LINE_AA
            )
        z = 1.0
        while True:
            yrow = horizon + (floor_y - horizon) / z
            if yrow < floor_y + 2:
                z -= 0.12
                if z <= 0.05:
                    break
                continue
            if yrow - oy > bh:
                break
            cv2.line(img, (0, int(yrow - oy)), (bw, int(yrow - oy)), line, 1, cv2.LINE_AA)
            z -= 0.12
            if z <= 0.05:
                break
        cv2.rectangle(img, (0, fy - 3), (bw, fy + 2), tuple(float(v) * 0.45 for v in a), -1)  # skirting
    elif spec.style == "outdoor":
        t = np.clip((yw - (horizon - height)) / max(height, 1), 0, 1)
        sky = a[None, :] * (0.85 + 0.2 * t[:, None]) + 20.0 * t[:, None]
        img[:] = sky[:, None, :]
        x = float(xw[0])
        while x < xw[-1]:  # skyline / trees on the horizon
            bwid = rng.uniform(0.03, 0.12) * width
            bht = rng.uniform(0.02, 0.16) * height
            tone = rng.uniform(0.35, 0.7)
            col = tuple(float(v) for v in (a * tone * 0.8 + b * 0.2))
            cv2.rectangle(
                img,
                (int(x - ox), int(horizon - bht - oy)),
                (int(x + bwid - ox), int(horizon - oy) + 1),
                col,
                -1,
            )
            x += bwid * rng.uniform(0.6, 1.1)
        ground = yw >= horizon
        depth = np.clip((yw - horizon) / max(height - horizon, 1), 0, 1.5)
        img[ground] = (b[None, :] * (0.7 + 0.45 * depth[ground, None]))[:, None, :]
        grass = _smooth_noise(rng, bh, bw, 3.0)
        img[ground] *= (1.0 + 0.12 * grass[ground])[..., None]
    elif spec.style == "noise":
        n1 = _smooth_noise(rng, bh, bw, rng.uniform(40, 120))
        n2 = _smooth_noise(rng, bh, bw, rng.uniform(8, 20))
        mix = np.clip(0.5 + 0.5 * n1 + 0.2 * n2, 0, 1)[..., None]
        img[:] = a * mix + b * (1.0 - mix)
    elif spec.style == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(14, 60)
        proj = xw[None, :] * math.cos(angle) + yw[:, None] * math.sin(angle)
        mix = (0.5 + 0.5 * np.sin(2 * math.pi * proj / period)) ** 3
        img[:] = a * mix[..., None] + b * (1.0 - mix[..., None])
    else:  # gradient
        angle = rng.uniform(0, 2 * math.pi)
        proj = (xw[None, :] - ox) * math.cos(angle) / max(bw, 1) + (yw[:, None] - oy) * math.sin(angle) / max(
            bh, 1
        )
        mix = np.clip(proj - proj.min(), 0, None)
        mix = mix / max(float(mix.max()), 1e-6)
        img[:] = a * mix[..., None] + b * (1.0 - mix[..., None])
    fine = _smooth_noise(rng, bh, bw, 1.5)
    img *= (1.0 + 0.04 * fine)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)
