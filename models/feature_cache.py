"""On-disk cache of the frozen MoveNet pyramid's features for fixed training crops (issue 18 item 3).

``SpatialNet`` on ``features: movenet`` spends most of a CPU training step in the frozen
MobileNetV2 + FPN, which never changes. A training item's crop is fixed by its source item,
the input size, the augmentation ranges and its per-item random key
(``SpatialTrainingSet``), so the pyramid's output for it can be computed once and read back
in every later epoch: each entry holds the (24, H/4, W/4) features and the crop's keypoints and
joint weights (the targets are rebuilt from those, cheaply). Entries are keyed by that
description and the MoveNet file's sha256, so other weights never read stale features.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from posestream.models.weights import sha256_file

__all__ = ["FeatureCache", "movenet_sha256"]


def movenet_sha256(tflite_path: str | Path | None = None) -> str:
    """sha256 of the MoveNet file the frozen pyramid is built from (None = the pinned, verified one)."""
    if tflite_path is None:  # verified against its pin, so the pinned hash is the file's
        from posestream.models.weights import MOVENET_MULTIPOSE, verify

        verify(MOVENET_MULTIPOSE)
        return MOVENET_MULTIPOSE.model_sha256
    return sha256_file(tflite_path)


class FeatureCache:
    """Frozen-pyramid features of training crops, one ``.npz`` per crop under ``folder``.

    Args:
        folder: where entries go (under a run's ``out_dir``, git-ignored).
        weights_sha256: the MoveNet file's sha256 (``movenet_sha256``), part of every key.
        dtype: storage precision of the features. ``float16`` halves the disk (about 150 KB a
            256x192 crop) at a relative error of ~1e-3; ``float32`` reads back exactly what the
            live pass computed.
    """

    def __init__(
        self, folder: str | Path, weights_sha256: str, dtype: Literal["float16", "float32"] = "float16"
    ) -> None:
        if not weights_sha256:
            raise ValueError("weights_sha256 is needed: features of other weights must never be read back")
        self.folder, self.weights_sha256, self.dtype = Path(folder), weights_sha256, dtype

    def path(self, key: str) -> Path:
        """The entry file of crop ``key``."""
        digest = hashlib.sha256(f"{key}|movenet={self.weights_sha256}|{self.dtype}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npz"

    def load(self, key: str) -> dict[str, np.ndarray | None] | None:
        """``{"features" (24, h, w), "keypoints" (K, J, 3), "joint_weights" (K, J) or None}``, or None if absent."""
        path = self.path(key)
        if not path.is_file():
            return None
        with np.load(path) as z:
            jw = z["joint_weights"] if bool(z["has_weights"]) else None
            return {"features": z["features"], "keypoints": z["keypoints"], "joint_weights": jw}

    def save(
        self, key: str, features: torch.Tensor, keypoints: np.ndarray, joint_weights: np.ndarray | None
    ) -> None:
        """Write crop ``key``'s entry (atomically: a reader never sees half a file)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh, features=features.detach().cpu().numpy().astype(self.dtype),
                keypoints=np.asarray(keypoints, np.float32),
                joint_weights=np.zeros((0,), np.float32) if joint_weights is None else np.asarray(joint_weights, np.float32),
                has_weights=np.asarray(joint_weights is not None),
            )  # fmt: skip
        tmp.replace(path)

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.npz")) if self.folder.is_dir() else 0
