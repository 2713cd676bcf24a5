"""``PoseEstimator``: frames in, people and stride-4 features out (MoveNet MultiPose, multi-scale).

The worker and the CLI call this; nothing else in the service touches the network. A batch
of RGB uint8 frames of any sizes is letterboxed to each configured input size, run through
``MoveNetMultiPose`` (CPU fp32, or CUDA fp16), decoded by ``posestream.models.movenet_decode`` and
mapped back to original-frame pixels. The stride-4 feature map of one scale is returned
with the per-frame letterbox transforms, so TemporalNet can ROI-pool person boxes from it.

Input-size policy (``EstimatorConfig.input_sizes``), measured on real video:

- vtest.avi (768x576, people 60-100 px tall): letterboxed to 256 the people are 20-35 px
  tall in the model input and the TFLite file's own output scores them 0.08-0.20 (an
  application threshold of 0.2 keeps one at most); our decoder at 256 keeps 4 of the 7
  people of frame 200. At 512 all 7 score 0.19-0.48 and are found.
- A close-up person (filling most of the frame): the person score is 0.61 at 256, 0.44 at
  512 and 0.24 at 640 -- large inputs shrink the context the model sees around a big person.

The default runs two scales, 256 and 512 (long side), the 256 one also on the mirrored
canvas (flip testing: the mirrored maps are mirrored back, left/right joints exchanged, and
averaged with the plain ones; ``flip_max_size``), decodes each scale and keeps each person
from the scale where its person score is highest (``scale_merge="confidence"``,
``merge_by_confidence``); Thunder then refines the people MultiPose sees least well
(``posestream.models.refine``). Chosen on the real labelled dev set (``benchmarks/real_dev.py``,
AP per person-height bucket in ``benchmarks/RESULTS.md``) over: the old "nearest
``preferred_height`` px" rule (``scale_merge="nearest_height"``, still selectable), per-joint
choice, and seed 002's heat-map averaging on one grid (``"heatmaps"``), which dilutes the
scale that sees a person well with the one that does not and scored lowest. Cost (real video,
``benchmarks/real_video_speed.py``): the 512 pass and Thunder about a third of the time each,
the flipped 256 pass a fifth; flipping the 512 pass too (``flip_max_size=None``) adds no AP
there for more than half the network time. ``input_sizes=(256,)`` is the cheap choice for
close-up cameras, ``(512,)`` for wide surveillance shots.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from posestream.models.backbones.movenet import FEATURE_STRIDE, INPUT_MULTIPLE, MoveNetMultiPose
from posestream.models.geometry import box_iou, oks_matrix
from posestream.models.heads import MOVENET_HEADS, activate_all
from posestream.models.movenet_decode import (
    DecodedPoses,
    DecoderConfig,
    PoseRescorer,
    decode,
    fuse_maps,
    pose_nms,
    resample_maps,
)
from posestream.models.pose_scoring import PoseScorer, PoseScoringConfig
from posestream.models.poses import UNTRACKED, FramePoses
from posestream.models.refine import RefineConfig, ThunderRefiner
from posestream.models.skeleton import NUM_KEYPOINTS

log = logging.getLogger(__name__)

__all__ = [
    "EstimatorConfig",
    "EstimatorOutput",
    "Letterbox",
    "PoseEstimator",
    "frame_batch",
    "letterbox",
    "merge_by_confidence",
    "merge_scales",
]


# How the people of several input sizes (and of the flipped pass) become one set (``EstimatorConfig.scale_merge``).
SCALE_MERGES: tuple[str, ...] = ("nearest_height", "confidence", "joints", "heatmaps")
# How the network is compiled (``EstimatorConfig.compile``).
COMPILE_MODES: tuple[str, ...] = ("none", "jit", "inductor")


@dataclass(frozen=True)
class EstimatorConfig:
    """How ``PoseEstimator`` runs the model.

    Attributes:
        input_sizes: the long side (pixels, multiple of 32) of the model input at each
            scale; people from all scales are merged by OKS NMS. More or larger scales
            find smaller people and cost more (pixels grow with the square of the size).
        square: letterbox to a square (the publisher's way) instead of padding the short
            side only up to the next multiple of 32. Square costs more pixels and
            decodes the same people.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
        half: run the network in fp16; ``None`` means on CUDA only (fp16 on CPU is slow).
        channels_last: NHWC memory layout (faster on CPU oneDNN and on tensor cores).
        compile: how the network is compiled (one of ``COMPILE_MODES``): ``"none"`` runs it
            eager, the default; ``"jit"`` traces it with TorchScript and freezes the weights
            into the graph (``torch.jit.trace`` + ``torch.jit.freeze``, one trace per input
            shape, well under a second each; outputs equal to float rounding), measured here
            on CPU at the eager time (512 pass 89 vs 90 ms per frame, ``benchmarks/RESULTS.md``
            "Real video speed"), so not the default; ``"inductor"`` is ``torch.compile`` with
            weight freezing (~25-35% less network time than eager but ~40 s of compiling per
            new input shape: for long-running workers with fixed shapes).
        network_batch: at most this many canvases per network call; a batch of frames (and
            their mirrored canvases) runs in chunks of it. ``None`` = 1 on CPU (measured on
            real video: the 512 pass takes 89 ms per frame one canvas per call against 136 in
            batches of 8, whose activations fall out of the CPU caches) and the whole batch
            on CUDA. Raising it on
            CPU costs time; on a GPU, batches fill the device.
        feature_size: which scale's stride-4 features are returned (one of
            ``input_sizes``); ``None`` = the largest, whose features resolve small people best.
        preferred_height: with several scales, each person is taken from the scale at
            which its box height (input pixels) is closest to this (in log scale): the
            model is most reliable for people about this tall in its input (measured:
            ~25 px tall people score <= 0.2, 40-150 px people 0.3-0.6, 300+ px people
            lose score again). Raising it takes people from larger scales.
        merge_iou: a person found at a scale that is not its preferred one is kept only if
            its box overlaps no person of a preferred scale by more than this IoU (and
            OKS <= ``decoder.nms_oks``). Raising it keeps more cross-scale duplicates;
            lowering it may drop a person detected only at a non-preferred scale who
            stands close to another.
        scale_merge: how the scales become one set of people (one of ``SCALE_MERGES``):
            ``"nearest_height"`` each person from the scale where it is nearest
            ``preferred_height`` (``merge_scales``, the policy before the real dev set);
            ``"confidence"`` each person from the scale where its person score is highest
            (``merge_by_confidence``); ``"joints"`` the same, then each joint from whichever
            scale's match is most confident there; ``"heatmaps"`` seed 002's multi-scale
            testing: every pass's maps resampled onto the largest scale's grid, averaged,
            decoded once (``posestream.models.movenet_decode.resample_maps`` / ``fuse_maps``).
        flip: flip testing: a scale also runs on the mirrored canvas, its maps mirrored
            back (left/right joints exchanged) and averaged with the unmirrored ones before
            decoding. Doubles that scale's network time; steadier joints.
        flip_max_size: flip testing only for scales whose input size is at most this
            (``None`` = every scale). Measured on the real dev set: flipping the 256 pass
            carries the gain (large people, who are decoded at 256), flipping the 512 pass
            as well adds nothing there for more than half of the network time
            (``benchmarks/RESULTS.md``). Raising it flips larger scales too.
        decoder: the decoder's thresholds (``DecoderConfig``); its ``nms_oks`` also removes
            duplicates after merging scales.
        refine: gated second-stage refinement by MoveNet Thunder (``posestream.models.refine``); off
            unless ``refine.enabled``.
        scoring: seed 004's learned person score (``posestream.models.pose_scoring``): with
            ``scoring.enabled`` every candidate's score is its predicted OKS, and
            ``scoring.min_oks`` replaces ``decoder.min_pose_score`` as the rejection threshold.
    """

    input_sizes: tuple[int, ...] = (256, 512)
    square: bool = False
    device: str = "auto"
    half: bool | None = None
    channels_last: bool = True
    compile: str = "none"
    network_batch: int | None = None
    feature_size: int | None = None
    preferred_height: float = 128.0
    merge_iou: float = 0.4
    scale_merge: str = "confidence"
    flip: bool = True
    flip_max_size: int | None = 256
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    scoring: PoseScoringConfig = field(default_factory=PoseScoringConfig)

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.input_sizes)
        if not sizes:
            raise ValueError("input_sizes must name at least one input size")
        bad = [s for s in sizes if s <= 0 or s % INPUT_MULTIPLE]
        if bad:
            raise ValueError(f"input sizes must be positive multiples of {INPUT_MULTIPLE}, got {bad}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"input_sizes has duplicates: {sizes}")
        object.__setattr__(self, "input_sizes", sizes)
        if self.feature_size is not None and self.feature_size not in sizes:
            raise ValueError(f"feature_size {self.feature_size} is not one of input_sizes {sizes}")
        if self.preferred_height <= 0:
            raise ValueError(f"preferred_height must be > 0 pixels, got {self.preferred_height}")
        if self.scale_merge not in SCALE_MERGES:
            raise ValueError(f"scale_merge must be one of {SCALE_MERGES}, got {self.scale_merge!r}")
        if not 0.0 < self.merge_iou <= 1.0:
            raise ValueError(f"merge_iou must be in (0, 1], got {self.merge_iou}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        if self.network_batch is not None and self.network_batch < 1:
            raise ValueError(
                f"network_batch must be >= 1 canvases (or None for auto), got {self.network_batch}"
            )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def flips(self, size: int) -> bool:
        """Whether the scale of input size ``size`` runs flip testing (``flip`` and ``flip_max_size``)."""
        return self.flip and (self.flip_max_size is None or size <= self.flip_max_size)


@dataclass(frozen=True)
class Letterbox:
    """The resize + pad that took one frame into the model input: ``input = frame * scale + pad``.

    Coordinates are continuous pixels with 0 at the top-left edge, in both spaces.

    Attributes:
        scale_x, scale_y: resized size / frame size per axis (equal up to rounding).
        pad_x, pad_y: offset of the resized frame inside the model input.
        input_width, input_height: the model input (canvas) size.
        frame_width, frame_height: the original frame size.
        stride: input pixels per feature cell.
    """

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    input_width: int
    input_height: int
    frame_width: int
    frame_height: int
    stride: int = FEATURE_STRIDE

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) input pixels -> frame pixels."""
        xy = np.asarray(xy, np.float32)
        return np.stack(
            ((xy[..., 0] - self.pad_x) / self.scale_x, (xy[..., 1] - self.pad_y) / self.scale_y), axis=-1
        )

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) frame pixels -> input pixels."""
        xy = np.asarray(xy, np.float32)
        return np.stack(
            (xy[..., 0] * self.scale_x + self.pad_x, xy[..., 1] * self.scale_y + self.pad_y), axis=-1
        )

    def boxes_to_features(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) frame-pixel boxes (x1, y1, x2, y2) -> feature-map cells (continuous, 0 = edge).

        For ``torchvision.ops.roi_align`` on the returned features use
        ``spatial_scale=1`` and ``aligned=True`` with these boxes.
        """
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = np.concatenate((self.to_input(b[:, :2]), self.to_input(b[:, 2:])), axis=1)
        return out / self.stride

    def boxes_to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) input-pixel boxes -> frame pixels, clipped to the frame."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = np.concatenate((self.to_frame(b[:, :2]), self.to_frame(b[:, 2:])), axis=1)
        out[:, 0::2] = out[:, 0::2].clip(0, self.frame_width)
        out[:, 1::2] = out[:, 1::2].clip(0, self.frame_height)
        return out


