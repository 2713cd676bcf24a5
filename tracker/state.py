"""The tracker's state as plain data: everything ``step`` needs for the next frame.

``TrackerState`` holds the active tracks (``Tracks``), the gallery of lost tracks kept
for re-identification (``Gallery``), the id counter and the frame counter, all as numpy
arrays and ints. Arrays are read-only, so a state can be shared freely and ``step``
can never change its input. ``to_bytes()`` / ``from_bytes()`` use msgpack (arrays as
dtype + shape + raw little-endian bytes; no pickle) with a schema version. The size is
bounded by the caps of ``TrackerConfig`` (``max_tracks``, ``gallery_size``), never by the
length of the stream: see ``state_size_bound``.

Shapes (T active tracks, G gallery entries, E HE dimension or 0 when the session has
no HE, D KE tag dimension or 0):

Tracks: ``ids`` (T,) int64 (-1 for a tentative track whose id is not spent yet),
``status`` (T,) int8 (``TENTATIVE`` / ``CONFIRMED``), ``keypoints`` (T, 17, 3),
``boxes`` (T, 4), ``scores`` (T,) from the last matched detection (pixels, as in
``posestream.models.poses.FramePoses``), ``embeddings`` (T, E) unit HE (running average), ``sie`` and
``tie_bwd`` (T, 17, 2) and ``tags`` (T, 17, D) at the last matched joints, all float32
and NaN where the detection did not carry the field; ``hits`` (matched frames),
``misses`` (consecutive unmatched frames), ``age`` (steps since the track started),
each (T,) int32.

Gallery: ``ids`` (G,) int64, ``embeddings`` (G, E) float32, ``last_seen`` (G,) int64
(the frame counter of the step that last matched the track), ``hits`` and ``age``
(G,) int32.

Filters (only with ``TrackerConfig.smooth``; ``None`` otherwise, and absent from the bytes,
so states written before smoothing existed read back unchanged): one row per track id
being smoothed (F <= T), the One-Euro state of each joint (``posestream.tracker.smoothing``):
``ids`` (F,) int64, ``x`` (F, 17, 2) float32 the last filtered position (frame pixels),
``dx`` (F, 17, 2) float32 the filtered velocity (pixels per second), ``t`` (F, 17) float64
the timestamp (seconds) of the joint's last update, NaN while it has none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import msgpack
import numpy as np

from posestream.models.skeleton import NUM_KEYPOINTS

SCHEMA_VERSION = 1
TENTATIVE, CONFIRMED = 0, 1

# (dtype, trailing shape); None is a free dimension (E or D) shared by all rows.
_Spec = dict[str, tuple[str, tuple[int | None, ...]]]


class StateFormatError(ValueError):
    """Serialised tracker state that this version cannot read (wrong schema or corrupt)."""


class _Columns:
    """Equal-length read-only arrays described by ``SPEC`` (a frozen dataclass mixin)."""

    SPEC: ClassVar[_Spec]

    def __post_init__(self) -> None:
        self._check(copy=True)

    @classmethod
    def _owning(cls, **arrays: np.ndarray) -> Self:
        """Construct from freshly made arrays nobody else holds: frozen in place, not copied."""
        obj = cls.__new__(cls)
        for name, value in arrays.items():
            object.__setattr__(obj, name, value)
        obj._check(copy=False)
        return obj

    def _check(self, copy: bool) -> None:
        n = None
        for name, (dtype, trailing) in self.SPEC.items():
            given = getattr(self, name)
            a = np.asarray(given, dtype=np.dtype(dtype))
            shape = a.shape
            ok = len(shape) == 1 + len(trailing)
            if ok:
                for want, got in zip(trailing, shape[1:], strict=True):
                    if want is not None and want != got:
                        ok = False
            if not ok:
                expected = ", ".join(["N"] + ["*" if d is None else str(d) for d in trailing])
                raise ValueError(f"{type(self).__name__}.{name} must have shape ({expected}), got {shape}")
            if n is None:
                n = shape[0]
            elif shape[0] != n:
                raise ValueError(f"{type(self).__name__}.{name} has {shape[0]} rows, expected {n}")
            if a.flags.writeable:
                if copy and a is given:  # the caller's array: copy it, so nobody else can change the state
                    a = a.copy()
                a.setflags(write=False)
            object.__setattr__(self, name, a)

    def __len__(self) -> int:
        return int(getattr(self, next(iter(self.SPEC))).shape[0])

    @classmethod
    def empty(cls, embedding_dim: int = 0, tag_dim: int = 0) -> Self:
        """No rows, with the given free dimensions (E, D)."""
        return cls(
            **{
                name: np.zeros((0, *_dims(trailing, embedding_dim, tag_dim)), dtype)
                for name, (dtype, trailing) in cls.SPEC.items()
            }
        )

    def take(self, index: np.ndarray) -> Self:
        """The rows picked by an index array or a boolean mask."""
        return type(self)._owning(**{name: getattr(self, name)[index] for name in self.SPEC})

    def _to_msg(self) -> dict[str, Any]:
        out = {}
        for name, (dtype, _) in self.SPEC.items():
            a = getattr(self, name)
            out[name] = [dtype, list(a.shape), np.ascontiguousarray(a, dtype=np.dtype(dtype)).tobytes()]
        return out

    @classmethod
    def _from_msg(cls, msg: Any, where: str) -> Self:
        if not isinstance(msg, dict) or set(msg) != set(cls.SPEC):
            got = sorted(msg) if isinstance(msg, dict) else type(msg).__name__
            raise StateFormatError(f"{where} must hold the arrays {sorted(cls.SPEC)}, got {got}")
        arrays = {}
        for name, (dtype, _) in cls.SPEC.items():
            item = msg[name]
            if not (
                isinstance(item, list) and len(item) == 3 and item[0] == dtype and isinstance(item[2], bytes)
            ):
                raise StateFormatError(f"{where}.{name} must be [{dtype!r}, shape, bytes]")
            shape = item[1]
            if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise StateFormatError(f"{where}.{name} has an invalid shape {shape!r}")
            a = np.frombuffer(item[2], dtype=np.dtype(dtype))
            if a.size != math.prod(shape):
                raise StateFormatError(f"{where}.{name}: {a.size} values do not fill shape {tuple(shape)}")
            # A copy: own, aligned memory, so arithmetic on a restored state is bit-identical.
            arrays[name] = a.reshape(shape).copy()
        try:
            return cls._owning(**arrays)
        except ValueError as exc:
            raise StateFormatError(f"{where}: {exc}") from None


@dataclass(frozen=True, eq=False)
class Tracks(_Columns):
    """Active tracks (tentative and confirmed), one row each; shapes in the module docstring."""

    SPEC: ClassVar[_Spec] = {
        "ids": ("<i8", ()),
        "status": ("|i1", ()),
        "keypoints": ("<f4", (NUM_KEYPOINTS, 3)),
        "boxes": ("<f4", (4,)),
        "scores": ("<f4", ()),
        "embeddings": ("<f4", (None,)),
        "sie": ("<f4", (NUM_KEYPOINTS, 2)),
        "tie_bwd": ("<f4", (NUM_KEYPOINTS, 2)),
        "tags": ("<f4", (NUM_KEYPOINTS, None)),
        "hits": ("<i4", ()),
        "misses": ("<i4", ()),
        "age": ("<i4", ()),
    }
    ids: np.ndarray
    status: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    sie: np.ndarray
    tie_bwd: np.ndarray
    tags: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    age: np.ndarray


@dataclass(frozen=True, eq=False)
class Gallery(_Columns):
    """Lost confirmed tracks kept for re-identification by HE; shapes in the module docstring."""

    SPEC: ClassVar[_Spec] = {
        "ids": ("<i8", ()),
        "embeddings": ("<f4", (None,)),
        "last_seen": ("<i8", ()),
        "hits": ("<i4", ()),
        "age": ("<i4", ()),
    }
    ids: np.ndarray
    embeddings: np.ndarray
    last_seen: np.ndarray
    hits: np.ndarray
    age: np.ndarray


@dataclass(frozen=True, eq=False)
class Filters(_Columns):
    """One-Euro filter state per smoothed track and joint; shapes in the module docstring."""

    SPEC: ClassVar[_Spec] = {
        "ids": ("<i8", ()),
        "x": ("<f4", (NUM_KEYPOINTS, 2)),
        "dx": ("<f4", (NUM_KEYPOINTS, 2)),
        "t": ("<f8", (NUM_KEYPOINTS,)),
    }
    ids: np.ndarray
    x: np.ndarray
    dx: np.ndarray
    t: np.ndarray


@dataclass(frozen=True, eq=False)
class TrackerState:
    """Everything the next ``step`` needs; plain data, read-only, serialisable.

    Attributes:
        tracks: the active tracks.
        gallery: lost tracks that can still be re-identified.
        next_id: the id the next confirmed track will get; ids are never reused.
        frame_index: number of steps taken so far (the index of the next frame).
        filters: the keypoint smoothing's per-joint state when ``TrackerConfig.smooth`` is on
            (``None`` otherwise); rows only for active tracks, so it is bounded by ``max_tracks``.
    """

    tracks: Tracks
    gallery: Gallery
    next_id: int = 0
    frame_index: int = 0
    filters: Filters | None = None

    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name in ("next_id", "frame_index"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"TrackerState.{name} must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        e_t, e_g = self.tracks.embeddings.shape[1], self.gallery.embeddings.shape[1]
        if e_t != e_g:
            raise ValueError(f"tracks and gallery disagree on the HE dimension ({e_t} vs {e_g})")

    @classmethod
    def initial(cls, embedding_dim: int = 0, tag_dim: int = 0) -> TrackerState:
        """The state of a new session. E and D are adopted from the first detections that carry them."""
        return cls(Tracks.empty(embedding_dim, tag_dim), Gallery.empty(embedding_dim, tag_dim))

    @property
    def embedding_dim(self) -> int:
        """E, the HE dimension of this session (0 until a detection carried embeddings)."""
        return int(self.tracks.embeddings.shape[1])

    @property
    def tag_dim(self) -> int:
        """D, the KE tag dimension of this session (0 until a detection carried tags)."""
        return int(self.tracks.tags.shape[2])

    def to_bytes(self) -> bytes:
        """msgpack encoding with the schema version; deterministic (equal states, equal bytes).

        ``filters`` is written only when present: a state without smoothing has the same
        bytes as before smoothing existed (and older readers, which ignore unknown keys,
        read a smoothed state as an unsmoothed one).
        """
        msg = {
            "schema": SCHEMA_VERSION,
            "frame_index": self.frame_index,
            "next_id": self.next_id,
            "tracks": self.tracks._to_msg(),
            "gallery": self.gallery._to_msg(),
        }
        if self.filters is not None:
            msg["filters"] = self.filters._to_msg()
        return msgpack.packb(msg, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> TrackerState:
        """Decode ``to_bytes`` output; raises ``StateFormatError`` saying what is wrong."""
        try:
            msg = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise StateFormatError(
                f"tracker state is not valid msgpack ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(msg, dict) or "schema" not in msg:
            raise StateFormatError(
                "tracker state has no schema version; it was not written by TrackerState.to_bytes"
            )
        if msg["schema"] != SCHEMA_VERSION:
            raise StateFormatError(
                f"tracker state has schema version {msg['schema']!r} but this tracker reads version "
                f"{SCHEMA_VERSION}; delete the session's stored state (it restarts with new ids) or run "
                f"the tracker version that wrote it"
            )
        missing = {"frame_index", "next_id", "tracks", "gallery"} - set(msg)
        if missing:
            raise StateFormatError(f"tracker state lacks {sorted(missing)}")
        tracks = Tracks._from_msg(msg["tracks"], "tracks")
        gallery = Gallery._from_msg(msg["gallery"], "gallery")
        filters = Filters._from_msg(msg["filters"], "filters") if "filters" in msg else None
        try:
            return cls(tracks, gallery, msg["next_id"], msg["frame_index"], filters)
        except ValueError as exc:
            raise StateFormatError(str(exc)) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrackerState):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


def state_size_bound(
    max_tracks: int, gallery_size: int, embedding_dim: int, tag_dim: int = 0, smooth: bool = False
) -> int:
    """Largest ``len(state.to_bytes())`` any state within these caps can have, in bytes.

    Measured by serialising a state with every slot filled and the counters at their
    largest values, so it is exact for this schema. Pass ``config.max_tracks`` and
    ``config.gallery_size``; E and D as used by the session; ``smooth`` as
    ``config.smooth`` (one filter row per active track).
    """

    def full(cls: type[_Columns], n: int) -> Any:
        return cls(**{
            name: np.zeros((n, *_dims(trailing, embedding_dim, tag_dim)), dtype)
            for name, (dtype, trailing) in cls.SPEC.items()
        })  # fmt: skip

    big = np.iinfo(np.int64).max
    filters = full(Filters, max_tracks) if smooth else None
    return len(
        TrackerState(full(Tracks, max_tracks), full(Gallery, gallery_size), big, big, filters).to_bytes()
    )


def _dims(trailing: tuple[int | None, ...], embedding_dim: int, tag_dim: int) -> tuple[int, ...]:
    # The only free dimension is E for (None,) and D for (17, None).
    free = embedding_dim if len(trailing) == 1 else tag_dim
    return tuple(free if d is None else d for d in trailing)
