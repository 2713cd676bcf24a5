"""Tests of posestream.tracker.metrics: COCO AP (pycocotools), CLEAR MOT / IDF1 and PoseTrack per-joint
MOTA (py-motmetrics) on ground truth built here with numpy."""

import contextlib
import io
import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posestream.models.geometry import keypoint_similarity, oks_matrix
from posestream.models.poses import FramePoses, write_jsonl
from posestream.models.skeleton import KEYPOINT_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS, OKS_SIGMAS
from posestream.tracker.metrics import EvalConfig, evaluate, format_report

REPO = Path(__file__).resolve().parents[2]
W, H = 640, 480
T = 30  # frames

# A standing, front-facing person in units of body height; origin between the feet,
# x to the image right, y down. The person's left is on the image right.
_TEMPLATE = np.array(
    [
        [0.0, -0.93],  # nose
        [0.02, -0.95], [-0.02, -0.95],  # eyes
        [0.045, -0.935], [-0.045, -0.935],  # ears
        [0.11, -0.82], [-0.11, -0.82],  # shoulders
        [0.14, -0.64], [-0.14, -0.64],  # elbows
        [0.15, -0.47], [-0.15, -0.47],  # wrists
        [0.07, -0.52], [-0.07, -0.52],  # hips
        [0.075, -0.28], [-0.075, -0.28],  # knees
        [0.075, -0.04], [-0.075, -0.04],  # ankles
    ]
)  # fmt: skip
_SWING = np.zeros(NUM_KEYPOINTS)  # forward/back swing of limbs while walking, +-1 left/right
for _name, _amp in (("elbow", 0.03), ("wrist", 0.06), ("knee", 0.04), ("ankle", 0.08)):
    _SWING[KEYPOINT_INDEX[f"left_{_name}"]] = _amp
    _SWING[KEYPOINT_INDEX[f"right_{_name}"]] = -_amp

# (track id, body height px, x at frame 0, feet y, x velocity px/frame, first frame, last frame)
PEOPLE = {
    "A": (7, 200.0, 100.0, 420.0, 6.0, 0, 29),
    "B": (3, 170.0, 560.0, 400.0, -5.0, 0, 29),
    "C": (11, 120.0, 320.0, 200.0, 2.0, 4, 27),  # small (COCO "medium" area); unlabelled in frames 26-27
}


def _pose(height, x, y, t):
    xy = _TEMPLATE * height
    xy[:, 0] += _SWING * height * np.sin(0.4 * t)
    return xy + (x, y)


def make_gt() -> list[FramePoses]:
    """Three people walking; visibility codes include occluded (1) and absent (0) joints."""
    frames = []
    for t in range(T):
        kps, boxes, ids = [], [], []
        for name, (tid, height, x0, y, vx, first, last) in PEOPLE.items():
            if not first <= t <= last:
                continue
            xy = _pose(height, x0 + vx * t, y, t)
            vis = np.full(NUM_KEYPOINTS, 2.0)
            if name == "A" and 10 <= t <= 19:
                vis[KEYPOINT_INDEX["right_wrist"]] = 1  # occluded but labelled
            if name == "A" and t == 3:
                vis[KEYPOINT_INDEX["nose"]] = 0
            if name == "B" and 5 <= t <= 9:
                vis[KEYPOINT_INDEX["left_ankle"]] = 0
            if name == "C" and t >= 26:
                vis[:] = 0  # walked behind something: present, nothing labelled
            # The box covers the whole person, labelled or not (10 % margin).
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            m = 0.1 * (hi - lo)
            boxes.append([*(lo - m), *(hi + m)])
            kp = np.concatenate([xy, vis[:, None]], axis=1)
            kp[vis == 0, :2] = 0.0  # COCO writes absent keypoints as (0, 0, 0)
            kps.append(kp)
            ids.append(tid)
        n = len(ids)
        frames.append(
            FramePoses(
                t, t / 25.0, W, H, np.array(kps).reshape(n, NUM_KEYPOINTS, 3), np.array(boxes).reshape(n, 4),
                np.ones(n), np.array(ids, dtype=np.int64),
            )
        )  # fmt: skip
    return frames


