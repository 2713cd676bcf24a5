"""Exports (``posestream.service.exports``) read back by the tools of each format, the CLI, and the HTTP route.

COCO through pycocotools (a file scored against itself has AP 1.0), MOT through motmetrics
(MOTA 1.0 against itself), PoseTrack through a reader that checks the 2018 schema, CSV through
the csv module; the HTTP route through a real gateway, worker and Redis.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from posestream.models.poses import FramePoses, loads_frame, read_jsonl, write_jsonl
from posestream.models.skeleton import KEYPOINT_INDEX, KEYPOINT_NAMES
from posestream.service.exports import EXPORT_FORMATS, POSETRACK_KEYPOINT_NAMES, iter_export
from posestream.service.settings import Settings
from posestream.tracker.config import TrackerConfig
from posestream.tracker.state import TrackerState
from posestream.tracker.step import step
from posestream.tracker.synthetic import SimPerson, simulate
from tests.service.clips import write_clip
from tests.service.conftest import ServerThread
from tests.service.helpers import POSESTREAM, wait_video

ROOT = Path(__file__).resolve().parents[2]
# motmetrics 1.4.0's MOT reader shifts the corners with a tuple, which pandas 3 deprecates (harmless).
pytestmark = pytest.mark.filterwarnings("ignore:Operation with tuple is deprecated")


@pytest.fixture(scope="module")
def tracked() -> list[FramePoses]:
    """40 tracked frames of 3 people; person 2 enters at frame 10 (tentative, id -1, for two
    frames); some joints below the keypoint threshold; frame 30 has nobody."""
    people = [
        SimPerson(0, start=(200, 300), velocity=(3, 0)),
        SimPerson(1, start=(900, 350), velocity=(-2, 1)),
        SimPerson(2, start=(600, 200), visible=((10, 30), (31, 40))),
    ]
    state, out = TrackerState.initial(), []
    for n, frame in enumerate(simulate(people, 40, fields=(), missing_joint_rate=0.1, seed=1)):
        dets = frame.detections if n != 30 else FramePoses.empty(30, 1.0, 1280, 720)
        state, poses = step(state, dets, TrackerConfig(preset="oks"))
        out.append(poses)
    assert any((f.track_ids < 0).any() for f in out) and any((f.keypoints[:, :, 2] < 0.2).any() for f in out)
    return out


def export(fmt: str, frames: list[FramePoses], **kw: Any) -> str:
    return "".join(iter_export(fmt, lambda: iter(frames), **kw))


def person_frames(frames: list[FramePoses], tracked_only: bool = False) -> int:
    return sum(int((f.track_ids >= 0).sum()) if tracked_only else len(f) for f in frames)


def coco_self_ap(path: Path) -> float:
    """Keypoint AP of a COCO file's annotations scored against the file itself."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dt = gt.loadRes(json.loads(path.read_text())["annotations"])
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def iou_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - IoU of (N, 4) and (M, 4) [x, y, w, h] boxes, NaN above 0.5 (motmetrics' convention for no match).

    Our own: motmetrics 1.4.0's ``distances.iou_matrix`` calls ``np.asfarray``, gone in NumPy 2."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    union = a[:, None, 2:].prod(axis=2) + b[None, :, 2:].prod(axis=2) - inter
    d = 1.0 - inter / union
    return np.where(d <= 0.5, d, np.nan)


def mot_self_mota(path: Path) -> tuple[Any, float]:
    """The MOT file as motmetrics reads it, and its MOTA scored against itself."""
    import motmetrics as mm

    table = mm.io.loadtxt(str(path), fmt="mot15-2D")
    acc = mm.MOTAccumulator(auto_id=False)
    for frame, rows in table.groupby(level="FrameId"):
        ids = rows.index.get_level_values("Id").to_numpy()
        boxes = rows[["X", "Y", "Width", "Height"]].to_numpy(float)
        acc.update(ids, ids, iou_distance(boxes, boxes), frameid=frame)
    summary = mm.metrics.create().compute(acc, metrics=["mota", "num_switches"], name="self")
    return table, float(summary["mota"].iloc[0])


def check_posetrack18(doc: Any) -> None:
    """The PoseTrack 2018 annotation-file schema, as its evaluation (poseval) reads it."""
    assert set(doc) == {"images", "annotations", "categories"}
    (cat,) = doc["categories"]
    assert cat["name"] == "person" and cat["id"] == 1 and len(cat["keypoints"]) == 17
    ids = set()
    for im in doc["images"]:
        for key, kind in (("id", int), ("frame_id", int), ("vid_id", str), ("file_name", str),
                          ("nframes", int), ("is_labeled", bool)):  # fmt: skip
            assert isinstance(im[key], kind), (key, im)
        assert im["nframes"] == len(doc["images"])
        ids.add(im["id"])
    seen: set[tuple[int, int]] = set()
    for ann in doc["annotations"]:
        assert ann["image_id"] in ids and ann["category_id"] == 1
        assert isinstance(ann["track_id"], int) and ann["track_id"] >= 0
        assert (ann["image_id"], ann["track_id"]) not in seen  # one pose per track and frame
        seen.add((ann["image_id"], ann["track_id"]))
        kp = ann["keypoints"]
        assert len(kp) == 51 and all(isinstance(v, (int, float)) for v in kp) and set(kp[2::3]) <= {0, 2}
        assert len(ann["scores"]) == 17 and len(ann["bbox"]) == 4


def test_coco_loads_in_pycocotools_and_scores_ap_1_against_itself(tracked, tmp_path: Path) -> None:
    path = tmp_path / "poses.coco.json"
    path.write_text(export("coco", tracked))
    doc = json.loads(path.read_text())
    assert [im["id"] for im in doc["images"]] == [f.frame_index + 1 for f in tracked]  # empty frame 30 too
    assert len(doc["annotations"]) == person_frames(tracked)
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    assert doc["categories"][0]["keypoints"] == list(KEYPOINT_NAMES)
    # Track ids and joints as tracked: the annotations are the frames' people in order.
    anns = iter(doc["annotations"])
    for f in tracked:
        for i in range(len(f)):
            a = next(anns)
            assert a["image_id"] == f.frame_index + 1 and a["track_id"] == int(f.track_ids[i])
            kp = np.array(a["keypoints"], float).reshape(17, 3)
            vis = f.keypoints[i, :, 2] > 0.2
            np.testing.assert_allclose(kp[vis, :2], f.keypoints[i, vis, :2], atol=0.006)
            assert (kp[vis, 2] == 2).all() and (kp[~vis] == 0).all() and a["num_keypoints"] == vis.sum()
            np.testing.assert_allclose(a["keypoint_scores"], f.keypoints[i, :, 2], atol=1e-4)
    assert coco_self_ap(path) == pytest.approx(1.0)


def test_mot_loads_in_motmetrics_with_mota_1_against_itself(tracked, tmp_path: Path) -> None:
    path = tmp_path / "poses.mot.txt"
    path.write_text(export("mot", tracked))
    table, mota = mot_self_mota(path)
    assert len(table) == person_frames(tracked, tracked_only=True)  # the untracked (-1) left out
    assert mota == pytest.approx(1.0)
    first = tracked[0]
    row = table.loc[(1, int(first.track_ids[0]))]
    x1, y1, x2, y2 = first.boxes[0]
    assert (row["X"], row["Y"], row["Width"], row["Height"]) == pytest.approx(
        (x1, y1, x2 - x1, y2 - y1), abs=0.01
    )


def test_posetrack_follows_the_2018_schema_with_the_head_joints_absent(tracked) -> None:
    doc = json.loads(export("posetrack", tracked, video="clip7"))
    check_posetrack18(doc)
    assert doc["categories"][0]["keypoints"] == list(POSETRACK_KEYPOINT_NAMES)
    assert POSETRACK_KEYPOINT_NAMES[1:3] == ("head_bottom", "head_top")
    assert len(doc["annotations"]) == person_frames(tracked, tracked_only=True)
    assert (
        doc["images"][0]["vid_id"] == "clip7" and doc["images"][0]["file_name"] == "images/clip7/000000.jpg"
    )
    ann, f = doc["annotations"][0], tracked[0]
    kp = np.array(ann["keypoints"], float).reshape(17, 3)
    assert (kp[1:3] == 0).all() and ann["scores"][1:3] == [0, 0]  # not predicted: not guessed
    for slot, name in enumerate(POSETRACK_KEYPOINT_NAMES):
        if name in KEYPOINT_INDEX and f.keypoints[0, KEYPOINT_INDEX[name], 2] > 0.2:
            np.testing.assert_allclose(kp[slot, :2], f.keypoints[0, KEYPOINT_INDEX[name], :2], atol=0.006)


def test_csv_has_one_row_per_person_and_frame(tracked) -> None:
    rows = list(csv.DictReader(io.StringIO(export("csv", tracked))))
    assert len(rows) == person_frames(tracked)
    assert list(rows[0])[:8] == ["frame_index", "timestamp", "track_id", "score", "x1", "y1", "x2", "y2"]
    assert len(rows[0]) == 8 + 17 * 3
    f = tracked[-1]
    last = rows[-len(f) :]
    for i, row in enumerate(last):
        assert int(row["frame_index"]) == f.frame_index and int(row["track_id"]) == int(f.track_ids[i])
        assert float(row["left_wrist_x"]) == pytest.approx(
            f.keypoints[i, KEYPOINT_INDEX["left_wrist"], 0], abs=0.006
        )


def test_unknown_format_is_refused_before_reading() -> None:
    def never() -> list[FramePoses]:
        raise AssertionError("read")

    with pytest.raises(
        ValueError, match="unknown export format 'bvh'; choose one of coco, posetrack, csv, mot"
    ):
        iter_export("bvh", never)


# ---- CLI -------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POSESTREAM, "export", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_cli_writes_every_format_next_to_the_input(tracked, tmp_path: Path) -> None:
    src = tmp_path / "walk.poses.jsonl"
    write_jsonl(src, tracked)
    for fmt in EXPORT_FORMATS.values():
        proc = cli(str(src), "--format", fmt.name)
        assert proc.returncode == 0, proc.stderr
        out = tmp_path / f"walk{fmt.suffix}"
        # The same bytes as the library writes from the frames as read back from the file.
        assert out.read_text() == export(fmt.name, read_jsonl(src), video="walk")
    assert coco_self_ap(tmp_path / "walk.coco.json") == pytest.approx(1.0)
    proc = cli(str(src), "--format", "mot", "--out", "-")
    assert proc.returncode == 0 and proc.stdout == (tmp_path / "walk.mot.txt").read_text()


def test_cli_errors_have_exit_code_2_and_write_nothing(tracked, tmp_path: Path) -> None:
    src = tmp_path / "poses.jsonl"
    write_jsonl(src, tracked[:5])
    proc = cli(str(src), "--format", "bvh")
    assert proc.returncode == 2 and "invalid choice: 'bvh'" in proc.stderr
    proc = cli(str(tmp_path / "missing.jsonl"), "--format", "coco")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    lines = src.read_text().splitlines()
    lines[2] = lines[2][:-5]  # a truncated line 3
    src.write_text("\n".join(lines) + "\n")
    for fmt in ("coco", "csv"):
        out = tmp_path / f"out.{fmt}"
        proc = cli(str(src), "--format", fmt, "--out", str(out))
        assert proc.returncode == 2, proc.stderr
        assert f"{src}:3: not valid JSON" in proc.stderr and "nothing written" in proc.stderr
        assert not out.exists() and not list(tmp_path.glob(".out.*"))


# ---- HTTP ------------------------------------------------------------------------------------


def test_http_exports_of_an_upload(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    from tests.service.conftest import WorkerThread

    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    settings = make_settings()
    with (
        WorkerThread(settings),
        ServerThread(settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        with open(clip, "rb") as fh:
            video = c.post("/v1/videos", files={"file": ("clip.mp4", fh, "video/mp4")}).json()["id"]
        assert wait_video(c, video)["status"] == "done"
        frames = [loads_frame(line) for line in c.get(f"/v1/videos/{video}/poses").text.splitlines()]
        assert len(frames) == 30 and c.get(f"/v1/videos/{video}/poses?format=jsonl").text.count("\n") == 30
        for fmt in EXPORT_FORMATS.values():
            r = c.get(f"/v1/videos/{video}/poses", params={"format": fmt.name})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith(fmt.media_type)
            assert r.headers["content-disposition"] == f'attachment; filename="{video}{fmt.suffix}"'
            assert r.text == export(fmt.name, frames, video=video)
            (tmp_path / f"http{fmt.suffix}").write_text(r.text)
        assert coco_self_ap(tmp_path / "http.coco.json") == pytest.approx(1.0)
        assert mot_self_mota(tmp_path / "http.mot.txt")[1] == pytest.approx(1.0)
        check_posetrack18(json.loads((tmp_path / "http.posetrack.json").read_text()))

        r = c.get(f"/v1/videos/{video}/poses", params={"format": "bvh"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
        assert "format" in r.json()["error"]["message"] and "'coco'" in r.json()["error"]["message"]
        r = c.get("/v1/videos/0123456789abcdef/poses", params={"format": "coco"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_http_export_of_an_unfinished_upload_is_409(gateway: ServerThread, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    with httpx.Client(base_url=gateway.url, timeout=30) as c:  # no worker: the upload stays queued
        with open(clip, "rb") as fh:
            video = c.post("/v1/videos", files={"file": ("clip.mp4", fh, "video/mp4")}).json()["id"]
        r = c.get(f"/v1/videos/{video}/poses", params={"format": "mot"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_ready"
