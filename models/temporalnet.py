"""TemporalNet on MoveNet's stride-4 features: Human Embedding (HE) and Temporal Instance Embedding (TIE).

Seed 000, section 3.3, on the real-video path (DESIGN.md "Two model paths"): MoveNet's
backbone is frozen and TemporalNet's two branches read its 24-channel stride-4 FPN
features (``EstimatorOutput.features``) and keypoint heatmaps.

Coordinates. Inside this module everything is in **feature cells** of the stride-4 map,
continuous, ``(x, y)`` order, 0 = the top-left *edge* of the map (cell ``i`` spans
``[i, i + 1)``, its centre is ``i + 0.5``), the convention of ``Letterbox.boxes_to_features``.
Conversion to and from original-frame pixels goes through ``CellTransform``.

Branches:

- **HE** (seed 000 Eq. 6): low-level features = MoveNet's 24 FPN channels plus the input
  image average-pooled to stride 4 (3 colour channels: MoveNet's features are trained to
  find joints and carry little clothing colour, the strongest appearance cue), two 3x3
  convolutions, ROI-Align (``roi_align``, bilinear via ``grid_sample``) of each person's
  box (its keypoints with a margin) to ``roi_size`` bins, two linear layers, L2
  normalisation. ``embedding_dim`` is 128 by default, not the paper's 3072: the tracker
  state keeps one HE per track and per gallery entry, and 3072 float32 values make a
  50-person Redis state ~0.6 MB (``benchmarks/RESULTS.md``, tracker_step) for no measured gain
  on our data.
- **TIE** (Eq. 7): input = features, heatmaps and rendered SIE of frames t-1 and t,
  concatenated; a small encoder-decoder (strides 1, 2, 4, receptive field ~60 cells)
  outputs the forward temporal vector field (TVF) on frame t's grid and the backward TVF
  on frame t-1's grid. MoveNet has no SIE head, so the SIE channels are *rendered* from
  the decoded poses (``render_sie``): around each confident joint, ``(q - centre) /
  tvf_scale`` and a mask. The TVF is predicted as a residual on that SIE:
  ``TVF_fwd(q) = SIE_t(q) + delta_fwd(q)`` (``p_t - c_{t-1} = (p_t - c_t) + (c_t - c_{t-1})``),
  so the network only has to learn each person's centre motion between the frames.
  ``TIE = p - TVF(p)`` is the predicted centre in the other frame (``tie_from_tvf``).
  No PGG refinement of TIE on this path (open item).

Online inference keeps one ``TemporalContext`` per session: frame t-1's cropped features,
heatmaps and SIE in fp16 (bounded by the input size: 44 x 48 x 64 values, 270 kB, for a
4:3 frame at 256), serialisable with ``to_bytes``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posestream.models.backbones.movenet import FEATURE_CHANNELS
from posestream.models.geometry import person_centre
from posestream.models.heads import TEMPORAL_TVF
from posestream.models.skeleton import NUM_KEYPOINTS

log = logging.getLogger(__name__)

__all__ = [
    "CellTransform",
    "TemporalContext",
    "TemporalInference",
    "TemporalNet",
    "TemporalNetConfig",
    "human_boxes",
    "render_sie",
    "roi_align",
    "sample_points",
    "tie_from_tvf",
    "tracker_calibration",
    "triplet_loss",
    "write_tracker_calibration",
]

# The tracker's HE gate (``TrackerConfig.gate_he``) a checkpoint is run with when its card
# records no calibration of its own (``tracker_calibration``). Chosen for the synthetic-only
# predecessor of weights/temporalnet_movenet.pt (the real-clip fine-tuning's start; the shipped
# file runs with it too, not re-calibrated) on the validation seeds 5030-5032 (never the held-out ones):
# its HE of one person moves a lot when they turn or pass behind others, and the generic gate
# of 1.0 broke such tracks into new ids (136 ID switches vs 80), so HE only weighs in the
# cost and the motion terms gate.
CALIBRATED_GATE_HE = 4.0
RGB_MEAN, RGB_STD = 127.5, 64.0


@dataclass(frozen=True)
class TemporalNetConfig:
    """TemporalNet's architecture and the conventions its checkpoint was trained with.

    Attributes:
        input_size: the estimator scale (long side, px) whose features it was trained on;
            the pipeline feeds it this scale's features whatever scales the estimator runs
            (its own pass at this size, else one extra ``PoseEstimator.feature_pass``).
        embedding_dim: HE size (seed 000: 3072; 128 keeps the tracker state small).
        he_channels: channels of the HE convolutions before ROI-Align.
        roi_size: (height, width) bins of ROI-Align (people are tall).
        roi_sampling: bilinear samples per bin side.
        he_hidden: width of the HE's hidden linear layer.
        box_margin: fraction of the keypoint box added on each side for the HE box.
        keypoint_threshold: joints with score > this define boxes and the rendered SIE.
        tie_channels: channels of the TIE encoder at stride 1 (x1.33 deeper down).
        sie_radius: half-size (cells) of the square rendered around each joint in the SIE input.
        tvf_scale: cells per unit of the TVF and rendered SIE values (keeps them O(1)).
        feature_channels: channels of the stride-4 features it reads: MoveNet's FPN (24)
            on the real-video path, the last hourglass stack of SpatialNet (its width) on
            the seed-faithful path.
        backbone: which estimator's features and heatmaps it was trained on: ``"movenet"``
            or ``"spatialnet"`` (the pipeline refuses to pair it with the other one).
    """

    input_size: int = 256
    embedding_dim: int = 128
    he_channels: int = 48
    roi_size: tuple[int, int] = (8, 4)
    roi_sampling: int = 2
    he_hidden: int = 256
    box_margin: float = 0.12
    keypoint_threshold: float = 0.2
    tie_channels: int = 48
    sie_radius: int = 2
    tvf_scale: float = 8.0
    feature_channels: int = FEATURE_CHANNELS
    backbone: str = "movenet"

    def __post_init__(self) -> None:
        if self.embedding_dim < 2:
            raise ValueError(f"embedding_dim must be >= 2, got {self.embedding_dim}")
        if min(self.roi_size) < 1 or self.roi_sampling < 1:
            raise ValueError("roi_size and roi_sampling must be >= 1")
        if self.tvf_scale <= 0:
            raise ValueError(f"tvf_scale must be > 0, got {self.tvf_scale}")
        if self.feature_channels < 1:
            raise ValueError(f"feature_channels must be >= 1, got {self.feature_channels}")
        if self.backbone not in ("movenet", "spatialnet"):
            raise ValueError(f"backbone must be 'movenet' or 'spatialnet', got {self.backbone!r}")
        object.__setattr__(self, "roi_size", tuple(int(v) for v in self.roi_size))


# --------------------------------------------------------------------------------------
# ROI-Align and point sampling (no torchvision here)
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Pose-derived inputs
# --------------------------------------------------------------------------------------


def human_boxes(keypoints: np.ndarray, margin: float, min_score: float) -> np.ndarray:
    """HE boxes: (N, 17, 3) keypoints (any units) -> (N, 4) boxes around the joints with
    score > ``min_score`` (all joints when none passes), widened by ``margin`` of the box
    size on each side and to at least a third as wide as tall (a side view is narrow)."""
    kp = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    vis = kp[:, :, 2] > min_score
    vis = np.where(vis.any(axis=1, keepdims=True), vis, True)
    big = np.float32(1e9)
    x1 = np.where(vis, kp[:, :, 0], big).min(1)
    y1 = np.where(vis, kp[:, :, 1], big).min(1)
    x2 = np.where(vis, kp[:, :, 0], -big).max(1)
    y2 = np.where(vis, kp[:, :, 1], -big).max(1)
    bw, bh = x2 - x1, y2 - y1
    bw_min = np.maximum(bw, bh / 3.0)
    cx = (x1 + x2) / 2
    x1, x2 = cx - bw_min / 2, cx + bw_min / 2
    mx, my = bw_min * margin + 1e-3, bh * margin + 1e-3
    return np.stack((x1 - mx, y1 - my, x2 + mx, y2 + my), axis=1).astype(np.float32)


def render_sie(
    keypoints: np.ndarray, shape: tuple[int, int], radius: int, scale: float, min_score: float
) -> np.ndarray:
    """The SIE input channels of the TIE branch, rendered from grouped poses.

    Args:
        keypoints: (N, 17, 3) in cells (x, y, score); drawn in order, later people on top
            (pass them sorted by ascending score).
        shape: (H, W) of the map.
        radius: half-size of the square of cells drawn around each joint.
        scale: cells per unit of the offsets.
    Returns:
        (3, H, W) float32: ``(q - centre) / scale`` as (x, y) at each cell q near a joint
        of the person, and a 0/1 mask.
    """
    h, w = shape
    out = np.zeros((3, h, w), np.float32)
    kp = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    if not len(kp):
        return out
    centres = person_centre(kp, min_score)
    for person, c in zip(kp, centres, strict=True):
        for x, y, s in person:
            if s <= min_score:
                continue
            cx, cy = int(np.floor(x)), int(np.floor(y))
            x0, x1 = max(cx - radius, 0), min(cx + radius + 1, w)
            y0, y1 = max(cy - radius, 0), min(cy + radius + 1, h)
            if x0 >= x1 or y0 >= y1:
                continue
            qx = np.arange(x0, x1, dtype=np.float32) + 0.5
            qy = np.arange(y0, y1, dtype=np.float32) + 0.5
            out[0, y0:y1, x0:x1] = ((qx - c[0]) / scale)[None, :]
            out[1, y0:y1, x0:x1] = ((qy - c[1]) / scale)[:, None]
            out[2, y0:y1, x0:x1] = 1.0
    return out


def tie_from_tvf(points: np.ndarray, tvf: np.ndarray) -> np.ndarray:
    """TIE = location - TVF: the person's centre in the other frame, same units as the inputs."""
    return np.asarray(points, np.float32) - np.asarray(tvf, np.float32)


