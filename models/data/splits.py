"""Which synthetic clip seeds each stage of the project may use: training, validation, held out.

One place for the data splits, so that nothing is tuned on the clips it is scored on. A
synthetic clip is a pure function of its seed (``posestream.models.data.synthetic``), so
a split is a range of seeds. Torch-free; imported by training, the benchmarks and the CLI.

- ``SPATIAL_TRAIN`` 1000..1199: SpatialNet's training clips (``SyntheticDataConfig``'s
  default, the configs' ``synthetic.seed_base``); also the clips a pose prior is fitted on.
- ``TEMPORAL_TRAIN`` 5000..5039: TemporalNet's training clips (``TrainTemporalConfig.data``'s
  default). The shipped checkpoints used its first 30 (``temporalnet_movenet.pt``) and 20
  (``temporalnet_spatialnet.pt``) only, which is why ``TRACKER_VALIDATION`` starts at 5030:
  a run with the default 40 clips trains on the first 10 validation seeds (see
  ``overlapping``), so choose tracker settings for such a checkpoint from 5040 on.
- ``TRACKER_VALIDATION`` 5030..5049: tracker settings (the checkpoint card's calibration,
  ``benchmarks/tracking_ablation.py --validation``).
- ``DECODE_VALIDATION`` 8000..8007: SpatialNet's decoding parameters (``posestream train decode``).
- ``HELD_OUT`` 9000..9007: scores only, never tuned on (the benchmarks' random scenes,
  ``--eval-seeds``); the scripted scenes of the tests are not seeds at all.
- ``SCORING_TRAIN`` 6000..6039: the pose scoring net's synthetic training clips
  (``posestream train scoring``, ``posestream.models.pose_scoring``).
- ``RECURRENT_TRAIN`` 7000..7199: seed 001's recurrent decoder (``posestream train recurrent``),
  not SpatialNet's own clips, so the frozen SpatialNet's maps look as on unseen video.

The real labelled dev set (``../shared/data/real-dev``) is split by image in
``configs/real_dev_split.json`` (``real_dev_split``): its ``train`` images may be trained on
(pose scoring), its ``eval`` images are only scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SeedRange:
    """Seeds ``first .. first + count - 1``."""

    first: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a seed range needs at least one seed, got count={self.count}")

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def seeds(self, n: int | None = None) -> range:
        """The first ``n`` seeds (all when None)."""
        if n is not None and not 1 <= n <= self.count:
            raise ValueError(f"{n} seeds asked of a range of {self.count} ({self})")
        return range(self.first, self.first + (self.count if n is None else n))

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.first <= seed <= self.last

    def __str__(self) -> str:
        return f"{self.first}..{self.last}"


SPATIAL_TRAIN = SeedRange(1000, 200)
TEMPORAL_TRAIN = SeedRange(5000, 40)
TRACKER_VALIDATION = SeedRange(5030, 20)
DECODE_VALIDATION = SeedRange(8000, 8)
HELD_OUT = SeedRange(9000, 8)
SCORING_TRAIN = SeedRange(6000, 40)
RECURRENT_TRAIN = SeedRange(7000, 200)

# The real dev set's image split, written down once (image ids of its annotations.json).
REAL_DEV_SPLIT_FILE = Path(__file__).resolve().parents[2] / "configs" / "real_dev_split.json"
# The real dev set itself: ``../shared/data/real-dev`` beside the source checkout.
REAL_DEV_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "real-dev"


@dataclass(frozen=True)
class ImageSplit:
    """Image ids of a labelled set's training and evaluation parts (disjoint)."""

    train: tuple[int, ...]
    eval: tuple[int, ...]

    def __post_init__(self) -> None:
        both = set(self.train) & set(self.eval)
        if both:
            raise ValueError(f"images in both the train and the eval split: {sorted(both)}")


def real_dev_split(path: Path = REAL_DEV_SPLIT_FILE) -> ImageSplit:
    """The real dev set's train / eval image ids, read from ``configs/real_dev_split.json``."""
    data = json.loads(Path(path).read_text())
    return ImageSplit(tuple(int(i) for i in data["train"]), tuple(int(i) for i in data["eval"]))


def overlapping(a: SeedRange, b: SeedRange) -> range:
    """The seeds two ranges share (empty when disjoint)."""
    return range(max(a.first, b.first), min(a.last, b.last) + 1)
