"""ROI-Align and bilinear point sampling on feature maps, via ``grid_sample`` (no torchvision here).

Coordinates are **feature cells** of the stride-4 map, continuous, ``(x, y)`` order, 0 = the
top-left *edge* of the map (``posestream.models.temporalnet``'s convention).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["roi_align", "sample_points"]


def roi_align(
    features: torch.Tensor, boxes: Sequence[torch.Tensor], output_size: tuple[int, int], sampling: int = 2
) -> torch.Tensor:
    """ROI-Align (Mask R-CNN) with bilinear sampling via ``grid_sample``.

    Each box is divided into ``output_size`` (ph, pw) bins; each bin averages
    ``sampling x sampling`` bilinear samples at the sub-bin centres. Matches
    ``torchvision.ops.roi_align(..., spatial_scale=1, sampling_ratio=sampling, aligned=True)``
    inside the map; outside it samples are clamped to the border (torchvision zeroes
    samples more than one cell outside).

    Args:
        features: (B, C, H, W).
        boxes: B tensors (K_b, 4) of (x1, y1, x2, y2) in cells (continuous, 0 = top-left edge).
        output_size: (ph, pw).
        sampling: samples per bin side.
    Returns:
        (sum K_b, C, ph, pw), boxes in batch order.
    """
    ph, pw = output_size
    _, c, h, w = features.shape
    outs = []
    steps_y = (torch.arange(ph * sampling, device=features.device, dtype=features.dtype) + 0.5) / (
        ph * sampling
    )
    steps_x = (torch.arange(pw * sampling, device=features.device, dtype=features.dtype) + 0.5) / (
        pw * sampling
    )
    for b, bx in enumerate(boxes):
        if len(bx) == 0:
            continue
        bx = bx.to(features.dtype)
        xs = bx[:, 0:1] + steps_x[None] * (bx[:, 2:3] - bx[:, 0:1])  # (K, pw*s) cells
        ys = bx[:, 1:2] + steps_y[None] * (bx[:, 3:4] - bx[:, 1:2])  # (K, ph*s)
        gx = (2.0 * xs / w - 1.0)[:, None, :].expand(-1, ph * sampling, -1)
        gy = (2.0 * ys / h - 1.0)[:, :, None].expand(-1, -1, pw * sampling)
        grid = torch.stack((gx, gy), dim=-1).reshape(1, -1, pw * sampling, 2)  # boxes stacked along y
        s = F.grid_sample(
            features[b : b + 1], grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        s = s.reshape(c, len(bx), ph * sampling, pw * sampling).transpose(0, 1)
        outs.append(F.avg_pool2d(s, sampling) if sampling > 1 else s)
    if not outs:
        return features.new_zeros((0, c, ph, pw))
    return torch.cat(outs)


def sample_points(maps: torch.Tensor, points: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Bilinear values of (B, C, H, W) ``maps`` at B tensors of (P_b, 2) (x, y) cell points -> (P_b, C) each."""
    _, c, h, w = maps.shape
    out = []
    for b, p in enumerate(points):
        if len(p) == 0:
            out.append(maps.new_zeros((0, c)))
            continue
        p = p.to(maps.dtype)
        grid = torch.stack((2.0 * p[:, 0] / w - 1.0, 2.0 * p[:, 1] / h - 1.0), dim=-1).reshape(1, 1, -1, 2)
        v = F.grid_sample(maps[b : b + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        out.append(v.reshape(c, -1).T)
    return out
