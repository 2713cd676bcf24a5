"""SpatialNet (seed 000 section 3.1-3.2): part detection and part-level grouping in one network.

A stride-4 backbone (stacked hourglass) predicts, per stack, the heads of
``spatialnet_heads``: joint heatmaps C, Keypoint Embedding K (one tag vector per
joint type, seed 002), the six auxiliary ordinal maps and the spatial vector field
S_hat (SIE = p - S_hat(p)). ``SpatialNet.loss`` applies Eq. 1-5 to every stack
(intermediate supervision) and, when PGG is on, the pull/push grouping loss on every
PGG iterate; ``decode_batch`` turns the last stack's maps into poses (with ``pose_prior``,
the body-shape prior stored with the weights, when the decoding asks for it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from posestream.models.backbones.hourglass import HourglassConfig, StackedHourglass
from posestream.models.decode import DecodeConfig, decode_spatial, merge_multiscale, sie_from_svf, unflip_maps
from posestream.models.heads import MOVENET_KEYPOINT_HEATMAP, HeadSpec, activate
from posestream.models.losses import (
    ORDINAL_TASKS,
    heatmap_loss,
    ke_loss,
    ordinal_loss,
    pgg_grouping_loss,
    sie_loss,
    tradeoff_weight,
)
from posestream.models.pgg import PGGConfig, pose_guided_grouping
from posestream.models.pose_prior import PosePrior
from posestream.models.skeleton import NUM_KEYPOINTS

STRIDE = 4
# The MoveNet head that ``SpatialNetConfig.movenet_heatmaps`` starts the heatmaps from.
MOVENET_HEATMAP_HEAD = MOVENET_KEYPOINT_HEATMAP.name


def spatialnet_heads(tag_dim: int = 1) -> tuple[HeadSpec, ...]:
    """SpatialNet's output heads, in channel order of the backbone's prediction."""
    return (
        HeadSpec("heatmaps", NUM_KEYPOINTS, STRIDE, "none",
                 "C_j per COCO keypoint; targets exp(-|p - p_j|^2 / sigma^2), max over people"),
        HeadSpec("tags", NUM_KEYPOINTS * tag_dim, STRIDE, "none",
                 f"KE: joint j's tag vector in channels [j * {tag_dim}, (j + 1) * {tag_dim})"),
        HeadSpec("aux", len(ORDINAL_TASKS), STRIDE, "none", "ordinal maps " + ", ".join(ORDINAL_TASKS)),
        HeadSpec("svf", 2, STRIDE, "none", "S_hat: (dx, dy) from the person centre to p, output pixels"),
    )  # fmt: skip


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (seed 000 section 3.4: det 1 : KE 1e-3 : aux 1e-4 : SIE 1e-4).

    Raising a weight makes the shared trunk spend more capacity on that term.
    ``pgg`` weighs the grouping loss applied to the PGG iterates during fine-tuning.
    ``det_background`` is seed 004's tradeoff heatmap loss: the weight of heatmap pixels
    outside the keypoint regions (``losses.tradeoff_weight``; seed 004: 0.1). 1 keeps seed
    000's unweighted Eq. 1; lowering it makes missing a joint cost more relative to faint
    background heat (fewer misses, more false candidates).
    """

    det: float = 1.0
    ke: float = 1e-3
    aux: float = 1e-4
    sie: float = 1e-4
    pgg: float = 1e-3
    det_background: float = 1.0

    def __post_init__(self) -> None:
        if not self.det_background > 0:
            raise ValueError(
                f"det_background must be > 0 (1 = no tradeoff, seed 004: 0.1), got {self.det_background}"
            )


