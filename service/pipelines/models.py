"""The real pipelines: pose estimator -> TemporalNet -> tracker step.

Imports torch (through ``posestream.models.estimator``); only the worker and ``posestream track``
import this module, inside their mains.

Wired:

- ``movenet`` (``posestream.models.estimator.PoseEstimator``) with every tracker of DESIGN.md: ``oks``,
  ``iou`` and ``sie`` (keypoints and boxes only), and ``he``, ``tie``, ``he+tie`` with
  TemporalNet's heads (``posestream.models.temporalnet``, checkpoint ``weights/temporalnet_movenet.pt``)
  on stride-4 features of TemporalNet's training scale (``TemporalNetConfig.input_size``, 256)
  whatever ``input_sizes`` the estimator runs: the estimator's own pass at that scale when it
  runs one, else one extra undecoded pass at it (``PoseEstimator.feature_pass``; +25 % of a
  512 pass for a 256 one). HE boxes and TIE points come from the merged people of every scale.
- ``spatialnet`` (``posestream.models.spatial_estimator.SpatialNetEstimator``, the seed-faithful path,
  checkpoint ``SPATIALNET_WEIGHTS``) with ``oks``, ``iou`` and seed 000 Table 4's
  SpatialNet baselines ``sie``, ``ke`` and ``ke+sie``, which compare the network's own SIE
  and KE at the joints across frames; ``he``, ``tie`` and ``he+tie`` when a TemporalNet
  trained on that SpatialNet's features is present (``TEMPORALNET_SPATIAL_WEIGHTS``).

What the tracker gets per frame t (``posestream.tracker.costs.psi_tie`` reads these):

- ``sie``: SpatialNet's SIE at each joint; for MoveNet (no SIE head) every joint holds its
  person's centre (``person_centre_sie``).
- ``tags``: SpatialNet's KE tags at each joint (MoveNet: none).
- ``embeddings``: HE of each detection (presets with ``he``).
- ``tie_fwd``: forward TIE of the pair (t-1, t) at the detection's joints = its predicted
  centre at t-1, compared with the tracks' ``sie``.
- the tracks' ``tie_bwd``: Psi_TIE compares "the track's joints at t-1 propagated to t"
  with the detections' SIE, and that needs frame t, so it cannot be computed when the
  track's detection was made. Before each step the pipeline therefore overwrites the
  state's ``tracks.tie_bwd`` with the backward TIE of the pair (t-1, t) sampled at each
  track's last joints. The detections' own ``tie_bwd`` is a placeholder (their SIE) that
  the next frame replaces in the same way.

Temporal context. TIE at frame t needs frame t-1's features, heatmaps and SIE
(``posestream.models.temporalnet.TemporalContext``, fp16, ~270 kB for a 4:3 frame at 256). It is kept
**in the worker's memory**, per session, in a bounded LRU (``max_contexts`` sessions), and
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
from pathlib import Path
from typing import Any

import numpy as np

from posestream.models.poses import FramePoses
from posestream.service.pipeline import FrameInput, TrackerState
from posestream.tracker.config import PRESET_TERMS, TrackerConfig
from posestream.tracker.detections import Detections, person_centre_sie
from posestream.tracker.state import TrackerState as _State
from posestream.tracker.step import step

log = logging.getLogger(__name__)

_KEYPOINT_ONLY = ("oks", "iou", "sie")  # "sie": person-centre distance, Table 4's SIE baseline
_TEMPORAL = ("he", "tie", "he+tie")
_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
TEMPORALNET_WEIGHTS = _WEIGHTS / "temporalnet_movenet.pt"
SPATIALNET_WEIGHTS = _WEIGHTS / "spatialnet_movenet.pt"
TEMPORALNET_SPATIAL_WEIGHTS = _WEIGHTS / "temporalnet_spatialnet.pt"


class ModelPipeline:
    """``FramePipeline``: a batched pose estimator over all frames, TemporalNet, then one tracker step per frame per session.

    Args:
        estimator: a loaded ``posestream.models.estimator.PoseEstimator`` or
            ``posestream.models.spatial_estimator.SpatialNetEstimator``.
        model: ``"movenet"`` or ``"spatialnet"``: which estimator (for names and error messages;
            only SpatialNet has KE tags for the ``ke`` trackers).
        tracker_config: the tracker's thresholds and preset.
        temporal: ``posestream.models.temporalnet.TemporalInference``; required by the ``he``, ``tie``
            and ``he+tie`` presets. The estimator must return the features of its
            ``config.input_size`` scale.
        max_contexts: sessions whose previous-frame TIE context is kept (least recently
            used ones are dropped; such a session loses TIE for one frame).
    """

    def __init__(
        self,
        estimator: object,
        tracker_config: TrackerConfig,
        temporal: Any | None = None,
        max_contexts: int = 256,
        model: str = "movenet",
    ) -> None:
        terms = PRESET_TERMS[tracker_config.preset]
        if temporal is None and any(t in ("he", "tie") for t in terms):
            how = (
                f"`posestream train temporal` (writes {TEMPORALNET_WEIGHTS})"
                if model == "movenet"
                else f"`posestream train temporal --config configs/temporalnet_spatialnet.yaml` "
                f"(writes {TEMPORALNET_SPATIAL_WEIGHTS})"
            )
            raise ValueError(
                f"tracker {tracker_config.preset!r} needs TemporalNet (HE/TIE) for --model {model}: train it "
                f"with {how}, or use --tracker oks or --tracker iou"
            )
        if model == "movenet" and not set(terms) <= {"he", "tie", "oks", "iou", "sie"}:
            raise ValueError(
                f"tracker {tracker_config.preset!r} needs KE tags, which MoveNet does not produce; "
                f"use he+tie, he, tie, sie, oks or iou (or --model spatialnet)"
            )
        self.estimator = estimator
        self.tracker_config = tracker_config
        self.temporal = temporal
        self.use_he = "he" in terms
        self.use_tie = "tie" in terms
        self.model = model
        self.max_contexts = int(max_contexts)
        self._contexts: OrderedDict[str, Any] = OrderedDict()
        self.name = f"{model}/{tracker_config.preset}"

    def process(
        self, batch: Sequence[FrameInput], states: Sequence[TrackerState | None]
    ) -> list[tuple[FramePoses, TrackerState]]:
        if len(batch) != len(states):
            raise ValueError(f"got {len(batch)} frames but {len(states)} states")
        if not batch:
            return []
        est = self.estimator(  # type: ignore[operator]
            [f.rgb for f in batch], [f.frame_index for f in batch], [f.timestamp for f in batch]
        )
        if self.temporal is not None and self.model == "movenet":
            est = self._at_temporal_scale([f.rgb for f in batch], est)
        n = len(batch)
        embeddings: list[np.ndarray | None] = [None] * n
        contexts: list[Any] = [None] * n
        if self.temporal is not None and self.use_he:
            embeddings = list(self.temporal.embeddings(est))
        if self.temporal is not None and self.use_tie:
            contexts = self.temporal.contexts(est, [f.seq for f in batch])
        current: dict[str, TrackerState] = {}
        out: list[tuple[FramePoses, TrackerState]] = []
        for i, (frame, given, poses) in enumerate(zip(batch, states, est.poses, strict=True)):
            state = current.get(frame.session_id)
            if state is None:
                state = given if given is not None else _State.initial()
            sie = est.sie[i] if est.sie is not None else person_centre_sie(poses.keypoints)
            tie_fwd = tie_bwd = None
            if self.use_tie:
                tie_fwd, tie_bwd = sie, sie  # zero motion unless frame t-1's context is here
                prev = self._contexts.get(frame.session_id)
                if prev is not None and prev.seq == frame.seq - 1:
                    fwd, bwd = self.temporal.tie(  # type: ignore[union-attr]
                        prev, contexts[i], poses.keypoints, state.tracks.keypoints
                    )
                    tie_fwd = fwd
                    if len(state.tracks):
                        state = dataclasses.replace(
                            state, tracks=dataclasses.replace(state.tracks, tie_bwd=bwd)
                        )
                elif len(state.tracks):
                    log.debug(
                        "session %s seq %d: no TIE context for seq - 1; zero-motion TIE",
                        frame.session_id,
                        frame.seq,
                    )
                self._remember(frame.session_id, contexts[i])
            dets = Detections.from_frame_poses(
                poses, embeddings=embeddings[i], sie=sie, tie_fwd=tie_fwd, tie_bwd=tie_bwd,
                tags=est.tags[i] if est.tags is not None else None,
            )  # fmt: skip
            state, tracked = step(state, dets, self.tracker_config)
            current[frame.session_id] = state
            out.append((tracked.to_frame_poses(), state))
        return out

    def _at_temporal_scale(self, frames: list[np.ndarray], est: Any) -> Any:
        return at_temporal_scale(self.estimator, frames, est, self.temporal.config.input_size)  # type: ignore[union-attr]

    def _remember(self, session_id: str, context: Any) -> None:
        self._contexts[session_id] = context
        self._contexts.move_to_end(session_id)
        while len(self._contexts) > self.max_contexts:
            self._contexts.popitem(last=False)


def build_model_pipeline(
    model: str, tracker: str, input_sizes: Sequence[int] | None, device: str
) -> ModelPipeline:
    """Load the weights and build the pipeline (call in a main, never at import)."""
    config = TrackerConfig(preset=tracker)  # fails fast, before loading weights
    if model == "spatialnet":
        return _build_spatialnet(config, input_sizes, device)
    if model != "movenet":
        raise ValueError(f"unknown model {model!r}; use movenet or spatialnet")
    from posestream.models.estimator import EstimatorConfig, PoseEstimator

    sizes = (
        tuple(input_sizes) if input_sizes else EstimatorConfig().input_sizes
    )  # else the estimator's own policy
    temporal = None
    extra: dict[str, Any] = {}
    if tracker in _TEMPORAL:
        if not TEMPORALNET_WEIGHTS.is_file():
            ModelPipeline(None, config)  # raises the explanatory error
        temporal = load_temporal(TEMPORALNET_WEIGHTS, "movenet")
        config = dataclasses.replace(config, **temporal.tracker_settings)
        if temporal.config.input_size in sizes:  # else ModelPipeline runs one extra pass at that size
            extra["feature_size"] = temporal.config.input_size
    elif tracker not in _KEYPOINT_ONLY:
        ModelPipeline(None, config)  # raises the explanatory error
    estimator = PoseEstimator(EstimatorConfig(device=device, input_sizes=sizes, **extra))
    _same_device(temporal, estimator.device)
    return ModelPipeline(estimator, config, temporal)


def _build_spatialnet(
    config: TrackerConfig, input_sizes: Sequence[int] | None, device: str, weights: Path = SPATIALNET_WEIGHTS
) -> ModelPipeline:
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

    if not weights.is_file():
        raise ValueError(
            f"--model spatialnet needs {weights}: train it with `posestream train spatial "
            f"--config configs/spatialnet_movenet.yaml --export {weights}`"
        )
    if input_sizes and len(input_sizes) > 1:
        raise ValueError(f"--model spatialnet runs at one input size, got {list(input_sizes)}")
    temporal = None
    if config.preset in _TEMPORAL:
        if not TEMPORALNET_SPATIAL_WEIGHTS.is_file():
            ModelPipeline(None, config, model="spatialnet")  # raises the explanatory error
        temporal = load_temporal(TEMPORALNET_SPATIAL_WEIGHTS, "spatialnet")
        config = dataclasses.replace(config, **temporal.tracker_settings)
    size = (
        int(input_sizes[0])
        if input_sizes
        else (temporal.config.input_size if temporal else SpatialEstimatorConfig().input_size)
    )
    if temporal is not None and size != temporal.config.input_size:
        raise ValueError(
            f"tracker {config.preset!r}: TemporalNet was trained on SpatialNet features of input size "
            f"{temporal.config.input_size}; use --input-size {temporal.config.input_size}"
        )
    estimator = SpatialNetEstimator(weights, SpatialEstimatorConfig(input_size=size, device=device))
    net = estimator.net.config
    untrained = [head for head, on in (("ke", net.use_ke), ("sie", net.use_sie)) if not on]
    if set(PRESET_TERMS[config.preset]) & set(untrained):
        raise ValueError(
            f"tracker {config.preset!r} reads SpatialNet's {'/'.join(untrained)} head, which "
            f"{weights} was trained without; choose another tracker"
        )
    _same_device(temporal, estimator.device)
    return ModelPipeline(estimator, config, temporal, model="spatialnet")


def load_temporal(path: Path, backbone: str) -> Any:
    from posestream.models.temporal_inference import TemporalInference

    temporal = TemporalInference.load(path)
    if temporal.config.backbone != backbone:
        raise ValueError(
            f"{path} was trained on {temporal.config.backbone} features, not {backbone}'s; retrain it with "
            f"`posestream train temporal`" + (" --config configs/temporalnet_spatialnet.yaml" if backbone == "spatialnet" else "")
        )
    return temporal


def at_temporal_scale(estimator: Any, frames: Sequence[np.ndarray], est: Any, size: int) -> Any:
    """``est`` (a ``posestream.models.estimator.EstimatorOutput`` of ``frames``) with the features, heatmaps,
    canvas and transforms of long side ``size`` (TemporalNet's training scale): its own when the
    estimator returned that scale's, else those of one extra undecoded pass
    (``PoseEstimator.feature_pass``). The people (``est.poses``) are unchanged."""
    if est.heatmaps is not None and est.canvas is not None and all(_long_side(lb) == size for lb in est.transforms):
        return est
    features, heatmaps, canvas, transforms = estimator.feature_pass(frames, size)
    return dataclasses.replace(est, features=features, heatmaps=heatmaps, canvas=canvas, transforms=transforms)


def _long_side(lb: Any) -> int:
    """The long side (input pixels) a ``posestream.models.estimator.Letterbox`` resized its frame to: the scale."""
    return max(round(lb.frame_width * lb.scale_x), round(lb.frame_height * lb.scale_y))


def _same_device(temporal: Any | None, device: Any) -> None:
    if temporal is not None and temporal.device != device:
        temporal.model.to(device)
        temporal.device = device
