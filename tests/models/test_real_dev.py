"""The real dev set benchmark's harness: scoring, downscaled copies, ignore regions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from benchmarks import real_dev as R
from posestream.models.skeleton import flip_permutation

pytestmark = pytest.mark.skipif(
    not (R.DATA_DIR / "annotations.json").is_file(),
    reason=f"the real dev set is not at {R.DATA_DIR} (it lives beside the clone in ../shared; never in the repo)",
)

# A crowded PoseTrack frame (ignore regions, 11 people), a two-person AIC image, a JHMDB frame.
IMAGE_IDS = (15, 8, 23)
FACTORS = (1.0, 0.25)


@pytest.fixture(scope="module")
def coco() -> dict:
    return R.load_annotations()


def _gt_predictions(images: list[R.EvalImage], swap: bool = False) -> dict[int, list[R.Prediction]]:
    perm = flip_permutation() if swap else np.arange(17)
    out = {}
    for im in images:
        preds = []
        for a in im.annotations:
            kp = np.asarray(a["keypoints"], np.float64).reshape(17, 3)[perm]
            preds.append((kp, 1.0))
        out[im.image_id] = preds
    return out


def test_ground_truth_fed_back_scores_ap_one(coco: dict) -> None:
    images = R.eval_images(coco, FACTORS, IMAGE_IDS)
    assert len(images) == len(IMAGE_IDS) * len(FACTORS)
    result = R.score(images, _gt_predictions(images), coco["categories"])
    assert result["total"]["people"] >= 15
    assert result["total"]["AP"] == pytest.approx(1.0) and result["total"]["AR"] == pytest.approx(1.0)
    populated = [b for b in result["buckets"].values() if b["people"]]
    assert len(populated) >= 3  # the copies put people into the small buckets
    for b in populated:
        assert b["AP"] == pytest.approx(1.0) and b["AP50"] == pytest.approx(1.0)
    assert sum(b["people"] for b in result["buckets"].values()) == result["total"]["people"]
    swapped = R.score(images, _gt_predictions(images, swap=True), coco["categories"])
    assert swapped["total"]["AP"] < 0.3  # left/right swapped truth is far from perfect


def test_downscaled_copy_keeps_annotations_on_their_pixels(coco: dict) -> None:
    im = next(i for i in R.eval_images(coco, (0.25,), (8,)))
    src = next(i for i in R.eval_images(coco, (1.0,), (8,)))
    ann, orig = im.annotations[0], src.annotations[0]
    kp = np.asarray(orig["keypoints"]).reshape(17, 3)
    moved = np.asarray(ann["keypoints"]).reshape(17, 3)
    labelled = kp[:, 2] > 0
    # Round trip: the inverse placement returns the original coordinates, box and area.
    assert np.allclose(im.placement.inverse(moved[labelled, :2]), kp[labelled, :2], atol=1e-9)
    assert np.array_equal(moved[:, 2], kp[:, 2])
    assert ann["area"] == pytest.approx(orig["area"] * im.placement.sx * im.placement.sy)
    x, y, w, h = ann["bbox"]
    assert np.allclose(im.placement.inverse(np.array([[x, y], [x + w, y + h]])),
                       [[orig["bbox"][0], orig["bbox"][1]],
                        [orig["bbox"][0] + orig["bbox"][2], orig["bbox"][1] + orig["bbox"][3]]])  # fmt: skip
    # Alignment with the pixels: a bright 8x8 square centred on a labelled joint lands,
    # in the downscaled copy, where the transformed annotation says.
    for k in np.flatnonzero(labelled)[:4]:
        img = np.zeros((src.height, src.width, 3), np.uint8)
        cx, cy = (int(round(v)) for v in kp[k, :2])
        img[cy - 4 : cy + 4, cx - 4 : cx + 4] = 255
        small, p = R.downscale_onto_canvas(img, 0.25)
        assert p == im.placement
        g = small[..., 0].astype(np.float64) - small[0, 0, 0]
        ys, xs = np.mgrid[: g.shape[0], : g.shape[1]]
        centroid = np.array([(g * (xs + 0.5)).sum(), (g * (ys + 0.5)).sum()]) / g.sum()
        assert np.allclose(centroid, p.forward(np.array([cx, cy], np.float64)), atol=0.3)


def test_predictions_in_ignore_regions_are_dropped(coco: dict) -> None:
    im = next(i for i in R.eval_images(coco, (1.0,), (15,)))
    assert im.ignore_regions
    # A point well inside the first region, found by rasterising it (independent of the test).
    mask = np.zeros((im.height, im.width), np.uint8)
    cv2.fillPoly(mask, [np.round(im.ignore_regions[0]).astype(np.int32)], 1)
    mask = cv2.erode(mask, np.ones((9, 9), np.uint8))
    ys, xs = np.nonzero(mask)
    inside = np.array([xs[len(xs) // 2] + 0.5, ys[len(ys) // 2] + 0.5])
    assert R._inside_any(inside[None], im.ignore_regions)[0]
    crowd = np.tile(np.r_[inside, 0.9], (17, 1))
    dancer = np.asarray(im.annotations[0]["keypoints"], np.float64).reshape(17, 3)
    kept = R.drop_in_ignore_regions([(crowd, 0.9), (dancer, 0.8)], im.ignore_regions)
    assert len(kept) == 1 and kept[0][1] == 0.8


def test_evaluate_runs_a_predictor_end_to_end(coco: dict) -> None:
    calls = []

    def nobody(rgb: np.ndarray) -> list[R.Prediction]:
        calls.append(rgb.shape)
        return []

    res = R.evaluate(nobody, factors=FACTORS, image_ids=IMAGE_IDS)
    assert len(calls) == res["images"] == len(IMAGE_IDS) * len(FACTORS)
    assert res["total"]["AP"] == 0.0 and res["originals"]["AP"] == 0.0
    # Every copy keeps its source's frame size.
    sizes = {(i["height"], i["width"]) for i in coco["images"] if i["id"] in IMAGE_IDS}
    assert {s[:2] for s in calls} == sizes


@pytest.mark.weights
def test_spatialnet_row_pgg_option_groups_with_pgg_and_unknown_options_are_refused(coco: dict) -> None:
    """``spatialnet:W:SIZE:pgg`` decodes the real image with PGG-refined embeddings, nothing else changed."""
    import dataclasses

    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator
    from posestream.models.weights import SPATIALNET_MOVENET, checkpoint_path

    weights = checkpoint_path(SPATIALNET_MOVENET)
    if not weights.is_file():
        pytest.skip(f"not trained yet: {weights}")
    image = next(i for i in coco["images"] if i["id"] == IMAGE_IDS[0])
    rgb = R.read_rgb(R.DATA_DIR, image["file_name"])
    got = R.spatialnet_predictor(f"spatialnet:{weights}:512:pgg")(rgb)
    est = SpatialNetEstimator(
        weights, SpatialEstimatorConfig(device="cpu", min_person_score=0.0, input_size=512)
    )
    plain = est([rgb]).poses[0]
    est.net.config = dataclasses.replace(est.net.config, use_pgg=True)
    want = est([rgb]).poses[0]
    assert len(got) == len(want.scores)
    for (kp, score), wk, ws in zip(got, want.keypoints, want.scores, strict=True):
        np.testing.assert_allclose(kp, wk, atol=1e-4)
        assert score == pytest.approx(float(ws), abs=1e-6)
    # PGG moved the embeddings the grouping reads: the crowded frame's people come out otherwise.
    assert len(plain.scores) != len(want.scores) or not np.allclose(
        plain.keypoints, want.keypoints, atol=1e-3
    )
    with pytest.raises(ValueError, match="unknown options"):
        R.spatialnet_predictor(f"spatialnet:{weights}:256:pg")


@pytest.mark.weights
def test_spatialnet_row_nonms_option_keeps_every_person_the_pose_nms_drops(coco: dict) -> None:
    """``spatialnet:W:SIZE:nonms`` decodes with ``nms_oks`` 1: the shipped decoding's people plus
    the duplicates its pose NMS removes, each unchanged."""
    from posestream.models.weights import SPATIALNET_MOVENET, checkpoint_path

    weights = checkpoint_path(SPATIALNET_MOVENET)
    if not weights.is_file():
        pytest.skip(f"not trained yet: {weights}")
    image = next(i for i in coco["images"] if i["id"] == IMAGE_IDS[1])  # 2 duplicates at 256
    rgb = R.read_rgb(R.DATA_DIR, image["file_name"])
    kept = R.spatialnet_predictor(f"spatialnet:{weights}:256")(rgb)
    every = R.spatialnet_predictor(f"spatialnet:{weights}:256:nonms")(rgb)
    assert len(every) > len(kept) > 0
    for kp, score in kept:  # NMS only removes: each kept person is one of the un-suppressed ones
        assert any(np.allclose(kp, ek, atol=1e-5) and score == pytest.approx(es) for ek, es in every)
