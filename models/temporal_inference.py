"""TemporalNet online inference on the estimator's output (what the pipeline calls).

``TemporalInference`` turns ``posestream.models.estimator.EstimatorOutput`` batches into HE rows
and TIE points in frame pixels; it keeps nothing between calls: the caller keeps one
``TemporalContext`` per session, frame t-1's cropped features, heatmaps and SIE in fp16
(bounded by the input size: 44 x 48 x 64 values, 270 kB, for a 4:3 frame at 256), serialisable
with ``to_bytes``. A checkpoint's card carries the tracker settings it is run with
(``tracker_calibration``, ``write_tracker_calibration``).

Coordinates: cells of the stride-4 map inside (``posestream.models.temporalnet``), frame
pixels outside; ``CellTransform`` converts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posestream.models.roi_align import sample_points
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.temporal_inputs import human_boxes, render_sie, tie_from_tvf
from posestream.models.temporalnet import TemporalNet

__all__ = [
    "CALIBRATED_GATE_HE",
    "CellTransform",
    "TemporalContext",
    "TemporalInference",
    "tracker_calibration",
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


# --- per-frame context ---


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
