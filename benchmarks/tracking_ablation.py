"""Tracking ablation (seed 000 Table 4) on held-out synthetic video: MOTA, IDF1, ID switches per tracker.

Every tracker runs on the **same detections**: MoveNet MultiPose at input 256 (one
scale, ``EstimatorConfig(input_sizes=(256,))``) on each clip, run once and replayed to
each tracker through the real ``posestream.service.pipelines.models.ModelPipeline`` (HE / TIE
from ``weights/temporalnet_movenet.pt``). Only ``TrackerConfig.preset`` differs between
rows; the ``he`` / ``tie`` / ``he+tie`` rows run with the TemporalNet checkpoint's calibrated
tracker settings (``posestream.models.temporal_inference.tracker_calibration``, as the service runs them), every
other setting is the default, and ``--set`` overrides apply to every row.

Calibration (validation clips only): ``--validation --grid lambda_he=0.5,1,2 --grid
gate_he=2,4`` scores the ``--grid-preset`` (default ``he+tie``) at every combination, beside an
``oks`` reference row; ``--calibrate`` then writes the combination with the best IDF1 into the
checkpoint's card, where the service and the held-out run read it.

Held-out clips (no seed or scene used in training; each TemporalNet checkpoint was trained on
synthetic seeds from 5000 up, its card's ``train_seeds``, which the recorded text quotes):

- random scenes, seeds 9000..9005: 5 people, 100 frames at 25 fps, camera pan + zoom, 2 occluders;
- fast motion, seeds 9006..9007: 4 people, 100 frames at 10 fps (2.5x the motion per frame);
- the scripted scenes: ``crossing_scene``, ``occlusion_scene(hidden_frames=20)``,
  ``reentry_scene``, ``zoom_scene``.

Metrics pool all clips into one sequence (ids offset per clip) and come from
``posestream.tracker.metrics.evaluate`` (py-motmetrics, OKS >= 0.5 matching).

``--model spatialnet`` runs the seed-faithful path instead: detections from the shipped
SpatialNet (``SpatialNetEstimator`` at input 512), HE / TIE from
``weights/temporalnet_spatialnet.pt``, and Table 4's SpatialNet baselines ``ke`` and
``ke+sie`` (the network's own KE tags and SIE at the joints) beside the others; it is
recorded in its own section.

``--real`` scores the trackers on **real held-out video** instead (issue 16 item 5), with the
service's default estimator (``EstimatorConfig()``) run once per clip and replayed to every row:
ID switches, lost links and fragmented tracklets against the unambiguous tracklets
(``posestream.models.data.tracklets``) of the held-out clips (``REAL_HELD_OUT_CLIPS``: vtest.avi frames
400-794, pose2sim cam04, sports2d frames 150-229; the tracker runs vtest.avi from frame 0),
and the number of tracks over the whole of vtest.avi against ``VTEST_PEOPLE``, counted by hand.
``--temporal PATH`` (repeatable) names the TemporalNet checkpoints whose HE / TIE rows to run
(default ``weights/temporalnet_movenet.pt``). ``--real --model spatialnet`` does the same with the
``--model spatialnet`` service's detections (the shipped SpatialNet, whose pseudo-labelled real
training frames include vtest.avi 0-399 but none of the scored frames), its KE / SIE rows and
``weights/temporalnet_spatialnet.pt``; it is recorded in its own section.

Real calibration: ``--real --real-clips train --grid FIELD=V1,V2 [--calibrate]`` scores the same way
on TemporalNet's real training clips (``REAL_TRAIN_CLIPS``; never the held-out ones) and writes the
grid row with the fewest fragmented + shared tracklets, then switched + lost links, into the card
(``best_real_calibration``); ``--write`` records the sweep in its own section.

    .venv/bin/python benchmarks/tracking_ablation.py [--quick] [--write] [--model spatialnet] \
        [--threads N] [--set FIELD=VALUE] [--validation [--validation-clips N] --grid FIELD=V1,V2 [--calibrate]] \
        [--real [--real-clips train --grid FIELD=V1,V2 [--calibrate]]] [--temporal PATH ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posestream.models.data.splits import HELD_OUT, TRACKER_VALIDATION  # noqa: E402
from posestream.models.data.synthetic import (  # noqa: E402
    SyntheticClip,
    SyntheticConfig,
    crossing_scene,
    occlusion_scene,
    reentry_scene,
    zoom_scene,
)
from posestream.models.estimator import EstimatorConfig, PoseEstimator  # noqa: E402
from posestream.models.poses import FramePoses  # noqa: E402
from posestream.models.temporal_inference import TemporalInference, write_tracker_calibration  # noqa: E402
from posestream.models.weights import (  # noqa: E402
    SPATIALNET_MOVENET,
    TEMPORALNET_MOVENET,
    TEMPORALNET_SPATIALNET,
    checkpoint_path,
)
from posestream.service.pipeline import FrameInput  # noqa: E402
from posestream.service.pipelines.models import (  # noqa: E402
    ModelPipeline,
    at_temporal_scale,
    load_temporal,
)
from posestream.tracker.config import TrackerConfig  # noqa: E402
from posestream.tracker.metrics import evaluate  # noqa: E402

SPATIALNET_WEIGHTS = checkpoint_path(SPATIALNET_MOVENET)
TEMPORALNET_SPATIAL_WEIGHTS = checkpoint_path(TEMPORALNET_SPATIALNET)
TEMPORALNET_WEIGHTS = checkpoint_path(TEMPORALNET_MOVENET)

log = logging.getLogger("tracking_ablation")
PRESETS = ("oks", "iou", "sie", "he", "tie", "he+tie")
TEMPORAL_PRESETS = ("he", "tie", "he+tie")
SPATIAL_PRESETS = ("oks", "iou", "sie", "ke", "ke+sie", "he", "tie", "he+tie")
BATCH = 8


VALIDATION_SEED = TRACKER_VALIDATION.first  # MAX_VALIDATION_CLIPS seeds from it are validation only
MAX_VALIDATION_CLIPS = TRACKER_VALIDATION.count


def validation_clips(n: int = 3) -> list[tuple[str, SyntheticClip]]:
    """Seeds 5030..5030 + n - 1: beyond the shipped TemporalNet checkpoints' training seeds
    (5000..5029 and 5000..5019); for choosing tracker settings without looking at the held-out
    set. 100 frames each, 5 people, 2 occluders."""
    if not 1 <= n <= MAX_VALIDATION_CLIPS:
        raise ValueError(f"validation clips must number 1..{MAX_VALIDATION_CLIPS}, got {n}")
    return [
        (f"val {s}", SyntheticClip.from_config(SyntheticConfig(seed=s, frames=100, people=5, occluders=2)))
        for s in range(VALIDATION_SEED, VALIDATION_SEED + n)
    ]


def held_out_clips(quick: bool) -> list[tuple[str, SyntheticClip]]:
    clips = [
        ("crossing", SyntheticClip(crossing_scene())),
        ("occlusion (20 frames hidden)", SyntheticClip(occlusion_scene(hidden_frames=20))),
        ("re-entry", SyntheticClip(reentry_scene())),
        ("zoom + pan", SyntheticClip(zoom_scene())),
    ]
    random_seeds = HELD_OUT.seeds(2 if quick else 6)
    for s in random_seeds:
        clips.append(
            (
                f"random {s}",
                SyntheticClip.from_config(SyntheticConfig(seed=s, frames=100, people=5, occluders=2)),
            )
        )
    for s in range(HELD_OUT.first + 6, HELD_OUT.first + (7 if quick else 8)):
        clips.append(
            (f"fast {s}", SyntheticClip.from_config(SyntheticConfig(seed=s, frames=100, people=4, fps=10.0)))
        )
    return clips


class _Replay:
    """Stands in for the estimator: returns the stored output of each batch."""

    def __init__(self, outputs: dict[tuple[int, ...], object]) -> None:
        self.outputs = outputs

    def __call__(self, frames, indices, times):  # noqa: ANN001, ANN204
        return self.outputs[tuple(indices)]


class _CachedTemporal:
    """TemporalInference whose per-batch HE, contexts and TVF maps are computed once for all trackers."""

    def __init__(self, inner: TemporalInference) -> None:
        self.inner = inner
        self.config = inner.config
        self._emb: dict[int, list] = {}
        self._ctx: dict[int, list] = {}
        self._tvf: dict[tuple[int, int], torch.Tensor] = {}

    def embeddings(self, est):  # noqa: ANN001, ANN201
        return self._emb.setdefault(id(est), self.inner.embeddings(est))

    def contexts(self, est, seqs):  # noqa: ANN001, ANN201
        if id(est) not in self._ctx:
            self._ctx[id(est)] = self.inner.contexts(est, seqs)
        return self._ctx[id(est)]

    def tvf_map(self, prev, cur):  # noqa: ANN001, ANN201
        key = (id(prev), id(cur))
        if key not in self._tvf:
            self._tvf[key] = self.inner.tvf_map(prev, cur)
        return self._tvf[key]

    def tie(self, prev, cur, cur_kp, prev_kp, tvf=None):  # noqa: ANN001, ANN201
        return self.inner.tie(prev, cur, cur_kp, prev_kp, tvf=self.tvf_map(prev, cur) if tvf is None else tvf)


def variants(
    presets: tuple[str, ...], calibration: dict, overrides: dict,
    grid: dict[str, list] | None = None, grid_preset: str = "he+tie",
) -> list[tuple[str, TrackerConfig]]:  # fmt: skip
    """(row label, tracker config) of every row: each preset (HE / TIE presets with the
    checkpoint's ``calibration``), or with ``grid`` an ``oks`` reference row and
    ``grid_preset`` at every combination of the grid's values; ``overrides`` apply to all."""
    if not grid:
        return [
            (p, TrackerConfig(preset=p, **{**(calibration if p in TEMPORAL_PRESETS else {}), **overrides}))
            for p in presets
        ]
    rows = [("oks", TrackerConfig(preset="oks", **overrides))]
    base = {**(calibration if grid_preset in TEMPORAL_PRESETS else {}), **overrides}
    for combo in itertools.product(*grid.values()):
        setting = dict(zip(grid, combo, strict=True))
        label = f"{grid_preset} " + ", ".join(f"{k}={v}" for k, v in setting.items())
        rows.append((label, TrackerConfig(preset=grid_preset, **{**base, **setting})))
    return rows


VTEST_HELD_OUT_START = 400  # vtest.avi frames before this are TemporalNet training frames
# Distinct people in vtest.avi frames 400-499 (10 s), counted by hand on every 10th frame (full
# resolution, looked at one by one): A (dark jacket, jeans) stands left of the lamp post and walks
# right; B (black) comes down the road from the top and walks right; C (black jacket, holding a
# paper) walks out at the right edge by frame 410; D (red jacket) enters at the right at 420 and
# walks left past the lamp post; E (dark jacket, jeans) enters at the bottom right at 460 and walks
# left to A and B. Nobody else is visible; at most 4 at once.
VTEST_COUNT_WINDOW = (400, 500)
VTEST_PEOPLE = 5


def _temporal_rows(
    checkpoints: list[Path], overrides: dict, model: str = "movenet",
    grid: dict[str, list] | None = None, grid_preset: str = "he+tie",
) -> list[tuple[str, TrackerConfig, object]]:  # fmt: skip
    """The rows of ``run_real``: the keypoint-only presets of ``model`` (SpatialNet adds its KE / SIE
    ones), then each checkpoint's HE / TIE presets with its card's tracker settings. With ``grid``:
    ``oks`` and ``iou`` reference rows, then ``grid_preset`` of the first checkpoint at every
    combination of the grid's values (``variants``)."""
    if grid:
        temporal = load_temporal(checkpoints[0], model)
        oks, *grid_rows = variants(PRESETS, temporal.tracker_settings, overrides, grid, grid_preset)
        return [(*oks, None), ("iou", TrackerConfig(preset="iou", **overrides), None)] + [
            (label, cfg, temporal if cfg.preset in TEMPORAL_PRESETS else None) for label, cfg in grid_rows
        ]
    plain = [p for p in (SPATIAL_PRESETS if model == "spatialnet" else PRESETS) if p not in TEMPORAL_PRESETS]
    rows: list[tuple[str, TrackerConfig, object]] = [
        (p, TrackerConfig(preset=p, **overrides), None) for p in plain
    ]
    for path in checkpoints:
        temporal = load_temporal(path, model)
        tag = f" [{path.stem}]" if len(checkpoints) > 1 else ""
        for p in TEMPORAL_PRESETS:
            rows.append(
                (p + tag, TrackerConfig(preset=p, **{**temporal.tracker_settings, **overrides}), temporal)
            )
    return rows


def _detect_clip(estimator: PoseEstimator, frames, sizes: set[int]) -> tuple[dict, list[tuple[int, float]]]:  # noqa: ANN001
    """The estimator's output of each batch of BATCH frames (with TemporalNet's scale's features),
    keyed by the batch's positions, and (frame index, seconds) of each frame."""
    outputs: dict[tuple[int, ...], object] = {}
    info: list[tuple[int, float]] = []
    frames = iter(frames)
    while chunk := list(itertools.islice(frames, BATCH)):
        idx = tuple(range(len(info), len(info) + len(chunk)))
        rgbs = [c[2] for c in chunk]
        est = estimator(rgbs, list(idx), [c[1] for c in chunk])
        for size in sizes:
            est = at_temporal_scale(estimator, rgbs, est, size)
        outputs[idx] = est
        info += [(c[0], c[1]) for c in chunk]
    return outputs, info


def run_real(
    checkpoints: list[Path], overrides: dict | None = None, threads: int = 1, cache_dir: Path | None = None,
    model: str = "movenet", clips: str = "held-out", grid: dict[str, list] | None = None,
    grid_preset: str = "he+tie",
) -> tuple[list[dict], dict]:  # fmt: skip
    """Every tracker on real clips, the same detections for each row (kept in ``cache_dir`` when
    given, and read back from there by a later run: delete it after changing the estimator).
    ``model``: "movenet", the service's default estimator, or "spatialnet", the shipped SpatialNet
    at its TemporalNet's input size (the ``--model spatialnet`` service). ``clips``: "held-out"
    (``REAL_HELD_OUT_CLIPS``, what is recorded) or "train" (``REAL_TRAIN_CLIPS``, TemporalNet's
    real training clips: where a ``grid`` of tracker settings is chosen, ``best_real_calibration``)."""
    from posestream.models.data.real_clips import (
        REAL_HELD_OUT_CLIPS,
        REAL_TRAIN_CLIPS,
        iter_clip_frames,
        parse_clip_spec,
    )
    from posestream.models.data.tracklets import tracklet_scores, unambiguous_tracklets

    if clips not in REAL_CLIP_SETS:
        raise ValueError(f"clips must be one of {REAL_CLIP_SETS}, got {clips!r}")
    torch.set_num_threads(threads)
    rows_cfg = _temporal_rows(checkpoints, overrides or {}, model, grid, grid_preset)
    temporal_sizes = {c.config.input_size for _, _, c in rows_cfg if c is not None}
    if model == "spatialnet":
        from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

        if len(temporal_sizes) > 1:
            raise ValueError(
                f"SpatialNet runs at one input size; the checkpoints want {sorted(temporal_sizes)}"
            )
        size = next(iter(temporal_sizes), SpatialEstimatorConfig().input_size)
        estimator: Any = SpatialNetEstimator(
            SPATIALNET_WEIGHTS, SpatialEstimatorConfig(input_size=size, device="cpu")
        )
        input_sizes, sizes = [size], set()  # SpatialNet's features are its own pass's
    else:
        estimator = PoseEstimator(EstimatorConfig(device="cpu"))
        input_sizes, sizes = list(estimator.config.input_sizes), temporal_sizes
    segments = []
    specs = REAL_HELD_OUT_CLIPS if clips == "held-out" else REAL_TRAIN_CLIPS
    for spec in specs:  # vtest.avi is tracked from frame 0, scored from the spec's start on
        name, start, stop, step = parse_clip_spec(spec)
        segments.append(
            (
                spec,
                f"{name}:0:{stop or ''}:{step}" if name == "vtest" else spec,
                start if name == "vtest" else 0,
            )
        )
    t0 = time.perf_counter()
    totals: dict[str, dict[str, float]] = {label: {} for label, _, _ in rows_cfg}
    per_clip: dict[str, dict[str, int]] = {label: {} for label, _, _ in rows_cfg}
    n_frames = 0
    placeholder = np.zeros((1, 1, 3), np.uint8)
    for spec, run_spec, score_from in segments:
        cached_file = (
            Path(cache_dir) / f"real_dets_{'' if model == 'movenet' else model + '_'}"
            f"{run_spec.replace('/', '_').replace(':', '_')}.pt"
            if cache_dir
            else None
        )
        if cached_file is not None and cached_file.is_file():
            outputs, frame_info = torch.load(cached_file, weights_only=False)
        else:
            outputs, frame_info = _detect_clip(estimator, iter_clip_frames(run_spec), sizes)
            if cached_file is not None:
                cached_file.parent.mkdir(parents=True, exist_ok=True)
                torch.save((outputs, frame_info), cached_file)
        n_frames += len(frame_info)
        poses = [p for k in sorted(outputs) for p in outputs[k].poses]
        scored = [i for i, (index, _) in enumerate(frame_info) if index >= score_from]
        tracklets = unambiguous_tracklets([poses[i] for i in scored])
        cache: dict[int, _CachedTemporal] = {}  # per clip: its keys are ids of this clip's outputs
        for label, cfg, temporal in rows_cfg:
            cached = None if temporal is None else cache.setdefault(id(temporal), _CachedTemporal(temporal))
            pipe = ModelPipeline(_Replay(outputs), cfg, cached, model=model)
            state, ids = None, []
            for k in sorted(outputs):
                batch = [FrameInput(spec, i, i, frame_info[i][1], placeholder) for i in k]
                out = pipe.process(batch, [state] * len(batch))
                ids += [p.track_ids for p, _ in out]
                state = out[-1][1]
            scores = tracklet_scores(tracklets, [ids[i] for i in scored])
            for key in ("links", "id_switches", "lost", "tracklets", "fragmented", "shared"):
                totals[label][key] = totals[label].get(key, 0) + scores[key]
            per_clip[label][spec] = len({int(t) for f in ids for t in f if t >= 0})
            if spec.startswith("vtest"):
                lo, hi = VTEST_COUNT_WINDOW
                window = [f for f, (index, _) in zip(ids, frame_info, strict=True) if lo <= index < hi]
                if window:  # the training clips' vtest.avi stops before it
                    per_clip[label]["vtest window"] = len({int(t) for f in window for t in f if t >= 0})
        log.info("%s: %d frames, %d tracklets (%.0f s so far)", spec, len(frame_info),
                 max((int(t.max()) + 1 for t in tracklets if len(t)), default=0), time.perf_counter() - t0)  # fmt: skip
    rows = [{"tracker": label, **totals[label], "tracks": per_clip[label]} for label, _, _ in rows_cfg]
    info = {
        "clips": [s for s, _, _ in segments], "frames": n_frames, "seconds": time.perf_counter() - t0,
        "threads": threads, "checkpoints": [str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in checkpoints],
        "input_sizes": input_sizes, "overrides": overrides or {}, "model": model, "clip_set": clips,
    }  # fmt: skip
    for r, (_, cfg, temporal) in zip(rows, rows_cfg, strict=True):
        r["settings"] = _row_settings(cfg, temporal, overrides or {}, grid or {})
    return rows, info


REAL_CLIP_SETS = ("held-out", "train")


def _row_settings(cfg: TrackerConfig, temporal: Any, overrides: dict, grid: dict) -> dict:
    """The tracker fields a row's calibration must store: the checkpoint card's own (a
    calibration replaces the card's entry whole), the overrides and the grid's, with this row's values."""
    keys = {**(temporal.tracker_settings if temporal is not None else {}), **overrides, **grid}
    return {k: getattr(cfg, k) for k in keys}


def _real_errors(r: dict) -> tuple[int, int]:
    """What ``best_real_calibration`` minimises: (broken or wrongly shared tracklets, switched or lost links)."""
    return (r["fragmented"] + r["shared"], r["id_switches"] + r["lost"])


def best_real_calibration(rows: list[dict], info: dict, preset: str) -> dict:
    """The card entry for the grid row of ``preset`` with the fewest fragmented + shared tracklets,
    then the fewest switched + lost links, on real training clips' unambiguous tracklets (ties: the
    first row, so list the current value first)."""
    keys = ("links", "id_switches", "lost", "tracklets", "fragmented", "shared")
    return _calibration_entry(
        rows, info, preset, _real_errors, lambda r: {k: int(r[k]) for k in keys},
        "real training clips' unambiguous tracklets: fewest fragmented + shared, then switched + lost links",
    )  # fmt: skip


def _calibration_entry(
    rows: list[dict], info: dict, preset: str, rank: Callable[[dict], tuple],
    scores: Callable[[dict], dict], criterion: str,
) -> dict:  # fmt: skip
    """The card entry (``write_tracker_calibration``) for the grid row of ``preset`` that ``rank``
    puts first (smallest; ties: the first row). ``scores`` gives a row's figures as plain Python
    numbers: the card is loaded with ``weights_only=True``."""
    grid_rows = [r for r in rows if r["tracker"].startswith(preset + " ")]
    best = min(grid_rows, key=rank)
    return {
        "settings": dict(best["settings"]),
        "preset": preset,
        "criterion": criterion,
        "clips": list(info["clips"]),
        "scores": scores(best),
        "grid": [{"settings": dict(r["settings"]), **scores(r)} for r in grid_rows],
        "date": time.strftime("%Y-%m-%d"),
        "command": info["command"],
    }


def real_table(rows: list[dict], info: dict) -> str:
    vtest = next(c for c in info["clips"] if c.startswith("vtest"))
    others = [c for c in info["clips"] if c != vtest]
    lo, hi = VTEST_COUNT_WINDOW
    held_out = info.get("clip_set", "held-out") == "held-out"
    lines = [
        "## Tracking on held-out real video (`benchmarks/tracking_ablation.py --real`)"
        if held_out
        else "## Tracker settings on TemporalNet's real training clips (`benchmarks/tracking_ablation.py --real --real-clips train`)",
        "",
        f"{time.strftime('%Y-%m-%d')}; {platform.processor() or platform.machine()}, {info['threads']} torch thread(s). "
        + (
            f"Detections: the shipped SpatialNet (`{SPATIALNET_WEIGHTS.name}`, its file's decoding, input long side "
            f"{info['input_sizes'][0]}), the `--model spatialnet` service's, run once and replayed "
            if info.get("model") == "spatialnet"
            else f"Detections: the service's default estimator (input sizes {info['input_sizes']}), run once and replayed "
        )
        + f"to every row; HE / TIE from {', '.join(f'`{c}`' for c in info['checkpoints'])} (each with its card's "
        f"tracker settings{'' if held_out else ', and the grid on top'}). "
        + (
            f"Clips (held out from TemporalNet's real-clip training): {', '.join(info['clips'])}; "
            f"vtest.avi is tracked from frame 0 and scored from frame {VTEST_HELD_OUT_START}. "
            if held_out
            else f"Clips (TemporalNet's real training clips, never the held-out ones): {', '.join(info['clips'])}. "
        )
        + f"{info['frames']} frames, "
        f"{info['seconds']:.0f} s. No labels: the reference is the **unambiguous tracklets** of the same detections "
        "(`posestream.models.data.tracklets`: person score >= 0.25, box IoU >= 0.5 to exactly one confident person of the "
        "previous frame and no other overlap > 0.1, >= 8 frames). `links`: consecutive-frame pairs inside them; "
        "`ID sw.`: links whose two detections get different ids; `lost`: links whose later detection gets none; "
        "`frag.`: tracklets whose detections carry more than one id; `shared`: pairs of tracklets in one frame "
        "together (two people) that carry a common id. "
        f"`tracks vtest {lo}-{hi - 1}`: distinct ids in "
        f"vtest.avi frames {lo}-{hi - 1}, against **{VTEST_PEOPLE} people counted by hand** there (the count and who "
        "they are: `VTEST_PEOPLE` in the script); `tracks <clip>`: distinct ids over the whole clip (vtest.avi: "
        "from frame 0). "
        f"Command: `{info.get('command', '')}`.",
        "",
        f"| tracker | links | ID sw. | lost | tracklets | frag. | shared | tracks vtest {lo}-{hi - 1} (hand: {VTEST_PEOPLE}) | "
        + " | ".join([f"tracks {vtest}", *(f"tracks {c}" for c in others)])
        + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * (1 + len(others)),
    ]
    for r in rows:
        lines.append(
            f"| {r['tracker']} | {r['links']} | {r['id_switches']} | {r['lost']} | {r['tracklets']} | "
            f"{r['fragmented']} | {r['shared']} | {r['tracks'].get('vtest window', '–')} | "
            + " | ".join(str(r["tracks"][c]) for c in [vtest, *others])
            + " |"
        )
    return "\n".join(lines)


def run(
    quick: bool, overrides: dict | None = None, validation: bool = False, model: str = "movenet",
    threads: int = 1, grid: dict[str, list] | None = None, grid_preset: str = "he+tie",
    validation_clips_n: int = 3, temporal_path: Path | None = None,
) -> tuple[list[dict], dict]:  # fmt: skip
    torch.set_num_threads(threads)
    presets = PRESETS
    if model == "spatialnet":
        from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

        temporal = (
            load_temporal(TEMPORALNET_SPATIAL_WEIGHTS, "spatialnet")
            if TEMPORALNET_SPATIAL_WEIGHTS.is_file()
            else None
        )
        size = temporal.config.input_size if temporal is not None else SpatialEstimatorConfig().input_size
        estimator = SpatialNetEstimator(
            SPATIALNET_WEIGHTS, SpatialEstimatorConfig(input_size=size, device="cpu")
        )
        presets = SPATIAL_PRESETS if temporal is not None else SPATIAL_PRESETS[:5]
    else:
        estimator = PoseEstimator(EstimatorConfig(input_sizes=(256,), device="cpu"))
        temporal = TemporalInference.load(temporal_path or TEMPORALNET_WEIGHTS)
    calibration = temporal.tracker_settings if temporal is not None else {}
    rows_cfg = variants(presets, calibration, overrides or {}, grid, grid_preset)
    gt_all: list[FramePoses] = []
    pred_all: dict[str, list[FramePoses]] = {label: [] for label, _ in rows_cfg}
    offset = 0
    t0 = time.perf_counter()
    n_frames = 0
    clips = validation_clips(validation_clips_n) if validation else held_out_clips(quick)
    for ci, (name, clip) in enumerate(clips):
        frames = [clip.render(t) for t in range(len(clip))]
        n_frames += len(frames)
        outputs = {}
        for i in range(0, len(frames), BATCH):
            chunk = frames[i : i + BATCH]
            idx = list(range(i, i + len(chunk)))
            outputs[tuple(idx)] = estimator([f[0] for f in chunk], idx)
        cached = _CachedTemporal(temporal) if temporal is not None else None
        for label, cfg in rows_cfg:
            pipe = ModelPipeline(
                _Replay(outputs), cfg, cached if cfg.preset in TEMPORAL_PRESETS else None, model=model
            )
            state = None
            for i in range(0, len(frames), BATCH):
                batch = [
                    FrameInput(name, t, t, t / 25.0, frames[t][0])
                    for t in range(i, min(i + BATCH, len(frames)))
                ]
                out = pipe.process(batch, [state] * len(batch))
                pred_all[label] += [_shift(poses, offset, ci) for poses, _ in out]
                state = out[-1][1]
        gt_all += [_shift(g, offset, ci) for _, g in frames]
        offset += len(frames)
        log.info("%s: %d frames (%.0f s so far)", name, len(frames), time.perf_counter() - t0)
    rows = []
    for label, cfg in rows_cfg:
        m = evaluate(gt_all, pred_all[label])
        rows.append(
            {
                "tracker": label, "MOTA": m["MOTA"], "IDF1": m["IDF1"], "IDs": m["num_switches"],
                "AP": m.get("AP"), "posetrack_MOTA": m["posetrack"]["MOTA"],
                "settings": {k: getattr(cfg, k) for k in {**calibration, **(overrides or {}), **(grid or {})}},
            }
        )  # fmt: skip
    info = {
        "model": model,
        "clips": [n for n, _ in clips],
        "validation": validation,
        "calibration": calibration,
        "overrides": overrides or {},
        "frames": n_frames,
        "seconds": time.perf_counter() - t0,
        "threads": threads,
        "temporal_seeds": _train_seeds(temporal.card if temporal is not None else {}),
        "temporal_path": str(temporal_path or TEMPORALNET_WEIGHTS),
        "temporal_real": bool(temporal is not None and temporal.card.get("real_clips")),
    }
    return rows, info


def best_calibration(rows: list[dict], info: dict, preset: str) -> dict:
    """The card entry for the grid row of ``preset`` with the best IDF1 (then MOTA)."""
    return _calibration_entry(
        rows, info, preset, lambda r: (-r["IDF1"], -r["MOTA"]),
        lambda r: {"IDF1": float(r["IDF1"]), "MOTA": float(r["MOTA"]), "IDs": int(r["IDs"])}, "IDF1, then MOTA",
    )  # fmt: skip


def _field(arg: str) -> tuple[str, str]:
    if "=" not in arg:
        raise ValueError(f"expected FIELD=VALUE, got {arg!r}")
    k, v = arg.split("=", 1)
    return k.strip(), v.strip()


def _number(v: str) -> float | int:
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"not a number: {v!r}") from None