def _assert_plain(obj) -> None:
    """Only Python scalars, strings, None, lists and dicts: what json.dumps takes without help."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert type(key) is str
            _assert_plain(value)
    elif isinstance(obj, list):
        for value in obj:
            _assert_plain(value)
    else:
        assert obj is None or type(obj) in (bool, int, float, str), (obj, type(obj))


def _labelled(frame: FramePoses) -> np.ndarray:
    return (frame.keypoints[:, :, 2] > 0).any(axis=1)


def _num_objects(frames) -> int:
    return int(sum(_labelled(f).sum() for f in frames))


def _replace_ids(frame: FramePoses, mapping: dict[int, int]) -> FramePoses:
    return frame.with_track_ids(
        np.array([mapping.get(int(i), int(i)) for i in frame.track_ids], dtype=np.int64)
    )


def _drop(frame: FramePoses, track_id: int) -> FramePoses:
    return frame.select(frame.track_ids != track_id)


def _jitter(frames, alpha: float, seed: int) -> list[FramePoses]:
    """Gaussian noise of per-axis sigma alpha * sqrt(box area) on every keypoint; scores 0.9."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        kp = f.keypoints.copy()
        scale = np.sqrt((f.boxes[:, 2] - f.boxes[:, 0]) * (f.boxes[:, 3] - f.boxes[:, 1]))
        kp[:, :, :2] += rng.normal(size=kp[:, :, :2].shape) * (alpha * scale)[:, None, None]
        kp[:, :, 2] = np.where(f.keypoints[:, :, 2] > 0, 0.9, 0.0)
        out.append(
            FramePoses(f.frame_index, f.timestamp, f.width, f.height, kp, f.boxes, f.scores, f.track_ids)
        )
    return out


@pytest.fixture(scope="module")
def gt() -> list[FramePoses]:
    return make_gt()


# ----------------------------------------------------------------------------- sanity


@pytest.mark.filterwarnings("error")  # a library deprecation on our path should fail here first
def test_ground_truth_against_itself_is_perfect(gt):
    r = evaluate(gt, gt)
    json.dumps(r, allow_nan=False)  # plain, JSON-safe values only
    assert _num_objects(gt) == 30 + 30 + 22
    for key in ("AP", "AP50", "AP75", "APm", "APl", "AR", "ARm", "ARl"):
        assert r[key] == 1.0, key
    for key in ("MOTA", "IDF1", "precision", "recall", "MOTP"):
        assert r[key] == 1.0, key
    assert (r["num_switches"], r["num_false_positives"], r["num_misses"]) == (0, 0, 0)
    assert r["num_objects"] == 82 and r["num_frames"] == T and r["mostly_tracked"] == 3
    pt = r["posetrack"]
    assert pt["MOTA"] == 1.0 and pt["precision"] == 1.0 and pt["recall"] == 1.0 and pt["num_switches"] == 0
    assert set(pt["per_joint"]) == set(KEYPOINT_NAMES)
    assert all(v["MOTA"] == 1.0 for v in pt["per_joint"].values())
    # C's two unlabelled frames: ignored in ground truth; their copies carry no keypoint at all.
    assert r["counts"]["gt_people_unlabelled"] == 2 and r["counts"]["pred_people_empty"] == 2
    _assert_plain(r)
    report = format_report(r)
    assert "MOTA" in report and "100.0" in report and "Total" in report


