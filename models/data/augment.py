"""Geometric augmentation for pose training: scale, rotation, translation, horizontal flip.

One affine transform maps the source image onto the network input; keypoints go
through the same matrix, and a horizontal flip also swaps left/right keypoints
(``posestream.models.skeleton.flip_permutation``) so a left wrist stays a left wrist. Without
augmentation the transform is the aspect-preserving fit of the whole frame (centred,
zero padding), the same one inference uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from posestream.models.skeleton import flip_permutation


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation ranges.

    Attributes:
        flip_prob: probability of a horizontal flip.
        scale_range: (low, high) multiplier on the fitted scale; >1 zooms in.
        rotation_deg: rotation drawn uniformly in [-rotation_deg, rotation_deg].
        translate_frac: shift drawn uniformly within this fraction of the input size.
    """

    flip_prob: float = 0.5
    scale_range: tuple[float, float] = (0.75, 1.35)
    rotation_deg: float = 20.0
    translate_frac: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.flip_prob <= 1:
            raise ValueError("flip_prob must be in [0, 1]")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")


def fit_affine(src_w: int, src_h: int, dst_w: int, dst_h: int) -> np.ndarray:
    """(2, 3) matrix fitting a (src_w, src_h) frame into (dst_w, dst_h), aspect kept, centred.

    Pixel centres are aligned (the transform maps x + 0.5 linearly).
    """
    s = min(dst_w / src_w, dst_h / src_h)
    tx = (dst_w - src_w * s) / 2 + 0.5 * s - 0.5
    ty = (dst_h - src_h * s) / 2 + 0.5 * s - 0.5
    return np.array([[s, 0.0, tx], [0.0, s, ty]])


def random_affine(
    src_w: int, src_h: int, dst_w: int, dst_h: int, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """A random (2, 3) source->input matrix around the fitted one, and whether it flips."""
    base = fit_affine(src_w, src_h, dst_w, dst_h)
    scale = rng.uniform(*config.scale_range)
    angle = rng.uniform(-config.rotation_deg, config.rotation_deg)
    flip = bool(rng.random() < config.flip_prob)
    cx, cy = dst_w / 2 - 0.5, dst_h / 2 - 0.5
    rot = cv2.getRotationMatrix2D((cx, cy), angle, scale)  # about the input centre
    shift = rng.uniform(-config.translate_frac, config.translate_frac, 2) * (dst_w, dst_h)
    m = _compose(rot, base)
    m[:, 2] += shift
    if flip:
        m = _compose(np.array([[-1.0, 0.0, dst_w - 1.0], [0.0, 1.0, 0.0]]), m)
    return m, flip


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine ``a`` after ``b`` (both (2, 3))."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    return cv2.invertAffineTransform(m)


def transform_keypoints(keypoints: np.ndarray, m: np.ndarray, flip: bool) -> np.ndarray:
    """Apply a (2, 3) matrix to (..., 17, 3) keypoints; with ``flip`` also swap left/right."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    xy = out[..., :2]
    out[..., :2] = xy @ m[:, :2].T + m[:, 2]
    if flip:
        out = out[..., flip_permutation(), :]
    return out


def warp_image(rgb: np.ndarray, m: np.ndarray, dst_w: int, dst_h: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (dst_h, dst_w, 3) uint8 through ``m`` (bilinear, zero border)."""
    return cv2.warpAffine(rgb, m, (dst_w, dst_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
