"""MoveNet SinglePose Thunder in PyTorch, rebuilt from its TFJS graph (no TensorFlow needed).

The network (``posestream.models.weights.MOVENET_THUNDER``) is the MultiPose family
(``posestream.models.backbones.movenet``) at width 1.75 with the single-person decoder built into
the graph, and this module computes what that graph computes:

- input: RGB pixel values in [0, 255] as float, (B, 3, 256, 256) (the graph takes int32
  NHWC and casts to float); normalised inside as ``(x - mean) * scale - shift`` with the
  constants read from the file (0, 1/127.5, 1: x / 127.5 - 1).
- backbone: MobileNetV2 x1.75 (channels 56, 32, 40, 56, 112, 168, 280, 560, last conv
  1280), batch norm folded, ReLU6, TensorFlow SAME padding; FPN to stride 4 with 1x1
  laterals (1280 -> 64, 112 -> 64, 56 -> 32, 40 -> 24), bilinear x2 (half-pixel centres),
  separable convs 64 -> 32 -> 24 -> 24; heads as MultiPose's (3x3 depthwise, 1x1 to 96 +
  ReLU, 1x1 out) for the keypoint heatmap, keypoint offset, centre heatmap and keypoint
  regression.
- decoder (the graph's own ops, reproduced): the centre heatmap is weighted by a fixed
  64x64 map that favours the image centre, its arg-max picks the person; the regressed
  joints at that cell give a position per joint; each joint heatmap is divided by
  (distance to that position + 1.8 cells) and arg-maxed; the offset at the chosen cell
  refines it. Output (B, 17, 3) as (y, x, score): y, x normalised to [0, 1] of the input,
  score the joint heatmap's sigmoid at the chosen cell.

``MoveNetThunder.from_tfjs(path)`` maps every convolution of the graph onto the modules by
weight name and shape, checks strides, padding and fused activations, reads the
preprocessing and decoder constants, and fails loudly on any op type it does not
implement or any float constant it did not consume.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posestream.models.backbones.movenet import MobileNetV2, MoveNetFPN, SeparableHead, TFConv2d
from posestream.models.heads import (
    MOVENET_CENTER_HEATMAP,
    MOVENET_KEYPOINT_HEATMAP,
    MOVENET_KEYPOINT_OFFSET,
    MOVENET_KEYPOINT_REGRESSION,
    HeadSpec,
)
from posestream.models.tfjs_reader import TFJSGraph

log = logging.getLogger(__name__)

__all__ = ["MoveNetThunder", "ThunderWeightsError", "THUNDER_INPUT_SIZE", "THUNDER_HEADS"]

THUNDER_INPUT_SIZE = 256
_GRID = THUNDER_INPUT_SIZE // 4
THUNDER_HEADS: tuple[HeadSpec, ...] = (
    MOVENET_KEYPOINT_HEATMAP,
    MOVENET_KEYPOINT_OFFSET,
    MOVENET_CENTER_HEATMAP,
    MOVENET_KEYPOINT_REGRESSION,
)

# MobileNetV2 x1.75: (expansion, out_channels, stride) per block.
_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 32, 1),
    (6, 40, 2), (6, 40, 1),
    (6, 56, 2), (6, 56, 1), (6, 56, 1),
    (6, 112, 2), (6, 112, 1), (6, 112, 1), (6, 112, 1),
    (6, 168, 1), (6, 168, 1), (6, 168, 1),
    (6, 280, 2), (6, 280, 1), (6, 280, 1),
    (6, 560, 1),
)  # fmt: skip
_FIRST_CHANNELS = 56
_LAST_CHANNELS = 1280

_PREFIX = "StatefulPartitionedCall/"
_FE = "center_net_mobile_net_v2fpn_feature_extractor/model_1/"
# head name -> TFJS layer names of (depthwise, pointwise, out)
_HEAD_TFJS: dict[str, tuple[str, str]] = {
    "keypoint_heatmap": ("kpt_heatmap_0/separable_conv2d_4", "kpt_heatmap_0/conv2d_5"),
    "keypoint_regression": ("kpt_regress_0/separable_conv2d_5", "kpt_regress_0/conv2d_6"),
    "center_heatmap": ("center_0/separable_conv2d_3", "center_0/conv2d_4"),
    "keypoint_offset": ("kpt_offset_0/separable_conv2d_6", "kpt_offset_0/conv2d_7"),
}
# Every op type of the graph and how many times it occurs: anything else is not implemented here.
_EXPECTED_OPS = Counter(
    {
        "Const": 180, "_FusedConv2D": 50, "AddV2": 19, "FusedDepthwiseConv2dNative": 17, "ExpandDims": 8,
        "Reshape": 8, "DepthwiseConv2dNative": 7, "Cast": 5, "Mul": 5, "Sub": 4, "GatherNd": 4, "Unpack": 3,
        "ResizeBilinear": 3, "Pack": 3, "Sigmoid": 2, "ArgMax": 2, "FloorDiv": 2, "SquaredDifference": 2,
        "ConcatV2": 2, "Placeholder": 1, "Squeeze": 1, "Sqrt": 1, "RealDiv": 1, "Identity": 1,
    }
)  # fmt: skip


class ThunderWeightsError(ValueError):
    """The TFJS graph does not map one-to-one onto the PyTorch Thunder."""


class _MobileNetV2x175(MobileNetV2):
    """Thunder's backbone (width 1.75)."""

    def __init__(self) -> None:
        super().__init__(_FIRST_CHANNELS, _BLOCKS, _LAST_CHANNELS)