# --------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)
    )


class TemporalNet(nn.Module):
    """HE and TIE heads on frozen stride-4 features (module docstring).

    ``embed(features, rgb4, boxes)`` -> (K, E) unit HE rows;
    ``tvf(prev, cur)`` -> (B, 4, H, W) forward/backward TVF (layout of ``posestream.models.heads.TEMPORAL_TVF``).
    """

    def __init__(self, config: TemporalNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else TemporalNetConfig()
        c = cfg.he_channels
        self.he_stem = nn.Sequential(_conv(cfg.feature_channels + 3, c), _conv(c, c))
        ph, pw = cfg.roi_size
        self.he_head = nn.Sequential(
            nn.Flatten(), nn.Linear(c * ph * pw, cfg.he_hidden), nn.ReLU(inplace=True),
            nn.Linear(cfg.he_hidden, cfg.embedding_dim),
        )  # fmt: skip
        per_frame = cfg.feature_channels + NUM_KEYPOINTS + 3
        t = cfg.tie_channels
        t2 = t * 4 // 3
        self.tie_enc1 = nn.Sequential(_conv(2 * per_frame, t), _conv(t, t))
        self.tie_enc2 = nn.Sequential(_conv(t, t2, 2), _conv(t2, t2))
        self.tie_enc3 = nn.Sequential(_conv(t2, t2, 2), _conv(t2, t2, dilation=2), _conv(t2, t2, dilation=4))
        self.tie_dec2 = _conv(2 * t2, t2)
        self.tie_dec1 = _conv(t + t2, t)
        self.tie_out = nn.Conv2d(t, TEMPORAL_TVF.channels, 1)
        nn.init.zeros_(self.tie_out.weight)  # start at "no motion": TVF = rendered SIE
        nn.init.zeros_(self.tie_out.bias)

    # --- HE ---
    def he_features(self, features: torch.Tensor, rgb4: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) features + (B, 3, H, W) uint8/float stride-4 colour -> (B, he_channels, H, W)."""
        rgb = (rgb4.to(features.dtype) - RGB_MEAN) / RGB_STD
        return self.he_stem(torch.cat((features, rgb), dim=1))

    def embed(
        self, features: torch.Tensor, rgb4: torch.Tensor, boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Human Embeddings of B frames' person boxes ((K_b, 4) cells each) -> (sum K_b, E), unit rows."""
        maps = self.he_features(features, rgb4)
        rois = roi_align(maps, boxes, self.config.roi_size, self.config.roi_sampling)
        if len(rois) == 0:
            return maps.new_zeros((0, self.config.embedding_dim))
        return F.normalize(self.he_head(rois), dim=1)

    # --- TIE ---
    def tvf(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Temporal vector fields of frame pairs.

        Args:
            prev, cur: (B, C + 20, H, W) per-frame inputs of t-1 and t: features
                (``feature_channels``), keypoint heatmaps (17), rendered SIE (3: x, y, mask;
                ``render_sie``).
        Returns:
            (B, 4, H, W): forward TVF (x, y) on t's grid, backward TVF (x, y) on t-1's grid,
            in cells / ``tvf_scale``.
        """
        x = torch.cat((prev, cur), dim=1)
        e1 = self.tie_enc1(x)
        e2 = self.tie_enc2(e1)
        e3 = self.tie_enc3(e2)
        d2 = self.tie_dec2(torch.cat((e2, F.interpolate(e3, size=e2.shape[-2:], mode="bilinear")), 1))
        d1 = self.tie_dec1(torch.cat((e1, F.interpolate(d2, size=e1.shape[-2:], mode="bilinear")), 1))
        delta = self.tie_out(d1)
        skip = torch.cat((cur[:, -3:-1], prev[:, -3:-1]), dim=1)  # SIE_t for forward, SIE_{t-1} for backward
        return skip + delta

    # --- checkpoints ---
    def save(self, path: str | Path, card: dict[str, Any] | None = None) -> Path:
        """Write ``{"config", "state_dict" (fp32), "card"}`` with ``torch.save``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = asdict(self.config)
        torch.save({"config": cfg, "state_dict": self.state_dict(), "card": card or {}}, path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TemporalNet:
        """Load a checkpoint written by ``save`` (eval mode)."""
        return cls.load_with_card(path, device)[0]

    @classmethod
    def load_with_card(
        cls, path: str | Path, device: str | torch.device = "cpu"
    ) -> tuple[TemporalNet, dict[str, Any]]:
        """Load a checkpoint written by ``save`` (eval mode) and its card."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(TemporalNetConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
        return model.to(device).eval(), dict(ckpt.get("card") or {})


def tracker_calibration(card: dict[str, Any]) -> dict[str, float]:
    """The ``TrackerConfig`` fields a checkpoint is run with in the HE / TIE presets.

    A checkpoint's HE and TIE have their own scales (how far one person's HE drifts, how
    good its motion predictions are), so the tracker's weights and gates for them are chosen
    per checkpoint on validation clips and stored in its card under ``"tracker"``
    (``{"settings": {field: value}, ...}``, written by ``benchmarks/tracking_ablation.py
    --calibrate``). A card without one gets ``{"gate_he": CALIBRATED_GATE_HE}``.
    """
    settings = (card.get("tracker") or {}).get("settings")
    return dict(settings) if settings else {"gate_he": CALIBRATED_GATE_HE}


def write_tracker_calibration(path: str | Path, calibration: dict[str, Any]) -> None:
    """Store ``calibration`` (``{"settings": {...}, ...}``) as the card's ``"tracker"`` entry
    of the checkpoint at ``path``, leaving its weights and the rest of its card unchanged."""
    if not isinstance(calibration.get("settings"), dict) or not calibration["settings"]:
        raise ValueError("a tracker calibration needs a non-empty 'settings' dict")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["card"] = {**(ckpt.get("card") or {}), "tracker": calibration}
    torch.save(ckpt, path)


def triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, negatives: torch.Tensor | None = None
) -> torch.Tensor:
    """Seed 000 Eq. 6 over every valid triplet of the batch (same-id anchor/positive,
    other-id negative), squared L2 on unit HE, averaged over the triplets that still
    violate the margin ("batch all"); 0 when there is none.

    ``negatives``: optional (N, N) bool, which (anchor, negative) pairs are known to be
    different people (unlabelled real video: only people of the same frame are); default
    every pair with different labels.
    """
    d = torch.cdist(embeddings, embeddings).pow(2)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same if negatives is None else ~same & negatives
    loss = d[:, :, None] - d[:, None, :] + margin  # [a, p, n]
    valid = pos[:, :, None] & neg[:, None, :]
    loss = loss.clamp(min=0) * valid
    active = (loss > 1e-9).sum()
    return loss.sum() / active.clamp(min=1)


# --------------------------------------------------------------------------------------
# Per-frame context for online inference
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellTransform:
    """Frame pixels <-> cells of a (cropped) stride-4 map: ``cell = (frame * scale + offset) / stride``.

    Attributes:
        scale_x, scale_y: the letterbox's resize factors.
        offset_x, offset_y: input-pixel offset of the frame inside the crop.
        stride: input pixels per cell.
    """

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    stride: float = 4.0

    def to_cells(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float32)
        return np.stack(
            (
                (xy[..., 0] * self.scale_x + self.offset_x) / self.stride,
                (xy[..., 1] * self.scale_y + self.offset_y) / self.stride,
            ),
            axis=-1,
        )

    def vectors_to_frame(self, v: np.ndarray) -> np.ndarray:
        """(..., 2) displacement vectors in cells -> frame pixels."""
        v = np.asarray(v, np.float32)
        return np.stack((v[..., 0] * self.stride / self.scale_x, v[..., 1] * self.stride / self.scale_y), -1)

    @classmethod
    def from_letterbox(cls, lb: Any, crop_x: int = 0, crop_y: int = 0) -> CellTransform:
        """From a ``posestream.models.estimator.Letterbox`` and the crop's top-left cell."""
        return cls(
            lb.scale_x,
            lb.scale_y,
            lb.pad_x - crop_x * lb.stride,
            lb.pad_y - crop_y * lb.stride,
            float(lb.stride),
        )


@dataclass(frozen=True, eq=False)
class TemporalContext:
    """What TIE at frame t needs of frame t-1: its TIE inputs, cropped to the frame, fp16.

    Attributes:
        inputs: (44, h, w) float16: features (24), keypoint heatmaps (17), rendered SIE (3).
        transform: frame pixels <-> cells of ``inputs``.
        seq: the session's frame sequence number it belongs to.
    """

    inputs: np.ndarray
    transform: CellTransform
    seq: int

    @property
    def nbytes(self) -> int:
        return int(self.inputs.nbytes)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        t = self.transform
        np.savez(
            buf, inputs=self.inputs.astype(np.float16), seq=np.int64(self.seq),
            transform=np.array([t.scale_x, t.scale_y, t.offset_x, t.offset_y, t.stride], np.float64),
        )  # fmt: skip
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TemporalContext:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            t = z["transform"]
            return cls(z["inputs"], CellTransform(*(float(v) for v in t)), int(z["seq"]))


# --------------------------------------------------------------------------------------
# Inference on the estimator's output (what the pipeline calls)
# --------------------------------------------------------------------------------------


class TemporalInference:
    """TemporalNet applied to ``posestream.models.estimator.EstimatorOutput`` batches, numpy out.

    ``est`` must hold the features, heatmaps, canvas and transforms of ``model.config.input_size``
    (``posestream.service.pipelines.models.at_temporal_scale`` makes sure of it). Typical use per batch::

        contexts = ti.contexts(est, seqs)            # one TemporalContext per frame
        he = ti.embeddings(est)                      # (N_i, E) per frame
        fwd, bwd = ti.tie(prev_ctx, contexts[i], est.poses[i].keypoints, track_keypoints)

    Args:
        model: a ``TemporalNet`` (eval mode).
    """

    def __init__(self, model: TemporalNet, card: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.card = dict(card or {})
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TemporalInference:
        return cls(*TemporalNet.load_with_card(path, device))

    @property
    def tracker_settings(self) -> dict[str, float]:
        """The tracker fields this checkpoint is run with (``tracker_calibration``)."""
        return tracker_calibration(self.card)

    def _check(self, est: Any) -> None:
        if est.heatmaps is None or est.canvas is None:
            raise ValueError(
                "TemporalNet needs EstimatorOutput.heatmaps and .canvas (posestream.models.estimator >= this version)"
            )

    @torch.inference_mode()
    def embeddings(self, est: Any) -> list[np.ndarray]:
        """Human Embeddings of every detected person: B arrays (N_i, E) float32, unit rows."""
        self._check(est)
        cfg = self.config
        boxes = []
        for poses, lb in zip(est.poses, est.transforms, strict=True):
            frame_boxes = human_boxes(poses.keypoints, cfg.box_margin, cfg.keypoint_threshold)
            boxes.append(torch.from_numpy(lb.boxes_to_features(frame_boxes)).to(self.device))
        counts = [len(b) for b in boxes]
        if not sum(counts):
            return [np.zeros((0, cfg.embedding_dim), np.float32) for _ in counts]
        canvas = torch.from_numpy(np.ascontiguousarray(est.canvas)).to(self.device).permute(0, 3, 1, 2)
        rgb4 = F.avg_pool2d(canvas.to(self.dtype), 4)
        emb = self.model.embed(est.features.to(self.device, self.dtype), rgb4, boxes).float().cpu().numpy()
        return list(np.split(emb, np.cumsum(counts)[:-1]))

    @torch.inference_mode()
    def contexts(self, est: Any, seqs: Sequence[int]) -> list[TemporalContext]:
        """Each frame's TIE inputs (features, heatmaps, SIE rendered from its poses), cropped to the frame."""
        self._check(est)
        cfg = self.config
        feats = est.features.float().cpu().numpy()
        heats = est.heatmaps.float().cpu().numpy()
        out = []
        for i, (poses, lb) in enumerate(zip(est.poses, est.transforms, strict=True)):
            s = lb.stride
            nw, nh = round(lb.frame_width * lb.scale_x), round(lb.frame_height * lb.scale_y)
            x0, y0 = lb.pad_x // s, lb.pad_y // s
            x1, y1 = -(-(lb.pad_x + nw) // s), -(-(lb.pad_y + nh) // s)
            tr = CellTransform.from_letterbox(lb, x0, y0)
            kp = np.asarray(poses.keypoints, np.float32)
            order = np.argsort(
                np.asarray(poses.scores), kind="stable"
            )  # confident people drawn last (on top)
            cells = np.concatenate((tr.to_cells(kp[order, :, :2]), kp[order, :, 2:]), axis=-1)
            sie = render_sie(cells, (y1 - y0, x1 - x0), cfg.sie_radius, cfg.tvf_scale, cfg.keypoint_threshold)
            inputs = np.concatenate((feats[i, :, y0:y1, x0:x1], heats[i, :, y0:y1, x0:x1], sie), axis=0)
            out.append(TemporalContext(inputs.astype(np.float16), tr, int(seqs[i])))
        return out

    @torch.inference_mode()
    def tvf_map(self, prev: TemporalContext, cur: TemporalContext) -> torch.Tensor:
        """(1, 4, h, w) forward/backward TVF of the pair, in cells (contexts padded to a common size)."""
        a, b = prev.inputs, cur.inputs
        h, w = max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2])

        def pad(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(x.astype(np.float32))
            t = F.pad(t, (0, w - x.shape[2], 0, h - x.shape[1]))
            return t[None].to(self.device, self.dtype)

        return self.model.tvf(pad(a), pad(b)).float() * self.config.tvf_scale

    @torch.inference_mode()
    def tie(
        self,
        prev: TemporalContext,
        cur: TemporalContext,
        cur_keypoints: np.ndarray,
        prev_keypoints: np.ndarray,
        tvf: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forward TIE at frame t's joints and backward TIE at frame t-1's joints, frame pixels.

        Args:
            prev, cur: contexts of frames t-1 and t of one session.
            cur_keypoints: (N, 17, 3) detections at t, frame pixels.
            prev_keypoints: (T, 17, 3) joints at t-1 (the tracks' last poses), frame pixels.
            tvf: ``tvf_map(prev, cur)`` when already computed.
        Returns:
            ``tie_fwd`` (N, 17, 2): predicted centre at t-1 of the person at each joint of t;
            ``tie_bwd`` (T, 17, 2): predicted centre at t of the person at each joint of t-1.
        """
        if tvf is None:
            tvf = self.tvf_map(prev, cur)
        cur_kp = np.asarray(cur_keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        prev_kp = np.asarray(prev_keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        pc = cur.transform.to_cells(cur_kp[:, :, :2]).reshape(-1, 2)
        pp = prev.transform.to_cells(prev_kp[:, :, :2]).reshape(-1, 2)
        vf = sample_points(tvf[:, 0:2], [torch.from_numpy(pc).to(self.device)])[0].cpu().numpy()
        vb = sample_points(tvf[:, 2:4], [torch.from_numpy(pp).to(self.device)])[0].cpu().numpy()
        fwd = tie_from_tvf(cur_kp[:, :, :2], cur.transform.vectors_to_frame(vf).reshape(-1, NUM_KEYPOINTS, 2))
        bwd = tie_from_tvf(
            prev_kp[:, :, :2], prev.transform.vectors_to_frame(vb).reshape(-1, NUM_KEYPOINTS, 2)
        )
        return fwd, bwd
