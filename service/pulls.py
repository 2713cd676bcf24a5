"""Pulling a network stream frame by frame: RTSP(S), HTTP(S) files and HLS, through PyAV, with reconnects.

``PullSource(url, config).frames()`` yields ``(frame_index, timestamp_s, rgb)`` like
``posestream.models.data.video.iter_video_frames`` (``rgb``: (H, W, 3) uint8, RGB as
everywhere in posestream), across any number of reconnects:

- **ended**: a source with a duration (an HTTP file, a VOD HLS playlist) decoded up to its
  end. The iterator returns.
- **dropped**: anything else that stops the frames (a network error, a read timeout, a
  live stream whose server went away, a file cut short before its duration). The source
  is opened again after a backoff that doubles from ``initial_backoff_s`` up to
  ``max_backoff_s``; after ``max_retries`` consecutive failed attempts it raises
  ``PullFailed``. A source with a duration resumes where it dropped (seek to the last
  frame's timestamp, frames up to it skipped; the last few frames decoded before a drop are
  held back and read again, since the drop may have cut their data short), so no frame is
  yielded twice or missed; a live source continues with whatever it sends now.

Frame indices count yielded frames from 0 across reconnects. Timestamps are the source's
own (seconds, from the frame's pts) for sources with a duration; for live sources they
continue monotonically across reconnects (each connection's pts relative to its first
frame, offset by where the previous connection stopped).

Only ``rtsp``, ``rtsps``, ``http`` and ``https`` URLs are accepted (``check_url``), and
FFmpeg may only open the network protocols those need (``protocol_whitelist``), so a
playlist cannot make it read ``file:`` or other local protocols. Addresses that resolve
to loopback, private, link-local or reserved ranges are refused unless
``allow_private`` is set (the gateway's ``pull_allow_private``; its tests set it, since
their servers are on loopback). The check resolves the name once before connecting: it
does not stop DNS rebinding or an HLS playlist whose segments live on a private host, so
a gateway reachable by untrusted clients should also sit behind an egress firewall.

Torch-free: the gateway and ``posestream track URL`` both use it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

import av
import numpy as np

if TYPE_CHECKING:
    from posestream.service.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "ALLOWED_SCHEMES",
    "PullConfig",
    "PullError",
    "PullFailed",
    "PullSource",
    "PullStats",
    "check_url",
    "config_from_settings",
    "is_url",
    "redact",
]

# The one list of URL schemes a pull accepts (HLS is an .m3u8 over http/https).
ALLOWED_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "http", "https")
# What FFmpeg may open for each scheme: the network protocols only (never file:, pipe:, ...).
_PROTOCOLS = {
    "http": "http,https,tcp,tls,crypto",
    "https": "http,https,tcp,tls,crypto",
    "rtsp": "rtp,srtp,udp,tcp,tls,http,https",
    "rtsps": "rtp,srtp,udp,tcp,tls,http,https",
}
# A live source's frame interval when it states no rate (timestamps of the next connection).
_FALLBACK_FPS = 25.0
# A frame within this many frame intervals of the declared end counts as the end (rounding).
_END_SLACK_FRAMES = 2.5
# Decoded frames of a source with a duration held back until a later frame decodes (see
# PullSource._connection): at least the decoder's reordering and frame-thread delay.
_HOLD_BACK = 8

PullState = Literal["connecting", "running", "reconnecting", "ended", "failed", "stopped"]


class PullError(ValueError):
    """The URL cannot be pulled: unsupported scheme, no host, unresolvable, or a refused address."""


class PullFailed(RuntimeError):
    """The source failed for good: ``max_retries`` consecutive (re)connect attempts failed."""


def is_url(text: str) -> bool:
    """Whether ``text`` looks like a URL (``scheme://...``) rather than a file path."""
    return "://" in text or text.startswith("file:")


def redact(url: str) -> str:
    """``url`` without a password (``rtsp://user:***@host/...``), for logs and status bodies."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def check_url(url: str, allow_private: bool) -> str:
    """The URL's scheme after checking it can be pulled; raises ``PullError`` saying what is wrong.

    Resolves the host (blocking DNS lookup) unless ``allow_private``, and refuses it when any
    of its addresses is loopback, private, link-local, multicast, reserved or unspecified.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise PullError(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise PullError(
            f"unsupported URL scheme {scheme or '(none)'!r}; use one of {', '.join(ALLOWED_SCHEMES)} "
            "(HLS: an http(s) URL of the .m3u8 playlist)"
        )
    if not parts.hostname:
        raise PullError("the URL has no host")
    if allow_private:
        return scheme
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise PullError(f"cannot resolve host {parts.hostname!r}: {exc}") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if (
            addr.is_private
            or addr.is_loopback
            or addr.is_link_local
            or addr.is_multicast
            or addr.is_reserved
            or addr.is_unspecified
        ):
            raise PullError(
                f"host {parts.hostname!r} resolves to {addr}, a loopback/private/reserved address; "
                "this server does not pull from those (setting pull_allow_private)"
            )
    return scheme


@dataclass(frozen=True)
class PullConfig:
    """How a ``PullSource`` connects and reconnects.

    Attributes:
        max_retries: consecutive failed (re)connect attempts before the source fails for good
            (``PullFailed``); a connection that yields a frame resets the count. Raising it
            rides out longer outages, and takes longer to report a source that is gone.
        initial_backoff_s: wait before the first reconnect attempt; each failed attempt doubles it.
            Raising it is gentler on a struggling server and loses more of a live stream per drop.
        max_backoff_s: the longest wait between two attempts. Raising it spaces attempts out
            further during a long outage (fewer connections, later recovery).
        open_timeout_s: longest wait for the source to open (connect, headers, first probe).
        read_timeout_s: longest silence while reading before the connection counts as dropped.
            Raising it tolerates stalls of a slow server; a dead one is noticed that much later.
        rtsp_transport: ``"tcp"`` (interleaved RTP over the RTSP connection: works through NAT
            and firewalls, no loss) or ``"udp"`` (lower latency, packets may be lost).
        allow_private: accept URLs whose host is loopback/private (see the module docstring).
        realtime: pace an HTTP(S) file or VOD HLS to its own frame rate, as if it were live (the
            gateway's ``live`` mode); RTSP and live sources are paced by their servers.
    """

    max_retries: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    allow_private: bool = False
    realtime: bool = False

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("open_timeout_s and read_timeout_s must be > 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (1, 2, ...)."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** max(attempt - 1, 0)))


@dataclass
class PullStats:
    """What a ``PullSource`` has done so far (read from other threads; plain ints and strings)."""

    state: PullState = "connecting"
    frames_read: int = 0
    reconnects: int = 0
    last_error: str = ""
    fps: float = 0.0
    width: int = 0
    height: int = 0
    live: bool = False  # the last connection had no duration: a drop continues with what it sends now


class _Dropped(Exception):
    """The connection stopped before the source's end."""


class PullSource:
    """Frames of a network stream, reconnecting with backoff (see the module docstring).

    Args:
        url: ``rtsp://``, ``rtsps://``, ``http://`` or ``https://`` URL (checked by ``check_url``).
        config: connection and retry settings.
        stop: when set, ``frames()`` returns after the current frame (or backoff wait) and the
            state becomes ``"stopped"``.
    Raises:
        PullError: from the constructor, for a URL that cannot be pulled.
    """

    def __init__(
        self, url: str, config: PullConfig | None = None, stop: threading.Event | None = None
    ) -> None:
        self.config = config or PullConfig()
        self.scheme = check_url(url, self.config.allow_private)
        self.url = url
        self.stop = stop or threading.Event()
        self.stats = PullStats()
        self._last_ts: float | None = None  # timestamp of the last yielded frame
        self._live_offset = 0.0

    def _options(self) -> dict[str, str]:
        c = self.config
        opts = {"protocol_whitelist": _PROTOCOLS[self.scheme]}
        if self.scheme in ("rtsp", "rtsps"):
            opts["rtsp_transport"] = c.rtsp_transport
            opts["timeout"] = str(int(c.read_timeout_s * 1e6))  # socket timeout, microseconds
        return opts

    def frames(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield ``(frame_index, timestamp_s, rgb)`` until the source ends, fails for good, or ``stop``."""
        c = self.config
        failures = 0
        while not self.stop.is_set():
            if failures:
                self.stats.state = "reconnecting"
                wait = c.backoff(failures)
                log.info(
                    "pull %s: reconnect attempt %d/%d in %.1f s (%s)",
                    redact(self.url), failures, c.max_retries, wait, self.stats.last_error,
                )  # fmt: skip
                if self.stop.wait(wait):
                    break
                self.stats.reconnects += 1
            before = self.stats.frames_read
            try:
                yield from self._connection()
                self.stats.state = "stopped" if self.stop.is_set() else "ended"
                return
            except _Dropped as exc:
                self.stats.last_error = str(exc)
            except av.error.FFmpegError as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            except OSError as exc:  # PyAV raises some network errors as plain OSError
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if self.stop.is_set():
                break
            failures = 1 if self.stats.frames_read > before else failures + 1
            if failures > c.max_retries:
                self.stats.state = "failed"
                raise PullFailed(
                    f"{redact(self.url)}: gave up after {c.max_retries} reconnect attempts "
                    f"({self.stats.frames_read} frames read): {self.stats.last_error}"
                )
        self.stats.state = "stopped"

    def _connection(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """One connection's frames; returns at the source's end, raises ``_Dropped`` (or FFmpeg's error) otherwise.

        For a source with a duration, the last ``_HOLD_BACK`` decoded frames are held until a
        later one decodes: the frames decoded just before a drop may be made from data the drop
        cut short (the decoder conceals what is missing), so they are dropped with the
        connection and read again after the resume.
        """
        c = self.config
        container = av.open(self.url, options=self._options(), timeout=(c.open_timeout_s, c.read_timeout_s))
        with container:
            if not container.streams.video:
                raise _Dropped("the source has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            interval = 1.0 / (fps or _FALLBACK_FPS)
            end = _end_seconds(container)
            resume = self._last_ts if end is not None else None
            if resume is not None and stream.time_base is not None:
                container.seek(int(resume / stream.time_base), stream=stream, backward=True)
            self.stats.state = "running"
            self.stats.fps = fps
            self.stats.live = end is None
            hold = _HOLD_BACK if end is not None else 0
            # An RTSP server sends in real time itself; an HTTP file or HLS arrives as fast as the network.
            pace = c.realtime and end is not None and self.scheme in ("http", "https")
            held: deque[tuple[float, av.VideoFrame]] = deque()
            first_pts: float | None = None
            paced_from: tuple[float, float] | None = None  # (source ts, monotonic) of the first paced frame
            last_source_ts: float | None = None
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    source_ts = float(frame.pts * frame.time_base)
                else:
                    source_ts = (last_source_ts + interval) if last_source_ts is not None else 0.0
                last_source_ts = source_ts
                if resume is not None and source_ts <= resume + interval / 2:
                    continue  # yielded before the drop
                if end is not None:
                    ts = source_ts
                else:
                    first_pts = source_ts if first_pts is None else first_pts
                    ts = self._live_offset + (source_ts - first_pts)
                held.append((ts, frame))
                if len(held) <= hold:
                    continue
                ts, frame = held.popleft()
                if pace:
                    now = time.monotonic()
                    paced_from = paced_from or (ts, now)
                    ahead = (ts - paced_from[0]) - (now - paced_from[1])
                    if ahead > 0 and self.stop.wait(ahead):
                        return
                yield self._emit(ts, frame)
                if self.stop.is_set():
                    return
            if end is None:
                if self._last_ts is not None:
                    self._live_offset = self._last_ts + interval
                raise _Dropped("the live stream stopped sending")
            if last_source_ts is None or last_source_ts < end - _END_SLACK_FRAMES * interval:
                at = "no frame" if last_source_ts is None else f"{last_source_ts:.2f} s"
                raise _Dropped(f"the stream stopped at {at}, before its end at {end:.2f} s")
            while held:  # the source's end: the frames held back are whole
                yield self._emit(*held.popleft())
                if self.stop.is_set():
                    return

    def _emit(self, ts: float, frame: av.VideoFrame) -> tuple[int, float, np.ndarray]:
        rgb = frame.to_ndarray(format="rgb24")
        self.stats.width, self.stats.height = rgb.shape[1], rgb.shape[0]
        index = self.stats.frames_read
        self.stats.frames_read += 1
        self._last_ts = ts
        return index, ts, rgb


def _end_seconds(container: av.container.InputContainer) -> float | None:
    """Where the source ends (start + duration, seconds), or None for a live source (no duration)."""
    if not container.duration or container.duration <= 0:
        return None
    start = container.start_time if container.start_time is not None else 0
    return float((start + container.duration) / av.time_base)


def config_from_settings(
    settings: Settings, *, realtime: bool, allow_private: bool | None = None
) -> PullConfig:
    """The ``PullConfig`` of the ``pull_*`` settings (``allow_private``: override ``pull_allow_private``)."""
    return PullConfig(
        max_retries=settings.pull_max_retries,
        initial_backoff_s=settings.pull_initial_backoff_s,
        max_backoff_s=settings.pull_max_backoff_s,
        open_timeout_s=settings.pull_timeout_s,
        read_timeout_s=settings.pull_timeout_s,
        rtsp_transport=settings.pull_rtsp_transport,
        allow_private=settings.pull_allow_private if allow_private is None else allow_private,
        realtime=realtime,
    )
