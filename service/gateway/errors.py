"""Every HTTP error is ``{"error": {"code": "...", "message": "..."}}``; WebSocket errors are close codes.

WebSocket close codes (the reason text says what went wrong):

====  =====================  =============================================================
code  name                   when
====  =====================  =============================================================
1000  normal                 after ``{"end": true}`` once every result was sent
1003  unsupported_data       a text message where a binary frame was expected (other than ``{"end": true}``)
1007  invalid_frame          binary message shorter than 9 bytes, no JPEG/PNG header, or not the hello's size
1009  frame_too_large        binary message larger than ``max_ws_frame_bytes``
1011  internal_error         unexpected server error
1012  (uvicorn)              the gateway is shutting down (resume the session after the restart)
1013  unavailable            Redis unreachable (try again later)
4400  bad_hello              first message missing, not JSON, fields invalid, over ``max_frame_pixels``, or
                             ``ack`` beyond the session's last frame; bad ``?session=``
4401  unauthorized           API keys configured and none / a wrong one given
4404  no_session             ``?session=ID`` unknown, expired, or created with another API key (the same
                             answer for all three, so a key learns nothing about others' sessions)
4408  hello_timeout          no hello within 10 s
4409  session_busy           ``?session=ID`` is streaming on another connection, or this connection lost the
                             session's lock (it stalled past ``stream_lock_ms`` and another connection took over)
4502  source_failed          ``WS /v1/pulls/{id}/results``: the pull failed (its source failed for good after
                             ``pull_max_retries`` reconnect attempts, or sent a frame over ``max_frame_pixels``)
====  =====================  =============================================================

Not closing: a duplicate or decreasing frame index gets the text message
``{"error": {"code": "frame_out_of_order", "message": ...}}`` and the frame is ignored.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

WS_NORMAL = 1000
WS_UNSUPPORTED = 1003
WS_INVALID_FRAME = 1007
WS_TOO_LARGE = 1009
WS_INTERNAL = 1011
WS_UNAVAILABLE = 1013
WS_BAD_HELLO = 4400
WS_UNAUTHORIZED = 4401
WS_NO_SESSION = 4404
WS_HELLO_TIMEOUT = 4408
WS_SESSION_BUSY = 4409
WS_SOURCE_FAILED = 4502


class ApiError(Exception):
    """An HTTP error with a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "upload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    500: "internal_error", 503: "unavailable",
}  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    """Make every error (ours, routing, validation, unexpected) a JSON error body."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        return JSONResponse(
            error_body("validation_error", "; ".join(parts) or "invalid request"), status_code=422
        )

    @app.exception_handler(aioredis.ConnectionError)
    @app.exception_handler(aioredis.TimeoutError)
    async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
        # Redis restarting: nothing is lost on the client's side; try again in a moment.
        return JSONResponse(
            error_body("redis_unavailable", f"Redis does not answer ({exc}); try again shortly"),
            status_code=503, headers={"Retry-After": "1"},
        )  # fmt: skip

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal_error", f"{type(exc).__name__}: {exc}"), status_code=500)
