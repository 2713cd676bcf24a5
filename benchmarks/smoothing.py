"""Benchmark: One-Euro keypoint smoothing (``TrackerConfig.smooth``): jitter, error and lag against exact ground truth.

A scripted synthetic clip (``posestream.models.data.synthetic``; exact joints every frame) with
three people at once: one standing still (idle arms), one walking (~3 px/frame) and one running
fast (8 px/frame) who turns round mid-clip. The same detections are tracked once per setting
(smoothing off and several One-Euro parameters; tracker preset "oks"), so the rows differ only
by the smoothing. Two detectors:

- ``noisy truth``: the ground-truth joints plus Gaussian noise of ``--noise`` times the person's
  box height per coordinate (scores 0.9 visible / 0.6 occluded / 0.05 outside the frame). The
  noise is white, which is the case a low-pass helps most.
- ``movenet``: the real MoveNet pipeline (``build_pipeline("movenet", "oks")``, the default input
  sizes) on the rendered frames; its errors are partly systematic (a joint placed wrong for
  many frames), which no temporal filter removes. Skipped with ``--no-movenet`` or when the
  weights are not fetched.

Per person (matched to the tracked outputs by mean joint distance, Hungarian, per frame),
over the joints that are inside the frame in the truth and scored above the tracker's
``keypoint_threshold``:

- ``err``: mean joint error, pixels;
- ``jit``: jitter, the mean norm of the second difference in time of the error (output minus
  truth), pixels per frame squared: the true motion cancels, what is left is shake;
- ``lag``: how many frames the output trails the truth along the direction of motion
  (``-sum(e . v) / sum(|v|^2)`` over joints moving over 1 px/frame, ``v`` the true velocity per
  frame); 0 for no lag, not defined for the still person.

Prints a Markdown table and, unless ``--no-record``, writes it as the "smoothing" section of
benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/smoothing.py
    .venv/bin/python benchmarks/smoothing.py --frames 60 --no-movenet --no-record
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import RESULTS, cpu_name, record_section  # noqa: E402
from posestream.models.data.synthetic import SyntheticClip  # noqa: E402
from posestream.models.data.synthetic.specs import PersonSpec, SceneSpec  # noqa: E402
from posestream.models.poses import FramePoses  # noqa: E402
from posestream.tracker.config import TrackerConfig  # noqa: E402
from posestream.tracker.state import TrackerState  # noqa: E402
from posestream.tracker.step import step  # noqa: E402

PEOPLE = ("still", "walk", "run")
# (label, TrackerConfig fields); the first row is smoothing off.
SETTINGS: tuple[tuple[str, dict[str, object]], ...] = (
    ("off", {"smooth": False}),
    ("min_cutoff 1, beta 0 (plain low-pass)", {"smooth": True, "smooth_min_cutoff": 1.0, "smooth_beta": 0.0}),
    ("min_cutoff 1, beta 1", {"smooth": True, "smooth_beta": 1.0}),
    ("min_cutoff 1, beta 5 (default)", {"smooth": True}),
    ("min_cutoff 2, beta 5", {"smooth": True, "smooth_min_cutoff": 2.0, "smooth_beta": 5.0}),
    ("min_cutoff 0.5, beta 10", {"smooth": True, "smooth_min_cutoff": 0.5, "smooth_beta": 10.0}),
)


def scene(frames: int) -> SceneSpec:
    """Still (left, idle arms), walking (middle row, left to right) and running (front, turns round)."""
    half = (frames - 1) / 2
    return SceneSpec(
        width=640, height=480, fps=25.0, frames=frames,
        people=(
            PersonSpec(path=((0.0, 90.0, 360.0),), motion="stand"),
            PersonSpec(path=((0.0, 160.0, 330.0), (frames - 1.0, 160.0 + 3.0 * (frames - 1), 330.0))),
            PersonSpec(path=((0.0, 60.0, 450.0), (half, 60.0 + 8.0 * half, 450.0), (frames - 1.0, 60.0, 450.0)),
                       motion="run"),
        ),
    )  # fmt: skip


def noisy_truth(gt: list[FramePoses], noise: float, seed: int) -> list[FramePoses]:
    """The truth as a detector with white joint noise would report it."""
    rng = np.random.default_rng(seed)
    out = []
    for f in gt:
        kp = f.keypoints.copy()
        height = (f.boxes[:, 3] - f.boxes[:, 1])[:, None, None]
        kp[:, :, :2] += rng.normal(0.0, 1.0, kp[:, :, :2].shape) * noise * height
        vis = f.keypoints[:, :, 2]
        kp[:, :, 2] = np.where(vis == 2, 0.9, np.where(vis == 1, 0.6, 0.05))
        out.append(
            FramePoses(f.frame_index, f.timestamp, f.width, f.height, kp, f.boxes, np.full(len(f), 0.9))
        )
    return out


def movenet_detections(rgbs: list[np.ndarray], gt: list[FramePoses]) -> tuple[list[FramePoses], str]:
    from posestream.service.pipeline import build_pipeline
    from posestream.service.pipelines.base import FrameInput

    pipeline = build_pipeline("movenet", "oks", device="cpu")
    out: list[FramePoses] = []
    start = time.perf_counter()
    for i in range(0, len(rgbs), 8):
        batch = [FrameInput("bench", k, k, gt[k].timestamp, rgbs[k]) for k in range(i, min(i + 8, len(rgbs)))]
        out += [d.detections for d in pipeline.detector.detect(batch)]
    fps = len(rgbs) / (time.perf_counter() - start)
    return (
        out,
        f"{pipeline.name}, default input sizes, {fps:.1f} frames/s on a shared CPU: not a speed figure",
    )


def match(gt: FramePoses, det: FramePoses) -> dict[int, int]:
    """GT person id -> detection row, by mean joint distance over the truth's in-frame joints."""
    if not len(gt) or not len(det):
        return {}
    inside = gt.keypoints[:, None, :, 2] > 0
    d = np.linalg.norm(gt.keypoints[:, None, :, :2] - det.keypoints[None, :, :, :2], axis=3)
    cost = (d * inside).sum(axis=2) / np.maximum(inside.sum(axis=2), 1)
    rows, cols = linear_sum_assignment(cost)
    height = gt.boxes[:, 3] - gt.boxes[:, 1]
    return {
        int(gt.track_ids[r]): int(c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 0.5 * height[r]
    }


def track(dets: list[FramePoses], config: TrackerConfig) -> list[FramePoses]:
    state, out = TrackerState.initial(), []
    for d in dets:
        state, poses = step(state, d, config)
        out.append(poses)
    return out


def metrics(
    gt: list[FramePoses], out: list[FramePoses], matches: list[dict[int, int]], pid: int, threshold: float
):
    """(err px, jitter px/frame^2, lag frames) of person ``pid``."""
    n = len(gt)
    e = np.full((n, 17, 2), np.nan)
    v_true = np.full((n, 17, 2), np.nan)
    truth = np.full((n, 17, 2), np.nan)
    for t, (g, o, m) in enumerate(zip(gt, out, matches, strict=True)):
        rows = np.flatnonzero(g.track_ids == pid)
        if not len(rows) or pid not in m:
            continue
        gk, ok = g.keypoints[rows[0]], o.keypoints[m[pid]]
        ok_mask = (gk[:, 2] > 0) & (ok[:, 2] > threshold)
        truth[t] = gk[:, :2]
        e[t][ok_mask] = ok[ok_mask, :2] - gk[ok_mask, :2]
    v_true[1:-1] = (truth[2:] - truth[:-2]) / 2.0
    norm = np.linalg.norm(e, axis=2)
    err = float(np.nanmean(norm))
    acc = np.linalg.norm(e[2:] - 2 * e[1:-1] + e[:-2], axis=2)
    jit = float(np.nanmean(acc))
    speed2 = (v_true**2).sum(axis=2)
    sel = (speed2 > 1.0) & ~np.isnan(e).any(axis=2) & ~np.isnan(speed2)
    lag = float(-(e * v_true).sum(axis=2)[sel].sum() / speed2[sel].sum()) if sel.sum() > 20 else float("nan")
    return err, jit, lag


def table(name: str, gt: list[FramePoses], dets: list[FramePoses], base: TrackerConfig) -> list[str]:
    matches = [match(g, d) for g, d in zip(gt, dets, strict=True)]
    head = (
        "| "
        + name
        + " | "
        + " | ".join(f"{p} err | {p} jit" + (f" | {p} lag" if p != "still" else "") for p in PEOPLE)
        + " |"
    )
    cols = head.count("|") - 1
    lines = [head, "|" + "---|" * cols]
    for label, fields in SETTINGS:
        out = track(dets, dataclasses.replace(base, **fields))  # type: ignore[arg-type]
        cells = []
        for pid, p in enumerate(PEOPLE):
            err, jit, lag = metrics(gt, out, matches, pid, base.keypoint_threshold)
            cells += [f"{err:.2f}", f"{jit:.2f}"] + ([f"{lag:.2f}"] if p != "still" else [])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150, help="clip length (25 fps)")
    ap.add_argument(
        "--noise", type=float, default=0.015, help="noisy truth: joint noise, fraction of box height"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-movenet", action="store_true", help="only the noisy-truth detector")
    ap.add_argument("--no-record", action="store_true", help="print only; do not write RESULTS.md")
    args = ap.parse_args()

    clip = SyntheticClip(scene(args.frames))
    rgbs, gt = [], []
    for rgb, poses in clip:
        rgbs.append(rgb)
        gt.append(poses)
    base = TrackerConfig(preset="oks")
    heights = {
        p: [
            float(f.boxes[f.track_ids == pid][0, 3] - f.boxes[f.track_ids == pid][0, 1])
            for f in gt
            if pid in f.track_ids
        ]
        for pid, p in enumerate(PEOPLE)
    }
    sizes = ", ".join(f"{p} {min(h):.0f}-{max(h):.0f}" for p, h in heights.items())
    sections = [
        f"Noisy truth (white noise, sigma = {args.noise:g} x box height per coordinate):",
        "",
        *table("setting", gt, noisy_truth(gt, args.noise, args.seed), base),
    ]
    movenet_note = "MoveNet: not run (--no-movenet)."
    if not args.no_movenet:
        try:
            dets, movenet_note = movenet_detections(rgbs, gt)
        except (ValueError, ImportError, OSError) as exc:
            movenet_note = f"MoveNet: not run ({exc})."
        else:
            sections += ["", f"MoveNet ({movenet_note}):", "", *table("setting", gt, dets, base)]
            movenet_note = ""
    body = "\n".join(sections)
    print(body)
    if movenet_note:
        print(movenet_note)
    if not args.no_record:
        text = (
            "## Keypoint smoothing (One-Euro)\n\n"
            f"`benchmarks/smoothing.py --frames {args.frames} --noise {args.noise:g}`, "
            f"{datetime.date.today().isoformat()}, {cpu_name()}. Synthetic 640x480 clip at 25 fps, {args.frames} "
            f"frames: a person standing still, one walking at 3 px/frame, one running at 8 px/frame who turns round "
            f"mid-clip (box heights in px: {sizes}). err: mean joint error (px); jit: mean norm of the second "
            "difference of the error (px/frame^2, shake with the true motion removed); lag: frames the output "
            "trails the truth along the motion. Tracker preset oks; the same detections for every row.\n\n"
            + body
            + ("\n\n" + movenet_note if movenet_note else "")
        )
        record_section("smoothing", text)
        print(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