def test_prediction_on_unlabelled_person_is_ignored_and_stray_one_is_a_false_positive(gt):
    pred = []
    for f in gt:
        if f.frame_index in (26, 27):  # C is present but unlabelled: predict it where it really is
            tid, height, x0, y, vx, *_ = PEOPLE["C"]
            kp = np.concatenate(
                [_pose(height, x0 + vx * f.frame_index, y, f.frame_index), np.full((17, 1), 0.8)], 1
            )
            keep = _labelled(f)
            f = FramePoses(
                f.frame_index, f.timestamp, W, H, np.concatenate([f.keypoints[keep], kp[None]]),
                np.concatenate([f.boxes[keep], f.boxes[~keep]]), np.ones(3), np.array([7, 3, 99]),
            )  # fmt: skip
        pred.append(f)
    r = evaluate(gt, pred)
    assert r["counts"]["pred_people_ignored"] == 2
    assert r["AP"] == 1.0 and r["MOTA"] == 1.0 and r["posetrack"]["MOTA"] == 1.0

    # A person far from everybody in one frame is one false positive (17 joint false positives).
    stray = gt[5].keypoints[:1].copy()
    stray[:, :, 0] += 40.0 - stray[:, :, 0].min()
    stray[:, :, 1] += 20.0 - stray[:, :, 1].min()
    f5 = gt[5]
    pred[5] = FramePoses(
        5, f5.timestamp, W, H, np.concatenate([f5.keypoints, stray]), np.concatenate([f5.boxes, f5.boxes[:1]]),
        np.append(f5.scores, 0.5), np.append(f5.track_ids, 500),
    )  # fmt: skip
    r = evaluate(gt, pred)
    assert r["num_false_positives"] == 1
    assert r["MOTA"] == pytest.approx(1 - 1 / 82)
    assert r["precision"] == pytest.approx(82 / 83)
    assert sum(v["num_false_positives"] for v in r["posetrack"]["per_joint"].values()) == 17
    # COCO's interpolated precision: a false positive ranked after every true one costs no AP,
    # one ranked first does.
    assert r["AP"] == 1.0
    pred[5] = FramePoses(5, f5.timestamp, W, H, pred[5].keypoints, pred[5].boxes,
                         np.append(f5.scores, 2.0), pred[5].track_ids)  # fmt: skip
    assert evaluate(gt, pred)["AP"] < 1.0


# ----------------------------------------------------------------------------- identities


@pytest.mark.parametrize("k", [1, 12, 20])
def test_swapping_two_tracks_from_frame_k_counts_two_switches(gt, k):
    a, b = PEOPLE["A"][0], PEOPLE["B"][0]
    pred = [_replace_ids(f, {a: b, b: a}) if f.frame_index >= k else f for f in gt]
    r = evaluate(gt, pred)
    # motmetrics: at frame k, A's previous hypothesis is now on B (too far to match A), so the
    # optimal assignment pairs A with B's old hypothesis and vice versa: one switch each.
    assert r["num_switches"] == 2
    assert r["MOTA"] == pytest.approx(1 - 2 / 82)
    # IDF1: the best global identity map keeps the longer half of A and B, C is intact.
    idtp = 2 * max(k, T - k) + 22
    assert r["IDF1"] == pytest.approx(2 * idtp / (82 + 82))
    assert r["AP"] == 1.0  # poses are untouched
    pt = r["posetrack"]
    # Every joint of A and B is labelled at frame k, so every joint type switches twice.
    assert pt["num_switches"] == 2 * NUM_KEYPOINTS
    for name, v in pt["per_joint"].items():
        assert v["num_switches"] == 2, name
        assert v["MOTA"] == pytest.approx(1 - 2 / v["num_objects"]), name


def test_untracked_predictions_get_fresh_ids_every_frame(gt):
    pred = [f.with_track_ids(np.full(len(f), -1)) for f in gt]
    r = evaluate(gt, pred)
    # Every labelled appearance after a person's first is matched to a never-seen id.
    assert r["num_switches"] == 82 - 3
    assert r["MOTA"] == pytest.approx(3 / 82)
    assert r["AP"] == 1.0
    assert r["counts"]["pred_people_untracked"] == sum(len(f) for f in gt) - 2


# ----------------------------------------------------------------------------- misses


def test_dropping_a_person_in_some_frames_lowers_recall_exactly(gt):
    b = PEOPLE["B"][0]
    dropped = range(10, 15)
    pred = [_drop(f, b) if f.frame_index in dropped else f for f in gt]
    r = evaluate(gt, pred)
    assert r["num_misses"] == 5 and r["num_false_positives"] == 0
    assert r["num_switches"] == 0  # B's track resumes under its old id: no switch
    assert r["MOTA"] == pytest.approx(1 - 5 / 82)
    assert r["recall"] == pytest.approx(77 / 82)
    assert r["precision"] == 1.0
    assert r["IDF1"] == pytest.approx(2 * 77 / (82 + 77))
    # COCO: every detection is a true positive, so AR is the recall at every OKS threshold,
    # and AP is the share of the 101 recall thresholds that are reached (0.00 ... 0.93).
    assert r["AR"] == pytest.approx(77 / 82)
    assert r["AP"] == pytest.approx(np.sum(np.linspace(0, 1, 101) <= 77 / 82 + 1e-12) / 101)
    # PoseTrack: per joint, the misses are B's labelled joints in the dropped frames.
    for j, name in enumerate(KEYPOINT_NAMES):
        v = r["posetrack"]["per_joint"][name]
        missed = sum(
            int(f.keypoints[f.track_ids == b, j, 2].item() > 0) for f in gt if f.frame_index in dropped
        )
        total = sum(int((f.keypoints[_labelled(f), j, 2] > 0).sum()) for f in gt)
        assert (v["num_misses"], v["num_objects"]) == (missed, total), name
        assert v["recall"] == pytest.approx(1 - missed / total)
        assert v["MOTA"] == pytest.approx(1 - missed / total)
    recalls = [v["recall"] for v in r["posetrack"]["per_joint"].values()]
    assert r["posetrack"]["recall"] == pytest.approx(np.mean(recalls))


