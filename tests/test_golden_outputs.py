"""Golden outputs: what the models, the tracker and the service give on fixed synthetic inputs.

Each case below produces bytes (rendered frames, JSON Lines, tracker state) from a fixed
synthetic input through the real code, and its SHA-256 must equal the one recorded in
``tests/golden/outputs.json``. A refactor that is meant to change no output (the package
redesign, a file split) must leave every digest alone; a change that is meant to change an
output regenerates the file and says why in its commit:

    POSESTREAM_REGENERATE_GOLDEN=1 python -m pytest tests/test_golden_outputs.py

Digests are exact (byte-identical outputs). The networks' outputs are not byte-identical
across CPU types (float sums take other SIMD paths: the MoveNet default and ``iou-256`` tracks
changed in their last printed digits between an Intel Xeon and an AMD EPYC machine), so the
``posestream track`` cases of the models are stored whole in ``tests/golden/track/`` and
compared by value instead: the same frames, people and track ids in the same order, and every
coordinate within ``XY_TOL_PX`` and every score within ``SCORE_TOL`` of the recorded ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).with_name("golden") / "outputs.json"
REGENERATE = os.environ.get("POSESTREAM_REGENERATE_GOLDEN") == "1"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(name: str, data: bytes) -> None:
    """Compare ``data``'s digest with the recorded one (or record it when regenerating)."""
    recorded = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    digest = _digest(data)
    if REGENERATE:
        recorded[name] = digest
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(dict(sorted(recorded.items())), indent=2) + "\n")
        return
    assert name in recorded, f"no golden digest for {name!r}; regenerate with POSESTREAM_REGENERATE_GOLDEN=1"
    assert digest == recorded[name], (
        f"{name}: output changed (sha256 {digest[:12]} != recorded {recorded[name][:12]}); if the change is "
        f"intended, regenerate with POSESTREAM_REGENERATE_GOLDEN=1 and say why in the commit"
    )


TRACK_DIR = GOLDEN.parent / "track"
# How far a recorded model output may move on another CPU type: pixels (keypoints, boxes) and
# scores (joint and person). Far below what any intended change to a model path moves.
XY_TOL_PX = 0.5
SCORE_TOL = 0.01


def _close(got: list[float], want: list[float], tol: float, what: str) -> None:
    assert len(got) == len(want) and np.allclose(got, want, rtol=0, atol=tol), (
        f"{what}: {got} != {want} (+-{tol})"
    )


def _same_frames(got: list[dict], want: list[dict], name: str) -> None:
    """``got`` equals the recorded JSON Lines frames ``want`` up to the tolerances above."""
    assert len(got) == len(want), f"{name}: {len(got)} frames != recorded {len(want)}"
    for g, w in zip(got, want, strict=True):
        where = f"{name} frame {w['frame_index']}"
        assert {k: v for k, v in g.items() if k != "poses"} == {k: v for k, v in w.items() if k != "poses"}, (
            where
        )
        assert [p["track_id"] for p in g["poses"]] == [p["track_id"] for p in w["poses"]], (
            f"{where}: track ids"
        )
        for gp, wp in zip(g["poses"], w["poses"], strict=True):
            who = f"{where} track {wp['track_id']}"
            assert set(gp) == set(wp), f"{who}: fields {sorted(gp)} != {sorted(wp)}"
            _close([gp["score"]], [wp["score"]], SCORE_TOL, f"{who} score")
            _close(gp["box"], wp["box"], XY_TOL_PX, f"{who} box")
            gk, wk = np.asarray(gp["keypoints"]), np.asarray(wp["keypoints"])
            assert gk.shape == wk.shape, f"{who}: keypoints {gk.shape} != {wk.shape}"
            _close(gk[:, :2].ravel().tolist(), wk[:, :2].ravel().tolist(), XY_TOL_PX, f"{who} keypoints")
            _close(gk[:, 2].tolist(), wk[:, 2].tolist(), SCORE_TOL, f"{who} joint scores")
            for key in set(wp) - {"track_id", "score", "box", "keypoints"}:
                assert gp[key] == wp[key], f"{who}: {key}"


def _check_track(name: str, data: bytes) -> None:
    """Compare a model path's JSON Lines with the recorded file (or record it when regenerating)."""
    path = TRACK_DIR / (name.replace("/", "_") + ".jsonl")
    if REGENERATE:
        TRACK_DIR.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    assert path.is_file(), f"no golden output {path}; regenerate with POSESTREAM_REGENERATE_GOLDEN=1"
    lines = [json.loads(line) for line in data.decode().splitlines()]
    _same_frames(lines, [json.loads(line) for line in path.read_text().splitlines()], name)


@pytest.fixture(scope="module")
def synthetic_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fixed 12-frame, 3-person synthetic clip and its ground truth (JSON Lines).

    Written losslessly (FFV1): x264 was seen to give other bytes for the same frames from one run
    to the next, so an H.264 clip could not give the same input twice.
    """
    pytest.importorskip("av")
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig
    from posestream.models.data.video import VideoWriter
    from posestream.models.poses import dumps_frame

    config = SyntheticConfig(seed=777, frames=12, people=3, width=320, height=240)
    clip = SyntheticClip.from_config(config)
    out = tmp_path_factory.mktemp("golden")
    video, gt = out / "clip.mkv", out / "gt.jsonl"
    with (
        VideoWriter(video, config.width, config.height, config.fps, lossless=True) as writer,
        open(gt, "w") as fh,
    ):
        for t in range(config.frames):
            rgb, poses = clip.render(t)
            writer.write(rgb)
            fh.write(dumps_frame(poses) + "\n")
    return video, gt


def test_synthetic_generator_output(synthetic_clip: tuple[Path, Path]) -> None:
    """The synthetic generator's frames (decoded pixels of the lossless clip) and ground truth are unchanged."""
    from posestream.models.data.video import iter_video_frames

    video, gt = synthetic_clip
    pixels = b"".join(rgb.tobytes() for _, _, rgb in iter_video_frames(video))
    _check("synthetic/frames", pixels)
    _check("synthetic/ground_truth", gt.read_bytes())


