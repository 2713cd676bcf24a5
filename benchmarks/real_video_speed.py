"""Time per frame of the default ``posestream track`` pipeline vs TFLite MultiPose 512 + a greedy IoU tracker.

Both run in one process on the same real clips, taking turns on every batch of frames (so load
from other processes on a shared machine hits all alike). Rows:

- ``reference``: the MoveNet MultiPose TFLite file at square 512 (LiteRT interpreter, its own
  decoder; ``benchmarks.real_dev.tflite_predictor``), people scoring >= ``REF_MIN_SCORE``,
  tracked by ``GreedyIouTracker`` (written here, ~30 lines: greedy highest-IoU matching).
- ``default``: what ``posestream track VIDEO`` runs (``posestream.service.pipeline.build_pipeline("movenet")``
  fed by ``run_frames``'s batches of ``--batch-size`` frames): the default ``PoseEstimator``
  (256 + 512, flip testing, per-person most confident scale, gated Thunder refinement),
  TemporalNet HE + TIE and the he+tie tracker.
- cheaper variants of the default: flip off, refinement off, both off (same TemporalNet
  and tracker).

For the default-style rows the time is broken down by instrumenting the pipeline's parts
(network pass per scale, plain and mirrored canvases in one batch; decode + scale merge, Thunder refinement and its
network, the rest of the estimator: letterbox / mirroring; TemporalNet; tracker step and the rest).
With ``--ap-json`` (``benchmarks/real_dev.py --json``'s output) each row also shows its AP
on the real dev set.

Run from the repository root (weights fetched; real clips: ``posestream data fetch``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_video_speed.py --ap-json real_dev.json --write
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # first, so the benchmarks package is importable from this checkout

from benchmarks.results import cpu_name, record_section  # noqa: E402

log = logging.getLogger(__name__)

# Clip ranges timed (``posestream.models.data.real_clips.parse_clip_spec``); missing clips are skipped.
CLIPS: tuple[str, ...] = ("vtest:200:216", "pose2sim/cam01:0:32:2", "sports2d/demo:0:16")
# The reference keeps TFLite people scoring at least this (the publisher's demo threshold).
REF_MIN_SCORE = 0.2
# Greedy IoU tracker: a detection continues a track when their box IoU is at least this.
REF_MIN_IOU = 0.3
# ... and a track unmatched for more than this many frames is dropped.
REF_MAX_MISSED = 10
# A keypoint counts towards the reference's person box when it scores at least this.
REF_KEYPOINT_THRESHOLD = 0.2

# Rows timed against the reference: name -> estimator overrides (``EstimatorConfig`` fields;
# ``refine`` False turns Thunder off, ``"all"`` refines every person, no confident-person skip)
# and the ``benchmarks/real_dev.py`` spec of its AP. The levers of the default are undone one
# at a time, then all together ("previous default": the policy before them).
VARIANTS: dict[str, tuple[dict, str]] = {
    "default": ({}, "est"),
    "previous default": (
        {"compile": "none", "network_batch": 16, "flip_max_size": None, "refine": "all"},
        "est:256+512:confidence:flipall:refineall",
    ),
    "eager network (compile none)": ({"compile": "none"}, "est"),
    "batched network (16 canvases per call)": ({"network_batch": 16}, "est"),
    "flip both scales": ({"flip_max_size": None}, "est:256+512:confidence:flipall:refine"),
    "refine everyone": ({"refine": "all"}, "est:256+512:confidence:flip:refineall"),
    "flip off": ({"flip": False}, "est:256+512:confidence:refine"),
    "refinement off": ({"refine": False}, "est:256+512:confidence:flip"),
}
# ``EstimatorConfig`` fields that change how the network runs, not what it outputs (beyond float
# rounding): rows differing only in them share an AP spec.
EXECUTION_FIELDS: tuple[str, ...] = ("compile", "network_batch")
REFERENCE = "reference"
REFERENCE_AP_SPEC = "tflite-512"


# ---- the reference pipeline ----------------------------------------------------------------


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) boxes (x1, y1, x2, y2) -> (N, M) IoU."""
    from posestream.models.geometry import box_iou

    return box_iou(a, b)


