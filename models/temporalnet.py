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

The parts around the network live beside it: ``posestream.models.roi_align`` (ROI-Align and
point sampling), ``posestream.models.temporal_inputs`` (HE boxes, rendered SIE, TIE from a TVF),
``posestream.models.temporal_loss`` (the HE triplet loss) and
``posestream.models.temporal_inference`` (online inference on the estimator's output, the
per-session ``TemporalContext`` and the checkpoint card's tracker calibration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posestream.models.backbones.movenet import FEATURE_CHANNELS
from posestream.models.heads import TEMPORAL_TVF
from posestream.models.roi_align import roi_align
from posestream.models.skeleton import NUM_KEYPOINTS

__all__ = ["TemporalNet", "TemporalNetConfig"]

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