def _train_seeds(card: dict) -> str:
    """The synthetic seeds a TemporalNet checkpoint was trained on, from its card ("?" when absent)."""
    seeds = card.get("train_seeds")
    return f"{seeds[0]}..{seeds[1]}" if seeds else "?"


def _shift(p: FramePoses, offset: int, clip_index: int) -> FramePoses:
    ids = np.where(p.track_ids >= 0, p.track_ids + 100_000 * (clip_index + 1), p.track_ids)
    return dataclasses.replace(p, frame_index=p.frame_index + offset, track_ids=ids)


def _fmt(v: object) -> str:
    return "-" if v is None else (f"{100 * v:.1f}" if isinstance(v, float) else str(v))


def table(rows: list[dict], info: dict) -> str:
    if info.get("model") == "spatialnet":
        title = "## Tracking ablation, seed-faithful SpatialNet path (`benchmarks/tracking_ablation.py --model spatialnet`)"
        detections = (
            "SpatialNet (`weights/spatialnet_movenet.pt`, input 512); HE/TIE from "
            f"`weights/temporalnet_spatialnet.pt` (trained on seeds {info['temporal_seeds']}, disjoint from these) "
            "where present"
        )
        footer = (
            "`sie` / `ke` / `ke+sie`: Table 4's baselines on SpatialNet's own SIE and KE at the joints "
            "(distance of the last frame's values to this frame's). +PGG on TIE: not implemented."
        )
    else:
        title = "## Tracking ablation on held-out synthetic video (`benchmarks/tracking_ablation.py`)"
        ckpt = Path(info["temporal_path"])
        ckpt_name = ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt
        detections = (
            f"MoveNet MultiPose at input 256 (single scale); HE/TIE from `{ckpt_name}` (trained on synthetic "
            f"seeds {info['temporal_seeds']}, disjoint from these"
            + (", and fine-tuned on real clips" if info.get("temporal_real") else "")
            + ")"
        )
        footer = (
            "`sie` = person-centre distance (TIE with zero motion). +PGG: not available on the MoveNet path."
        )
    lines = [
        title,
        "",
        f"{time.strftime('%Y-%m-%d')}; {platform.processor() or platform.machine()}, {info['threads']} torch thread(s). "
        f"{len(info['clips'])} {'validation' if info.get('validation') else 'held-out'} clips, "
        f"{info['frames']} frames pooled: {', '.join(info['clips'])}. "
        f"Same detections for every row: {detections}. "
        f"Only `TrackerConfig.preset` differs; he / tie / he+tie run with the checkpoint's calibrated "
        f"settings {info.get('calibration') or '(none)'}; other fields: defaults, plus "
        f"{info['overrides'] or 'nothing'} for every row. "
        "MOTA / IDF1 / IDs: py-motmetrics over whole people (OKS >= 0.5); "
        "PT-MOTA: PoseTrack per-joint MOTA (Table 4's metric); AP: COCO keypoint AP of the detections "
        f"(the same for all rows). Run time {info['seconds']:.0f} s. "
        f"Command: `{info.get('command', '')}`.",
        "",
        "| tracker | MOTA | IDF1 | ID switches | PT-MOTA | AP |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tracker']} | {_fmt(r['MOTA'])} | {_fmt(r['IDF1'])} | {r['IDs']} | "
            f"{_fmt(r['posetrack_MOTA'])} | {_fmt(r['AP'])} |"
        )
    if any(r["tracker"] not in PRESETS + SPATIAL_PRESETS for r in rows):
        footer = "A `--grid` sweep: the oks row is the reference, the others one preset at each combination."
    lines += ["", footer]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer random clips")
    ap.add_argument("--write", action="store_true", help="write the section of benchmarks/RESULTS.md")
    ap.add_argument("--validation", action="store_true", help="score on the validation seeds 5030.. instead")
    ap.add_argument("--validation-clips", type=int,
                    help=f"with --validation: how many validation seeds from 5030 (1..{MAX_VALIDATION_CLIPS}, default 3)")  # fmt: skip
    ap.add_argument("--model", choices=("movenet", "spatialnet"), default="movenet", help="whose detections")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="TrackerConfig field for every row, e.g. --set gate_he=2.0")  # fmt: skip
    ap.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                    help="with --validation: score --grid-preset at every combination of these values")  # fmt: skip
    ap.add_argument("--grid-preset", default="he+tie", choices=TEMPORAL_PRESETS)
    ap.add_argument("--real", action="store_true",
                    help="score on held-out real clips against unambiguous tracklets, and count vtest.avi's tracks")  # fmt: skip
    ap.add_argument("--real-clips", choices=REAL_CLIP_SETS, default="held-out",
                    help="with --real: the held-out clips (recorded), or TemporalNet's real training clips, where "
                    "--grid chooses tracker settings")  # fmt: skip
    ap.add_argument("--temporal", action="append", default=[], type=Path, metavar="PATH",
                    help="TemporalNet checkpoint for the he / tie / he+tie rows (default weights/temporalnet_movenet.pt; "
                    "with --real repeatable)")  # fmt: skip
    ap.add_argument("--detections-cache", type=Path, metavar="DIR",
                    help="with --real: keep the estimator's outputs here and reuse them in later runs")  # fmt: skip
    ap.add_argument("--calibrate", action="store_true",
                    help="with --grid: write the best-IDF1 combination into the TemporalNet checkpoint's card")  # fmt: skip
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        overrides = {k: _number(v) for k, v in (_field(a) for a in args.set)}
        grid = {k: [_number(x) for x in v.split(",")] for k, v in (_field(a) for a in args.grid)}
        for field in {**overrides, **grid}:
            if field not in {f.name for f in dataclasses.fields(TrackerConfig)} or field == "preset":
                raise ValueError(f"{field!r} is not a numeric TrackerConfig field")
        real_train = args.real and args.real_clips == "train"
        if args.real_clips != "held-out" and not args.real:
            raise ValueError("--real-clips needs --real")
        if grid and not (args.validation or real_train):
            raise ValueError(
                "--grid chooses settings: it runs on the validation clips only (add --validation, or "
                "--real --real-clips train)"
            )
        if args.validation_clips is not None and not args.validation:
            raise ValueError("--validation-clips needs --validation")
        n_validation = 3 if args.validation_clips is None else args.validation_clips
        if not 1 <= n_validation <= MAX_VALIDATION_CLIPS:
            raise ValueError(f"--validation-clips must be 1..{MAX_VALIDATION_CLIPS}, got {n_validation}")
        if args.calibrate and not grid:
            raise ValueError("--calibrate needs --grid")
        if args.write and grid and not real_train:
            raise ValueError("--write records the ablation; a --grid sweep is not written to RESULTS.md")
        if args.real and (args.validation or ((grid or args.calibrate) and not real_train)):
            raise ValueError(
                "--real scores the trackers on the held-out real clips: no --validation, --grid or --calibrate "
                "(those choose settings: --real --real-clips train)"
            )
        if real_train and len(args.temporal) > 1 and grid:
            raise ValueError("--grid calibrates one --temporal checkpoint")
        if len(args.temporal) > 1 and not args.real:
            raise ValueError("several --temporal checkpoints need --real")
        for path in args.temporal:
            if not path.is_file():
                raise ValueError(f"--temporal: no such file: {path}")
    except ValueError as exc:
        print(f"tracking_ablation: {exc}", file=sys.stderr)
        return 2
    command = f"OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/tracking_ablation.py " + " ".join(
        sys.argv[1:]
    )
    if args.real:
        default_temporal = TEMPORALNET_SPATIAL_WEIGHTS if args.model == "spatialnet" else TEMPORALNET_WEIGHTS
        checkpoints = args.temporal or [default_temporal]
        rows, info = run_real(
            checkpoints, overrides, args.threads, args.detections_cache, args.model, args.real_clips, grid,
            args.grid_preset,
        )  # fmt: skip
        info["command"] = command
        text = real_table(rows, info)
        print(text)
        if args.calibrate:
            calibration = best_real_calibration(rows, info, args.grid_preset)
            write_tracker_calibration(checkpoints[0], calibration)
            print(f"wrote tracker calibration {calibration['settings']} into {checkpoints[0]}")
        if args.write:
            from benchmarks.results import record_section

            section = "tracking_real" if args.model == "movenet" else "tracking_real_spatialnet"
            record_section(section if not real_train else section + "_calibration", text)
        return 0
    rows, info = run(args.quick, overrides, args.validation, args.model, args.threads, grid, args.grid_preset,
                     n_validation, args.temporal[0] if args.temporal else None)  # fmt: skip
    info["command"] = (
        f"OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/tracking_ablation.py "
        + " ".join(sys.argv[1:])
    )
    text = table(rows, info)
    print(text)
    if args.calibrate:
        path = TEMPORALNET_SPATIAL_WEIGHTS if args.model == "spatialnet" else TEMPORALNET_WEIGHTS
        calibration = best_calibration(rows, info, args.grid_preset)
        write_tracker_calibration(path, calibration)
        print(f"wrote tracker calibration {calibration['settings']} into {path}")
    if args.write:
        from benchmarks.results import record_section

        record_section(
            "tracking_ablation" if args.model == "movenet" else "tracking_ablation_spatialnet", text
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