def _round_up(v: int, multiple: int) -> int:
    return -(-v // multiple) * multiple


def frame_batch(
    frames: Sequence[np.ndarray],
    frame_indices: Sequence[int] | None = None,
    timestamps: Sequence[float] | None = None,
) -> tuple[list[int], list[float]]:
    """Check a batch of frames for an estimator; its frame indices (default 0..B-1) and timestamps (default 0.0).

    Raises:
        ValueError: no frames, a frame that is not (H, W, 3) uint8 RGB, or indices / timestamps
            of the wrong length.
    """
    n = len(frames)
    if n == 0:
        raise ValueError("frames is empty")
    for f in frames:
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (H, W, 3) RGB arrays, got {f.dtype} {f.shape}")
    indices = list(frame_indices) if frame_indices is not None else list(range(n))
    times = list(timestamps) if timestamps is not None else [0.0] * n
    if len(indices) != n or len(times) != n:
        raise ValueError("frame_indices and timestamps must have one entry per frame")
    return indices, times


def letterbox(
    frames: Sequence[np.ndarray], size: int, square: bool = False
) -> tuple[np.ndarray, list[Letterbox]]:
    """Resize each frame so its long side is ``size`` and pad them into one batch canvas.

    Args:
        frames: RGB uint8 (H, W, 3) arrays, any sizes.
        size: long side in pixels, a multiple of 32.
        square: canvas ``size x size``; otherwise each side is the largest resized side in
            the batch rounded up to a multiple of 32.
    Returns:
        (B, Hc, Wc, 3) uint8 canvas (black padding, each frame centred) and one
        ``Letterbox`` per frame.
    """
    frame_batch(frames)
    plans = []
    for f in frames:
        h, w = f.shape[:2]
        s = size / max(h, w)
        plans.append((max(1, round(w * s)), max(1, round(h * s))))
    if square:
        cw = ch = size
    else:
        cw = _round_up(max(p[0] for p in plans), INPUT_MULTIPLE)
        ch = _round_up(max(p[1] for p in plans), INPUT_MULTIPLE)
    canvas = np.zeros((len(frames), ch, cw, 3), np.uint8)
    transforms = []
    for i, (f, (nw, nh)) in enumerate(zip(frames, plans, strict=True)):
        h, w = f.shape[:2]
        # Area averaging when shrinking (no aliasing of thin limbs), bilinear when enlarging.
        interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
        resized = f if (nw, nh) == (w, h) else cv2.resize(f, (nw, nh), interpolation=interp)
        px, py = (cw - nw) // 2, (ch - nh) // 2
        canvas[i, py : py + nh, px : px + nw] = resized
        transforms.append(Letterbox(nw / w, nh / h, px, py, cw, ch, w, h))
    return canvas, transforms


@dataclass(frozen=True)
class EstimatorOutput:
    """What ``PoseEstimator`` returns for a batch of B frames.

    Attributes:
        poses: B ``FramePoses`` in original-frame pixels, best person first, track ids -1.
        features: (B, C, Hc/4, Wc/4) stride-4 features of the ``feature_size`` scale (MoveNet's
            24 FPN channels; SpatialNet's last-stack width), on the model's device and dtype
            (fp16 on CUDA).
        transforms: B ``Letterbox`` transforms of that scale (frame <-> input <-> feature cells).
        centers: B arrays (N, 2) float32, (x, y) frame pixels of the centre peak each person
            was decoded from, aligned with ``poses`` (MoveNet's stand-in for a per-joint
            spatial instance embedding: every joint of a person shares its centre).
        heatmaps: (B, 17, Hc/4, Wc/4) keypoint heatmaps (sigmoid) of the ``feature_size``
            scale, same device and dtype as ``features`` (TemporalNet's TIE input).
        canvas: (B, Hc, Wc, 3) uint8 letterboxed RGB input of the ``feature_size`` scale
            (TemporalNet pools low-level colour from it for HE).
        sie: per frame (N, 17, 2) float32 frame pixels: the person centre predicted at each
            joint (Spatial Instance Embedding); None for models without an SIE head (MoveNet).
        tags: per frame (N, 17, T) float32 Keypoint Embedding tags at each joint; None for
            models without a KE head (MoveNet).
    """

    poses: list[FramePoses]
    features: torch.Tensor
    transforms: list[Letterbox]
    centers: list[np.ndarray]
    heatmaps: torch.Tensor | None = None
    canvas: np.ndarray | None = None
    sie: list[np.ndarray] | None = None
    tags: list[np.ndarray] | None = None


def mirrored(t: Letterbox) -> Letterbox:
    """The transform of the mirrored frame into the mirrored canvas of ``t`` (``canvas[:, ::-1]``).

    A frame point ``x`` lies at ``W - x`` in the mirrored frame and at ``Wc - (x * sx + pad_x)``
    in the mirrored canvas, so the mirrored frame's letterbox pads by ``Wc - nw - pad_x`` on
    the left (``nw = W * sx``, the resized width); the same as ``t`` when the padding is even.
    """
    resized_width = round(t.frame_width * t.scale_x)
    return replace(t, pad_x=t.input_width - resized_width - t.pad_x)


@dataclass(frozen=True)
class _Pass:
    """One scale's network output: its letterbox transforms, maps, and the mirrored canvas's when flipped."""

    size: int
    transforms: list[Letterbox]
    maps: dict[str, torch.Tensor]
    flipped: dict[str, torch.Tensor] | None = None
    flipped_transforms: list[Letterbox] = field(default_factory=list)


class PoseEstimator:
    """MoveNet MultiPose with our decoder, over batches of frames.

    Args:
        config: ``EstimatorConfig``.
        weights: path of ``movenet.tflite``; default: the verified cache of
            ``posestream.models.weights`` (run ``posestream weights fetch`` first).
        rescorer: optional learned person score (``posestream.models.movenet_decode.PoseRescorer``);
            default: ``PoseScorer`` from the weights folder when ``config.scoring.enabled``.

    Load it once (worker main / lifespan), then call it per batch.
    """

    def __init__(
        self,
        config: EstimatorConfig | None = None,
        weights: str | Path | None = None,
        rescorer: PoseRescorer | None = None,
    ) -> None:
        self.config = config if config is not None else EstimatorConfig()
        if weights is None:
            from posestream.models.weights import MOVENET_MULTIPOSE, verify

            weights = verify(MOVENET_MULTIPOSE)
        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.half = self.config.half if self.config.half is not None else self.device.type == "cuda"
        self.dtype = torch.float16 if self.half else torch.float32
        model = MoveNetMultiPose.from_tflite(weights)
        model = model.to(self.device, self.dtype)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        self._network = (
            torch.compile(self.model, options={"freezing": True})
            if self.config.compile == "inductor"
            else self.model
        )
        self._traced: dict[tuple[int, ...], torch.jit.ScriptModule] = {}
        self.network_batch = self.config.network_batch or (1 if self.device.type == "cpu" else None)
        self.rescorer = rescorer
        if rescorer is None and self.config.scoring.enabled:
            from posestream.models.weights import checkpoint_path

            self.rescorer = PoseScorer.from_file(checkpoint_path(self.config.scoring.weights))
        if self.config.scoring.enabled:  # the person score is now a predicted OKS: reject on that scale
            decoder = replace(self.config.decoder, min_pose_score=self.config.scoring.min_oks)
            self.config = replace(self.config, decoder=decoder)
        self.refiner = (
            ThunderRefiner(self.config.refine, None, self.device, self.dtype, self.config.channels_last)
            if self.config.refine.enabled
            else None
        )
        self.feature_size = self.config.feature_size or max(self.config.input_sizes)
        log.info(
            "PoseEstimator: MoveNet MultiPose on %s (%s), input sizes %s",
            self.device, self.dtype, self.config.input_sizes,
        )  # fmt: skip

    def _run(self, canvas: np.ndarray) -> dict[str, torch.Tensor]:
        """(B, Hc, Wc, 3) uint8 canvases -> activated head maps, ``network_batch`` canvases per call."""
        step = self.network_batch or len(canvas)
        outs = [self._forward(canvas[i : i + step]) for i in range(0, len(canvas), step)]
        if len(outs) == 1:
            return outs[0]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}

    def _forward(self, canvas: np.ndarray) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(canvas)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).to(self.dtype)  # NHWC memory viewed as NCHW = channels_last
        if not self.config.channels_last:
            x = x.contiguous()
        return activate_all(MOVENET_HEADS, self._network_for(x)(x))

    def _network_for(self, x: torch.Tensor):
        """The network to run on ``x``: eager / inductor, or the frozen TorchScript trace of its shape."""
        if self.config.compile != "jit":
            return self._network
        key = tuple(x.shape)
        if key not in self._traced:
            # One trace per input shape: the backbone's shape-dependent branches (padding of
            # even-sized maps) are baked into each trace as constants, which is right for its
            # shape, so the tracer's warning about them is expected. ``torch.jit.freeze`` is
            # deprecated in favour of ``torch.compile`` (``compile="inductor"``), which costs
            # ~40 s per shape here; the trace costs well under a second.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                traced = torch.jit.trace(self.model, x, check_trace=False, strict=False)
                self._traced[key] = torch.jit.freeze(traced.eval())
        return self._traced[key]

    @torch.inference_mode()
    def __call__(
        self,
        frames: Sequence[np.ndarray],
        frame_indices: Sequence[int] | None = None,
        timestamps: Sequence[float] | None = None,
    ) -> EstimatorOutput:
        """Estimate the poses in a batch of frames.

        Args:
            frames: RGB uint8 (H, W, 3) arrays, any sizes (mixed sizes are padded together).
            frame_indices: per-frame index written into ``FramePoses`` (default 0..B-1).
            timestamps: per-frame seconds (default 0.0).
        Returns:
            ``EstimatorOutput``.
        """
        n = len(frames)
        indices, times = frame_batch(frames, frame_indices, timestamps)
        cfg = self.config
        passes: list[_Pass] = []
        features = heatmaps = feature_canvas = None
        feature_transforms: list[Letterbox] = []
        for size in cfg.input_sizes:
            canvas, transforms = letterbox(frames, size, cfg.square)
            if not cfg.flips(size):
                maps = self._run(canvas)
                passes.append(_Pass(size, transforms, maps))
            else:  # the mirrored canvas is the plain one mirrored: no second resize
                both = self._run(np.concatenate([canvas, canvas[:, :, ::-1]]))
                maps = {k: v[:n] for k, v in both.items()}
                flipped = {k: v[n:] for k, v in both.items()}
                passes.append(_Pass(size, transforms, maps, flipped, [mirrored(t) for t in transforms]))
            if size == self.feature_size:
                features, feature_transforms = maps["features"], transforms
                heatmaps, feature_canvas = maps["keypoint_heatmap"], canvas
        assert features is not None
        merged_per_frame = self._decode_passes(passes, n)
        poses, centers = [], []
        for i, merged in enumerate(merged_per_frame):
            h, w = frames[i].shape[:2]
            merged = self._refine(frames[i], merged)
            poses.append(
                FramePoses(
                    indices[i],
                    float(times[i]),
                    w,
                    h,
                    merged.keypoints,
                    merged.boxes,
                    merged.scores,
                    np.full(len(merged), UNTRACKED, np.int64),
                )
            )
            centers.append(merged.centers)
        return EstimatorOutput(poses, features, feature_transforms, centers, heatmaps, feature_canvas)

    def _decode_passes(self, passes: list[_Pass], n: int) -> list[DecodedPoses]:
        """Every scale's (and mirrored) maps -> each frame's people in frame pixels, by ``scale_merge``."""
        cfg = self.config
        if cfg.scale_merge == "heatmaps":
            top = max(passes, key=lambda p: p.size)
            target = top.transforms
            hw = tuple(top.maps["keypoint_heatmap"].shape[2:])
            grid = []
            for p in passes:
                grid.append(resample_maps(p.maps, _affine(target, p.transforms, False), hw, False))
                if p.flipped is not None:
                    grid.append(
                        resample_maps(p.flipped, _affine(target, p.flipped_transforms, True), hw, True)
                    )
            decoded = decode(fuse_maps(grid), cfg.decoder, FEATURE_STRIDE, self.rescorer)
            return [_to_frame(d, t) for d, t in zip(decoded, target, strict=True)]
        per_frame: list[list[DecodedPoses]] = [[] for _ in range(n)]
        for p in passes:
            maps = p.maps
            if p.flipped is not None:
                hw = tuple(maps["keypoint_heatmap"].shape[2:])
                maps = fuse_maps(
                    [
                        resample_maps(maps, _affine(p.transforms, p.transforms, False), hw, False),
                        resample_maps(p.flipped, _affine(p.transforms, p.flipped_transforms, True), hw, True),
                    ]
                )
            decoded = decode(maps, cfg.decoder, FEATURE_STRIDE, self.rescorer)
            for i, (d, t) in enumerate(zip(decoded, p.transforms, strict=True)):
                per_frame[i].append(_to_frame(d, t))
        out = []
        for i, parts in enumerate(per_frame):
            first = passes[0].transforms[i]
            long_side = max(first.frame_width, first.frame_height)
            if len(parts) == 1:
                out.append(parts[0])
            elif cfg.scale_merge == "nearest_height":
                out.append(merge_scales(parts, cfg, long_side))
            else:
                out.append(merge_by_confidence(parts, cfg, joints=cfg.scale_merge == "joints"))
        return out

    estimate = __call__

    @torch.inference_mode()
    def feature_pass(
        self, frames: Sequence[np.ndarray], size: int
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, list[Letterbox]]:
        """One network pass at long side ``size`` without decoding, for readers of the features
        (TemporalNet) whose scale is not one of ``config.input_sizes``.

        Returns:
            features (B, C, Hc/4, Wc/4), keypoint heatmaps (B, 17, Hc/4, Wc/4) on the model's
            device and dtype, the (B, Hc, Wc, 3) uint8 canvas and one ``Letterbox`` per frame.
        """
        frame_batch(frames)
        canvas, transforms = letterbox(frames, size, self.config.square)
        maps = self._run(canvas)
        return maps["features"], maps["keypoint_heatmap"], canvas, transforms

    def _refine(self, rgb: np.ndarray, poses: DecodedPoses) -> DecodedPoses:
        """Thunder refinement of one frame's merged people (``config.refine``); unchanged when off."""
        if self.refiner is None or len(poses) == 0:
            return poses
        keypoints, _ = self.refiner(
            rgb, poses.keypoints, poses.boxes, poses.scores, box_iou(poses.boxes, poses.boxes)
        )
        return replace(poses, keypoints=keypoints)


