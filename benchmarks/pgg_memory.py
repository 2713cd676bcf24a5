"""Memory of Pose-Guided Grouping (PGG) against full-image GBMS (seed 000 Fig. 6(a): about 1 %).

GBMS on every pixel of an (H, W) output map builds an (HW, HW) affinity; PGG runs it only
on the pixels of the instance-agnostic pose mask ``max_j C_j(p) > tau``. This script takes
the shipped SpatialNet's real heatmaps on held-out synthetic frames (seeds never used in
training), whole 640x480 frames fed at 640x480 (160x120 maps) and at the shipped inference
size 512x384 (128x96 maps), and reports per frame:

- the masked pixels N (and the fraction of the map they are), before and after the
  ``max_points`` cap;
- the GBMS working set ``posestream.models.pgg.pgg_memory_bytes`` (N x N affinity + R + 1 iterates,
  float32) for PGG and for full-image GBMS (N = HW), and their ratio.

With ``--measure`` it also measures peak memory (the growth of the process's maximum
resident set, in a fresh subprocess per case) of one GBMS iteration in torch, on PGG's
masked points and on all pixels of maps up to ``--measure-max-pixels``.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pgg_memory.py --measure --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import record_section  # noqa: E402
from posestream.models.checkpoints import load_spatialnet  # noqa: E402
from posestream.models.data.augment import fit_affine, transform_keypoints, warp_image  # noqa: E402
from posestream.models.data.splits import HELD_OUT  # noqa: E402
from posestream.models.pgg import pgg_memory_bytes  # noqa: E402
from posestream.models.targets import TargetConfig, build_spatial_targets  # noqa: E402
from posestream.models.train import synthetic_frames  # noqa: E402

_CHILD = """
import json, resource, sys, torch
torch.set_num_threads(1)
from posestream.models.pgg import gbms
n, d, r = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
x = torch.randn(d, n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    out = gbms(x, 5.0, r)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_bytes": (after - before) * 1024}))
"""


def measure_gbms_peak(n: int, dim: int, iterations: int) -> int:
    """Peak extra resident memory (bytes) of ``gbms`` on n points, in a fresh process."""
    res = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(dim), str(iterations)], cwd=ROOT,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return int(json.loads(res.stdout.strip().splitlines()[-1])["peak_bytes"])


@torch.inference_mode()
def masked_counts(weights: Path, seeds: list[int], frames: int, size: tuple[int, int]) -> dict:
    """Masked-pixel counts of the network's last-stack heatmaps on held-out frames."""
    net = load_spatialnet(weights)
    cfg = net.config.pgg
    w, h = size
    counts, capped, gt_counts = [], [], []
    for rgb, gt in synthetic_frames(seeds, frames):
        m = fit_affine(rgb.shape[1], rgb.shape[0], w, h)
        x = torch.from_numpy(warp_image(rgb, m, w, h))
        # the mask PGG sees in training: the ground truth's heatmaps (also what a fully
        # trained network would approach)
        target = build_spatial_targets(
            transform_keypoints(gt.keypoints, m, False), h // 4, w // 4, TargetConfig()
        )
        gt_counts.append(int((target.heatmaps.max(axis=0) > cfg.tau).sum()))
        stacks, _ = net(net.normalise(x.permute(2, 0, 1)[None]))
        heat = stacks[-1]["heatmaps"].clamp(0, 1)[0]
        n = int((heat.max(dim=0).values > cfg.tau).sum())
        counts.append(n)
        capped.append(min(n, cfg.max_points))
    hw = (h // 4) * (w // 4)
    return {"size": size, "map": (w // 4, h // 4), "hw": hw, "counts": counts, "capped": capped, "gt_counts": gt_counts,
            "dim": net.config.tag_dim + 2, "iterations": cfg.iterations, "tau": cfg.tau,
            "max_points": cfg.max_points}  # fmt: skip


def _mb(b: float) -> str:
    return f"{b / 2**20:,.2f}"


def run(args: argparse.Namespace) -> list[str]:
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        "| input | map | frames | masked pixels N: median (max) | N / HW median (max) | PGG GBMS bytes, median (MB) "
        "| full-image GBMS (MB) | PGG / full, median (max) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    cases = []
    for size in ((640, 480), (512, 384)):
        c = masked_counts(args.weights, seeds, args.frames, size)
        full = pgg_memory_bytes(c["hw"], c["dim"], c["iterations"])
        pgg = [pgg_memory_bytes(n, c["dim"], c["iterations"]) for n in c["capped"]]
        frac = [n / c["hw"] for n in c["counts"]]
        ratio = [p / full for p in pgg]
        lines.append(
            f"| {size[0]}x{size[1]} | {c['map'][0]}x{c['map'][1]} | {len(pgg)} | {statistics.median(c['counts']):.0f} "
            f"({max(c['counts'])}) | {100 * statistics.median(frac):.2f} % ({100 * max(frac):.2f} %) "
            f"| {_mb(statistics.median(pgg))} | {_mb(full)} | {100 * statistics.median(ratio):.3f} % "
            f"({100 * max(ratio):.3f} %) |"
        )
        cases.append(c)
        print(lines[-1], flush=True)
        gt_n = [min(n, c["max_points"]) for n in c["gt_counts"]]
        gt_pgg = [pgg_memory_bytes(n, c["dim"], c["iterations"]) for n in gt_n]
        gt_frac = [n / c["hw"] for n in c["gt_counts"]]
        lines.append(
            f"| {size[0]}x{size[1]}, ground-truth mask | {c['map'][0]}x{c['map'][1]} | {len(gt_pgg)} "
            f"| {statistics.median(c['gt_counts']):.0f} ({max(c['gt_counts'])}) "
            f"| {100 * statistics.median(gt_frac):.2f} % ({100 * max(gt_frac):.2f} %) | {_mb(statistics.median(gt_pgg))} "
            f"| {_mb(full)} | {100 * statistics.median(gt_pgg) / full:.3f} % ({100 * max(gt_pgg) / full:.3f} %) |"
        )
        print(lines[-1], flush=True)
    c0 = cases[0]
    info = [
        f"- mask: tau = {c0['tau']}, max_points = {c0['max_points']} (N above it is capped; "
        f"{sum(n > c0['max_points'] for c in cases for n in c['counts'])} frames hit the cap); "
        f"embedding D = {c0['dim']} (KE tag + 2 SIE), R = {c0['iterations']}; float32.",
    ]
    if args.measure:
        mlines = [
            "",
            "Measured peak (growth of max RSS of a fresh process running one `posestream.models.pgg.gbms` call, float32, "
            "no autograd); the computed working set alongside. 0.00 means the call stayed below the process's "
            "start-up peak (imports), i.e. too small to see this way; the large cases show the real cost of "
            "full-image GBMS, about 3x the N x N affinity (distances, kernel and affinity live at once):",
            "",
            "| points N | what | measured peak (MB) | N x N + iterates (MB) |",
            "|---:|---|---:|---:|",
        ]
        med = int(statistics.median(c0["capped"]))
        todo = [(med, f"PGG, median masked pixels at {c0['size'][0]}x{c0['size'][1]}"),
                (max(c0["capped"]), f"PGG, max masked pixels at {c0['size'][0]}x{c0['size'][1]}")]  # fmt: skip
        for w, h in ((64, 48), (128, 96), (160, 120)):
            if w * h <= args.measure_max_pixels:
                todo.append((w * h, f"full-image GBMS, {w}x{h} map"))
        for n, what in todo:
            peak = measure_gbms_peak(n, c0["dim"], c0["iterations"])
            mlines.append(
                f"| {n} | {what} | {_mb(peak)} | {_mb(pgg_memory_bytes(n, c0['dim'], c0['iterations']))} |"
            )
            print(mlines[-1], flush=True)
        lines += mlines
    return info + [""] + lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=ROOT / "weights" / "spatialnet_synthetic.pt")
    p.add_argument(
        "--seeds", default=",".join(map(str, HELD_OUT.seeds(2))), help="held-out synthetic clip seeds"
    )
    p.add_argument("--frames", type=int, default=10, help="frames per clip")
    p.add_argument("--measure", action="store_true", help="also measure peak memory in subprocesses")
    p.add_argument(
        "--measure-max-pixels", type=int, default=160 * 120, help="largest full-image GBMS to measure"
    )
    p.add_argument("--results", type=Path, help="rewrite this benchmark's block of this RESULTS.md")
    args = p.parse_args()
    body = run(args)
    if args.results:
        command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pgg_memory.py " + " ".join(sys.argv[1:])
        head = [
            "## PGG memory vs full-image GBMS (`benchmarks/pgg_memory.py`)",
            "",
            f"- date: {dt.date.today().isoformat()}; Python {platform.python_version()}, torch {torch.__version__}, "
            "CPU, 1 thread",
            f"- command: `{command}`",
            f"- heatmaps: `{args.weights.relative_to(ROOT) if args.weights.is_absolute() else args.weights}` on "
            f"held-out synthetic clips {args.seeds} ({args.frames} frames each, 5 people, 640x480), whole frames "
            "fitted into the input size.",
        ]
        record_section("pgg_memory", "\n".join(head + body), args.results)


if __name__ == "__main__":
    main()
