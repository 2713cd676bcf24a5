"""Session state for the worker, through the tracker's state store.

The worker keeps one thing per session: the tracker state after the session's last
processed frame. Its ``frame_index`` (the number of ``step`` calls so far) doubles as
the session's cursor: every processed frame advances it by exactly one (a frame that
fails is stepped with no detections), and ``seq`` counts a session's frames from 0, so
``state.frame_index == last processed seq + 1`` always holds. Because the cursor lives
inside the state, one version-checked write stores both: a redelivered frame is
recognisable as done after any crash.

Storage belongs to ``posestream.tracker.stores`` (the only code that touches state keys); this
module names the interface the worker needs and builds the store from the settings.
"""

from __future__ import annotations

from typing import Any

import redis

from posestream.service.messages import RedisKeys
from posestream.service.settings import Settings
from posestream.tracker.stores import RedisStore, StaleStateError, StateStore, StoreUnavailableError

__all__ = ["SessionStore", "StaleStateError", "StoreUnavailableError", "build_session_store", "next_seq"]


# The worker needs exactly the tracker's store interface (load / version-checked save / delete).
SessionStore = StateStore


def next_seq(state: Any | None) -> int:
    """The ``seq`` the session's next frame must have."""
    return 0 if state is None else int(state.frame_index)


def build_session_store(client: redis.Redis, settings: Settings) -> SessionStore:
    """The tracker's Redis state store under ``{redis_prefix}state:`` with the session TTL."""
    return RedisStore(
        client, prefix=RedisKeys(settings.redis_prefix).state_prefix, ttl_s=settings.session_ttl_s
    )