def test_gt_frame_without_prediction_line_counts_as_misses(gt):
    pred = [f for f in gt if f.frame_index != 0]
    r = evaluate(gt, pred)
    assert r["num_misses"] == 2 and r["counts"]["pred_frames"] == T - 1


# ----------------------------------------------------------------------------- localisation


def test_jitter_lowers_ap_monotonically_by_a_plausible_amount(gt):
    alphas = (0.0, 0.01, 0.02, 0.03, 0.04, 0.06)
    results = [evaluate(gt, _jitter(gt, alpha, seed=0)) for alpha in alphas]
    aps = [r["AP"] for r in results]
    assert aps[0] == 1.0 and aps[1] >= 0.99  # ~1 px of noise on these people
    assert all(a > b for a, b in itertools.pairwise(aps[1:]))
    # Measured (seed 0: 1.000, 0.952, 0.857, 0.744, 0.532) with a margin: a regression band.
    for ap, (lo, hi) in zip(aps[2:], [(0.90, 0.99), (0.80, 0.92), (0.68, 0.82), (0.45, 0.62)], strict=True):
        assert lo <= ap <= hi
    # Plausibility from theory: with per-axis noise alpha * s, the expected keypoint similarity
    # is 1 / (1 + alpha^2 / (2 sigma_i)^2); AP is close to the share of the OKS thresholds
    # 0.50 ... 0.95 below the mean of that expectation.
    thresholds = np.linspace(0.5, 0.95, 10)
    for alpha, ap in zip(alphas, aps, strict=True):
        expected_oks = np.mean(1 / (1 + alpha**2 / (2 * OKS_SIGMAS) ** 2))
        assert abs(ap - np.mean(thresholds < expected_oks)) <= 0.1, alpha
    # Poses stay close enough to their person for tracking (every match keeps OKS >= 0.5),
    # while per-joint PCKh matching starts to miss joints.
    assert [r["MOTA"] for r in results] == [1.0] * len(alphas)
    pt = [r["posetrack"]["MOTA"] for r in results]
    assert pt[0] == 1.0 and all(a >= b for a, b in itertools.pairwise(pt)) and pt[-1] < 0.5


def test_oks_matrix_equals_cocoeval(gt):
    from posestream.tracker.metrics.coco import _run_cocoeval
    from posestream.tracker.metrics.pairing import _pair_frames, _prepare

    pred = _jitter(gt, 0.03, seed=1)
    pairs = _pair_frames(gt, pred)
    frames, _ = _prepare(pairs, EvalConfig())
    with contextlib.redirect_stdout(io.StringIO()):
        ev = _run_cocoeval(frames, {f.frame_index: (W, H) for f in gt}, EvalConfig())
    checked = 0
    for f in frames:
        ious = ev.ious[(f.index, 1)]
        if len(ious) == 0:
            continue
        order = np.argsort(-f.pred_scores, kind="mergesort")  # COCOeval's detection order
        ours = oks_matrix(f.gt_keypoints, f.pred_keypoints[order], f.gt_areas, ref_boxes=f.gt_boxes)
        np.testing.assert_allclose(ours.T, ious, rtol=1e-9, atol=1e-12)
        checked += 1
    assert checked == T
    # The unlabelled-person rule (distance outside the 3x-grown box) agrees too:
    g = gt[26]
    unl = ~_labelled(g)
    p = g.keypoints[unl].copy()
    p[:, :, :2] = [[5.0, 5.0]]
    area = np.prod(g.boxes[unl, 2:] - g.boxes[unl, :2], axis=1)
    x1, y1, x2, y2 = g.boxes[unl][0]
    dx = max(0, (x1 - (x2 - x1)) - 5.0)
    dy = max(0, (y1 - (y2 - y1)) - 5.0)
    expected = np.mean(np.exp(-(dx**2 + dy**2) / (2 * OKS_SIGMAS) ** 2 / area / 2))
    assert oks_matrix(g.keypoints[unl], p, area, ref_boxes=g.boxes[unl])[0, 0] == pytest.approx(expected)


