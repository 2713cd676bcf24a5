"""Speed of MoveNet MultiPose in PyTorch versus the TFLite interpreter, side by side in one run.

For each input size (square, the reference's letterbox) it times, taking turns in short
blocks so that load from other processes hits every contender alike:

- ``tflite``: the LiteRT interpreter (XNNPACK, ``--threads`` threads), ``invoke()`` plus
  reading its output -- it includes the file's built-in post-processing (max 6 people);
  the model has a fixed batch of 1, so a batch of B frames is B invokes.
- ``torch net``: ``MoveNetMultiPose`` forward, fp32 channels-last on CPU (fp16 on CUDA).
- ``torch net+decode``: uint8 canvas -> network -> activations -> our decoder (K=20).
- with ``--compile`` also ``torch.compile`` (inductor, freezing) of the network.

Run from the repository root (the weights must be fetched: ``posestream weights fetch``)::

    .venv/bin/python benchmarks/pose_estimator.py                       # CPU, 256..640, batch 1
    .venv/bin/python benchmarks/pose_estimator.py --device cuda         # + batches 1, 8, 32
    .venv/bin/python benchmarks/pose_estimator.py --results benchmarks/RESULTS.md

``--results`` rewrites this benchmark's generated block of RESULTS.md (between its markers)
with the date, the machine, the command and the tables; the analysis below it is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import cpu_name, record_section  # noqa: E402
from posestream.models.backbones.movenet import MoveNetMultiPose  # noqa: E402
from posestream.models.estimator import letterbox  # noqa: E402
from posestream.models.heads import MOVENET_HEADS, activate_all  # noqa: E402
from posestream.models.movenet_decode import DecoderConfig, decode  # noqa: E402
from posestream.models.weights import MOVENET_MULTIPOSE, WeightsError, verify  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def _frame() -> np.ndarray:
    """vtest.avi frame 200 when installed (real content drives the decoder), else noise."""
    if VTEST.is_file():
        from posestream.models.data.video import iter_video_frames

        for index, _, rgb in iter_video_frames(VTEST):
            if index == 200:
                return rgb
    return np.random.default_rng(0).integers(0, 255, (576, 768, 3), dtype=np.uint8)


def _time_interleaved(
    fns: dict[str, Callable[[], None]], repeats: int, warmup: int, sync: Callable[[], None], block: int = 5
) -> dict[str, float]:
    """Median seconds per call of each function.

    Contenders take turns in blocks of ``block`` consecutive calls (the first call of each
    block untimed), so that drifting load from other processes hits all of them alike
    while each still runs with warm caches and thread pools -- strict call-by-call
    alternation was measured to slow the TFLite interpreter by ~30% here.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    rounds = max(1, -(-repeats // block))
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            sync()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def run(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    try:
        weights = verify(MOVENET_MULTIPOSE)
    except WeightsError as exc:
        raise SystemExit(f"error: {exc}") from None
    torch.set_num_threads(args.threads)
    frame = _frame()
    rows: list[dict] = []
    notes: list[str] = []
    from ai_edge_litert.interpreter import Interpreter

    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else ["cpu", "cuda"]
    if "cuda" in devices and not torch.cuda.is_available():
        notes.append("CUDA: no GPU was available in this run; no GPU figures.")
        devices = [d for d in devices if d != "cuda"]
    base = MoveNetMultiPose.from_tflite(weights)
    dcfg = DecoderConfig()
    for device in devices:
        dtype = torch.float16 if device == "cuda" else torch.float32
        model = (
            MoveNetMultiPose.from_tflite(weights)
            .to(device, dtype)
            .to(memory_format=torch.channels_last)
            .eval()
        )
        compiled = torch.compile(model, options={"freezing": True}) if args.compile else None
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        batches = args.cuda_batches if device == "cuda" else args.cpu_batches
        for size in args.sizes:
            canvas1, _ = letterbox([frame], size, square=True)
            it = Interpreter(model_path=str(weights), num_threads=args.threads)
            inp = it.get_input_details()[0]["index"]
            it.resize_tensor_input(inp, [1, size, size, 3])
            it.allocate_tensors()
            out_idx = it.get_output_details()[0]["index"]
            for batch in batches:
                canvas = np.repeat(canvas1, batch, axis=0)
                x_u8 = torch.from_numpy(canvas).to(device)

                def tflite(
                    canvas: np.ndarray = canvas, it=it, inp: int = inp, out_idx: int = out_idx
                ) -> None:
                    for i in range(canvas.shape[0]):
                        it.set_tensor(inp, canvas[i : i + 1])
                        it.invoke()
                        it.get_tensor(out_idx)

                def net(
                    x_u8: torch.Tensor = x_u8, m: torch.nn.Module = model, dtype: torch.dtype = dtype
                ) -> None:
                    with torch.inference_mode():
                        m(x_u8.permute(0, 3, 1, 2).to(dtype))

                def net_decode(
                    x_u8: torch.Tensor = x_u8, m: torch.nn.Module = model, dtype: torch.dtype = dtype
                ) -> None:
                    with torch.inference_mode():
                        decode(activate_all(MOVENET_HEADS, m(x_u8.permute(0, 3, 1, 2).to(dtype))), dcfg)

                fns: dict[str, Callable[[], None]] = {"torch net": net, "torch net+decode": net_decode}
                if compiled is not None:
                    fns["torch compiled net"] = lambda x_u8=x_u8, c=compiled: net(x_u8, c)
                if device == "cpu" or args.tflite_with_cuda:
                    fns = {"tflite": tflite, **fns}
                med = _time_interleaved(fns, args.repeats, args.warmup, sync)
                row = {
                    "device": device,
                    "dtype": str(dtype).replace("torch.", ""),
                    "size": size,
                    "batch": batch,
                }
                for name, sec in med.items():
                    row[name] = sec / batch * 1000.0
                rows.append(row)
                print(_format_row(row, list(fns)), flush=True)
    del base
    return rows, notes


def run_policies(args: argparse.Namespace) -> list[dict]:
    """End-to-end ``PoseEstimator`` on one vtest.avi frame (768x576) per input-size policy, CPU."""
    from posestream.models.estimator import EstimatorConfig, PoseEstimator

    frame = _frame()
    out = []
    for policy in args.policies:
        sizes = tuple(int(v) for v in policy.split("+"))
        est = PoseEstimator(EstimatorConfig(input_sizes=sizes, device="cpu"))
        canvases = [letterbox([frame], size)[0].shape[1:3] for size in sizes]
        found = len(est([frame]).poses[0])
        med = _time_interleaved(
            {"e2e": lambda est=est: est([frame])}, args.repeats, args.warmup, lambda: None
        )
        ms = med["e2e"] * 1000.0
        row = {
            "policy": policy,
            "canvas": " + ".join(f"{w}x{h}" for h, w in canvases),
            "pixels": sum(h * w for h, w in canvases) / (256 * 256),
            "ms": ms,
            "people": found,
        }
        out.append(row)
        print(row, flush=True)
    return out


def _format_row(row: dict, names: list[str]) -> str:
    cells = [f"{row['device']} {row['dtype']}", f"{row['size']}x{row['size']}", str(row["batch"])]
    for name in names:
        ms = row[name]
        cells.append(f"{ms:.1f} ms / {1000.0 / ms:.0f} fps")
    if "tflite" in row:
        cells.append(f"{row['torch net'] / row['tflite']:.2f}x")
    return "| " + " | ".join(cells) + " |"


def markdown(
    rows: list[dict],
    notes: list[str],
    args: argparse.Namespace,
    command: str,
    policies: list[dict] | None = None,
) -> str:
    names = [
        k
        for k in ("tflite", "torch net", "torch net+decode", "torch compiled net")
        if any(k in r for r in rows)
    ]
    header = ["device", "input", "batch"] + [f"{n} (ms/frame, fps)" for n in names] + ["torch net / tflite"]
    lines = [
        "## MoveNet MultiPose: PyTorch vs TFLite interpreter (`benchmarks/pose_estimator.py`)",
        "",
        f"- date: {dt.date.today().isoformat()}",
        f"- machine: {cpu_name()}, {torch.get_num_threads()} torch threads / {args.threads} TFLite threads "
        f"(of {os.cpu_count()} logical CPUs), {platform.system()} {platform.machine()}"
        + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"),
        f"- software: Python {platform.python_version()}, torch {torch.__version__}, "
        f"ai-edge-litert {_version('ai-edge-litert')}, numpy {np.__version__}",
        f"- command: `{command}`",
        f"- load average (1, 5, 15 min) when the run ended: {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
        "(the machine is shared; other processes' load inflates both contenders)",
        f"- method: median of {args.repeats} timed runs per contender after {args.warmup} warm-up runs, "
        "contenders taking turns in blocks of 5 (first call of each block untimed); "
        "square letterboxed vtest.avi frame 200; per-frame time = batch time / batch.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in rows:
        cells = [f"{r['device']} {r['dtype']}", f"{r['size']}x{r['size']}", str(r["batch"])]
        for n in names:
            cells.append(f"{r[n]:.1f} / {1000.0 / r[n]:.1f}" if n in r else "-")
        cells.append(f"{r['torch net'] / r['tflite']:.2f}x" if "tflite" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    if policies:
        lines += [
            "",
            f"`PoseEstimator` end to end on CPU (letterbox + network + decoder + scale merge), vtest.avi frame 200 "
            f"(768x576, 7 people), aspect-preserving canvas, {args.threads} threads:",
            "",
            "| input sizes | canvases | pixels vs one 256x256 | ms/frame | fps | people found |",
            "|---|---|---|---|---|---|",
        ]
        for r in policies:
            lines.append(
                f"| {r['policy']} | {r['canvas']} | {r['pixels']:.2f}x | {r['ms']:.1f} | {1000.0 / r['ms']:.1f} | {r['people']} |"
            )
    return "\n".join(lines)


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - informational only
        return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512, 640], help="square input sizes")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda", "all"),
        default="all",
        help="where PyTorch runs (default: CPU and, if present, CUDA)",
    )
    p.add_argument("--cpu-batches", type=int, nargs="+", default=[1], help="batch sizes on CPU")
    p.add_argument("--cuda-batches", type=int, nargs="+", default=[1, 8, 32], help="batch sizes on CUDA")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both torch and TFLite")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per contender")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per contender first")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (inductor, freezing)")
    p.add_argument(
        "--policies",
        nargs="*",
        default=["256", "512", "256+512", "640"],
        help="PoseEstimator input-size policies timed end to end on CPU (sizes joined by '+'); none to skip",
    )
    p.add_argument("--tflite-with-cuda", action="store_true", help="also time TFLite (CPU) in the CUDA rows")
    p.add_argument(
        "--results", type=Path, default=None, help="rewrite this benchmark's section of this Markdown file"
    )
    args = p.parse_args(argv)
    command = "python benchmarks/pose_estimator.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows, notes = run(args)
    policies = run_policies(args) if args.policies else []
    section = markdown(rows, notes, args, command.strip(), policies)
    print()
    print(section)
    if args.results is not None:
        record_section("pose_estimator", section, args.results)
        print(f"\nwrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