def merge_scales(
    parts: Sequence[DecodedPoses], config: EstimatorConfig, frame_long_side: int
) -> DecodedPoses:
    """Merge one frame's people decoded at each of ``config.input_sizes`` (frame pixels).

    Scale selection in the spirit of SNIP: a person is *preferred* at the scale where its
    box height in that scale's input is closest to ``config.preferred_height`` (log
    distance). People at their preferred scale are all kept; a person at another scale is
    kept only when it matches none of them (box IoU <= ``merge_iou`` and OKS <=
    ``decoder.nms_oks``), i.e. when only that scale found it. A final OKS NMS removes
    what duplicates remain. Plain pose NMS is not enough on its own: a small person seen
    at a too-small scale has keypoints a few pixels off, OKS to its better detection
    falls to 0.1-0.3, and both would be kept.
    """
    sizes = np.asarray(config.input_sizes, np.float64)
    dcfg = config.decoder
    preferred, other = [], []
    for i, part in enumerate(parts):
        if len(part) == 0:
            continue
        heights = (
            np.maximum(part.boxes[:, 3] - part.boxes[:, 1], 1e-3) / frame_long_side
        )  # fraction of long side
        dist = np.abs(np.log(heights[:, None] * sizes[None, :] / config.preferred_height))
        is_pref = dist.argmin(axis=1) == i
        preferred.append(part.select(np.flatnonzero(is_pref)))
        other.append(part.select(np.flatnonzero(~is_pref)))
    core = DecodedPoses.concatenate(preferred)
    extra = DecodedPoses.concatenate(other)
    if len(core) and len(extra):
        areas = np.maximum((core.boxes[:, 2] - core.boxes[:, 0]) * (core.boxes[:, 3] - core.boxes[:, 1]), 1.0)
        oks = oks_matrix(core.keypoints, extra.keypoints, areas, dcfg.nms_keypoint_threshold)
        dup = (box_iou(core.boxes, extra.boxes) > config.merge_iou) | (oks > dcfg.nms_oks)
        extra = extra.select(np.flatnonzero(~dup.any(axis=0)))
    merged = DecodedPoses.concatenate([core, extra])
    return merged.select(pose_nms(merged, dcfg.nms_oks, dcfg.nms_keypoint_threshold))


