"""Unambiguous tracklets on unlabelled video (``posestream.models.data.tracklets``), the same-frame-negatives triplet
loss and the clip ranges the real-clip fine-tuning reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posestream.models.data.real_clips import DataError, parse_clip_spec
from posestream.models.data.tracklets import TrackletConfig, tracklet_scores, unambiguous_tracklets
from posestream.models.poses import FramePoses
from posestream.models.temporal_loss import triplet_loss


def _frame(
    t: int, boxes: list[tuple[float, float, float, float]], scores: list[float] | None = None
) -> FramePoses:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    kp = np.zeros((len(b), 17, 3), np.float32)
    kp[:, :, 0] = (b[:, None, 0] + b[:, None, 2]) / 2
    kp[:, :, 1] = np.linspace(b[:, 1], b[:, 3], 17, axis=1)
    kp[:, :, 2] = 0.9
    s = np.asarray(scores if scores is not None else [0.8] * len(b), np.float32)
    return FramePoses(t, t / 10, 640, 480, kp, b, s, np.full(len(b), -1, np.int64))


def _walk(x0: float, dx: float, t: int) -> tuple[float, float, float, float]:
    x = x0 + dx * t
    return (x, 100.0, x + 40.0, 220.0)


def test_two_people_walking_apart_give_two_whole_tracklets() -> None:
    frames = [_frame(t, [_walk(100, -3, t), _walk(300, 3, t)]) for t in range(20)]
    labels = unambiguous_tracklets(frames)
    assert all(lab.tolist() == [0, 1] for lab in labels)


def test_people_who_meet_break_their_tracklets_instead_of_guessing() -> None:
    # Two people walk towards each other and cross at t = 10: near the crossing each box
    # overlaps both boxes of the previous frame, so no link is made there.
    frames = [_frame(t, [_walk(100, 10, t), _walk(300, -10, t)]) for t in range(21)]
    labels = unambiguous_tracklets(frames, TrackletConfig(min_length=3))
    assert labels[0].tolist() == [0, 1]
    ids = [set(lab.tolist()) - {-1} for lab in labels]
    before, after = ids[0], ids[-1]
    assert before.isdisjoint(after)  # nobody is carried through the crossing
    for t in range(1, 21):
        for j in range(2):  # a link never jumps from one person to the other
            if labels[t][j] >= 0 and labels[t][j] in labels[t - 1].tolist():
                assert labels[t - 1].tolist().index(labels[t][j]) == j


def test_low_scores_and_short_tracklets_are_left_out() -> None:
    frames = [_frame(t, [_walk(100, 2, t), _walk(400, 2, t)], [0.8, 0.1]) for t in range(10)]
    frames += [_frame(10 + t, [_walk(100, 2, 10 + t)]) for t in range(3)]
    labels = unambiguous_tracklets(frames, TrackletConfig(min_length=8))
    assert all(lab[0] == 0 for lab in labels)
    assert all(lab[1] == -1 for lab in labels[:10])  # person score 0.1 < min_score
    short = unambiguous_tracklets(frames[:5], TrackletConfig(min_length=8))
    assert all((lab == -1).all() for lab in short)


def test_tracklet_scores_count_switches_losses_and_fragments() -> None:
    tracklets = [np.array([0, 1])] * 4
    perfect = [np.array([5, 6])] * 4
    assert tracklet_scores(tracklets, perfect) == {
        "links": 6, "id_switches": 0, "lost": 0, "tracklets": 2, "fragmented": 0, "shared": 0,
        "ids_per_tracklet": 1.0,
    }  # fmt: skip
    swapped = [np.array([5, 6]), np.array([5, 6]), np.array([6, 5]), np.array([-1, 5])]
    s = tracklet_scores(tracklets, swapped)
    assert (s["id_switches"], s["lost"], s["fragmented"], s["shared"]) == (2, 1, 2, 1)


def test_tracklet_scores_count_an_id_shared_by_two_people_but_not_by_one_person_s_pieces() -> None:
    # tracklets 0 and 1 are together in frames 0-1 (two people); 2 starts after 0 ended (maybe
    # person 0 again). Id 7 on 1 and later on 0 is one id on two people; 0 and 2 sharing id 5 is not
    # counted (they never meet).
    tracklets = [np.array([0, 1]), np.array([0, 1]), np.array([-1, 1]), np.array([2, 1])]
    ids = [np.array([5, 7]), np.array([7, 8]), np.array([-1, 8]), np.array([5, 8])]
    s = tracklet_scores(tracklets, ids)
    assert s["shared"] == 1
    same_person_again = [np.array([5, 7]), np.array([5, 7]), np.array([-1, 7]), np.array([5, 7])]
    assert tracklet_scores(tracklets, same_person_again)["shared"] == 0


def test_triplet_negatives_mask_keeps_only_known_different_people() -> None:
    # anchor 0 and positive 1 (same tracklet) are far apart; 2 is close to the anchor but
    # belongs to another frame's tracklet, which may be the same person: with the mask it is
    # no negative and the loss is 0; 3 (same frame as the anchor) is far.
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.05], [-1.0, 0.0]]), dim=1)
    labels = torch.tensor([0, 0, 1, 2])
    frame = torch.tensor([0, 1, 1, 0])
    assert float(triplet_loss(e, labels, 0.3)) > 0
    same_frame = frame[:, None] == frame[None, :]
    same_frame[1, 2] = same_frame[2, 1] = False
    assert float(triplet_loss(e, labels, 0.3, negatives=same_frame)) == 0.0


def test_clip_specs() -> None:
    assert parse_clip_spec("vtest:400:") == ("vtest", 400, None, 1)
    assert parse_clip_spec("pose2sim/cam01:0::2") == ("pose2sim/cam01", 0, None, 2)
    assert parse_clip_spec("sports2d/demo") == ("sports2d/demo", 0, None, 1)
    for bad in ("nope:0:10", "vtest:10:5", "vtest:a", "vtest:0:10:0", "vtest:1:2:3:4"):
        with pytest.raises(DataError):
            parse_clip_spec(bad)


@pytest.mark.slow
@pytest.mark.weights
def test_real_clip_fine_tuning_is_resumable_and_records_a_learning_curve(
    temporalnet_checkpoint,
    tmp_path,  # noqa: ANN001
) -> None:
    """``posestream train temporal`` with real clips: stops, then resumes from ``work_dir/last.pt``
    (the real caches are reused), and the card keeps the held-out learning curve from step 0."""
    from posestream.models.data.real_clips import VTEST
    from posestream.models.train_temporal import load_temporal_config, train_temporal

    if not VTEST.resolved().is_file():
        pytest.skip(f"{VTEST.path} missing; install the Debian package opencv-doc")
    raw = {
        "init": str(temporalnet_checkpoint), "data": {"clips": 1, "frames": 8},
        "real": {"train": ["vtest:0:16"], "held_out": ["vtest:400:416"], "batch_size": 2, "eval_pairs": 6},
        "steps": 2, "batch_size": 2, "eval_every": 1, "work_dir": str(tmp_path / "work"),
        "out": str(tmp_path / "t.pt"),
    }  # fmt: skip
    _, first = train_temporal(load_temporal_config(None, raw), progress=False)
    assert first["steps_done"] == 2 and (tmp_path / "work" / "last.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "work").glob("real_*.pt")) == [
        "real_vtest_0_16.pt",
        "real_vtest_400_416.pt",
    ]
    _, card = train_temporal(load_temporal_config(None, {**raw, "steps": 4}), progress=False)
    assert card["steps_done"] == 4
    steps = [h["step"] for h in card["history"]]
    assert steps[0] == 0 and "real_reid" in card["history"][0] and steps == sorted(steps)
    assert card["history"][: len(first["history"]) - 1] == first["history"][:-1]  # the curve carries over
    assert card["real_clips"]["held_out"] == ["vtest:400:416"] and card["init"]["path"] == str(
        temporalnet_checkpoint
    )
