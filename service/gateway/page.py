"""The browser page at ``/``: live streaming from a file or the webcam, and uploads.

Static files only (``static/``: HTML, CSS, one ES module; no CDN, no build step). The page
speaks the public APIs like any client: ``WS /v1/streams`` with the API key as the
``apikey.KEY`` subprotocol, ``POST /v1/videos`` with ``X-API-Key``. The skeleton it draws
and its track colours come from ``posestream.models.skeleton`` and ``posestream.models.data.draw`` through ``/page/skeleton.json``, so the edges are
defined once. The page itself needs no key (it holds no data); the user types one in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from posestream.models.data.draw import TRACK_PALETTE, UNTRACKED_COLOR
from posestream.models.skeleton import EDGES, KEYPOINT_NAMES
from posestream.service.gateway.deps import WS_KEY_SUBPROTOCOL_PREFIX, WS_SUBPROTOCOL

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/page/skeleton.json")
async def skeleton() -> dict[str, Any]:
    """Keypoint names, limb edges (index pairs into the 17 COCO keypoints), the track colours
    (RGB, ``track_id % len``; the same as the rendered MP4's) and the WS subprotocols."""
    return {
        "keypoints": list(KEYPOINT_NAMES),
        "edges": [list(e) for e in EDGES],
        "palette": [list(c) for c in TRACK_PALETTE],
        "untracked": list(UNTRACKED_COLOR),
        "subprotocol": WS_SUBPROTOCOL,
        "key_subprotocol_prefix": WS_KEY_SUBPROTOCOL_PREFIX,
    }


def install_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
