"""TemporalNet's training loss for the Human Embedding: the batch-all triplet loss (seed 000 Eq. 6)."""

from __future__ import annotations

import torch

__all__ = ["triplet_loss"]


def triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, negatives: torch.Tensor | None = None
) -> torch.Tensor:
    """Seed 000 Eq. 6 over every valid triplet of the batch (same-id anchor/positive,
    other-id negative), squared L2 on unit HE, averaged over the triplets that still
    violate the margin ("batch all"); 0 when there is none.

    ``negatives``: optional (N, N) bool, which (anchor, negative) pairs are known to be
    different people (unlabelled real video: only people of the same frame are); default
    every pair with different labels.
    """
    d = torch.cdist(embeddings, embeddings).pow(2)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same if negatives is None else ~same & negatives
    loss = d[:, :, None] - d[:, None, :] + margin  # [a, p, n]
    valid = pos[:, :, None] & neg[:, None, :]
    loss = loss.clamp(min=0) * valid
    active = (loss > 1e-9).sum()
    return loss.sum() / active.clamp(min=1)
