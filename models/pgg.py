"""Pose-Guided Grouping (PGG), Algorithm 1 of seed 000 (Jin et al., CVPR 2019).

Gaussian blurring mean shift (GBMS) run only on the pixels the pose mask selects:
the instance-agnostic mask ``M(p) = max_j C_j(p) > tau`` rules out background
pixels, whose embeddings are unsupervised noise, and cuts the O(N^2) affinity to the
few body-part pixels (seed 000 Fig. 6: about 1 % of full-image GBMS memory).

For each selected pixel the embedding is ``x = [KE, SIE / sie_unit]``:

- KE: the tag of the joint type that dominates the pixel (``argmax_j C_j(p)``) —
  with one tag channel per joint (seed 002) only that channel is supervised there;
- SIE: the predicted person centre (x, y) at p in output pixels, divided by
  ``sie_unit`` so that one unit of SIE distance is comparable to one unit of tag
  distance under the kernel bandwidth ``delta``.

Every iteration ``X <- X W D^-1`` with ``W_ij = exp(-delta^2 / 2 ||x_i - x_j||^2)``
and ``D = diag(W 1)`` is differentiable, so grouping losses can be applied to all
iterates during fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PGGConfig:
    """Parameters of Pose-Guided Grouping (defaults are seed 000's values).

    Attributes:
        tau: pose-mask threshold on the max over joint heatmaps. Raising it keeps
            fewer, more confident pixels (less memory, less context for grouping).
        delta: kernel bandwidth multiplier of the Gaussian affinity. Raising it makes
            the kernel narrower: only very close embeddings pull on each other, so
            groups merge less but also contract less per iteration.
        iterations: R, the number of mean-shift iterations. Raising it contracts each
            group further at linear extra cost.
        sie_unit: output pixels of SIE per embedding unit. Raising it weighs the
            spatial (centre) cue less against the tag cue.
        max_points: cap on selected pixels per image (highest heat first), bounding
            the N x N affinity memory. Raising it allows more memory.
    """

    tau: float = 0.2
    delta: float = 5.0
    iterations: int = 1
    sie_unit: float = 8.0
    max_points: int = 4096

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {self.tau}")
        if self.delta <= 0 or self.sie_unit <= 0:
            raise ValueError("delta and sie_unit must be positive")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {self.max_points}")


def gbms(x: torch.Tensor, delta: float, iterations: int) -> list[torch.Tensor]:
    """Gaussian blurring mean shift on one set of points.

    Args:
        x: (D, N) embeddings (column per point).
        delta: kernel bandwidth multiplier.
        iterations: R.
    Returns:
        [X(1), ..., X(R+1)], each (D, N); X(1) is ``x`` itself.
    """
    out = [x]
    for _ in range(iterations):
        cur = out[-1]
        d2 = torch.cdist(cur.T, cur.T).pow(2)  # (N, N)
        w = torch.exp(-(delta**2) / 2.0 * d2)
        # X W D^-1: column i becomes the affinity-weighted mean of all points (W symmetric).
        out.append((cur @ w) / w.sum(dim=0, keepdim=True))
    return out


@dataclass(frozen=True)
class PGGResult:
    """PGG output for one image.

    Attributes:
        index: (N,) long, flat pixel indices (y * W + x) of the selected pixels at output resolution.
        joint: (N,) long, the dominant joint type at each selected pixel.
        iterates: [X(1), ..., X(R+1)], each (D, N) with D = tag_dim + 2.
    """

    index: torch.Tensor
    joint: torch.Tensor
    iterates: list[torch.Tensor]


def pose_guided_grouping(
    heatmaps: torch.Tensor, tags: torch.Tensor, sie: torch.Tensor, config: PGGConfig
) -> list[PGGResult]:
    """Run PGG on a batch.

    Args:
        heatmaps: (B, J, H, W) joint confidence maps in [0, 1] at output resolution.
        tags: (B, J, H, W) or (B, J, T, H, W) keypoint embedding (one tag vector per joint type).
        sie: (B, 2, H, W) spatial instance embedding: predicted person centre (x, y) in output pixels.
        config: PGG parameters.
    Returns:
        One ``PGGResult`` per image (N varies per image; N may be 0).
    """
    b, j, h, w = heatmaps.shape
    if tags.dim() == 4:
        tags = tags.unsqueeze(2)
    t = tags.shape[2]
    if tags.shape != (b, j, t, h, w) or sie.shape != (b, 2, h, w):
        raise ValueError(
            f"shape mismatch: heatmaps {tuple(heatmaps.shape)}, tags {tuple(tags.shape)}, sie {tuple(sie.shape)}"
        )
    results = []
    for i in range(b):
        heat, joint = heatmaps[i].detach().reshape(j, -1).max(dim=0)  # (HW,)
        index = torch.nonzero(heat > config.tau).squeeze(1)
        if index.numel() > config.max_points:
            index = index[heat[index].topk(config.max_points).indices]
        joint = joint[index]
        tag = tags[i].reshape(j, t, -1)[joint, :, index]  # (N, T)
        centre = sie[i].reshape(2, -1)[:, index].T / config.sie_unit  # (N, 2)
        x = torch.cat([tag, centre], dim=1).T.contiguous()  # (D, N)
        iterates = (
            gbms(x, config.delta, config.iterations) if index.numel() else [x] * (config.iterations + 1)
        )
        results.append(PGGResult(index=index, joint=joint, iterates=iterates))
    return results


def pgg_memory_bytes(num_points: int, dim: int, iterations: int, bytes_per_value: int = 4) -> int:
    """Memory of the GBMS working set: the (N, N) affinity plus R+1 (D, N) iterates.

    Used to compare PGG (N = masked pixels) against full-image GBMS (N = H * W).
    """
    return bytes_per_value * (num_points * num_points + (iterations + 1) * dim * num_points)
