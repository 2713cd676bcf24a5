"""Ablation of seed 004's pose scoring: COCO keypoint AP with the hand-made and the learned person score.

Both held-out sets, one run, the same estimator otherwise (the service's default
``EstimatorConfig``: 256 + 512, confidence merge, flip testing, Thunder refinement):

- the real dev set's **eval** split (``configs/real_dev_split.json``; the scorer trains on
  its train split only), scored by ``benchmarks/real_dev.py``'s ``evaluate`` (pycocotools,
  the set's areas, its downscaled copies 1, 1/2, 1/4, 1/8);
- held-out synthetic clips ``splits.HELD_OUT`` (the random scenes of
  ``benchmarks/tracking_ablation.py``, every ``--frame-step``-th frame), scored by
  ``posestream.tracker.metrics.evaluate`` (OKS scale = box area).

Rows: the hand-made score (centre heat x mean joint heat, ``DecoderConfig.min_pose_score``
0.15), and the predicted OKS (``weights/pose_scoring.pt``) at each ``--min-oks`` rejection
threshold. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pose_scoring.py --write
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.real_dev import DATA_DIR, DataMissing, evaluate, load_annotations  # noqa: E402
from benchmarks.results import cpu_name, record_section  # noqa: E402
from posestream.models.data.splits import HELD_OUT, real_dev_split  # noqa: E402


def make_estimator(config):  # noqa: ANN001, ANN201 - EstimatorConfig or SpatialEstimatorConfig -> estimator
    """``PoseEstimator`` for an ``EstimatorConfig``, ``SpatialNetEstimator`` (shipped weights) otherwise."""
    from posestream.models.estimator import EstimatorConfig, PoseEstimator
    from posestream.models.spatial_estimator import SpatialNetEstimator
    from posestream.models.weights import SPATIALNET_MOVENET, checkpoint_path

    if isinstance(config, EstimatorConfig):
        return PoseEstimator(config)
    return SpatialNetEstimator(checkpoint_path(SPATIALNET_MOVENET), config)


def synthetic_ap(est, clips: int, frame_step: int) -> dict:  # noqa: ANN001 - a pose estimator
    """AP / AP50 / AR of ``est`` on held-out synthetic clips ``HELD_OUT``."""
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig
    from posestream.tracker.metrics import evaluate as track_evaluate

    gts, preds = [], []
    for seed in HELD_OUT.seeds(clips):
        clip = SyntheticClip.from_config(SyntheticConfig(seed=seed, frames=100, people=5, occluders=2))
        for t in range(0, len(clip), frame_step):
            rgb, gt = clip.render(t)
            k = len(gts)
            gts.append(dataclasses.replace(gt, frame_index=k))
            preds.append(dataclasses.replace(est([rgb], [k]).poses[0], frame_index=k))
    m = track_evaluate(gts, preds)
    return {"AP": m["AP"], "AP50": m["AP50"], "AR": m["AR"], "frames": len(gts)}


def rows_to_run(min_oks: list[float], model: str) -> list[tuple[str, object]]:
    """(row name, estimator config): the hand-made score, then the predicted OKS at each threshold."""
    from posestream.models.estimator import EstimatorConfig
    from posestream.models.pose_scoring import PoseScoringConfig
    from posestream.models.spatial_estimator import SpatialEstimatorConfig

    make = SpatialEstimatorConfig if model == "spatialnet" else EstimatorConfig
    hand = "SpatialNet's person score" if model == "spatialnet" else "centre x mean joint heat"
    rows: list[tuple[str, object]] = [(f"hand-made score ({hand})", make(device="cpu"))]
    for t in min_oks:
        cfg = make(device="cpu", scoring=PoseScoringConfig(enabled=True, min_oks=t))
        rows.append((f"predicted OKS, min_oks {t:g}", cfg))
    return rows


def _predictor(est):  # noqa: ANN001, ANN202 - estimator -> real_dev Predictor
    def predict(rgb):  # noqa: ANN001, ANN202
        fp = est([rgb]).poses[0]
        return [(fp.keypoints[i], float(fp.scores[i])) for i in range(len(fp.scores))]

    return predict


def _f(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _card() -> dict:
    """The shipped scorer's card (empty when the file is missing)."""
    from posestream.models.pose_scoring import POSE_SCORING, PoseScorer
    from posestream.models.weights import checkpoint_path

    path = checkpoint_path(POSE_SCORING)
    return PoseScorer.from_file(path).card if path.is_file() else {}


