"""MoveNet MultiPose Lightning in PyTorch: MobileNetV2 (width 1.5) + FPN + separable-conv heads.

The network is rebuilt layer by layer from the TFLite graph of the pretrained model (see
``posestream.models.weights.MOVENET_MULTIPOSE``) and computes what that graph computes:

- input: RGB pixel values in [0, 255] as float, (B, 3, H, W), H and W multiples of 32;
  normalised inside as ``(x - mean) * scale - shift`` with the constants read from the
  file (mean 0, scale 1/127.5 stored as fp16, shift 1: x / 127.5 - 1).
- backbone: MobileNetV2 with width multiplier 1.5 (channels 48, 24, 40, 48, 96, 144, 240,
  480, last conv 1280), batch norm already folded into the convolutions by the
  converter, ReLU6. 3x3 convolutions use TensorFlow ``SAME`` padding, which for stride 2
  on even sizes pads 0 before and 1 after (bottom/right) -- reproduced exactly.
- FPN (top-down, to stride 4): 1x1 laterals on C5 (1280 -> 64), block 9 (96 -> 64),
  block 5 (48 -> 32) and block 2 (40 -> 24); each step upsamples x2 with bilinear
  resizing with half-pixel centres (TF ``align_corners=False, half_pixel_centers=True``,
  which is PyTorch's ``align_corners=False``), adds the lateral, and applies a separable
  conv (3x3 depthwise + bias, no activation; 1x1 pointwise + ReLU): 64->32, 32->24, 24->24.
- heads (``posestream.models.heads.MOVENET_HEADS``), each on the 24-channel stride-4 features:
  3x3 depthwise (no activation) -> 1x1 to 96 + ReLU -> 1x1 to the head's channels.

``forward`` returns the *raw* head maps plus ``"features"`` (B, 24, H/4, W/4); apply
``posestream.models.heads.activate_all(MOVENET_HEADS, out)`` for sigmoid heatmaps / ReLU box sizes.

Weights: ``MoveNetMultiPose.from_tflite(path)`` maps every constant of the TFLite file onto
the modules by name and shape, checks each convolution's stride, padding and fused
activation against the module, and fails loudly on any unmapped parameter or unused
tensor. Nothing from TensorFlow is needed (``posestream.models.tflite_reader``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posestream.models.heads import MOVENET_HEADS, HeadSpec
from posestream.models.tflite_reader import TFLiteModel

log = logging.getLogger(__name__)

__all__ = [
    "MoveNetMultiPose",
    "MoveNetWeightsError",
    "FrozenMoveNetFeatures",
    "FEATURE_CHANNELS",
    "FEATURE_STRIDE",
]

FEATURE_CHANNELS = 24
FEATURE_STRIDE = 4
INPUT_MULTIPLE = 32
_HEAD_HIDDEN = 96

# MobileNetV2 x1.5 inverted-residual settings: (expansion, out_channels, stride) per block.
_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 24, 1),                                       # expanded_conv
    (6, 40, 2), (6, 40, 1),                           # block_1..2   -> C2 (stride 4)
    (6, 48, 2), (6, 48, 1), (6, 48, 1),               # block_3..5   -> C3 (stride 8)
    (6, 96, 2), (6, 96, 1), (6, 96, 1), (6, 96, 1),   # block_6..9   -> C4 (stride 16)
    (6, 144, 1), (6, 144, 1), (6, 144, 1),            # block_10..12
    (6, 240, 2), (6, 240, 1), (6, 240, 1),            # block_13..15
    (6, 480, 1),                                      # block_16
)  # fmt: skip
_FIRST_CHANNELS = 48
_LAST_CHANNELS = 1280
_TAPS = {2: "c2", 5: "c3", 9: "c4"}  # block index -> pyramid level taken after it

# TFLite layer names (after prefix stripping) of the parts that are not in the backbone.
_FE = "center_net_mobile_net_v2fpn_feature_extractor/model_1/"
_HEAD_TFLITE: dict[str, tuple[str, str, str]] = {
    # head name: (depthwise, pointwise, output conv) layer names in the TFLite graph
    "keypoint_heatmap": (
        "kpt_heatmap_0/separable_conv2d_6/separable_conv2d/depthwise",
        "kpt_heatmap_0/separable_conv2d_6/separable_conv2d",
        "kpt_heatmap_0/conv2d_7/Conv2D",
    ),
    "keypoint_offset": (
        "kpt_offset_0/separable_conv2d_8/separable_conv2d/depthwise",
        "kpt_offset_0/separable_conv2d_8/separable_conv2d",
        "kpt_offset_0/conv2d_9/Conv2D",
    ),
    "center_heatmap": (
        "center_0/separable_conv2d_3/separable_conv2d/depthwise",
        "center_0/separable_conv2d_3/separable_conv2d",
        "center_0/conv2d_4/Conv2D",
    ),
    "keypoint_regression": (
        "kpt_regress_0/separable_conv2d_7/separable_conv2d/depthwise",
        "kpt_regress_0/separable_conv2d_7/separable_conv2d",
        "kpt_regress_0/conv2d_8/Conv2D",
    ),
    "box_scale": (
        "box_scale_0/separable_conv2d_4/separable_conv2d/depthwise",
        "box_scale_0/separable_conv2d_4/separable_conv2d",
        "box_scale_0/conv2d_5/Conv2D",
    ),
    "box_offset": (
        "box_offset_0/separable_conv2d_5/separable_conv2d/depthwise",
        "box_offset_0/separable_conv2d_5/separable_conv2d",
        "box_offset_0/conv2d_6/Conv2D",
    ),
}


class MoveNetWeightsError(ValueError):
    """The TFLite file does not map one-to-one onto the PyTorch modules."""


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow SAME padding and a fused activation (none / relu / relu6).

    Stride-1 kernels pad symmetrically through ``nn.Conv2d`` itself; strided kernels pad
    explicitly (asymmetric, bottom/right heavy) exactly as TF does.
    """

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: str = "none"
    ) -> None:
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(
            cin, cout, kernel, stride, padding=kernel // 2 if symmetric else 0, groups=groups, bias=True
        )
        if act not in ("none", "relu", "relu6"):
            raise ValueError(f"act must be none, relu or relu6, got {act!r}")
        self.act = act
        self._explicit_pad = not symmetric and kernel > 1
        # 3x3 stride 2 on an even size: SAME pads (0, 1), i.e. output i reads rows 2i..2i+2.
        # A 4x4 kernel whose first row and column are zero, with symmetric padding 1, reads
        # rows 2i-1..2i+2 with zero weight on 2i-1: the same sums without copying the input
        # into a padded buffer (the pad copy cost more than the extra zero taps).
        self._shifted_kernel = kernel == 3 and stride == 2

    @property
    def tflite_activation(self) -> str:
        return {"none": "NONE", "relu": "RELU", "relu6": "RELU6"}[self.act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._explicit_pad:
            h, w = x.shape[-2], x.shape[-1]
            if self._shifted_kernel and h % 2 == 0 and w % 2 == 0:
                weight = F.pad(self.weight, (1, 0, 1, 0))
                x = F.conv2d(x, weight, self.bias, self.stride, 1, 1, self.groups)
            else:
                k, s = self.kernel_size[0], self.stride[0]
                top, bottom = _same_pad(h, k, s)
                left, right = _same_pad(w, k, s)
                x = self._conv_forward(F.pad(x, (left, right, top, bottom)), self.weight, self.bias)
        else:
            x = self._conv_forward(x, self.weight, self.bias)
        if self.act == "relu6":
            return x.clamp_(0.0, 6.0)
        if self.act == "relu":
            return x.relu_()
        return x


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6 (skipped when expansion is 1), 3x3 depthwise + ReLU6,
    1x1 linear projection; identity shortcut when stride 1 and channels match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = TFConv2d(cin, hidden, 1, act="relu6") if expansion != 1 else None
        self.depthwise = TFConv2d(hidden, hidden, 3, stride, groups=hidden, act="relu6")
        self.project = TFConv2d(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y.add_(x) if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2 as MoveNet uses it; ``forward`` returns (C2, C3, C4, C5) at strides 4, 8, 16, 32.

    Args:
        first_channels: output channels of the stride-2 stem convolution.
        blocks: one ``(expansion, out_channels, stride)`` per inverted residual block; C2, C3
            and C4 are taken after blocks 2, 5 and 9 (the last block of strides 4, 8, 16).
        last_channels: output channels of the final 1x1 convolution (C5).
    """

    def __init__(
        self, first_channels: int, blocks: Sequence[tuple[int, int, int]], last_channels: int
    ) -> None:
        super().__init__()
        self.conv1 = TFConv2d(3, first_channels, 3, 2, act="relu6")
        layers = []
        cin = first_channels
        for expansion, cout, stride in blocks:
            layers.append(InvertedResidual(cin, cout, stride, expansion))
            cin = cout
        self.blocks = nn.ModuleList(layers)
        self.conv_last = TFConv2d(cin, last_channels, 1, act="relu6")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.conv1(x)
        c2 = c3 = c4 = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 2:
                c2 = x
            elif i == 5:
                c3 = x
            elif i == 9:
                c4 = x
        return c2, c3, c4, self.conv_last(x)


class MobileNetV2x15(MobileNetV2):
    """MultiPose Lightning's backbone (width 1.5)."""

    def __init__(self) -> None:
        super().__init__(_FIRST_CHANNELS, _BLOCKS, _LAST_CHANNELS)


class SeparableConv(nn.Module):
    """Keras ``SeparableConv2D``: 3x3 depthwise (+ bias, no activation) then 1x1 pointwise + act."""

    def __init__(self, cin: int, cout: int, act: str) -> None:
        super().__init__()
        self.depthwise = TFConv2d(cin, cin, 3, groups=cin)
        self.pointwise = TFConv2d(cin, cout, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MoveNetFPN(nn.Module):
    """Top-down pyramid from (C2, C3, C4, C5) to one 24-channel map at stride 4.

    Args:
        c2, c3, c4, c5: channels of the backbone's stride-4, 8, 16 and 32 outputs (the
            defaults are MultiPose Lightning's; Thunder's wider backbone passes its own).
    """

    def __init__(self, c2: int = 40, c3: int = 48, c4: int = 96, c5: int = _LAST_CHANNELS) -> None:
        super().__init__()
        self.lateral5 = TFConv2d(c5, 64, 1)
        self.lateral4 = TFConv2d(c4, 64, 1)
        self.lateral3 = TFConv2d(c3, 32, 1)
        self.lateral2 = TFConv2d(c2, 24, 1)
        self.smooth4 = SeparableConv(64, 32, "relu")
        self.smooth3 = SeparableConv(32, 24, "relu")
        self.smooth2 = SeparableConv(24, FEATURE_CHANNELS, "relu")

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        p = self.smooth4(self._up(self.lateral5(c5)) + self.lateral4(c4))
        p = self.smooth3(self._up(p) + self.lateral3(c3))
        return self.smooth2(self._up(p) + self.lateral2(c2))


class SeparableHead(nn.Module):
    """One output head: 3x3 depthwise (no act) -> 1x1 to 96 + ReLU -> 1x1 to ``spec.channels``."""

    def __init__(self, spec: HeadSpec, cin: int = FEATURE_CHANNELS, hidden: int = _HEAD_HIDDEN) -> None:
        super().__init__()
        self.spec = spec
        self.depthwise = TFConv2d(cin, cin, 3, groups=cin)
        self.pointwise = TFConv2d(cin, hidden, 1, act="relu")
        self.out = TFConv2d(hidden, spec.channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pointwise(self.depthwise(x)))


class MoveNetMultiPose(nn.Module):
    """MoveNet MultiPose Lightning; see the module docstring for the exact computation.

    Args:
        heads: head specs (default ``MOVENET_HEADS``); their names must be MoveNet's.
    Input:
        (B, 3, H, W) float RGB pixel values in [0, 255]; H, W multiples of 32.
    Output:
        dict with one raw (pre-activation) map per head, (B, spec.channels, H/4, W/4),
        and ``"features"``: (B, 24, H/4, W/4), the FPN output the heads read (ReLU'd).
    """

    def __init__(self, heads: Sequence[HeadSpec] = MOVENET_HEADS) -> None:
        super().__init__()
        self.head_specs = tuple(heads)
        unknown = [h.name for h in self.head_specs if h.name not in _HEAD_TFLITE]
        if unknown:
            raise ValueError(f"MoveNet has no heads named {unknown}; known: {sorted(_HEAD_TFLITE)}")
        self.backbone = MobileNetV2x15()
        self.fpn = MoveNetFPN()
        self.heads = nn.ModuleDict({h.name: SeparableHead(h) for h in self.head_specs})
        # Input normalisation (x - mean) * scale - shift; overwritten from the TFLite constants.
        self.register_buffer("input_mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("input_scale", torch.tensor(1.0 / 127.5))
        self.register_buffer("input_shift", torch.tensor(1.0))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``(x - mean) * scale - shift`` with one new tensor (the input is not modified)."""
        return images.sub(self.input_mean).mul_(self.input_scale).sub_(self.input_shift)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) pixel values -> (B, 24, H/4, W/4) FPN features."""
        h, w = images.shape[-2], images.shape[-1]
        if h % 32 != 0 or w % 32 != 0:  # INPUT_MULTIPLE (a literal for TorchScript)
            raise ValueError("input height and width must be multiples of 32, got {}x{}".format(h, w))  # noqa: UP032
        return self.fpn(*self.backbone(self.normalize(images)))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.forward_features(images)
        out = {name: head(features) for name, head in self.heads.items()}
        out["features"] = features
        return out

    # ---- weights ---------------------------------------------------------------------------

    @classmethod
    def from_tflite(cls, path: str | Path, heads: Sequence[HeadSpec] = MOVENET_HEADS) -> MoveNetMultiPose:
        """A model with the weights of the MoveNet MultiPose TFLite file at ``path`` (eval mode)."""
        model = cls(heads)
        load_tflite_weights(model, TFLiteModel.from_file(path))
        return model.eval()

    def tflite_layer_names(self) -> dict[str, TFConv2d]:
        """TFLite layer name (prefix-stripped, see ``tflite_layer_key``) -> module."""
        names: dict[str, TFConv2d] = {"model/Conv1/Conv2D": self.backbone.conv1}
        for i, block in enumerate(self.backbone.blocks):
            tf = "expanded_conv" if i == 0 else f"block_{i}"
            if block.expand is not None:
                names[f"model/{tf}_expand/Conv2D"] = block.expand
            names[f"model/{tf}_depthwise/depthwise"] = block.depthwise
            names[f"model/{tf}_project/Conv2D"] = block.project
        names["model/Conv_1/Conv2D"] = self.backbone.conv_last
        fpn = self.fpn
        names.update(
            {
                "conv2d/Conv2D": fpn.lateral5,
                "conv2d_1/Conv2D": fpn.lateral4,
                "conv2d_2/Conv2D": fpn.lateral3,
                "conv2d_3/Conv2D": fpn.lateral2,
                "separable_conv2d/separable_conv2d/depthwise": fpn.smooth4.depthwise,
                "separable_conv2d/separable_conv2d": fpn.smooth4.pointwise,
                "separable_conv2d_1/separable_conv2d/depthwise": fpn.smooth3.depthwise,
                "separable_conv2d_1/separable_conv2d": fpn.smooth3.pointwise,
                "separable_conv2d_2/separable_conv2d/depthwise": fpn.smooth2.depthwise,
                "separable_conv2d_2/separable_conv2d": fpn.smooth2.pointwise,
            }
        )
        for name, head in self.heads.items():
            dw, pw, out = _HEAD_TFLITE[name]
            names[dw], names[pw], names[out] = head.depthwise, head.pointwise, head.out
        return names


_LAYER_SUFFIX = re.compile(r"^(.*/(?:depthwise|Conv2D|separable_conv2d))\d*$")


def tflite_layer_key(weight_name: str, depthwise: bool) -> str | None:
    """The layer a (converter-fused, ';'-joined) weight tensor name belongs to.

    The converter joins the names of everything it fused (batch norm, neighbouring ops
    that happen to share a constant) with ';'. The layer is the first segment that ends
    in ``/depthwise`` for a depthwise kernel, or in ``/Conv2D`` / ``/separable_conv2d``
    for a regular kernel; a uniquifying numeric suffix is dropped, and so is the
    feature extractor's ``center_net_mobile_net_v2fpn_feature_extractor/model_1/`` prefix.
    """
    for segment in weight_name.split(";"):
        m = _LAYER_SUFFIX.match(segment)
        if not m:
            continue
        key = m.group(1)
        if key.endswith("/depthwise") != depthwise:
            continue
        return key.removeprefix(_FE)
    return None


def load_tflite_weights(model: MoveNetMultiPose, tfl: TFLiteModel) -> None:
    """Copy every convolution of the TFLite graph into ``model``; fail on any mismatch.

    Checks: each CONV_2D / DEPTHWISE_CONV_2D maps to exactly one module by its weight
    tensor's layer name, with equal weight and bias shapes and the same stride, SAME
    padding for 3x3 kernels and fused activation; every module receives weights; the
    three input-normalisation constants and the x2 resize factors are read; every other
    constant of the file is consumed only by the built-in post-processing that
    ``posestream.models.movenet_decode`` replaces. Anything else raises ``MoveNetWeightsError``.
    """
    modules = model.tflite_layer_names()
    assigned: dict[str, int] = {}
    consumed: set[int] = set()
    problems: list[str] = []
    for op in tfl.operators_of("CONV_2D", "DEPTHWISE_CONV_2D"):
        depthwise = op.op == "DEPTHWISE_CONV_2D"
        w_idx = tfl.source_constant(op.inputs[1])
        b_idx = tfl.source_constant(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else -1
        w_t = tfl.tensors[w_idx]
        key = tflite_layer_key(w_t.name, depthwise)
        if key is None or key not in modules:
            problems.append(
                f"unused tensor: op {op.index} {op.op} weight {w_t.name!r} (layer {key!r}) has no module"
            )
            continue
        if key in assigned:
            problems.append(f"layer {key!r} matched by ops {assigned[key]} and {op.index}")
            continue
        assigned[key] = op.index
        module = modules[key]
        weight = tfl.constant(w_idx)
        # OHWI (conv) or 1HWC (depthwise) -> PyTorch OIHW / (C, 1, H, W).
        weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
        if tuple(weight.shape) != tuple(module.weight.shape):
            problems.append(f"{key}: weight shape {weight.shape} != module {tuple(module.weight.shape)}")
            continue
        bias = tfl.constant(b_idx) if b_idx >= 0 else np.zeros(module.out_channels, np.float32)
        if bias.shape != (module.out_channels,):
            problems.append(f"{key}: bias shape {bias.shape} != ({module.out_channels},)")
            continue
        opts = op.options
        kernel = module.kernel_size[0]
        if opts.get("stride") != tuple(module.stride):
            problems.append(f"{key}: stride {opts.get('stride')} in the graph, {module.stride} in the module")
        if kernel > 1 and opts.get("padding") != "SAME":
            problems.append(f"{key}: padding {opts.get('padding')} in the graph; the module implements SAME")
        if opts.get("activation") != module.tflite_activation:
            problems.append(
                f"{key}: activation {opts.get('activation')} in the graph, {module.tflite_activation} in the module"
            )
        if depthwise and opts.get("depth_multiplier", 1) != 1:
            problems.append(f"{key}: depth multiplier {opts.get('depth_multiplier')} is not supported")
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            module.bias.copy_(torch.from_numpy(bias))
        consumed.update({w_idx, b_idx} - {-1})
    unmapped = sorted(set(modules) - set(assigned))
    problems += [f"unmapped module: {key} received no tensor" for key in unmapped]
    consumed |= _read_preprocessing(model, tfl, problems)
    consumed |= _check_resizes(tfl, problems)
    head_out_ops = {
        assigned[_HEAD_TFLITE[name][2]] for name in model.heads if _HEAD_TFLITE[name][2] in assigned
    }
    postprocessing = _postprocessing_constants(tfl, head_out_ops)
    leftover = [t for t in tfl.constants() if t.index not in consumed and t.index not in postprocessing]
    problems += [f"unused tensor: {t.index} {t.name!r} {t.shape}" for t in leftover]
    if problems:
        raise MoveNetWeightsError(
            "the TFLite file does not match the PyTorch MoveNet:\n  " + "\n  ".join(problems)
        )
    log.debug(
        "loaded %d convolutions; %d constants belong to the replaced post-processing",
        len(assigned),
        len(postprocessing),
    )


def _read_preprocessing(model: MoveNetMultiPose, tfl: TFLiteModel, problems: list[str]) -> set[int]:
    """Follow input -> CAST -> SUB(mean) -> MUL(scale) -> SUB(shift) and copy the constants."""
    (inp,) = tfl.inputs
    chain = []
    tensor = inp
    for expected in ("CAST", "SUB", "MUL", "SUB"):
        users = tfl.consumers(tensor)
        if len(users) != 1 or users[0].op != expected:
            problems.append(
                f"input preprocessing: expected {expected} after tensor {tensor}, found {[u.op for u in users]}"
            )
            return set()
        chain.append(users[0])
        tensor = users[0].outputs[0]
    nxt = tfl.consumers(tensor)
    if len(nxt) != 1 or nxt[0].op != "CONV_2D":
        problems.append("input preprocessing does not feed the first convolution")
        return set()
    mean_idx = tfl.source_constant(chain[1].inputs[1])
    scale_idx = tfl.source_constant(chain[2].inputs[1])
    shift_idx = tfl.source_constant(chain[3].inputs[1])
    mean = tfl.constant(mean_idx).reshape(-1)
    with torch.no_grad():
        model.input_mean.copy_(torch.from_numpy(np.broadcast_to(mean, (3,)).copy()).view(1, 3, 1, 1))
        model.input_scale.fill_(float(tfl.constant(scale_idx).reshape(())))
        model.input_shift.fill_(float(tfl.constant(shift_idx).reshape(())))
    return {mean_idx, scale_idx, shift_idx}


def _check_resizes(tfl: TFLiteModel, problems: list[str]) -> set[int]:
    """Each RESIZE_BILINEAR must be a x2 upsampling with half-pixel centres."""
    consumed: set[int] = set()
    resizes = tfl.operators_of("RESIZE_BILINEAR")
    if len(resizes) != 3:
        problems.append(f"expected 3 RESIZE_BILINEAR ops in the FPN, found {len(resizes)}")
    for op in resizes:
        if op.options.get("align_corners") or not op.options.get("half_pixel_centers"):
            problems.append(
                f"resize op {op.index}: {op.options}, expected half_pixel_centers without align_corners"
            )
        # size = SHAPE(x)[1:3] * factor: walk the size computation back to its constants.
        stack = [op.inputs[1]]
        factors = []
        while stack:
            t = stack.pop()
            if tfl.tensors[t].is_constant:
                consumed.add(t)
                continue
            prod = tfl.producer(t)
            if prod is None or prod.op == "SHAPE":
                continue
            if prod.op == "MUL":
                factors += [tfl.constant(i, np.int64) for i in prod.inputs if tfl.tensors[i].is_constant]
            stack.extend(i for i in prod.inputs if i >= 0)
        if len(factors) != 1 or factors[0].tolist() != [2, 2]:
            problems.append(
                f"resize op {op.index}: size factor {[f.tolist() for f in factors]}, expected [2, 2]"
            )
    return consumed


def _postprocessing_constants(tfl: TFLiteModel, head_out_ops: set[int]) -> set[int]:
    """Constants read only by ops downstream of the head outputs (the built-in decoder we replace)."""
    downstream: set[int] = set()
    frontier = [o for i in head_out_ops for o in tfl.operators[i].outputs]
    seen_tensors: set[int] = set()
    while frontier:
        t = frontier.pop()
        if t in seen_tensors:
            continue
        seen_tensors.add(t)
        for op in tfl.consumers(t):
            if op.index not in downstream:
                downstream.add(op.index)
                frontier.extend(op.outputs)
    # Shape-only ops (SHAPE of a head output feeds STRIDED_SLICE etc.) are reached above; also
    # count the DEQUANTIZE ops that widen constants for those ops.
    out: set[int] = set()
    for t in tfl.constants():
        users = tfl.consumers(t.index)
        widened = [u for u in users if u.op == "DEQUANTIZE"]
        final_users = [c for u in widened for c in tfl.consumers(u.outputs[0])] + [
            u for u in users if u.op != "DEQUANTIZE"
        ]
        if final_users and all(u.index in downstream for u in final_users):
            out.add(t.index)
    return out


class FrozenMoveNetFeatures(nn.Module):
    """MoveNet's pretrained MobileNetV2 + FPN as a frozen feature extractor (a SpatialNet backbone option).

    The weights come from the fetched TFLite file (``posestream.models.weights``) every time the
    module is built; they never train (``requires_grad`` off, always in eval mode, run
    under ``no_grad``) and are left out of ``state_dict`` (and filled back in on
    ``load_state_dict``), so a checkpoint of a network that contains this module holds
    only what we trained and none of Google's weights.

    Args:
        tflite_path: the MoveNet MultiPose TFLite file; None = ``posestream.models.weights.model_path()``.
        heads: names of MoveNet's pretrained heads to keep (frozen too) for ``head``, e.g.
            ``("keypoint_heatmap",)`` for SpatialNet's head transfer; () keeps none.
    Input: (B, 3, H, W) float RGB in [-1, 1] (``SpatialNet.normalise``), H and W multiples of 32.
    Output: (B, 24, H/4, W/4) FPN features (ReLU'd).
    """

    def __init__(self, tflite_path: str | Path | None = None, heads: Sequence[str] = ()) -> None:
        super().__init__()
        if tflite_path is None:  # the pinned file, hash-checked: the features must be the trained-on ones
            from posestream.models.weights import MOVENET_MULTIPOSE, WeightsError, verify

            try:
                tflite_path = verify(MOVENET_MULTIPOSE)
            except WeightsError as exc:
                raise MoveNetWeightsError(
                    f"{exc} (the frozen-MoveNet SpatialNet backbone is built from it)"
                ) from None
        if not Path(tflite_path).is_file():
            raise MoveNetWeightsError(
                f"MoveNet weights not found at {tflite_path}: run `posestream weights fetch`"
            )
        model = MoveNetMultiPose.from_tflite(tflite_path)
        unknown = sorted(set(heads) - set(model.heads))
        if unknown:
            raise ValueError(f"MoveNet has no heads {unknown}; known: {sorted(model.heads)}")
        model.heads = nn.ModuleDict({name: model.heads[name] for name in heads})  # the pyramid + these
        self.movenet = model.requires_grad_(False).eval()
        self.register_state_dict_post_hook(_drop_frozen_keys)
        self.register_load_state_dict_pre_hook(_fill_frozen_keys)

    def train(self, mode: bool = True) -> FrozenMoveNetFeatures:
        super().train(mode)
        self.movenet.eval()  # batch norm is folded; eval keeps it a pure function
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.movenet.forward_features((images + 1.0) * 127.5)

    def head(self, name: str, features: torch.Tensor) -> torch.Tensor:
        """A kept pretrained head's raw (pre-activation) maps (B, channels, H/4, W/4) on ``forward``'s features."""
        with torch.no_grad():
            return self.movenet.heads[name](features)


def _drop_frozen_keys(module: FrozenMoveNetFeatures, state_dict: dict, prefix: str, _meta: object) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "movenet.")]:
        del state_dict[key]


def _fill_frozen_keys(module: FrozenMoveNetFeatures, state_dict: dict, prefix: str, *_args: object) -> None:
    for key, value in module.movenet.state_dict().items():
        state_dict.setdefault(prefix + "movenet." + key, value)
