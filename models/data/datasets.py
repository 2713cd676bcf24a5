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
from posestream.models.targets import TargetConfig, build_spatial_targets, confidence_weights


@dataclass(frozen=True)
class PoseSample:
    """One training image: ``image`` (H, W, 3) uint8 RGB, ``keypoints`` (K, 17, 3) (x, y, visibility) in its pixels.

    ``joint_weights`` (K, 17) in [0, 1], only for pseudo-labelled images
    (``posestream.models.data.pseudo_labels``): how far each joint is trusted. The heatmap
    loss around a joint is weighted by it (``posestream.models.targets.confidence_weights``;
    0 = ignored, neither peak nor background); None = exact labels (every pixel weighs 1).
    """

    image: np.ndarray
    keypoints: np.ndarray
    joint_weights: np.ndarray | None = None


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
        self.people, self.width, self.height = people, width, height
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

    def item_key(self, i: int) -> str:
        """What item ``i`` is, independent of this source's range (a feature-cache key)."""
        seed, frame = self.seed_base + i // self.frames, i % self.frames
        return f"synthetic/{seed}/{frame}/{self.frames}/{self.people}/{self.width}x{self.height}"


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

    def item_key(self, i: int) -> str:
        """What item ``i`` is (a feature-cache key)."""
        return f"coco/{self.images_dir.name}/{self.items[i][0]}"


