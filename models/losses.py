"""SpatialNet losses, seed 000 Eq. 1-5 (with seed 002's associative-embedding conventions).

Notation: B images, J = 17 joint types, K people in an image, output maps (H, W).
Ground-truth joints are given per image as ``joints`` (K, J, 3) = (x, y, visible) in
output-map pixels; a joint takes part when ``visible > 0`` and it lies inside the map.

Normalisation choices (the paper writes sums; we average so that the loss weights
1 : 1e-3 : 1e-4 : 1e-4 keep the terms on the scales seed 002's code uses):

- detection (Eq. 1): squared error averaged over joints and pixels, then over images;
- pull (Eq. 2): averaged over the visible joints of each person, then over people;
- push (Eq. 3) and ordinal (Eq. 4): averaged over ordered pairs k != k'. The k = k'
  terms of the paper's sum are constants (exp(0) = 1, no gradient) and are left out,
  so perfectly separated references give a push loss of 0;
- SIE (Eq. 5): L1 averaged over visible joints (x and y summed, as an L1 norm).

All losses return 0 (with a gradient path) for images without people.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.skeleton import head_size

# The six ordinal tasks of seed 000 section 3.1.1, in channel order.
ORDINAL_TASKS: tuple[str, ...] = ("l2r", "r2l", "t2b", "b2t", "f2n", "n2f")


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1: squared error between predicted and ground-truth heatmaps.

    Args:
        pred, target: (B, J, H, W).
        weight: optional (B, 1 or J, H, W) per-pixel weight (e.g. 0 on crowd regions).
    Returns:
        scalar tensor.
    """
    err = (pred - target).pow(2)
    if weight is not None:
        err = err * weight
    return err.mean()


