"""Synthetic detections for tracker tests and benchmarks (no images, no networks).

People are a fixed standing skeleton scaled to a height in pixels, moving at constant
velocity; each has a ground-truth id, a base Human Embedding, and segments of frames in
which it is detected (between them it is occluded or out of frame, but keeps moving).
Per frame the generator emits a ``FramePoses`` with noisy keypoints, HE (base + noise,
re-normalised), SIE (the true centre + noise at every joint, like MoveNet's per-person
centre), forward TIE (true centre at t - 1 + noise) and backward TIE (true centre at
t + 1 + noise), and optional flickering false positives. This is the tracker's test
bench; the image-level synthetic video lives in ``posestream.models.data``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from posestream.models.poses import FramePoses, boxes_from_keypoints
from posestream.models.skeleton import NUM_KEYPOINTS

# A standing person facing the camera, (x, y) in units of body height, centred on the
# mean of its joints (so the person's centre is exactly its position).
_TEMPLATE = np.array(
    [
        (0.0, -0.42), (0.03, -0.45), (-0.03, -0.45), (0.06, -0.43), (-0.06, -0.43),
        (0.12, -0.30), (-0.12, -0.30), (0.15, -0.12), (-0.15, -0.12), (0.16, 0.04), (-0.16, 0.04),
        (0.08, 0.05), (-0.08, 0.05), (0.08, 0.27), (-0.08, 0.27), (0.08, 0.48), (-0.08, 0.48),
    ]
)  # fmt: skip
_TEMPLATE = _TEMPLATE - _TEMPLATE.mean(axis=0)


@dataclass(frozen=True)
class SimPerson:
    """One synthetic person.

    Attributes:
        pid: ground-truth identity.
        start: (x, y) centre at frame 0, pixels.
        velocity: (vx, vy) pixels per frame.
        height: body height in pixels.
        visible: [first, end) frame ranges in which the person is detected.
    """

    pid: int
    start: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    height: float = 200.0
    visible: tuple[tuple[int, int], ...] = ((0, 1 << 62),)


@dataclass(frozen=True)
class SimFrame:
    """One frame: the detections and the ground-truth person id of each (-1: false positive)."""

    detections: FramePoses
    person_ids: np.ndarray


def simulate(
    people: Sequence[SimPerson],
    n_frames: int,
    *,
    embedding_dim: int = 32,
    fields: Sequence[str] = ("he", "sie", "tie"),
    he_noise: float = 0.2,
    keypoint_noise: float = 1.0,
    tie_noise: float = 2.0,
    missing_joint_rate: float = 0.0,
    false_positive_rate: float = 0.0,
    shuffle: bool = True,
    seed: int = 0,
    frame_size: tuple[int, int] = (1280, 720),
) -> Iterator[SimFrame]:
    """Yield ``n_frames`` frames of detections of ``people``.

    Args:
        embedding_dim: E of the HE vectors.
        fields: optional detection fields to emit: "he" (embeddings), "sie", "tie"
            (tie_fwd and tie_bwd), "ke" (1-D tags: the person's id plus noise).
        he_noise: expected length of the HE noise vector added to the unit base
            embedding before re-normalisation (per-dimension std ``he_noise / sqrt(E)``,
            so that the difficulty does not depend on E).
        keypoint_noise, tie_noise: std in pixels of keypoint and SIE/TIE noise.
        missing_joint_rate: chance that a joint gets score 0.05 (absent).
        false_positive_rate: expected flickering false-positive detections per frame.
        shuffle: present each frame's detections in random order.
    """
    rng = np.random.default_rng(seed)
    n_p = len(people)
    pids = np.array([p.pid for p in people], np.int64)
    start = np.array([p.start for p in people], np.float64).reshape(n_p, 2)
    vel = np.array([p.velocity for p in people], np.float64).reshape(n_p, 2)
    height = np.array([p.height for p in people], np.float64)
    seg_person = np.array([i for i, p in enumerate(people) for _ in p.visible], np.int64)
    seg_first = np.array([a for p in people for a, _ in p.visible], np.int64)
    seg_end = np.array([b for p in people for _, b in p.visible], np.int64)
    base = (
        np.stack([_base_embedding(int(pid), embedding_dim) for pid in pids])
        if n_p
        else np.zeros((0, embedding_dim))
    )
    for t in range(n_frames):
        who = np.unique(seg_person[(seg_first <= t) & (t < seg_end)])
        ids = pids[who]
        centre = start[who] + vel[who] * t
        h = height[who]
        emb = base[who]
        n_fp = rng.poisson(false_positive_rate) if false_positive_rate > 0 else 0
        if n_fp:
            centre = np.concatenate([centre, rng.uniform((0, 0), frame_size, size=(n_fp, 2))])
            h = np.concatenate([h, rng.uniform(80, 300, n_fp)])
            emb = np.concatenate([emb, _unit(rng.standard_normal((n_fp, embedding_dim)))])
            ids = np.concatenate([ids, np.full(n_fp, -1, np.int64)])
        moving = np.concatenate([vel[who], np.zeros((n_fp, 2))])
        n = len(ids)
        kp = np.empty((n, NUM_KEYPOINTS, 3), np.float32)
        kp[:, :, :2] = (
            centre[:, None]
            + _TEMPLATE[None] * h[:, None, None]
            + rng.normal(0, keypoint_noise, (n, NUM_KEYPOINTS, 2))
        )
        kp[:, :, 2] = np.where(rng.random((n, NUM_KEYPOINTS)) < missing_joint_rate, 0.05, 0.9)
        opt: dict[str, np.ndarray] = {}
        if "he" in fields:
            noise = rng.normal(0, he_noise / np.sqrt(embedding_dim), emb.shape)
            opt["embeddings"] = _unit(emb + noise).astype(np.float32)
        if "sie" in fields or "tie" in fields:
            opt["sie"] = _at_joints(centre, tie_noise, rng)
        if "tie" in fields:
            opt["tie_fwd"] = _at_joints(centre - moving, tie_noise, rng)
            opt["tie_bwd"] = _at_joints(centre + moving, tie_noise, rng)
        if "ke" in fields:
            opt["tags"] = (ids[:, None] + rng.normal(0, 0.05, (n, NUM_KEYPOINTS))).astype(np.float32)
        order = rng.permutation(n) if shuffle else np.arange(n)
        picked = {k: v[order] for k, v in opt.items()}
        dets = FramePoses(
            t, t / 30.0, *frame_size, kp[order], boxes_from_keypoints(kp[order]), np.full(n, 0.9, np.float32),
            embeddings=picked.get("embeddings"), sie=picked.get("sie"), tie_fwd=picked.get("tie_fwd"),
            tie_bwd=picked.get("tie_bwd"), tags=picked.get("tags"),
        )  # fmt: skip
        yield SimFrame(dets, ids[order])


def random_crowd(
    n_frames: int,
    *,
    mean_people: float = 5.0,
    mean_stay: int = 150,
    seed: int = 0,
    frame_size: tuple[int, int] = (1280, 720),
) -> list[SimPerson]:
    """People coming and going for ``n_frames``: arrivals at a steady rate, each staying
    ``mean_stay`` frames on average (exponential), so that about ``mean_people`` are in view."""
    rng = np.random.default_rng(seed)
    rate = mean_people / mean_stay
    people: list[SimPerson] = []
    t = 0.0
    while True:
        t += rng.exponential(1.0 / rate)
        if t >= n_frames:
            break
        first = int(t)
        stay = max(1, int(rng.exponential(mean_stay)))
        velocity = rng.uniform(-1.5, 1.5, 2)
        where = rng.uniform((0, 0), frame_size)  # position when the person appears
        people.append(
            SimPerson(
                pid=len(people),
                start=(float(where[0] - velocity[0] * first), float(where[1] - velocity[1] * first)),
                velocity=(float(velocity[0]), float(velocity[1])),
                height=float(rng.uniform(100, 300)),
                visible=((first, first + stay),),
            )
        )
    return people


def _base_embedding(pid: int, dim: int) -> np.ndarray:
    return _unit(np.random.default_rng([pid, 12345]).standard_normal(dim))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _at_joints(centre: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    n = len(centre)
    return (centre[:, None] + rng.normal(0, noise, (n, NUM_KEYPOINTS, 2))).astype(np.float32)
