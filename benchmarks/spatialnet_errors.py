"""Where a SpatialNet's AP goes: its heatmaps (detection) or its embeddings (grouping).

Scores each checkpoint on held-out synthetic clips four ways from one network pass per frame,
by ``evaluate_spatialnet_oracles`` (``evaluate_spatialnet``'s code, the one behind ``posestream
eval``), with the weights' own decoding and test-time passes:

- ``network``: its own maps (what the card reports);
- ``GT heatmaps``: the ground truth's heatmaps in place of its own (exact peaks), its KE/SIE
  grouping them -- what is left is the grouping;
- ``GT embeddings``: its own heatmaps, grouped by ground-truth KE tags and SIE -- what is left
  is finding and placing the joints (an upper bound: joints filled by ``fill_missing`` land
  where the ground-truth tags are, i.e. near the true joint; ``with_ground_truth``);
- ``both``: ground truth for both: the decoder's round trip, 1.0 up to what the checkpoint's
  decode settings drop (a wide NMS window merges two people's joints that nearly touch).

A second table breaks the network's own predictions down by joint: for every ground-truth
person whose best prediction has OKS >= 0.5, the mean per-joint OKS term
``exp(-d^2 / (2 area (2 sigma)^2))`` of its visible and of its occluded joints.

Nothing is chosen from these figures, so held-out seeds are used. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spatialnet_errors.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import cpu_name, record_section  # noqa: E402
from models.poses import read_jsonl  # noqa: E402
from models.skeleton import KEYPOINT_INDEX, OKS_SIGMAS, VIS_OCCLUDED, VIS_VISIBLE  # noqa: E402
from models.train import evaluate_spatialnet_oracles, load_spatialnet  # noqa: E402
from tracker.evaluation import PART_GROUPS, oks_matrix  # noqa: E402

# column -> (gt_heatmaps, gt_embeddings)
ORACLES: dict[str, tuple[bool, bool]] = {
    "network": (False, False),
    "GT heatmaps": (True, False),
    "GT embeddings": (False, True),
    "both": (True, True),
}

# Rows of the per-joint table: PoseTrack's body-part groups, left and right joints pooled.
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    part: tuple(KEYPOINT_INDEX[j] for j in joints) for part, joints in PART_GROUPS.items()
}


def joint_terms(gt_path: Path, pred_path: Path, min_oks: float = 0.5) -> dict[str, dict[int, list[float]]]:
    """Per-joint OKS terms of matched people, by joint group and ground-truth visibility.

    Each ground-truth person is paired with its best prediction (by OKS, box-area scale as in
    ``tracker.evaluation``); pairs under ``min_oks`` are left out.

    Returns:
        group name -> {VIS_VISIBLE: [terms], VIS_OCCLUDED: [terms]}, each term in [0, 1].
    """
    var = (2.0 * np.asarray(OKS_SIGMAS, np.float64)) ** 2
    out: dict[str, dict[int, list[float]]] = {g: {VIS_VISIBLE: [], VIS_OCCLUDED: []} for g in JOINT_GROUPS}
    for gt, pred in zip(read_jsonl(gt_path), read_jsonl(pred_path), strict=True):
        if len(gt.keypoints) == 0 or len(pred.keypoints) == 0:
            continue
        areas = (gt.boxes[:, 2] - gt.boxes[:, 0]) * (gt.boxes[:, 3] - gt.boxes[:, 1])
        oks = oks_matrix(gt.keypoints, gt.boxes, areas, pred.keypoints)
        for g in np.nonzero(oks.max(axis=1) >= min_oks)[0]:
            p = pred.keypoints[oks[g].argmax()]
            d2 = ((p[:, :2] - gt.keypoints[g, :, :2]) ** 2).sum(axis=1)
            term = np.exp(-d2 / (2.0 * areas[g] * var))
            for name, joints in JOINT_GROUPS.items():
                for j in joints:
                    vis = int(gt.keypoints[g, j, 2])
                    if vis in (VIS_VISIBLE, VIS_OCCLUDED):
                        out[name][vis].append(float(term[j]))
    return out


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ({len(values)})" if values else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, nargs="+", default=[ROOT / "weights" / "spatialnet_movenet.pt"])
    p.add_argument("--seeds", default="9000,9001,9002,9003,9004,9005,9006,9007", help="held-out clip seeds")
    p.add_argument("--frames", type=int, default=8, help="frames per clip")
    p.add_argument("--input-size", default="512x384", help="network input WxH (whole frames fitted in)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, help="rewrite this benchmark's block of this RESULTS.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    size = tuple(int(v) for v in args.input_size.lower().split("x"))
    started = time.time()
    rows = [
        "| model | decoding | " + " | ".join(f"AP, {c}" for c in ORACLES) + " | AR, network |",
        "|---|---|" + "---:|" * (len(ORACLES) + 1),
    ]
    joint_rows = [
        "| model | joints | visible: mean OKS term (n) | occluded: mean OKS term (n) |",
        "|---|---|---:|---:|",
    ]
    for weights in args.weights:
        net = load_spatialnet(weights).eval()
        d = net.config.decode
        with tempfile.TemporaryDirectory() as tmp:
            # One network pass per frame, decoded four ways; "network" (first) is written to tmp.
            scores = evaluate_spatialnet_oracles(net, seeds, args.frames, size, torch.device("cpu"), ORACLES,
                                                 write_dir=tmp)  # fmt: skip
            terms = joint_terms(Path(tmp) / "gt.jsonl", Path(tmp) / "pred.jsonl")
        name = weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights
        joint_rows += [
            f"| `{weights.name}` | {group} | {_mean(t[VIS_VISIBLE])} | {_mean(t[VIS_OCCLUDED])} |"
            for group, t in terms.items()
        ]
        rows.append(
            f"| `{name}` | scales {list(d.scales)}, flip {d.flip_test}, PGG {net.config.use_pgg} | "
            + " | ".join(f"{scores[c]['AP']:.3f}" for c in ORACLES)
            + f" | {scores['network']['AR']:.3f} |"
        )
        print(rows[-1], flush=True)
    print("\n".join(joint_rows))
    if args.results:
        command = f"OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/spatialnet_errors.py " + " ".join(
            sys.argv[1:]
        )
        block = "\n".join([
            "## SpatialNet error analysis: heatmaps vs embeddings (`benchmarks/spatialnet_errors.py`)",
            "",
            f"- date: {dt.date.today().isoformat()}; {cpu_name()}, {os.cpu_count()} logical CPUs, "
            f"{args.threads} torch thread; Python {platform.python_version()}, torch {torch.__version__}; "
            f"{time.time() - started:.0f} s",
            f"- command: `{command}`",
            f"- held-out synthetic clips {args.seeds}, first {args.frames} frames each, whole 640x480 frames "
            f"fitted into {size[0]}x{size[1]}; each checkpoint's own decode settings; COCO keypoint AP "
            "(`tracker.evaluation`). `GT heatmaps`: exact peaks, the network's KE/SIE group them (the grouping's "
            "share); `GT embeddings`: the network's heatmaps grouped by ground-truth tags and SIE (the detection "
            "and localisation's share; an upper bound, since missing joints can only be filled where the "
            "ground-truth tags are, near the true joint); `both`: the decoder's round trip.",
            "",
            *rows,
            "",
            "Per joint, the network's own predictions: for every ground-truth person whose best prediction has "
            "OKS >= 0.5, the mean OKS term `exp(-d^2 / (2 area (2 sigma)^2))` of its joints by ground-truth "
            "visibility (1 = a perfectly placed joint), and how many joints.",
            "",
            *joint_rows,
        ])  # fmt: skip
        record_section("spatialnet_errors", block, args.results)


if __name__ == "__main__":
    main()