class GreedyIouTracker:
    """The plain tracker of the reference pipeline: greedy highest-IoU matching of person boxes.

    Each frame, (track, detection) pairs are taken in decreasing box IoU while both are free and
    the IoU is at least ``min_iou``; an unmatched detection starts a new id; a track unmatched for
    more than ``max_missed`` frames is dropped. State: plain lists (ids, boxes, missed counts).
    """

    def __init__(self, min_iou: float = REF_MIN_IOU, max_missed: int = REF_MAX_MISSED) -> None:
        self.min_iou, self.max_missed = float(min_iou), int(max_missed)
        self.ids: list[int] = []
        self.boxes = np.zeros((0, 4))
        self.missed: list[int] = []
        self.next_id = 0

    def update(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) frame-pixel boxes of this frame -> (N,) int64 track ids."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = np.full(len(boxes), -1, np.int64)
        iou = (
            iou_matrix(self.boxes, boxes)
            if len(self.ids) and len(boxes)
            else np.zeros((len(self.ids), len(boxes)))
        )
        matched_tracks: set[int] = set()
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            t, d = divmod(int(flat), len(boxes))
            if iou[t, d] < self.min_iou:
                break
            if t in matched_tracks or out[d] >= 0:
                continue
            matched_tracks.add(t)
            out[d] = self.ids[t]
            self.boxes[t], self.missed[t] = boxes[d], 0
        keep = [
            t for t in range(len(self.ids)) if t in matched_tracks or self.missed[t] + 1 <= self.max_missed
        ]
        for t in range(len(self.ids)):
            if t not in matched_tracks:
                self.missed[t] += 1
        self.ids = [self.ids[t] for t in keep]
        self.missed = [self.missed[t] for t in keep]
        self.boxes = self.boxes[keep]
        for d in np.flatnonzero(out < 0):
            out[d] = self.next_id
            self.ids.append(self.next_id)
            self.missed.append(0)
            self.boxes = np.vstack([self.boxes, boxes[d : d + 1]])
            self.next_id += 1
        return out


def keypoint_box(kp: np.ndarray, threshold: float = REF_KEYPOINT_THRESHOLD) -> np.ndarray:
    """(17, 3) (x, y, score) frame px -> (4,) box of the joints scoring >= ``threshold`` (all if none)."""
    kp = np.asarray(kp, np.float64)
    seen = kp[:, 2] >= threshold
    xy = kp[seen, :2] if seen.any() else kp[:, :2]
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)])


class ReferencePipeline:
    """TFLite MultiPose at ``size`` + ``GreedyIouTracker``, one frame at a time.

    ``predict`` is an RGB -> [(keypoints (17, 3), score)] function (``real_dev.tflite_predictor``).
    """

    def __init__(self, predict: Callable[[np.ndarray], Sequence[tuple[np.ndarray, float]]]) -> None:
        self.predict = predict
        self.tracker = GreedyIouTracker()

    def reset(self) -> None:
        self.tracker = GreedyIouTracker()

    def process(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Frames in order -> per frame ((N, 17, 3) keypoints, (N,) track ids)."""
        out = []
        for rgb in frames:
            people = [(kp, s) for kp, s in self.predict(rgb) if s >= REF_MIN_SCORE]
            kp = np.stack([p[0] for p in people]) if people else np.zeros((0, 17, 3))
            boxes = np.stack([keypoint_box(k) for k in kp]) if len(kp) else np.zeros((0, 4))
            out.append((kp, self.tracker.update(boxes)))
        return out


# ---- the default pipeline and its instrumentation ------------------------------------------


class Clock:
    """Seconds spent per named part (accumulated while ``on``)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.on = False

    def wrap(self, fn: Callable, name: str | Callable[..., str]) -> Callable:
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.on:
                    self.spent[name(*args) if callable(name) else name] += time.perf_counter() - t0

        return timed


class _TimedEstimator:
    """Forwards to a ``PoseEstimator``, timing its calls (the pipeline calls ``estimator(...)``)."""

    def __init__(self, estimator: Any, clock: Clock) -> None:
        self._estimator, self._call = estimator, clock.wrap(estimator, "estimator")

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._estimator, name)


