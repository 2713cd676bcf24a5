"""Golden outputs of the two decoders: MoveNet's (``movenet_decode.decode``) and SpatialNet's (``decode.decode_spatial``).

Each decoder runs on two kinds of fixed input:

- seeded maps (blobs where people stand, noise elsewhere), so the test runs without any weights;
- the maps the real network gives on a fixed synthetic frame (MoveNet with the fetched
  weights, SpatialNet with our committed ``weights/spatialnet_synthetic.pt``), so the decoder
  sees what it sees in production.

The decoded people (keypoints, boxes, scores, centres) are compared with the ones recorded in
``tests/golden/decoders.json`` to 1e-4 (pixels and scores): a refactor of a decoder must not
move a joint. A change that is meant to change the decoding regenerates the file and says why
in its commit:

    POSESTREAM_REGENERATE_GOLDEN=1 python -m pytest tests/models/test_golden_decoders.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "decoders.json"
REGENERATE = os.environ.get("POSESTREAM_REGENERATE_GOLDEN") == "1"
ROOT = Path(__file__).resolve().parents[2]
SPATIALNET_WEIGHTS = ROOT / "weights" / "spatialnet_synthetic.pt"
ATOL = 1e-4  # pixels and scores; float32 decoding on one CPU build is reproducible far below this
H = W = 48  # seeded map size (cells)


def _check(name: str, arrays: dict[str, np.ndarray]) -> None:
    """Compare ``arrays`` with the recorded ones (or record them when regenerating)."""
    recorded = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.is_file() else {}
    if REGENERATE:
        recorded[name] = {
            k: {"shape": list(v.shape), "values": np.asarray(v, np.float64).ravel().tolist()}
            for k, v in sorted(arrays.items())
        }
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(dict(sorted(recorded.items())), indent=1) + "\n", encoding="utf-8")
        return
    assert name in recorded, f"no golden output for {name!r}; regenerate with POSESTREAM_REGENERATE_GOLDEN=1"
    want = recorded[name]
    assert sorted(want) == sorted(arrays), f"{name}: fields {sorted(arrays)} != recorded {sorted(want)}"
    for key, value in arrays.items():
        expected = np.asarray(want[key]["values"], np.float64).reshape(want[key]["shape"])
        assert value.shape == expected.shape, (
            f"{name}/{key}: shape {value.shape} != recorded {expected.shape}"
        )
        np.testing.assert_allclose(
            value, expected, rtol=0, atol=ATOL,
            err_msg=f"{name}/{key} changed; if intended, regenerate with POSESTREAM_REGENERATE_GOLDEN=1",
        )  # fmt: skip


def _blobs(rng: np.random.Generator, centres: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """(h, w) sum of Gaussian blobs of height 1 at ``centres`` (N, 2) as (x, y) cells, clipped to [0, 1]."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for cx, cy in centres:
        out += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return np.clip(out + rng.uniform(0, 0.05, (h, w)).astype(np.float32), 0, 1)


