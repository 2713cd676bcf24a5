"""A reference client of ``WS /v1/streams`` (credit, ack, resume), used by the tests and benchmarks.

``run_stream`` opens one connection, sends frames within the server's credit, collects
the results and either ends the stream, closes it cleanly, or drops it abruptly (no
close frame) after a given number of results, the way a flaky client would. To resume,
call it again with the session id and the last ``seq`` received as ``ack``; it starts
sending after the ``last_index`` the server reports.

Applications use ``posestream.client`` (``posestream.service.client``), which resumes by itself;
this driver shares its protocol pieces (``open_stream``, ``frame_message``) and adds the knobs
a fault test needs (ignore credit, drop or close after N results, time-bounded soaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.exceptions import ConnectionClosed

from posestream.service.client import FRAME_HEADER, StreamClosed, frame_message, open_stream

__all__ = ["FRAME_HEADER", "StreamRun", "run_stream"]


@dataclass
class StreamRun:
    """What one connection saw. ``results``: frame results (and ``frame_lost`` notices) in arrival order."""

    ready: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    close_code: int | None = None
    close_reason: str = ""
    sent: list[int] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    probes: int = 0  # bare {"credit": N} messages: the server had stopped reading this client
    timed_out: bool = False  # nothing arrived for timeout_s: the client gave up (and closed)

    @property
    def last_seq(self) -> int | None:
        return self.results[-1]["seq"] if self.results else None


async def run_stream(
    url: str,
    hello: dict[str, Any],
    image: Callable[[int], bytes],
    count: int,
    *,
    session: str | None = None,
    ack: int | None = None,
    start: int | None = None,
    honour_credit: bool = True,
    stop_after: int | None = None,
    stop: Literal["abort", "close", "end"] = "end",
    interval_s: float = 0.0,
    timeout_s: float = 60.0,
    last: int | None = None,
    duration_s: float | None = None,
    **connect: Any,
) -> StreamRun:
    """Stream ``count`` frames (``image(index)`` gives each JPEG/PNG) on one connection.

    Args:
        url: ``ws://host:port/v1/streams``; ``?session=`` is added for ``session``.
        hello: the hello without ``ack`` (``fps``, ``width``, ``height``, ``mode``).
        session, ack: resume this session, having received results up to seq ``ack``.
        start: first frame index (default: the server's ``last_index + 1``).
        honour_credit: send no more than the server's ``credit`` (ordered mode); False
            behaves like a client from before credits existed.
        stop_after: after this many results, ``stop`` the connection: ``abort`` (drop the
            TCP connection, no close frame) or ``close`` (close 1000); ``end`` sends
            ``{"end": true}`` after the last frame and waits for the server's end.
        interval_s: pause between frames (0: as fast as the credit allows).
        timeout_s: give up (``timed_out``) when no message arrives for this long.
        last: send no frame index above this one (fewer than ``count`` frames when a resume
            starts near it).
        duration_s: stop sending after this many seconds even if ``count`` frames were not
            sent (a time-bounded soak); with ``stop="end"`` the stream is then ended.
    """
    run = StreamRun()
    sent_at: dict[int, float] = {}
    try:
        ws, run.ready = await open_stream(
            url, hello, session=session, ack=ack, timeout_s=timeout_s, **connect
        )
    except StreamClosed as exc:  # refused: the close code says why
        run.close_code, run.close_reason = exc.code, exc.reason
        return run
    async with ws:
        begin = start if start is not None else int(run.ready.get("last_index", -1)) + 1
        credit = [int(run.ready.get("credit", 1 << 62))]
        more = asyncio.Event()

        deadline = None if duration_s is None else time.perf_counter() + duration_s

        def out_of_time() -> bool:
            return deadline is not None and time.perf_counter() >= deadline

        async def sender() -> None:
            for i in range(begin, begin + count if last is None else min(begin + count, last + 1)):
                while honour_credit and len(run.sent) >= credit[0] and not out_of_time():
                    more.clear()
                    wait = None if deadline is None else max(0.01, deadline - time.perf_counter())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(more.wait(), wait)
                if out_of_time():
                    break
                sent_at[i] = time.perf_counter()
                await ws.send(frame_message(i, image(i)))
                run.sent.append(i)
                if interval_s:
                    await asyncio.sleep(interval_s)
            if stop == "end":
                await ws.send(json.dumps({"end": True}))

        task = asyncio.create_task(sender())
        try:
            while True:
                obj = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
                if "credit" in obj:
                    credit[0] = max(credit[0], int(obj["credit"]))
                    run.probes += len(obj) == 1
                    more.set()
                if "end" in obj:
                    run.end = obj["end"]
                elif "seq" in obj or "frame_index" in obj:  # (servers before seq had only frame_index)
                    run.results.append(obj)
                    if "frame_index" in obj and obj["frame_index"] in sent_at:
                        run.latencies_s.append(time.perf_counter() - sent_at.pop(obj["frame_index"]))
                elif "error" in obj:
                    run.errors.append(obj)
                if stop_after is not None and len(run.results) >= stop_after and stop != "end":
                    if stop == "abort":
                        ws.transport.abort()
                    else:
                        await ws.close()
                    break
        except ConnectionClosed:
            pass
        except TimeoutError:
            run.timed_out = True
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run.close_code, run.close_reason = ws.close_code, ws.close_reason or ""
    return run