def test_coco_numbers_equal_cocoeval_summarize(gt):
    from posestream.tracker.metrics.coco import _run_cocoeval
    from posestream.tracker.metrics.pairing import _pair_frames, _prepare

    pred = _jitter(gt, 0.02, seed=2)
    r = evaluate(gt, pred)
    frames, _ = _prepare(_pair_frames(gt, pred), EvalConfig())
    with contextlib.redirect_stdout(io.StringIO()):
        ev = _run_cocoeval(frames, {f.frame_index: (W, H) for f in gt}, EvalConfig())
        ev.summarize()  # hard-codes maxDets=20 for keypoints, our default
    keys = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
    assert [r[k] for k in keys] == pytest.approx(list(ev.stats[:10]))
    assert 0.0 < r["AP"] < 1.0 and r["APm"] is not None and r["APl"] is not None


def test_max_detections_is_applied(gt):
    # Frame 0: A is predicted with the lowest score of 25 people (24 false positives far above
    # everybody score higher). COCOeval sees only the top max_detections of a frame.
    f0 = gt[0]
    copies = np.repeat(f0.keypoints[:1], 25, axis=0)
    copies[1:, :, 0] += np.arange(1, 25)[:, None] * 10.0
    copies[1:, :, 1] -= 250.0
    pred = list(gt)
    pred[0] = FramePoses(
        0, 0.0, W, H, np.concatenate([copies, f0.keypoints[1:]]),
        np.concatenate([np.repeat(f0.boxes[:1], 25, 0), f0.boxes[1:]]),
        np.concatenate([[0.1], np.linspace(0.9, 0.5, 24), f0.scores[1:]]),
        np.concatenate([np.arange(100, 125), f0.track_ids[1:]]),
    )  # fmt: skip
    capped = evaluate(gt, pred, EvalConfig(max_detections=20))
    full = evaluate(gt, pred, EvalConfig(max_detections=100))
    assert capped["AR"] == pytest.approx(81 / 82)  # A in frame 0 was cut off
    assert full["AR"] == 1.0
    assert capped["counts"]["frames_over_max_detections"] == 1
    # The tracking metrics see every prediction: 24 false positives either way.
    assert full["num_false_positives"] == capped["num_false_positives"] == 24


# ----------------------------------------------------------------------------- motmetrics proof


def _tiny_case_frames():
    """Two people, six frames; predictions placed exactly on a person or far from everybody.

    frames 0-1: gt 1, 2 <- hyp 10, 20      frames 2-3: gt 1, 2 <- hyp 20, 10 (swapped)
    frame 4: gt 1 only, no prediction      frame 5: no gt, one stray prediction (id 50)
    """
    p1 = np.concatenate([_pose(180, 150, 400, 0), np.full((17, 1), 2.0)], axis=1)
    p2 = np.concatenate([_pose(180, 450, 400, 0), np.full((17, 1), 2.0)], axis=1)
    stray = p1.copy()
    stray[:, 0] += 300 - 150 + 0
    stray[:, 1] -= 200
    box = lambda kp: [*kp[:, :2].min(0), *kp[:, :2].max(0)]  # noqa: E731
    gt, pred = [], []
    for t in range(6):
        g = [(1, p1), (2, p2)] if t < 4 else [(1, p1)] if t == 4 else []
        if t < 2:
            p = [(10, p1), (20, p2)]
        elif t < 4:
            p = [(20, p1), (10, p2)]
        else:
            p = [(50, stray)] if t == 5 else []
        for people, out in ((g, gt), (p, pred)):
            out.append(
                FramePoses(
                    t, t / 25, W, H, np.array([kp for _, kp in people]).reshape(-1, 17, 3),
                    np.array([box(kp) for _, kp in people]).reshape(-1, 4), np.ones(len(people)),
                    np.array([i for i, _ in people], dtype=np.int64),
                )
            )  # fmt: skip
    return gt, pred