def _valid(joints: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x, y, v = joints[..., 0], joints[..., 1], joints[..., 2]
    return (v > 0) & (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)


def _sample_at_joints(maps: torch.Tensor, joints: torch.Tensor, per_joint: bool) -> torch.Tensor:
    """Values of ``maps`` at the rounded joint locations.

    Args:
        maps: (J, T, H, W) when ``per_joint`` (joint j reads channel j), else (C, H, W).
        joints: (K, J, 3) in output pixels.
    Returns:
        (K, J, T) when ``per_joint`` else (K, J, C).
    """
    h, w = maps.shape[-2:]
    xi = joints[..., 0].round().long().clamp(0, w - 1)
    yi = joints[..., 1].round().long().clamp(0, h - 1)
    if per_joint:
        jj = torch.arange(joints.shape[1], device=maps.device).expand_as(xi)
        return maps[jj, :, yi, xi]  # (K, J, T)
    return maps[:, yi, xi].permute(1, 2, 0)  # (K, J, C)


def _pull(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference embeddings and the pull term of Eq. 2.

    Args:
        values: (K, J, T) embeddings at the joints.
        valid: (K, J) bool.
    Returns:
        (pull scalar, references (K', T) of people with any valid joint, person mask (K,)).
    """
    count = valid.sum(dim=1)  # (K,)
    has = count > 0
    vf = valid.unsqueeze(-1).to(values.dtype)
    ref = (values * vf).sum(dim=1) / count.clamp(min=1).unsqueeze(-1)  # (K, T)
    sq = ((values - ref.unsqueeze(1)).pow(2).sum(-1) * valid).sum(dim=1) / count.clamp(min=1)
    pull = sq[has].mean() if has.any() else values.sum() * 0.0
    return pull, ref[has], has


def _pairwise_sqdist(ref: torch.Tensor) -> torch.Tensor:
    return (ref.unsqueeze(0) - ref.unsqueeze(1)).pow(2).sum(-1)


def grouping_loss(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2 (pull) and Eq. 3 (push) for one image.

    Args:
        values: (K, J, T) embeddings read at each person's joints (T = tag dimension).
        valid: (K, J) which joints count.
    Returns:
        (pull, push) scalars.
    """
    pull, ref, _ = _pull(values, valid)
    k = ref.shape[0]
    if k < 2:
        return pull, values.sum() * 0.0
    push = torch.exp(-0.5 * _pairwise_sqdist(ref))
    push = (push.sum() - k) / (k * (k - 1))  # drop the k == k' constants
    return pull, push


def ke_loss(tags: torch.Tensor, joints: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoint Embedding loss (Eq. 2-3), averaged over the batch.

    Args:
        tags: (B, J, H, W) or (B, J, T, H, W), one tag vector per joint type.
        joints: per image a (K, J, 3) tensor of ground-truth joints in output pixels.
    Returns:
        (pull, push) scalars.
    """
    if tags.dim() == 4:
        tags = tags.unsqueeze(2)
    h, w = tags.shape[-2:]
    pulls, pushes = [], []
    for i, jt in enumerate(joints):
        if jt.numel() == 0:
            continue
        vals = _sample_at_joints(tags[i], jt, per_joint=True)
        pull, push = grouping_loss(vals, _valid(jt, h, w))
        pulls.append(pull)
        pushes.append(push)
    zero = tags.sum() * 0.0
    return (torch.stack(pulls).mean() if pulls else zero, torch.stack(pushes).mean() if pushes else zero)


def ordinal_targets(joints: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sort keys of each person for the six ordinal tasks.

    Centroid x for l2r/r2l, centroid y for t2b/b2t, head size for f2n/n2f (COCO has no
    head top, so ``models.skeleton.head_size`` — ear span, else 2x eye span, else
    shoulder span / 1.6 — stands in for the paper's head-top-to-neck length). The
    reversed tasks use the negated key.

    Args:
        joints: (K, J, 3) in output pixels.
    Returns:
        (K, 6) keys; a person's value should increase with its key. NaN where unknown.
    """
    valid = _valid(joints, h, w)
    count = valid.sum(1).clamp(min=1)
    cx = (joints[..., 0] * valid).sum(1) / count
    cy = (joints[..., 1] * valid).sum(1) / count
    hs = torch.as_tensor(head_size(joints.detach().cpu().numpy()), dtype=joints.dtype, device=joints.device)
    none = valid.sum(1) == 0
    cx, cy = cx.masked_fill(none, float("nan")), cy.masked_fill(none, float("nan"))
    return torch.stack([cx, -cx, cy, -cy, hs, -hs], dim=1)


def ordinal_loss(aux: torch.Tensor, joints: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 4 for the six auxiliary ordinal maps, averaged over tasks and images.

    For a pair (k, k') with key_k < key_k' (k should have the lower value), Ord = 1 and
    the term is ``log(1 + exp(m_k - m_k'))``; pairs with equal or unknown keys are left out.
    The pull part of Eq. 4 keeps each person's values close to its reference.

    Args:
        aux: (B, 6, H, W) ordinal maps in ``ORDINAL_TASKS`` order.
        joints: per image (K, J, 3) in output pixels.
    Returns:
        scalar.
    """
    h, w = aux.shape[-2:]
    terms = []
    for i, jt in enumerate(joints):
        if jt.numel() == 0:
            continue
        valid = _valid(jt, h, w)
        vals = _sample_at_joints(aux[i], jt, per_joint=False)  # (K, J, 6)
        keys = ordinal_targets(jt, h, w)  # (K, 6)
        for task in range(aux.shape[1]):
            pull, ref, has = _pull(vals[..., task : task + 1], valid)
            key = keys[has, task]
            m = ref[:, 0]
            lower = key.unsqueeze(1) < key.unsqueeze(0)  # (k, k'): k should be below k'
            rank = F.softplus(m.unsqueeze(1) - m.unsqueeze(0))[lower]
            k = m.shape[0]
            ordinal = rank.sum() / (k * (k - 1)) if k > 1 else m.sum() * 0.0
            terms.append(ordinal + pull)
    return torch.stack(terms).mean() if terms else aux.sum() * 0.0


def sie_loss(svf: torch.Tensor, joints: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 5: L1 between the spatial vector field at each joint and (joint - person centre).

    The centre is the mean of the person's visible joints. Decoding uses
    ``SIE(p) = p - S_hat(p)`` = the predicted centre.

    Args:
        svf: (B, 2, H, W) spatial vector field (dx, dy) in output pixels.
        joints: per image (K, J, 3) in output pixels.
    Returns:
        scalar.
    """
    h, w = svf.shape[-2:]
    terms = []
    for i, jt in enumerate(joints):
        if jt.numel() == 0:
            continue
        valid = _valid(jt, h, w)
        if not valid.any():
            continue
        count = valid.sum(1, keepdim=True).clamp(min=1)
        centre = (jt[..., :2] * valid.unsqueeze(-1)).sum(1) / count  # (K, 2)
        target = jt[..., :2] - centre.unsqueeze(1)  # (K, J, 2)
        pred = _sample_at_joints(svf[i], jt, per_joint=False)  # (K, J, 2)
        terms.append((pred - target).abs().sum(-1)[valid].mean())
    return torch.stack(terms).mean() if terms else svf.sum() * 0.0


def pgg_grouping_loss(iterates: list[torch.Tensor], person: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull/push (Eq. 2-3) on every PGG iterate, with pixels as the members of each person.

    Args:
        iterates: [X(1), ..., X(R+1)], each (D, N).
        person: (N,) long ground-truth person of each selected pixel, -1 for none.
    Returns:
        (pull, push) averaged over the iterates.
    """
    keep = person >= 0
    ids = person[keep]
    if ids.numel() == 0:
        zero = iterates[0].sum() * 0.0
        return zero, zero
    uniq, inverse = torch.unique(ids, return_inverse=True)
    k = uniq.numel()
    pulls, pushes = [], []
    for x in iterates:
        pts = x[:, keep].T  # (n, D)
        sums = torch.zeros(k, pts.shape[1], dtype=pts.dtype, device=pts.device).index_add_(0, inverse, pts)
        counts = torch.bincount(inverse, minlength=k).to(pts.dtype).unsqueeze(1)
        ref = sums / counts
        sq = (pts - ref[inverse]).pow(2).sum(-1)
        pulls.append((torch.zeros(k, dtype=pts.dtype, device=pts.device).index_add_(0, inverse, sq) / counts[:, 0]).mean())
        if k > 1:
            push = torch.exp(-0.5 * _pairwise_sqdist(ref))
            pushes.append((push.sum() - k) / (k * (k - 1)))
        else:
            pushes.append(pts.sum() * 0.0)
    return torch.stack(pulls).mean(), torch.stack(pushes).mean()
