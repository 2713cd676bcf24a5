"""``posestream.client``: the service's Python client (defined in ``posestream.service.client``).

from posestream.client import Client
with Client("http://127.0.0.1:8000", api_key="KEY") as client:
    frames = client.track("clip.mp4")                   # upload, wait, fetch
    for result in client.stream("clip.mp4"):            # live WebSocket, resumes on drops
        print(result["seq"], [p["track_id"] for p in result["poses"]])
"""

from posestream.service.client import (
    AsyncClient,
    Client,
    HTTPError,
    PosestreamError,
    Stream,
    StreamClosed,
    SyncStream,
    VideoFailed,
    WaitTimeout,
)

__all__ = [
    "AsyncClient",
    "Client",
    "HTTPError",
    "PosestreamError",
    "Stream",
    "StreamClosed",
    "SyncStream",
    "VideoFailed",
    "WaitTimeout",
]
