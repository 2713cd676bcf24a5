"""SpatialNet losses on tiny hand-computed examples (seed 000 Eq. 1-5)."""

import math

import pytest
import torch

from posestream.models.losses import (
    grouping_loss,
    heatmap_loss,
    ke_loss,
    ordinal_loss,
    pgg_grouping_loss,
    sie_loss,
    tradeoff_weight,
)
from posestream.models.spatialnet import LossWeights


def _joints(*people):
    """(K, 17, 3) with the given (joint, x, y) visible per person."""
    out = torch.zeros(len(people), 17, 3)
    for k, person in enumerate(people):
        for j, x, y in person:
            out[k, j] = torch.tensor([x, y, 2.0])
    return out


def test_heatmap_loss_hand():
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert heatmap_loss(pred, target).item() == pytest.approx(0.25)
    weight = torch.zeros(1, 1, 2, 2)
    assert heatmap_loss(pred, target, weight).item() == 0.0


def test_ke_pull_push_hand():
    tags = torch.zeros(1, 17, 4, 4)
    tags[0, 0, 0, 0], tags[0, 1, 1, 1] = 1.0, 3.0  # person A: ref 2, pull ((1)^2 + (1)^2) / 2 = 1
    tags[0, 0, 3, 3], tags[0, 1, 2, 2] = 5.0, 5.0  # person B: ref 5, pull 0
    joints = _joints([(0, 0, 0), (1, 1, 1)], [(0, 3, 3), (1, 2, 2)])
    pull, push = ke_loss(tags, [joints])
    assert pull.item() == pytest.approx(0.5)
    assert push.item() == pytest.approx(math.exp(-0.5 * 9.0))


def test_push_is_zero_for_one_person_and_for_far_apart_refs():
    vals = torch.tensor([[[0.0]], [[100.0]]])
    valid = torch.ones(2, 1, dtype=torch.bool)
    pull, push = grouping_loss(vals, valid)
    assert pull.item() == 0.0 and push.item() == pytest.approx(0.0, abs=1e-12)
    pull, push = grouping_loss(vals[:1], valid[:1])
    assert push.item() == 0.0


def test_invisible_and_outside_joints_do_not_count():
    tags = torch.zeros(1, 17, 4, 4)
    tags[0, 0, 0, 0] = 1.0
    joints = _joints([(0, 0, 0), (1, 1, 1)])
    joints[0, 1, 2] = 0  # invisible: only joint 0 counts -> pull 0
    pull, _ = ke_loss(tags, [joints])
    assert pull.item() == 0.0
    joints = _joints([(0, 0, 0), (1, 9, 9)])  # joint 1 outside the 4x4 map
    assert ke_loss(tags, [joints])[0].item() == 0.0


def test_sie_loss_hand():
    svf = torch.zeros(1, 2, 4, 4)
    joints = _joints([(0, 1, 1), (1, 3, 1)])  # centre (2, 1): targets (-1, 0), (1, 0)
    assert sie_loss(svf, [joints]).item() == pytest.approx(1.0)
    svf[0, 0, 1, 1], svf[0, 0, 1, 3] = -1.0, 1.0
    assert sie_loss(svf, [joints]).item() == pytest.approx(0.0)


def test_ordinal_loss_hand():
    aux = torch.zeros(1, 6, 4, 4)
    # A at x=0,y=0 and B at x=3,y=3; no ears/eyes/shoulders -> head size unknown -> f2n/n2f skip
    joints = _joints([(11, 0, 0), (12, 0, 0)], [(11, 3, 3), (12, 3, 3)])
    # l2r, r2l, t2b, b2t each: one ordered pair, softplus(0) / (k (k-1)) = ln2 / 2
    assert ordinal_loss(aux, [joints]).item() == pytest.approx(4 * math.log(2) / 2 / 6)
    # the right order with a margin drives l2r towards 0, the wrong order raises it
    aux[0, 0, 3, 3] = 20.0
    low = ordinal_loss(aux, [joints]).item()
    aux[0, 0, 3, 3] = -20.0
    high = ordinal_loss(aux, [joints]).item()
    assert low < 4 * math.log(2) / 12 < high