def merge_by_confidence(
    parts: Sequence[DecodedPoses], config: EstimatorConfig, joints: bool = False
) -> DecodedPoses:
    """Merge one frame's people of several scales (frame pixels), each person from its surest scale.

    All people of all scales, best person score first (the score is centre x mean joint
    confidence): a person is kept unless a kept one matches it (OKS > ``decoder.nms_oks``,
    or box IoU > ``merge_iou`` when they come from different scales). With ``joints``, each
    joint of a kept person is then taken from whichever of its matches (kept one included)
    is most confident at that joint.
    """
    dcfg = config.decoder
    merged = DecodedPoses.concatenate(list(parts))
    if len(merged) == 0:
        return merged
    scale = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    order = np.argsort(-merged.scores, kind="stable")
    kp, boxes, scale = merged.keypoints[order], merged.boxes[order], scale[order]
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1.0)
    dup = oks_matrix(kp, kp, areas, dcfg.nms_keypoint_threshold) > dcfg.nms_oks
    dup |= (box_iou(boxes, boxes) > config.merge_iou) & (scale[:, None] != scale[None, :])
    owner = np.full(len(order), -1)
    keep = []
    for i in range(len(order)):
        if owner[i] >= 0:
            continue
        keep.append(i)
        owner[(owner < 0) & dup[i]] = i
        owner[i] = i
    out = merged.select(order[np.asarray(keep, np.int64)])
    if joints:
        new_kp = out.keypoints.copy()
        for row, i in enumerate(keep):
            members = np.flatnonzero(owner == i)
            best = members[np.argmax(kp[members, :, 2], axis=0)]  # (17,) member per joint
            new_kp[row] = kp[best, np.arange(NUM_KEYPOINTS)]
        out = DecodedPoses(new_kp, out.boxes, out.scores, out.centers)
    return out


