"""The ordered result relay shared by uploads and streams: a session's results, in ``seq`` order.

Workers publish each frame's ``FrameResult`` on the session's result stream
(``results:{session}``) as they finish, so results of one session can arrive out of order
(several workers) and twice (a job redelivered after a worker died). Both consumers, the
upload task (``upload_manager``) and the WebSocket relay (``streams``), read that stream
through ``OrderedResults`` and hand results on strictly by ``seq``, each once. The caller
owns the count of results already handed on (``next_seq``) and what it does with each.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from posestream.service.messages import EXPIRED_PREFIX, LOST_PREFIX, FrameResult

__all__ = ["OrderedResults", "error_code", "result_line"]


class OrderedResults:
    """Reads one result stream from ``last_id`` on and holds results until their turn.

    ``fetch(next_seq)`` blocks up to ``block_ms`` for new entries and keeps those with
    ``seq >= next_seq`` (older ones are duplicates or results already handed on);
    ``pop(seq)`` takes the result of ``seq`` if it is held. Typical use::

        results = OrderedResults(redis, key, count=64)
        while ...:
            await results.fetch(next_seq)
            while (result := results.pop(next_seq)) is not None:
                ...  # hand it on
                next_seq += 1

    Args:
        redis: the gateway's Redis client.
        key: the session's result stream key.
        last_id: the stream entry id to read after (``"0-0"``: from its start).
        count: entries read per ``XREAD``.
    """

    def __init__(
        self, redis: aioredis.Redis, key: str, last_id: str | bytes = "0-0", count: int = 64
    ) -> None:
        self._redis = redis
        self.key = key
        self.last_id = last_id
        self.count = count
        self._pending: dict[int, FrameResult] = {}

    async def fetch(self, next_seq: int, block_ms: int = 200) -> None:
        """Read the entries after ``last_id`` (waiting up to ``block_ms`` for one) and hold those due."""
        resp = await self._redis.xread({self.key: self.last_id}, count=self.count, block=block_ms)
        for _, entries in resp or []:
            for entry_id, fields in entries:
                self.last_id = entry_id
                result = FrameResult.from_fields(fields)
                if result.seq >= next_seq:
                    self._pending[result.seq] = result

    def __contains__(self, seq: int) -> bool:
        return seq in self._pending

    def pop(self, seq: int) -> FrameResult | None:
        """The held result of ``seq`` (no longer held afterwards), or None when it has not arrived."""
        return self._pending.pop(seq, None)


def error_code(error: str) -> str:
    """The client-facing code of a result's worker error: ``frame_lost`` (Redis lost the job),
    ``frame_expired`` (a live frame past its latency budget, not run) or ``frame_failed``."""
    for prefix in (LOST_PREFIX, EXPIRED_PREFIX):
        if error.startswith(prefix):
            return prefix
    return "frame_failed"


def result_line(result: FrameResult) -> str:
    """A frame's JSON Lines record as the results files and ``results.jsonl`` carry it: the worker's
    frame object, plus ``"error": {"code", "message"}`` (``error_code``) when it was not processed."""
    if not result.error:
        return result.frame
    obj = json.loads(result.frame)
    obj["error"] = {"code": error_code(result.error), "message": result.error}
    return json.dumps(obj, separators=(",", ":"))
