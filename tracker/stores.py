"""Where sessions' tracker states live between frames: in memory or in Redis.

Both stores implement ``StateStore``: ``load`` returns the state and its version,
``save`` writes a new version only if the stored version is still the one the caller
loaded (compare-and-set), so two workers can never interleave one session's frames
unnoticed: the second writer gets ``StaleStateError`` and must reload. Versions count
saves: 0 means "no state stored", each successful save returns the previous version + 1.
Every save (re)sets the session's time to live, so idle sessions disappear by themselves.

This module is the only code that touches Redis keys for tracker state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from posestream.tracker.state import StateFormatError, TrackerState

__all__ = ["MemoryStore", "RedisStore", "StaleStateError", "StateStore", "StoreUnavailableError"]


class StaleStateError(RuntimeError):
    """A save expected a version that is no longer the stored one (someone saved meanwhile)."""

    def __init__(self, session: str, expected: int, current: int) -> None:
        super().__init__(
            f"tracker state of session {session!r} is at version {current}, not {expected}: another worker "
            f"saved it meanwhile (or it expired); reload the state and redo the frame"
        )
        self.session, self.expected, self.current = session, expected, current


class StoreUnavailableError(RuntimeError):
    """The state store's backend cannot be reached."""


class StateStore(Protocol):
    """Version-checked storage of ``TrackerState`` per session id."""

    def load(self, session: str) -> tuple[TrackerState | None, int]:
        """The session's state and version, or ``(None, 0)`` if none is stored (or it expired)."""
        ...

    def save(self, session: str, state: TrackerState, expected_version: int) -> int:
        """Store ``state`` if the stored version is ``expected_version``; returns the new version.

        Raises ``StaleStateError`` otherwise (nothing is written).
        """
        ...

    def delete(self, session: str) -> None:
        """Forget the session (no error if it is not stored)."""
        ...


class MemoryStore:
    """In-process ``StateStore`` for the embedded pipeline and tests.

    States are kept serialised (as Redis would keep them), so nothing stored can be
    changed through a reference and every save checks that the state serialises.
    Thread-safe; expired sessions are purged on access.

    Args:
        ttl_s: seconds a session lives after its last save; ``None`` keeps it forever.
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(self, ttl_s: float | None = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0 seconds or None (no expiry), got {ttl_s}")
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: dict[str, tuple[int, bytes, float]] = {}
        self._lock = threading.Lock()

    def load(self, session: str) -> tuple[TrackerState | None, int]:
        _check_session(session)
        with self._lock:
            self._purge()
            entry = self._data.get(session)
        if entry is None:
            return None, 0
        return TrackerState.from_bytes(entry[1]), entry[0]

    def save(self, session: str, state: TrackerState, expected_version: int) -> int:
        _check_session(session)
        _check_version(expected_version)
        data = state.to_bytes()
        with self._lock:
            self._purge()
            current = self._data[session][0] if session in self._data else 0
            if current != expected_version:
                raise StaleStateError(session, expected_version, current)
            expires = float("inf") if self.ttl_s is None else self._clock() + self.ttl_s
            self._data[session] = (current + 1, data, expires)
            return current + 1

    def delete(self, session: str) -> None:
        _check_session(session)
        with self._lock:
            self._data.pop(session, None)

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._data)

    def _purge(self) -> None:
        now = self._clock()
        for key in [k for k, (_, _, expires) in self._data.items() if expires <= now]:
            del self._data[key]


# Compare-and-set in one atomic script: KEYS[1] the session hash; ARGV = expected version,
# state bytes, TTL in ms. Returns {1, new_version} or {0, current_version}.
_SAVE_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
redis.call('HSET', KEYS[1], 'v', current + 1, 's', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, current + 1}
"""


class RedisStore:
    """``StateStore`` in Redis: one hash per session at ``prefix + session`` with fields
    ``v`` (version) and ``s`` (``TrackerState.to_bytes()``), expiring ``ttl_s`` after the
    last save. The version check and the write run in one Lua script, so they are atomic.

    If a session expires and is started afresh, its versions start again at 1; a worker
    still holding a version from before the expiry is rejected unless it happens to hold
    exactly the new version number, so keep ``ttl_s`` well above a worker's frame time.

    Args:
        redis: a ``redis://`` URL or a ``redis.Redis`` client created with
            ``decode_responses=False`` (the state is binary).
        prefix: key prefix; the store touches only keys under it.
        ttl_s: seconds a session lives after its last save.
        timeout_s: connect and socket timeout when a URL is given.
    Raises:
        StoreUnavailableError: from any method, when Redis cannot be reached.
    """

    def __init__(
        self,
        redis: str | Any,
        *,
        prefix: str = "posestream:tracker:",
        ttl_s: float = 3600.0,
        timeout_s: float = 2.0,
    ) -> None:
        import redis as redis_lib  # imported here so the in-memory path never needs it

        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0 seconds (sessions must expire), got {ttl_s}")
        if not prefix:
            raise ValueError("prefix must not be empty; the store must own a key namespace of its own")
        self._errors = (redis_lib.exceptions.ConnectionError, redis_lib.exceptions.TimeoutError)
        if isinstance(redis, str):
            self._client = redis_lib.Redis.from_url(
                redis, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
            )
            self._where = _redact(redis)
        else:
            self._client = redis
            kwargs = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
            if kwargs.get("decode_responses"):
                raise ValueError(
                    "the Redis client decodes responses to str; create it with decode_responses=False"
                )
            self._where = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._save = self._client.register_script(_SAVE_SCRIPT)

    def key(self, session: str) -> str:
        """The Redis key holding a session's state."""
        _check_session(session)
        return self.prefix + session

    def load(self, session: str) -> tuple[TrackerState | None, int]:
        key = self.key(session)
        version, data = self._call(lambda: self._client.hmget(key, ["v", "s"]))
        if version is None or data is None:
            return None, 0
        try:
            return TrackerState.from_bytes(data), int(version)
        except StateFormatError as exc:
            raise StateFormatError(f"Redis key {key!r}: {exc}") from None

    def save(self, session: str, state: TrackerState, expected_version: int) -> int:
        key = self.key(session)
        _check_version(expected_version)
        data = state.to_bytes()
        ttl_ms = max(1, int(round(self.ttl_s * 1000)))
        ok, version = self._call(lambda: self._save(keys=[key], args=[expected_version, data, ttl_ms]))
        if not ok:
            raise StaleStateError(session, expected_version, int(version))
        return int(version)

    def delete(self, session: str) -> None:
        key = self.key(session)
        self._call(lambda: self._client.delete(key))

    def ping(self) -> None:
        """Check that Redis answers (``StoreUnavailableError`` if not); for health checks."""
        self._call(self._client.ping)

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._errors as exc:
            raise StoreUnavailableError(
                f"cannot reach Redis at {self._where} for tracker state ({type(exc).__name__}: {exc}); "
                f"check that Redis is running and that the configured Redis URL points at it"
            ) from exc


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def _check_session(session: str) -> None:
    if not isinstance(session, str) or not session:
        raise ValueError(f"session id must be a non-empty string, got {session!r}")


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"expected_version must be an integer >= 0 (0: nothing stored yet), got {version!r}")
