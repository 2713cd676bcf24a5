"""SpatialNet learning curves (issue 18): AP on held-out synthetic clips and on the real dev set against CPU hours.

Every checkpoint given is scored with **one fixed decoding** (the stored decoding of
``weights/spatialnet_movenet_stage4.pt``, the default file until issue 18 replaced it, with a
single pass: no flip, scale 1.0, no body-shape prior), so points of different recipes compare on their networks alone:

- held-out synthetic AP: ``evaluate_spatialnet`` (the code behind ``posestream train spatial
  --eval-seeds`` / ``posestream eval``) on the first ``--frames`` frames of seeds 9000.. (never
  trained on or chosen on), whole frames fitted into 512x384;
- real dev AP: ``benchmarks/real_dev.py``'s ``evaluate`` on the eval split of
  ``configs/real_dev_split.json`` (its train images' pixels may be pseudo-labelled; its eval
  images never are), with the downscaled copies, through ``SpatialNetEstimator`` at long side 512.

Checkpoints are ``LABEL=PATH@CPU_HOURS`` (the CPU hours of training behind it, from its card or
the run's log). Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spatialnet_transfer_curve.py \\
        --checkpoint "old stage 4=weights/spatialnet_movenet_stage4.pt@3.86" --json out/curve.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import real_dev as R  # noqa: E402
from benchmarks.results import cpu_name, record_section  # noqa: E402
from posestream.models.checkpoints import load_spatialnet  # noqa: E402
from posestream.models.data.splits import HELD_OUT, real_dev_split  # noqa: E402
from posestream.models.decode import DecodeConfig  # noqa: E402
from posestream.models.train import evaluate_spatialnet  # noqa: E402
from posestream.tracker.metrics import evaluate  # noqa: E402

SHIPPED = ROOT / "weights" / "spatialnet_movenet_stage4.pt"  # the reference decoding of every curve so far


def curve_decode(reference: Path = SHIPPED) -> DecodeConfig:
    """The reference weights' stored decoding, single pass and without the body-shape prior."""
    from pydantic import TypeAdapter

    stored = torch.load(reference, map_location="cpu", weights_only=True)["config"]["decode"]
    d = TypeAdapter(DecodeConfig).validate_python(stored)
    return dataclasses.replace(d, scales=(1.0,), flip_test=False, prior_threshold=0.0)


def score(path: Path, decode: DecodeConfig, seeds: list[int], frames: int, data_dir: Path,
          factors: list[float]) -> dict:  # fmt: skip
    """Held-out synthetic and real dev (eval split) figures of one checkpoint under ``decode``."""
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

    net = load_spatialnet(path)
    net.config = dataclasses.replace(net.config, decode=decode)
    net.pose_prior = None
    t0 = time.perf_counter()
    syn = evaluate_spatialnet(net, seeds, frames, (512, 384), torch.device("cpu"), evaluate=evaluate)
    est = SpatialNetEstimator(
        path, SpatialEstimatorConfig(device="cpu", min_person_score=0.0, input_size=512)
    )
    est.net.config, est.net.pose_prior = net.config, None

    def predict(rgb: np.ndarray) -> list[R.Prediction]:
        fp = est([rgb]).poses[0]
        return [(fp.keypoints[i], float(fp.scores[i])) for i in range(len(fp.scores))]

    real = R.evaluate(predict, data_dir, factors, image_ids=real_dev_split().eval)
    return {"synthetic": syn, "real": real["total"], "real_originals": real.get("originals", {}),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "## SpatialNet learning curves: head transfer + pseudo-labelled real frames vs the synthetic-only recipe "
        "(`benchmarks/spatialnet_transfer_curve.py`)",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {cpu_name()}; 1 torch thread; shared CPUs",
        f"- held-out synthetic: seeds {args.seeds}, first {args.frames} frames each, 512x384; real dev: the eval "
        f"split of configs/real_dev_split.json, factors {args.factors} (the originals and downscaled copies), "
        "long side 512; every point decoded the same way: spatialnet_movenet_stage4.pt's stored decoding, "
        "single pass, no body-shape prior (so each file's own card figures, with its test-time passes "
        "and prior, are higher)",
        "- CPU hours: given per checkpoint (`--checkpoint LABEL=PATH@HOURS`): for issue 18's run the training "
        "process's own CPU time (its one data worker spent about 15 % more), for the old stages the training time "
        "their card records (one torch thread)",
        "",
        "| checkpoint | CPU hours | synthetic AP | AP50 | real dev AP | AP50 | originals AP |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s, q, o = r["result"]["synthetic"], r["result"]["real"], r["result"]["real_originals"]
        lines.append(
            f"| {r['label']} | {r['hours']:.2f} | {s['AP']:.3f} | {s['AP50']:.3f} | {q['AP']:.3f} | "
            f"{q['AP50']:.3f} | {o.get('AP', float('nan')):.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--checkpoint", action="append", default=[],
        help="LABEL=PATH@CPU_HOURS (repeat); none: only render (and record) the rows of --json",
    )  # fmt: skip
    p.add_argument("--seeds", default=",".join(map(str, HELD_OUT.seeds(8))), help="held-out synthetic seeds")
    p.add_argument("--frames", type=int, default=10, help="frames per held-out clip")
    p.add_argument("--data", type=Path, default=R.DATA_DIR, help="the real dev set's folder")
    p.add_argument("--factors", type=float, nargs="+", default=list(R.FACTORS))
    p.add_argument("--json", type=Path, help="append rows to this JSON file (rows already there are kept)")
    p.add_argument("--results", type=Path, help="record all rows of --json in this RESULTS.md")
    p.add_argument("--section", default="spatialnet_transfer_curve")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = json.loads(args.json.read_text()) if args.json is not None and args.json.is_file() else []
    decode = curve_decode()
    for spec in args.checkpoint:
        label, rest = spec.split("=", 1)
        path, hours = rest.rsplit("@", 1)
        res = score(Path(path), decode, seeds, args.frames, args.data, args.factors)
        rows = [r for r in rows if r["label"] != label] + [
            {"label": label, "path": path, "hours": float(hours), "result": res}
        ]
        print(f"{label:40s} {float(hours):5.2f} h  synthetic AP {res['synthetic']['AP']:.3f}  "
              f"real dev AP {res['real']['AP']:.3f}  ({res['seconds']:.0f} s)", flush=True)  # fmt: skip
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=1))
    section = markdown(sorted(rows, key=lambda r: (r["label"].split()[0], r["hours"])), args)
    print(section)
    if args.results is not None:
        record_section(args.section, section, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
