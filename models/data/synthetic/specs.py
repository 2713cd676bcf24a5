"""Frozen specs of a synthetic scene (people, occluders, camera, perspective, background)
and the ``SyntheticConfig`` a random scene and clip are drawn from. Plain data, validated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

RGB = tuple[int, int, int]

MOTIONS: tuple[str, ...] = ("walk", "run", "wave", "stand")
PATTERNS: tuple[str, ...] = ("plain", "stripes", "checks", "noise")
OCCLUDER_TEXTURES: tuple[str, ...] = ("plain", "noise", "bricks", "stripes")
BACKGROUND_STYLES: tuple[str, ...] = ("room", "outdoor", "noise", "stripes", "gradient")

# A body-scale-1 person is this tall; turns pixels per body height into metres for gait
# phase (distance walked / stride) and heading.
PERSON_HEIGHT_M = 1.7


def _check_rgb(value: object, name: str) -> RGB:
    try:
        rgb = tuple(int(c) for c in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an (r, g, b) triple of ints 0..255, got {value!r}") from None
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"{name} must be an (r, g, b) triple of ints 0..255, got {value!r}")
    return rgb  # type: ignore[return-value]


@dataclass(frozen=True)
class Appearance:
    """Clothing and skin colours of one person, RGB 0..255.

    Attributes:
        skin, hair, shirt, trousers, shoes: base colours.
        shirt_alt: second colour of the ``stripes`` / ``checks`` shirt patterns.
        pattern: shirt texture, one of ``PATTERNS`` (plain, stripes, checks, noise).
        long_sleeves: forearms in shirt colour instead of skin.
    """

    skin: RGB = (224, 172, 140)
    hair: RGB = (60, 42, 30)
    shirt: RGB = (190, 50, 50)
    shirt_alt: RGB = (235, 235, 235)
    trousers: RGB = (50, 62, 110)
    shoes: RGB = (35, 32, 30)
    pattern: str = "plain"
    long_sleeves: bool = False

    def __post_init__(self) -> None:
        for name in ("skin", "hair", "shirt", "shirt_alt", "trousers", "shoes"):
            object.__setattr__(self, name, _check_rgb(getattr(self, name), f"Appearance.{name}"))
        if self.pattern not in PATTERNS:
            raise ValueError(f"Appearance.pattern must be one of {PATTERNS}, got {self.pattern!r}")

    @classmethod
    def random(cls, rng: np.random.Generator) -> Appearance:
        """A plausible random outfit drawn from ``rng``."""
        skins = (
            (255, 219, 190),
            (238, 190, 160),
            (214, 162, 124),
            (176, 122, 86),
            (132, 88, 58),
            (92, 60, 40),
        )
        hairs = ((25, 20, 18), (70, 45, 28), (120, 80, 45), (200, 165, 100), (160, 70, 35), (150, 150, 150))
        trousers = ((45, 60, 105), (30, 30, 35), (90, 90, 95), (150, 130, 95), (70, 80, 60))
        shoes = ((30, 28, 26), (235, 235, 235), (90, 60, 40), (40, 40, 80))
        skin = skins[int(rng.integers(len(skins)))]
        hair = hairs[int(rng.integers(len(hairs)))]
        shirt = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.25, 0.9), rng.uniform(0.35, 0.95))
        alt = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.6), rng.uniform(0.6, 1.0))
        if rng.uniform() < 0.3:
            trouser = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.2, 0.7), rng.uniform(0.2, 0.7))
        else:
            trouser = trousers[int(rng.integers(len(trousers)))]
        return cls(
            skin=skin,
            hair=hair,
            shirt=shirt,
            shirt_alt=alt,
            trousers=trouser,
            shoes=shoes[int(rng.integers(len(shoes)))],
            pattern=PATTERNS[int(rng.choice(len(PATTERNS), p=(0.4, 0.25, 0.15, 0.2)))],
            long_sleeves=bool(rng.uniform() < 0.4),
        )


def _hsv_to_rgb(h: float, s: float, v: float) -> RGB:
    rgb = cv2.cvtColor(
        np.array([[[h * 179.0, s * 255.0, v * 255.0]]], np.float32).astype(np.uint8), cv2.COLOR_HSV2RGB
    )
    return tuple(int(c) for c in rgb[0, 0])  # type: ignore[return-value]


@dataclass(frozen=True)
class PersonSpec:
    """One person of a scene: where they are over time, how they move and look.

    Attributes:
        path: waypoints ``(frame, x, y)``: the point between the feet on the ground, in
            world pixels, at that frame (frames strictly increasing, may lie outside the
            clip). Between waypoints the person moves in a straight line at constant
            speed; before the first and after the last they stand still. ``y`` sets both
            depth order and size (see ``Perspective``); it must lie below the horizon.
        motion: ``walk``, ``run``, ``wave`` (waves one hand, legs follow the path) or
            ``stand`` (idle arms). Legs always follow the actual speed along the path,
            so feet do not slide and a standing walker stops stepping.
        body_scale: height relative to a 1.7 m adult (0.6 for a child).
        build: width of torso and limbs relative to average.
        facing_deg: which way the person faces while standing still; 0 faces the
            camera, +90 faces image right (+x), 180 faces away. While moving they face
            the walking direction (blended by speed).
        yaw_deg: when set, the body always faces this way, whatever the path (for
            scripted cases that want, e.g., a frontal view while moving sideways).
        appearance: colours and clothes; ``None`` picks a fixed outfit from the
            person's index in the scene.
        phase: gait phase offset in cycles, so people in step do not move in lockstep.
        wave_hand: ``left`` or ``right`` (the person's own side), for ``motion="wave"``.
    """

    path: tuple[tuple[float, float, float], ...]
    motion: str = "walk"
    body_scale: float = 1.0
    build: float = 1.0
    facing_deg: float = 0.0
    yaw_deg: float | None = None
    appearance: Appearance | None = None
    phase: float = 0.0
    wave_hand: str = "right"

    def __post_init__(self) -> None:
        try:
            path = tuple((float(f), float(x), float(y)) for f, x, y in self.path)
        except (TypeError, ValueError):
            raise ValueError(
                f"PersonSpec.path must be a sequence of (frame, x, y) waypoints, got {self.path!r}"
            ) from None
        if not path:
            raise ValueError("PersonSpec.path needs at least one (frame, x, y) waypoint")
        if not all(math.isfinite(v) for p in path for v in p):
            raise ValueError(f"PersonSpec.path has a non-finite value: {path!r}")
        frames = [p[0] for p in path]
        if any(b <= a for a, b in zip(frames, frames[1:], strict=False)):
            raise ValueError(f"PersonSpec.path frames must strictly increase, got {frames}")
        object.__setattr__(self, "path", path)
        if self.motion not in MOTIONS:
            raise ValueError(f"PersonSpec.motion must be one of {MOTIONS}, got {self.motion!r}")
        if not 0.3 <= self.body_scale <= 2.0:
            raise ValueError(f"PersonSpec.body_scale must be in [0.3, 2.0], got {self.body_scale}")
        if not 0.5 <= self.build <= 2.0:
            raise ValueError(f"PersonSpec.build must be in [0.5, 2.0], got {self.build}")
        if self.wave_hand not in ("left", "right"):
            raise ValueError(f"PersonSpec.wave_hand must be 'left' or 'right', got {self.wave_hand!r}")
        if self.appearance is not None and not isinstance(self.appearance, Appearance):
            raise ValueError("PersonSpec.appearance must be an Appearance or None")


@dataclass(frozen=True)
class OccluderSpec:
    """A static upright occluder (pillar or free-standing panel) on the ground.

    Attributes:
        x: centre column in world pixels.
        y_base: world row where it touches the ground; its depth (like a person's foot
            row): people with a smaller foot row are behind it.
        width: width in world pixels.
        height: height in world pixels above ``y_base``; ``None`` is a floor-to-ceiling
            pillar (it reaches past the top of every view).
        color: base colour RGB.
        texture: one of ``OCCLUDER_TEXTURES``.
    """

    x: float
    y_base: float
    width: float
    height: float | None = None
    color: RGB = (150, 150, 150)
    texture: str = "noise"

    def __post_init__(self) -> None:
        object.__setattr__(self, "color", _check_rgb(self.color, "OccluderSpec.color"))
        if not (math.isfinite(self.x) and math.isfinite(self.y_base)):
            raise ValueError("OccluderSpec.x and y_base must be finite")
        if not self.width > 0:
            raise ValueError(f"OccluderSpec.width must be > 0 pixels, got {self.width}")
        if self.height is not None and not self.height > 0:
            raise ValueError(
                f"OccluderSpec.height must be > 0 pixels or None (floor to ceiling), got {self.height}"
            )
        if self.texture not in OCCLUDER_TEXTURES:
            raise ValueError(f"OccluderSpec.texture must be one of {OCCLUDER_TEXTURES}, got {self.texture!r}")


@dataclass(frozen=True)
class CameraSpec:
    """Camera pan and zoom over time, as keyframes ``(frame, pan_x, pan_y, zoom)``.

    ``pan_x, pan_y`` move the view centre in world pixels (positive: the view moves right /
    down, so the scene slides left / up); ``zoom`` > 1 magnifies about the view centre.
    Between keyframes the camera eases in and out (smoothstep on pan, geometric on zoom);
    before the first and after the last it holds. No keyframes: a static camera.
    """

    keys: tuple[tuple[float, float, float, float], ...] = ()

    def __post_init__(self) -> None:
        try:
            keys = tuple((float(f), float(px), float(py), float(z)) for f, px, py, z in self.keys)
        except (TypeError, ValueError):
            raise ValueError(
                f"CameraSpec.keys must be (frame, pan_x, pan_y, zoom) tuples, got {self.keys!r}"
            ) from None
        frames = [k[0] for k in keys]
        if any(b <= a for a, b in zip(frames, frames[1:], strict=False)):
            raise ValueError(f"CameraSpec.keys frames must strictly increase, got {frames}")
        if any(not 0.2 <= k[3] <= 10.0 for k in keys):
            raise ValueError("CameraSpec zoom must be in [0.2, 10]")
        if not all(math.isfinite(v) for k in keys for v in k):
            raise ValueError("CameraSpec.keys must be finite")
        object.__setattr__(self, "keys", keys)

    def at(self, t: float) -> tuple[float, float, float]:
        """``(pan_x, pan_y, zoom)`` at (fractional) frame ``t``."""
        keys = self.keys
        if not keys:
            return 0.0, 0.0, 1.0
        if t <= keys[0][0]:
            return keys[0][1], keys[0][2], keys[0][3]
        if t >= keys[-1][0]:
            return keys[-1][1], keys[-1][2], keys[-1][3]
        for a, b in zip(keys, keys[1:], strict=False):
            if a[0] <= t <= b[0]:
                s = (t - a[0]) / (b[0] - a[0])
                s = s * s * (3.0 - 2.0 * s)  # ease in/out: no velocity jumps at keyframes
                return (
                    a[1] + (b[1] - a[1]) * s,
                    a[2] + (b[2] - a[2]) * s,
                    a[3] * (b[3] / a[3]) ** s,
                )
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Perspective:
    """Ground-plane perspective: how tall people are at each foot row.

    A body-scale-1 person whose feet are at world row ``y`` is
    ``slope * (y - horizon_y)`` pixels tall: the image of a pinhole camera at height
    ``1.7 m / slope`` looking horizontally. ``focal`` (pixels) turns rows into metric depth
    ``Z = focal * 1.7 / (slope * (y - horizon_y))``, used for walking speed and heading.
    """

    horizon_y: float
    slope: float
    focal: float

    def __post_init__(self) -> None:
        if not (self.slope > 0 and self.focal > 0 and math.isfinite(self.horizon_y)):
            raise ValueError(f"Perspective needs slope > 0, focal > 0 and a finite horizon, got {self}")

    def person_height(self, y_foot: float) -> float:
        """Height in world pixels of a body-scale-1 person with feet at row ``y_foot``."""
        return self.slope * (y_foot - self.horizon_y)

    def pixels_per_metre(self, y_foot: float) -> float:
        """World pixels per metre at the depth of foot row ``y_foot``."""
        return self.person_height(y_foot) / PERSON_HEIGHT_M

    def depth(self, y_foot: float) -> float:
        """Metric distance from the camera of foot row ``y_foot``."""
        return self.focal / self.pixels_per_metre(y_foot)

    def row_at_depth(self, depth_m: float) -> float:
        """Inverse of ``depth``: the foot row at distance ``depth_m``."""
        return self.horizon_y + self.focal * PERSON_HEIGHT_M / (self.slope * depth_m)

    @classmethod
    def for_frame(
        cls,
        width: int,
        height: int,
        far_height: float = 0.22,
        near_height: float = 0.6,
        far_y: float = 0.55,
        near_y: float = 0.97,
    ) -> Perspective:
        """The perspective in which a person standing at row ``far_y * height`` is
        ``far_height * height`` tall and at ``near_y * height`` is ``near_height * height``
        (all fractions of the frame height)."""
        if not (0 < far_height < near_height and far_y < near_y):
            raise ValueError(
                "Perspective.for_frame needs 0 < far_height < near_height and far_y < near_y, "
                f"got far_height={far_height}, near_height={near_height}, far_y={far_y}, near_y={near_y}"
            )
        slope = (near_height - far_height) / (near_y - far_y)
        horizon = (far_y - far_height / slope) * height
        return cls(horizon_y=horizon, slope=slope, focal=float(width))


@dataclass(frozen=True)
class BackgroundSpec:
    """The static backdrop, drawn once in world coordinates.

    Attributes:
        style: one of ``BACKGROUND_STYLES``: ``room`` (wall and tiled floor), ``outdoor``
            (sky, skyline, ground), ``noise`` (smooth blotches), ``stripes``, ``gradient``.
        color_a, color_b: the two main colours (wall / floor, sky / ground, ...).
        seed: seed of the style's own random details (tiles, posters, skyline, noise).
    """

    style: str = "room"
    color_a: RGB = (205, 198, 186)
    color_b: RGB = (128, 112, 96)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.style not in BACKGROUND_STYLES:
            raise ValueError(f"BackgroundSpec.style must be one of {BACKGROUND_STYLES}, got {self.style!r}")
        object.__setattr__(self, "color_a", _check_rgb(self.color_a, "BackgroundSpec.color_a"))
        object.__setattr__(self, "color_b", _check_rgb(self.color_b, "BackgroundSpec.color_b"))


@dataclass(frozen=True)
class SceneSpec:
    """Everything that defines a clip; ``SyntheticClip(scene)`` renders it.

    Attributes:
        width, height: frame size in pixels.
        fps: frames per second (motion speeds are physical, so this sets the frame step).
        frames: clip length.
        people: the people; person ``i`` has track id ``i``.
        occluders: static occluder objects.
        camera: pan / zoom over time.
        perspective: ground-plane perspective; ``None`` uses ``Perspective.for_frame``.
        background: the backdrop.
        sensor_noise: standard deviation of the per-pixel noise added to each frame (0..255
            scale); the noise does not affect masks or ground truth.
        texture_seed: seed of the cloth / occluder noise textures and the sensor noise.
    """

    width: int = 640
    height: int = 480
    fps: float = 25.0
    frames: int = 120
    people: tuple[PersonSpec, ...] = ()
    occluders: tuple[OccluderSpec, ...] = ()
    camera: CameraSpec = CameraSpec()
    perspective: Perspective | None = None
    background: BackgroundSpec = BackgroundSpec()
    sensor_noise: float = 2.0
    texture_seed: int = 0

    def __post_init__(self) -> None:
        if not (16 <= self.width <= 8192 and 16 <= self.height <= 8192):
            raise ValueError(f"scene size must be 16..8192 pixels per side, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if not 0 <= self.sensor_noise <= 50:
            raise ValueError(f"sensor_noise must be in [0, 50], got {self.sensor_noise}")
        object.__setattr__(self, "people", tuple(self.people))
        object.__setattr__(self, "occluders", tuple(self.occluders))
        if self.perspective is None:
            object.__setattr__(self, "perspective", Perspective.for_frame(self.width, self.height))
        assert self.perspective is not None
        margin = 1.0  # people need some size: their feet must be clearly below the horizon
        for i, person in enumerate(self.people):
            if not isinstance(person, PersonSpec):
                raise ValueError(f"people[{i}] must be a PersonSpec, got {type(person).__name__}")
            for f, _x, y in person.path:
                if self.perspective.person_height(y) < margin:
                    raise ValueError(
                        f"people[{i}] waypoint at frame {f:g} has its feet at y={y:g}, at or above the "
                        f"horizon (y={self.perspective.horizon_y:.1f}) where people have no size; "
                        "move it lower in the frame"
                    )
        for i, occ in enumerate(self.occluders):
            if not isinstance(occ, OccluderSpec):
                raise ValueError(f"occluders[{i}] must be an OccluderSpec, got {type(occ).__name__}")


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of a random synthetic clip (``random_scene`` turns them into a scene).

    Attributes:
        seed: the same seed gives the same clip, pixel for pixel.
        frames: number of frames.
        people: number of people appearing over the clip (each is in view at some point).
        width, height: frame size in pixels.
        fps: frames per second.
        camera_motion: random pan and zoom when True, a static camera when False.
        occluders: number of pillars / panels standing in the scene.
        min_person_height, max_person_height: height of an adult at the far and near edge
            of the walking area, as fractions of the frame height (before zoom).
        max_pan: largest camera pan as a fraction of the frame width.
        max_zoom: largest zoom-in factor (the camera zooms out to ``1 / sqrt(max_zoom)``).
        sensor_noise: per-pixel noise standard deviation (0..255 scale).
        crf: H.264 quality of ``write_synthetic_clip`` (lower is better, 18..28 usual).
    """

    seed: int = 0
    frames: int = 120
    people: int = 4
    width: int = 640
    height: int = 480
    fps: float = 25.0
    camera_motion: bool = True
    occluders: int = 1
    min_person_height: float = 0.22
    max_person_height: float = 0.6
    max_pan: float = 0.12
    max_zoom: float = 1.3
    sensor_noise: float = 2.0
    crf: int = 20

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.people < 0:
            raise ValueError(f"people must be >= 0, got {self.people}")
        if self.people > 200:
            raise ValueError(f"people must be <= 200 (crowds this size are not modelled), got {self.people}")
        if not (32 <= self.width <= 8192 and 32 <= self.height <= 8192):
            raise ValueError(f"width and height must be 32..8192 pixels, got {self.width}x{self.height}")
        if not (math.isfinite(self.fps) and 0 < self.fps <= 240):
            raise ValueError(f"fps must be in (0, 240], got {self.fps}")
        if self.occluders < 0:
            raise ValueError(f"occluders must be >= 0, got {self.occluders}")
        if not 0.02 <= self.min_person_height < self.max_person_height <= 1.5:
            raise ValueError(
                "need 0.02 <= min_person_height < max_person_height <= 1.5 (fractions of the frame "
                f"height), got {self.min_person_height} and {self.max_person_height}"
            )
        if not 0 <= self.max_pan <= 1:
            raise ValueError(f"max_pan must be in [0, 1] (fraction of the width), got {self.max_pan}")
        if not 1 <= self.max_zoom <= 4:
            raise ValueError(f"max_zoom must be in [1, 4], got {self.max_zoom}")
        if not 0 <= self.sensor_noise <= 50:
            raise ValueError(f"sensor_noise must be in [0, 50], got {self.sensor_noise}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