@pytest.mark.filterwarnings("error")
def test_motmetrics_numbers_by_hand():
    """The compatibility proof: motmetrics 1.4 on this NumPy/pandas gives the hand-computed numbers.

    Objects: 2+2+2+2+1 = 9. Misses 1 (frame 4), false positives 1 (frame 5), switches 2
    (frame 2: both objects change hypothesis). MOTA = 1 - (1+1+2)/9 = 5/9.
    IDF1: best identity map gt1<->10, gt2<->20 gives IDTP 2+2 = 4 over 9 gt and 9 predicted
    detections: 2*4/18 = 4/9. Precision = recall = 8/9. MOTP distance 0 (exact poses).
    """
    import motmetrics

    from posestream.tracker.metrics.mot import _motmetrics_summary

    acc = motmetrics.MOTAccumulator(auto_id=False)
    nan = np.nan
    acc.update([1, 2], [10, 20], [[0.0, nan], [nan, 0.0]], frameid=0)
    acc.update([1, 2], [10, 20], [[0.0, nan], [nan, 0.0]], frameid=1)
    acc.update([1, 2], [20, 10], [[0.0, nan], [nan, 0.0]], frameid=2)
    acc.update([1, 2], [20, 10], [[0.0, nan], [nan, 0.0]], frameid=3)
    acc.update([1], [], np.empty((1, 0)), frameid=4)
    acc.update([], [50], np.empty((0, 1)), frameid=5)
    s = _motmetrics_summary(acc, ["mota", "idf1", "num_switches", "precision", "recall", "num_misses",
                                  "num_false_positives", "num_objects", "motp", "num_frames"])  # fmt: skip
    assert s["mota"] == pytest.approx(5 / 9) and s["idf1"] == pytest.approx(4 / 9)
    assert s["precision"] == pytest.approx(8 / 9) and s["recall"] == pytest.approx(8 / 9)
    assert (s["num_switches"], s["num_misses"], s["num_false_positives"]) == (2, 1, 1)
    assert (s["num_objects"], s["num_frames"], s["motp"]) == (9, 6, 0.0)
    assert all(type(v) in (int, float) for v in s.values())

    # The same case through evaluate(), with poses instead of distances.
    gt, pred = _tiny_case_frames()
    r = evaluate(gt, pred)
    assert r["MOTA"] == pytest.approx(5 / 9) and r["IDF1"] == pytest.approx(4 / 9)
    assert (r["num_switches"], r["num_misses"], r["num_false_positives"]) == (2, 1, 1)
    assert r["precision"] == pytest.approx(8 / 9) and r["recall"] == pytest.approx(8 / 9)
    pt = r["posetrack"]  # every joint behaves like the person: same numbers per joint
    assert pt["MOTA"] == pytest.approx(5 / 9) and pt["num_switches"] == 2 * NUM_KEYPOINTS


# ----------------------------------------------------------------------------- input checks


