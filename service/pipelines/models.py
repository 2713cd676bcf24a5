"""The real pipelines: MoveNet (``models.estimator.PoseEstimator``) -> tracker step.

Imports torch (through ``models.estimator``); only the worker and ``posestream track``
import this module, inside their mains.

Wired now: ``movenet`` with the ``oks`` and ``iou`` trackers (keypoints and boxes only).
``he``/``tie``/``he+tie`` need TemporalNet's HE and TIE heads on the estimator's stride-4
features, and ``spatialnet`` needs the hourglass path; both raise a clear error until
those modules land (then they plug in at ``_features_for_tracker``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from models.poses import FramePoses
from service.pipeline import FrameInput, TrackerState
from tracker.config import TrackerConfig
from tracker.detections import Detections, person_centre_sie
from tracker.state import TrackerState as _State
from tracker.step import step

log = logging.getLogger(__name__)

_KEYPOINT_ONLY = ("oks", "iou")


class MoveNetPipeline:
    """``FramePipeline``: batched MoveNet over all frames, then one tracker step per frame per session.

    Args:
        estimator: a loaded ``models.estimator.PoseEstimator``.
        tracker_config: the tracker's thresholds (``preset`` "oks" or "iou" for now).
    """

    def __init__(self, estimator: object, tracker_config: TrackerConfig) -> None:
        if tracker_config.preset not in _KEYPOINT_ONLY:
            raise ValueError(
                f"tracker {tracker_config.preset!r} needs TemporalNet (HE/TIE), which is not wired into the service "
                f"yet; use --tracker oks or --tracker iou"
            )
        self.estimator = estimator
        self.tracker_config = tracker_config
        self.name = f"movenet/{tracker_config.preset}"

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
        current: dict[str, TrackerState] = {}
        out: list[tuple[FramePoses, TrackerState]] = []
        for frame, given, poses in zip(batch, states, est.poses, strict=True):
            state = current.get(frame.session_id)
            if state is None:
                state = given if given is not None else _State.initial()
            dets = Detections.from_frame_poses(poses, sie=person_centre_sie(poses.keypoints))
            state, tracked = step(state, dets, self.tracker_config)
            current[frame.session_id] = state
            out.append((tracked.to_frame_poses(), state))
        return out


def build_model_pipeline(model: str, tracker: str, input_sizes: Sequence[int] | None, device: str) -> MoveNetPipeline:
    """Load the weights and build the pipeline (call in a main, never at import)."""
    if model != "movenet":
        raise ValueError(f"--model {model} is not wired into the service yet; use --model movenet")
    from models.estimator import EstimatorConfig, PoseEstimator

    config = TrackerConfig(preset=tracker)  # fails fast, before loading weights
    if tracker not in _KEYPOINT_ONLY:
        MoveNetPipeline(None, config)  # raises the explanatory error
    sizes = {"input_sizes": tuple(input_sizes)} if input_sizes else {}  # else the estimator's own policy
    estimator = PoseEstimator(EstimatorConfig(device=device, **sizes))
    return MoveNetPipeline(estimator, config)
