"""One declarative spec per network output head, shared by networks, target builders and decoders.

A head is described once -- name, channels, stride, activation, channel layout -- and
everything that builds, trains or decodes it reads the spec instead of repeating the
numbers (openpifpaf's habit). Networks output *raw* (pre-activation) maps keyed by
``HeadSpec.name``; ``activate()`` applies the spec's activation, so parity checks, losses
(which may want logits) and decoders agree on what each map means.

Channel layouts are spelled out in ``layout`` because they differ between model
families: MoveNet stores 2-D vectors as interleaved (dy, dx) pairs per keypoint, i.e.
channel ``2k`` is the y component of keypoint ``k`` and ``2k + 1`` its x component.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from posestream.models.skeleton import NUM_KEYPOINTS

Activation = Literal["none", "sigmoid", "relu"]
_ACTIVATIONS: tuple[str, ...] = ("none", "sigmoid", "relu")


@dataclass(frozen=True)
class HeadSpec:
    """One output head.

    Attributes:
        name: key of the head's map in the network's output dict.
        channels: number of output channels.
        stride: input pixels per output cell (the map is (H / stride, W / stride)).
        activation: what turns the raw map into the quantity the decoder uses:
            ``"sigmoid"`` (probability maps), ``"relu"`` (non-negative sizes) or ``"none"``.
        layout: how the channels are ordered and in which units the values are.
    """

    name: str
    channels: int
    stride: int
    activation: Activation
    layout: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"head name must be a Python identifier, got {self.name!r}")
        if self.channels <= 0:
            raise ValueError(f"head {self.name!r}: channels must be positive, got {self.channels}")
        if self.stride <= 0:
            raise ValueError(f"head {self.name!r}: stride must be positive, got {self.stride}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"head {self.name!r}: activation must be one of {_ACTIVATIONS}, got {self.activation!r}"
            )


def activate(spec: HeadSpec, raw: torch.Tensor) -> torch.Tensor:
    """Apply the head's activation to its raw (B, channels, h, w) map."""
    if spec.activation == "sigmoid":
        return torch.sigmoid(raw)
    if spec.activation == "relu":
        return torch.relu(raw)
    return raw


def activate_all(specs: Iterable[HeadSpec], raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``activate`` for every head in ``specs`` found in ``raw``; other keys pass through."""
    out = dict(raw)
    for spec in specs:
        if spec.name in raw:
            out[spec.name] = activate(spec, raw[spec.name])
    return out


def head_dict(specs: Iterable[HeadSpec]) -> dict[str, HeadSpec]:
    """Specs by name; raises on duplicate names."""
    out: dict[str, HeadSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"duplicate head name {spec.name!r}")
        out[spec.name] = spec
    return out


# --- MoveNet MultiPose (CenterNet-style; seeds 003 and 004 layout) ---------------------------
MOVENET_STRIDE = 4
K2 = 2 * NUM_KEYPOINTS

MOVENET_KEYPOINT_HEATMAP = HeadSpec(
    "keypoint_heatmap", NUM_KEYPOINTS, MOVENET_STRIDE, "sigmoid",
    "17 maps, COCO order; probability that the cell holds that keypoint type",
)  # fmt: skip
MOVENET_KEYPOINT_OFFSET = HeadSpec(
    "keypoint_offset", K2, MOVENET_STRIDE, "none",
    "17 x (dy, dx) interleaved, in cells: keypoint = cell index + offset (seed 003 Eq. 4, R = 1 cell)",
)  # fmt: skip
MOVENET_CENTER_HEATMAP = HeadSpec(
    "center_heatmap", 1, MOVENET_STRIDE, "sigmoid",
    "1 map; probability that the cell is a person centre",
)  # fmt: skip
MOVENET_KEYPOINT_REGRESSION = HeadSpec(
    "keypoint_regression", K2, MOVENET_STRIDE, "none",
    "17 x (dy, dx) interleaved, in cells: keypoint = centre cell + vector (seed 004's pixel-wise regression)",
)  # fmt: skip
MOVENET_BOX_SCALE = HeadSpec(
    "box_scale", 2, MOVENET_STRIDE, "relu",
    "(height, width) of the person box in cells, read at the centre cell",
)  # fmt: skip
MOVENET_BOX_OFFSET = HeadSpec(
    "box_offset", 2, MOVENET_STRIDE, "none",
    "(dy, dx) from the centre cell to the box centre, in cells",
)  # fmt: skip

MOVENET_HEADS: tuple[HeadSpec, ...] = (
    MOVENET_KEYPOINT_HEATMAP,
    MOVENET_KEYPOINT_OFFSET,
    MOVENET_CENTER_HEATMAP,
    MOVENET_KEYPOINT_REGRESSION,
    MOVENET_BOX_SCALE,
    MOVENET_BOX_OFFSET,
)

# --- TemporalNet on MoveNet features (seed 000 section 3.3; posestream.models.temporalnet) ---------------
TEMPORAL_TVF = HeadSpec(
    "temporal_vector_field", 4, MOVENET_STRIDE, "none",
    "(dx, dy) forward TVF on frame t's grid (joint at t minus the person's centre at t-1), then "
    "(dx, dy) backward TVF on frame t-1's grid (joint at t-1 minus the centre at t); in cells / "
    "TemporalNetConfig.tvf_scale, as (x, y) -- not MoveNet's interleaved (dy, dx)",
)  # fmt: skip
TEMPORAL_HE = HeadSpec(
    "human_embedding", 128, 1, "none",
    "one L2-normalised Human Embedding per person box (ROI-Align on the stride-4 features); "
    "channels = TemporalNetConfig.embedding_dim (128 by default, 3072 in seed 000); stride 1 = per ROI",
)  # fmt: skip

TEMPORAL_HEADS: tuple[HeadSpec, ...] = (TEMPORAL_TVF, TEMPORAL_HE)