class _ThunderFPN(MoveNetFPN):
    """Thunder's pyramid: MultiPose's, on the width-1.75 backbone's channels."""

    def __init__(self) -> None:
        super().__init__(c2=40, c3=56, c4=112, c5=_LAST_CHANNELS)


class MoveNetThunder(nn.Module):
    """MoveNet SinglePose Thunder; see the module docstring for the exact computation.

    Input: (B, 3, 256, 256) float RGB pixel values in [0, 255].
    Output of ``forward``: (B, 17, 3) float as (y, x, score), y and x in [0, 1] of the
    input (multiply by 256 for input pixels), COCO-17 order (``posestream.models.skeleton``).
    ``forward_maps`` gives the raw head maps, (B, C, 64, 64) each.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _MobileNetV2x175()
        self.fpn = _ThunderFPN()
        self.heads = nn.ModuleDict({h.name: SeparableHead(h) for h in THUNDER_HEADS})
        self.register_buffer("input_mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("input_scale", torch.tensor(1.0 / 127.5))
        self.register_buffer("input_shift", torch.tensor(1.0))
        # Decoder constants, overwritten from the graph: the centre prior (1, 1, 64, 64),
        # the distance softening (cells) and the cell -> normalised-coordinate factor.
        self.register_buffer("center_weight", torch.ones(1, 1, _GRID, _GRID))
        self.register_buffer("distance_eps", torch.tensor(1.8))
        self.register_buffer("coord_scale", torch.tensor(1.0 / _GRID))
        ys, xs = torch.meshgrid(torch.arange(_GRID), torch.arange(_GRID), indexing="ij")
        self.register_buffer("grid_y", ys.float().view(1, 1, _GRID, _GRID), persistent=False)
        self.register_buffer("grid_x", xs.float().view(1, 1, _GRID, _GRID), persistent=False)

    def forward_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, 256, 256) pixels -> raw head maps, each (B, C, 64, 64)."""
        if tuple(images.shape[-2:]) != (THUNDER_INPUT_SIZE, THUNDER_INPUT_SIZE):
            raise ValueError(f"Thunder takes 256x256 inputs, got {tuple(images.shape[-2:])}")
        x = images.sub(self.input_mean).mul_(self.input_scale).sub_(self.input_shift)
        features = self.fpn(*self.backbone(x))
        return {name: head(features) for name, head in self.heads.items()}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.forward_maps(images))

    def decode(self, maps: dict[str, torch.Tensor]) -> torch.Tensor:
        """The graph's single-person decoder: raw maps -> (B, 17, 3) as (y, x, score), normalised."""
        heat = torch.sigmoid(maps["keypoint_heatmap"])  # (B, 17, G, G)
        b, k, g, _ = heat.shape
        center = torch.sigmoid(maps["center_heatmap"]) * self.center_weight  # (B, 1, G, G)
        cidx = center.flatten(1).argmax(1)  # (B,)
        cy, cx = cidx // g, cidx % g
        batch = torch.arange(b, device=heat.device)
        reg = maps["keypoint_regression"][batch, :, cy, cx].view(b, k, 2)  # (dy, dx) cells
        ky = cy.to(heat.dtype)[:, None] + reg[..., 0]  # (B, 17)
        kx = cx.to(heat.dtype)[:, None] + reg[..., 1]
        dist = torch.sqrt(
            (self.grid_y - ky[:, :, None, None]) ** 2 + (self.grid_x - kx[:, :, None, None]) ** 2
        )  # (B, 17, G, G)
        kidx = (heat / (dist + self.distance_eps)).flatten(2).argmax(2)  # (B, 17)
        py, px = kidx // g, kidx % g
        joints = torch.arange(k, device=heat.device)
        off = maps["keypoint_offset"].view(b, k, 2, g, g)
        bi = batch[:, None].expand(b, k)
        ji = joints[None, :].expand(b, k)
        dy = off[bi, ji, 0, py, px]
        dx = off[bi, ji, 1, py, px]
        score = heat[bi, ji, py, px]
        y = (py.to(heat.dtype) + dy) * self.coord_scale
        x = (px.to(heat.dtype) + dx) * self.coord_scale
        return torch.stack([y, x, score], dim=-1)

    # ---- weights ---------------------------------------------------------------------------

    @classmethod
    def from_tfjs(cls, path: str | Path) -> MoveNetThunder:
        """A model with the weights of the Thunder TFJS ``model.json`` at ``path`` (eval mode)."""
        model = cls()
        load_tfjs_weights(model, TFJSGraph.from_file(path))
        return model.eval()

    def tfjs_weight_names(self) -> dict[str, tuple[TFConv2d, str]]:
        """TFJS weight-constant name (prefix-stripped) -> (module, "weight" | "bias")."""
        names: dict[str, tuple[TFConv2d, str]] = {}

        def bn(tf: str, module: TFConv2d, kind: str) -> None:  # converter-folded batch norm
            names[f"{_FE}model/{tf}_weights"] = (module, "weight")
            names[f"{_FE}model/{tf}_bn_offset"] = (module, "bias")
            del kind

        bn("Conv1/Conv2D", self.backbone.conv1, "conv")
        for i, block in enumerate(self.backbone.blocks):
            tf = "expanded_conv" if i == 0 else f"block_{i}"
            if block.expand is not None:
                bn(f"{tf}_expand/Conv2D", block.expand, "conv")
            bn(f"{tf}_depthwise/depthwise", block.depthwise, "dw")
            bn(f"{tf}_project/Conv2D", block.project, "conv")
        bn("Conv_1/Conv2D", self.backbone.conv_last, "conv")
        fpn = self.fpn
        for tf, module in (
            ("conv2d", fpn.lateral5), ("conv2d_1", fpn.lateral4),
            ("conv2d_2", fpn.lateral3), ("conv2d_3", fpn.lateral2),
        ):  # fmt: skip
            names[f"{_FE}{tf}/Conv2D/ReadVariableOp"] = (module, "weight")
            names[f"{_FE}{tf}/BiasAdd/ReadVariableOp"] = (module, "bias")
        for tf, sep in (
            ("separable_conv2d", fpn.smooth4), ("separable_conv2d_1", fpn.smooth3),
            ("separable_conv2d_2", fpn.smooth2),
        ):  # fmt: skip
            names[f"{_FE}{tf}/separable_conv2d/ReadVariableOp"] = (sep.depthwise, "weight")
            names[f"{_FE}{tf}/separable_conv2d_weights"] = (sep.pointwise, "weight")
            names[f"{_FE}{tf}/separable_conv2d_bn_offset"] = (sep.pointwise, "bias")
        for name, head in self.heads.items():
            sep, out = _HEAD_TFJS[name]
            names[f"{sep}/separable_conv2d/ReadVariableOp"] = (head.depthwise, "weight")
            names[f"{sep}/separable_conv2d/ReadVariableOp_1"] = (head.pointwise, "weight")
            names[f"{sep}/BiasAdd/ReadVariableOp"] = (head.pointwise, "bias")
            names[f"{out}/Conv2D/ReadVariableOp"] = (head.out, "weight")
            names[f"{out}/BiasAdd/ReadVariableOp"] = (head.out, "bias")
        return names


