"""Stacked hourglass network (Newell et al.), the backbone of seeds 000 and 002.

A stride-4 stem, then ``stacks`` hourglass modules. Each stack ends in a 1x1 head
producing ``out_channels`` maps; the prediction and the stack's features are mapped
back and added to the next stack's input (intermediate supervision: every stack's
output gets the loss, seed 002).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class HourglassConfig:
    """Size of the stacked hourglass.

    Attributes:
        stacks: number of hourglass modules. More stacks refine predictions further at
            proportional cost.
        width: feature channels inside the hourglasses. Wider is more accurate and slower.
        depth: downsamplings inside each hourglass (4 in the original). Deeper gives a larger
            receptive field; the input size must be divisible by ``4 * 2**depth``.
        blocks: residual blocks per level.
    """

    stacks: int = 2
    width: int = 64
    depth: int = 3
    blocks: int = 1

    def __post_init__(self) -> None:
        if self.stacks < 1 or self.width < 8 or self.depth < 1 or self.blocks < 1:
            raise ValueError(f"invalid hourglass size {self}")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 4 * 2**self.depth


class Residual(nn.Module):
    """Pre-activation bottleneck residual block."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1),
        )  # fmt: skip
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def _blocks(c: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[Residual(c, c) for _ in range(n)])


class Hourglass(nn.Module):
    """One hourglass: recursive downsample / upsample with skip branches; keeps the input size."""

    def __init__(self, depth: int, width: int, blocks: int) -> None:
        super().__init__()
        self.skip = _blocks(width, blocks)
        self.down = nn.Sequential(nn.MaxPool2d(2), _blocks(width, blocks))
        self.inner = Hourglass(depth - 1, width, blocks) if depth > 1 else _blocks(width, blocks)
        self.up = _blocks(width, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(x)))
        return self.skip(x) + nn.functional.interpolate(low, scale_factor=2.0, mode="nearest")


class StackedHourglass(nn.Module):
    """Stacked hourglass producing ``out_channels`` maps at stride 4 from every stack.

    Args:
        config: network size.
        out_channels: channels of each stack's prediction (all heads concatenated).
        features: optional module mapping the input (B, 3, H, W) to (B, ``feature_channels``,
            H/4, W/4) that replaces the image stem (e.g. ``FrozenMoveNetFeatures``).
    Input: (B, 3, H, W) float, H and W multiples of ``config.size_multiple``.
    Output: list of ``config.stacks`` predictions (B, out_channels, H/4, W/4) and the last
    stack's features (B, width, H/4, W/4) (what TemporalNet pools from).
    """

    def __init__(self, config: HourglassConfig, out_channels: int,
                 features: nn.Module | None = None, feature_channels: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.config = config
        w = config.width
        if features is None:
            self.stem = nn.Sequential(
                nn.Conv2d(3, w // 2, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(w // 2), nn.ReLU(inplace=True),
                Residual(w // 2, w), nn.MaxPool2d(2), Residual(w, w),
            )  # fmt: skip
        else:  # a given stride-4 feature extractor replaces the image stem
            self.stem = nn.Sequential(
                features, nn.Conv2d(feature_channels, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                Residual(w, w),
            )  # fmt: skip
        self.hourglasses = nn.ModuleList(
            Hourglass(config.depth, w, config.blocks) for _ in range(config.stacks)
        )
        self.features = nn.ModuleList(
            nn.Sequential(
                _blocks(w, 1), nn.Conv2d(w, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
            )
            for _ in range(config.stacks)
        )
        self.heads = nn.ModuleList(nn.Conv2d(w, out_channels, 1) for _ in range(config.stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(w, w, 1) for _ in range(config.stacks - 1))
        self.merge_preds = nn.ModuleList(nn.Conv2d(out_channels, w, 1) for _ in range(config.stacks - 1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        m = self.config.size_multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be a multiple of {m}")
        return self.stacks(self.stem(x))

    def stacks(
        self, x: torch.Tensor, base: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The hourglass stacks on the stem's output (B, width, H/4, W/4).

        ``base`` (B, out_channels, H/4, W/4), when given, is added to every stack's prediction
        before it is returned and merged into the next stack (a fixed prior the heads learn a
        residual to, e.g. MoveNet's pretrained heatmaps).
        """
        preds = []
        feat = x
        for i, (hg, fe, head) in enumerate(zip(self.hourglasses, self.features, self.heads, strict=True)):
            feat = fe(hg(x))
            pred = head(feat) if base is None else head(feat) + base
            preds.append(pred)
            if i < self.config.stacks - 1:
                x = x + self.merge_features[i](feat) + self.merge_preds[i](pred)
        return preds, feat
