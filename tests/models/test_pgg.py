"""Pose-Guided Grouping (seed 000 Algorithm 1)."""

import torch

from posestream.models.losses import pgg_grouping_loss
from posestream.models.pgg import PGGConfig, gbms, pgg_memory_bytes, pose_guided_grouping


def _two_people_maps(h=16, w=16):
    """Heatmaps, tags and SIE for two people: left (tag ~0.0, centre (4, 8)), right (tag ~0.5, centre (12, 8))."""
    g = torch.Generator().manual_seed(0)
    heat = torch.zeros(1, 17, h, w)
    tags = torch.randn(1, 17, h, w, generator=g) * 5  # background noise, masked out
    sie = torch.randn(1, 2, h, w, generator=g) * 50
    person = torch.full((h * w,), -1)
    for k, (x0, tag, cx) in enumerate([(2, 0.0, 4.0), (10, 0.5, 12.0)]):
        for j in range(5):
            y, x = 4 + j, x0 + (j % 3)
            heat[0, j, y, x] = 0.9
            tags[0, j, y, x] = tag + 0.08 * torch.randn(1, generator=g).item()
            sie[0, 0, y, x] = cx + 0.5 * torch.randn(1, generator=g).item()
            sie[0, 1, y, x] = 8.0 + 0.5 * torch.randn(1, generator=g).item()
            person[y * w + x] = k
    return heat, tags, sie, person


def test_shapes_and_mask_selection():
    heat, tags, sie, _ = _two_people_maps()
    cfg = PGGConfig(iterations=2)
    (res,) = pose_guided_grouping(heat, tags, sie, cfg)
    assert res.index.shape == (10,) and res.joint.shape == (10,)
    assert len(res.iterates) == 3 and all(x.shape == (3, 10) for x in res.iterates)
    # only pixels above tau are selected
    assert torch.all(heat[0].reshape(17, -1).max(0).values[res.index] > cfg.tau)


def test_two_people_separate_after_one_iteration():
    heat, tags, sie, person = _two_people_maps()
    (res,) = pose_guided_grouping(heat, tags, sie, PGGConfig(iterations=1))
    labels = person[res.index]

    def spread_ratio(x):
        c0, c1 = x[:, labels == 0].mean(1), x[:, labels == 1].mean(1)
        within = max(x[:, labels == 0].std(1).norm(), x[:, labels == 1].std(1).norm())
        return (c0 - c1).norm() / within

    before, after = spread_ratio(res.iterates[0]), spread_ratio(res.iterates[1])
    assert after > 3 * before  # groups contract while staying apart
    # and nearest-reference assignment after the iteration is perfect
    x = res.iterates[1]
    c = torch.stack([x[:, labels == 0].mean(1), x[:, labels == 1].mean(1)])
    assign = torch.cdist(x.T, c).argmin(1)
    assert torch.equal(assign, labels)


def test_gradients_flow_to_ke_and_sie():
    heat, tags, sie, person = _two_people_maps()
    tags.requires_grad_(True)
    sie.requires_grad_(True)
    (res,) = pose_guided_grouping(heat, tags, sie, PGGConfig(iterations=2))
    pull, push = pgg_grouping_loss(res.iterates, person[res.index])
    (pull + push).backward()
    sel_tags = tags.grad[0].reshape(17, -1)[res.joint, res.index]
    sel_sie = sie.grad[0].reshape(2, -1)[:, res.index]
    assert torch.count_nonzero(sel_tags) > 0 and torch.count_nonzero(sel_sie) > 0
    # background pixels get no gradient
    bg = torch.ones(16 * 16, dtype=torch.bool)
    bg[res.index] = False
    assert torch.count_nonzero(sie.grad[0].reshape(2, -1)[:, bg]) == 0


def test_gbms_keeps_identical_points_fixed_and_is_batched():
    x = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    out = gbms(x, delta=5.0, iterations=3)
    assert all(torch.allclose(o, x) for o in out)
    heat, tags, sie, _ = _two_people_maps()
    batch = pose_guided_grouping(
        torch.cat([heat, heat]), torch.cat([tags, tags]), torch.cat([sie, sie]), PGGConfig()
    )
    assert len(batch) == 2 and torch.allclose(batch[0].iterates[1], batch[1].iterates[1])


def test_memory_model_pgg_vs_full_image():
    # 10 % of a 128x128 output selected -> about 1 % of full-image GBMS memory
    full = pgg_memory_bytes(128 * 128, 19, 1)
    pgg = pgg_memory_bytes(int(0.1 * 128 * 128), 19, 1)
    assert 0.009 < pgg / full < 0.012
