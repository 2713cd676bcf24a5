"""Seed 001's recurrent decoder against the embedding decoders, on the same SpatialNet maps.

One SpatialNet pass per frame (``weights/spatialnet_movenet_stage4.pt``, the network the decoder
was trained on, its plain pass at long side 512: one scale, no flip, what the recurrent decoder
was trained on) feeds every row:

- ``recurrent``: ``weights/recurrent_spatialnet.pt`` (seed 001, learned stop, no grouping);
- ``KE`` (seed 002's associative embedding alone), ``SIE`` alone, ``KE + SIE`` (the shipped
  decoding), ``KE + SIE + PGG`` (seed 000's mean-shift refinement of the embeddings), each
  with the file's other decoding choices (filling, body-shape prior, refinement).

Scored on held-out synthetic clips (``HELD_OUT``, 5 people, ``posestream.tracker.metrics.evaluate``),
on the real dev set's eval split (``benchmarks/real_dev.py``'s ``evaluate``, with its downscaled
copies), and on crowded held-out frames (``--crowd-people`` people a clip): the people-count
accuracy against the people with >= 3 visible joints (the recurrent decoder's count is its stop;
the embedding decoders' is the people the service keeps, score >= ``min_person_score``) and
the decoding time per frame against the number of people. Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/recurrent_decoder.py --write
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

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.real_dev import DATA_DIR, FACTORS, DataMissing, evaluate, load_annotations  # noqa: E402
from benchmarks.results import cpu_name, record_section  # noqa: E402
from posestream.models.data.splits import HELD_OUT, real_dev_split  # noqa: E402

# Embedding rows: name -> SpatialNetConfig switches over the shipped file's.
EMBEDDING_ROWS: dict[str, dict[str, bool]] = {
    "KE (seed 002)": {"use_ke": True, "use_sie": False, "use_pgg": False},
    "SIE": {"use_ke": False, "use_sie": True, "use_pgg": False},
    "KE + SIE (shipped)": {"use_ke": True, "use_sie": True, "use_pgg": False},
    "KE + SIE + PGG (seed 000)": {"use_ke": True, "use_sie": True, "use_pgg": True},
}
RECURRENT = "recurrent (seed 001)"
# People-count bins of the timing table (inclusive).
TIME_BINS: tuple[tuple[int, int], ...] = ((0, 3), (4, 6), (7, 9), (10, 99))


class Decoders:
    """The shared SpatialNet pass and every row's decoding of it (frame pixels out)."""

    def __init__(self, extra: dict[str, str] | None = None) -> None:
        from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator
        from posestream.models.weights import SPATIALNET_FOR_DECODER, checkpoint_path

        spatialnet = checkpoint_path(SPATIALNET_FOR_DECODER["recurrent"])  # what the decoder was trained on

        self.est = SpatialNetEstimator(spatialnet, SpatialEstimatorConfig(device="cpu", decoder="recurrent"))
        self.base = self.est.net.config
        self.min_score = self.est.config.min_person_score
        from posestream.models.recurrent_decoder import load_recurrent_decoder

        # Other recurrent decoders on the same pass (ablations): row name -> loaded decoder.
        from posestream.models.weights import sha256_file

        self.extra = {}
        for name, path in (extra or {}).items():
            decoder, card = load_recurrent_decoder(path)
            if card.get("spatialnet_sha256") not in (None, sha256_file(spatialnet)):
                raise ValueError(f"{path} was trained on another SpatialNet than {spatialnet.name}")
            self.extra[name] = decoder

    def rows(self) -> list[str]:
        return [RECURRENT, *self.extra, *EMBEDDING_ROWS]

    def recurrent(self, row: str) -> bool:
        return row == RECURRENT or row in self.extra

    def maps(self, rgb: np.ndarray):  # noqa: ANN201 - SpatialMaps
        return self.est.maps([rgb])

    def decode(self, row: str, out, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:  # noqa: ANN001
        """keypoints (P, 17, 3) frame pixels, scores (P,), decoding seconds."""
        from posestream.models.data.augment import invert_affine, transform_keypoints

        t0 = time.perf_counter()
        if self.recurrent(row):
            decoder = self.est.recurrent if row == RECURRENT else self.extra[row]
            ((kp, sc),) = decoder.decode_batch(out.features, out.last["heatmaps"])
        else:
            self.est.net.config = dataclasses.replace(self.base, **EMBEDDING_ROWS[row])
            try:
                ((kp, sc),) = self.est.net.decode_batch(out.last)
            finally:
                self.est.net.config = self.base
        elapsed = time.perf_counter() - t0
        kp = transform_keypoints(kp, invert_affine(out.mats[0]), flip=False)
        h, w = rgb.shape[:2]
        kp[..., 0], kp[..., 1] = kp[..., 0].clip(0, w - 1), kp[..., 1].clip(0, h - 1)
        return kp, sc, elapsed


def synthetic(dec: Decoders, clips: int, frame_step: int, people: int) -> dict:
    """Per row: AP / AP50 / AR, count accuracy and decode ms on held-out clips of ``people`` people."""
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig
    from posestream.models.poses import FramePoses, boxes_from_keypoints
    from posestream.models.train_recurrent import count_accuracy, visible_people
    from posestream.tracker.metrics import evaluate as track_evaluate

    gts: list = []
    preds: dict[str, list] = {r: [] for r in dec.rows()}
    counts: dict[str, list[int]] = {r: [] for r in dec.rows()}
    ms: dict[str, list[float]] = {r: [] for r in dec.rows()}
    true_counts: list[int] = []
    net_ms: list[float] = []
    for seed in HELD_OUT.seeds(clips):
        clip = SyntheticClip.from_config(SyntheticConfig(seed=seed, frames=60, people=people, occluders=2))
        for t in range(0, len(clip), frame_step):
            rgb, gt = clip.render(t)
            k = len(gts)
            gts.append(dataclasses.replace(gt, frame_index=k))
            true_counts.append(visible_people(gt.keypoints, gt.width, gt.height, 3))
            t0 = time.perf_counter()
            out = dec.maps(rgb)
            net_ms.append(1000 * (time.perf_counter() - t0))
            for row in dec.rows():
                kp, sc, s = dec.decode(row, out, rgb)
                ms[row].append(1000 * s)
                preds[row].append(FramePoses(k, 0.0, gt.width, gt.height, kp, boxes_from_keypoints(kp), sc,
                                             np.full(len(kp), -1)))  # fmt: skip
                counts[row].append(int(len(sc) if dec.recurrent(row) else (sc >= dec.min_score).sum()))
    result: dict = {
        "frames": len(gts),
        "mean_people": float(np.mean(true_counts)),
        "net_ms": float(np.median(net_ms)),
        "timing": {"people": true_counts, **{row: ms[row] for row in dec.rows()}},
    }
    for row in dec.rows():
        m = track_evaluate(gts, preds[row])
        result[row] = {"AP": m["AP"], "AP50": m["AP50"], "AR": m["AR"], "ms": float(np.median(ms[row])),
                       **count_accuracy(true_counts, counts[row])}  # fmt: skip
    return result


def real(dec: Decoders) -> dict:
    """Per row: the real dev eval split's AP (all people kept: AP ranks them by score)."""
    import hashlib

    split = real_dev_split()
    out = {}
    cache: dict[str, object] = {}  # the SpatialNet pass of each scored image, shared by the rows

    def maps(rgb: np.ndarray):  # noqa: ANN202 - SpatialMaps
        key = hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()
        if key not in cache:
            cache[key] = dec.maps(rgb)
        return cache[key]

    for row in dec.rows():

        def predict(rgb: np.ndarray, row: str = row) -> list:
            kp, sc, _ = dec.decode(row, maps(rgb), rgb)
            return [(kp[i], float(sc[i])) for i in range(len(sc))]

        r = evaluate(predict, image_ids=split.eval)
        out[row] = {"AP": r["total"]["AP"], "AP50": r["total"]["AP50"], "AR": r["total"]["AR"],
                    "people": r["total"]["people"], "images": r["images"]}  # fmt: skip
    return out


def _f(v: float) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}"


