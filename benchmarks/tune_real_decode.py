"""Choose SpatialNet's decoding on real people: coordinate ascent over ``DECODE_GRID`` on the
real dev set's **train** split (``configs/real_dev_split.json``), scored as ``real_dev.py`` scores.

``posestream train decode`` chooses on synthetic validation seeds; this chooses on real images
(the originals and their downscaled copies, ``real_dev.FACTORS``), with the same estimator the
service runs (``SpatialNetEstimator``, every decoded person kept, optionally with Thunder
refinement). The eval split is never read here: report the choice with ``real_dev.py --split
eval`` beside the MoveNet rows. The network runs once per image and set of test-time passes;
each candidate only re-decodes (and re-refines).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/tune_real_decode.py --weights weights/x.pt \\
        --refine --export out/x_realdecode.pt --trail out/x_realdecode.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.real_dev import DATA_DIR, DataMissing, evaluate  # noqa: E402

log = logging.getLogger(__name__)


def _memo_estimator(weights: Path, size: int, refine: bool) -> Any:
    """A ``SpatialNetEstimator`` whose network outputs are memoised per frame and test-time passes."""
    from posestream.models.refine import RefineConfig
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialMaps, SpatialNetEstimator

    class MemoEstimator(SpatialNetEstimator):
        memo: dict[tuple, SpatialMaps]

        def maps(self, frames: list[np.ndarray]) -> SpatialMaps:
            d = self.net.config.decode
            key = (tuple(hashlib.sha1(f.tobytes()).hexdigest() for f in frames), d.scales, d.flip_test)
            if key not in self.memo:
                self.memo[key] = super().maps(frames)
            return self.memo[key]

    cfg = SpatialEstimatorConfig(
        device="cpu", min_person_score=0.0, input_size=size, refine=RefineConfig(enabled=refine)
    )
    est = MemoEstimator(weights, cfg)
    est.memo = {}
    return est


def tune(
    weights: Path, image_ids: list[int], size: int = 512, refine: bool = False, rounds: int = 2,
    fields: list[str] | None = None, data_dir: Path = DATA_DIR,
) -> tuple[Any, list[dict[str, Any]]]:  # fmt: skip
    """Coordinate ascent (``posestream.models.train.coordinate_ascent``) of real dev AP on ``image_ids``.

    Returns:
        the best ``DecodeConfig`` and the trail of ``{"field", "value", "AP"}``.
    """
    from posestream.models.train import DECODE_GRID, coordinate_ascent

    unknown = set(fields or ()) - set(DECODE_GRID)
    if unknown:
        raise ValueError(f"unknown decode fields {sorted(unknown)}; choose from {', '.join(DECODE_GRID)}")
    grid = {k: v for k, v in DECODE_GRID.items() if not fields or k in fields}
    est = _memo_estimator(weights, size, refine)
    original = est.net.config

    def predict(rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        fp = est([rgb]).poses[0]
        return [(fp.keypoints[i], float(fp.scores[i])) for i in range(len(fp.scores))]

    def ap(decode: Any) -> float:
        est.net.config = dataclasses.replace(original, decode=decode)
        value = float(evaluate(predict, data_dir, image_ids=image_ids)["total"]["AP"])
        diff = {f.name: getattr(decode, f.name) for f in dataclasses.fields(decode)
                if getattr(decode, f.name) != getattr(original.decode, f.name)}  # fmt: skip
        log.info("AP %.4f  %s", value, diff or "stored decoding")
        return value

    try:
        return coordinate_ascent(original.decode, ap, grid, rounds, has_prior=est.net.pose_prior is not None)
    finally:
        est.net.config = original


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, required=True, help="SpatialNet weights file (weights/*.pt)")
    p.add_argument("--size", type=int, default=512, help="input long side (the service's default 512)")
    p.add_argument("--refine", action="store_true", help="score with the gated Thunder refinement on")
    p.add_argument("--rounds", type=int, default=2, help="passes over the fields")
    p.add_argument("--fields", nargs="+", default=None, help="only these DECODE_GRID fields (default all)")
    p.add_argument("--data", type=Path, default=DATA_DIR, help="the real dev set's folder")
    p.add_argument(
        "--export", type=Path, default=None, help="write the weights with the chosen decoding here"
    )
    p.add_argument("--trail", type=Path, default=None, help="write every candidate's AP here (JSON)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.weights.is_file():
        print(f"error: no such weights file: {args.weights}", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print("error: --rounds must be >= 1", file=sys.stderr)
        return 2
    from posestream.models.data.splits import real_dev_split

    try:
        best, trail = tune(args.weights, list(real_dev_split().train), args.size, args.refine, args.rounds,
                           args.fields, args.data)  # fmt: skip
    except (DataMissing, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start, top = trail[0]["AP"], max(t["AP"] for t in trail)
    print(
        f"real dev train split AP: stored decoding {start:.4f} -> chosen {top:.4f} ({len(trail)} candidates)"
    )
    changed = {
        f.name: getattr(best, f.name)
        for f in dataclasses.fields(best)
        if any(t["field"] == f.name for t in trail)
    }
    print("chosen:", json.dumps(changed, default=list))
    if args.trail:
        args.trail.parent.mkdir(parents=True, exist_ok=True)
        args.trail.write_text(json.dumps({"weights": str(args.weights), "refine": args.refine, "size": args.size,
                                          "chosen": dataclasses.asdict(best), "trail": trail}, indent=1, default=list))  # fmt: skip
    if args.export:
        from posestream.models.train import export_weights

        export_weights(args.weights, args.export, decode=best)
        print(f"wrote {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
