"""Where a SpatialNet's AP goes: its heatmaps (detection) or its embeddings (grouping).

Scores each checkpoint on held-out synthetic clips four ways, by ``evaluate_spatialnet``
(the code behind ``posestream eval``), with the weights' own decoding and test-time passes:

- ``network``: its own maps (what the card reports);
- ``GT heatmaps``: the ground truth's heatmaps in place of its own (exact peaks), its KE/SIE
  grouping them -- what is left is the grouping;
- ``GT embeddings``: its own heatmaps, grouped by ground-truth KE tags and SIE -- what is left
  is finding and placing the joints;
- ``both``: ground truth for both: the decoder's round trip, 1.0 up to what the checkpoint's
  decode settings drop (a wide NMS window merges two people's joints that nearly touch).

Nothing is chosen from these figures, so held-out seeds are used. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spatialnet_errors.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import cpu_name, record_section  # noqa: E402
from models.train import evaluate_spatialnet, load_spatialnet  # noqa: E402

# column -> (gt_heatmaps, gt_embeddings)
ORACLES: dict[str, tuple[bool, bool]] = {
    "network": (False, False),
    "GT heatmaps": (True, False),
    "GT embeddings": (False, True),
    "both": (True, True),
}


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
    for weights in args.weights:
        net = load_spatialnet(weights).eval()
        d = net.config.decode
        scores = {
            name: evaluate_spatialnet(net, seeds, args.frames, size, torch.device("cpu"), gt_heatmaps=h, gt_embeddings=e)
            for name, (h, e) in ORACLES.items()
        }
        name = weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights
        rows.append(
            f"| `{name}` | scales {list(d.scales)}, flip {d.flip_test}, PGG {net.config.use_pgg} | "
            + " | ".join(f"{scores[c]['AP']:.3f}" for c in ORACLES)
            + f" | {scores['network']['AR']:.3f} |"
        )
        print(rows[-1], flush=True)
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
            "and localisation's share); `both`: the decoder's round trip.",
            "",
            *rows,
        ])  # fmt: skip
        record_section("spatialnet_errors", block, args.results)


if __name__ == "__main__":
    main()
