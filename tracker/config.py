"""Tracker configuration: every threshold and weight of the tracker core as a named field.

``TrackerConfig`` is a frozen dataclass validated on construction; the service builds it
from its settings at the composition root and passes it to ``posestream.tracker.step.step``. The
defaults are seed 000's values where the paper gives them (lambda_HE = 3, lambda_TIE = 1)
and documented engineering choices elsewhere.

Units used below:

- *person scale*: ``sqrt(box area)`` in pixels (the mean of the two people's scales for a
  pair), so pixel distances divided by it are fractions of a person's size.
- *steps*: calls of ``step``, i.e. processed frames.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# Which cost terms each tracker preset combines. The names follow Table 4 of seed 000.
PRESET_TERMS: dict[str, tuple[str, ...]] = {
    "he+tie": ("he", "tie"),
    "he": ("he",),
    "tie": ("tie",),
    "oks": ("oks",),
    "iou": ("iou",),
    "sie": ("sie",),
    "ke": ("ke",),
    "ke+sie": ("ke", "sie"),
}


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds and weights of the online tracker (association + track lifecycle)."""

    preset: str = "he+tie"
    """Which similarity terms associate tracks with detections (see ``PRESET_TERMS``):
    "he+tie" (seed 000's tracker), "he", "tie", the Table 4 baselines "sie", "ke",
    "ke+sie", and the task-agnostic "oks" and "iou"."""

    lambda_he: float = 3.0
    """Weight of Psi_HE in the combined cost. Raising it trusts appearance more than
    motion (better through crossings and camera motion, worse between look-alikes)."""
    lambda_tie: float = 1.0
    """Weight of Psi_TIE in the combined cost. Raising it trusts predicted motion more
    than appearance (better between look-alikes, worse under fast camera motion)."""
    lambda_ke: float = 1.0
    """Weight of the KE smoothness term in the "ke+sie" preset."""
    lambda_sie: float = 1.0
    """Weight of the SIE smoothness term in the "ke+sie" preset."""

    gate_he: float = 1.0
    """Largest Psi_HE (squared L2 between unit embeddings, range [0, 4]; 1.0 means cosine
    similarity 0.5) for which a pair may match. Raising it lets a track follow a person
    whose appearance changed a lot, but also lets it jump to a different person. A noisy
    HE model needs a wider gate: the shipped TemporalNet checkpoint is run with its own
    calibrated value (``posestream.models.temporal_inference.CALIBRATED_GATE_HE``)."""
    gate_tie: float = 1.0
    """Largest Psi_TIE (mean centre-prediction error, in person scales) for which a pair
    may match. Raising it tolerates worse motion predictions at the risk of matching
    people far away."""
    gate_oks: float = 0.9
    """Largest 1 - OKS for which a pair may match (0.9 means OKS >= 0.1). Raising it keeps
    fast-moving people matched but allows matches between neighbours."""
    gate_iou: float = 0.9
    """Largest 1 - IoU of the boxes for which a pair may match (0.9 means IoU >= 0.1).
    Raising it to 1.0 lets boxes that do not overlap at all match."""
    gate_sie: float = 1.0
    """Largest SIE smoothness cost (centre drift between frames, in person scales) for
    which a pair may match. Raising it tolerates faster motion at the risk of swaps."""
    gate_ke: float = 1.0
    """Largest KE smoothness cost (mean L2 between tag values, in tag units) for which a
    pair may match."""

    keypoint_threshold: float = 0.2
    """A keypoint counts as present when its score is > this. Raising it ignores more
    uncertain joints in the joint-wise costs (OKS, TIE, SIE, KE)."""
    min_det_score: float = 0.2
    """A detection can start a track (or revive one from the gallery) only when its
    person score is >= this. Detections below it can still continue existing tracks.
    Raising it creates fewer spurious tracks but starts real ones later. The default is
    calibrated to MoveNet MultiPose's person scores as our decoder reports them (5th /
    50th / 95th percentile 0.19 / 0.31 / 0.46 on vtest.avi; its decoder already drops
    poses under 0.15)."""
    n_init: int = 3
    """Consecutive matched frames after which a new (tentative) track is confirmed.
    Raising it suppresses ids for flickering false positives but delays a new person's
    id by ``n_init - 1`` frames. 1 confirms immediately."""
    confirm_on_first_frame: bool = True
    """Confirm the tracks started on a session's first step at once, so that the people
    present when a stream starts get ids on its first frame."""
    report_tentative: bool = False
    """False (default): tentative tracks are reported as -1 and an id is spent only when
    a track is confirmed, so every id a user ever sees belongs to a confirmed person and
    the ids stay dense. True: an id is spent and reported as soon as a track starts, so
    every detection gets an id at once, but flickering false positives burn ids that are
    never seen again."""
    max_missed: int = 30
    """Frames a confirmed track may go unmatched before it is lost (moved to the gallery).
    Raising it bridges longer occlusions by motion/appearance matching but keeps stale
    tracks around as candidates longer. Tentative tracks are dropped at their first miss."""
    max_tracks: int = 64
    """Cap on active (tentative + confirmed) tracks. Beyond it new people are reported
    as -1 until a slot frees up; it bounds the state size and the cost matrices."""
    gallery_size: int = 32
    """Cap on lost tracks kept for re-identification (oldest dropped first). Raising it
    recovers ids of people gone for a while, at the price of state size and more chances
    of a wrong re-identification. 0 disables the gallery."""
    gallery_max_age: int = 900
    """Steps a lost track stays in the gallery (900 = 30 s at 30 fps). Raising it lets
    people return after longer absences with their old id."""
    reid_max_distance: float = 0.5
    """Largest Psi_HE between a detection left unmatched and a lost (or unmatched) track
    at which the detection takes the track's id back. Lowering it makes re-identification
    stricter (fewer wrong revivals, more new ids); 0 disables re-identification."""
    reid_window: int = 10
    """Frames after a new track is confirmed during which it may still be recognised, by
    HE against the gallery, as a lost person and take their old id back (its new id is
    retired). Raising it recovers more people who re-emerged half hidden, at the price of
    a later, visible id change for them; 0 checks only at confirmation."""
    embedding_momentum: float = 0.9
    """A track's HE is the exponential moving average ``m * old + (1 - m) * new``,
    re-normalised to unit length. Raising it makes the appearance model slower to change:
    more robust to a frame where another person occludes the track, slower to follow real
    changes (turning around, lighting). 0 keeps only the latest embedding."""

    smooth: bool = False
    """Smooth the reported keypoints of each track with a One-Euro filter per joint
    (``posestream.tracker.smoothing``; Casiez et al. 2012). Only the output is smoothed:
    association still compares the raw detections. Off by default: it halves the jitter of
    a still person but lags fast motion (``benchmarks/smoothing.py``)."""
    smooth_min_cutoff: float = 1.0
    """One-Euro cutoff frequency at rest, in Hz. Raising it follows the detections more
    closely (more jitter, less lag); lowering it smooths slow motion more."""
    smooth_beta: float = 5.0
    """How fast the cutoff rises with a joint's speed: ``cutoff = smooth_min_cutoff + beta *
    speed``, speed in person scales per second (``sqrt`` of the box area, so the value
    does not depend on the video's resolution). Raising it cuts the lag on fast motion at
    the price of more jitter while moving; 0 is a plain low-pass filter (several frames of
    lag on a walking person). 5 measured best overall in ``benchmarks/smoothing.py``."""
    smooth_d_cutoff: float = 1.0
    """Cutoff frequency, in Hz, of the low-pass on the velocity estimate the adaptive
    cutoff reads. Raising it reacts sooner to a change of speed but lets detection
    noise raise the cutoff."""

    def __post_init__(self) -> None:
        if self.preset not in PRESET_TERMS:
            raise ValueError(
                f"TrackerConfig.preset={self.preset!r} is not a tracker preset; use one of {sorted(PRESET_TERMS)}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith(("lambda_", "gate_")) or f.name in (
                "keypoint_threshold", "min_det_score", "reid_max_distance", "embedding_momentum",
                "smooth_min_cutoff", "smooth_beta", "smooth_d_cutoff",
            ):  # fmt: skip
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                    raise ValueError(f"TrackerConfig.{f.name} must be a number, got {value!r}")
        for name in ("lambda_he", "lambda_tie", "lambda_ke", "lambda_sie"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"TrackerConfig.{name} must be >= 0 (0 switches the term off), got {getattr(self, name)}"
                )
        if all(self.weight(term) == 0 for term in PRESET_TERMS[self.preset]):
            raise ValueError(
                f"every term of preset {self.preset!r} has weight 0; give at least one lambda_* > 0"
            )
        for name in ("gate_he", "gate_tie", "gate_oks", "gate_iou", "gate_sie", "gate_ke"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"TrackerConfig.{name} must be > 0 (it is the largest cost a match may have)"
                )
        if not 0.0 <= self.reid_max_distance <= 4.0:
            raise ValueError(
                f"TrackerConfig.reid_max_distance must be in [0, 4] (squared L2 between unit vectors), "
                f"got {self.reid_max_distance}"
            )
        if not 0.0 <= self.embedding_momentum < 1.0:
            raise ValueError(
                f"TrackerConfig.embedding_momentum must be in [0, 1) (1 would never update the HE), "
                f"got {self.embedding_momentum}"
            )
        for name, low in (
            ("n_init", 1),
            ("max_missed", 0),
            ("max_tracks", 1),
            ("gallery_size", 0),
            ("gallery_max_age", 0),
            ("reid_window", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"TrackerConfig.{name} must be an integer >= {low}, got {value!r}")
        for name in ("smooth_min_cutoff", "smooth_d_cutoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrackerConfig.{name} must be > 0 Hz, got {getattr(self, name)}")
        if not self.smooth_beta >= 0:
            raise ValueError(
                f"TrackerConfig.smooth_beta must be >= 0 (0: a fixed cutoff), got {self.smooth_beta}"
            )
        for name in ("confirm_on_first_frame", "report_tentative", "smooth"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrackerConfig.{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def terms(self) -> tuple[str, ...]:
        """The cost terms of the preset that have a non-zero weight."""
        return tuple(t for t in PRESET_TERMS[self.preset] if self.weight(t) > 0)

    def weight(self, term: str) -> float:
        """Weight of one cost term in the combined cost ("oks" and "iou" always 1)."""
        return float(getattr(self, f"lambda_{term}", 1.0))

    def gate(self, term: str) -> float:
        """Largest value of one cost term at which a pair may still match."""
        return float(getattr(self, f"gate_{term}"))
