"""COCO keypoint AP of pose estimator configurations on the real labelled dev set, side by side.

The set is ``../shared/data/real-dev`` (25 real images, 50 labelled people; read its README).
One run scores every requested configuration on the same images with pycocotools' COCOeval
(keypoints, the set's ``area`` as the OKS scale), in total and per bucket of person height
relative to the frame, next to reference rows from the MoveNet MultiPose TFLite interpreter.

Person height relative to the frame = box height / the frame's long side. Every estimator
here letterboxes the frame's long side to its input size, so this ratio times the input
size is the person's height in model-input pixels, the quantity that decides which scale
suits a person. Buckets double in width (``BUCKETS``).

The set's people are mostly large (median 0.6 of the long side), so small people are made
from **real pixels at lower resolution**: each image is also scored as downscaled copies
(``FACTORS``, area-averaged) pasted at the centre of a canvas of the original size filled
with the image's mean colour, with the annotations transformed by the same scale and
offset. People less than ``MIN_HEIGHT_PX`` tall in a copy are set to ``ignore`` (COCO does
not label keypoints of tiny people either): predictions on them are neither rewarded nor
charged. Predictions with most keypoints inside a PoseTrack ignore region (the unlabelled
crowd) are dropped before scoring.

Run from the repository root (weights fetched: ``posestream weights fetch``)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/real_dev.py                  # default rows
    .venv/bin/python benchmarks/real_dev.py --configs tflite-512 est:256+512:heatmaps:flip
    .venv/bin/python benchmarks/real_dev.py --write --json out.json

``evaluate(predict)`` is the reusable part: any ``predict(rgb) -> [(keypoints (17, 3) frame
px, score), ...]`` plugs in.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import io
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.results import cpu_name, record_section  # noqa: E402
from posestream.models.skeleton import NUM_KEYPOINTS  # noqa: E402

log = logging.getLogger(__name__)

DATA_DIR = ROOT.parent / "shared" / "data" / "real-dev"
# Downscale factors of the copies (1.0 = the original image).
FACTORS: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
# Person-height buckets: (name, low, high) of box height / frame long side, low inclusive.
BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("xs <0.08", 0.0, 0.08),
    ("s 0.08-0.16", 0.08, 0.16),
    ("m 0.16-0.32", 0.16, 0.32),
    ("l 0.32-0.64", 0.32, 0.64),
    ("xl >=0.64", 0.64, float("inf")),
)
# People shorter than this (pixels, in the scored image) are ignored by the evaluation.
MIN_HEIGHT_PX = 24.0
# A prediction's height is its keypoints' vertical extent times this (keypoints span
# about 0.85 of a person box: no head top, no soles), to put unmatched predictions in a bucket.
KEYPOINT_EXTENT_TO_BOX = 1.0 / 0.85

Prediction = tuple[np.ndarray, float]
Predictor = Callable[[np.ndarray], Sequence[Prediction]]


class DataMissing(RuntimeError):
    """The real dev set is not where it was looked for."""


# ---- the set and its downscaled copies ------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """How a copy was made from its source image: ``copy = source * (sx, sy) + (ox, oy)``.

    Coordinates are continuous pixels, 0 at the image's top-left edge, in both images.
    """

    sx: float
    sy: float
    ox: float
    oy: float

    def forward(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float64)
        return np.stack((xy[..., 0] * self.sx + self.ox, xy[..., 1] * self.sy + self.oy), axis=-1)

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float64)
        return np.stack(((xy[..., 0] - self.ox) / self.sx, (xy[..., 1] - self.oy) / self.sy), axis=-1)


def downscale_onto_canvas(rgb: np.ndarray, factor: float) -> tuple[np.ndarray, Placement]:
    """The image shrunk by ``factor`` (area averaging) at the centre of a same-size canvas.

    Args:
        rgb: (H, W, 3) uint8.
        factor: in (0, 1]; 1 returns the image unchanged.
    Returns:
        (H, W, 3) uint8 canvas filled with the image's mean colour, and the ``Placement``.
    """
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    h, w = rgb.shape[:2]
    if factor == 1.0:
        return rgb, Placement(1.0, 1.0, 0.0, 0.0)
    nw, nh = max(1, round(w * factor)), max(1, round(h * factor))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    canvas = np.empty_like(rgb)
    canvas[:] = rgb.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    ox, oy = (w - nw) // 2, (h - nh) // 2
    canvas[oy : oy + nh, ox : ox + nw] = small
    return canvas, Placement(nw / w, nh / h, float(ox), float(oy))


def transform_annotation(ann: dict, p: Placement) -> dict:
    """A COCO keypoint annotation moved with its image (keypoints, bbox, area, v kept)."""
    out = copy.deepcopy(ann)
    kp = np.asarray(ann["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
    xy = p.forward(kp[:, :2])
    labelled = kp[:, 2] > 0
    kp[labelled, :2] = xy[labelled]
    out["keypoints"] = [float(v) for v in kp.reshape(-1)]
    x, y, w, h = ann["bbox"]
    (x1, y1), (x2, y2) = p.forward(np.array([[x, y], [x + w, y + h]]))
    out["bbox"] = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    out["area"] = float(ann["area"]) * p.sx * p.sy
    return out


def transform_polygons(xs: list[list[float]], ys: list[list[float]], p: Placement) -> list[np.ndarray]:
    """PoseTrack ignore-region polygons (per-region x and y lists) -> (K, 2) arrays in the copy."""
    return [
        p.forward(np.stack((np.asarray(x, np.float64), np.asarray(y, np.float64)), -1))
        for x, y in zip(xs, ys, strict=True)
    ]


@dataclass
class EvalImage:
    """One scored image: a real image or one of its downscaled copies."""

    image_id: int
    source_id: int
    factor: float
    file_name: str
    width: int
    height: int
    annotations: list[dict]
    ignore_regions: list[np.ndarray]
    placement: Placement


def load_annotations(data_dir: Path = DATA_DIR) -> dict:
    """The set's COCO dict; raises ``DataMissing`` when it is not there."""
    path = Path(data_dir) / "annotations.json"
    if not path.is_file():
        raise DataMissing(f"real dev set not found: {path} (see ../shared/data/real-dev/README.md)")
    return json.loads(path.read_text())


