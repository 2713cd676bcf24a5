"""The worker's own Prometheus endpoint: a real ``posestream worker`` process, scraped over HTTP."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from posestream.service.messages import FrameJob, RedisKeys
from posestream.service.settings import Settings
from tests.service.clips import jpeg, shapes_frame
from tests.service.conftest import free_port
from tests.service.helpers import POSESTREAM, settings_env

ROOT = Path(__file__).resolve().parents[2]


def _worker(settings: Settings, port: int) -> subprocess.Popen:
    cmd = [
        *POSESTREAM,
        "worker",
        "--model",
        "blobs",
        "--tracker",
        "iou",
        "--id",
        "metered",
        "--metrics-port",
        str(port),
    ]
    env = settings_env(settings, "heartbeat_interval_s", "heartbeat_ttl_s", "lease_ms", "claim_idle_ms")
    env["POSESTREAM_WORKER_METRICS_ADDR"] = "127.0.0.1"
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _job(session: str, seq: int, image: bytes | None = None) -> dict:
    return FrameJob(
        session=session, seq=seq, frame_index=seq, timestamp=seq / 25, width=320, height=240,
        image=image if image is not None else jpeg(shapes_frame(seq)),
    ).to_fields()  # fmt: skip


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_worker_metrics_count_what_the_worker_did(make_settings, redis_client: redis.Redis) -> None:
    settings = make_settings()
    keys = RedisKeys(settings.redis_prefix)
    port = free_port()
    proc = _worker(settings, port)
    try:
        deadline = time.monotonic() + 30
        while redis_client.zscore(keys.workers, "metered") is None:  # registered: the loop is running
            assert proc.poll() is None and time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        sent = 0
        for seq in range(10):
            redis_client.xadd(keys.jobs, _job("a", seq))
            redis_client.xadd(keys.jobs, _job("b", seq, image=b"not an image" if seq == 5 else None))
            sent += 2
        deadline = time.monotonic() + 30
        while redis_client.xlen(keys.results("a")) + redis_client.xlen(keys.results("b")) < sent:
            assert time.monotonic() < deadline, "the worker did not process every frame"
            time.sleep(0.05)
        redis_client.xadd(keys.jobs, _job("a", 3))  # a redelivered duplicate: acknowledged, not processed
        while redis_client.xlen(keys.jobs) > 0:
            assert time.monotonic() < deadline, "the duplicate was not acknowledged"
            time.sleep(0.05)

        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert r.status_code == 200
        m = _samples(r.text)
        assert m[("posestream_worker_frames_processed_total", ())] == sent
        batches = m[("posestream_worker_batches_total", ())]
        assert batches >= 1
        assert m[("posestream_worker_batch_size_count", ())] == batches
        assert m[("posestream_worker_batch_size_sum", ())] == sent
        assert m[("posestream_worker_errors_total", (("kind", "frame"),))] == 1  # the undecodable one
        assert m[("posestream_worker_errors_total", (("kind", "pipeline"),))] == 0
        assert m[("posestream_worker_jobs_duplicate_total", ())] == 1
        assert m[("posestream_worker_stage_seconds_count", (("stage", "decode"),))] == sent
        for stage in ("state_load", "pipeline", "publish", "state_save", "ack"):
            assert m[("posestream_worker_stage_seconds_count", (("stage", stage),))] >= 1, stage
        assert m[("posestream_worker_jobs_claimed_total", ())] == 0
        assert time.time() - m[("posestream_worker_last_loop_timestamp_seconds", ())] < 5
        assert _container_healthcheck(port) == 0  # what docker-compose.yml runs in the worker container
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out[-3000:]
    with socket.socket() as s:  # the endpoint is closed with the worker
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert _container_healthcheck(port) == 1


def _container_healthcheck(port: int) -> int:
    env = {"POSESTREAM_WORKER_METRICS_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "healthcheck.py"), "worker"], env=env, timeout=30
    ).returncode


def test_a_metrics_port_in_use_fails_clearly(make_settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = _worker(make_settings(), taken.getsockname()[1])
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "POSESTREAM_WORKER_METRICS_PORT" in out and "Traceback" not in out, out


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (dotted IPv4) listening on ``port``, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if int(p, 16) == port and state == "0A":  # LISTEN
            found.add(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_the_metrics_endpoint_binds_loopback_unless_told_otherwise(
    make_settings, redis_client: redis.Redis
) -> None:
    if not Path("/proc/net/tcp").is_file():
        import pytest

        pytest.skip("needs Linux /proc/net/tcp to read the bound address")
    settings = make_settings()
    keys = RedisKeys(settings.redis_prefix)
    for extra, expected in (([], "127.0.0.1"), (["--metrics-addr", "0.0.0.0"], "0.0.0.0")):
        port = free_port()
        env = settings_env(settings, "heartbeat_interval_s", "heartbeat_ttl_s")
        env.pop("POSESTREAM_WORKER_METRICS_ADDR", None)
        cmd = [*POSESTREAM, "worker", "--model", "blobs", "--tracker", "iou", "--id", "bound", "--metrics-port", str(port),
               *extra]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while redis_client.zscore(keys.workers, "bound") is None:
                assert proc.poll() is None and time.monotonic() < deadline, "the worker did not start"
                time.sleep(0.05)
            assert _listening_addresses(port) == {expected}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=15)
            redis_client.zrem(keys.workers, "bound")
