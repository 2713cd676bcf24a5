"""The Python client of the posestream service: ``Client`` (sync) and ``AsyncClient``.

Imported by users as ``posestream.client``. It needs no torch: HTTP through httpx, the live
protocol through websockets, frames read and JPEG-encoded with OpenCV.

- Uploads: ``upload(path)`` -> video id, ``wait(id)`` polls ``GET /v1/videos/{id}`` with
  exponential backoff until ``done`` (or raises ``VideoFailed`` / ``WaitTimeout``),
  ``poses(id)`` -> the JSON Lines frames; ``track(path)`` does all three.
- Streams: ``stream(source)`` sends a video file, a webcam (an ``int`` device index) or an
  iterable of frames over ``WS /v1/streams`` and yields each frame's result in order. At most
  ``max_inflight`` frames are sent and not yet answered (and, in ordered mode, never more than
  the server's credit). When the connection drops (no close frame, 1012 gateway restart, 1013
  Redis unavailable, 4409 while the old connection's lock lapses) it reconnects with
  ``?session=ID`` and ``ack`` = the last ``seq`` received, resends the frames the server had not
  queued (those after the ready message's ``last_index``) and goes on: no result is lost or
  yielded twice.

Every failure is a ``PosestreamError``: ``HTTPError`` carries the HTTP status and the JSON body's
``code``/``message``; ``StreamClosed`` the WebSocket close code and reason (the codes are listed
in ``posestream.service.gateway.errors``).

The protocol pieces (``FRAME_HEADER``, ``ws_connect_options``, ``open_stream``) are shared with
``posestream.service.stream_client.run_stream``, the single-connection fault-injection driver of
the tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

log = logging.getLogger(__name__)

# One binary frame message: this header (the frame index, big-endian uint64), then JPEG/PNG bytes.
FRAME_HEADER = struct.Struct(">Q")
# The gateway's subprotocol and the prefix of the one that carries an API key (browsers cannot set headers).
WS_SUBPROTOCOL = "posestream.v1"
WS_KEY_SUBPROTOCOL_PREFIX = "apikey."
# Close codes after which a stream is resumed rather than given up: the gateway restarting (1012),
# Redis unavailable (1013), the previous connection still holding the session (4409) and an
# abnormal closure (1006: the TCP connection dropped without a close frame).
RESUMABLE_CLOSE_CODES = frozenset({1006, 1012, 1013, 4409})

Mode = Literal["live", "ordered"]
T = TypeVar("T")


# ---- errors ---------------------------------------------------------------------------------------


class PosestreamError(Exception):
    """Base class of every error this client raises."""


class HTTPError(PosestreamError):
    """The gateway answered an HTTP error: ``status`` (e.g. 404), ``code`` (e.g. ``not_found``), ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class StreamClosed(PosestreamError):
    """The stream's WebSocket was closed with ``code`` and ``reason`` and could not (or may not) be resumed."""

    def __init__(self, code: int | None, reason: str, session: str | None = None) -> None:
        super().__init__(f"stream closed with code {code}: {reason or '(no reason)'}")
        self.code, self.reason, self.session = code, reason, session


class VideoFailed(PosestreamError):
    """An upload ended ``failed``; ``status`` is its status object (``error`` says why)."""

    def __init__(self, status: dict[str, Any]) -> None:
        err = status.get("error")
        why = f"{err.get('code')}: {err.get('message')}" if isinstance(err, dict) else str(err)
        super().__init__(f"video {status.get('id')} failed: {why}")
        self.status = status