def read_rgb(data_dir: Path, file_name: str) -> np.ndarray:
    """An image of the set as (H, W, 3) uint8 RGB."""
    bgr = cv2.imread(str(Path(data_dir) / "images" / file_name), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataMissing(f"cannot read image {file_name} of the real dev set")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def eval_images(
    coco: dict, factors: Sequence[float] = FACTORS, image_ids: Sequence[int] | None = None
) -> list[EvalImage]:
    """Every (image, factor) to score, annotations transformed; ids ``source_id * 100 + k``."""
    anns_by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        anns_by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for im in coco["images"]:
        if image_ids is not None and im["id"] not in image_ids:
            continue
        w, h = im["width"], im["height"]
        for k, f in enumerate(factors):
            nw, nh = max(1, round(w * f)), max(1, round(h * f))
            p = (
                Placement(nw / w, nh / h, float((w - nw) // 2), float((h - nh) // 2))
                if f != 1.0
                else Placement(1, 1, 0, 0)
            )
            anns = [transform_annotation(a, p) for a in anns_by_image.get(im["id"], [])]
            regions = (
                transform_polygons(im["ignore_regions_x"], im["ignore_regions_y"], p)
                if "ignore_regions_x" in im
                else []
            )
            out.append(
                EvalImage(im["id"] * 100 + k, im["id"], float(f), im["file_name"], w, h, anns, regions, p)
            )
    return out


def height_ratio(ann: dict, long_side: int) -> float:
    """A ground-truth person's box height / the frame's long side."""
    return float(ann["bbox"][3]) / float(long_side)


def bucket_of(ratio: float) -> str:
    for name, lo, hi in BUCKETS:
        if lo <= ratio < hi:
            return name
    return BUCKETS[-1][0]


# ---- scoring -----------------------------------------------------------------------------


def _inside_any(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    inside = np.zeros(len(points), bool)
    for poly in polygons:
        contour = poly.astype(np.float32).reshape(-1, 1, 2)
        inside |= np.array(
            [cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in points]
        )
    return inside


def drop_in_ignore_regions(preds: Sequence[Prediction], polygons: list[np.ndarray]) -> list[Prediction]:
    """Predictions with more than half of their 17 keypoints inside no ignore polygon."""
    if not polygons:
        return list(preds)
    return [p for p in preds if _inside_any(np.asarray(p[0])[:, :2], polygons).mean() <= 0.5]


def _cocoeval_class():
    from pycocotools.cocoeval import COCOeval

    class BucketEval(COCOeval):
        """COCOeval (keypoints) over one bucket of person heights.

        Ground truth outside the bucket is ``ignore`` (a prediction matched to it counts
        for nothing); an unmatched prediction outside the bucket is ignored too -- COCO's own
        area-range rule, with height ratios instead of areas.
        """

        def __init__(self, gt, dt, gt_in: dict[int, bool], dt_in: dict[int, bool]):
            super().__init__(gt, dt, "keypoints")
            self.gt_in, self.dt_in = gt_in, dt_in

        def _prepare(self):
            super()._prepare()
            for anns in self._gts.values():
                for g in anns:
                    g["ignore"] = int(
                        g["ignore"] or g.get("ignore_small", 0) or not self.gt_in.get(g["id"], True)
                    )

        def evaluateImg(self, imgId, catId, aRng, maxDet):
            r = super().evaluateImg(imgId, catId, aRng, maxDet)
            if r is None:
                return r
            out = np.array([not self.dt_in.get(d, True) for d in r["dtIds"]], bool)
            r["dtIgnore"] = np.logical_or(r["dtIgnore"], (r["dtMatches"] == 0) & out[None, :])
            return r

    return BucketEval


def _summary(E) -> dict[str, float]:
    """AP (mean over OKS 0.50:0.95), AP50 and AR (mean recall) from an accumulated COCOeval."""
    prec = E.eval["precision"][:, :, 0, 0, -1]  # (T, R) for category 0, area 'all', maxDets 20
    rec = E.eval["recall"][:, 0, 0, -1]

    def mean(v: np.ndarray) -> float:
        v = v[v > -1]
        return float(v.mean()) if v.size else float("nan")

    return {"AP": mean(prec), "AP50": mean(prec[0]), "AR": mean(rec)}


def score(
    images: Sequence[EvalImage], predictions: dict[int, Sequence[Prediction]], categories: list[dict]
) -> dict:
    """COCO keypoint AP / AP50 / AR of predictions on ``images``, in total and per bucket.

    Args:
        images: from ``eval_images``.
        predictions: image id -> [(keypoints (17, 3) pixels of that image, score), ...].
        categories: the set's COCO categories.
    Returns:
        ``{"total": {...}, "buckets": {name: {...}}}``, each with AP, AP50, AR and
        ``people`` (scored ground truth people).
    """
    from pycocotools.coco import COCO

    gt_dict = {"images": [], "annotations": [], "categories": categories}
    dts, gt_ratio, dt_ratio = [], {}, {}
    next_ann = 1
    for im in images:
        long_side = max(im.width, im.height)
        gt_dict["images"].append({"id": im.image_id, "width": im.width, "height": im.height})
        for a in im.annotations:
            g = dict(a, id=next_ann, image_id=im.image_id)
            g.pop("source", None)
            g["ignore_small"] = int(a["bbox"][3] < MIN_HEIGHT_PX)
            gt_ratio[next_ann] = (
                height_ratio(a, long_side),
                a["num_keypoints"] > 0 and not g["ignore_small"],
            )
            gt_dict["annotations"].append(g)
            next_ann += 1
        for kp, s in predictions.get(im.image_id, []):
            kp = np.asarray(kp, np.float64).reshape(NUM_KEYPOINTS, 3)
            dts.append(
                {
                    "image_id": im.image_id,
                    "category_id": 1,
                    "keypoints": [float(v) for v in kp.reshape(-1)],
                    "score": float(s),
                }
            )
            extent = float(kp[:, 1].max() - kp[:, 1].min()) * KEYPOINT_EXTENT_TO_BOX
            dt_ratio[len(dts)] = extent / long_side  # loadRes numbers results 1..N in order
    with redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(dts) if dts else None
    cls = _cocoeval_class()
    results: dict = {"buckets": {}}
    for name, lo, hi in [("total", 0.0, float("inf")), *BUCKETS]:
        gt_in = {i: lo <= r < hi for i, (r, _) in gt_ratio.items()}
        dt_in = {i: lo <= r < hi for i, r in dt_ratio.items()}
        people = sum(1 for i, (r, ok) in gt_ratio.items() if ok and gt_in[i])
        if dt is None or people == 0:
            row = {
                "AP": 0.0 if people else float("nan"),
                "AP50": 0.0 if people else float("nan"),
                "AR": 0.0 if people else float("nan"),
            }
        else:
            E = cls(gt, dt, gt_in, dt_in)
            E.params.areaRng = [[0, 1e10]]
            E.params.areaRngLbl = ["all"]
            with redirect_stdout(io.StringIO()):
                E.evaluate()
                E.accumulate()
            row = _summary(E)
        row["people"] = people
        if name == "total":
            results["total"] = row
        else:
            results["buckets"][name] = row
    return results


def evaluate(
    predict: Predictor,
    data_dir: Path = DATA_DIR,
    factors: Sequence[float] = FACTORS,
    image_ids: Sequence[int] | None = None,
    drop_ignored: bool = True,
) -> dict:
    """Run ``predict`` on every image of the real dev set and its downscaled copies, and score it.

    Args:
        predict: RGB uint8 (H, W, 3) -> [(keypoints (17, 3) (x, y, score) frame pixels, person score)].
        data_dir: the set's folder.
        factors: downscale factors of the copies (1.0 = the originals).
        image_ids: only these images of the set (default all).
        drop_ignored: drop predictions inside PoseTrack ignore regions (off only to compare
            with figures computed without that step).
    Returns:
        ``score``'s dict plus ``"originals"`` (the same figures on the factor-1 images only,
        when 1.0 is among the factors), ``ms_per_image`` (median wall time of ``predict``, robust to load from other processes),
        ``images`` (scored images) and ``predictions`` (image id -> list).
    """
    coco = load_annotations(data_dir)
    images = eval_images(coco, factors, image_ids)
    preds: dict[int, list[Prediction]] = {}
    sources: dict[int, np.ndarray] = {}
    elapsed: list[float] = []
    for im in images:
        if im.source_id not in sources:
            sources = {im.source_id: read_rgb(data_dir, im.file_name)}
        rgb, _ = downscale_onto_canvas(sources[im.source_id], im.factor)
        t0 = time.perf_counter()
        out = list(predict(rgb))
        elapsed.append(time.perf_counter() - t0)
        preds[im.image_id] = drop_in_ignore_regions(out, im.ignore_regions) if drop_ignored else out
    result = score(images, preds, coco["categories"])
    if 1.0 in factors:
        originals = [im for im in images if im.factor == 1.0]
        result["originals"] = score(originals, preds, coco["categories"])["total"]
    result["ms_per_image"] = 1000.0 * float(np.median(elapsed)) if elapsed else float("nan")
    result["images"] = len(images)
    result["predictions"] = preds
    return result


# ---- configurations ------------------------------------------------------------------------


def tflite_predictor(size: int, threads: int = 1, weights: Path | None = None) -> Predictor:
    """The MoveNet MultiPose TFLite file run by the LiteRT interpreter (its own decoder, 6 people).

    Square letterbox to ``size`` (the reference's way); all 6 output people are kept.
    """
    from ai_edge_litert.interpreter import Interpreter

    from posestream.models.estimator import letterbox
    from posestream.models.weights import MOVENET_MULTIPOSE, verify

    path = weights or verify(MOVENET_MULTIPOSE)
    it = Interpreter(model_path=str(path), num_threads=threads)
    inp = it.get_input_details()[0]["index"]
    it.resize_tensor_input(inp, [1, size, size, 3])
    it.allocate_tensors()
    out = it.get_output_details()[0]["index"]

    def predict(rgb: np.ndarray) -> list[Prediction]:
        canvas, (t,) = letterbox([rgb], size, square=True)
        it.set_tensor(inp, canvas)
        it.invoke()
        people = it.get_tensor(out)[0]  # (6, 56): 17 x (y, x, score) normalised, box, score
        result = []
        for row in people:
            kp = row[:51].reshape(NUM_KEYPOINTS, 3).astype(np.float64)
            xy = t.to_frame(kp[:, [1, 0]] * size)
            xy[:, 0] = xy[:, 0].clip(0, t.frame_width)
            xy[:, 1] = xy[:, 1].clip(0, t.frame_height)
            result.append((np.concatenate((xy, kp[:, 2:3]), axis=1), float(row[55])))
        return result

    return predict


def estimator_predictor(config) -> Predictor:
    """``PoseEstimator`` with ``config`` (an ``EstimatorConfig``), one frame per call."""
    from posestream.models.estimator import PoseEstimator

    est = PoseEstimator(config)

    def predict(rgb: np.ndarray) -> list[Prediction]:
        fp = est([rgb]).poses[0]
        return [(fp.keypoints[i], float(fp.scores[i])) for i in range(len(fp.scores))]

    return predict


def estimator_config(spec: str):
    """``est[:SIZES[:MERGE][:flip|flipall][:refine|refineall]]`` -> ``EstimatorConfig`` (CPU); ``est`` alone = the default.

    SIZES like ``256+512``; MERGE one of ``posestream.models.estimator.SCALE_MERGES`` (omitted: the
    default's); flip testing only where ``flip`` (the default ``flip_max_size``: small scales
    only) or ``flipall`` (every scale) is written, Thunder refinement only where ``refine`` (the
    default ``RefineConfig`` gates) or ``refineall`` (the same without the confident-person
    skip, ``max_mean_joint_score=None``) is written: a spec names MultiPose alone unless it
    says otherwise.
    """
    from posestream.models.estimator import EstimatorConfig
    from posestream.models.refine import RefineConfig

    parts = spec.split(":")
    if len(parts) == 1:
        return EstimatorConfig(device="cpu")
    kwargs: dict = {"device": "cpu", "flip": False, "refine": RefineConfig(enabled=False)}
    if len(parts) > 1 and parts[1]:
        kwargs["input_sizes"] = tuple(int(v) for v in parts[1].split("+"))
    for extra in parts[2:]:
        if extra == "flip":
            kwargs["flip"] = True
        elif extra == "flipall":
            kwargs["flip"], kwargs["flip_max_size"] = True, None
        elif extra == "refine":
            kwargs["refine"] = RefineConfig()
        elif extra == "refineall":
            kwargs["refine"] = RefineConfig(max_mean_joint_score=None)
        elif extra:
            kwargs["scale_merge"] = extra
    return EstimatorConfig(**kwargs)


# Named rows; any ``est:...`` spec works too.
NAMED: dict[str, str] = {
    "merge-256+512 (old default)": "est:256+512:nearest_height",
    "est-256": "est:256",
    "est-512": "est:512",
    "default, refinement off": "est:256+512:confidence:flip",
    "previous default": "est:256+512:confidence:flipall:refineall",
    "default": "est",
}
DEFAULT_CONFIGS = (
    "tflite-256", "tflite-512", "est-256", "est-512", "merge-256+512 (old default)",
    "default, refinement off", "default",
)  # fmt: skip


def spatialnet_predictor(spec: str) -> Predictor:
    """``spatialnet:WEIGHTS[:SIZE[:noprior][:nonms][:refine][:pgg]]``: ``SpatialNetEstimator`` on those weights at long side SIZE (512).

    Every decoded person is kept (``min_person_score`` 0): AP ranks people by score, so the
    service's cut-off would only remove recall. ``noprior`` decodes without the weights'
    body-shape prior (``prior_threshold`` 0), the rest of their stored decoding kept; ``nonms``
    without the pose NMS (``DecodeConfig.nms_oks`` 1, seed 002's decoding). ``refine``
    runs the default ``RefineConfig``'s gated Thunder refinement on the decoded people. ``pgg``
    groups with Pose-Guided Grouping's refined KE / SIE (``DecodeConfig.use_pgg``, the weights'
    ``pgg`` settings) even where the weights were trained without it.
    """
    import dataclasses

    from posestream.models.refine import RefineConfig
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator

    _, weights, *extra = spec.split(":")
    size = int(extra[0]) if extra and extra[0] else 512
    options = {"noprior": ("prior_threshold", 0.0), "nonms": ("nms_oks", 1.0)}  # decode field switched off
    unknown = set(extra[1:]) - {*options, "refine", "pgg"}
    if unknown:
        raise ValueError(
            f"spatialnet row {spec!r}: unknown options {sorted(unknown)} ({', '.join(options)}, refine, pgg)"
        )
    refine = RefineConfig(enabled="refine" in extra[1:])
    cfg = SpatialEstimatorConfig(device="cpu", min_person_score=0.0, input_size=size, refine=refine)
    est = SpatialNetEstimator(weights, cfg)
    off = dict(options[o] for o in extra[1:] if o in options)
    if off:
        c = est.net.config
        est.net.config = dataclasses.replace(c, decode=dataclasses.replace(c.decode, **off))
    if "pgg" in extra[1:]:
        c = est.net.config
        est.net.config = dataclasses.replace(c, use_pgg=True)  # decode_config() takes use_pgg from here

    def predict(rgb: np.ndarray) -> list[Prediction]:
        fp = est([rgb]).poses[0]
        return [(fp.keypoints[i], float(fp.scores[i])) for i in range(len(fp.scores))]

    return predict


def make_predictor(name: str, threads: int) -> Predictor:
    if name.startswith("tflite-"):
        return tflite_predictor(int(name.split("-", 1)[1]), threads)
    if name.startswith("spatialnet:"):
        return spatialnet_predictor(name)
    spec = NAMED.get(name, name)
    if not spec.startswith("est"):
        raise ValueError(
            f"unknown configuration {name!r}: use tflite-SIZE, est[:SIZES[:MERGE][:flip|flipall][:refine|refineall]] or one of {sorted(NAMED)}"
        )
    return estimator_predictor(estimator_config(spec))


def describe(name: str) -> str:
    if name.startswith("spatialnet:"):
        return f"SpatialNetEstimator {name.split(':', 1)[1]} (weights[:long side[:noprior][:nonms][:refine][:pgg]]), every decoded person kept"
    if name.startswith("tflite-"):
        return f"TFLite interpreter, square {name.split('-', 1)[1]}, its own decoder (6 people)"
    spec = NAMED.get(name, name)
    cfg = estimator_config(spec)
    flip = (
        "off"
        if not cfg.flip
        else ("all scales" if cfg.flip_max_size is None else f"sizes <= {cfg.flip_max_size}")
    )
    refine = (
        "off"
        if not cfg.refine.enabled
        else (
            "everyone"
            if cfg.refine.max_mean_joint_score is None
            else f"people with mean joint score < {cfg.refine.max_mean_joint_score}"
        )
    )
    return (
        f"PoseEstimator sizes={'+'.join(map(str, cfg.input_sizes))} merge={cfg.scale_merge} flip={flip} "
        f"refine={refine}"
    )


# Images timed side by side (set ids): varied sizes, 1 to 11 people.
TIMING_IMAGES: tuple[int, ...] = (1, 4, 8, 12, 15, 19, 23)


def time_predictors(
    predictors: dict[str, Predictor], frames: Sequence[np.ndarray], rounds: int = 3
) -> dict[str, float]:
    """Median ms per frame of each predictor over ``frames``, the predictors taking turns.

    Every frame is run by each predictor in turn (after one untimed warm-up call each), so
    bursts of load from other processes on a shared machine hit all of them alike; the
    figure is the median over rounds of each round's mean time per frame.
    """
    per_round: dict[str, list[float]] = {k: [] for k in predictors}
    for fn in predictors.values():
        fn(frames[0])
    for _ in range(rounds):
        spent = dict.fromkeys(predictors, 0.0)
        for f in frames:
            for name, fn in predictors.items():
                t0 = time.perf_counter()
                fn(f)
                spent[name] += time.perf_counter() - t0
        for name, sec in spent.items():
            per_round[name].append(1000.0 * sec / len(frames))
    return {k: float(np.median(v)) for k, v in per_round.items()}


# ---- report -------------------------------------------------------------------------------


def _f(v: float) -> str:
    return "-" if v != v else f"{v:.3f}"


def markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    people = rows[0]["result"]
    ref_ms = next((r["result"].get("ms_per_frame") for r in rows if r["name"] == "tflite-512"), None)
    bucket_names = [b[0] for b in BUCKETS]
    lines = [
        "## Real dev set: COCO keypoint AP per configuration (`benchmarks/real_dev.py`)",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {cpu_name()}, {platform.system()} {platform.machine()}, "
        f"{args.threads} thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); the CPUs are shared, "
        "so times are rough",
        f"- command: `{command}`",
        f"- set: ../shared/data/real-dev (25 real images, 50 labelled people) scored as {len(args.factors)} versions "
        f"each: the originals and **downscaled copies (factors {', '.join(str(f) for f in args.factors if f != 1)}) of the "
        "real images pasted at the centre of a canvas of the original size** (mean-colour fill), annotations "
        f"transformed with them; people under {MIN_HEIGHT_PX:g} px tall in a copy are ignored; predictions with most "
        "keypoints inside PoseTrack ignore regions dropped. pycocotools COCOeval keypoints, the set's `area`, "
        "COCO sigmas; the person score ranks predictions.",
        *(
            [f"- **only the {args.split} split's images** of configs/real_dev_split.json"]
            if getattr(args, "split", "all") != "all"
            else []
        ),
        "- ms/frame: median over rounds of the mean time per frame on images "
        f"{', '.join(map(str, TIMING_IMAGES))} of the set, the configurations taking turns on every frame (so load "
        "from other processes hits all alike); in brackets where not timed side by side: the evaluation's median "
        "per image.",
        "- buckets: person box height / frame long side (times the input size = height in model-input pixels); "
        "in each bucket, ground truth outside it and unmatched predictions outside it are ignored (COCO's area-range "
        "rule with height ratios).",
        f"- scored people per bucket: total {people['total']['people']}, "
        + ", ".join(f"{b} {people['buckets'][b]['people']}" for b in bucket_names),
        "",
        "| configuration | originals AP | AP | AP50 | AR | "
        + " | ".join(f"AP {b}" for b in bucket_names)
        + " | ms/frame |"
        + (" vs tflite-512 |" if ref_ms else ""),
        "|---|" + "---:|" * (5 + len(bucket_names) + (1 if ref_ms else 0)),
    ]
    for r in rows:
        res = r["result"]
        orig = res.get("originals", {}).get("AP", float("nan"))
        cells = [
            f"`{r['name']}`",
            _f(orig),
            _f(res["total"]["AP"]),
            _f(res["total"]["AP50"]),
            _f(res["total"]["AR"]),
        ]
        cells += [_f(res["buckets"][b]["AP"]) for b in bucket_names]
        cells.append(
            f"{res['ms_per_frame']:.0f}" if "ms_per_frame" in res else f"({res['ms_per_image']:.0f})"
        )
        if "ms_per_frame" in res and ref_ms:
            cells.append(f"{res['ms_per_frame'] / ref_ms:.2f}x")
        elif ref_ms:
            cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Rows:"] + [f"- `{r['name']}`: {r['description']}" for r in rows]
    lines += [
        "",
        "AP50 and AR per bucket:",
        "",
        "| configuration | " + " | ".join(f"AP50 / AR {b}" for b in bucket_names) + " |",
        "|---|" + "---:|" * len(bucket_names),
    ]
    for r in rows:
        b = r["result"]["buckets"]
        lines.append(
            f"| `{r['name']}` | "
            + " | ".join(f"{_f(b[n]['AP50'])} / {_f(b[n]['AR'])}" for n in bucket_names)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--configs", nargs="+", default=list(DEFAULT_CONFIGS),
        help="rows: tflite-SIZE, est[:SIZES[:MERGE][:flip|flipall][:refine|refineall]] (e.g. est:256+512:heatmaps:flip) or a named row",
    )  # fmt: skip
    p.add_argument("--data", type=Path, default=DATA_DIR, help="the real dev set's folder")
    p.add_argument(
        "--factors", type=float, nargs="+", default=list(FACTORS), help="downscale factors (1 = originals)"
    )
    p.add_argument(
        "--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")), help="CPU threads"
    )
    p.add_argument(
        "--write", action="store_true", help="record the table in benchmarks/RESULTS.md (its own section)"
    )
    p.add_argument(
        "--timing-rounds", type=int, default=3,
        help="rounds of the side-by-side timing on TIMING_IMAGES (0: skip; only the evaluation's own times)",
    )  # fmt: skip
    p.add_argument(
        "--section",
        default="real_dev",
        help="RESULTS.md section --write records into (its own for other comparisons)",
    )
    p.add_argument(
        "--split", choices=("all", "train", "eval"), default="all",
        help="score only this part of configs/real_dev_split.json (eval: the images nothing trains on)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this file")
    p.add_argument(
        "--render", type=Path, default=None, metavar="JSON",
        help="only format (and with --write record) the rows of an earlier run's --json file; "
        "--configs and --threads should repeat that run's, for the section's command line",
    )  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.render is not None:
        rows = json.loads(args.render.read_text())
        shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write"]
        i = shown.index("--render")
        shown[i : i + 2] = ["--json", str(args.render)]
        section = markdown(rows, args, "python benchmarks/real_dev.py " + " ".join(shown))
        print(section)
        if args.write:
            record_section(args.section, section)
            print("\nwrote benchmarks/RESULTS.md")
        return 0
    try:
        load_annotations(args.data)
    except DataMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    predictors: dict[str, Predictor] = {}
    for name in args.configs:
        try:
            predictors[name] = predict = make_predictor(name, args.threads)
            desc = describe(name)
        except (ValueError, TypeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        ids = None
        if args.split != "all":
            from posestream.models.data.splits import real_dev_split

            ids = getattr(real_dev_split(), args.split)
        res = evaluate(predict, args.data, args.factors, image_ids=ids)
        res.pop("predictions")
        rows.append({"name": name, "description": desc, "result": res})
        if args.json is not None:  # after every row, so a long run that is cut short keeps what it did
            args.json.write_text(json.dumps(rows, indent=1))
        t = res["total"]
        print(
            f"{name:32s} originals AP {_f(res.get('originals', {}).get('AP', float('nan')))}  AP {_f(t['AP'])}  "
            f"AP50 {_f(t['AP50'])}  AR {_f(t['AR'])}  "
            + "  ".join(f"[{b}] {_f(v['AP'])}" for b, v in res["buckets"].items())
            + f"  {res['ms_per_image']:.0f} ms/image",
            flush=True,
        )
    if args.timing_rounds > 0:
        coco = load_annotations(args.data)
        names = {im["id"]: im["file_name"] for im in coco["images"]}
        frames = [read_rgb(args.data, names[i]) for i in TIMING_IMAGES if i in names]
        ms = time_predictors(predictors, frames, args.timing_rounds)
        for r in rows:
            r["result"]["ms_per_frame"] = ms[r["name"]]
            print(f"{r['name']:32s} {ms[r['name']]:.0f} ms/frame (side by side)", flush=True)
    command = "python benchmarks/real_dev.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = markdown(rows, args, command.strip())
    print()
    print(section)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.write:
        record_section(args.section, section)
        print("\nwrote benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
