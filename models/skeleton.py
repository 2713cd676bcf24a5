"""The one definition of the 17 COCO keypoints.

Everything that needs keypoint names, their order, the limbs that join them, the
left/right pairs that swap under a horizontal flip, or the OKS falloff constants
imports them from here. This module is pure Python + numpy so that the tracker and
the gateway (which never import torch) can use it.
"""

from __future__ import annotations

import numpy as np

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS: int = len(KEYPOINT_NAMES)
KEYPOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Limbs as (a, b) keypoint indices, the COCO skeleton (0-based).
EDGES: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12),
    (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

# Left/right pairs that exchange places when an image is mirrored horizontally.
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (3, 4),
    (5, 6),
    (7, 8),
    (9, 10),
    (11, 12),
    (13, 14),
    (15, 16),
)

# Each keypoint's neighbour one step nearer the torso along its own side's chain (-1 for
# the nose, shoulders and hips, which hang off no other keypoint). Every (k, LIMB_PARENT[k])
# is a limb in EDGES (ear -> eye -> nose included), and a left keypoint's parent is left.
LIMB_PARENT: tuple[int, ...] = (-1, 0, 0, 1, 2, -1, -1, 5, 6, 7, 8, -1, -1, 11, 12, 13, 14)


def mirror_pairs_outward() -> tuple[tuple[int, int], ...]:
    """``FLIP_PAIRS`` ordered by their distance from the torso along ``LIMB_PARENT``.

    Shoulders and hips (no parent) come first, then eyes, elbows and knees, then ears,
    wrists and ankles, so a pass over the pairs in this order sees a pair's parents
    already settled.
    """

    def depth(k: int) -> int:
        return 0 if LIMB_PARENT[k] < 0 else 1 + depth(LIMB_PARENT[k])

    return tuple(sorted(FLIP_PAIRS, key=lambda pair: (depth(pair[0]), pair[0])))


# COCO per-keypoint OKS falloff constants (sigma_i in the COCO keypoint evaluation).
OKS_SIGMAS: np.ndarray = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
OKS_SIGMAS.setflags(write=False)

# Visibility codes used in ground truth (the keypoint score column), as in COCO.
VIS_ABSENT, VIS_OCCLUDED, VIS_VISIBLE = 0, 1, 2


def flip_permutation() -> np.ndarray:
    """Index permutation ``p`` such that ``keypoints[:, p]`` is the left/right-swapped order.

    Returns:
        (17,) int64 array; applying it twice is the identity.
    """
    perm = np.arange(NUM_KEYPOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm
