"""``--decoder recurrent`` (seed 001) through the settings, the composition root, the estimator and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from posestream.models.weights import (
    RECURRENT_SPATIALNET,
    SPATIAL_DECODERS,
    SPATIALNET_FOR_DECODER,
    SPATIALNET_MOVENET,
    TEMPORALNET_SPATIALNET,
    checkpoint_path,
    sha256_file,
)
from posestream.service.settings import Settings

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def test_decoder_setting_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().decoder == SPATIAL_DECODERS[0] == "embedding"
    monkeypatch.setenv("POSESTREAM_DECODER", "recurrent")
    assert Settings().decoder == "recurrent"
    monkeypatch.setenv("POSESTREAM_DECODER", "greedy")
    with pytest.raises(ValidationError, match="decoder must be one of embedding, recurrent"):
        Settings()


def test_recurrent_decoder_needs_spatialnet() -> None:
    from posestream.service.pipeline import build_pipeline

    for model in ("movenet", "blobs"):
        with pytest.raises(ValueError, match="needs --model spatialnet"):
            build_pipeline(model, "oks", decoder="recurrent")
    with pytest.raises(ValueError, match="unknown decoder"):
        build_pipeline("spatialnet", "oks", decoder="greedy")


def test_missing_or_mismatched_decoder_file_says_what_to_do(tmp_path: Path) -> None:
    from posestream.service.pipeline import build_pipeline

    base = SPATIALNET_FOR_DECODER["recurrent"]
    shutil.copy(checkpoint_path(base), tmp_path / base)
    with pytest.raises(
        ValueError, match=f"needs {tmp_path / RECURRENT_SPATIALNET}.*posestream train recurrent"
    ):
        build_pipeline("spatialnet", "oks", device="cpu", weights_dir=tmp_path, decoder="recurrent")
    blob = torch.load(checkpoint_path(RECURRENT_SPATIALNET), map_location="cpu", weights_only=False)
    blob["card"]["spatialnet_sha256"] = "0" * 64  # trained on some other SpatialNet
    torch.save(blob, tmp_path / RECURRENT_SPATIALNET)
    with pytest.raises(ValueError, match="was trained on SpatialNet sha256 000000000000"):
        build_pipeline("spatialnet", "oks", device="cpu", weights_dir=tmp_path, decoder="recurrent")


def test_each_decoder_runs_on_the_spatialnet_its_files_were_trained_on() -> None:
    """The recurrent decoder keeps the network it was trained on when the embedding default moves on,
    and the shipped TemporalNet reads the embedding default's features (both checked by sha256 at load)."""
    assert SPATIALNET_FOR_DECODER["embedding"] == SPATIALNET_MOVENET
    recurrent = torch.load(checkpoint_path(RECURRENT_SPATIALNET), map_location="cpu", weights_only=False)
    assert recurrent["card"]["spatialnet_sha256"] == sha256_file(
        checkpoint_path(SPATIALNET_FOR_DECODER["recurrent"])
    )
    temporal = torch.load(checkpoint_path(TEMPORALNET_SPATIALNET), map_location="cpu", weights_only=False)
    assert temporal["card"]["spatialnet_sha256"] == sha256_file(checkpoint_path(SPATIALNET_MOVENET))


def test_temporalnet_on_another_spatialnet_is_refused(tmp_path: Path) -> None:
    """TemporalNet's heads read one SpatialNet's features: with the recurrent decoder's network (or any
    other file) the HE / TIE trackers would run on features they never saw, so building says so."""
    from posestream.service.pipeline import build_pipeline

    for name in (SPATIALNET_MOVENET, SPATIALNET_FOR_DECODER["recurrent"], RECURRENT_SPATIALNET):
        shutil.copy(checkpoint_path(name), tmp_path / name)
    shutil.copy(checkpoint_path(TEMPORALNET_SPATIALNET), tmp_path / TEMPORALNET_SPATIALNET)
    with pytest.raises(ValueError, match="recurrent decoder's SpatialNet.*--decoder embedding"):
        build_pipeline("spatialnet", "he+tie", device="cpu", weights_dir=tmp_path, decoder="recurrent")
    blob = torch.load(tmp_path / TEMPORALNET_SPATIALNET, map_location="cpu", weights_only=False)
    blob["card"]["spatialnet_sha256"] = "0" * 64
    torch.save(blob, tmp_path / TEMPORALNET_SPATIALNET)
    with pytest.raises(ValueError, match="sha256 000000000000.*posestream train temporal"):
        build_pipeline("spatialnet", "he", device="cpu", weights_dir=tmp_path)
    build_pipeline(
        "spatialnet", "oks", device="cpu", weights_dir=tmp_path, decoder="recurrent"
    )  # no TemporalNet


def test_estimator_with_the_shipped_recurrent_decoder_finds_people() -> None:
    from posestream.models.data.synthetic import SyntheticClip, SyntheticConfig
    from posestream.models.spatial_estimator import SpatialEstimatorConfig, SpatialNetEstimator
    from posestream.tracker.metrics import evaluate

    est = SpatialNetEstimator(
        checkpoint_path(SPATIALNET_FOR_DECODER["recurrent"]),
        SpatialEstimatorConfig(device="cpu", decoder="recurrent"),
    )
    assert est.net.config.decode.scales == (1.0,) and not est.net.config.decode.flip_test  # the plain pass
    clip = SyntheticClip.from_config(SyntheticConfig(seed=9001, frames=12, people=5))
    gts, preds = [], []
    for t in range(0, 12, 4):
        rgb, gt = clip.render(t)
        out = est([rgb], [t])
        fp = out.poses[0]
        assert fp.keypoints.shape[1:] == (17, 3) and len(fp.scores) == len(fp.keypoints)
        assert out.sie[0].shape == (len(fp.keypoints), 17, 2)
        gts.append(gt)
        preds.append(fp)
    # A held-out clip the decoder never saw: it must find people, not output noise.
    assert evaluate(gts, preds)["AP50"] > 0.3


@pytest.mark.slow
@pytest.mark.skipif(
    not VTEST.is_file(), reason="vtest.avi comes with Debian's opencv-doc (.ci/run installs it)"
)
def test_track_cli_with_recurrent_decoder_on_real_video(tmp_path: Path) -> None:
    from posestream.service.cli import main

    out = tmp_path / "poses.jsonl"
    code = main(["track", str(VTEST), "--model", "spatialnet", "--decoder", "recurrent", "--tracker", "oks",
                 "--max-frames", "4", "--out", str(out), "--quiet", "--device", "cpu"])  # fmt: skip
    assert code == 0
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(frames) == 4
    assert sum(len(f["poses"]) for f in frames) > 0
    assert main(["track", str(VTEST), "--model", "movenet", "--decoder", "recurrent", "--out", str(out)]) == 2
