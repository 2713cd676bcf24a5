"""The error-analysis benchmark's per-person breakdowns count what they say."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks.spatialnet_errors import joint_terms, matched_people, mirror_confusion  # noqa: E402
from posestream.models.poses import FramePoses, boxes_from_keypoints, write_jsonl  # noqa: E402
from posestream.models.skeleton import KEYPOINT_INDEX  # noqa: E402

# A frontal person 200 px tall, feet wide apart.
PERSON = np.array([
    [100, 20], [95, 15], [105, 15], [90, 18], [110, 18], [80, 50], [120, 50], [70, 85], [130, 85],
    [65, 120], [135, 120], [88, 120], [112, 120], [80, 165], [120, 165], [60, 210], [140, 210],
], np.float32)  # fmt: skip


def _frame(kp: np.ndarray) -> FramePoses:
    kp = kp[None]
    return FramePoses(
        0, 0.0, 320, 240, kp, boxes_from_keypoints(kp), np.ones(1, np.float32), np.zeros(1, np.int64)
    )


def test_duplicates_and_swaps_are_counted_per_pair(tmp_path):
    gt = np.concatenate([PERSON, np.full((17, 1), 2.0, np.float32)], axis=1)
    pred = gt.copy()
    lw, rw, la, ra = (KEYPOINT_INDEX[n] for n in ("left_wrist", "right_wrist", "left_ankle", "right_ankle"))
    pred[lw, :2] = gt[rw, :2]  # both wrists on the right wrist
    pred[[la, ra], :2] = gt[[ra, la], :2]  # ankles swapped
    write_jsonl(tmp_path / "gt.jsonl", [_frame(gt)])
    write_jsonl(tmp_path / "pred.jsonl", [_frame(pred)])
    matched = matched_people(tmp_path / "gt.jsonl", tmp_path / "pred.jsonl")
    assert len(matched) == 1
    counts = mirror_confusion(matched)
    assert counts["wrist"] == {"pairs": 1, "duplicates": 1, "swaps": 0}
    assert counts["ankle"] == {"pairs": 1, "duplicates": 0, "swaps": 1}
    others = {k: c for k, c in counts.items() if k not in ("wrist", "ankle")}
    assert all(c["duplicates"] == c["swaps"] == 0 for c in others.values()), others
    assert counts["hip"]["pairs"] == 0  # 24 px apart: within OKS reach of each other, so not counted
    terms = joint_terms(matched)
    assert min(terms["head"][2]) == pytest.approx(1.0)  # untouched joints are placed perfectly
    assert min(terms["wrists"][2]) < 0.1  # the misplaced left wrist
