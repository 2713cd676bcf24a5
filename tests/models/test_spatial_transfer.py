"""SpatialNet's head transfer from MoveNet (issue 18 item 1): an untrained network's heatmaps are MoveNet's.

On a real frame (vtest.avi, frame 200, the frame the issue's "7 people" check uses), a SpatialNet
with ``movenet_heatmaps`` and freshly initialised heads must output, at every stack, exactly
the sigmoid of MoveNet MultiPose's own pretrained keypoint heatmap head run by the
``MoveNetMultiPose`` port on the same pixels; one optimiser step must then move the heatmaps
(the residual trains) while MoveNet's head stays frozen and out of the state dict.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from posestream.models.backbones.movenet import MoveNetMultiPose
from posestream.models.checkpoints import load_spatialnet
from posestream.models.data.augment import fit_affine, warp_image
from posestream.models.spatialnet import SpatialNet, SpatialNetConfig

TINY = {"stacks": 2, "width": 16, "depth": 2}
INPUT = (256, 192)  # (width, height) the frame is fitted into
FRAME = 200


@pytest.fixture(scope="module")
def real_frame() -> np.ndarray:
    """Frame 200 of vtest.avi fitted into ``INPUT``, (H, W, 3) uint8 RGB."""
    from posestream.models.data.real_clips import DataError, iter_clip_frames

    try:
        _, _, rgb = next(iter_clip_frames(f"vtest:{FRAME}:{FRAME + 1}"))
    except DataError as exc:
        pytest.skip(f"vtest.avi is not available: {exc}")
    w, h = INPUT
    return warp_image(rgb, fit_affine(rgb.shape[1], rgb.shape[0], w, h), w, h)


def _config(**kw) -> SpatialNetConfig:
    from posestream.models.backbones.hourglass import HourglassConfig

    return SpatialNetConfig(backbone=HourglassConfig(**TINY), features="movenet", **kw)


def test_head_transfer_needs_the_movenet_features():
    with pytest.raises(ValueError, match="features: movenet"):
        SpatialNetConfig(movenet_heatmaps=True)


def test_untrained_heatmaps_equal_movenets_on_a_real_frame(movenet_tflite, real_frame):
    torch.manual_seed(0)
    net = SpatialNet(_config(movenet_heatmaps=True), movenet_weights=movenet_tflite).eval()
    movenet = MoveNetMultiPose.from_tflite(movenet_tflite)
    pixels = torch.from_numpy(real_frame).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        expected = torch.sigmoid(movenet(pixels)["keypoint_heatmap"])
        stacks, _ = net(net.normalise(pixels))
    assert expected.shape == (1, 17, 48, 64)
    assert float(expected.max()) > 0.5  # the frame has people MoveNet is sure of: not a vacuous match
    for maps in stacks:
        torch.testing.assert_close(maps["heatmaps"], expected, rtol=1e-5, atol=1e-5)
    # Without the transfer the same initialisation predicts something else entirely.
    torch.manual_seed(0)
    plain = SpatialNet(_config(), movenet_weights=movenet_tflite).eval()
    with torch.no_grad():
        other = plain(plain.normalise(pixels))[0][-1]["heatmaps"]
    assert float((other - expected).abs().max()) > 0.1


def test_the_residual_trains_and_movenets_head_stays_frozen_and_unsaved(movenet_tflite, real_frame, tmp_path):
    torch.manual_seed(0)
    cfg = _config(movenet_heatmaps=True)
    net = SpatialNet(cfg, movenet_weights=movenet_tflite).train()
    head = net.backbone.stem[0].movenet.heads["keypoint_heatmap"]
    assert not any(p.requires_grad for p in head.parameters())
    before = {k: v.clone() for k, v in head.state_dict().items()}
    x = net.normalise(torch.from_numpy(real_frame).permute(2, 0, 1)[None].float())
    with torch.no_grad():
        start = net(x)[0][-1]["heatmaps"].clone()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    stacks, _ = net(x)
    sum(m["heatmaps"].pow(2).mean() for m in stacks).backward()  # any loss on the heatmaps
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
    net.eval()
    with torch.no_grad():
        after = net(x)[0][-1]["heatmaps"]
    assert float((after - start).abs().max()) > 1e-3
    state = net.state_dict()
    assert not any(".movenet." in k for k in state)
    path = tmp_path / "transfer.pt"
    torch.save({"config": dataclasses.asdict(cfg), "model": state}, path)
    torch.testing.assert_close(load_spatialnet(path)(x)[0][-1]["heatmaps"], after)
