"""A real RTSP server for the pull tests: GStreamer's gst-rtsp-server serving one H.264 MP4 file.

Run with the system Python that has PyGObject and the GStreamer typelibs (Debian ``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-good``/``-bad``), not the project's venv::

    /usr/bin/python3 tests/service/rtsp_server.py CLIP.mp4|live PORT [PATH]

It serves ``rtsp://127.0.0.1:PORT/PATH`` (default ``clip``): the file's H.264 stream, paced in real time,
once per client session (a new session starts at the file's beginning; the server announces its range,
so clients can seek), or with ``live`` a live source without range or end (``videotestsrc`` ball,
``x264enc``, from ``gstreamer1.0-plugins-ugly``). It prints ``ready`` on stdout once it listens and
stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    clip, port = sys.argv[1], sys.argv[2]
    path = sys.argv[3] if len(sys.argv) > 3 else "clip"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    if clip == "live":  # a live source (no range, no end): a ball from videotestsrc, H.264 by x264
        factory.set_launch(
            "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 "
            "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! rtph264pay name=pay0 pt=96 )"
        )
    else:
        factory.set_launch(
            f'( filesrc location="{clip}" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )'
        )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/" + path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
