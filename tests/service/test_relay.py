"""``OrderedResults``, the relay uploads and streams share: out-of-order and duplicate results on a
real Redis result stream come out once each, in ``seq`` order."""

from __future__ import annotations

import asyncio
import uuid

import redis
import redis.asyncio as aioredis

from posestream.service.gateway.relay import OrderedResults
from posestream.service.messages import FrameResult
from tests.service.conftest import REDIS_URL


def _publish(client: redis.Redis, key: str, seqs: list[int]) -> None:
    for seq in seqs:
        client.xadd(key, FrameResult(seq=seq, frame=f'{{"n":{seq}}}', worker=f"w{seq}").to_fields())


async def _drain(
    key: str, next_seq: int, last_id: str = "0-0", count: int = 2
) -> tuple[list[FrameResult], int]:
    """Hand on every result due from ``next_seq`` on, as the callers do; stop when a fetch brings nothing new."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        results = OrderedResults(client, key, last_id=last_id, count=count)
        out: list[FrameResult] = []
        for _ in range(20):
            before = results.last_id
            await results.fetch(next_seq, block_ms=50)
            while (result := results.pop(next_seq)) is not None:
                out.append(result)
                next_seq += 1
            if results.last_id == before:
                break
        assert next_seq not in results
        return out, next_seq
    finally:
        await client.aclose()


def test_results_come_out_once_in_seq_order(redis_client: redis.Redis) -> None:
    key = f"pstest:{uuid.uuid4().hex[:10]}:results"
    try:
        # Two workers finish out of order; seq 1 is redelivered and published twice; seq 0 is older
        # than where this reader starts (already handed on) and must not come back.
        _publish(redis_client, key, [0, 3, 1, 2, 1, 5, 4, 0, 7])
        out, next_seq = asyncio.run(_drain(key, next_seq=1))
        assert [r.seq for r in out] == [1, 2, 3, 4, 5]
        assert [r.worker for r in out] == ["w1", "w2", "w3", "w4", "w5"]
        assert next_seq == 6  # 7 is held until 6 arrives
    finally:
        redis_client.delete(key)


def test_reading_starts_after_last_id(redis_client: redis.Redis) -> None:
    key = f"pstest:{uuid.uuid4().hex[:10]}:results"
    try:
        _publish(redis_client, key, [0, 1])
        last = redis_client.xrevrange(key, count=1)[0][0]
        _publish(redis_client, key, [2])
        out, _ = asyncio.run(_drain(key, next_seq=0, last_id=last))
        assert out == []  # 0 and 1 are before last_id, and 2 waits for them
        out, next_seq = asyncio.run(_drain(key, next_seq=2, last_id=last))
        assert [r.seq for r in out] == [2] and next_seq == 3
    finally:
        redis_client.delete(key)
