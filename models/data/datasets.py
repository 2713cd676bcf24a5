"""Training data for SpatialNet: synthetic video (on the fly, seeded) and COCO keypoints.

Every source yields ``PoseSample``s (an RGB image and its people's keypoints with
visibility); ``SpatialTrainingSet`` augments them onto the network input and builds
the targets. Randomness comes from per-item generators seeded by (seed, index), so a
dataset gives the same item for the same index in any worker, any epoch order.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from posestream.models.data.augment import (
    AugmentConfig,
    fit_affine,
    random_affine,
    transform_keypoints,
    warp_image,
)
from posestream.models.data.splits import SPATIAL_TRAIN
from posestream.models.skeleton import NUM_KEYPOINTS
from posestream.models.targets import TargetConfig, build_spatial_targets


@dataclass(frozen=True)
class PoseSample:
    """One training image: ``image`` (H, W, 3) uint8 RGB, ``keypoints`` (K, 17, 3) (x, y, visibility) in its pixels."""

    image: np.ndarray
    keypoints: np.ndarray


@dataclass(frozen=True)
class SyntheticDataConfig:
    """Synthetic training data (SpatialNet and TemporalNet): clips ``seed_base .. seed_base + clips - 1``.

    ``cache_clips`` bounds the built clips kept in memory (about 6.5 MB each at 640x480).
    """

    seed_base: int = SPATIAL_TRAIN.first
    clips: int = SPATIAL_TRAIN.count
    frames: int = 60
    people: int = 5
    width: int = 640
    height: int = 480
    cache_clips: int = 256


class SyntheticPoseSource:
    """Frames of synthetic clips ``seed_base .. seed_base + clips - 1``, ``frames`` each.

    Item i is frame ``i % frames`` of clip ``seed_base + i // frames``. Built clips are
    kept in a least-recently-used cache of ``cache_clips`` clips (a 640x480 clip holds
    about 6.5 MB): training visits frames in a shuffled order, and rebuilding a clip
    costs several times rendering one of its frames.
    """

    def __init__(self, seed_base: int, clips: int, frames: int, people: int = 5,
                 width: int = 640, height: int = 480, cache_clips: int = 256) -> None:  # fmt: skip
        from posestream.models.data.synthetic import SyntheticConfig  # heavy module, imported on use

        self.seed_base, self.clips, self.frames = seed_base, clips, frames
        self._config = lambda seed: SyntheticConfig(
            seed=seed, frames=frames, people=people, width=width, height=height
        )
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._cache_clips = max(int(cache_clips), 1)

    def __len__(self) -> int:
        return self.clips * self.frames

    def clip(self, seed: int):  # noqa: ANN201 - SyntheticClip, imported lazily
        from posestream.models.data.synthetic import SyntheticClip

        clip = self._cache.pop(seed, None)
        if clip is None:
            clip = SyntheticClip.from_config(self._config(seed))
        self._cache[seed] = clip  # most recently used last
        while len(self._cache) > self._cache_clips:
            self._cache.popitem(last=False)
        return clip

    def __getitem__(self, i: int) -> PoseSample:
        rgb, gt = self.clip(self.seed_base + i // self.frames).render(i % self.frames)
        return PoseSample(rgb, gt.keypoints.copy())


class CocoKeypointSource:
    """COCO person-keypoints annotations (``person_keypoints_*.json``) with their image folder.

    Images without a person that has a labelled keypoint are skipped; crowd annotations are ignored.
    """

    def __init__(self, annotations: str | Path, images: str | Path) -> None:
        with open(annotations, encoding="utf-8") as fh:
            data = json.load(fh)
        self.images_dir = Path(images)
        files = {img["id"]: img["file_name"] for img in data["images"]}
        people: dict[int, list[np.ndarray]] = {}
        for ann in data["annotations"]:
            if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
                continue
            kp = np.asarray(ann["keypoints"], np.float32).reshape(NUM_KEYPOINTS, 3)
            people.setdefault(ann["image_id"], []).append(kp)
        self.items = [(files[i], np.stack(p)) for i, p in sorted(people.items())]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> PoseSample:
        name, kp = self.items[i]
        bgr = cv2.imread(str(self.images_dir / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {self.images_dir / name}")
        return PoseSample(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), kp.copy())


class SpatialTrainingSet(Dataset):
    """Augmented network inputs and SpatialNet targets from a ``PoseSample`` source.

    Items: dict with ``image`` (3, H, W) uint8, ``heatmaps`` (J, H/4, W/4) float32,
    ``instance`` (J, H/4, W/4) int64 and ``joints`` (K, J, 3) float32 in output pixels.
    With ``crops_per_frame`` > 1 an item is a list of that many such dicts: differently
    augmented crops of one source frame, which amortises rendering a synthetic frame
    (about 80 % of an item's cost) over several training images; ``collate_spatial``
    flattens them into the batch.
    """

    def __init__(self, source: Sequence[PoseSample], input_size: tuple[int, int], seed: int,
                 augment: AugmentConfig | None, targets: TargetConfig | None = None,
                 crops_per_frame: int = 1) -> None:  # fmt: skip
        if crops_per_frame < 1 or (augment is None and crops_per_frame > 1):
            raise ValueError("crops_per_frame must be >= 1, and 1 without augmentation")
        self.source, self.input_w, self.input_h = source, input_size[0], input_size[1]
        self.seed, self.augment, self.targets = seed, augment, targets or TargetConfig()
        self.crops_per_frame = crops_per_frame

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        sample = self.source[i]
        if self.crops_per_frame == 1:
            return self._crop(sample, (self.seed, i))
        return [self._crop(sample, (self.seed, i, c)) for c in range(self.crops_per_frame)]

    def _crop(self, sample: PoseSample, rng_key: tuple[int, ...]) -> dict[str, torch.Tensor]:
        h, w = sample.image.shape[:2]
        if self.augment is None:
            m, flip = fit_affine(w, h, self.input_w, self.input_h), False
        else:
            m, flip = random_affine(
                w, h, self.input_w, self.input_h, self.augment, np.random.default_rng(rng_key)
            )
        image = warp_image(sample.image, m, self.input_w, self.input_h)
        kp = transform_keypoints(sample.keypoints, m, flip)
        s = self.targets.stride
        t = build_spatial_targets(kp, self.input_h // s, self.input_w // s, self.targets)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "heatmaps": torch.from_numpy(t.heatmaps),
            "instance": torch.from_numpy(t.instance),
            "joints": torch.from_numpy(t.joints),
        }


def collate_spatial(
    items: list[dict[str, torch.Tensor]] | list[list[dict[str, torch.Tensor]]],
) -> dict[str, object]:
    """Stack fixed-size tensors; keep per-image joints as a list (people counts differ).

    Items that are lists (``crops_per_frame`` > 1) are flattened in order.
    """
    items = [crop for it in items for crop in (it if isinstance(it, list) else [it])]
    return {
        "image": torch.stack([it["image"] for it in items]),
        "heatmaps": torch.stack([it["heatmaps"] for it in items]),
        "instance": torch.stack([it["instance"] for it in items]),
        "joints": [it["joints"] for it in items],
    }