def test_losses_empty_images_are_zero_with_grad():
    tags = torch.zeros(1, 17, 4, 4, requires_grad=True)
    pull, push = ke_loss(tags, [torch.zeros(0, 17, 3)])
    (pull + push).backward()
    assert pull.item() == 0.0 and tags.grad is not None


def test_pgg_grouping_loss_hand():
    x = torch.tensor([[0.0, 2.0, 10.0]])  # (D=1, N=3): person 0 = {0, 2}, person 1 = {10}
    pull, push = pgg_grouping_loss([x, x], torch.tensor([0, 0, 1]))
    assert pull.item() == pytest.approx(0.5)  # person 0: ((1)^2 + (1)^2) / 2 = 1; person 1: 0; mean 0.5
    assert push.item() == pytest.approx(math.exp(-0.5 * 81.0))


def test_batched_losses_equal_the_mean_of_per_image_losses():
    """The losses run on the padded batch at once; each must equal the mean of its one-image
    values over the images that count (an image without people never does; an image whose
    people are all outside the map counts for KE and aux but not for SIE)."""
    torch.manual_seed(0)
    h, w = 12, 16
    people = [
        _joints([(0, 1, 1), (5, 3, 4), (11, 6, 9)], [(0, 10, 2), (6, 12, 5), (12, 14, 10), (3, 9, 1)]),
        torch.zeros(0, 17, 3),
        _joints([(0, 2, 2), (1, 3, 2), (5, 2, 6)]),
        _joints([(0, 40, 40)], [(3, 2, 3), (4, 6, 3), (0, 4, 2)], [(15, 7, 11), (16, 9, 11)]),
        _joints([(0, 50, 50)]),  # only outside the map
    ]
    tags, aux, svf = torch.randn(5, 17, h, w), torch.randn(5, 6, h, w), 3 * torch.randn(5, 2, h, w)
    counted = [0, 2, 3, 4]
    pull, push = ke_loss(tags, people)
    singles = [ke_loss(tags[i : i + 1], [people[i]]) for i in counted]
    assert pull.item() == pytest.approx(sum(p.item() for p, _ in singles) / 4, rel=1e-5)
    assert push.item() == pytest.approx(sum(q.item() for _, q in singles) / 4, rel=1e-5)
    ords = [ordinal_loss(aux[i : i + 1], [people[i]]).item() for i in counted]
    assert ordinal_loss(aux, people).item() == pytest.approx(sum(ords) / 4, rel=1e-5)
    sies = [sie_loss(svf[i : i + 1], [people[i]]).item() for i in (0, 2, 3)]
    assert sie_loss(svf, people).item() == pytest.approx(sum(sies) / 3, rel=1e-5)
    assert sie_loss(svf[4:], people[4:]).item() == 0.0


def test_tradeoff_heatmap_loss_hand():
    """Seed 004's tradeoff: pixels outside the keypoint region weigh 0.1, inside 1."""
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])  # (1, 1, 2, 2): two region pixels
    pred = torch.full_like(target, 0.5)
    mask = tradeoff_weight(target, background=0.1)
    assert mask.tolist() == [[[[1.0, 1.0], [pytest.approx(0.1), pytest.approx(0.1)]]]]
    # errors^2: 0.25, 0, 0.25, 0.25 -> (0.25 * 1 + 0 * 1 + 0.25 * 0.1 + 0.25 * 0.1) / 4
    assert heatmap_loss(pred, target, mask).item() == pytest.approx(0.3 / 4)
    assert heatmap_loss(pred, target, tradeoff_weight(target, background=1.0)).item() == pytest.approx(
        0.75 / 4
    )
    with pytest.raises(ValueError, match="det_background"):
        LossWeights(det_background=0.0)