def instrument(pipeline: Any) -> Clock:
    """Time the parts of a ``posestream.service.pipelines.models.ModelPipeline`` (instance attributes only)."""
    clock = Clock()
    est = pipeline.detector.estimator

    def pass_name(canvas: np.ndarray) -> str:
        size = int(max(canvas.shape[1:3]))
        return f"network {size}" + (" (plain + mirrored)" if est.config.flips(size) else "")

    est._run = clock.wrap(est._run, pass_name)
    est._decode_passes = clock.wrap(est._decode_passes, "decode + scale merge")
    est._refine = clock.wrap(est._refine, "Thunder refinement")
    if est.refiner is not None:
        est.refiner.thunder_on_crops = clock.wrap(est.refiner.thunder_on_crops, "Thunder network")
    if pipeline.detector.temporal is not None:
        t = pipeline.detector.temporal
        t.embeddings = clock.wrap(t.embeddings, "TemporalNet HE")
        t.contexts = clock.wrap(t.contexts, "TemporalNet TIE")
        t.tvf_map = clock.wrap(t.tvf_map, "TemporalNet TIE")
        t.tie = clock.wrap(t.tie, "TemporalNet TIE")
    pipeline.detector.estimator = _TimedEstimator(est, clock)
    pipeline.process = clock.wrap(pipeline.process, "total")
    return clock


def breakdown(clock: Clock, frames: int) -> list[tuple[str, float]]:
    """(part, ms per frame), the parts adding up to the total (Thunder network inside refinement)."""
    s = clock.spent
    rows = sorted((k, v) for k, v in s.items() if k.startswith("network "))
    inner = sum(v for _, v in rows) + s["decode + scale merge"] + s["Thunder refinement"]
    out = [(k, v) for k, v in rows]
    out += [("decode + scale merge (incl. mirrored maps' resampling)", s["decode + scale merge"])]
    out += [("Thunder refinement (crops, masks, network, gates)", s["Thunder refinement"])]
    if "Thunder network" in s:
        out += [("  of which Thunder network", s["Thunder network"])]
    out += [("estimator rest (letterbox, mirroring, copies)", s["estimator"] - inner)]
    out += [("TemporalNet HE", s["TemporalNet HE"]), ("TemporalNet TIE", s["TemporalNet TIE"])]
    out += [
        (
            "tracker step + rest",
            s["total"] - s["estimator"] - s["TemporalNet HE"] - s["TemporalNet TIE"],
        )
    ]
    out += [("total", s["total"])]
    return [(k, 1000.0 * v / max(frames, 1)) for k, v in out]


def variant_config(base: Any, overrides: dict) -> Any:
    """``EstimatorConfig`` ``base`` with a ``VARIANTS`` row's overrides (``refine``: False = off,
    ``"all"`` = the default gates without the confident-person skip)."""
    from posestream.models.refine import RefineConfig

    fields = dict(overrides)
    if "refine" in fields:
        fields["refine"] = (
            RefineConfig(max_mean_joint_score=None)
            if fields["refine"] == "all"
            else RefineConfig(enabled=bool(fields["refine"]))
        )
    return dataclasses.replace(base, **fields)


def build_variants(names: Iterable[str], device: str = "cpu") -> dict[str, Any]:
    """name -> ``ModelPipeline`` for ``VARIANTS``; ``default`` is ``build_pipeline("movenet")`` itself."""
    from posestream.models.estimator import PoseEstimator
    from posestream.models.weights import TEMPORALNET_MOVENET, checkpoint_path
    from posestream.service.pipeline import build_pipeline
    from posestream.service.pipelines.models import ModelPipeline, load_temporal

    base = build_pipeline("movenet", device=device)
    out: dict[str, Any] = {}
    for name in names:
        overrides, _ = VARIANTS[name]
        if not overrides:
            out[name] = base if "default" not in out else build_pipeline("movenet", device=device)
            continue
        config = variant_config(base.detector.estimator.config, overrides)
        temporal = load_temporal(
            checkpoint_path(TEMPORALNET_MOVENET), "movenet"
        )  # own copy: instrumented per row
        out[name] = ModelPipeline(PoseEstimator(config), base.tracker_config, temporal)
    return out