class MixedPoseSource:
    """Two sources in one index space: ``first``'s items, then ``second``'s, the latter's share ``fraction``.

    Items ``0 .. len(first) - 1`` are ``first``'s; the ``extra = round(len(first) * fraction /
    (1 - fraction))`` items after them cycle through ``second`` (item ``len(first) + e`` is
    ``second[e % len(second)]``), so a shuffled epoch draws ``second`` with probability
    ``fraction``; a frame of ``second`` that comes up several times is augmented differently
    each time (the augmentation is drawn per item index).
    """

    def __init__(self, first: Sequence[PoseSample], second: Sequence[PoseSample], fraction: float) -> None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        if len(first) == 0 or len(second) == 0:
            raise ValueError("both sources need items")
        self.first, self.second = first, second
        self.extra = max(1, round(len(first) * fraction / (1.0 - fraction)))

    def __len__(self) -> int:
        return len(self.first) + self.extra

    def _which(self, i: int) -> tuple[Sequence[PoseSample], int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        n = len(self.first)
        return (self.first, i) if i < n else (self.second, (i - n) % len(self.second))

    def __getitem__(self, i: int) -> PoseSample:
        source, j = self._which(i)
        return source[j]

    def item_key(self, i: int) -> str:
        source, j = self._which(i)
        return source.item_key(j)  # type: ignore[attr-defined]


class SpatialTrainingSet(Dataset):
    """Augmented network inputs and SpatialNet targets from a ``PoseSample`` source.

    Items: dict with ``image`` (3, H, W) uint8, ``heatmaps`` (J, H/4, W/4) float32,
    ``instance`` (J, H/4, W/4) int64 and ``joints`` (K, J, 3) float32 in output pixels.
    With ``crops_per_frame`` > 1 an item is a list of that many such dicts: differently
    augmented crops of one source frame, which amortises rendering a synthetic frame
    (about 80 % of an item's cost) over several training images; ``collate_spatial``
    flattens them into the batch.
    ``heat_weight`` (J, H/4, W/4) float32 is added for pseudo-labelled samples
    (``PoseSample.joint_weights``; ``background_weight`` outside the joints). With a
    ``feature_cache`` (``posestream.models.feature_cache.FeatureCache``) every item also carries
    its ``key`` (source item and drawn crop), ``keypoints`` (K, J, 3) input pixels and
    ``joint_weights`` (K, J) (None when exact), and a crop found in the cache comes as
    ``features`` (the frozen pyramid's, from the cache) instead of ``image``: the source item
    is not rendered or read again.
    """

    def __init__(self, source: Sequence[PoseSample], input_size: tuple[int, int], seed: int,
                 augment: AugmentConfig | None, targets: TargetConfig | None = None,
                 crops_per_frame: int = 1, background_weight: float = 1.0,
                 feature_cache: object | None = None) -> None:  # fmt: skip
        if crops_per_frame < 1 or (augment is None and crops_per_frame > 1):
            raise ValueError("crops_per_frame must be >= 1, and 1 without augmentation")
        if feature_cache is not None and not hasattr(source, "item_key"):
            raise ValueError("a feature cache needs a source with item_key (what each item is)")
        self.source, self.input_w, self.input_h = source, input_size[0], input_size[1]
        self.seed, self.augment, self.targets = seed, augment, targets or TargetConfig()
        self.crops_per_frame = crops_per_frame
        self.background_weight = background_weight
        self.feature_cache = feature_cache

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        keys = (
            [(self.seed, i)]
            if self.crops_per_frame == 1
            else [(self.seed, i, c) for c in range(self.crops_per_frame)]
        )
        items: list[dict | None] = [None] * len(keys)
        if self.feature_cache is not None:
            base = f"{self.source.item_key(i)}|{self.input_w}x{self.input_h}|{self.augment}"  # type: ignore[attr-defined]
            names = [f"{base}|{key}" for key in keys]
            for c, name in enumerate(names):
                entry = self.feature_cache.load(name)  # type: ignore[attr-defined]
                if entry is not None:
                    item = self._item(entry["keypoints"], entry["joint_weights"], name)
                    item["features"] = torch.from_numpy(entry["features"].astype(np.float32))
                    items[c] = item
        if any(it is None for it in items):
            sample = self.source[i]
            for c, key in enumerate(keys):
                if items[c] is None:
                    items[c] = self._crop(sample, key, names[c] if self.feature_cache is not None else None)
        return items[0] if self.crops_per_frame == 1 else items  # type: ignore[return-value]

    def _crop(
        self, sample: PoseSample, rng_key: tuple[int, ...], name: str | None = None
    ) -> dict[str, torch.Tensor]:
        h, w = sample.image.shape[:2]
        if self.augment is None:
            m, flip = fit_affine(w, h, self.input_w, self.input_h), False
        else:
            m, flip = random_affine(
                w, h, self.input_w, self.input_h, self.augment, np.random.default_rng(rng_key)
            )
        image = warp_image(sample.image, m, self.input_w, self.input_h)
        kp = transform_keypoints(sample.keypoints, m, flip)
        jw = None
        if sample.joint_weights is not None:  # the weights ride along as a third channel (flip-swapped too)
            packed = np.concatenate([sample.keypoints[..., :2], sample.joint_weights[..., None]], axis=-1)
            jw = transform_keypoints(packed, m, flip)[..., 2]
        item = self._item(kp, jw, name)
        item["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return item

    def _item(self, kp: np.ndarray, jw: np.ndarray | None, name: str | None) -> dict[str, torch.Tensor]:
        """Targets of a crop from its keypoints (K, J, 3) and joint weights (K, J) in input pixels."""
        s = self.targets.stride
        oh, ow = self.input_h // s, self.input_w // s
        t = build_spatial_targets(kp, oh, ow, self.targets)
        item: dict = {
            "heatmaps": torch.from_numpy(t.heatmaps),
            "instance": torch.from_numpy(t.instance),
            "joints": torch.from_numpy(t.joints),
        }
        if jw is not None and jw.size:
            item["heat_weight"] = torch.from_numpy(
                confidence_weights(kp, jw, oh, ow, self.targets, self.background_weight)
            )
        elif jw is not None:  # a pseudo-labelled image without people: all background
            item["heat_weight"] = torch.full_like(item["heatmaps"], self.background_weight)
        if name is not None:
            item["key"] = name
            item["keypoints"] = np.asarray(kp, np.float32)
            item["joint_weights"] = None if jw is None else np.asarray(jw, np.float32)
        return item


def collate_spatial(
    items: list[dict[str, torch.Tensor]] | list[list[dict[str, torch.Tensor]]],
) -> dict[str, object]:
    """Stack fixed-size tensors; keep per-image joints as a list (people counts differ).

    Items that are lists (``crops_per_frame`` > 1) are flattened in order.
    With a feature cache some items carry ``features`` instead of ``image``: ``cached`` (B,)
    bool says which, ``image`` stacks the others' images (None when all are cached) and
    ``features`` the cached ones' features (None when none is); ``keys``, ``keypoints`` and
    ``joint_weights`` list every item's. ``heat_weight`` (B, J, H, W) is there when any item
    has one (ones for the others), else None.
    """
    items = [crop for it in items for crop in (it if isinstance(it, list) else [it])]
    cached = [("features" in it) for it in items]
    out: dict[str, object] = {
        "image": torch.stack([it["image"] for it in items if "image" in it]) if not all(cached) else None,
        "heatmaps": torch.stack([it["heatmaps"] for it in items]),
        "instance": torch.stack([it["instance"] for it in items]),
        "joints": [it["joints"] for it in items],
        "heat_weight": None,
    }
    if any("heat_weight" in it for it in items):
        out["heat_weight"] = torch.stack(
            [it["heat_weight"] if "heat_weight" in it else torch.ones_like(it["heatmaps"]) for it in items]
        )
    if any("key" in it for it in items):
        out["cached"] = torch.tensor(cached)
        out["features"] = (
            torch.stack([it["features"] for it in items if "features" in it]) if any(cached) else None
        )
        for name in ("key", "keypoints", "joint_weights"):
            out[name + "s" if name == "key" else name] = [it[name] for it in items]
    return out