def test_tracker_outputs_on_simulated_people() -> None:
    """The tracker core (OKS, IoU and HE+TIE presets) on simulated people: ids per frame and final state."""
    from posestream.tracker.config import TrackerConfig
    from posestream.tracker.state import TrackerState
    from posestream.tracker.step import step
    from posestream.tracker.synthetic import SimPerson, simulate

    # Eight people walking across each other, each leaving view for a few frames, with noisy
    # joints, missing joints and false positives, so that the presets give different states.
    people = [
        SimPerson(i, start=(100 + i * 40, 200 + (i % 3) * 60), velocity=((-1) ** i * 6.0, (i % 2) * 1.5),
                  height=150 + 10 * i, visible=((0, 25 + i * 3), (32 + i, 200)))
        for i in range(8)
    ]  # fmt: skip
    for preset in ("oks", "iou", "he+tie"):
        frames = simulate(
            people, 60, seed=32, keypoint_noise=4.0, he_noise=0.5, tie_noise=6.0,
            false_positive_rate=0.3, missing_joint_rate=0.2,
        )  # fmt: skip
        state = TrackerState.initial()
        config = TrackerConfig(preset=preset)
        ids: list[list[int]] = []
        for f in frames:
            state, tracked = step(state, f.detections, config)
            ids.append([int(i) for i in tracked.track_ids])
        _check(f"tracker/{preset}/ids", json.dumps(ids).encode())
        _check(f"tracker/{preset}/state", state.to_bytes())


# The torch thread count the digests were recorded with (this machine's default): float sums
# depend on it, and other test modules change it for the whole session.
TORCH_THREADS = 2


def _track_cli(video: Path, out: Path, *args: str) -> bytes:
    from posestream.service.cli import main
    from tests.conftest import torch_threads

    with torch_threads(TORCH_THREADS):
        assert main(["track", str(video), "--out", str(out), "--device", "cpu", "-q", *args]) == 0
    return out.read_bytes()


@pytest.mark.weights
@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        (),  # the default: movenet, he+tie, the default input policy with flip and refinement
        ("--tracker", "oks", "--input-size", "512"),
        ("--tracker", "iou", "--input-size", "256"),
        # SpatialNet without the Thunder refinement: the default case above covers that stage, and
        # on this clip Thunder's weak right-ear heat of one person has two cells within 0.7% of
        # each other, so its argmax -- and that joint, by 0.9 px -- flips between CPU types.
        ("--model", "spatialnet", "--tracker", "he+tie", "--no-refine"),
        ("--model", "spatialnet", "--tracker", "ke+sie", "--no-refine"),
    ],
    ids=["default", "oks-512", "iou-256", "spatialnet-he+tie", "spatialnet-ke+sie"],
)
def test_track_cli_outputs(
    args: tuple[str, ...], synthetic_clip: tuple[Path, Path], tmp_path: Path, temporalnet_checkpoint: Path
) -> None:
    """``posestream track`` (models + TemporalNet + tracker + JSON Lines) on the synthetic clip."""
    pytest.importorskip("torch")
    video, _ = synthetic_clip
    _check_track("track/" + ("-".join(args) or "default"), _track_cli(video, tmp_path / "poses.jsonl", *args))


def test_blob_pipeline_outputs(tmp_path: Path) -> None:
    """The service's CPU test pipeline (blobs -> tracker) through ``posestream track --model blobs``."""
    from tests.service.clips import write_clip

    video = write_clip(tmp_path / "shapes.mkv", frames=20, lossless=True)
    _check("track/blobs", _track_cli(video, tmp_path / "poses.jsonl", "--model", "blobs", "--tracker", "iou"))


def test_track_comparison_can_fail() -> None:
    """The value comparison tolerates CPU-type noise and nothing more: a moved joint, a changed id fail."""
    pose = {"track_id": 3, "score": 0.5, "box": [10.0, 20.0, 50.0, 90.0],
            "keypoints": [[12.0, 22.0, 0.6]] * 17}  # fmt: skip
    frame = {"frame_index": 0, "timestamp": 0.0, "width": 320, "height": 240, "poses": [pose]}
    noisy = json.loads(json.dumps(frame))
    noisy["poses"][0]["keypoints"][4] = [12.3, 21.8, 0.605]
    _same_frames([noisy], [frame], "noise")
    for change in (("keypoints", [[12.0 + XY_TOL_PX * 2, 22.0, 0.6]] * 17), ("track_id", 4), ("score", 0.53)):
        moved = json.loads(json.dumps(frame))
        moved["poses"][0][change[0]] = change[1]
        with pytest.raises(AssertionError):
            _same_frames([moved], [frame], "changed")
    with pytest.raises(AssertionError):
        _same_frames([{**frame, "poses": []}], [frame], "lost person")


def test_digest_is_sensitive() -> None:
    """The comparison can fail: a one-byte change gives another digest."""
    data = np.arange(64, dtype=np.uint8).tobytes()
    changed = bytearray(data)
    changed[7] ^= 1
    assert _digest(data) != _digest(bytes(changed))