# ---- running -------------------------------------------------------------------------------


def load_clips(specs: Sequence[str], cache_dir: str | None = None) -> dict[str, list[np.ndarray]]:
    """Clip spec -> its RGB frames; clips that are not fetched are skipped with a warning."""
    from posestream.models.data.real_clips import DataError, iter_clip_frames

    out = {}
    for spec in specs:
        try:
            out[spec] = [rgb for _, _, rgb in iter_clip_frames(spec, cache_dir)]
        except (DataError, FileNotFoundError) as exc:
            log.warning("skipping clip %s: %s", spec, exc)
    return out


def run_side_by_side(
    reference: ReferencePipeline,
    pipelines: dict[str, Any],
    clips: dict[str, list[np.ndarray]],
    batch_size: int = 8,
    rounds: int = 1,
    clocks: dict[str, Clock] | None = None,
) -> dict:
    """Every clip, batch by batch, each pipeline taking its turn on each batch; ``rounds`` times.

    The first batch of the first clip is run once untimed by everyone (warm-up). Tracker state
    starts fresh per clip and round and is threaded from batch to batch as ``run_frames`` does.
    Returns ``{"ms_per_frame": {row: median over rounds}, "frames": frames per round,
    "people": {row: people per frame}, "tracks": {row: {clip: distinct ids}}}``.
    """
    from posestream.service.pipeline import FrameInput

    names = [REFERENCE, *pipelines]
    first = next(iter(clips.values()))[:batch_size]
    reference.process(first)
    reference.reset()
    for p in pipelines.values():
        p.process([FrameInput("warmup", i, i, 0.0, f) for i, f in enumerate(first)], [None] * len(first))
    if clocks:
        for c in clocks.values():
            c.on = True
    per_round: dict[str, list[float]] = {n: [] for n in names}
    people: dict[str, int] = dict.fromkeys(names, 0)
    tracks: dict[str, dict[str, int]] = {n: {} for n in names}
    frames = sum(len(v) for v in clips.values())
    for r in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for spec, rgbs in clips.items():
            reference.reset()
            states: dict[str, Any] = dict.fromkeys(pipelines)
            ids: dict[str, set[int]] = {n: set() for n in names}
            for start in range(0, len(rgbs), batch_size):
                chunk = rgbs[start : start + batch_size]
                t0 = time.perf_counter()
                for _kp, tid in reference.process(chunk):
                    ids[REFERENCE].update(int(t) for t in tid)
                    people[REFERENCE] += len(tid) if r == 0 else 0
                spent[REFERENCE] += time.perf_counter() - t0
                batch = [FrameInput(f"{spec}#{r}", start + i, start + i, 0.0, f) for i, f in enumerate(chunk)]
                for name, p in pipelines.items():
                    t0 = time.perf_counter()
                    out = p.process(batch, [states[name]] * len(batch))
                    spent[name] += time.perf_counter() - t0
                    states[name] = out[-1][1]
                    for poses, _ in out:
                        ids[name].update(int(t) for t in poses.track_ids if t >= 0)
                        people[name] += len(poses) if r == 0 else 0
            for n in names:
                tracks[n][spec] = len(ids[n])
        for n in names:
            per_round[n].append(1000.0 * spent[n] / frames)
    if clocks:
        for c in clocks.values():
            c.on = False
    return {
        "ms_per_frame": {n: float(np.median(v)) for n, v in per_round.items()},
        "frames": frames,
        "rounds": rounds,
        "people": {n: people[n] / frames for n in names},
        "tracks": tracks,
    }


