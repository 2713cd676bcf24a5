"""Training targets for SpatialNet: known poses -> maps at output resolution.

Coordinate frames. Input pixels are the network input's (x, y); output-map pixels
are at ``stride``. Pixel centres are aligned the way ``align_corners=False``
resizing aligns them: ``x_out = (x_in + 0.5) / stride - 0.5`` — the one conversion
used by the target builder and the decoder (``to_output_coords`` /
``to_input_coords``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def to_output_coords(xy: np.ndarray | torch.Tensor, stride: int) -> np.ndarray | torch.Tensor:
    """Input-pixel (x, y) -> output-map (x, y) at ``stride``."""
    return (xy + 0.5) / stride - 0.5


def to_input_coords(xy: np.ndarray | torch.Tensor, stride: int) -> np.ndarray | torch.Tensor:
    """Output-map (x, y) at ``stride`` -> input-pixel (x, y)."""
    return (xy + 0.5) * stride - 0.5


@dataclass(frozen=True)
class TargetConfig:
    """How ground truth is rendered into maps.

    Attributes:
        sigma: Gaussian spread in output pixels (seed 000: 2), ``C(p) = exp(-|p - p_j|^2 / sigma^2)``.
            Raising it widens every peak: easier to learn, worse for nearby people.
        stride: input pixels per output pixel.
        radius_sigmas: the Gaussian is drawn within this many sigmas (zero beyond).
    """

    sigma: float = 2.0
    stride: int = 4
    radius_sigmas: float = 3.0


@dataclass(frozen=True)
class SpatialTargets:
    """Targets for one image.

    Attributes:
        heatmaps: (J, H, W) float32, max over people of each joint's Gaussian.
        instance: (J, H, W) int64, the person whose Gaussian is largest at each pixel
            (-1 where every Gaussian is below 1e-3): pixel labels for PGG's grouping loss.
        joints: (K, J, 3) float32 (x, y, visibility) in output pixels.
    """

    heatmaps: np.ndarray
    instance: np.ndarray
    joints: np.ndarray


def build_spatial_targets(
    keypoints: np.ndarray, out_h: int, out_w: int, config: TargetConfig
) -> SpatialTargets:
    """Render heatmaps and instance labels from known poses.

    Args:
        keypoints: (K, J, 3) (x, y, visibility) in input pixels; visibility 0 = absent.
        out_h, out_w: output map size.
        config: rendering parameters.
    Returns:
        ``SpatialTargets``; joints with visibility 0 or outside the map draw nothing.
    """
    kp = np.asarray(keypoints, np.float32).reshape(-1, keypoints.shape[-2] if keypoints.size else 17, 3)
    k, j = kp.shape[:2]
    joints = kp.copy()
    joints[..., :2] = to_output_coords(kp[..., :2], config.stride)
    heat = np.zeros((j, out_h, out_w), np.float32)
    instance = np.full((j, out_h, out_w), -1, np.int64)
    r = int(np.ceil(config.radius_sigmas * config.sigma))
    for person in range(k):
        for joint in range(j):
            x, y, v = joints[person, joint]
            if v <= 0 or not (-0.5 <= x < out_w - 0.5 and -0.5 <= y < out_h - 0.5):
                continue
            x0, x1 = max(0, int(np.floor(x)) - r), min(out_w, int(np.ceil(x)) + r + 1)
            y0, y1 = max(0, int(np.floor(y)) - r), min(out_h, int(np.ceil(y)) + r + 1)
            xs = np.arange(x0, x1, dtype=np.float32)
            ys = np.arange(y0, y1, dtype=np.float32)
            g = np.exp(-((xs[None, :] - x) ** 2 + (ys[:, None] - y) ** 2) / config.sigma**2)
            patch = heat[joint, y0:y1, x0:x1]
            win = (g > patch) & (g > 1e-3)
            patch[win] = g[win]
            instance[joint, y0:y1, x0:x1][win] = person
    return SpatialTargets(heatmaps=heat, instance=instance, joints=joints)


def dense_embedding_targets(targets: SpatialTargets, tag_step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Ideal KE and spatial-vector-field maps for the people in ``targets``.

    Where person k owns a pixel of joint j (``instance``), the tag is ``k * tag_step``
    and the spatial vector field is ``p - centre_k`` (Eq. 5's target), so that
    ``SIE = p - S_hat(p) = centre_k``. Elsewhere both are 0. Used to check that the
    decoder inverts the target builder, and as dense supervision.

    Returns:
        tags (J, H, W) float32 and svf (2, H, W) float32 in output pixels.
    """
    j, h, w = targets.heatmaps.shape
    vis = targets.joints[..., 2] > 0
    count = np.maximum(vis.sum(1, keepdims=True), 1)
    centres = (targets.joints[..., :2] * vis[..., None]).sum(1) / count  # (K, 2)
    tags = np.where(targets.instance >= 0, targets.instance * tag_step, 0.0).astype(np.float32)
    svf = np.zeros((2, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # A pixel belongs to the owner of its dominant joint, the same rule PGG uses to pick a tag.
    dominant = targets.heatmaps.argmax(axis=0)
    owner = np.take_along_axis(targets.instance, dominant[None], axis=0)[0]
    for person in range(centres.shape[0]):
        m = owner == person
        svf[0][m] = xx[m] - centres[person, 0]
        svf[1][m] = yy[m] - centres[person, 1]
    return tags, svf


def confidence_weights(
    keypoints: np.ndarray, weights: np.ndarray, out_h: int, out_w: int, config: TargetConfig,
    background: float = 1.0,
) -> np.ndarray:  # fmt: skip
    """Per-pixel heatmap-loss weights for pseudo-labelled people (labels whose confidence is known).

    Inside the support of a joint's Gaussian (the pixels ``build_spatial_targets`` draws,
    heat > 1e-3) the weight of joint type j is that joint's weight, the largest where people
    overlap; a weight of 0 makes the pixels there count neither as a peak nor as background
    (a joint the labeller is unsure of). Every other pixel weighs ``background``.

    Args:
        keypoints: (K, J, 3) (x, y, visibility) in input pixels; every joint with finite x, y
            counts, visible or not (an unsure joint is absent from the targets but still ignored here).
        weights: (K, J) weights in [0, 1].
        out_h, out_w: output map size.
        config: the targets' rendering parameters (sigma, stride, radius).
        background: weight of pixels outside every joint's support.
    Returns:
        (J, out_h, out_w) float32 weights for ``posestream.models.losses.heatmap_loss``.
    """
    kp = np.asarray(keypoints, np.float32).reshape(-1, keypoints.shape[-2] if keypoints.size else 17, 3)
    w = np.asarray(weights, np.float32).reshape(kp.shape[:2])
    k, j = kp.shape[:2]
    xy = to_output_coords(kp[..., :2], config.stride)
    out = np.full((j, out_h, out_w), -1.0, np.float32)  # -1: no joint's support yet
    r = int(np.ceil(config.radius_sigmas * config.sigma))
    for person in range(k):
        for joint in range(j):
            x, y = xy[person, joint]
            if not (np.isfinite(x) and np.isfinite(y)) or not (
                -0.5 <= x < out_w - 0.5 and -0.5 <= y < out_h - 0.5
            ):
                continue
            x0, x1 = max(0, int(np.floor(x)) - r), min(out_w, int(np.ceil(x)) + r + 1)
            y0, y1 = max(0, int(np.floor(y)) - r), min(out_h, int(np.ceil(y)) + r + 1)
            xs = np.arange(x0, x1, dtype=np.float32)
            ys = np.arange(y0, y1, dtype=np.float32)
            support = np.exp(-((xs[None, :] - x) ** 2 + (ys[:, None] - y) ** 2) / config.sigma**2) > 1e-3
            patch = out[joint, y0:y1, x0:x1]
            patch[support] = np.maximum(patch[support], w[person, joint])
    out[out < 0] = background
    return out
