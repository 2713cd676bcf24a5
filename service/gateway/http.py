"""The gateway's HTTP/1.1 protocol: uvicorn's h11 implementation with JSON parse errors.

uvicorn answers a request h11 cannot parse (an invalid ``Content-Length``, broken
headers) itself, before the app sees it, with a plain-text 400. ``JsonErrorH11Protocol``
sends the gateway's JSON error body instead (code ``bad_request``).
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from posestream.service.gateway.errors import error_body
from posestream.service.settings import Settings


class JsonErrorH11Protocol(H11Protocol):
    """``H11Protocol`` whose 400 for an unparsable request is ``{"error": {"code": "bad_request", ...}}``."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(error_body("bad_request", f"malformed HTTP request: {msg}")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        self.transport.write(
            self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
        )
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """Keyword arguments of ``uvicorn.Config``/``uvicorn.run`` that every gateway server gets."""
    http: object = JsonErrorH11Protocol if settings.http_implementation == "json-errors" else "h11"
    return {"http": http, "ws_max_size": settings.max_ws_frame_bytes + 1024}