def batch_check(frames: Sequence[np.ndarray], rounds: int = 3) -> dict:
    """The network-batching lever (``EstimatorConfig.network_batch``): a scale's canvases (a batch of
    frames, plain and mirrored) in one network call vs one canvas per call.

    Times ``PoseEstimator._run`` (eager, so no trace is timed) on the default's scales for one
    batch of ``frames`` and their mirrored canvases, the two ways taking turns, ``rounds`` times
    (after one untimed call each); also the largest difference between the two ways' keypoint
    heatmaps. Returns per scale ``{"one_call_ms", "per_canvas_ms", "canvases", "max_heatmap_diff"}``
    (ms per frame, medians).
    """
    import torch

    from posestream.models.estimator import EstimatorConfig, PoseEstimator, letterbox

    est = PoseEstimator(EstimatorConfig(device="cpu", compile="none"))
    out = {}
    for size in est.config.input_sizes:
        plain = letterbox(frames, size)[0]
        both = np.concatenate([plain, plain[:, :, ::-1]])
        ways = {"one_call_ms": len(both), "per_canvas_ms": 1}
        with torch.inference_mode():
            first = {}
            for name, step in ways.items():
                est.network_batch = step
                first[name] = est._run(both)["keypoint_heatmap"]
            diff = float((first["one_call_ms"] - first["per_canvas_ms"]).abs().max())
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(rounds):
                for name, step in ways.items():
                    est.network_batch = step
                    t0 = time.perf_counter()
                    est._run(both)
                    times[name].append(1000.0 * (time.perf_counter() - t0) / len(frames))
        out[size] = {k: float(np.median(v)) for k, v in times.items()}
        out[size] |= {"canvases": len(both), "max_heatmap_diff": diff}
    return out


def load_ap(path: Path | None) -> dict[str, dict]:
    """``benchmarks/real_dev.py --json`` rows -> {config name: result}."""
    if path is None or not path.is_file():
        return {}
    return {r["name"]: r["result"] for r in json.loads(path.read_text())}


# ---- report -------------------------------------------------------------------------------


