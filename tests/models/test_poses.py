import io
import json

import numpy as np
import pytest

from posestream.models.poses import (
    FramePoses,
    PoseFormatError,
    boxes_from_keypoints,
    dumps_frame,
    loads_frame,
    read_jsonl,
    write_jsonl,
)


def _frame(i, n, rng):
    kp = rng.uniform(0, 500, size=(n, 17, 3)).round(2)
    kp[..., 2] = rng.integers(0, 3, size=(n, 17))
    return FramePoses(
        i, i / 25.0, 640, 480, kp, boxes_from_keypoints(kp), rng.uniform(size=n).round(4), np.arange(n) + 3
    )


def test_jsonl_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = [_frame(i, n, rng) for i, n in enumerate([0, 1, 5, 2])]
    path = tmp_path / "p.jsonl"
    assert write_jsonl(path, frames) == 4
    back = read_jsonl(path)
    assert len(back) == 4
    for a, b in zip(frames, back, strict=True):
        assert (a.frame_index, a.width, a.height) == (b.frame_index, b.width, b.height)
        assert a.timestamp == pytest.approx(b.timestamp)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=0.006)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.006)
        np.testing.assert_array_equal(a.track_ids, b.track_ids)
        assert b.keypoints.dtype == np.float32 and b.track_ids.dtype == np.int64


def test_wire_format_matches_contract():
    rng = np.random.default_rng(1)
    obj = json.loads(dumps_frame(_frame(7, 1, rng)))
    assert set(obj) == {"frame_index", "timestamp", "width", "height", "poses"}
    pose = obj["poses"][0]
    assert set(pose) == {"track_id", "score", "box", "keypoints"}
    assert len(pose["keypoints"]) == 17 and all(len(k) == 3 for k in pose["keypoints"])


