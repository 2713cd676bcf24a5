"""Typed views of redis-py's sync replies and arguments (no Redis calls here).

redis-py shares one set of command signatures between ``redis.Redis`` and
``redis.asyncio.Redis``, so every reply is typed ``Awaitable[Any] | Any`` and field
mappings must be the invariant ``dict[FieldT, EncodableT]``. These two helpers state what
a client really returns and accepts, in one place, instead of scattered ignores.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, cast

from redis.typing import EncodableT, FieldT, ResponseT


def sync_reply(reply: ResponseT) -> Any:
    """``reply`` of a command on a sync ``redis.Redis``: never an awaitable, so its value as is.

    Annotate the variable it is assigned to with the command's reply type.
    """
    return reply


def stream_fields(fields: Mapping[str, bytes | str]) -> dict[FieldT, EncodableT]:
    """``fields`` (the same object) as the ``dict`` type ``xadd`` is annotated with (its stub's dict is invariant)."""
    return cast("dict[FieldT, EncodableT]", fields)


async def awaited(reply: ResponseT) -> Any:
    """``reply`` of a command on an async ``redis.asyncio.Redis``: always an awaitable; its value."""
    return await cast("Awaitable[Any]", reply)
