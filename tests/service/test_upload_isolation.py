"""Uploads belong to the API key that made them; the gateway's HTTP edges answer in JSON.

A real uvicorn gateway and real workers on real Redis; raw sockets where a client library
would refuse to send the malformed request.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import httpx

from posestream.service.messages import RedisKeys
from tests.service.clips import write_clip
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import wait_video

A, B = {"X-API-Key": "key-a"}, {"Authorization": "Bearer key-b"}


def _upload(client: httpx.Client, clip: Path, headers: dict[str, str], query: str = "") -> str:
    with open(clip, "rb") as fh:
        r = client.post(f"/v1/videos{query}", files={"file": ("clip.mp4", fh, "video/mp4")}, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_video_is_visible_only_to_the_key_that_uploaded_it(
    make_settings, redis_client, tmp_path: Path
) -> None:
    settings = make_settings(api_keys=["key-a", "key-b"])
    clip = write_clip(tmp_path / "clip.mp4", frames=8)
    with (
        WorkerThread(settings),
        ServerThread(settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        video_id = _upload(c, clip, A, "?render=true")
        missing = "0" * 32
        c.headers.update(A)
        assert wait_video(c, video_id)["status"] == "done"
        c.headers.clear()
        for method, path in (("GET", ""), ("GET", "/poses"), ("GET", "/render"), ("DELETE", "")):
            other = c.request(method, f"/v1/videos/{video_id}{path}", headers=B)
            absent = c.request(method, f"/v1/videos/{missing}{path}", headers=B)
            assert other.status_code == absent.status_code == 404, (method, path, other.text)
            # The same body as for an id that never existed, but for the id itself.
            assert other.json() == json.loads(absent.text.replace(missing, video_id)), (method, path)
            assert other.json()["error"]["code"] == "not_found"
        # The owner still has everything (B's DELETE did nothing).
        assert c.get(f"/v1/videos/{video_id}/poses", headers=A).status_code == 200
        assert c.get(f"/v1/videos/{video_id}/render", headers=A).status_code == 200
        # The status stores a hash of the key, never the key (checked while the video exists).
        stored = b"".join(
            redis_client.dump(k) or b"" for k in redis_client.scan_iter(settings.redis_prefix + "*")
        )
        assert hashlib.sha256(b"key-a").hexdigest().encode() in stored  # the owner is there, hashed
        assert b"key-a" not in stored
        assert c.delete(f"/v1/videos/{video_id}", headers=A).json() == {"id": video_id, "deleted": True}


def test_without_api_keys_every_client_sees_every_video(make_settings, redis_client, tmp_path: Path) -> None:
    settings = make_settings()
    keys = RedisKeys(settings.redis_prefix)
    with (
        WorkerThread(settings),
        ServerThread(settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        video_id = _upload(c, write_clip(tmp_path / "clip.mp4", frames=4), {"X-API-Key": "whatever"})
        assert wait_video(c, video_id)["status"] == "done"
        assert c.get(f"/v1/videos/{video_id}", headers={"X-API-Key": "another"}).status_code == 200
        assert c.delete(f"/v1/videos/{video_id}").status_code == 200
    assert redis_client.hget(keys.video(video_id), "owner") is None  # deleted


def test_docs_are_closed_when_api_keys_are_set_unless_opened(make_settings) -> None:
    cases = [
        (make_settings(), 200),
        (make_settings(api_keys=["k"]), 404),
        (make_settings(api_keys=["k"], docs_open=True), 200),
    ]
    for settings, expected in cases:
        with ServerThread(settings) as server:
            for path in ("/docs", "/redoc", "/openapi.json"):
                r = httpx.get(server.url + path, timeout=10, headers={"X-API-Key": "k"})
                assert r.status_code == expected, (settings.api_keys, settings.docs_open, path)
                if expected == 404:
                    assert r.json()["error"]["code"] == "not_found"


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        return b"".join(iter(lambda: s.recv(65536), b""))


def test_an_invalid_content_length_gets_the_json_error_body(make_settings) -> None:
    with ServerThread(make_settings()) as server:
        for length in (b"abc", b"-5", b"12, 13"):
            raw = _raw_request(
                server.port, b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nContent-Length: "
                + length + b"\r\n\r\nhello",
            )  # fmt: skip
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400"), raw
            assert b"content-type: application/json" in head.lower(), raw
            assert json.loads(body)["error"]["code"] == "bad_request", raw
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200  # still serving


def test_a_transfer_cut_by_a_dead_gateway_is_cleaned_up_at_start(
    make_settings, redis_client, tmp_path: Path
) -> None:
    settings = make_settings(upload_resume_interval_s=0.2)
    videos = Path(settings.data_dir) / "videos"
    partial = videos / ("cd" * 16)  # what a gateway killed mid-transfer leaves: input, no status, no lease
    partial.mkdir(parents=True)
    (partial / "input").write_bytes(write_clip(tmp_path / "clip.mp4", frames=6).read_bytes()[:3000])
    with (
        WorkerThread(settings),
        ServerThread(settings) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        deadline = time.monotonic() + 10
        while partial.exists():
            assert time.monotonic() < deadline, "the partial upload was not cleaned up"
            time.sleep(0.05)
        # A transfer still arriving (slow client) is not touched, however long it pauses.
        data = (tmp_path / "clip.mp4").read_bytes()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: video/mp4\r\n"
                      b"Content-Length: "
                      + str(len(data)).encode() + b"\r\n\r\n" + data[:1000])  # fmt: skip
            deadline = time.monotonic() + 5
            while not [p for p in videos.iterdir() if (p / "input").is_file()]:
                assert time.monotonic() < deadline, "the transfer did not start"
                time.sleep(0.02)
            time.sleep(5 * settings.upload_resume_interval_s)  # several cleanup scans
            s.sendall(data[1000:])
            head = b"".join(iter(lambda: s.recv(65536), b""))
        assert head.startswith(b"HTTP/1.1 202"), head
        slow_id = json.loads(head.partition(b"\r\n\r\n")[2])["id"]
        assert wait_video(c, slow_id)["frames_done"] == 6
        # A finished upload stays.
        video_id = _upload(c, tmp_path / "clip.mp4", {})
        assert wait_video(c, video_id)["status"] == "done"
        time.sleep(3 * settings.upload_resume_interval_s)
        assert (videos / video_id / "poses.jsonl").is_file()
        assert c.get(f"/v1/videos/{video_id}/poses").status_code == 200


def test_a_gateway_killed_mid_transfer_leaves_nothing_behind(make_settings, tmp_path: Path) -> None:
    import signal

    from tests.service.test_upload_resume import FAST_RESUME, GatewayProcess

    settings = make_settings(**FAST_RESUME)
    videos = Path(settings.data_dir) / "videos"
    data = write_clip(tmp_path / "clip.mp4", frames=6).read_bytes()
    first = GatewayProcess(settings, tmp_path / "gateway1.log")
    try:
        with socket.create_connection(("127.0.0.1", first.port), timeout=30) as s:
            s.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nContent-Length: "
                      + str(len(data)).encode() + b"\r\n\r\n" + data[:2000])  # fmt: skip
            deadline = time.monotonic() + 10
            while not [p for p in videos.iterdir() if (p / "input").is_file()]:
                assert time.monotonic() < deadline, "the transfer did not start"
                time.sleep(0.02)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
    finally:
        first.close()
    (partial,) = list(videos.iterdir())
    second = GatewayProcess(settings, tmp_path / "gateway2.log")
    try:
        deadline = time.monotonic() + 15  # once the dead gateway's transfer lease lapsed
        while partial.exists():
            assert time.monotonic() < deadline, "the partial upload was not cleaned up"
            time.sleep(0.05)
        assert httpx.get(f"{second.url}/v1/videos/{partial.name}", timeout=10).status_code == 404
    finally:
        second.close()
