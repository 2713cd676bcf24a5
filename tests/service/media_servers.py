"""Real media servers on loopback for the pull tests: HTTP (files and HLS) and RTSP.

- ``HttpMediaServer``: ``http.server`` in a thread serving a folder with byte ranges (FFmpeg
  seeks in an MP4 with them), optionally throttled to a byte rate so a clip takes real time
  to arrive, and able to ``stop()`` (close the listening socket and cut every open
  connection) and ``start()`` again on the same port: a server that drops mid-stream.
- ``write_hls``: an HLS VOD playlist (``index.m3u8`` + MPEG-TS segments) of the shapes clip,
  written with PyAV's ``hls`` muxer.
- ``RtspServer``: GStreamer's gst-rtsp-server (``tests/service/rtsp_server.py``) run by the
  system Python as a subprocess, serving an MP4 in real time; ``rtsp_unavailable()`` says
  why it cannot run (the Debian packages ``.ci/run`` installs are missing).
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import av

from tests.service.clips import shapes_frame

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=a-b`` (206) and an optional byte rate."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a) if a else 0
            end = min(int(b), size - 1) if b else size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.end_headers()
        self.server.track(self.connection)
        with open(path, "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            chunk = 512 if self.server.rate_bps else 65536
            while left > 0:
                data = fh.read(min(chunk, left))
                if not data:
                    break
                try:
                    self.wfile.write(data)
                except OSError:
                    return
                left -= len(data)
                if self.server.rate_bps:
                    time.sleep(len(data) / self.server.rate_bps)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, root: Path, rate_bps: float) -> None:
        self.rate_bps = rate_bps
        self.connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        root_dir = str(root)

        def handler(*args: object) -> _Handler:
            return _Handler(*args, directory=root_dir)  # type: ignore[arg-type]

        super().__init__(("127.0.0.1", port), handler)  # type: ignore[arg-type]

    def track(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections.add(conn)

    def cut_all(self) -> None:
        with self._lock:
            conns, self.connections = self.connections, set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HttpMediaServer:
    """Serve ``root`` on ``http://127.0.0.1:PORT/`` (``rate_bps``: throttle each response to that many bytes/s)."""

    def __init__(self, root: Path, rate_bps: float = 0.0) -> None:
        self.root = root
        self.rate_bps = rate_bps
        self.port = _free_port()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self._server = _Server(self.port, self.root, self.rate_bps)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every open connection (clients see the stream drop)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.cut_all()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> HttpMediaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_hls(folder: Path, frames: int = 50, width: int = 320, height: int = 240, fps: int = 25) -> Path:
    """An HLS VOD playlist of the shapes clip (1 s segments) in ``folder``; returns the playlist's path."""
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "index.m3u8"
    options = {
        "hls_time": "1",
        "hls_playlist_type": "vod",
        "hls_segment_filename": str(folder / "seg%03d.ts"),
    }
    with av.open(str(playlist), "w", format="hls", options=options) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "g": str(fps),
            "keyint_min": str(fps),
            "sc_threshold": "0",
        }  # a keyframe per segment
        for t in range(frames):
            frame = av.VideoFrame.from_ndarray(shapes_frame(t, width, height), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return playlist


# GStreamer elements the server's pipelines need: a file (plugins-good/-bad), the live source (+ -ugly's x264enc).
_RTSP_ELEMENTS = {
    False: ("qtdemux", "h264parse", "rtph264pay"),
    True: ("videotestsrc", "x264enc", "rtph264pay"),
}


def rtsp_unavailable(live: bool = False) -> str | None:
    """Why the RTSP test server cannot run here (``live``: its live source), or None when it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} (the system Python with PyGObject) is missing"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
         f"assert all(Gst.ElementFactory.find(e) for e in {_RTSP_ELEMENTS[live]!r})"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode != 0:
        return (
            "gst-rtsp-server is not installed for the system Python (apt-get install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly): "
            + probe.stderr.strip().splitlines()[-1:][0]
            if probe.stderr.strip()
            else "gst-rtsp-server probe failed"
        )
    return None


class RtspServer:
    """``rtsp://127.0.0.1:PORT/clip`` serving ``clip`` in real time, or ``"live"``: a live source without an end
    (a subprocess; ``stop`` and ``start`` again on the same port)."""

    def __init__(self, clip: Path | str) -> None:
        self.clip = clip
        self.port = _free_port()
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/clip"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.clip), str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            err = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"the RTSP server did not start: {line!r} {err}")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
