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
``exp(-d^2 / (2 area (2 sigma)^2))`` of its visible and of its occluded joints. A third counts
mirror confusion in the same pairs: of the left/right joint pairs (``FLIP_PAIRS``) whose two
ground-truth joints are labelled and apart (twice the distance at which a joint's OKS term falls to
0.5, so no point is near both), how
many predictions put both joints on one of them (a duplicate: ``DecodeConfig.mirror_separation``
is the decoder's answer) or each on the other's place (a swap).

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
from posestream.models.checkpoints import load_spatialnet  # noqa: E402
from posestream.models.data.splits import HELD_OUT  # noqa: E402
from posestream.models.geometry import keypoint_similarity, oks_matrix  # noqa: E402
from posestream.models.poses import read_jsonl  # noqa: E402
from posestream.models.skeleton import (  # noqa: E402
    FLIP_PAIRS,
    KEYPOINT_INDEX,
    KEYPOINT_NAMES,
    VIS_OCCLUDED,
    VIS_VISIBLE,
    flip_permutation,
)
from posestream.models.train import evaluate_spatialnet_oracles  # noqa: E402
from posestream.tracker.metrics import PART_GROUPS, evaluate  # noqa: E402

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


def matched_people(
    gt_path: Path, pred_path: Path, min_oks: float = 0.5
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Each ground-truth person with its best prediction (by OKS, box-area scale as in
    ``posestream.tracker.metrics``); pairs under ``min_oks`` are left out.

    Returns:
        (ground truth (17, 3) with visibility, prediction (17, 3), box area in pixels^2) per pair.
    """
    out = []
    for gt, pred in zip(read_jsonl(gt_path), read_jsonl(pred_path), strict=True):
        if len(gt.keypoints) == 0 or len(pred.keypoints) == 0:
            continue
        areas = (gt.boxes[:, 2] - gt.boxes[:, 0]) * (gt.boxes[:, 3] - gt.boxes[:, 1])
        oks = oks_matrix(gt.keypoints, pred.keypoints, areas, ref_boxes=gt.boxes)
        for g in np.nonzero(oks.max(axis=1) >= min_oks)[0]:
            out.append((gt.keypoints[g], pred.keypoints[oks[g].argmax()], float(areas[g])))
    return out


def _terms(a: np.ndarray, b: np.ndarray, area: float) -> np.ndarray:
    """(17,) OKS terms (``keypoint_similarity``) of points a against points b, both (17, >=2)."""
    return keypoint_similarity(((a[:, :2] - b[:, :2]) ** 2).sum(axis=1), area)


def joint_terms(pairs: list[tuple[np.ndarray, np.ndarray, float]]) -> dict[str, dict[int, list[float]]]:
    """Per-joint OKS terms of ``matched_people``, by joint group and ground-truth visibility.

    Returns:
        group name -> {VIS_VISIBLE: [terms], VIS_OCCLUDED: [terms]}, each term in [0, 1].
    """
    out: dict[str, dict[int, list[float]]] = {g: {VIS_VISIBLE: [], VIS_OCCLUDED: []} for g in JOINT_GROUPS}
    for gt, p, area in pairs:
        term = _terms(p, gt, area)
        for name, joints in JOINT_GROUPS.items():
            for j in joints:
                vis = int(gt[j, 2])
                if vis in (VIS_VISIBLE, VIS_OCCLUDED):
                    out[name][vis].append(float(term[j]))
    return out


def mirror_confusion(
    pairs: list[tuple[np.ndarray, np.ndarray, float]], near: float = 0.5
) -> dict[str, dict[str, int]]:
    """Left/right mix-ups of ``matched_people``, per ``FLIP_PAIRS`` pair.

    A predicted joint is "on" a ground-truth joint when its OKS term there (with its own
    sigma) is >= ``near``. Only pairs whose two ground-truth joints are labelled and apart
    count: at least twice the "on" radius, so no point is on both (OKS term < ``near ** 4``).

    Returns:
        pair name (``elbow`` etc.) -> {"pairs", "duplicates" (both predicted joints on one
        ground-truth joint), "swaps" (each on the other's)}.
    """
    perm = flip_permutation()
    out = {
        KEYPOINT_NAMES[a].removeprefix("left_"): {"pairs": 0, "duplicates": 0, "swaps": 0}
        for a, _ in FLIP_PAIRS
    }
    for gt, p, area in pairs:
        own, mirrored = _terms(p, gt, area) >= near, _terms(p, gt[perm], area) >= near
        apart = _terms(gt, gt[perm], area) < near**4
        for a, b in FLIP_PAIRS:
            if gt[a, 2] <= 0 or gt[b, 2] <= 0 or not apart[a] or not apart[b]:
                continue
            row = out[KEYPOINT_NAMES[a].removeprefix("left_")]
            row["pairs"] += 1
            row["duplicates"] += int((own[a] and mirrored[b]) or (own[b] and mirrored[a]))
            row["swaps"] += int(mirrored[a] and mirrored[b])
    return out


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ({len(values)})" if values else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, nargs="+", default=[ROOT / "weights" / "spatialnet_movenet.pt"])
    p.add_argument("--seeds", default=",".join(map(str, HELD_OUT.seeds(8))), help="held-out clip seeds")
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
    mirror_rows = [
        "| model | pair | pairs apart | duplicates | swaps |",
        "|---|---|---:|---:|---:|",
    ]
    for weights in args.weights:
        net = load_spatialnet(weights).eval()
        d = net.config.decode
        with tempfile.TemporaryDirectory() as tmp:
            # One network pass per frame, decoded four ways; "network" (first) is written to tmp.
            scores = evaluate_spatialnet_oracles(net, seeds, args.frames, size, torch.device("cpu"), ORACLES,
                                                 write_dir=tmp, evaluate=evaluate)  # fmt: skip
            matched = matched_people(Path(tmp) / "gt.jsonl", Path(tmp) / "pred.jsonl")
        terms, mirrors = joint_terms(matched), mirror_confusion(matched)
        name = weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights
        joint_rows += [
            f"| `{weights.name}` | {group} | {_mean(t[VIS_VISIBLE])} | {_mean(t[VIS_OCCLUDED])} |"
            for group, t in terms.items()
        ]
        mirror_rows += [
            f"| `{weights.name}` | {pair} | {m['pairs']} | {m['duplicates']} | {m['swaps']} |"
            for pair, m in mirrors.items()
            if m["pairs"]
        ]
        rows.append(
            f"| `{name}` | scales {list(d.scales)}, flip {d.flip_test}, mirror separation "
            f"{d.mirror_separation}, prior threshold {d.prior_threshold}, PGG {net.config.use_pgg} | "
            + " | ".join(f"{scores[c]['AP']:.3f}" for c in ORACLES)
            + f" | {scores['network']['AR']:.3f} |"
        )
        print(rows[-1], flush=True)
    print("\n".join(joint_rows))
    print("\n".join(mirror_rows))
    if args.results:
        command = (
            f"OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/spatialnet_errors.py "
            + " ".join(sys.argv[1:])
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
            "(`posestream.tracker.metrics`). `GT heatmaps`: exact peaks, the network's KE/SIE group them (the grouping's "
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
            "",
            "Mirror confusion in the same people: of the left/right pairs whose ground-truth joints are labelled "
            "and apart (at least twice the distance at which a joint's OKS term falls to 0.5), how many predictions "
            "put both joints on one of them (OKS term >= 0.5 there: duplicates) or each on the other's place "
            "(swaps).",
            "",
            *mirror_rows,
        ])  # fmt: skip
        record_section("spatialnet_errors", block, args.results)


if __name__ == "__main__":
    main()
