"""SpatialNet as the service's pose estimator (``--model spatialnet``, the seed-faithful path).

``SpatialNetEstimator`` runs a trained SpatialNet (``weights/spatialnet_*.pt``) on batches
of frames and returns the same ``EstimatorOutput`` as MoveNet's ``PoseEstimator``, plus
what only SpatialNet has: each detected person's Spatial Instance Embedding (SIE: the
person centre predicted at each joint, from the SVF head) and Keypoint Embedding (KE
tags) at its joints, which the tracker's Table 4 baselines ``sie``, ``ke`` and ``ke+sie``
compare across frames.

Each frame is fitted into the network input with ``posestream.models.data.augment.fit_affine`` --
aspect kept, centred, pixel centres aligned -- exactly as in training and in
``posestream.models.train.predict_frames``, so the decoded keypoints are the ones
``posestream train spatial --eval-seeds`` scores. The ``Letterbox`` of each frame (what
TemporalNet pools from) is the same transform in its own edge-aligned convention.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from posestream.models.data.augment import fit_affine, invert_affine, transform_keypoints, warp_image
from posestream.models.decode import sie_from_svf
from posestream.models.estimator import EstimatorOutput, Letterbox, frame_batch
from posestream.models.geometry import box_iou
from posestream.models.pose_scoring import PoseScorer, PoseScoringConfig
from posestream.models.poses import UNTRACKED, FramePoses, boxes_from_keypoints
from posestream.models.refine import RefineConfig, ThunderRefiner
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.spatialnet import STRIDE
from posestream.models.targets import to_input_coords, to_output_coords
from posestream.models.weights import RECURRENT_SPATIALNET, SPATIAL_DECODERS, checkpoint_path, sha256_file

if TYPE_CHECKING:
    from posestream.models.recurrent_decoder import RecurrentDecoder

log = logging.getLogger(__name__)

__all__ = ["SpatialEstimatorConfig", "SpatialMaps", "SpatialNetEstimator", "embeddings_at_joints"]


@dataclass(frozen=True)
class SpatialEstimatorConfig:
    """How ``SpatialNetEstimator`` runs SpatialNet.

    Attributes:
        input_size: long side (pixels) each frame is fitted into; the short side is padded
            up to the network's size multiple. SpatialNet learns people at the scale it was
            trained at (the shipped weights: frames of 640x480 at 512x384, i.e. people
            ~0.8x their 640x480 size); raising it finds smaller people at quadratic cost.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        min_person_score: people whose score (``DecodeConfig.person_score``) is below this are
            not passed on to the tracker. (Decoding keeps them, ``DecodeConfig.min_person_score`` = 0, because AP
            ranks people by score; a tracker would start tracks on them.) Raising it removes
            weak, partial detections: fewer false tracks, more missed people. Not applied with
            ``decoder: recurrent``, whose stop head decides the people. (Chosen when the
            score was the mean heat of all joints after filling; not re-tuned since the seed-002
            score, which is never higher, became the default.)
        scoring: seed 004's learned person score (``posestream.models.pose_scoring``): with
            ``scoring.enabled`` each decoded person's score is the predicted OKS (the net was
            trained on MoveNet's candidates; SpatialNet's decoded people share their pose
            contract), and ``scoring.min_oks`` replaces ``min_person_score``. The rescoring runs
            after decoding, so the decoder's own duplicate removal still follows its score.
        decoder: how the maps become people (``SPATIAL_DECODERS``): "embedding" is SpatialNet's
            own KE + SIE grouping with its file's test-time passes; "recurrent" is seed 001's
            learned decoder (``posestream.models.recurrent_decoder``) on SpatialNet's plain pass
            (one scale, no flip: what it was trained on), whose person score is P_t x mean joint heat.
        refine: the MoveNet path's gated Thunder refinement (``posestream.models.refine``) run on
            SpatialNet's decoded people, with the same gates; off by default (``enabled=False``).
            SpatialNet finds and groups the people, Thunder may then move their joints; scores
            stay SpatialNet's. Its effect on the real dev set is in ``benchmarks/RESULTS.md``
            (``spatialnet_refine_real_dev``).
    """

    input_size: int = 512
    device: str = "auto"
    min_person_score: float = 0.15
    scoring: PoseScoringConfig = field(default_factory=PoseScoringConfig)
    decoder: str = SPATIAL_DECODERS[0]
    refine: RefineConfig = field(default_factory=lambda: RefineConfig(enabled=False))

    def __post_init__(self) -> None:
        if self.decoder not in SPATIAL_DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(SPATIAL_DECODERS)}, got {self.decoder!r}")
        if self.input_size <= 0:
            raise ValueError(f"input_size must be > 0 pixels, got {self.input_size}")
        if not 0.0 <= self.min_person_score <= 1.0:
            raise ValueError(f"min_person_score must be in [0, 1], got {self.min_person_score}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


def embeddings_at_joints(
    keypoints: np.ndarray, tags: torch.Tensor, sie: torch.Tensor, stride: int = STRIDE
) -> tuple[np.ndarray, np.ndarray]:
    """KE tags and SIE centres read at each person's joints (nearest output cell).

    Args:
        keypoints: (N, 17, 3) (x, y, score) in network-input pixels.
        tags: (17, T, h, w) KE maps; sie: (2, h, w) predicted centres in output cells.
    Returns:
        tags (N, 17, T) and SIE centres (N, 17, 2) in network-input pixels.
    """
    n = len(keypoints)
    t, (h, w) = tags.shape[1], tags.shape[-2:]
    if n == 0:
        return np.zeros((0, NUM_KEYPOINTS, t), np.float32), np.zeros((0, NUM_KEYPOINTS, 2), np.float32)
    cells = np.rint(to_output_coords(np.asarray(keypoints[..., :2], np.float64), stride)).astype(np.int64)
    xi = torch.from_numpy(cells[..., 0].clip(0, w - 1))
    yi = torch.from_numpy(cells[..., 1].clip(0, h - 1))
    jj = torch.arange(NUM_KEYPOINTS).expand_as(xi)
    tag_vals = tags[jj, :, yi, xi].float().cpu().numpy()  # (N, 17, T)
    centres = sie[:, yi, xi].permute(1, 2, 0).float().cpu().numpy()  # (N, 17, 2) output cells
    return tag_vals.astype(np.float32), to_input_coords(centres, stride).astype(np.float32)


@dataclass(frozen=True)
class SpatialMaps:
    """One batch through SpatialNet before decoding.

    Attributes:
        canvas: (B, Hc, Wc, 3) uint8 network input.
        mats: B (2, 3) frame -> input matrices (``fit_affine``, pixel centres aligned).
        transforms: the same as B ``Letterbox`` (edge-aligned, integer padding; within half
            an input pixel of ``mats``), what TemporalNet works with.
        last: the last stack's maps by head name, test-time passes merged (``SpatialNet.infer``).
        features: (B, width, Hc/4, Wc/4) the last stack's features.
    """

    canvas: np.ndarray
    mats: list[np.ndarray]
    transforms: list[Letterbox]
    last: dict[str, torch.Tensor]
    features: torch.Tensor


class SpatialNetEstimator:
    """A trained SpatialNet over batches of frames (same call as ``PoseEstimator``).

    Args:
        weights: a SpatialNet checkpoint or exported weights file (``posestream.models.checkpoints.load_spatialnet``).
        config: ``SpatialEstimatorConfig``.
        recurrent_weights: with ``config.decoder == "recurrent"``, the decoder's file (default
            ``RECURRENT_SPATIALNET`` in the weights folder); it must have been trained on ``weights``.

    Load it once (worker main), then call it per batch.
    """

    def __init__(
        self, weights: str | Path, config: SpatialEstimatorConfig | None = None,
        recurrent_weights: str | Path | None = None,
    ) -> None:  # fmt: skip
        from posestream.models.checkpoints import load_spatialnet, resolve_device

        self.config = config if config is not None else SpatialEstimatorConfig()
        self.device = resolve_device(self.config.device)
        self.net = load_spatialnet(weights, self.device)
        self.recurrent: RecurrentDecoder | None = None
        if self.config.decoder == "recurrent":
            self.recurrent = self._load_recurrent(Path(weights), recurrent_weights)
        self.multiple = self.net.config.size_multiple
        if self.config.input_size % self.multiple:
            raise ValueError(
                f"input size {self.config.input_size} must be a multiple of {self.multiple} for this SpatialNet"
            )
        self.feature_channels = self.net.config.backbone.width
        self.scorer = (
            PoseScorer.from_file(checkpoint_path(self.config.scoring.weights))
            if self.config.scoring.enabled
            else None
        )
        self.refiner = (
            ThunderRefiner(self.config.refine, None, self.device) if self.config.refine.enabled else None
        )
        log.info(
            "SpatialNetEstimator: %s on %s, input long side %d", weights, self.device, self.config.input_size
        )

    def _load_recurrent(self, weights: Path, path: str | Path | None) -> RecurrentDecoder:
        import dataclasses

        from posestream.models.recurrent_decoder import load_recurrent_decoder

        path = Path(path) if path is not None else checkpoint_path(RECURRENT_SPATIALNET)
        if not path.is_file():
            raise ValueError(
                f"--decoder recurrent needs {path}: point POSESTREAM_WEIGHTS_DIR at the folder holding "
                f"{path.name}, or train it with `posestream train recurrent`"
            )
        decoder, card = load_recurrent_decoder(path)
        want, have = card.get("spatialnet_sha256"), sha256_file(weights)
        if want != have:
            raise ValueError(
                f"{path.name} was trained on SpatialNet sha256 {str(want)[:12]}..., not on {weights.name} "
                f"({have[:12]}...): retrain it with `posestream train recurrent --spatialnet {weights.name}`"
            )
        # The decoder reads the plain pass, as in training (test-time merges change the heatmaps).
        decode = dataclasses.replace(self.net.config.decode, scales=(1.0,), flip_test=False)
        self.net.config = dataclasses.replace(self.net.config, decode=decode)
        return decoder.to(self.device)

    def _canvas_size(self, frames: list[np.ndarray]) -> tuple[int, int]:
        s = self.config.input_size
        m = self.multiple
        w = max(min(s, -(-round(f.shape[1] * s / max(f.shape[:2])) // m) * m) for f in frames)
        h = max(min(s, -(-round(f.shape[0] * s / max(f.shape[:2])) // m) * m) for f in frames)
        return w, h

    @torch.inference_mode()
    def maps(self, frames: list[np.ndarray]) -> SpatialMaps:
        """Fit the frames into one input batch and run the network (no decoding)."""
        frame_batch(frames)
        cw, ch = self._canvas_size(frames)
        mats = [fit_affine(f.shape[1], f.shape[0], cw, ch) for f in frames]
        canvas = np.stack([warp_image(f, m, cw, ch) for f, m in zip(frames, mats, strict=True)])
        x = torch.from_numpy(canvas).to(self.device).permute(0, 3, 1, 2)
        last, features = self.net.infer(self.net.normalise(x))
        transforms = []
        for f, m in zip(frames, mats, strict=True):
            # fit_affine maps pixel centres (x_in = s * x + tx); Letterbox maps edges (x_in = s * x + pad).
            s = float(m[0, 0])
            pad_x, pad_y = round(m[0, 2] + 0.5 - 0.5 * s), round(m[1, 2] + 0.5 - 0.5 * s)
            transforms.append(Letterbox(s, s, pad_x, pad_y, cw, ch, f.shape[1], f.shape[0], STRIDE))
        return SpatialMaps(canvas, mats, transforms, last, features)

    @torch.inference_mode()
    def __call__(
        self,
        frames: list[np.ndarray],
        frame_indices: list[int] | None = None,
        timestamps: list[float] | None = None,
    ) -> EstimatorOutput:
        """Poses (frame pixels), SIE and KE at their joints, and the last stack's maps.

        Args:
            frames: RGB uint8 (H, W, 3) arrays, any sizes.
            frame_indices, timestamps: written into each ``FramePoses`` (defaults 0..B-1, 0.0).
        Returns:
            ``EstimatorOutput`` with ``features`` (B, width, Hc/4, Wc/4) of the last hourglass
            stack, ``heatmaps`` (B, 17, Hc/4, Wc/4), ``canvas`` (B, Hc, Wc, 3), and
            ``sie`` / ``tags`` per frame: (N, 17, 2) frame pixels / (N, 17, T).
        """
        indices, times = frame_batch(frames, frame_indices, timestamps)
        out = self.maps(frames)
        decoded = (
            self.net.decode_batch(out.last)
            if self.recurrent is None
            else self.recurrent.decode_batch(out.features, out.last["heatmaps"])
        )
        sie_maps = sie_from_svf(out.last["svf"].float())
        poses, centers, sies, tags = [], [], [], []
        for i, ((kp, sc), m, f) in enumerate(zip(decoded, out.mats, frames, strict=True)):
            # The recurrent decoder's stop head already decided who is a person (its count is the output).
            threshold = self.config.min_person_score if self.recurrent is None else 0.0
            if self.scorer is not None:  # the person score is now a predicted OKS: reject on that scale
                sc, threshold = self.scorer.predict(kp), self.config.scoring.min_oks
            keep = sc >= threshold
            order = np.argsort(-sc[keep], kind="stable")
            kp, sc = kp[keep][order], sc[keep][order]
            tag_vals, sie_in = embeddings_at_joints(kp, out.last["tags"][i], sie_maps[i])
            inv = invert_affine(m)
            kp_frame = transform_keypoints(kp, inv, flip=False)
            h, w = f.shape[:2]
            kp_frame[..., 0] = kp_frame[..., 0].clip(0, w - 1)  # filled joints may land in the padding
            kp_frame[..., 1] = kp_frame[..., 1].clip(0, h - 1)
            sie_frame = (sie_in @ inv[:, :2].T + inv[:, 2]).astype(np.float32)
            # Boxes from the detected joints only: a joint filled from weak heat may be anywhere in its window.
            boxes = boxes_from_keypoints(kp_frame, min_score=self.net.config.decode.detection_threshold)
            if self.refiner is not None and len(kp_frame):
                kp_frame, _ = self.refiner(f, kp_frame, boxes, sc, box_iou(boxes, boxes))
            poses.append(
                FramePoses(
                    indices[i], float(times[i]), w, h, kp_frame, boxes,
                    sc.astype(np.float32), np.full(len(kp_frame), UNTRACKED, np.int64),
                )
            )  # fmt: skip
            sies.append(sie_frame)
            tags.append(tag_vals)
            # The person's centre: its SIE averaged over all 17 joints (filled ones included).
            centers.append(sie_frame.mean(axis=1) if len(kp) else np.zeros((0, 2), np.float32))
        heatmaps = out.last["heatmaps"].clamp(0, 1)
        return EstimatorOutput(
            poses, out.features, out.transforms, centers, heatmaps, out.canvas, sie=sies, tags=tags
        )

    estimate = __call__