def _affine(target: Sequence[Letterbox], source: Sequence[Letterbox], flipped: bool) -> np.ndarray:
    """(B, 4) ``(ax, bx, ay, by)``: source input px = a * target input px + b, per frame.

    ``flipped``: the source pass ran on the horizontally mirrored frame (x -> width - x).
    """
    rows = []
    for t, s in zip(target, source, strict=True):
        rx, ry = s.scale_x / t.scale_x, s.scale_y / t.scale_y
        if flipped:
            rows.append((-rx, t.frame_width * s.scale_x + t.pad_x * rx + s.pad_x, ry, s.pad_y - t.pad_y * ry))
        else:
            rows.append((rx, s.pad_x - t.pad_x * rx, ry, s.pad_y - t.pad_y * ry))
    return np.asarray(rows, np.float64)


def _to_frame(poses: DecodedPoses, t: Letterbox) -> DecodedPoses:
    """Input-pixel people -> frame pixels (keypoints clipped to the frame)."""
    kp = poses.keypoints.copy()
    xy = t.to_frame(kp[..., :2])
    xy[..., 0] = xy[..., 0].clip(0, t.frame_width)
    xy[..., 1] = xy[..., 1].clip(0, t.frame_height)
    kp[..., :2] = xy
    return DecodedPoses(
        kp.reshape(-1, NUM_KEYPOINTS, 3),
        t.boxes_to_frame(poses.boxes),
        poses.scores,
        t.to_frame(poses.centers),
    )
