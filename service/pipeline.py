"""The composition root of the frame pipeline: settings -> detector + tracker config, and the embedded run.

One code path serves the embedded CLI (``posestream track``), the worker and the tests: a
``Detector`` (``posestream.service.pipelines``) finds each frame's people, and the sessions'
tracker states step through ``posestream.tracker.session`` (the CLI over a ``MemoryStore``,
the worker over a ``RedisStore``).

Detectors available (``build_pipeline``, names ``posestream.service.settings.MODEL_NAMES``):

- ``movenet`` / ``spatialnet``: the real models (``posestream.service.pipelines.models``);
  imported only when built, so nothing here pulls in torch at import time.
- ``blobs``: the CPU **test** detector (``posestream.service.pipelines.blobs``). It really runs on
  the pixels (thresholding + connected components, one pseudo-pose per coloured blob)
  and really tracks, but it finds coloured blobs, not people. It exists so the service
  can be tested end to end without weights or a GPU.

The tracker's config is resolved here, once: the preset's defaults < the TemporalNet
checkpoint card's calibration (``TemporalInference.tracker_settings``) < the settings'
``tracker_overrides``; ``build_pipeline`` logs the result and where each field came from.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posestream.models.poses import FramePoses
from posestream.models.weights import SPATIAL_DECODERS
from posestream.service.pipelines.base import DelayedPipeline, Detector, FrameInput, FramePipeline
from posestream.service.settings import MODEL_NAMES, NETWORK_MODELS, TEST_MODEL, Settings, tracker_overrides
from posestream.tracker.config import TrackerConfig
from posestream.tracker.session import SessionTracker
from posestream.tracker.state import TrackerState
from posestream.tracker.stores import MemoryStore

__all__ = [
    "MODEL_NAMES", "DelayedPipeline", "Detector", "FrameInput", "FramePipeline", "available_models",
    "build_pipeline", "pipeline_from_settings", "resolve_tracker_config", "run_frames",
]  # fmt: skip

log = logging.getLogger(__name__)


def resolve_tracker_config(
    preset: str, card: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> TrackerConfig:
    """The tracker config: ``preset``'s defaults < the checkpoint ``card``'s fields < the settings' ``overrides``.

    Args:
        preset: the tracker preset (``posestream.tracker.config.PRESET_TERMS``).
        card: fields a TemporalNet checkpoint was calibrated with (``TemporalInference.tracker_settings``).
        overrides: ``Settings.tracker_overrides`` (validated and typed there; checked again here).
    Raises:
        ValueError: an unknown field or a value out of range.
    """
    fields = {**dict(card or {}), **tracker_overrides(dict(overrides or {}))}
    return TrackerConfig(preset=preset, **fields)


def _log_tracker_config(config: TrackerConfig, card: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    default = TrackerConfig(preset=config.preset)
    changed = {
        f.name: (getattr(config, f.name), "settings" if f.name in overrides else "card")
        for f in dataclasses.fields(config)
        if f.name in overrides or f.name in card
    }
    log.info(
        "tracker %s: %s; over the preset's defaults: %s",
        config.preset,
        ", ".join(
            f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config) if f.name != "preset"
        ),
        ", ".join(f"{k}={v} ({src}, default {getattr(default, k)})" for k, (v, src) in changed.items())
        or "none",
    )


def build_pipeline(
    model: str,
    tracker: str = "he+tie",
    input_sizes: Sequence[int] | None = None,
    device: str = "auto",
    debug_delay_ms: int = 0,
    *,
    weights_dir: str | Path | None = None,
    tracker_overrides: Mapping[str, Any] | None = None,
    smooth: bool = False,
    decoder: str = SPATIAL_DECODERS[0],
    refine: bool = True,
) -> FramePipeline:
    """The pipeline for a model name (``MODEL_NAMES``); loads weights, so call it in a main.

    Args:
        weights_dir: the folder of our checkpoints (``Settings.weights_dir``); default
            ``posestream.models.weights.weights_dir()``.
        tracker_overrides: ``Settings.tracker_overrides`` (see ``resolve_tracker_config``).
        smooth: ``Settings.smooth`` / ``--smooth``: turn the tracker's keypoint smoothing on
            (``TrackerConfig.smooth``) whatever the overrides say.
        decoder: ``Settings.decoder`` / ``--decoder``: how SpatialNet's maps become people
            (``SPATIAL_DECODERS``); only ``--model spatialnet`` accepts "recurrent".
        refine: ``Settings.refine`` / ``--refine``: the gated Thunder refinement of the
            network models' people (``posestream.models.refine``); the blob detector ignores it.
    Raises:
        ValueError: unknown model, or a model whose code or weights are not available,
            with a message that says what to do.
    """
    overrides = dict(tracker_overrides or {})
    if smooth:
        overrides["smooth"] = True
    card: dict[str, Any] = {}
    detector: Detector
    if decoder not in SPATIAL_DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(SPATIAL_DECODERS)}")
    if decoder != SPATIAL_DECODERS[0] and model != "spatialnet":
        raise ValueError(
            f"--decoder {decoder} decodes SpatialNet's maps: it needs --model spatialnet, not {model}"
        )
    if model == TEST_MODEL:
        from posestream.service.pipelines.blobs import BLOB_TRACKERS, BlobDetector

        if tracker not in BLOB_TRACKERS:
            log.info("the blob test detector has no HE/TIE/SIE; tracking with 'iou', not %r", tracker)
            tracker = "iou"
        detector = BlobDetector()
    elif model in NETWORK_MODELS:
        try:
            from posestream.service.pipelines.models import build_model_detector
        except ImportError as exc:
            raise ValueError(
                f"--model {model} is not available in this build ({exc}); use --model blobs for the CPU test pipeline"
            ) from None
        detector, card = build_model_detector(
            model, tracker, input_sizes, device, weights_dir, decoder, refine
        )
    else:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    config = resolve_tracker_config(tracker, card, overrides)
    _log_tracker_config(config, card, overrides)
    pipeline = FramePipeline(detector, config)
    if debug_delay_ms:
        pipeline = DelayedPipeline(pipeline, debug_delay_ms / 1000.0)
    return pipeline


def pipeline_from_settings(settings: Settings) -> FramePipeline:
    """``build_pipeline`` with every argument from ``settings`` (the worker's main)."""
    return build_pipeline(
        settings.model, settings.tracker, settings.input_sizes, settings.device, settings.debug_delay_ms,
        weights_dir=settings.weights_dir, tracker_overrides=settings.tracker_overrides, smooth=settings.smooth,
        decoder=settings.decoder, refine=settings.refine,
    )  # fmt: skip


def available_models() -> list[str]:
    """Model names whose code is importable here (the CLI offers these)."""
    names = []
    try:
        import posestream.service.pipelines.models  # noqa: F401

        names += list(NETWORK_MODELS)
    except ImportError:
        pass
    return names + [TEST_MODEL]


def run_frames(
    pipeline: FramePipeline,
    frames: Iterable[tuple[int, float, np.ndarray]],
    session_id: str = "local",
    batch_size: int = 8,
    state: TrackerState | None = None,
) -> Iterator[tuple[FramePoses, np.ndarray]]:
    """Run one video's frames through ``pipeline`` in batches; the session's state lives in a ``MemoryStore``.

    This is the embedded (no Redis) path of ``posestream track``; the worker runs the same
    detector and ``SessionTracker`` on batches read from Redis.

    Args:
        frames: ``(frame_index, timestamp, rgb)`` as yielded by ``iter_video_frames``.
        state: the session's state before the first frame (``None``: a new session).
    Yields:
        ``(poses, rgb)`` per frame, in order (the image is handed back for rendering).
    """
    store = MemoryStore(ttl_s=None)
    if state is not None:
        store.save(session_id, state, 0)
    sessions = SessionTracker(store, pipeline.tracker_config)
    batch: list[FrameInput] = []
    seq = 0
    for frame_index, timestamp, rgb in frames:
        batch.append(FrameInput(session_id, seq, frame_index, timestamp, rgb))
        seq += 1
        if len(batch) >= batch_size:
            yield from _run_batch(pipeline.detector, sessions, session_id, batch)
            batch = []
    if batch:
        yield from _run_batch(pipeline.detector, sessions, session_id, batch)


def _run_batch(
    detector: Detector, sessions: SessionTracker, session_id: str, batch: list[FrameInput]
) -> Iterator[tuple[FramePoses, np.ndarray]]:
    poses = sessions.step(session_id, detector.detect(batch))
    yield from zip(poses, (f.rgb for f in batch), strict=True)
