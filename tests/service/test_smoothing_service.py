"""Keypoint smoothing wired through the service: ``posestream track --smooth`` and ``Settings.smooth`` on a worker."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from posestream.models.poses import FramePoses, loads_frame, read_jsonl
from posestream.service.pipeline import pipeline_from_settings
from posestream.service.settings import Settings
from tests.service.clips import write_clip
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import POSESTREAM, wait_video

ROOT = Path(__file__).resolve().parents[2]


def by_track(frames: list[FramePoses]) -> dict[tuple[int, int], np.ndarray]:
    """(frame index, track id) -> (17, 3) keypoints."""
    return {
        (f.frame_index, int(tid)): f.keypoints[i]
        for f in frames
        for i, tid in enumerate(f.track_ids)
        if tid >= 0
    }


def assert_smoothed(raw: list[FramePoses], smooth: list[FramePoses]) -> None:
    """Same people and ids, the first sighting as detected, later (x, y) changed, scores as detected."""
    a, b = by_track(raw), by_track(smooth)
    assert a.keys() == b.keys() and len(a) > 30
    first = {}
    for frame, tid in sorted(a):
        first.setdefault(tid, frame)
    changed = 0
    for key, kp in a.items():
        np.testing.assert_array_equal(kp[:, 2], b[key][:, 2])
        if key[0] == first[key[1]]:
            np.testing.assert_array_equal(kp, b[key])
        else:
            changed += not np.array_equal(kp[:, :2], b[key][:, :2])
    assert changed > len(a) // 2  # the shapes move every frame: the filter's output differs


def test_track_smooth_flag(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=24)
    outs = {}
    for name, extra in (("raw", []), ("smooth", ["--smooth"])):
        outs[name] = tmp_path / f"{name}.jsonl"
        proc = subprocess.run(
            [*POSESTREAM, "track", str(clip), "--model", "blobs", "--out", str(outs[name]), "-q", *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert_smoothed(read_jsonl(outs["raw"]), read_jsonl(outs["smooth"]))


def test_smooth_setting_and_its_parameters_reach_the_tracker(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().smooth is False
    assert pipeline_from_settings(Settings(model="blobs")).tracker_config.smooth is False
    monkeypatch.setenv("POSESTREAM_SMOOTH", "true")
    monkeypatch.setenv("POSESTREAM_TRACKER_OVERRIDES__SMOOTH_BETA", "0.25")
    config = pipeline_from_settings(Settings(model="blobs")).tracker_config
    assert config.smooth is True and config.smooth_beta == 0.25
    monkeypatch.setenv("POSESTREAM_TRACKER_OVERRIDES__SMOOTH_MIN_CUTOFF", "0")
    with pytest.raises(ValueError, match="smooth_min_cutoff"):
        Settings(model="blobs")


def test_an_upload_on_a_smoothing_worker_is_smoothed(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    results = {}
    plain = make_settings()
    with ServerThread(plain) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for name, settings in (("raw", plain), ("smooth", make_settings(smooth=True))):
            with WorkerThread(settings, pipeline_from_settings(settings)):
                with open(clip, "rb") as fh:
                    r = client.post("/v1/videos", files={"file": ("clip.mp4", fh, "video/mp4")})
                assert r.status_code == 202, r.text
                video = r.json()["id"]
                assert wait_video(client, video)["status"] == "done"
            r = client.get(f"/v1/videos/{video}/poses")
            results[name] = [loads_frame(line) for line in r.text.splitlines()]
    assert_smoothed(results["raw"], results["smooth"])


def test_a_live_session_smooths_the_same_across_a_change_of_worker(
    make_settings: Callable[..., Settings],
) -> None:
    """Worker 1 smooths frames 0-19 and stops; a new worker 2 (nothing in common but Redis) smooths
    20-39 of the resumed session: the keypoints equal those of one worker doing all 40."""
    from posestream.service.stream_client import run_stream
    from tests.service.clips import jpeg, shapes_frame

    settings = make_settings(smooth=True)
    hello = {"fps": 25, "width": 320, "height": 240, "mode": "ordered"}

    def image(i: int) -> bytes:
        return jpeg(shapes_frame(i))

    def frames(results: list[dict]) -> list[FramePoses]:
        keys = ("frame_index", "timestamp", "width", "height", "poses")
        return [FramePoses.from_dict({k: r[k] for k in keys}) for r in results]

    def keypoints(results: list[dict]) -> list[tuple[int, list]]:
        return [(r["frame_index"], [(p["track_id"], p["keypoints"]) for p in r["poses"]]) for r in results]

    with ServerThread(settings) as server:
        url = server.ws_url + "/v1/streams"
        with WorkerThread(settings, pipeline_from_settings(settings)):
            whole = asyncio.run(run_stream(url, hello, image, 40))
            first = asyncio.run(run_stream(url, hello, image, 20))
        assert len(whole.results) == 40 and len(first.results) == 20
        with WorkerThread(settings, pipeline_from_settings(settings)):
            rest = asyncio.run(
                run_stream(url, hello, image, 20, session=first.ready["session"], ack=first.last_seq)
            )
    assert [r["frame_index"] for r in rest.results] == list(range(20, 40))
    assert keypoints(first.results + rest.results) == keypoints(whole.results)
    with ServerThread(settings) as server, WorkerThread(settings, pipeline_from_settings(make_settings())):
        plain = asyncio.run(run_stream(server.ws_url + "/v1/streams", hello, image, 40))
    assert_smoothed(frames(plain.results), frames(whole.results))  # it did smooth