_ACT = {(): "none", ("BiasAdd",): "none", ("BiasAdd", "Relu"): "relu", ("BiasAdd", "Relu6"): "relu6"}


def load_tfjs_weights(model: MoveNetThunder, graph: TFJSGraph) -> None:
    """Copy every convolution of the Thunder graph into ``model``; fail on any mismatch.

    Checks: the graph's op types are exactly the ones this module implements; every conv /
    depthwise conv maps to one module by its weight constant's name, with equal shapes,
    strides, SAME padding for 3x3 kernels and the same fused activation; every module
    receives its weights (depthwise convs without a bias in the graph get a zero bias);
    the input normalisation and decoder constants are read and the decoder's grid
    constants have the values the PyTorch decoder assumes. Every float constant must be
    consumed. Anything else raises ``ThunderWeightsError``.
    """
    problems: list[str] = []
    ops = Counter(n.op for n in graph)
    if ops != _EXPECTED_OPS:
        problems.append(f"op types differ from the implemented graph: {dict(ops - _EXPECTED_OPS)} extra, "
                        f"{dict(_EXPECTED_OPS - ops)} missing")  # fmt: skip
    targets = model.tfjs_weight_names()
    consumed: set[str] = set()
    filled: set[tuple[int, str]] = set()
    for node in graph.ops("_FusedConv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
        depthwise = node.op != "_FusedConv2D"
        fused = tuple(node.attrs.get("fused_ops", []))
        params = node.inputs[1:3] if fused else node.inputs[1:2]
        module: TFConv2d | None = None
        for tensor in params:
            const = tensor.removeprefix(_PREFIX)
            if const not in targets:
                problems.append(f"{node.name}: weight {const!r} has no module")
                continue
            mod, kind = targets[const]
            if module is not None and mod is not module:
                problems.append(f"{node.name}: weight and bias map to different modules")
            module = mod
            value = graph.constant(tensor)
            if kind == "weight":  # HWIO -> OIHW; depthwise H W C 1 -> C 1 H W
                value = value.transpose(2, 3, 0, 1) if depthwise else value.transpose(3, 2, 0, 1)
            target = getattr(mod, kind)
            if tuple(value.shape) != tuple(target.shape):
                problems.append(f"{const}: shape {value.shape} != module {tuple(target.shape)}")
                continue
            with torch.no_grad():
                target.copy_(torch.from_numpy(np.ascontiguousarray(value, np.float32)))
            consumed.add(const)
            filled.add((id(mod), kind))
        if module is None:
            continue
        if not fused:
            with torch.no_grad():
                module.bias.zero_()
            filled.add((id(module), "bias"))
        strides = node.attrs.get("strides", [1, 1, 1, 1])
        if (strides[1], strides[2]) != tuple(module.stride):
            problems.append(f"{node.name}: stride {strides} in the graph, {module.stride} in the module")
        padding = node.attrs.get("padding")
        if module.kernel_size[0] > 1 and padding != "SAME":
            problems.append(f"{node.name}: padding {padding}; the module implements SAME")
        act = _ACT.get(fused)
        if act != module.act:
            problems.append(
                f"{node.name}: fused ops {fused} in the graph, activation {module.act} in the module"
            )
        if node.attrs.get("dilations", [1, 1, 1, 1]) != [1, 1, 1, 1]:
            problems.append(f"{node.name}: dilations are not supported")
    for const, (mod, kind) in targets.items():
        if (id(mod), kind) not in filled:
            problems.append(f"module parameter for {const!r} received no tensor")
    consumed |= _read_constants(model, graph, problems)
    leftover = [
        name.removeprefix(_PREFIX)
        for name, value in graph.constants.items()
        if value.dtype.kind == "f" and name.removeprefix(_PREFIX) not in consumed
    ]
    problems += [f"unused float constant: {name}" for name in leftover]
    if problems:
        raise ThunderWeightsError(
            "the TFJS graph does not match the PyTorch Thunder:\n  " + "\n  ".join(problems)
        )


def _read_constants(model: MoveNetThunder, graph: TFJSGraph, problems: list[str]) -> set[str]:
    """Input normalisation and decoder constants (checked against what ``decode`` assumes)."""

    def c(name: str) -> np.ndarray:
        return graph.constant(_PREFIX + name)

    def fold(name: str) -> np.ndarray:
        return graph.constant("ConstantFolding/" + _PREFIX + name)

    try:
        mean, scale, shift = c("Reshape"), c("truediv"), c("sub_1/y")
        weight = fold("truediv_2_recip")
        eps, coord = c("add_5/y"), c("Reshape_13")
        grid_y, grid_x = c("strided_slice_3"), c("strided_slice_4")
        ints = {n: c(n) for n in ("floordiv/y", "mul/y", "floordiv_1/y", "mul_1/y")}
        ups = [c(f"{_FE}up_sampling2d{s}/mul") for s in ("", "_1", "_2")]
    except Exception as exc:  # noqa: BLE001 - any missing constant is a mismatch
        problems.append(f"a preprocessing/decoder constant is missing: {exc}")
        return set()
    ys, xs = np.meshgrid(np.arange(_GRID), np.arange(_GRID), indexing="ij")
    if not (np.array_equal(grid_y[..., 0], ys) and np.array_equal(grid_x[..., 0], xs)):
        problems.append("the decoder's coordinate grids are not the 64x64 row/column indices")
    if any(int(v) != _GRID for v in ints.values()):
        problems.append(f"the decoder's arg-max grid width is {ints}, expected {_GRID}")
    if [u.tolist() for u in ups] != [[16, 16], [32, 32], [64, 64]]:
        problems.append(f"FPN resize sizes {[u.tolist() for u in ups]}, expected 16, 32, 64 (x2 each)")
    if not np.allclose(scale, scale.reshape(-1)[0]) or not np.allclose(coord, coord.reshape(-1)[0]):
        problems.append("per-channel input scale / per-axis coordinate scale is not supported")
    with torch.no_grad():
        model.input_mean.copy_(
            torch.from_numpy(np.broadcast_to(mean.reshape(-1), (3,)).copy()).view(1, 3, 1, 1)
        )
        model.input_scale.fill_(float(scale.reshape(-1)[0]))
        model.input_shift.fill_(float(shift))
        model.center_weight.copy_(
            torch.from_numpy(weight[..., 0].astype(np.float32)).view(1, 1, _GRID, _GRID)
        )
        model.distance_eps.fill_(float(eps))
        model.coord_scale.fill_(float(coord.reshape(-1)[0]))
    return {
        "Reshape", "truediv", "sub_1/y", "add_5/y", "Reshape_13", "strided_slice_3", "strided_slice_4",
        "ConstantFolding/" + _PREFIX + "truediv_2_recip",
    }  # fmt: skip


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (Thunder: about 6.2 M)."""
    return sum(p.numel() for p in model.parameters())