@dataclass(frozen=True)
class SpatialNetConfig:
    """What SpatialNet predicts and how it is trained.

    Attributes:
        backbone: stacked hourglass size.
        features: what feeds the hourglass stacks. ``"image"``: the hourglass's own
            stride-4 stem on the RGB image (seeds 000 and 002; everything trains).
            ``"movenet"``: the frozen pretrained MoveNet MobileNetV2 + FPN features
            (``FrozenMoveNetFeatures``, 24 channels at stride 4) replace the stem, and only
            the hourglass stacks and heads train: far fewer steps to a usable model, at the
            cost of MoveNet's forward pass and of needing its fetched weights.
        movenet_heatmaps: head transfer (issue 18), only with ``features: movenet``: every
            stack's heatmaps are MoveNet's pretrained keypoint heatmap head (frozen, on the same
            frozen pyramid; its sigmoid, i.e. MoveNet's own heat in [0, 1]) plus a residual from
            the stack's head, whose heatmap channels start at zero, so an untrained network's
            heatmaps are MoveNet's. The targets stay ``TargetConfig``'s Gaussians: MoveNet's
            peaks are trained to a different width and height, and the residual learns that
            difference rather than the maps being rescaled by a fixed rule. Off (the default)
            keeps the heads' own heatmaps (the shipped weights).
        tag_dim: KE dimension per joint (1 in seed 002).
        use_ke, use_aux, use_sie: which embedding terms are trained (the ablation switches;
            a disabled head is still computed but gets no loss and is not used to decode).
        use_pgg: train with PGG's grouping loss and decode with PGG-refined embeddings.
        pgg: PGG parameters.
        weights: loss weights.
        decode: decoding parameters (``use_tags`` / ``sie_weight`` / ``use_pgg`` follow the
            switches above, see ``decode_config``).
    """

    backbone: HourglassConfig = field(default_factory=HourglassConfig)
    features: Literal["image", "movenet"] = "image"
    movenet_heatmaps: bool = False
    tag_dim: int = 1
    use_ke: bool = True
    use_aux: bool = True
    use_sie: bool = True
    use_pgg: bool = False
    pgg: PGGConfig = field(default_factory=PGGConfig)
    weights: LossWeights = field(default_factory=LossWeights)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        if not (self.use_ke or self.use_sie):
            raise ValueError("SpatialNet needs KE or SIE (or both) to group joints")
        if self.tag_dim < 1:
            raise ValueError(f"tag_dim must be >= 1, got {self.tag_dim}")
        if self.movenet_heatmaps and self.features != "movenet":
            raise ValueError("movenet_heatmaps (head transfer) needs features: movenet")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        m = self.backbone.size_multiple
        return m if self.features == "image" else math.lcm(m, 32)  # MoveNet needs multiples of 32

    def decode_config(self) -> DecodeConfig:
        """The decode parameters with the embedding switches applied."""
        d = self.decode
        return dataclasses.replace(
            d,
            sie_weight=d.sie_weight if self.use_sie else 0.0,
            use_tags=self.use_ke,
            use_pgg=self.use_pgg,
            pgg=self.pgg,
        )


@dataclass(frozen=True)
class SpatialBatchTargets:
    """Targets of a batch (see ``posestream.models.targets.build_spatial_targets``).

    Attributes:
        heatmaps: (B, J, H, W) float.
        joints: per image (K, J, 3) (x, y, visibility) in output pixels.
        instance: (B, J, H, W) long person labels for PGG (-1 none).
        heat_weight: (B, J, H, W) per-pixel heatmap-loss weights of pseudo-labelled images
            (``posestream.models.targets.confidence_weights``; 1 on exactly labelled ones), or None.
    """

    heatmaps: torch.Tensor
    joints: list[torch.Tensor]
    instance: torch.Tensor
    heat_weight: torch.Tensor | None = None


