"""``posestream.client`` against the real gateway, a real blob-pipeline worker and real Redis.

The dropped-connection test puts a loopback TCP proxy between the client and the gateway and
cuts every connection through it mid-stream (no close frame, as a network failure would): the
client must resume the session and yield every frame's result exactly once, in order, with
the same track ids as an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from posestream.client import AsyncClient, Client, HTTPError, StreamClosed, WaitTimeout
from posestream.service.settings import Settings
from tests.service.conftest import ServerThread, WorkerThread
from tests.service.helpers import lane_ids

FRAMES = 40


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    from tests.service.clips import write_clip

    return write_clip(tmp_path / "shapes.mkv", frames=FRAMES, lossless=True)


class CuttableProxy:
    """A loopback TCP proxy to ``port`` whose ``cut()`` aborts every connection through it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.conns: list[asyncio.StreamWriter] = []
        self.accepted = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        self.conns += [writer, up_w]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def cut(self) -> None:
        for w in self.conns:
            w.transport.abort()
        self.conns.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()


def test_upload_wait_and_poses_with_the_sync_client(stack: ServerThread, clip: Path) -> None:
    with Client(stack.url) as client:
        video_id = client.upload(clip)
        status = client.wait(video_id, timeout_s=60)
        frames = client.poses(video_id)
        assert status["status"] == "done" and status["frames_done"] == FRAMES
        assert [f["frame_index"] for f in frames] == list(range(FRAMES))
        assert all(len(v) == 1 for v in lane_ids(frames).values())
        assert client.track(clip) == frames  # the same pipeline gives the same result
        client.delete(video_id)
        with pytest.raises(HTTPError) as err:
            client.status(video_id)
        assert (err.value.status, err.value.code) == (404, "not_found")


def test_wait_times_out_with_the_last_status(gateway: ServerThread, clip: Path) -> None:
    with Client(gateway.url) as client:  # no worker: the upload stays queued or running
        video_id = client.upload(clip)
        with pytest.raises(WaitTimeout) as err:
            client.wait(video_id, timeout_s=0.5, poll_s=0.05)
        assert err.value.status["status"] in ("queued", "running")
        assert isinstance(err.value, TimeoutError)


def test_api_keys_http_status_and_ws_close_code(make_settings: Callable[..., Settings], clip: Path) -> None:
    settings = make_settings(api_keys=["k1"])
    with WorkerThread(settings), ServerThread(settings) as server:
        with Client(server.url, api_key="wrong") as bad:
            with pytest.raises(HTTPError) as err:
                bad.upload(clip)
            assert (err.value.status, err.value.code) == (401, "invalid_api_key")
            with pytest.raises(StreamClosed) as closed:
                list(bad.stream(clip))
            assert closed.value.code == 4401 and "invalid API key" in closed.value.reason
        with Client(server.url, api_key="k1") as good:
            results = list(good.stream(clip, mode="ordered"))
            assert [r["frame_index"] for r in results] == list(range(FRAMES))


def test_stream_resumes_after_the_socket_is_cut_with_no_frame_lost_or_repeated(
    make_settings: Callable[..., Settings], clip: Path
) -> None:
    # One frame of a session queued in Redis at a time: the others the client has in flight wait
    # in the gateway, unqueued, so a cut always loses some and the client must send them again.
    settings = make_settings(max_inflight=1)

    async def main(stack: ServerThread) -> tuple[list[dict], list[dict], int, int, int]:
        async with AsyncClient(stack.url) as direct:
            reference = [r async for r in direct.stream(clip, mode="ordered")]
        proxy = CuttableProxy(stack.port)
        port = await proxy.start()
        try:
            async with AsyncClient(f"http://127.0.0.1:{port}") as client:
                stream = client.stream(clip, mode="ordered", max_inflight=6)
                got = []
                async for result in stream:
                    got.append(result)
                    if len(got) in (5, 23):  # twice: mid-stream, with frames in flight each time
                        proxy.cut()
                assert stream.end is not None and stream.session is not None
                return reference, got, stream.reconnects, stream.resent, proxy.accepted
        finally:
            await proxy.close()

    with WorkerThread(settings), ServerThread(settings) as stack:
        reference, got, reconnects, resent, accepted = asyncio.run(main(stack))
    assert reconnects == 2 and accepted >= 3
    assert [r["seq"] for r in got] == list(range(FRAMES))
    assert [r["frame_index"] for r in got] == list(range(FRAMES))
    assert resent > 0  # the cuts did lose unqueued frames, and they were sent again

    def tracks(rs: list[dict]) -> list[list[tuple[int, list[float]]]]:
        return [[(p["track_id"], p["box"]) for p in r["poses"]] for r in rs]

    assert tracks(got) == tracks(reference)  # same poses and ids as the uninterrupted session


def test_sync_stream_of_arrays_in_live_mode_bounds_inflight(stack: ServerThread) -> None:
    from tests.service.clips import shapes_frame

    frames = [shapes_frame(t)[:, :, ::-1].copy() for t in range(30)]  # BGR arrays
    with Client(stack.url) as client:
        stream = client.stream(frames, mode="live", fps=25, max_inflight=2)
        results = list(stream)
    indices = [r["frame_index"] for r in results]
    assert indices == sorted(set(indices)) and indices[-1] == 29
    # Within two frames in flight the gateway's live queue never overflows: nothing dropped.
    assert stream.stream.dropped == 0 and len(results) == 30


def test_the_readme_example_runs(make_settings: Callable[..., Settings], clip: Path, capsys) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Python client") :]
    code = section[section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))]
    settings = make_settings(api_keys=["KEY"])
    with WorkerThread(settings), ServerThread(settings) as server:
        code = code.replace("http://127.0.0.1:8000", server.url).replace('"clip.mp4"', repr(str(clip)))
        exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == FRAMES + 1 and lines[0].startswith("0 0 [")
