import pytest
import torch

from posestream.models.backbones.hourglass import HourglassConfig, StackedHourglass


@pytest.mark.parametrize("size", [(64, 64), (128, 96), (96, 160)])
@pytest.mark.parametrize("stacks", [1, 2])
def test_output_shapes(size, stacks):
    cfg = HourglassConfig(stacks=stacks, width=16, depth=3)
    net = StackedHourglass(cfg, out_channels=42).eval()
    with torch.no_grad():
        preds, feat = net(torch.zeros(2, 3, *size))
    assert len(preds) == stacks
    for p in preds:
        assert p.shape == (2, 42, size[0] // 4, size[1] // 4)
    assert feat.shape == (2, 16, size[0] // 4, size[1] // 4)


def test_rejects_bad_size():
    net = StackedHourglass(HourglassConfig(width=16, depth=3), out_channels=4)
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.zeros(1, 3, 48, 64))


def test_intermediate_supervision_reaches_first_stack():
    net = StackedHourglass(HourglassConfig(stacks=2, width=16, depth=2), out_channels=3)
    preds, _ = net(torch.randn(1, 3, 32, 32))
    preds[0].sum().backward()
    assert net.heads[0].weight.grad is not None and net.heads[1].weight.grad is None