def markdown(results: list[dict], args: argparse.Namespace, eval_images: int) -> str:
    """The RESULTS.md section: the table and which rows raise AP on both held-out sets."""
    from benchmarks.real_dev import FACTORS

    split = real_dev_split()
    base = results[0]
    command = "python benchmarks/pose_scoring.py " + " ".join(args.argv)
    lines = [
        "## Pose scoring ablation: hand-made vs learned person score (`benchmarks/pose_scoring.py"
        + (" --model spatialnet" if args.model == "spatialnet" else "")
        + "`)",
        "",
        (
            "MoveNet (default `EstimatorConfig`: 256 + 512, confidence merge, flip, Thunder refinement), "
            if args.model == "movenet"
            else "SpatialNet (`weights/spatialnet_movenet.pt`, default `SpatialEstimatorConfig`: 512, its file's "
            "flip + four-scale passes; the scorer re-ranks and filters its decoded people), "
        )
        + f"{dt.date.today()}, {cpu_name()}, {args.threads} torch thread(s). "
        f"Real dev **eval** split: images {list(split.eval)} ({eval_images * len(FACTORS)} scored images with the "
        f"downscaled copies, {base['real']['people']} people); held-out synthetic: seeds "
        f"{HELD_OUT.first}..{HELD_OUT.first + args.clips - 1}, every {args.frame_step}th frame "
        f"({base['synthetic']['frames']} frames). Command: `{command.strip()}`.",
        "",
        "| person score | real-dev eval AP | AP50 | AR | originals AP | held-out synthetic AP | AP50 | AR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        o = r["real_originals"] or {}
        lines.append(
            f"| {r['name']} | {_f(r['real']['AP'])} | {_f(r['real']['AP50'])} | {_f(r['real']['AR'])} | "
            f"{_f(o.get('AP'))} | {_f(r['synthetic']['AP'])} | {_f(r['synthetic']['AP50'])} | "
            f"{_f(r['synthetic']['AR'])} |"
        )
    both = [
        r["name"]
        for r in results[1:]
        if r["real"]["AP"] > base["real"]["AP"] and r["synthetic"]["AP"] > base["synthetic"]["AP"]
    ]
    card = _card()
    if card:
        syn, real = card["held_out_synthetic"], card.get("held_out_real_dev_eval") or {}
        lines += [
            "",
            f"`weights/pose_scoring.pt`'s card: Spearman rank correlation of predicted with real OKS of MoveNet's "
            f"candidates {syn['spearman']:.3f} on held-out synthetic (mean joint heat: {syn['spearman_mean_heat']:.3f}), "
            f"{real.get('spearman', float('nan')):.3f} on the real dev eval split (mean joint heat: "
            f"{real.get('spearman_mean_heat', float('nan')):.3f}): the net learned the synthetic people's look "
            f"({card['train_pairs']['synthetic']} synthetic against {card['train_pairs']['real']} real training pairs).",
        ]
    lines += [
        "",
        (
            f"Raises AP on both held-out sets: {', '.join(both)}."
            if both
            else "No predicted-OKS row raises AP on both held-out sets, so the hand-made score stays the default "
            "(`PoseScoringConfig.enabled = False`)."
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--min-oks", type=float, nargs="+", default=[0.05, 0.2], help="rejection thresholds")
    p.add_argument("--clips", type=int, default=6, help=f"held-out synthetic clips ({HELD_OUT})")
    p.add_argument("--frame-step", type=int, default=5, help="every Nth frame of a held-out clip")
    p.add_argument(
        "--model", choices=("movenet", "spatialnet"), default="movenet",
        help="movenet: the default PoseEstimator; spatialnet: weights/spatialnet_movenet.pt",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--write", action="store_true", help="record the table in benchmarks/RESULTS.md")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--from-json", type=Path, help="no run: re-render the section from a --json file of an earlier run"
    )
    args = p.parse_args(argv)
    given = list(argv if argv is not None else sys.argv[1:])
    if args.from_json:  # the section names the run that measured the figures
        i = given.index("--from-json")
        given = given[:i] + given[i + 2 :]
    args.argv = [a for a in given if a != "--write"]
    try:
        load_annotations(DATA_DIR)
    except DataMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    split = real_dev_split()
    results = json.loads(args.from_json.read_text()) if args.from_json else []
    for name, cfg in [] if args.from_json else rows_to_run(args.min_oks, args.model):
        est = make_estimator(cfg)
        real = evaluate(_predictor(est), image_ids=split.eval)
        syn = synthetic_ap(est, args.clips, args.frame_step)
        row = {"name": name, "real": real["total"], "real_originals": real.get("originals"), "synthetic": syn}
        results.append(row)
        print(
            f"{name:44s} real-dev eval AP {_f(real['total']['AP'])} AP50 {_f(real['total']['AP50'])} "
            f"AR {_f(real['total']['AR'])} | held-out synthetic AP {_f(syn['AP'])} AP50 {_f(syn['AP50'])} "
            f"AR {_f(syn['AR'])}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    section = markdown(results, args, len(split.eval))
    print()
    print(section)
    if args.write:
        record_section("pose_scoring" if args.model == "movenet" else f"pose_scoring_{args.model}", section)
        print("\nwrote benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
