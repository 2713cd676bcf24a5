"""The real detectors: pose estimator -> TemporalNet -> what the tracker takes of each frame.

Imports torch (through ``posestream.models.estimator``); only the worker and ``posestream track``
import this module, inside their mains.

Wired:

- ``movenet`` (``posestream.models.estimator.PoseEstimator``) with every tracker of DESIGN.md: ``oks``,
  ``iou`` and ``sie`` (keypoints and boxes only), and ``he``, ``tie``, ``he+tie`` with
  TemporalNet's heads (``posestream.models.temporalnet``, checkpoint ``TEMPORALNET_MOVENET`` in the weights folder)
  on stride-4 features of TemporalNet's training scale (``TemporalNetConfig.input_size``, 256)
  whatever ``input_sizes`` the estimator runs: the estimator's own pass at that scale when it
  runs one, else one extra undecoded pass at it (``PoseEstimator.feature_pass``; +25 % of a
  512 pass for a 256 one). HE boxes and TIE points come from the merged people of every scale.
- ``spatialnet`` (``posestream.models.spatial_estimator.SpatialNetEstimator``, the seed-faithful path,
  checkpoint ``SPATIALNET_MOVENET``) with ``oks``, ``iou`` and seed 000 Table 4's
  SpatialNet baselines ``sie``, ``ke`` and ``ke+sie``, which compare the network's own SIE
  and KE at the joints across frames; ``he``, ``tie`` and ``he+tie`` when a TemporalNet
  trained on that SpatialNet's features is present (``TEMPORALNET_SPATIALNET``). Checkpoints are found with
  ``posestream.models.weights.checkpoint_path(name, weights_dir)``, ``weights_dir`` from the settings.

What the tracker gets per frame t (``posestream.tracker.costs.psi_tie`` reads these):

- ``sie``: SpatialNet's SIE at each joint; for MoveNet (no SIE head) every joint holds its
  person's centre (``person_centre_sie``).
- ``tags``: SpatialNet's KE tags at each joint (MoveNet: none).
- ``embeddings``: HE of each detection (presets with ``he``).
- ``tie_fwd``: forward TIE of the pair (t-1, t) at the detection's joints = its predicted
  centre at t-1, compared with the tracks' ``sie``.
- the tracks' ``tie_bwd``: Psi_TIE compares "the track's joints at t-1 propagated to t"
  with the detections' SIE, and that needs frame t, so it cannot be computed when the
  track's detection was made, and the tracks live in the tracker's state, which a detector
  never sees. Each frame's ``Detected`` therefore carries ``tie_bwd_at``, the backward TIE
  of the pair (t-1, t) as a sampler; ``posestream.tracker.session.track_frame`` samples it
  at the tracks' last joints and writes that into ``tracks.tie_bwd`` right before the step.
  The detections' own ``tie_bwd`` is a placeholder (their SIE) that the next frame
  replaces in the same way.

Temporal context. TIE at frame t needs frame t-1's features, heatmaps and SIE
(``posestream.models.temporal_inference.TemporalContext``, fp16, ~270 kB for a 4:3 frame at 256). It is kept
**in the detector** (the worker's memory), per session, in a bounded LRU (``max_contexts`` sessions), and
used only when it belongs to the frame with ``seq - 1``. We chose the worker over the
Redis session store: 270 kB per frame written and read for every frame would be 50x the
tracker state itself, for the benefit of one frame after a restart. When it is missing
(the session's first frame, after a worker restart or a hand-over to another worker, after
eviction or a gap in ``seq``) TIE of that one frame falls back to zero motion (each
detection's predicted centre at t-1 is its centre at t, and each track's centre at t is
its last centre: Table 4's SIE baseline), while HE works as usual.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.weights import (
    RECURRENT_SPATIALNET,
    SPATIAL_DECODERS,
    SPATIALNET_FOR_DECODER,
    SPATIALNET_MOVENET,
    TEMPORALNET_MOVENET,
    TEMPORALNET_SPATIALNET,
    checkpoint_path,
    sha256_file,
)
from posestream.service.pipelines.base import FrameInput, FramePipeline
from posestream.tracker.config import PRESET_TERMS, TrackerConfig
from posestream.tracker.costs import person_centre_sie
from posestream.tracker.session import Detected

log = logging.getLogger(__name__)

_KEYPOINT_ONLY = ("oks", "iou", "sie")  # "sie": person-centre distance, Table 4's SIE baseline
_TEMPORAL = ("he", "tie", "he+tie")
_NO_JOINTS = np.zeros((0, NUM_KEYPOINTS, 3), np.float32)


def check_tracker(model: str, preset: str, has_temporal: bool, missing: Path | None = None) -> None:
    """Refuse a tracker preset the model cannot feed, with a message that says what to do.

    ``missing``: the TemporalNet checkpoint looked for and not found, named in the message.

    Raises:
        ValueError: the preset needs TemporalNet (HE/TIE) and none is loaded, or needs KE tags
            and the model is MoveNet.
    """
    terms = PRESET_TERMS[preset]
    if not has_temporal and any(t in ("he", "tie") for t in terms):
        how = (
            f"`posestream train temporal` (writes weights/{TEMPORALNET_MOVENET})"
            if model == "movenet"
            else f"`posestream train temporal --config configs/temporalnet_spatialnet.yaml` "
            f"(writes weights/{TEMPORALNET_SPATIALNET})"
        )
        where = (
            f" and there is no {missing.absolute()} (the weights folder is POSESTREAM_WEIGHTS_DIR, Settings.weights_dir)"
            if missing is not None
            else ""
        )
        raise ValueError(
            f"tracker {preset!r} needs TemporalNet (HE/TIE) for --model {model}{where}: point "
            f"POSESTREAM_WEIGHTS_DIR at the folder holding it, train it with {how}, or use --tracker oks or --tracker iou"
        )
    if model == "movenet" and not set(terms) <= {"he", "tie", "oks", "iou", "sie"}:
        raise ValueError(
            f"tracker {preset!r} needs KE tags, which MoveNet does not produce; "
            f"use he+tie, he, tie, sie, oks or iou (or --model spatialnet)"
        )


class ModelDetector:
    """``Detector``: a batched pose estimator over all frames, then TemporalNet's HE and TIE per frame.

    Args:
        estimator: a loaded ``posestream.models.estimator.PoseEstimator`` or
            ``posestream.models.spatial_estimator.SpatialNetEstimator``.
        temporal: ``posestream.models.temporal_inference.TemporalInference``, or None (no HE/TIE). The
            estimator must return the features of its ``config.input_size`` scale.
        use_he, use_tie: which of TemporalNet's outputs the tracker reads (its preset's terms).
        model: ``"movenet"`` or ``"spatialnet"``: which estimator (only MoveNet may need the extra
            pass at TemporalNet's scale).
        max_contexts: sessions whose previous-frame TIE context is kept (least recently
            used ones are dropped; such a session loses TIE for one frame).
    """

    def __init__(
        self,
        estimator: object,
        temporal: Any | None = None,
        *,
        use_he: bool = False,
        use_tie: bool = False,
        model: str = "movenet",
        max_contexts: int = 256,
    ) -> None:
        if temporal is None and (use_he or use_tie):
            raise ValueError("HE and TIE need TemporalNet (temporal=None)")
        self.estimator = estimator
        self.temporal = temporal
        self.use_he = use_he
        self.use_tie = use_tie
        self.model = model
        self.name = model
        self.max_contexts = int(max_contexts)
        self._contexts: OrderedDict[str, Any] = OrderedDict()

    def detect(self, frames: Sequence[FrameInput]) -> list[Detected]:
        if not frames:
            return []
        est = self.estimator(  # type: ignore[operator]
            [f.rgb for f in frames], [f.frame_index for f in frames], [f.timestamp for f in frames]
        )
        if self.temporal is not None and self.model == "movenet":
            est = self._at_temporal_scale([f.rgb for f in frames], est)
        n = len(frames)
        embeddings: list[np.ndarray | None] = [None] * n
        contexts: list[Any] = [None] * n
        if self.use_he:
            embeddings = list(self.temporal.embeddings(est))  # type: ignore[union-attr]
        if self.use_tie:
            contexts = self.temporal.contexts(est, [f.seq for f in frames])  # type: ignore[union-attr]
        out: list[Detected] = []
        for i, (frame, poses) in enumerate(zip(frames, est.poses, strict=True)):
            sie = est.sie[i] if est.sie is not None else person_centre_sie(poses.keypoints)
            tie_fwd = tie_bwd = None
            tie_bwd_at = None
            if self.use_tie:
                tie_fwd, tie_bwd = sie, sie  # zero motion unless frame t-1's context is here
                prev = self._contexts.get(frame.session_id)
                if prev is not None and prev.seq == frame.seq - 1:
                    tvf = self.temporal.tvf_map(prev, contexts[i])  # type: ignore[union-attr]
                    tie_fwd, _ = self.temporal.tie(prev, contexts[i], poses.keypoints, _NO_JOINTS, tvf)  # type: ignore[union-attr]
                    tie_bwd_at = partial(_tie_bwd, self.temporal, prev, contexts[i], poses.keypoints, tvf)
                elif frame.seq > 0:
                    log.debug(
                        "session %s seq %d: no TIE context for seq - 1; zero-motion TIE",
                        frame.session_id,
                        frame.seq,
                    )
                self._remember(frame.session_id, contexts[i])
            dets = dataclasses.replace(
                poses, embeddings=embeddings[i], sie=sie, tie_fwd=tie_fwd, tie_bwd=tie_bwd,
                tags=est.tags[i] if est.tags is not None else None,
            )  # fmt: skip
            out.append(Detected(dets, tie_bwd_at))
        return out

    def _at_temporal_scale(self, frames: list[np.ndarray], est: Any) -> Any:
        return at_temporal_scale(self.estimator, frames, est, self.temporal.config.input_size)  # type: ignore[union-attr]

    def _remember(self, session_id: str, context: Any) -> None:
        self._contexts[session_id] = context
        self._contexts.move_to_end(session_id)
        while len(self._contexts) > self.max_contexts:
            self._contexts.popitem(last=False)


def _tie_bwd(
    temporal: Any, prev: Any, cur: Any, cur_keypoints: np.ndarray, tvf: Any, track_keypoints: np.ndarray
) -> np.ndarray:
    """Backward TIE of the pair (prev, cur) at the tracks' last joints (T, 17, 3) -> (T, 17, 2), frame pixels."""
    return temporal.tie(prev, cur, cur_keypoints, track_keypoints, tvf)[1]


class ModelPipeline(FramePipeline):
    """``FramePipeline`` of a ``ModelDetector`` and ``tracker_config`` (checked against what the model feeds).

    Args:
        estimator, temporal, max_contexts: as ``ModelDetector``.
        tracker_config: the tracker's thresholds and preset (its terms choose HE / TIE).
        model: ``"movenet"`` or ``"spatialnet"`` (only SpatialNet has KE tags for the ``ke`` trackers).
    """

    def __init__(
        self,
        estimator: object,
        tracker_config: TrackerConfig,
        temporal: Any | None = None,
        max_contexts: int = 256,
        model: str = "movenet",
    ) -> None:
        check_tracker(model, tracker_config.preset, temporal is not None)
        terms = PRESET_TERMS[tracker_config.preset]
        detector = ModelDetector(
            estimator,
            temporal,
            use_he="he" in terms,
            use_tie="tie" in terms,
            model=model,
            max_contexts=max_contexts,
        )
        super().__init__(detector, tracker_config, name=f"{model}/{tracker_config.preset}")

    @property
    def estimator(self) -> object:
        return self.detector.estimator  # type: ignore[attr-defined]

    @property
    def temporal(self) -> Any | None:
        return self.detector.temporal  # type: ignore[attr-defined]


def build_model_detector(
    model: str,
    tracker: str,
    input_sizes: Sequence[int] | None,
    device: str,
    weights_dir: str | Path | None = None,
    decoder: str = SPATIAL_DECODERS[0],
    refine: bool = True,
) -> tuple[ModelDetector, dict[str, Any]]:
    """Load the weights and build the detector for ``tracker`` (call in a main, never at import).

    Args:
        weights_dir: the folder of our checkpoints (``Settings.weights_dir``); default
            ``posestream.models.weights.weights_dir()``.
        decoder: SpatialNet's decoder (``SPATIAL_DECODERS``); "recurrent" loads
            ``RECURRENT_SPATIALNET`` from the same folder (only with ``model == "spatialnet"``)
            and runs it on the SpatialNet it was trained on (``SPATIALNET_FOR_DECODER``).
        refine: run the gated Thunder refinement (``RefineConfig.enabled``) on either
            model's people.
    Returns:
        the detector and the tracker fields its TemporalNet checkpoint's card asks for
        (``TemporalInference.tracker_settings``; empty without TemporalNet), which the
        composition root puts between the preset's defaults and the settings.
    """
    TrackerConfig(preset=tracker)  # fails fast, before loading weights
    if model == "spatialnet":
        return _spatialnet_detector(
            tracker, input_sizes, device, checkpoint_path(SPATIALNET_FOR_DECODER[decoder], weights_dir),
            checkpoint_path(TEMPORALNET_SPATIALNET, weights_dir),
            checkpoint_path(RECURRENT_SPATIALNET, weights_dir) if decoder == "recurrent" else None, refine,
        )  # fmt: skip
    if decoder != SPATIAL_DECODERS[0]:
        raise ValueError(f"--decoder {decoder} decodes SpatialNet's maps: it needs --model spatialnet")
    if model != "movenet":
        raise ValueError(f"unknown model {model!r}; use movenet or spatialnet")
    from posestream.models.estimator import EstimatorConfig, PoseEstimator
    from posestream.models.refine import RefineConfig

    sizes = (
        tuple(input_sizes) if input_sizes else EstimatorConfig().input_sizes
    )  # else the estimator's own policy
    temporal = None
    card: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if tracker in _TEMPORAL:
        path = checkpoint_path(TEMPORALNET_MOVENET, weights_dir)
        if not path.is_file():
            check_tracker(model, tracker, has_temporal=False, missing=path)  # raises the explanatory error
        temporal = load_temporal(path, "movenet")
        card = dict(temporal.tracker_settings)
        if temporal.config.input_size in sizes:  # else the detector runs one extra pass at that size
            extra["feature_size"] = temporal.config.input_size
    elif tracker not in _KEYPOINT_ONLY:
        check_tracker(model, tracker, has_temporal=False)  # raises the explanatory error
    estimator = PoseEstimator(
        EstimatorConfig(device=device, input_sizes=sizes, refine=RefineConfig(enabled=refine), **extra)
    )
    _same_device(temporal, estimator.device)
    return _detector(estimator, temporal, tracker, "movenet"), card


def _detector(estimator: object, temporal: Any | None, tracker: str, model: str) -> ModelDetector:
    check_tracker(model, tracker, temporal is not None)
    terms = PRESET_TERMS[tracker]
    return ModelDetector(estimator, temporal, use_he="he" in terms, use_tie="tie" in terms, model=model)


def _spatialnet_detector(
    tracker: str,
    input_sizes: Sequence[int] | None,
    device: str,
    weights: Path,
    temporal_weights: Path,
    recurrent_weights: Path | None = None,
    refine: bool = True,
) -> tuple[ModelDetector, dict[str, Any]]:
    from posestream.models.refine import RefineConfig
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

    if not weights.is_file():
        raise ValueError(
            f"--model spatialnet needs {weights}: point POSESTREAM_WEIGHTS_DIR at the folder holding "
            f"{weights.name}, or train it with `posestream train spatial "
            f"--config configs/spatialnet_movenet.yaml --export {weights}`"
        )
    if input_sizes and len(input_sizes) > 1:
        raise ValueError(f"--model spatialnet runs at one input size, got {list(input_sizes)}")
    temporal = None
    card: dict[str, Any] = {}
    if tracker in _TEMPORAL:
        if not temporal_weights.is_file():
            check_tracker("spatialnet", tracker, has_temporal=False, missing=temporal_weights)  # raises
        temporal = load_temporal(temporal_weights, "spatialnet")
        trained_on = temporal.card.get("spatialnet_sha256")
        if trained_on is not None and trained_on != sha256_file(weights):
            raise ValueError(
                f"tracker {tracker!r}: {temporal_weights.name} was trained on the features of SpatialNet "
                f"sha256 {trained_on[:12]}..., not of {weights.name}"
                + (" (the recurrent decoder's SpatialNet): use --decoder embedding or tracker oks, iou or sie"
                   if recurrent_weights is not None else
                   ": retrain it with `posestream train temporal --config configs/temporalnet_spatialnet.yaml`")
            )  # fmt: skip
        card = dict(temporal.tracker_settings)
    size = (
        int(input_sizes[0])
        if input_sizes
        else (temporal.config.input_size if temporal else SpatialEstimatorConfig().input_size)
    )
    if temporal is not None and size != temporal.config.input_size:
        raise ValueError(
            f"tracker {tracker!r}: TemporalNet was trained on SpatialNet features of input size "
            f"{temporal.config.input_size}; use --input-size {temporal.config.input_size}"
        )
    decoder = "recurrent" if recurrent_weights is not None else SPATIAL_DECODERS[0]
    config = SpatialEstimatorConfig(
        input_size=size, device=device, decoder=decoder, refine=RefineConfig(enabled=refine)
    )
    estimator = SpatialNetEstimator(weights, config, recurrent_weights)
    net = estimator.net.config
    untrained = [head for head, on in (("ke", net.use_ke), ("sie", net.use_sie)) if not on]
    if set(PRESET_TERMS[tracker]) & set(untrained):
        raise ValueError(
            f"tracker {tracker!r} reads SpatialNet's {'/'.join(untrained)} head, which "
            f"{weights} was trained without; choose another tracker"
        )
    _same_device(temporal, estimator.device)
    return _detector(estimator, temporal, tracker, "spatialnet"), card


def _build_spatialnet(
    config: TrackerConfig, input_sizes: Sequence[int] | None, device: str, weights: Path | None = None
) -> ModelPipeline:
    """A SpatialNet pipeline from an explicit weights file (tests); the card's fields over ``config``."""
    weights = weights if weights is not None else checkpoint_path(SPATIALNET_MOVENET)
    detector, card = _spatialnet_detector(
        config.preset, input_sizes, device, weights, checkpoint_path(TEMPORALNET_SPATIALNET)
    )
    return ModelPipeline(
        detector.estimator, dataclasses.replace(config, **card), detector.temporal, model="spatialnet"
    )


def load_temporal(path: Path, backbone: str) -> Any:
    from posestream.models.temporal_inference import TemporalInference

    temporal = TemporalInference.load(path)
    if temporal.config.backbone != backbone:
        raise ValueError(
            f"{path} was trained on {temporal.config.backbone} features, not {backbone}'s; retrain it with "
            f"`posestream train temporal`"
            + (" --config configs/temporalnet_spatialnet.yaml" if backbone == "spatialnet" else "")
        )
    return temporal


def at_temporal_scale(estimator: Any, frames: Sequence[np.ndarray], est: Any, size: int) -> Any:
    """``est`` (a ``posestream.models.estimator.EstimatorOutput`` of ``frames``) with the features, heatmaps,
    canvas and transforms of long side ``size`` (TemporalNet's training scale): its own when the
    estimator returned that scale's, else those of one extra undecoded pass
    (``PoseEstimator.feature_pass``). The people (``est.poses``) are unchanged."""
    if (
        est.heatmaps is not None
        and est.canvas is not None
        and all(_long_side(lb) == size for lb in est.transforms)
    ):
        return est
    features, heatmaps, canvas, transforms = estimator.feature_pass(frames, size)
    return dataclasses.replace(
        est, features=features, heatmaps=heatmaps, canvas=canvas, transforms=transforms
    )


def _long_side(lb: Any) -> int:
    """The long side (input pixels) a ``posestream.models.estimator.Letterbox`` resized its frame to: the scale."""
    return max(round(lb.frame_width * lb.scale_x), round(lb.frame_height * lb.scale_y))


def _same_device(temporal: Any | None, device: Any) -> None:
    if temporal is not None and temporal.device != device:
        temporal.model.to(device)
        temporal.device = device
