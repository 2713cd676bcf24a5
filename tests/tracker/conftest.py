"""The tracker tests' real Redis: a ``RedisStore`` under a fresh key prefix, cleaned up afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from posestream.tracker.stores import RedisStore

REDIS_URL = os.environ.get("POSESTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_store() -> Iterator[RedisStore]:
    """A ``RedisStore`` on ``REDIS_URL`` whose keys (prefix ``posestream:test:<uuid>:``) are deleted after the test."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL} (set POSESTREAM_TEST_REDIS_URL)")
    prefix = f"posestream:test:{uuid.uuid4().hex}:"
    yield RedisStore(client, prefix=prefix, ttl_s=60)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