def markdown(
    result: dict, breakdowns: dict[str, list[tuple[str, float]]], ap: dict, args, command: str
) -> str:
    ms = result["ms_per_frame"]
    ref = ms[REFERENCE]
    lines = [
        "## Real video speed: default `posestream track` vs TFLite MultiPose 512 + greedy IoU (`benchmarks/real_video_speed.py`)",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {cpu_name()}, {platform.system()} {platform.machine()}, "
        f"{args.threads} thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); CPUs shared "
        "with other jobs, so absolute times are rough; the rows take turns on every batch",
        f"- command: `{command}`",
        f"- clips: {', '.join(f'`{c}`' for c in result['clips'])} ({result['frames']} frames per round, "
        f"{result['rounds']} round(s), median of the rounds' ms/frame); batches of {args.batch_size} frames "
        "as `run_frames` (the CLI's default `--batch-size`) for the posestream rows, one frame at a time for the reference",
        f"- reference: TFLite MultiPose square 512 (LiteRT, its own decoder), people with score >= {REF_MIN_SCORE}, "
        f"greedy IoU tracker (boxes of the joints >= {REF_KEYPOINT_THRESHOLD}, match IoU >= {REF_MIN_IOU}, "
        f"dropped after {REF_MAX_MISSED} missed frames)",
        "- AP: the row's configuration on the real dev set (`benchmarks/real_dev.py`, same scoring as its section)",
        "",
        "| pipeline | real dev AP | ms/frame | vs reference | people/frame | ids per clip |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in [REFERENCE, *VARIANTS]:
        if name not in ms:
            continue
        spec = REFERENCE_AP_SPEC if name == REFERENCE else VARIANTS[name][1]
        a = ap.get(spec, {}).get("total", {}).get("AP")
        ids = ", ".join(str(v) for v in result["tracks"][name].values())
        lines.append(
            f"| {name} (`{spec}`) | {'-' if a is None else f'{a:.3f}'} | {ms[name]:.0f} | {ms[name] / ref:.2f}x | "
            f"{result['people'][name]:.1f} | {ids} |"
        )
    if breakdowns:
        names = list(breakdowns)
        parts: list[str] = []
        for n in names:
            parts += [k for k, _ in breakdowns[n] if k not in parts]
        parts = sorted(k for k in parts if k.startswith("network ")) + [
            k for k in parts if not k.startswith("network ")
        ]
        lines += [
            "",
            "Where the time goes (ms/frame, summed over all timed rounds and divided by the frames; the parts add up "
            "to the total, Thunder's network is inside refinement):",
            "",
            "| part | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for part in parts:
            cells = []
            for n in names:
                v = dict(breakdowns[n]).get(part)
                cells.append("-" if v is None else f"{v:.0f}")
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=list(CLIPS), help="clip ranges (name[:start[:stop[:step]]])")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--batch-size", type=int, default=8, help="frames per pipeline batch (the CLI's default)")
    p.add_argument("--rounds", type=int, default=1, help="timed rounds over all clips")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--data-dir", default=None, help="real clips cache (default: posestream data's)")
    p.add_argument(
        "--ap-json", type=Path, default=None, help="benchmarks/real_dev.py --json output for the AP column"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md (its own section)")
    p.add_argument(
        "--render", type=Path, default=None, metavar="JSON",
        help="only format (and with --write record) the figures of an earlier run's --json file",
    )  # fmt: skip
    p.add_argument(
        "--batch-check", action="store_true",
        help="only time the network-batching lever (one call vs one canvas per call, per scale) on the first clip's first batch",
    )  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.batch_check:
        import torch

        torch.set_num_threads(args.threads)
        clips = load_clips(args.clips[:1], args.data_dir)
        if not clips:
            print("error: the clip is not available (posestream data fetch)", file=sys.stderr)
            return 2
        spec, rgbs = next(iter(clips.items()))
        res = batch_check(rgbs[: args.batch_size], max(args.rounds, 3))
        command = "python benchmarks/real_video_speed.py " + shlex.join(
            argv if argv is not None else sys.argv[1:]
        )
        lines = [
            "### Lever: one canvas per network call on CPU (`real_video_speed.py --batch-check`)",
            "",
            f"- date: {dt.date.today().isoformat()}; {cpu_name()}, {args.threads} thread(s), shared CPUs; "
            f"command: `{command.strip()}`; `{spec}`, a batch of {min(len(rgbs), args.batch_size)} frames "
            "and their mirrored canvases, eager network; median ms per frame of the scale's network time, "
            "the two ways taking turns",
            "",
            "| scale | canvases | one call | one canvas per call | saved | max heatmap difference |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for size, r in res.items():
            lines.append(
                f"| {size} | {r['canvases']} | {r['one_call_ms']:.0f} | {r['per_canvas_ms']:.0f} | "
                f"{1 - r['per_canvas_ms'] / r['one_call_ms']:.0%} | {r['max_heatmap_diff']:.1e} |"
            )
        section = "\n".join(lines)
        print(section)
        if args.write:
            record_section("real_video_speed_batch", section)
            print("\nwrote benchmarks/RESULTS.md")
        return 0
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        args.threads, args.batch_size = saved["threads"], saved["batch_size"]
        breakdowns = {n: [tuple(r) for r in rows] for n, rows in saved["breakdowns"].items()}
        section = markdown(saved["result"], breakdowns, load_ap(args.ap_json), args, saved["command"])
        print(section)
        if args.write:
            record_section("real_video_speed", section)
            print("\nwrote benchmarks/RESULTS.md")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    clips = load_clips(args.clips, args.data_dir)
    if not clips:
        print("error: none of the clips is available (posestream data fetch)", file=sys.stderr)
        return 2
    from benchmarks.real_dev import tflite_predictor

    reference = ReferencePipeline(tflite_predictor(512, args.threads))
    pipelines = build_variants(args.variants)
    clocks = {n: instrument(pl) for n, pl in pipelines.items()}
    result = run_side_by_side(reference, pipelines, clips, args.batch_size, args.rounds, clocks)
    result["clips"] = list(clips)
    total_frames = result["frames"] * args.rounds
    breakdowns = {n: breakdown(c, total_frames) for n, c in clocks.items()}
    ap = load_ap(args.ap_json)
    command = "python benchmarks/real_video_speed.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    section = markdown(result, breakdowns, ap, args, command.strip())
    print(section)
    if args.json is not None:
        saved = {"result": result, "breakdowns": breakdowns, "command": command.strip()}
        saved |= {"threads": args.threads, "batch_size": args.batch_size}
        args.json.write_text(json.dumps(saved, indent=1))
    if args.write:
        record_section("real_video_speed", section)
        print("\nwrote benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