def _people(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` people: centres (n, 2) and joints (n, 17, 2) in cells, as (x, y)."""
    centres = rng.uniform(10, W - 10, (n, 2)).astype(np.float32)
    joints = centres[:, None, :] + rng.normal(0, 3.0, (n, 17, 2)).astype(np.float32)
    return centres, np.clip(joints, 1, W - 2)


def seeded_movenet_maps(seed: int = 2101, people: int = 3) -> dict[str, torch.Tensor]:
    """Activated MoveNet head maps (batch 1) for ``people`` seeded people on an H x W grid."""
    rng = np.random.default_rng(seed)
    centres, joints = _people(rng, people)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    # Regression at every cell: the displacement (dy, dx) from that cell to the nearest person's joints.
    nearest = np.argmin(
        ((xs[..., None] - centres[:, 0]) ** 2 + (ys[..., None] - centres[:, 1]) ** 2), axis=-1
    )
    regression = np.zeros((34, H, W), np.float32)
    for k in range(17):
        regression[2 * k] = joints[nearest, k, 1] - ys
        regression[2 * k + 1] = joints[nearest, k, 0] - xs
    heat = np.stack(
        [_blobs(rng, joints[:, k] + rng.normal(0, 0.5, (people, 2)), H, W, 1.2) for k in range(17)]
    )
    maps = {
        "center_heatmap": _blobs(rng, centres, H, W, 2.0)[None],
        "keypoint_regression": regression,
        "keypoint_heatmap": heat,
        "keypoint_offset": rng.uniform(-0.5, 0.5, (34, H, W)).astype(np.float32),
        "box_scale": np.full((2, H, W), 12.0, np.float32) + rng.uniform(0, 4, (2, H, W)).astype(np.float32),
        "box_offset": rng.uniform(-1, 1, (2, H, W)).astype(np.float32),
    }
    return {k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in maps.items()}


def seeded_spatial_maps(seed: int = 2102, people: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SpatialNet maps for ``people`` seeded people: heatmaps (17, H, W), tags (17, 1, H, W), svf (2, H, W)."""
    rng = np.random.default_rng(seed)
    centres, joints = _people(rng, people)
    heat = np.stack([_blobs(rng, joints[:, k], H, W, 1.2) for k in range(17)])
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    nearest = np.argmin(
        ((xs[..., None] - centres[:, 0]) ** 2 + (ys[..., None] - centres[:, 1]) ** 2), axis=-1
    )
    # Each person's tag is its index; the SVF points from every cell to its nearest person's centre.
    tags = np.repeat(
        (nearest.astype(np.float32) + rng.normal(0, 0.05, (H, W)).astype(np.float32))[None], 17, axis=0
    )
    svf = np.stack([xs - centres[nearest, 0], ys - centres[nearest, 1]]).astype(np.float32)
    return torch.from_numpy(heat), torch.from_numpy(tags[:, None]), torch.from_numpy(svf)


def _movenet_arrays(poses) -> dict[str, np.ndarray]:
    return {
        "keypoints": poses.keypoints,
        "boxes": poses.boxes,
        "scores": poses.scores,
        "centers": poses.centers,
    }


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A fixed 320x240 synthetic frame (seed 777, as tests/test_golden_outputs.py's clip) with 3 people."""
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig

    clip = SyntheticClip.from_config(SyntheticConfig(seed=777, frames=12, people=3, width=320, height=240))
    rgb, _ = clip.render(6)
    return rgb


def test_movenet_decoder_on_seeded_maps() -> None:
    from posestream.models.movenet_decode import DecoderConfig, decode

    (poses,) = decode(seeded_movenet_maps(), DecoderConfig(), stride=4)
    assert len(poses) > 0, "the seeded maps must give people, or the golden output proves nothing"
    _check("movenet/seeded", _movenet_arrays(poses))


def test_spatialnet_decoder_on_seeded_maps() -> None:
    from posestream.models.decode import DecodeConfig, decode_spatial

    heat, tags, svf = seeded_spatial_maps()
    keypoints, scores = decode_spatial(heat, tags, svf, DecodeConfig(), stride=4)
    assert len(scores) > 0, "the seeded maps must give people, or the golden output proves nothing"
    _check("spatialnet/seeded", {"keypoints": keypoints, "scores": scores})


@pytest.mark.weights
def test_movenet_decoder_on_the_network_maps(movenet_tflite: Path, frame: np.ndarray) -> None:
    """MoveNet (fetched weights) on the synthetic frame at 256 px, its activated maps decoded."""
    from posestream.models.backbones.movenet import FEATURE_STRIDE, MoveNetMultiPose
    from posestream.models.estimator import letterbox
    from posestream.models.heads import MOVENET_HEADS, activate_all
    from posestream.models.movenet_decode import DecoderConfig, decode

    model = MoveNetMultiPose.from_tflite(movenet_tflite)
    canvas, _ = letterbox([frame], 256)
    with torch.inference_mode():
        maps = activate_all(
            MOVENET_HEADS, model(torch.from_numpy(canvas).permute(0, 3, 1, 2).float().contiguous())
        )
    (poses,) = decode(maps, DecoderConfig(), FEATURE_STRIDE)
    assert len(poses) > 0
    _check("movenet/network", _movenet_arrays(poses))


@pytest.mark.skipif(not SPATIALNET_WEIGHTS.is_file(), reason="weights/spatialnet_synthetic.pt not present")
def test_spatialnet_decoder_on_the_network_maps(frame: np.ndarray) -> None:
    """Our synthetic-trained SpatialNet on the synthetic frame at 320 px, the last stack's maps decoded."""
    from posestream.models.decode import decode_spatial
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator
    from posestream.models.spatialnet import STRIDE

    estimator = SpatialNetEstimator(SPATIALNET_WEIGHTS, SpatialEstimatorConfig(input_size=320, device="cpu"))
    last = estimator.maps([frame]).last
    net = estimator.net
    keypoints, scores = decode_spatial(
        last["heatmaps"][0].float().clamp(0, 1), last["tags"][0].float(), last["svf"][0].float(),
        net.config.decode_config(), STRIDE, net.pose_prior,
    )  # fmt: skip
    assert len(scores) > 0
    _check("spatialnet/network", {"keypoints": keypoints, "scores": scores})


def test_the_comparison_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A joint moved by 1e-3 px fails the check; the recorded value itself passes."""
    monkeypatch.setattr(f"{__name__}.GOLDEN", tmp_path / "golden.json")
    monkeypatch.setattr(f"{__name__}.REGENERATE", True)
    keypoints = np.arange(51, dtype=np.float32).reshape(1, 17, 3)
    _check("toy", {"keypoints": keypoints})
    monkeypatch.setattr(f"{__name__}.REGENERATE", False)
    _check("toy", {"keypoints": keypoints.copy()})
    moved = keypoints.copy()
    moved[0, 5, 0] += 1e-3
    with pytest.raises(AssertionError, match="toy/keypoints changed"):
        _check("toy", {"keypoints": moved})
    with pytest.raises(AssertionError, match="no golden output"):
        _check("other", {"keypoints": keypoints})