def test_extra_fields_survive():
    f = FramePoses.empty(0, 0.0, 10, 10)
    f = FramePoses(0, 0.0, 10, 10, f.keypoints, f.boxes, f.scores, f.track_ids, {"dropped": 3})
    assert loads_frame(dumps_frame(f)).extra == {"dropped": 3}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ("[1,2]", "must be a JSON object"),
        ('{"frame_index": 0, "timestamp": 0, "width": 5, "height": 5}', "missing field 'poses'"),
        ('{"frame_index": 0.5, "timestamp": 0, "width": 5, "height": 5, "poses": []}', "integer"),
        ('{"frame_index": 0, "timestamp": 0, "width": 0, "height": 5, "poses": []}', "positive"),
        (
            '{"frame_index": 0, "timestamp": 0, "width": 5, "height": 5, "poses": [{"keypoints": [[1,2,3]]}]}',
            "shape (17, 3)",
        ),
        (
            '{"frame_index": 0, "timestamp": 0, "width": 5, "height": 5, "poses": [{"keypoints": "x"}]}',
            "not a numeric array",
        ),
    ],
)
def test_malformed_lines_raise_clear_errors(line, message):
    with pytest.raises(PoseFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loads_frame(line)


def test_reader_names_line_and_checks_order():
    good = dumps_frame(FramePoses.empty(1, 0.0, 4, 4))
    with pytest.raises(PoseFormatError, match=r"<stream>:3: not valid JSON"):
        read_jsonl(io.StringIO(good + "\n\n{oops\n"))
    with pytest.raises(PoseFormatError, match="does not increase"):
        read_jsonl(io.StringIO(good + "\n" + good + "\n"))


def test_missing_box_is_derived_from_keypoints():
    kp = [[float(10 + i), float(20 + 2 * i), 2.0] for i in range(17)]
    obj = {"frame_index": 0, "timestamp": 0, "width": 100, "height": 100, "poses": [{"keypoints": kp}]}
    f = FramePoses.from_dict(obj)
    np.testing.assert_allclose(f.boxes[0], [10, 20, 26, 52])
    assert f.track_ids[0] == -1


def _with_tracker_arrays(n=3, e=4):
    rng = np.random.default_rng(5)
    frame = _frame(0, n, rng)
    return FramePoses(
        frame.frame_index, frame.timestamp, frame.width, frame.height, frame.keypoints, frame.boxes,
        frame.scores, frame.track_ids, {"dropped": 1},
        embeddings=rng.normal(size=(n, e)), sie=rng.normal(size=(n, 17, 2)), tie_fwd=rng.normal(size=(n, 17, 2)),
        tie_bwd=rng.normal(size=(n, 17, 2)), tags=rng.normal(size=(n, 17)),
    )  # fmt: skip


def test_tracker_arrays_are_validated_and_normalised():
    f = _with_tracker_arrays()
    np.testing.assert_allclose(np.linalg.norm(f.embeddings, axis=1), 1.0, rtol=1e-6)
    assert f.embeddings.dtype == np.float32 and f.embedding_dim == 4
    assert f.tags.shape == (3, 17, 1) and f.tag_dim == 1  # (N, 17) is D = 1
    assert f.sie.dtype == np.float32 and f.sie.shape == (3, 17, 2)
    plain = FramePoses.empty(0, 0.0, 640, 480)
    assert plain.embeddings is None and plain.embedding_dim == 0 and plain.tag_dim == 0
    kp, boxes, scores = f.keypoints, f.boxes, f.scores
    with pytest.raises(PoseFormatError, match=r"sie must have shape \(3, 17, 2\)"):
        FramePoses(0, 0.0, 640, 480, kp, boxes, scores, sie=np.zeros((2, 17, 2)))
    with pytest.raises(PoseFormatError, match="tie_bwd contains NaN"):
        FramePoses(0, 0.0, 640, 480, kp, boxes, scores, tie_bwd=np.full((3, 17, 2), np.nan))
    with pytest.raises(PoseFormatError, match="all-zero HE"):
        FramePoses(0, 0.0, 640, 480, kp, boxes, scores, embeddings=np.zeros((3, 4)))
    with pytest.raises(PoseFormatError, match=r"\(N, 0\)"):
        FramePoses(0, 0.0, 640, 480, kp, boxes, scores, embeddings=np.zeros((3, 0)))
    with pytest.raises(PoseFormatError, match=r"scores must have shape \(3,\)"):
        FramePoses(0, 0.0, 640, 480, kp, boxes, scores[:2])
    # Without track ids every person is untracked.
    assert FramePoses(0, 0.0, 640, 480, kp, boxes, scores).track_ids.tolist() == [-1, -1, -1]


def test_tracker_arrays_are_kept_by_select_and_with_track_ids_but_not_written():
    f = _with_tracker_arrays()
    picked = f.select(np.array([2, 0]))
    for name in (
        "keypoints",
        "boxes",
        "scores",
        "track_ids",
        "embeddings",
        "sie",
        "tie_fwd",
        "tie_bwd",
        "tags",
    ):
        np.testing.assert_array_equal(getattr(picked, name), getattr(f, name)[[2, 0]])
    assert picked.extra == {"dropped": 1}
    assert len(f.select(np.array([False, True, False]))) == 1
    tracked = f.with_track_ids(np.array([7, 8, 9]))
    assert tracked.track_ids.tolist() == [7, 8, 9] and f.track_ids.tolist() == [3, 4, 5]
    # The HE rows are the same bytes (not normalised again).
    assert tracked.embeddings.tobytes() == f.embeddings.tobytes()
    assert picked.embeddings.tobytes() == f.embeddings[[2, 0]].tobytes()
    with pytest.raises(PoseFormatError, match="track_ids"):
        f.with_track_ids(np.array([1, 2]))
    # The wire carries only the contract: the same line as without the tracker arrays.
    bare = FramePoses(f.frame_index, f.timestamp, f.width, f.height, f.keypoints, f.boxes, f.scores,
                      np.array([7, 8, 9]), {"dropped": 1})  # fmt: skip
    assert dumps_frame(tracked) == dumps_frame(bare)
    assert set(json.loads(dumps_frame(tracked))["poses"][0]) == {"track_id", "score", "box", "keypoints"}