def markdown(res: dict, args: argparse.Namespace) -> str:
    from posestream.models.recurrent_decoder import load_recurrent_decoder
    from posestream.models.weights import RECURRENT_SPATIALNET, checkpoint_path

    _, card = load_recurrent_decoder(checkpoint_path(RECURRENT_SPATIALNET))
    syn, crowd, rd = res["synthetic"], res["crowd"], res["real"]
    command = "python benchmarks/recurrent_decoder.py " + " ".join(args.argv)
    lines = [
        "## Recurrent decoder (seed 001) vs embedding decoding (`benchmarks/recurrent_decoder.py`)",
        "",
        f"{dt.date.today()}, {cpu_name()}, {args.threads} torch thread(s). One plain SpatialNet pass "
        "(`spatialnet_movenet_stage4.pt`, long side 512, one scale, no flip) per frame feeds every row. "
        f"Held-out synthetic: seeds {HELD_OUT.first}..{HELD_OUT.first + args.clips - 1}, 5 people a clip, every "
        f"{args.frame_step}th of 60 frames ({syn['frames']} frames, {syn['mean_people']:.1f} visible people a "
        f"frame); crowded: the same seeds with {args.crowd_people} people a clip ({crowd['frames']} frames, "
        f"{crowd['mean_people']:.1f} visible a frame); real dev **eval** split ({rd[RECURRENT]['images']} images "
        f"with the downscaled copies {list(FACTORS)}, {rd[RECURRENT]['people']} people). "
        f"Count = people output (recurrent: before its stop; embedding: score >= {res['min_score']}) against "
        f"people with >= 3 visible joints. Decode ms: the decoder alone, median; the SpatialNet pass is "
        f"{syn['net_ms']:.0f} ms (5 people) / {crowd['net_ms']:.0f} ms (crowded). Command: `{command.strip()}`.",
        "",
        "| decoder | synthetic AP | AP50 | AR | real-dev eval AP | AP50 | crowded AP | count exact (5 / crowded) "
        "| count MAE (5 / crowded) | decode ms (5 / crowded) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in res["rows"]:
        s, c, r = syn[row], crowd[row], rd[row]
        lines.append(
            f"| {row} | {_f(s['AP'])} | {_f(s['AP50'])} | {_f(s['AR'])} | {_f(r['AP'])} | {_f(r['AP50'])} | "
            f"{_f(c['AP'])} | {s['count_exact']:.2f} / {c['count_exact']:.2f} | {s['count_mae']:.2f} / "
            f"{c['count_mae']:.2f} | {s['ms']:.0f} / {c['ms']:.0f} |"
        )
    people = np.asarray(syn["timing"]["people"] + crowd["timing"]["people"])
    lines += [
        "",
        "Decoding time per frame (ms, median) against the visible people in the frame, both runs' frames:",
        "",
        "| decoder | " + " | ".join(f"{lo}-{hi} people" for lo, hi in TIME_BINS) + " |",
        "|---|" + "---:|" * len(TIME_BINS),
    ]
    for row in res["rows"]:
        ms = np.asarray(syn["timing"][row] + crowd["timing"][row])
        cells = []
        for lo, hi in TIME_BINS:
            sel = (people >= lo) & (people <= hi)
            cells.append(f"{np.median(ms[sel]):.0f} ({int(sel.sum())})" if sel.any() else "-")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "(frames per bin in brackets). The recurrent decoder's cost grows with the people it outputs "
        "(two ConvLSTM iterations each) and with the steps it runs past the last person when its stop is late.",
    ]
    lines += [
        "",
        f"Training budgets: the recurrent decoder trained {card.get('train_seconds', 0) / 3600:.2f} CPU hours "
        f"({card.get('steps')} steps, {card.get('threads')} threads) on the frozen SpatialNet; the embedding heads "
        "trained with SpatialNet itself (its card: 3200 steps, several CPU hours), so the rows share the features "
        "but not the budget. The learning curve is in `weights/README.md` (`recurrent_spatialnet.pt`).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=4, help=f"held-out synthetic clips ({HELD_OUT})")
    p.add_argument("--frame-step", type=int, default=6, help="every Nth of a clip's 60 frames")
    p.add_argument("--crowd-people", type=int, default=12, help="people per crowded clip")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-real", action="store_true", help="skip the real dev set")
    p.add_argument(
        "--extra",
        nargs="*",
        default=[],
        metavar="NAME=PATH",
        help="more recurrent decoder files to score as rows (ablations)",
    )
    p.add_argument("--write", action="store_true", help="record the section in benchmarks/RESULTS.md")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    import torch

    torch.set_num_threads(args.threads)
    if any("=" not in item for item in args.extra):
        p.error("--extra takes NAME=PATH items")
    extra = dict(item.split("=", 1) for item in args.extra)
    dec = Decoders(extra)
    res: dict = {"min_score": dec.min_score, "rows": dec.rows()}
    res["synthetic"] = synthetic(dec, args.clips, args.frame_step, 5)
    res["crowd"] = synthetic(dec, args.clips, args.frame_step, args.crowd_people)
    if args.no_real:
        res["real"] = {row: {"AP": float("nan"), "AP50": float("nan"), "AR": float("nan"), "people": 0, "images": 0}
                       for row in dec.rows()}  # fmt: skip
    else:
        try:
            load_annotations(DATA_DIR)
        except (DataMissing, OSError) as exc:
            print(f"real dev set missing: {exc}", file=sys.stderr)
            return 2
        res["real"] = real(dec)
    section = markdown(res, args)
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if args.write:
        record_section("recurrent_decoder", section)
        print("\nwrote benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