def test_bad_inputs_raise_clear_errors(gt):
    extra = FramePoses.empty(99, 4.0, W, H)
    with pytest.raises(ValueError, match="frame_index 99"):
        evaluate(gt, [*gt, extra])
    with pytest.raises(ValueError, match="frame 3: prediction frame size 320x240"):
        evaluate(gt, [FramePoses.empty(3, 0.0, 320, 240)])
    dup = gt[0].with_track_ids(np.array([5, 5]))
    with pytest.raises(ValueError, match="track_id 5 is given to two people"):
        evaluate(gt, [dup])
    scored = _jitter(gt, 0.0, seed=0)
    with pytest.raises(ValueError, match="visibility codes 0/1/2"):
        evaluate(scored, gt)
    with pytest.raises(ValueError, match="track_id >= 0"):
        evaluate([gt[0].with_track_ids(np.array([-1, 3]))], [])
    with pytest.raises(ValueError, match="no frames"):
        evaluate([], [])
    for bad in ({"mot_oks_threshold": 0.0}, {"pckh_threshold": -1}, {"max_detections": 0}, {"area_scale": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EvalConfig(**bad)


def test_pred_min_score_drops_low_people(gt):
    pred = [FramePoses(f.frame_index, f.timestamp, W, H, f.keypoints, f.boxes,
                       np.where(f.track_ids == PEOPLE["C"][0], 0.2, 1.0), f.track_ids) for f in gt]  # fmt: skip
    r = evaluate(gt, pred, EvalConfig(pred_min_score=0.5))
    assert r["num_misses"] == 22 and r["counts"]["pred_people_below_min_score"] == 24


# ----------------------------------------------------------------------------- CLI


def test_cli_end_to_end(gt, tmp_path, capsys):
    from posestream.service.cli import main

    write_jsonl(tmp_path / "gt.jsonl", gt)
    write_jsonl(tmp_path / "pred.jsonl", gt)
    argv = ["eval", "--gt", str(tmp_path / "gt.jsonl"), "--pred", str(tmp_path / "pred.jsonl")]
    assert main([*argv, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["AP"] == 1.0 and r["MOTA"] == 1.0 and r["IDF1"] == 1.0 and r["posetrack"]["MOTA"] == 1.0
    assert main(argv) == 0
    assert "MOTA" in capsys.readouterr().out


def test_cli_bad_input_exits_2(gt, tmp_path, capsys):
    from posestream.service.cli import main

    write_jsonl(tmp_path / "gt.jsonl", gt)
    assert main(["eval", "--gt", str(tmp_path / "gt.jsonl"), "--pred", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"frame_index": 0, "timestamp": 0, "width": 640, "height": 480, "poses": []}\n{oops\n')
    assert main(["eval", "--gt", str(tmp_path / "gt.jsonl"), "--pred", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "not valid JSON" in err
    shifted = [FramePoses.empty(100, 0.0, W, H)]
    write_jsonl(tmp_path / "shifted.jsonl", shifted)
    assert main(["eval", "--gt", str(tmp_path / "gt.jsonl"), "--pred", str(tmp_path / "shifted.jsonl")]) == 2
    assert "frame_index 100" in capsys.readouterr().err


def test_evaluation_does_not_import_torch():
    code = (
        "import sys, numpy as np, posestream.tracker.metrics as e\n"
        "from posestream.models.poses import FramePoses\n"
        "kp = np.stack([np.arange(17) * 3.0 + 10, np.arange(17) * 5.0 + 10, np.full(17, 2.0)], 1)[None]\n"
        "f = FramePoses(0, 0.0, 640, 480, kp, [[0, 0, 100, 100]], [1.0], [1])\n"
        "assert abs(e.evaluate([f], [f])['AP'] - 1.0) < 1e-12\n"  # COCOeval: tp / (tp + eps)
        "assert {'pycocotools', 'motmetrics'} <= set(sys.modules)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_untracked_warning_only_when_some_predictions_are_tracked(gt, caplog):
    """A detection-only evaluation (no track ids at all) logs at INFO; a partly tracked one warns."""
    untracked = [f.with_track_ids(np.full(len(f), -1)) for f in gt]
    with caplog.at_level(logging.INFO, logger="posestream.tracker.metrics"):
        evaluate(gt, untracked)
    records = [r for r in caplog.records if "no track id" in r.getMessage()]
    assert records and all(r.levelno == logging.INFO for r in records)
    caplog.clear()
    partly = [f.with_track_ids(np.full(len(f), -1)) if i % 2 else f for i, f in enumerate(gt)]
    with caplog.at_level(logging.INFO, logger="posestream.tracker.metrics"):
        evaluate(gt, partly)
    assert any(r.levelno == logging.WARNING and "no track id" in r.getMessage() for r in caplog.records)


def test_keypoint_similarity_is_what_oks_averages():
    rng = np.random.default_rng(3)
    gt = np.concatenate([rng.uniform(0, 100, (1, 17, 2)), np.full((1, 17, 1), 2.0)], axis=2)
    pred = gt + np.concatenate([rng.normal(0, 4, (1, 17, 2)), np.zeros((1, 17, 1))], axis=2)
    area = np.array([5000.0])
    terms = keypoint_similarity(((pred[0, :, :2] - gt[0, :, :2]) ** 2).sum(axis=1), area[0])
    assert terms.shape == (17,) and np.all((terms > 0) & (terms < 1))
    assert oks_matrix(gt, pred, area, ref_boxes=np.array([[0, 0, 100, 100]]))[0, 0] == pytest.approx(
        terms.mean()
    )
    assert keypoint_similarity(np.zeros(17), 5000.0) == pytest.approx(np.ones(17))