class WaitTimeout(PosestreamError, TimeoutError):
    """``wait`` gave up: the video was still queued or running; ``status`` is the last one read."""

    def __init__(self, video_id: str, timeout_s: float, status: dict[str, Any]) -> None:
        super().__init__(
            f"video {video_id} still {status.get('status')} after {timeout_s:g} s "
            f"({status.get('frames_done')}/{status.get('frames_total')} frames)"
        )
        self.status = status


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        err = response.json()["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:500]
    raise HTTPError(response.status_code, code, message)


# ---- protocol pieces shared with stream_client.run_stream ----------------------------------------------


def ws_connect_options(api_key: str | None) -> dict[str, Any]:
    """``websockets.connect`` keyword arguments offering the gateway's subprotocol, and the key as ``apikey.KEY``."""
    protocols = [WS_SUBPROTOCOL] + ([WS_KEY_SUBPROTOCOL_PREFIX + api_key] if api_key else [])
    return {"subprotocols": protocols, "max_size": 1 << 24}


def frame_message(index: int, image: bytes) -> bytes:
    """One binary frame message: ``index`` (>= 0) as 8 big-endian bytes, then the JPEG/PNG ``image``."""
    return FRAME_HEADER.pack(index) + image


async def open_stream(
    url: str,
    hello: dict[str, Any],
    *,
    session: str | None = None,
    ack: int | None = None,
    timeout_s: float = 30.0,
    **connect: Any,
) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect to ``url`` (``ws://host:port/v1/streams``), send the hello, read the ready message.

    ``session``/``ack``: resume that session having received results up to seq ``ack``.
    Returns (the open connection, the ready message). Raises ``StreamClosed`` when the server
    refuses (close code and reason), ``OSError`` when it cannot be reached.
    """
    target = f"{url}?session={session}" if session else url
    ws = await websockets.connect(target, open_timeout=timeout_s, **connect)
    try:
        await ws.send(json.dumps(hello if ack is None else {**hello, "ack": ack}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    except ConnectionClosed:
        raise StreamClosed(ws.close_code, ws.close_reason or "", session) from None
    except BaseException:
        await ws.close()
        raise
    if "session" not in ready:
        await ws.close()
        raise PosestreamError(f"the server's first message is not a ready message: {ready}")
    return ws, ready


# ---- frame sources --------------------------------------------------------------------------------------

FrameSource = str | Path | int | Iterable[Any]


@dataclass
class _Frames:
    """JPEG frames of a source: ``next()`` -> (index, bytes) or None at the end, read in a thread.

    Safe to cancel: a frame read by a cancelled ``next()`` is kept for the next call (a dropped
    connection cancels its sender, and no frame may be lost with it).
    """

    width: int
    height: int
    fps: float
    _read: Callable[[], bytes | None]
    _close: Callable[[], None]
    _index: int = 0
    _pending: tuple[int, bytes] | None = None
    _ended: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _fill(self) -> None:
        with self._lock:
            if self._pending is not None or self._ended:
                return
            image = self._read()
            if image is None:
                self._ended = True
            else:
                self._pending = (self._index, image)
                self._index += 1

    async def next(self) -> tuple[int, bytes] | None:
        await asyncio.to_thread(self._fill)
        item, self._pending = self._pending, None
        return item

    def close(self) -> None:
        with self._lock:
            self._close()


def _jpeg(bgr: Any, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PosestreamError("OpenCV could not encode a frame as JPEG")
    return buf.tobytes()


def _open_frames(source: FrameSource, fps: float | None, quality: int) -> _Frames:
    """A file path or webcam index (OpenCV ``VideoCapture``), or an iterable of BGR ``(H, W, 3)`` uint8
    arrays or of JPEG/PNG bytes (then ``fps`` defaults to 25 and the size is read from the first frame)."""
    import cv2
    import numpy as np

    if isinstance(source, str | Path | int):
        if isinstance(source, str | Path) and not Path(source).is_file():
            raise PosestreamError(f"no video file at {source}")
        cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise PosestreamError(f"OpenCV could not read a frame from {source!r}")
        pending: list[Any] = [first]

        def read_cap() -> bytes | None:
            if pending:
                return _jpeg(pending.pop(), quality)
            ok, frame = cap.read()
            return _jpeg(frame, quality) if ok else None

        rate = fps or cap.get(cv2.CAP_PROP_FPS) or 25.0
        return _Frames(first.shape[1], first.shape[0], float(rate), read_cap, cap.release)

    it = iter(source)
    try:
        head = next(it)
    except StopIteration:
        raise PosestreamError("the frame iterable is empty") from None

    def encode(item: Any) -> bytes:
        return bytes(item) if isinstance(item, bytes | bytearray | memoryview) else _jpeg(item, quality)

    if isinstance(head, bytes | bytearray | memoryview):
        decoded = cv2.imdecode(np.frombuffer(head, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise PosestreamError("the first frame's bytes are not an image OpenCV can decode")
        height, width = decoded.shape[:2]
    else:
        height, width = np.asarray(head).shape[:2]
    held: list[Any] = [head]

    def read_it() -> bytes | None:
        if held:
            return encode(held.pop())
        item = next(it, None)
        return None if item is None else encode(item)

    return _Frames(int(width), int(height), float(fps or 25.0), read_it, lambda: None)


# ---- the stream ---------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One live session: iterate it (``async for result in stream``) for each frame's result, in ``seq`` order.

    After the iteration ends: ``end`` is the server's ``{"frames_received", "frames_sent", "dropped"}``
    of the last connection, ``dropped`` the frames the server dropped over all connections (live
    mode), ``reconnects`` how many times the connection was resumed, ``resent`` how many frames were
    sent again after one, ``session`` its id.
    """

    client: AsyncClient
    source: FrameSource
    mode: Mode = "ordered"
    fps: float | None = None
    max_inflight: int = 8
    max_reconnects: int = 10
    jpeg_quality: int = 90
    session: str | None = None
    last_seq: int | None = None
    end: dict[str, Any] | None = None
    dropped: int = 0
    reconnects: int = 0
    resent: int = 0  # frames sent again after a reconnect (the server had received but not queued them)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._run()

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        frames = await asyncio.to_thread(_open_frames, self.source, self.fps, self.jpeg_quality)
        hello = {"fps": frames.fps, "width": frames.width, "height": frames.height, "mode": self.mode}
        # Frames sent and not yet answered, by index: resent after a reconnect when the server had not queued them.
        unanswered: OrderedDict[int, bytes] = OrderedDict()
        exhausted = False
        failures = 0
        try:
            while True:
                try:
                    ws, ready = await open_stream(
                        self.client.ws_url, hello, session=self.session,
                        ack=None if self.session is None else (-1 if self.last_seq is None else self.last_seq),
                        **ws_connect_options(self.client.api_key),
                    )  # fmt: skip
                except (StreamClosed, OSError, TimeoutError) as exc:
                    code = exc.code if isinstance(exc, StreamClosed) else 1006
                    if self.session is None or code not in RESUMABLE_CLOSE_CODES:
                        raise
                    failures += 1
                    if failures > self.max_reconnects:
                        raise
                    await asyncio.sleep(min(2.0, 0.1 * 2**failures))
                    continue
                if self.session is not None:
                    self.reconnects += 1
                self.session = ready["session"]
                for index in [i for i in unanswered if i <= int(ready["last_index"])]:
                    del unanswered[index]  # queued before the drop: its result comes on this connection
                conn = _Connection(self, ws, ready, unanswered, frames, exhausted)
                try:
                    async for result in conn.run():
                        failures = 0
                        yield result
                    return
                except ConnectionClosed:
                    code, reason = ws.close_code, ws.close_reason or ""
                    exhausted = conn.exhausted
                    if code not in RESUMABLE_CLOSE_CODES and code is not None:
                        raise StreamClosed(code, reason, self.session) from None
                    failures += 1
                    if failures > self.max_reconnects:
                        raise StreamClosed(code, reason, self.session) from None
                    log.info(
                        "stream %s dropped (%s %s); resuming after seq %s",
                        self.session,
                        code,
                        reason,
                        self.last_seq,
                    )
                finally:
                    await conn.stop()
        finally:
            frames.close()


class _Connection:
    """One connection of a ``Stream``: a sender task within the window and the receive loop."""

    def __init__(
        self,
        stream: Stream,
        ws: ClientConnection,
        ready: dict[str, Any],
        unanswered: OrderedDict[int, bytes],
        frames: _Frames,
        exhausted: bool,
    ) -> None:
        self.stream, self.ws, self.frames, self.unanswered = stream, ws, frames, unanswered
        self.own_from = int(ready["next_seq"])  # results from this seq on answer this connection's frames
        self.credit = int(ready["credit"]) if "credit" in ready else None
        self.sent = 0  # frame messages sent on this connection
        self.answered = 0  # of those: answered by a result, dropped by the server or refused as out of order
        self.dropped = 0  # the server's count of frames dropped on this connection
        self.exhausted = exhausted
        self.more = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None  # the sender's own error (a frame source that broke)

    def _room(self) -> bool:
        inflight = self.sent - self.answered
        return inflight < self.stream.max_inflight and (self.credit is None or self.sent < self.credit)

    async def _send_frames(self) -> None:
        try:
            await self._send_all()
        except ConnectionClosed:
            pass  # the receive loop sees the close too, and decides
        except Exception as exc:
            self.failure = exc
            await self.ws.close(1000, "client error")

    async def _send_all(self) -> None:
        for index, image in list(self.unanswered.items()):  # resend what the server had not queued
            await self._wait_for_room()
            await self.ws.send(frame_message(index, image))
            self.sent += 1
            self.stream.resent += 1
        while not self.exhausted:
            await self._wait_for_room()
            nxt = await self.frames.next()
            if nxt is None:
                self.exhausted = True
                break
            self.unanswered[nxt[0]] = nxt[1]
            await self.ws.send(frame_message(*nxt))
            self.sent += 1
        await self.ws.send(json.dumps({"end": True}))

    async def _wait_for_room(self) -> None:
        while not self._room():
            self.more.clear()
            await self.more.wait()

    async def run(self) -> AsyncIterator[dict[str, Any]]:
        st = self.stream
        self.sender = asyncio.create_task(self._send_frames())
        async for raw in self.ws:
            obj = json.loads(raw)
            if "credit" in obj:
                self.credit = max(self.credit or 0, int(obj["credit"]))
            if "end" in obj:
                st.end = obj["end"]
                continue
            if "seq" in obj:
                seq = int(obj["seq"])
                if st.last_seq is not None and seq <= st.last_seq:
                    continue  # never yield a result twice (the server's ack replay should not send it)
                st.last_seq = seq
                if "frame_index" in obj:
                    for index in [i for i in self.unanswered if i <= obj["frame_index"]]:
                        del self.unanswered[index]
                if seq >= self.own_from:
                    self.answered += 1
                new_drops = int(obj.get("dropped", self.dropped)) - self.dropped
                if new_drops > 0:
                    self.dropped += new_drops
                    self.answered += new_drops
                    st.dropped += new_drops
                self.more.set()
                yield obj
            elif "error" in obj:
                st.errors.append(obj["error"])
                if obj["error"].get("code") == "frame_out_of_order":
                    self.answered += 1
                self.more.set()
            else:
                self.more.set()
        if self.failure is not None:
            raise self.failure
        if self.ws.close_code != 1000:
            raise self.ws.protocol.close_exc

    async def stop(self) -> None:
        if self.sender is not None:
            self.sender.cancel()
            await asyncio.gather(self.sender, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.ws.close()


# ---- the clients ---------------------------------------------------------------------------------------


class AsyncClient:
    """The service's client for asyncio code.

    Args:
        base_url: the gateway, e.g. ``http://127.0.0.1:8000`` (``ws://`` is derived for streams).
        api_key: sent as ``Authorization: Bearer KEY`` (HTTP) and the ``apikey.KEY`` subprotocol (WebSocket).
        timeout_s: per HTTP request (an upload's transfer included).
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        scheme, _, rest = self.base_url.partition("://")
        self.ws_url = ("wss" if scheme == "https" else "ws") + "://" + rest + "/v1/streams"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        response = await self._http.request(method, path, **kw)
        _raise_for(response)
        return response

    async def upload(self, path: str | Path, *, render: bool = False) -> str:
        """Upload a clip (streamed from disk); its video id. ``render``: also make the annotated MP4."""
        path = Path(path)
        with path.open("rb") as fh:
            files = {"file": (path.name, fh, "application/octet-stream")}
            response = await self._request(
                "POST", "/v1/videos", params={"render": str(render).lower()}, files=files
            )
        return str(response.json()["id"])

    async def status(self, video_id: str) -> dict[str, Any]:
        """``GET /v1/videos/{id}``: ``{"id", "status", "frames_done", "frames_total", "error", "warnings"}``."""
        return dict((await self._request("GET", f"/v1/videos/{video_id}")).json())

    async def wait(
        self, video_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.1, max_poll_s: float = 2.0
    ) -> dict[str, Any]:
        """Poll the status until ``done`` (returned) or ``failed`` (``VideoFailed``); ``WaitTimeout`` after ``timeout_s``.

        The interval starts at ``poll_s`` and doubles up to ``max_poll_s`` (raising it: fewer requests, later news).
        """
        deadline = time.monotonic() + timeout_s
        delay = poll_s
        while True:
            status = await self.status(video_id)
            if status["status"] == "done":
                return status
            if status["status"] == "failed":
                raise VideoFailed(status)
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(video_id, timeout_s, status)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, max_poll_s)

    async def poses(self, video_id: str) -> list[dict[str, Any]]:
        """The finished video's frames (the JSON Lines objects, in frame order)."""
        response = await self._request("GET", f"/v1/videos/{video_id}/poses")
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    async def render(self, video_id: str, out: str | Path) -> Path:
        """Save the annotated MP4 of a video uploaded with ``render=True`` to ``out``."""
        response = await self._request("GET", f"/v1/videos/{video_id}/render")
        Path(out).write_bytes(response.content)
        return Path(out)

    async def delete(self, video_id: str) -> None:
        await self._request("DELETE", f"/v1/videos/{video_id}")

    async def track(self, path: str | Path, *, timeout_s: float = 600.0) -> list[dict[str, Any]]:
        """Upload ``path``, wait for it and return its frames."""
        video_id = await self.upload(path)
        await self.wait(video_id, timeout_s=timeout_s)
        return await self.poses(video_id)

    def stream(
        self,
        source: FrameSource,
        *,
        mode: Mode = "ordered",
        fps: float | None = None,
        max_inflight: int = 8,
        max_reconnects: int = 10,
        jpeg_quality: int = 90,
    ) -> Stream:
        """A ``Stream`` of ``source`` (a video path, a webcam index, or an iterable of BGR arrays / JPEG bytes).

        ``max_inflight``: frames sent and not yet answered (raising it: more throughput, more latency
        and more to resend after a drop). ``max_reconnects``: consecutive failed resumes before
        ``StreamClosed`` is raised.
        """
        return Stream(self, source, mode, fps, max_inflight, max_reconnects, jpeg_quality)


class Client:
    """The blocking client: the ``AsyncClient`` methods run on a private event loop thread.

    ``stream(...)`` returns an iterator of results (the ``Stream``'s attributes are on
    ``iterator.stream``). Use as a context manager or call ``close()``.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 300.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="posestream-client", daemon=True)
        self._thread.start()
        self._async = self._call(_make_async(base_url, api_key, timeout_s))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._async.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def upload(self, path: str | Path, *, render: bool = False) -> str:
        return self._call(self._async.upload(path, render=render))

    def status(self, video_id: str) -> dict[str, Any]:
        return self._call(self._async.status(video_id))

    def wait(self, video_id: str, **kw: float) -> dict[str, Any]:
        return self._call(self._async.wait(video_id, **kw))

    def poses(self, video_id: str) -> list[dict[str, Any]]:
        return self._call(self._async.poses(video_id))

    def render(self, video_id: str, out: str | Path) -> Path:
        return self._call(self._async.render(video_id, out))

    def delete(self, video_id: str) -> None:
        self._call(self._async.delete(video_id))

    def track(self, path: str | Path, *, timeout_s: float = 600.0) -> list[dict[str, Any]]:
        return self._call(self._async.track(path, timeout_s=timeout_s))

    def stream(self, source: FrameSource, **kw: Any) -> SyncStream:
        """As ``AsyncClient.stream``; iterate the returned object for the results."""
        return SyncStream(self, self._async.stream(source, **kw))


class SyncStream:
    """A ``Stream`` iterated from blocking code; ``stream`` holds its attributes (session, end, dropped...)."""

    def __init__(self, client: Client, stream: Stream) -> None:
        self.client, self.stream = client, stream
        self._iter: AsyncIterator[dict[str, Any]] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        agen = self.stream.__aiter__()
        self._iter = agen
        try:  # one result at a time: a slow consumer slows the sender (the window stays full)
            while True:
                try:
                    yield self.client._call(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            aclose: Callable[[], Awaitable[None]] | None = getattr(agen, "aclose", None)
            if aclose is not None:
                self.client._call(_await(aclose()))


async def _make_async(base_url: str, api_key: str | None, timeout_s: float) -> AsyncClient:
    return AsyncClient(base_url, api_key, timeout_s=timeout_s)  # made on the loop that will use it


async def _anext(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


async def _await(aw: Awaitable[None]) -> None:
    await aw
