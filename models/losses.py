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

from posestream.models.geometry import head_size

# The six ordinal tasks of seed 000 section 3.1.1, in channel order.
ORDINAL_TASKS: tuple[str, ...] = ("l2r", "r2l", "t2b", "b2t", "f2n", "n2f")


def heatmap_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
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


def tradeoff_weight(target: torch.Tensor, background: float = 0.1, region_heat: float = 0.0) -> torch.Tensor:
    """Seed 004's tradeoff heatmap loss mask (its Eq. 4, ``M``): 1 inside a keypoint region, ``background`` outside.

    A pixel of joint type k lies in the kth keypoint region when its ground-truth heat exceeds
    ``region_heat`` (the rendered Gaussians' support by default). Seed 004 weighs the far more
    numerous non-keypoint pixels 0.1, so the loss is not dominated by an easy all-zero map.

    Args:
        target: (B, J, H, W) ground-truth heatmaps.
        background: weight of pixels outside every region of their joint type (1 = Eq. 1 unweighted).
        region_heat: heat above which a pixel is in a keypoint region.
    Returns:
        (B, J, H, W) weights for ``heatmap_loss``.
    """
    one = torch.ones((), dtype=target.dtype, device=target.device)
    return torch.where(target > region_heat, one, one * background)


def _valid(joints: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x, y, v = joints[..., 0], joints[..., 1], joints[..., 2]
    return (v > 0) & (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)


def _padded(joints: list[torch.Tensor], maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's people as one tensor, so that each loss runs in a few batched ops.

    Args:
        joints: per image (K_i, J, 3) in output pixels.
        maps: any (B, ...) map of the batch (gives device and dtype).
    Returns:
        (B, max K_i, J, 3) joints, padded with people whose joints are all invisible, and
        (B,) bool: which images have any person (the images that count in batch means).
    """
    present = torch.tensor([jt.shape[0] > 0 for jt in joints], device=maps.device)
    padded = torch.nn.utils.rnn.pad_sequence([jt.to(maps.dtype) for jt in joints], batch_first=True)
    return padded, present


def _sample_at_joints(maps: torch.Tensor, joints: torch.Tensor, per_joint: bool) -> torch.Tensor:
    """Values of ``maps`` at the rounded joint locations, for a batch.

    Args:
        maps: (B, J, T, H, W) when ``per_joint`` (joint j reads channel j), else (B, C, H, W).
        joints: (B, K, J, 3) in output pixels.
    Returns:
        (B, K, J, T) when ``per_joint`` else (B, K, J, C).
    """
    h, w = maps.shape[-2:]
    b, k, j = joints.shape[:3]
    xi = joints[..., 0].round().long().clamp(0, w - 1)
    yi = joints[..., 1].round().long().clamp(0, h - 1)
    bb = torch.arange(b, device=maps.device).view(b, 1, 1).expand(b, k, j)
    if per_joint:
        jj = torch.arange(j, device=maps.device).view(1, 1, j).expand(b, k, j)
        return maps[bb, jj, :, yi, xi]  # (B, K, J, T)
    return maps[bb, :, yi, xi]  # (B, K, J, C)


def _pull(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference embeddings and the pull term of Eq. 2, per image.

    Args:
        values: (B, K, J, T) embeddings at the joints (more leading axes are batch axes too).
        valid: (B, K, J) bool.
    Returns:
        (pull (B,) averaged over the people with a valid joint, 0 for none; references
        (B, K, T); person mask (B, K): has a valid joint).
    """
    count = valid.sum(dim=-1)  # (B, K)
    has = count > 0
    vf = valid.unsqueeze(-1).to(values.dtype)
    per = count.clamp(min=1).to(values.dtype)
    ref = (values * vf).sum(dim=-2) / per.unsqueeze(-1)  # (B, K, T)
    sq = ((values - ref.unsqueeze(-2)).pow(2).sum(-1) * vf[..., 0]).sum(dim=-1) / per  # (B, K)
    pull = (sq * has).sum(-1) / has.sum(-1).clamp(min=1)
    return pull, ref, has


def _pairs(has: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered pairs k != k' of present people: (B, K, K) mask and (B,) count k (k - 1) (>= 1)."""
    k = has.shape[-1]
    eye = torch.eye(k, dtype=torch.bool, device=has.device)
    n = has.sum(-1)
    return has.unsqueeze(-1) & has.unsqueeze(-2) & ~eye, (n * (n - 1)).clamp(min=1)


def _pairwise_sqdist(ref: torch.Tensor) -> torch.Tensor:
    """(..., K, T) -> (..., K, K) squared distances."""
    return (ref.unsqueeze(-3) - ref.unsqueeze(-2)).pow(2).sum(-1)


def _push(ref: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """Eq. 3 per image over the ordered pairs of present people: (B, K, T), (B, K) -> (B,); 0 below 2 people.

    The k = k' terms of the paper's sum are constants (exp(0) = 1) and are left out.
    """
    pair, n_pairs = _pairs(has)
    return (torch.exp(-0.5 * _pairwise_sqdist(ref)) * pair).sum((-2, -1)) / n_pairs


def grouping_loss(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2 (pull) and Eq. 3 (push) for one image.

    Args:
        values: (K, J, T) embeddings read at each person's joints (T = tag dimension).
        valid: (K, J) which joints count.
    Returns:
        (pull, push) scalars.
    """
    pull, ref, has = _pull(values.unsqueeze(0), valid.unsqueeze(0))
    return pull[0], _push(ref, has)[0]


def _batch_mean(per_image: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of (B, ...) per-image values over the images in ``present`` (0 with a gradient path if none)."""
    p = present.view(-1, *([1] * (per_image.dim() - 1))).to(per_image.dtype)
    return (per_image * p).sum() / (p.sum() * per_image[0].numel()).clamp(min=1)


def ke_loss(tags: torch.Tensor, joints: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoint Embedding loss (Eq. 2-3), averaged over the images with people.

    Args:
        tags: (B, J, H, W) or (B, J, T, H, W), one tag vector per joint type.
        joints: per image a (K, J, 3) tensor of ground-truth joints in output pixels.
    Returns:
        (pull, push) scalars.
    """
    if tags.dim() == 4:
        tags = tags.unsqueeze(2)
    h, w = tags.shape[-2:]
    jt, present = _padded(joints, tags)
    pull, ref, has = _pull(_sample_at_joints(tags, jt, per_joint=True), _valid(jt, h, w))
    return _batch_mean(pull, present), _batch_mean(_push(ref, has), present)


def ordinal_targets(joints: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sort keys of each person for the six ordinal tasks.

    Centroid x for l2r/r2l, centroid y for t2b/b2t, head size for f2n/n2f (COCO has no
    head top, so ``posestream.models.geometry.head_size`` — ear span, else 2x eye span, else
    shoulder span / 1.6 — stands in for the paper's head-top-to-neck length). The
    reversed tasks use the negated key.

    Args:
        joints: (..., K, J, 3) in output pixels (any leading batch dimensions).
    Returns:
        (..., K, 6) keys; a person's value should increase with its key. NaN where unknown.
    """
    valid = _valid(joints, h, w)
    count = valid.sum(-1).clamp(min=1)
    cx = (joints[..., 0] * valid).sum(-1) / count
    cy = (joints[..., 1] * valid).sum(-1) / count
    flat = joints.detach().reshape(-1, *joints.shape[-2:]).cpu().numpy()
    hs = torch.as_tensor(head_size(flat), dtype=joints.dtype, device=joints.device).reshape(cx.shape)
    none = valid.sum(-1) == 0
    cx, cy = cx.masked_fill(none, float("nan")), cy.masked_fill(none, float("nan"))
    return torch.stack([cx, -cx, cy, -cy, hs, -hs], dim=-1)


def ordinal_loss(aux: torch.Tensor, joints: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 4 for the six auxiliary ordinal maps, averaged over tasks and the images with people.

    For a pair (k, k') with key_k < key_k' (k should have the lower value), Ord = 1 and
    the term is ``log(1 + exp(m_k - m_k'))``, averaged over the ordered pairs of people
    with a valid joint; pairs with equal or unknown keys add nothing. The pull part of
    Eq. 4 keeps each person's values close to its reference.

    Args:
        aux: (B, 6, H, W) ordinal maps in ``ORDINAL_TASKS`` order.
        joints: per image (K, J, 3) in output pixels.
    Returns:
        scalar.
    """
    h, w = aux.shape[-2:]
    jt, present = _padded(joints, aux)
    valid = _valid(jt, h, w)
    vals = _sample_at_joints(aux, jt, per_joint=False)  # (B, K, J, 6)
    # Each task is its own 1-d embedding: move tasks next to the batch axis.
    pull, ref, has = _pull(
        vals.permute(0, 3, 1, 2).unsqueeze(-1), valid.unsqueeze(1).expand(-1, aux.shape[1], -1, -1)
    )
    m = ref[..., 0]  # (B, 6, K)
    keys = ordinal_targets(jt, h, w).permute(0, 2, 1)  # (B, 6, K)
    pair, n_pairs = _pairs(has)  # (B, 6, K, K), (B, 6)
    lower = (keys.unsqueeze(-1) < keys.unsqueeze(-2)) & pair  # (k, k'): k should be below k'
    rank = (F.softplus(m.unsqueeze(-1) - m.unsqueeze(-2)) * lower).sum((-2, -1)) / n_pairs
    return _batch_mean(rank + pull, present)


def sie_loss(svf: torch.Tensor, joints: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 5: L1 between the spatial vector field at each joint and (joint - person centre).

    The centre is the mean of the person's visible joints. Decoding uses
    ``SIE(p) = p - S_hat(p)`` = the predicted centre. Averaged over each image's valid
    joints, then over the images that have any.

    Args:
        svf: (B, 2, H, W) spatial vector field (dx, dy) in output pixels.
        joints: per image (K, J, 3) in output pixels.
    Returns:
        scalar.
    """
    h, w = svf.shape[-2:]
    jt, _ = _padded(joints, svf)
    valid = _valid(jt, h, w)
    vf = valid.unsqueeze(-1).to(svf.dtype)
    centre = (jt[..., :2] * vf).sum(2) / vf.sum(2).clamp(min=1)  # (B, K, 2)
    target = jt[..., :2] - centre.unsqueeze(2)  # (B, K, J, 2)
    err = (_sample_at_joints(svf, jt, per_joint=False) - target).abs().sum(-1) * vf[..., 0]
    n = valid.sum((1, 2))
    return _batch_mean(err.sum((1, 2)) / n.clamp(min=1), n > 0)


def pgg_grouping_loss(
    iterates: list[torch.Tensor], person: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
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
        pulls.append(
            (
                torch.zeros(k, dtype=pts.dtype, device=pts.device).index_add_(0, inverse, sq) / counts[:, 0]
            ).mean()
        )
        if k > 1:
            push = torch.exp(-0.5 * _pairwise_sqdist(ref))
            pushes.append((push.sum() - k) / (k * (k - 1)))
        else:
            pushes.append(pts.sum() * 0.0)
    return torch.stack(pulls).mean(), torch.stack(pushes).mean()
