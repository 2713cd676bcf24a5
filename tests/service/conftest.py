"""Fixtures for service tests: real Redis (unique key prefix per test), real uvicorn servers
on loopback ports, real workers (threads with an injected pipeline, or subprocesses)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import uvicorn

from posestream.service.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    if not _redis_up():
        pytest.fail(f"these tests need Redis at {REDIS_URL} (start redis-server)")
    return redis.Redis.from_url(REDIS_URL)


@pytest.fixture
def make_settings(tmp_path: Path, redis_client: redis.Redis) -> Iterator[Callable[..., Settings]]:
    """``make_settings(**overrides)``: settings isolated under a unique Redis prefix and tmp data dir."""
    prefix = f"pstest:{uuid.uuid4().hex[:10]}:"

    def make(**overrides: object) -> Settings:
        base: dict[str, object] = dict(
            redis_url=REDIS_URL, redis_prefix=prefix, data_dir=tmp_path / "data", model="blobs", tracker="iou",
            lease_ms=2000, claim_idle_ms=1500, heartbeat_interval_s=0.5, heartbeat_ttl_s=3.0, batch_wait_ms=5,
            session_ttl_s=120, video_ttl_s=600,
        )  # fmt: skip
        base.update(overrides)
        return Settings(**base)  # type: ignore[arg-type]

    yield make
    keys = list(redis_client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        redis_client.delete(*keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """A real uvicorn server for a gateway app on a loopback port, in a thread (``config``: more uvicorn options)."""

    def __init__(self, settings: Settings, **config: object) -> None:
        from posestream.service.gateway.app import create_app
        from posestream.service.gateway.http import uvicorn_options

        self.port = free_port()
        self.settings = settings
        uv_config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
            **{**uvicorn_options(settings), **config},  # type: ignore[arg-type]
        )  # fmt: skip
        self.server = uvicorn.Server(uv_config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class WorkerThread:
    """A real ``Worker`` with an injected pipeline, in a thread."""

    def __init__(
        self, settings: Settings, pipeline: object | None = None, worker_id: str | None = None
    ) -> None:
        from posestream.service.pipeline import build_pipeline
        from posestream.service.worker.worker import Worker

        self.worker = Worker(
            settings, pipeline or build_pipeline("blobs", settings.tracker), worker_id=worker_id
        )
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=10)


@pytest.fixture
def gateway(make_settings: Callable[..., Settings]) -> Iterator[ServerThread]:
    with ServerThread(make_settings()) as server:
        yield server


@pytest.fixture
def stack(make_settings: Callable[..., Settings]) -> Iterator[ServerThread]:
    """A gateway and one blob-pipeline worker sharing one Redis prefix."""
    settings = make_settings()
    with WorkerThread(settings), ServerThread(settings) as server:
        yield server
