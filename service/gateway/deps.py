"""Request dependencies as ``Annotated`` aliases, and API-key checks (HTTP and WebSocket)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request, WebSocket

from posestream.service.gateway.errors import ApiError
from posestream.service.gateway.metrics import GatewayMetrics
from posestream.service.messages import RedisKeys
from posestream.service.settings import Settings

# Subprotocols a browser client may offer: ``posestream.v1`` (selected in the reply) and
# ``apikey.<KEY>`` carrying the key, since browsers cannot set WebSocket headers.
WS_SUBPROTOCOL = "posestream.v1"
WS_KEY_SUBPROTOCOL_PREFIX = "apikey."


@dataclass
class GatewayContext:
    """What the routes share, created in the app's lifespan."""

    settings: Settings
    redis: aioredis.Redis
    keys: RedisKeys
    metrics: GatewayMetrics
    uploads: object  # posestream.service.gateway.upload_manager.UploadManager (typed loosely to avoid an import cycle)


def _context(request: Request) -> GatewayContext:
    return request.app.state.ctx


def _ws_context(websocket: WebSocket) -> GatewayContext:
    return websocket.app.state.ctx


Ctx = Annotated[GatewayContext, Depends(_context)]
WsCtx = Annotated[GatewayContext, Depends(_ws_context)]


def key_is_valid(settings: Settings, key: str | None) -> bool:
    if not settings.api_keys:
        return True
    if not key:
        return False
    return any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys)


def key_owner(settings: Settings, key: str | None) -> str:
    """Who owns what a request creates: the SHA-256 hex of its API key (never the key itself).

    With authentication off (no ``api_keys``) every client is the same anonymous owner.
    """
    return hashlib.sha256((key or "").encode() if settings.api_keys else b"").hexdigest()


def key_from_headers(headers: object) -> str | None:
    """The API key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    get = headers.get  # type: ignore[attr-defined]
    auth = get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = get("x-api-key")
    return key.strip() if key else None


def require_api_key(request: Request) -> None:
    """HTTP dependency: 401 when keys are configured and the request has none or a wrong one."""
    settings: Settings = request.app.state.ctx.settings
    if not settings.api_keys:
        return
    key = key_from_headers(request.headers)
    if key is None:
        raise ApiError(
            401, "missing_api_key", "this server needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    if not key_is_valid(settings, key):
        raise ApiError(
            401, "invalid_api_key", "the API key is not valid", headers={"WWW-Authenticate": "Bearer"}
        )


def caller_owner(request: Request) -> str:
    """HTTP dependency: the caller's ``key_owner`` when API keys are configured, else "" (no isolation)."""
    settings: Settings = request.app.state.ctx.settings
    return key_owner(settings, key_from_headers(request.headers)) if settings.api_keys else ""


def ws_credentials(websocket: WebSocket) -> tuple[str | None, str | None]:
    """(API key from headers or an ``apikey.KEY`` subprotocol, subprotocol to select in the reply)."""
    key = key_from_headers(websocket.headers)
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    chosen = None
    for p in offered:
        if p.startswith(WS_KEY_SUBPROTOCOL_PREFIX):
            key = key or p[len(WS_KEY_SUBPROTOCOL_PREFIX) :]
    if WS_SUBPROTOCOL in offered:
        chosen = WS_SUBPROTOCOL
    elif offered:  # a client that offers only the key protocol must get one of its own back
        chosen = offered[0]
    return key, chosen


Authorized = Depends(require_api_key)
Owner = Annotated[str, Depends(caller_owner)]
