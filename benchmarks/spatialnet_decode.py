"""SpatialNet on CPU: network time against decoding time per 640x480 frame.

For held-out synthetic 640x480 frames (seeds never used in training) it times, with one
torch thread, batch 1:

- ``network``: each shipped SpatialNet's inference (``weights/spatialnet_movenet.pt``,
  frozen MoveNet + 1-stack hourglass, and ``weights/spatialnet_synthetic.pt``, 2-stack
  hourglass on its own stem) with the test-time passes its decode settings ask for
  (``SpatialNet.infer``: scales and flip), and, apart, one plain forward pass;
- ``decode``: ``SpatialNet.decode_batch`` on the merged maps (peaks -> embeddings ->
  grouping -> missing joints -> mirror separation -> refinement -> body-shape prior), with the
  weights' own decode settings (PGG refinement included when the weights were fine-tuned with
  PGG) and, for comparison, without PGG.

The whole frame is fitted into the network input: 512x384 (the shipped inference size)
and 640x480 (native, 160x120 maps). Times are medians over frames after warm-up; the
machine is shared, so the load average is recorded too.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spatialnet_decode.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import record_section  # noqa: E402
from posestream.models.checkpoints import load_spatialnet  # noqa: E402
from posestream.models.data.augment import fit_affine, warp_image  # noqa: E402
from posestream.models.data.splits import HELD_OUT  # noqa: E402


@torch.inference_mode()
def time_size(net, frames, size: tuple[int, int], warmup: int) -> dict[str, list[float]]:  # noqa: ANN001
    w, h = size
    no_pgg = dataclasses.replace(net.config, use_pgg=False)
    with_pgg = dataclasses.replace(net.config, use_pgg=True)
    out: dict[str, list[float]] = {
        "network": [],
        "one pass": [],
        "decode": [],
        "decode, no PGG": [],
        "decode, PGG": [],
        "people": [],
    }
    for i, rgb in enumerate(frames):
        x = torch.from_numpy(warp_image(rgb, fit_affine(rgb.shape[1], rgb.shape[0], w, h), w, h))
        x = x.permute(2, 0, 1)[None].contiguous()
        t0 = time.perf_counter()
        maps, _ = net.infer(net.normalise(x))
        t1 = time.perf_counter()
        ((kp, _),) = net.decode_batch(maps)
        t2 = time.perf_counter()
        net(net.normalise(x))
        timings = {"network": t1 - t0, "decode": t2 - t1, "one pass": time.perf_counter() - t2}
        original = net.config
        for name, cfg in (("decode, no PGG", no_pgg), ("decode, PGG", with_pgg)):
            net.config = cfg
            t3 = time.perf_counter()
            net.decode_batch(maps)
            timings[name] = time.perf_counter() - t3
        net.config = original
        if i >= warmup:
            for k, v in timings.items():
                out[k].append(1000 * v)
            out["people"].append(len(kp))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--weights",
        type=Path,
        nargs="+",
        default=[ROOT / "weights" / "spatialnet_movenet.pt", ROOT / "weights" / "spatialnet_synthetic.pt"],
    )
    p.add_argument(
        "--seeds", default=",".join(map(str, HELD_OUT.seeds(2))), help="held-out synthetic clip seeds"
    )
    p.add_argument("--frames", type=int, default=12, help="frames per clip")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, help="rewrite this benchmark's block of this RESULTS.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig

    frames = []
    for seed in (int(s) for s in args.seeds.split(",")):
        clip = SyntheticClip.from_config(SyntheticConfig(seed=seed, frames=args.frames, people=5))
        frames += [clip.render(t)[0] for t in range(args.frames)]
    rows = [
        "| model | input (maps) | frames | people decoded (median) | network ms (shipped passes) | one pass ms "
        "| decode ms (shipped settings) | decode / network | decode ms, no PGG | decode ms, PGG |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    models = []
    for weights in args.weights:
        net = load_spatialnet(weights)
        bb = net.config.backbone
        stem = "frozen MoveNet + " if net.config.features == "movenet" else ""
        models.append(
            f"`{weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights}` ({stem}{bb.stacks}-stack "
            f"width-{bb.width} hourglass, shipped decode use_pgg={net.config.use_pgg}, "
            f"scales {list(net.config.decode.scales)}, flip {net.config.decode.flip_test})"
        )
        for size in ((512, 384), (640, 480)):
            t = time_size(net, frames, size, args.warmup)
            med = {k: statistics.median(v) for k, v in t.items()}
            rows.append(
                f"| `{weights.name}` | {size[0]}x{size[1]} ({size[0] // 4}x{size[1] // 4}) | {len(t['network'])} "
                f"| {med['people']:.0f} | {med['network']:.1f} | {med['one pass']:.1f} | {med['decode']:.1f} "
                f"| {med['decode'] / med['network']:.2f} | {med['decode, no PGG']:.1f} | {med['decode, PGG']:.1f} |"
            )
            print(rows[-1], flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.results:
        command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spatialnet_decode.py " + " ".join(
            sys.argv[1:]
        )
        block = "\n".join([
            "## SpatialNet network vs decode time per 640x480 frame, CPU (`benchmarks/spatialnet_decode.py`)",
            "",
            f"- date: {dt.date.today().isoformat()}; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} logical CPUs (shared with other jobs), {args.threads} torch thread; "
            f"Python {platform.python_version()}, torch {torch.__version__}; load average at the end: {load}",
            f"- command: `{command}`",
            f"- models: {'; '.join(models)}",
            f"- held-out synthetic clips {args.seeds}, {args.frames} frames each ({args.warmup} warm-up frames "
            f"per size untimed); batch 1; medians; `fill_missing` searches each person's window "
            f"(`DecodeConfig.fill_window`).",
            "",
            *rows,
        ])  # fmt: skip
        record_section("spatialnet_decode", block, args.results)


if __name__ == "__main__":
    main()
