"""``/v1/videos`` against a real uvicorn gateway, a real worker and real Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from posestream.models.data.video import iter_video_frames
from posestream.models.poses import loads_frame
from tests.service.clips import write_clip
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import lane_ids, wait_video


def _upload(client: httpx.Client, path: Path, name: str = "clip.mp4", query: str = "") -> httpx.Response:
    with open(path, "rb") as fh:
        return client.post(f"/v1/videos{query}", files={"file": (name, fh, "video/mp4")})


def test_upload_yields_one_result_line_per_frame_and_a_rendering(stack: ServerThread, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=36)
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        r = _upload(client, clip, query="?render=true")
        assert r.status_code == 202, r.text
        body = r.json()
        assert set(body) == {"id", "status_url"} and body["status_url"] == f"/v1/videos/{body['id']}"
        status = wait_video(client, body["id"])
        assert status == {
            "id": body["id"],
            "status": "done",
            "frames_done": 36,
            "frames_total": 36,
            "error": None,
            "warnings": [],
        }

        r = client.get(f"/v1/videos/{body['id']}/poses")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = r.text.splitlines()
        assert len(lines) == 36
        frames = [loads_frame(line) for line in lines]  # every line follows the pose contract
        assert [f.frame_index for f in frames] == list(range(36))
        assert all(len(f) == 3 for f in frames)
        ids = lane_ids([json.loads(line) for line in lines])
        assert all(len(v) == 1 for v in ids.values()), ids  # one id per shape for the whole clip

        r = client.get(f"/v1/videos/{body['id']}/render")
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        rendered = tmp_path / "out.mp4"
        rendered.write_bytes(r.content)
        assert sum(1 for _ in iter_video_frames(rendered)) == 36

        assert client.delete(f"/v1/videos/{body['id']}").json() == {"id": body["id"], "deleted": True}
        r = client.get(f"/v1/videos/{body['id']}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_upload_as_raw_body_and_render_not_requested(stack: ServerThread, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        r = client.post("/v1/videos", content=clip.read_bytes(), headers={"content-type": "video/mp4"})
        assert r.status_code == 202, r.text
        assert wait_video(client, r.json()["id"])["frames_done"] == 10
        r = client.get(f"/v1/videos/{r.json()['id']}/render")
        assert r.status_code == 404 and r.json()["error"]["code"] == "render_not_requested"


def test_results_are_not_ready_while_queued(make_settings, tmp_path: Path) -> None:
    # No worker: the upload is accepted and waits; nothing is dropped or invented.
    with ServerThread(make_settings()) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        r = _upload(client, write_clip(tmp_path / "clip.mp4", frames=5))
        video_id = r.json()["id"]
        r = client.get(f"/v1/videos/{video_id}/poses")
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_ready"
        with WorkerThread(server.settings):  # a worker arriving later processes everything
            assert wait_video(client, video_id)["frames_done"] == 5


def test_bad_uploads_get_their_documented_errors_and_the_server_keeps_serving(
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings(max_upload_bytes=200_000)
    clip = write_clip(tmp_path / "clip.mp4", frames=12)
    data = clip.read_bytes()
    (tmp_path / "junk.mp4").write_bytes(b"this is not a video at all" * 100)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "big.mp4").write_bytes(b"\0" * 300_000)
    cases = [
        ("junk.mp4", 400, "invalid_video"),
        ("empty.mp4", 400, "empty_upload"),
        ("truncated.mp4", 400, "invalid_video"),
        ("big.mp4", 413, "upload_too_large"),
    ]
    with (
        WorkerThread(settings),
        ServerThread(settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        for name, status, code in cases:
            r = _upload(client, tmp_path / name, name)
            assert r.status_code == status, (name, r.text)
            assert r.json()["error"]["code"] == code, (name, r.json())
            assert r.json()["error"]["message"]
        r = client.post("/v1/videos", files={"other": ("x", b"abc")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "missing_file"
        r = client.post("/v1/videos", content=b"{}", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        r = client.get("/v1/videos/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = client.get("/v1/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        # Nothing of the rejected uploads is left on disk.
        assert list((Path(settings.data_dir) / "videos").iterdir()) == []
        # The server still serves a valid upload.
        r = _upload(client, clip)
        assert r.status_code == 202
        assert wait_video(client, r.json()["id"])["frames_done"] == 12


def test_truncated_streamable_video_keeps_what_was_decoded(stack: ServerThread, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mkv", frames=40)
    data = clip.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 6 // 10])
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        r = _upload(client, tmp_path / "cut.mkv", "cut.mkv", query="?render=true")
        assert r.status_code == 202
        status = wait_video(client, r.json()["id"])
        assert status["status"] == "done" and 0 < status["frames_done"] < 40, status
        # The MKV states no frame count; its duration (40 frames at 25 fps) is what gives it away.
        (warning,) = status["warnings"]
        assert warning["code"] == "truncated_input" and warning["declared_by"] == "duration", warning
        assert warning["declared_frames"] == 40 and warning["decoded_frames"] == status["frames_done"], (
            warning
        )
        lines = client.get(f"/v1/videos/{r.json()['id']}/poses").text.splitlines()
        assert len(lines) == status["frames_done"]
        rendered = client.get(f"/v1/videos/{r.json()['id']}/render")  # the decoded part renders
        assert rendered.status_code == 200, rendered.text
        (tmp_path / "rendered.mp4").write_bytes(rendered.content)
        assert sum(1 for _ in iter_video_frames(tmp_path / "rendered.mp4")) == len(lines)


def test_api_keys_on_http(make_settings, tmp_path: Path) -> None:
    settings = make_settings(api_keys=["sekrit"])
    with ServerThread(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.get("/v1/videos/" + "0" * 32)
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        r = client.get("/v1/videos/" + "0" * 32, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        for headers in ({"Authorization": "Bearer sekrit"}, {"X-API-Key": "sekrit"}):
            r = client.get("/v1/videos/" + "0" * 32, headers=headers)
            assert r.status_code == 404, r.text  # authorised; the video just does not exist
        assert client.get("/healthz").status_code == 200  # probes need no key


def test_health_readiness_and_metrics(make_settings) -> None:
    settings = make_settings()
    with ServerThread(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_workers"
        with WorkerThread(settings):
            deadline = time.monotonic() + 5
            while (r := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert r.status_code == 200 and r.json()["workers"] == 1
            text = client.get("/metrics").text
        for name in (
            "posestream_frames_in_total", "posestream_frames_out_total", "posestream_frames_dropped_total",
            "posestream_queue_depth", "posestream_stage_latency_seconds_bucket", "posestream_active_sessions",
            "posestream_workers_alive 1.0",
        ):  # fmt: skip
            assert name in text, name
    with ServerThread(make_settings(redis_url="redis://127.0.0.1:1/0")) as server:
        r = httpx.get(server.url + "/readyz", timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "redis_unavailable"