class SpatialNet(nn.Module):
    """Stacked-hourglass SpatialNet (on its own image stem or on frozen MoveNet features).

    Args:
        config: what it predicts and how it trains.
        movenet_weights: the MoveNet TFLite file when ``config.features == "movenet"``
            (None = the fetched file, ``posestream.models.weights.model_path()``).
    Input: (B, 3, H, W) float RGB normalised by ``normalise``; H, W multiples of
    ``config.size_multiple``.
    """

    def __init__(self, config: SpatialNetConfig, movenet_weights: str | Path | None = None) -> None:
        super().__init__()
        self.config = config
        # Fitted on the training poses, not learned by gradient: saved beside the state dict
        # (``posestream.models.train.export_weights``), used by ``decode_batch``.
        self.pose_prior: PosePrior | None = None
        self.heads = spatialnet_heads(config.tag_dim)
        out = sum(h.channels for h in self.heads)
        if config.features == "movenet":
            from posestream.models.backbones.movenet import FEATURE_CHANNELS, FrozenMoveNetFeatures

            frozen = FrozenMoveNetFeatures(
                movenet_weights, heads=(MOVENET_HEATMAP_HEAD,) if config.movenet_heatmaps else ()
            )
            self.backbone = StackedHourglass(
                config.backbone, out, features=frozen, feature_channels=FEATURE_CHANNELS
            )
            if config.movenet_heatmaps:  # the residual starts at zero: step 0's heatmaps are MoveNet's
                if self.heads[0].name != "heatmaps":
                    raise AssertionError("head transfer expects the heatmaps first in spatialnet_heads")
                with torch.no_grad():
                    for head in self.backbone.heads:
                        head.weight[:NUM_KEYPOINTS].zero_()
                        head.bias[:NUM_KEYPOINTS].zero_()
        else:
            self.backbone = StackedHourglass(config.backbone, out)

    @staticmethod
    def normalise(images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 or [0, 255] float RGB -> zero-centred float in [-1, 1]."""
        return images.float() / 127.5 - 1.0

    def split(self, pred: torch.Tensor) -> dict[str, torch.Tensor]:
        """One stack's (B, C, h, w) prediction -> activated maps by head name.

        ``tags`` comes out as (B, J, T, h, w).
        """
        out, start = {}, 0
        for spec in self.heads:
            out[spec.name] = activate(spec, pred[:, start : start + spec.channels])
            start += spec.channels
        b, _, h, w = pred.shape
        out["tags"] = out["tags"].reshape(b, NUM_KEYPOINTS, self.config.tag_dim, h, w)
        return out

    def forward(self, images: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """Per-stack maps by head name, and the last stack's (B, width, H/4, W/4) features."""
        if self.config.features == "movenet":
            return self.forward_frozen(self.frozen_features(images))
        preds, features = self.backbone(images)
        return [self.split(p) for p in preds], features

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen MoveNet pyramid's (B, 24, H/4, W/4) features of (B, 3, H, W) ``normalise``d images.

        Only with ``features: movenet``; no gradient flows through it, so training may cache it
        (``posestream.models.feature_cache``) and call ``forward_frozen`` instead of ``forward``.
        """
        if self.config.features != "movenet":
            raise ValueError("frozen_features needs features: movenet")
        m = self.config.size_multiple
        if images.shape[-1] % m or images.shape[-2] % m:
            raise ValueError(f"input size {tuple(images.shape[-2:])} must be a multiple of {m}")
        return self.backbone.stem[0](images)

    def forward_frozen(self, features: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """``forward`` from the frozen pyramid's features (``frozen_features``) on: what trains."""
        base = None
        if self.config.movenet_heatmaps:
            heat = activate(
                MOVENET_KEYPOINT_HEATMAP, self.backbone.stem[0].head(MOVENET_HEATMAP_HEAD, features)
            )
            rest = sum(h.channels for h in self.heads) - NUM_KEYPOINTS
            base = torch.cat([heat, heat.new_zeros(heat.shape[0], rest, *heat.shape[-2:])], dim=1)
        preds, out = self.backbone.stacks(self.backbone.stem[1:](features), base)
        return [self.split(p) for p in preds], out

    @torch.inference_mode()
    def infer(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The last stack's maps with the decoding config's test-time passes, and the features.

        One pass per ``decode.scales`` factor (the input resized, each side rounded to the size
        multiple) and, with ``decode.flip_test``, one more per scale on the mirror image;
        ``merge_multiscale`` averages heatmaps and SVF at the given input's output size and
        concatenates the tags. The plain pass always runs (its features are returned).

        Args:
            images: (B, 3, H, W) normalised input (``normalise``).
        Returns:
            maps by head name: ``heatmaps`` (B, J, H/4, W/4), ``tags`` (B, J, T * P, H/4, W/4)
            for P passes, ``svf`` (B, 2, H/4, W/4), ``aux`` of the plain pass; and the plain
            pass's (B, width, H/4, W/4) last-stack features (what TemporalNet reads).
        """
        d = self.config.decode
        stacks, features = self(images)
        last = stacks[-1]
        if d.scales == (1.0,) and not d.flip_test:
            return last, features
        h, w = images.shape[-2:]
        m = self.config.size_multiple
        passes = []
        for scale in d.scales:
            x, maps = images, last
            if scale != 1.0:
                size = (max(m, round(h * scale / m) * m), max(m, round(w * scale / m) * m))
                x = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
                maps = self(x)[0][-1]
            passes.append((maps["heatmaps"], maps["tags"], maps["svf"]))
            if d.flip_test:
                mirrored = self(x.flip(-1))[0][-1]
                passes.append(unflip_maps(mirrored["heatmaps"], mirrored["tags"], mirrored["svf"]))
        heat, tags, svf = merge_multiscale(passes, tuple(last["heatmaps"].shape[-2:]))
        return {**last, "heatmaps": heat, "tags": tags, "svf": svf}, features

    def loss(
        self, stacks: list[dict[str, torch.Tensor]], targets: SpatialBatchTargets
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms summed over stacks; ``"total"`` is what to minimise."""
        cfg, w = self.config, self.config.weights
        zero = stacks[0]["heatmaps"].sum() * 0.0
        terms = {"det": zero, "pull": zero, "push": zero, "aux": zero, "sie": zero, "pgg": zero}
        for maps in stacks:
            mask = tradeoff_weight(targets.heatmaps, w.det_background) if w.det_background != 1.0 else None
            if targets.heat_weight is not None:
                mask = targets.heat_weight if mask is None else mask * targets.heat_weight
            terms["det"] = terms["det"] + heatmap_loss(maps["heatmaps"], targets.heatmaps, mask)
            if cfg.use_ke:
                pull, push = ke_loss(maps["tags"], targets.joints)
                terms["pull"], terms["push"] = terms["pull"] + pull, terms["push"] + push
                if cfg.use_aux:
                    terms["aux"] = terms["aux"] + ordinal_loss(maps["aux"], targets.joints)
            if cfg.use_sie:
                terms["sie"] = terms["sie"] + sie_loss(maps["svf"], targets.joints)
        if cfg.use_pgg:
            last = stacks[-1]
            tags = last["tags"] if cfg.use_ke else torch.zeros_like(last["tags"])
            sie = sie_from_svf(last["svf"]) if cfg.use_sie else torch.zeros_like(last["svf"])
            # The mask comes from the ground-truth heatmaps during training so that the
            # grouping loss sees the body-part pixels from the first step on.
            results = pose_guided_grouping(targets.heatmaps, tags, sie, cfg.pgg)
            for i, res in enumerate(results):
                person = targets.instance[i].reshape(NUM_KEYPOINTS, -1)[res.joint, res.index]
                pull, push = pgg_grouping_loss(res.iterates, person)
                terms["pgg"] = terms["pgg"] + (pull + push) / len(results)
        terms["total"] = (
            w.det * terms["det"] + w.ke * (terms["pull"] + terms["push"]) + w.aux * terms["aux"]
            + w.sie * terms["sie"] + w.pgg * terms["pgg"]
        )  # fmt: skip
        return terms

    @torch.inference_mode()
    def decode_batch(self, maps: dict[str, torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Decode the last stack's maps of every image.

        Returns:
            per image: keypoints (P, 17, 3) (x, y, score) in network-input pixels, scores (P,).
        """
        dcfg = self.config.decode_config()
        heat = maps["heatmaps"].float().clamp(0, 1)
        return [
            decode_spatial(
                heat[i], maps["tags"][i].float(), maps["svf"][i].float(), dcfg, STRIDE, self.pose_prior
            )
            for i in range(heat.shape[0])
        ]
