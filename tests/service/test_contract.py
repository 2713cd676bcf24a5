"""The gateway <-> worker message contract, settings, and the gateway's torch-freedom."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from posestream.models.poses import FramePoses, loads_frame
from posestream.service.messages import FrameJob, FrameResult, RedisKeys, VideoStatus, VideoWarning
from posestream.service.settings import Settings


def test_frame_job_round_trips_through_redis_fields(redis_client, make_settings) -> None:
    keys = RedisKeys(make_settings().redis_prefix)
    job = FrameJob(
        session="s1",
        seq=3,
        frame_index=17,
        timestamp=0.68,
        width=320,
        height=240,
        image=b"\xff\xd8\xff\x00\x01",
    )
    entry_id = redis_client.xadd(keys.jobs, job.to_fields())
    ((_, fields),) = redis_client.xrange(keys.jobs, entry_id, entry_id)
    assert FrameJob.from_fields(fields) == job
    live = job.model_copy(update={"max_age_ms": 1500})
    assert FrameJob.from_fields(live.to_fields()).max_age_ms == 1500
    # A job queued before live budgets existed has no budget.
    older = {k: v for k, v in fields.items() if k != b"max_age_ms"}
    assert FrameJob.from_fields(older) == job and job.max_age_ms == 0


def test_live_budget_counts_from_the_frames_arrival(make_settings) -> None:
    import time

    s = make_settings(live_max_age_ms=2000)
    assert 1900 <= s.live_budget_ms(time.time() - 0.05) <= 1950
    assert s.live_budget_ms(time.time() - 10) == 1  # spent in the gateway: expires when a worker takes it
    assert make_settings(live_max_age_ms=0).live_budget_ms(time.time() - 10) == 0  # no budget


def test_frame_result_carries_the_json_lines_frame() -> None:
    poses = FramePoses(4, 0.16, 64, 48, np.ones((1, 17, 3)), [[1, 2, 3, 4]], [0.9], [7])
    result = FrameResult.from_poses(4, poses, enqueued_at=1.0, started_at=2.0, finished_at=3.0, worker="w")
    back = FrameResult.from_fields({k.encode(): v.encode() for k, v in result.to_fields().items()})
    assert back == result
    assert loads_frame(back.frame).track_ids.tolist() == [7]


def test_video_status_round_trip_and_public_shape() -> None:
    warning = VideoWarning(code="truncated_input", message="m", declared_frames=40, declared_by="frame_count",
                           decoded_frames=20)  # fmt: skip
    status = VideoStatus(
        id="a" * 32, status="running", frames_done=3, frames_total=9, render=True, collected=True,
        warnings=[warning], owner="f" * 64,
    )  # fmt: skip
    back = VideoStatus.from_fields({k.encode(): v.encode() for k, v in status.to_fields().items()})
    assert back == status
    assert set(back.public()) == {"id", "status", "frames_done", "frames_total", "error", "warnings"}
    assert back.public()["warnings"][0]["declared_frames"] == 40
    # A hash written before ``collected``, ``warnings`` and ``owner`` existed still reads.
    old = {k: v for k, v in status.to_fields().items() if k not in ("collected", "warnings", "owner")}
    assert VideoStatus.from_fields(old) == status.model_copy(
        update={"collected": False, "warnings": [], "owner": ""}
    )


def test_malformed_job_is_rejected() -> None:
    with pytest.raises(KeyError):
        FrameJob.from_fields({b"session": b"s"})
    with pytest.raises(ValidationError):
        FrameJob(session="", seq=-1, frame_index=0, timestamp=0, width=1, height=1, image=b"")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSESTREAM_API_KEYS", "k1, k2")
    monkeypatch.setenv("POSESTREAM_REDIS_URL", "redis://example:6380/2")
    monkeypatch.setenv("POSESTREAM_BATCH_SIZE", "16")
    s = Settings()
    assert s.api_keys == ["k1", "k2"] and s.redis_url == "redis://example:6380/2" and s.batch_size == 16
    monkeypatch.setenv("POSESTREAM_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="batch_size"):
        Settings()


def test_incoherent_upload_lease_settings_fail_with_the_fields_named() -> None:
    with pytest.raises(
        ValidationError, match="upload_lease_renew_ms must be at most half of upload_lease_ms"
    ):
        Settings(upload_lease_ms=1000, upload_lease_renew_ms=600)
    with pytest.raises(ValidationError, match="results_maxlen must be larger than upload_inflight"):
        Settings(results_maxlen=32, upload_inflight=32)
    with pytest.raises(ValidationError, match="worker_metrics_port"):
        Settings(worker_metrics_port=70000)


def test_every_setting_is_described() -> None:
    missing = [name for name, f in Settings.model_fields.items() if not f.description]
    assert not missing


def test_gateway_does_not_import_torch() -> None:
    code = "import sys, posestream.service.gateway.app, posestream.service.cli; posestream.service.gateway.app.create_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_a_result_line_names_why_a_frame_has_no_poses() -> None:
    from posestream.service.gateway.relay import result_line

    empty = json.dumps({"frame_index": 3, "poses": []})
    codes = {
        "": None,
        "frame_lost: the job of seq 3 was lost before processing": "frame_lost",
        "frame_expired: the frame waited 2400 ms in the queue": "frame_expired",
        "undecodable image": "frame_failed",
    }
    for error, code in codes.items():
        line = json.loads(result_line(FrameResult(seq=3, frame=empty, error=error)))
        assert line.get("error", {}).get("code") == code and line["frame_index"] == 3
