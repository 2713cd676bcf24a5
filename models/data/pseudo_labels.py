"""Pseudo-labelled real frames for SpatialNet (issue 18 item 2): the default estimator's poses as labels.

The default MoveNet ``PoseEstimator`` (with Thunder refinement) runs once on evenly spaced
frames of the real training clips (``REAL_TRAIN_CLIPS``) and on the real dev set's **train**
images (``configs/real_dev_split.json``; only their pixels: the set's labels are never read,
its eval images never touched). Its people become ``PoseSample``s with per-joint weights
(joint score x person score; ``PoseSample.joint_weights``): confident joints are targets,
unsure ones and unsure people are ignored regions rather than background. Frames (JPEG) and
labels are cached under ``cache_dir``, keyed by the configuration and the estimator's weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posestream.models.data.datasets import PoseSample
from posestream.models.data.real_clips import (
    LOCAL_CLIPS,
    REAL_TRAIN_CLIPS,
    WHEEL_SETS,
    iter_clip_frames,
    parse_clip_spec,
)
from posestream.models.data.splits import REAL_DEV_DIR, real_dev_split
from posestream.models.skeleton import NUM_KEYPOINTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Which real frames are pseudo-labelled and how far their labels are trusted.

    Attributes:
        clips: clip ranges (``posestream.models.data.real_clips.parse_clip_spec``) to take frames
            from; the default is TemporalNet's real training split, never the held-out one.
        frames_per_clip: frames taken from each range, evenly spaced. Raising it adds real
            frames at ~0.3 s each of labelling (once, cached).
        real_dev_train: also label the real dev set's train-split images (pixels only).
        real_dev_dir: the real dev set's folder.
        min_person_score: people below this person score are not targets; their joints become
            ignored regions. Raising it keeps fewer, surer people.
        min_joint_score: joints below this keypoint score (of kept people) are not targets
            but ignored regions. Raising it keeps fewer, surer joints.
        background_weight: heatmap-loss weight of the pseudo-labelled images' pixels away
            from every labelled joint. Lowering it punishes less the people the labeller
            missed (and false heat anywhere).
        cache_dir: where frames and labels are cached (git-ignored).
    """

    clips: tuple[str, ...] = REAL_TRAIN_CLIPS
    frames_per_clip: int = 40
    real_dev_train: bool = True
    real_dev_dir: str = str(REAL_DEV_DIR)
    min_person_score: float = 0.3
    min_joint_score: float = 0.3
    background_weight: float = 1.0
    cache_dir: str = "out/pseudo_labels"

    def __post_init__(self) -> None:
        if self.frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be >= 1, got {self.frames_per_clip}")
        for name in ("min_person_score", "min_joint_score", "background_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for spec in self.clips:
            parse_clip_spec(spec)  # raises on an unknown clip or a bad range


def _clip_frames(spec: str) -> list[int]:
    """The frame indices of a clip range (from the pinned frame counts)."""
    name, start, stop, step = parse_clip_spec(spec)
    if name in LOCAL_CLIPS:
        total = LOCAL_CLIPS[name].frames
    else:
        set_name, _, clip = name.partition("/")
        total = next(c.frames for c in WHEEL_SETS[set_name].clips if c.name == clip)
    return list(range(start, min(total, stop) if stop is not None else total, step))


def chosen_frames(spec: str, count: int) -> list[int]:
    """``count`` evenly spaced frame indices of a clip range (all of them when it has fewer)."""
    frames = _clip_frames(spec)
    if len(frames) <= count:
        return frames
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def real_dev_train_images(data_dir: str | Path) -> list[tuple[int, str]]:
    """(image id, file name) of the real dev set's train-split images, from its ``images`` list only."""
    with open(Path(data_dir) / "annotations.json", encoding="utf-8") as fh:
        images = json.load(fh)["images"]  # the "annotations" (labels) are never looked at
    train = set(real_dev_split().train)
    return [(int(im["id"]), str(im["file_name"])) for im in images if int(im["id"]) in train]


def _labels_key(cfg: PseudoLabelConfig, estimator_config: object) -> str:
    from posestream.models.weights import MOVENET_MULTIPOSE, MOVENET_THUNDER

    what = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("background_weight", "cache_dir",
            "min_person_score", "min_joint_score")}  # fmt: skip
    what["estimator"] = repr(estimator_config)
    what["weights"] = [MOVENET_MULTIPOSE.model_sha256, MOVENET_THUNDER.model_sha256]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def build_pseudo_labels(cfg: PseudoLabelConfig, estimator_config: object | None = None) -> Path:
    """Label the configured real frames with the default estimator (once); return the cache folder.

    The folder holds ``frames/<n>.jpg`` and ``labels.json`` (per frame: ``key``, ``file``,
    ``keypoints`` (N, 17, 3) (x, y, keypoint score) frame pixels, ``scores`` (N,)). A complete
    folder is reused as it is.
    """
    from posestream.models.estimator import EstimatorConfig, PoseEstimator

    est_cfg = estimator_config if estimator_config is not None else EstimatorConfig(device="cpu")
    folder = Path(cfg.cache_dir) / _labels_key(cfg, est_cfg)
    if (folder / "labels.json").is_file():
        return folder
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    est = PoseEstimator(est_cfg)
    entries: list[dict] = []

    def add(key: str, rgb: np.ndarray) -> None:
        fp = est([rgb]).poses[0]
        name = f"frames/{len(entries):05d}.jpg"
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        entries.append({"key": key, "file": name, "keypoints": np.asarray(fp.keypoints, float).round(3).tolist(),
                        "scores": np.asarray(fp.scores, float).round(4).tolist()})  # fmt: skip

    for spec in cfg.clips:
        wanted = set(chosen_frames(spec, cfg.frames_per_clip))
        name = parse_clip_spec(spec)[0]
        for index, _ts, rgb in iter_clip_frames(spec):
            if index in wanted:
                add(f"{name}/{index}", rgb)
        log.info("pseudo-labelled %s: %d frames so far", spec, len(entries))
    if cfg.real_dev_train:
        for image_id, file_name in real_dev_train_images(cfg.real_dev_dir):
            bgr = cv2.imread(str(Path(cfg.real_dev_dir) / "images" / file_name), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"cannot read real dev image {file_name}")
            add(f"realdev-image/{image_id}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    tmp = folder / "labels.json.tmp"
    tmp.write_text(json.dumps({"config": dataclasses.asdict(cfg), "frames": entries}))
    tmp.replace(folder / "labels.json")
    return folder


class PseudoLabelSource:
    """``PoseSample``s of a ``build_pseudo_labels`` folder, with their joint weights.

    A person with score >= ``min_person_score`` is a target: its joints with keypoint score
    >= ``min_joint_score`` are visible (2) with weight ``joint score x person score``, the
    others invisible with weight 0 (ignored). Every joint of a less confident person is
    invisible with weight 0.
    """

    def __init__(self, folder: str | Path, cfg: PseudoLabelConfig) -> None:
        self.folder, self.cfg = Path(folder), cfg
        self.frames = json.loads((self.folder / "labels.json").read_text())["frames"]

    def __len__(self) -> int:
        return len(self.frames)

    def labels(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``i``'s keypoints (K, 17, 3) (x, y, visibility 0/2) and joint weights (K, 17)."""
        entry, c = self.frames[i], self.cfg
        kp = np.asarray(entry["keypoints"], np.float32).reshape(-1, NUM_KEYPOINTS, 3)
        person = np.asarray(entry["scores"], np.float32).reshape(-1, 1)
        sure = (person >= c.min_person_score) & (kp[..., 2] >= c.min_joint_score)
        weights = np.where(sure, kp[..., 2] * person, 0.0).astype(np.float32)
        out = kp.copy()
        out[..., 2] = np.where(sure, 2.0, 0.0)
        return out, weights

    def __getitem__(self, i: int) -> PoseSample:
        bgr = cv2.imread(str(self.folder / self.frames[i]["file"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(
                f"pseudo-label frame {self.frames[i]['file']} is missing in {self.folder}"
            )
        kp, weights = self.labels(i)
        return PoseSample(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), kp, weights)

    def item_key(self, i: int) -> str:
        return f"pseudo/{self.folder.name}/{self.frames[i]['key']}"
