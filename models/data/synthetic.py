"""Synthetic multi-person video whose ground truth is known exactly.

Used by tests, for training (SpatialNet heatmaps / embeddings, TemporalNet identity) and
for tracker evaluation with occlusion, crossing, camera pan and zoom. Torch-free.

Coordinate frames
-----------------
All positions are continuous pixel coordinates as in COCO: pixel ``(i, j)`` (column,
row) covers ``[i, i+1) x [j, j+1)``, so its centre is ``(i + 0.5, j + 0.5)`` and a point
``(x, y)`` lies on pixel ``(floor(x), floor(y))``; it is in the frame when
``0 <= x < width`` and ``0 <= y < height``.

- **World**: the image plane of the camera at rest (no pan, zoom 1). People, occluders
  and the background are placed here, in pixels. People stand on a ground plane seen by a
  pinhole camera with a horizontal optical axis (``Perspective``): a person whose feet
  touch the ground at world row ``y`` is ``slope * (y - horizon_y) * body_scale`` pixels
  tall, so people lower in the frame are nearer and larger, and the foot row ``y`` is the
  depth order (larger ``y`` = nearer = drawn on top).
- **Image**: world seen through the camera (``CameraSpec``):
  ``u = (X - (W/2 + pan_x)) * zoom + W/2`` and likewise for ``v``.

Scenes are plain frozen specs (``SceneSpec`` holding ``PersonSpec``, ``OccluderSpec``,
``CameraSpec``, ``Perspective``, ``BackgroundSpec``); ``random_scene`` draws one from a
seed, tests write them by hand (or start from ``crossing_scene``, ``occlusion_scene``,
``reentry_scene``, ``zoom_scene``). Every motion is an analytic function of the frame
index, so ``SyntheticClip.render(t)`` renders any frame without rendering the ones before
it. A scripted scene::

    scene = SceneSpec(
        width=640, height=480, frames=100,
        people=(
            PersonSpec(path=((0, 60, 300), (99, 580, 300))),                # far, walks right
            PersonSpec(path=((0, 580, 450), (99, 60, 450)), motion="run"),  # near, runs left
            PersonSpec(path=((0, 320, 330),), motion="wave", facing_deg=20),
        ),
        occluders=(OccluderSpec(x=200, y_base=420, width=90),),             # a pillar
        camera=CameraSpec(keys=((0, 0, 0, 1.0), (60, 40, 0, 1.4))),         # pan + zoom in
    )
    rgb, gt = SyntheticClip(scene).render(42)

Rendering and visibility
------------------------
Each person (and occluder) is rasterised, without anti-aliasing, into its own label crop
of body-part codes (the amodal mask). Crops are composited far to near into a frame-wide
object map and part map (a painter's z-buffer), and the pixels are shaded from those maps
only, so the picture and the masks agree exactly. Ground-truth visibility per keypoint
(the score column of ``FramePoses.keypoints``) is read from the maps at the keypoint's
pixel:

- 0 (absent): the keypoint's pixel is outside the frame. Its true ``(x, y)`` is kept
  even then (it may be negative or beyond the frame size).
- 1 (occluded): the pixel shows a nearer person or an occluder object, or the person's
  own body covers it (self-occlusion: a far-side limb behind the torso or the other
  limb, a far shoulder / hip behind the torso when the body is turned more than ~45
  degrees, face points on the far side of the head).
- 2 (visible): the pixel shows the body part the keypoint belongs to.

Boxes are the tight box of the person's whole drawn body (amodal: hidden parts count),
clipped to the frame, in the same continuous coordinates. People with no drawn pixel in
the frame are left out of that frame's list; track ids are the index of the person in
``SceneSpec.people``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from posestream.models.poses import FramePoses, dumps_frame
from posestream.models.skeleton import KEYPOINT_INDEX, NUM_KEYPOINTS, VIS_ABSENT, VIS_OCCLUDED, VIS_VISIBLE

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]

MOTIONS: tuple[str, ...] = ("walk", "run", "wave", "stand")
PATTERNS: tuple[str, ...] = ("plain", "stripes", "checks", "noise")
OCCLUDER_TEXTURES: tuple[str, ...] = ("plain", "noise", "bricks", "stripes")
BACKGROUND_STYLES: tuple[str, ...] = ("room", "outdoor", "noise", "stripes", "gradient")

# A body-scale-1 person is this tall; turns pixels per body height into metres for gait
# phase (distance walked / stride) and heading.
PERSON_HEIGHT_M = 1.7


# --------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Random scenes
# --------------------------------------------------------------------------------------

_FAR_Y, _NEAR_Y = 0.55, 0.97  # walking area, fractions of the frame height


def random_scene(config: SyntheticConfig) -> SceneSpec:
    """The scene a seed stands for: background, camera, occluders and people.

    Draws everything from one ``numpy.random.default_rng(config.seed)`` in a fixed order,
    so the same config always gives the same scene.
    """
    rng = np.random.default_rng(config.seed)
    w, h = config.width, config.height
    persp = Perspective.for_frame(w, h, config.min_person_height, config.max_person_height, _FAR_Y, _NEAR_Y)
    background = _random_background(rng)
    camera = _random_camera(rng, config) if config.camera_motion else CameraSpec()
    y_far, y_near = _FAR_Y * h, _NEAR_Y * h
    occluders = tuple(_random_occluder(rng, config, persp, y_far, y_near) for _ in range(config.occluders))
    people = tuple(_random_person(rng, config, persp, camera, y_far, y_near) for _ in range(config.people))
    return SceneSpec(
        width=w,
        height=h,
        fps=config.fps,
        frames=config.frames,
        people=people,
        occluders=occluders,
        camera=camera,
        perspective=persp,
        background=background,
        sensor_noise=config.sensor_noise,
        texture_seed=int(rng.integers(2**31)),
    )


def _random_background(rng: np.random.Generator) -> BackgroundSpec:
    style = BACKGROUND_STYLES[int(rng.integers(len(BACKGROUND_STYLES)))]
    if style == "outdoor":
        a = _hsv_to_rgb(rng.uniform(0.52, 0.62), rng.uniform(0.15, 0.55), rng.uniform(0.75, 0.98))
        b = _hsv_to_rgb(rng.uniform(0.12, 0.35), rng.uniform(0.2, 0.6), rng.uniform(0.3, 0.6))
    else:
        a = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.05, 0.45), rng.uniform(0.45, 0.95))
        b = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.05, 0.5), rng.uniform(0.25, 0.7))
    return BackgroundSpec(style=style, color_a=a, color_b=b, seed=int(rng.integers(2**31)))


def _random_camera(rng: np.random.Generator, config: SyntheticConfig) -> CameraSpec:
    keys: list[tuple[float, float, float, float]] = []
    t = 0.0
    pan_x = pan_y = 0.0
    zoom = 1.0
    min_zoom = 1.0 / math.sqrt(config.max_zoom)
    while True:
        if not keys or rng.uniform() > 0.3:  # otherwise hold: a camera at rest between moves
            pan_x = float(rng.uniform(-1, 1) * config.max_pan * config.width)
            pan_y = float(rng.uniform(-0.5, 0.5) * config.max_pan * config.height)
            zoom = float(math.exp(rng.uniform(math.log(min_zoom), math.log(config.max_zoom))))
        keys.append((t, pan_x, pan_y, zoom))
        if t >= config.frames - 1:
            break
        t += float(rng.uniform(1.5, 4.0) * config.fps)
    return CameraSpec(tuple(keys))


def _random_occluder(
    rng: np.random.Generator, config: SyntheticConfig, persp: Perspective, y_far: float, y_near: float
) -> OccluderSpec:
    y_base = float(rng.uniform(y_far + 0.3 * (y_near - y_far), y_near))
    person_h = persp.person_height(y_base)
    pillar = rng.uniform() < 0.6
    width = float(person_h * (rng.uniform(0.3, 0.55) if pillar else rng.uniform(0.8, 1.8)))
    height = None if pillar else float(person_h * rng.uniform(0.45, 0.85))
    if rng.uniform() < 0.5:
        color = _hsv_to_rgb(rng.uniform(0.05, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.75))
    else:
        color = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.25), rng.uniform(0.4, 0.85))
    return OccluderSpec(
        x=float(rng.uniform(0.15, 0.85) * config.width),
        y_base=y_base,
        width=width,
        height=height,
        color=color,
        texture=OCCLUDER_TEXTURES[int(rng.integers(len(OCCLUDER_TEXTURES)))],
    )


def _random_person(
    rng: np.random.Generator,
    config: SyntheticConfig,
    persp: Perspective,
    camera: CameraSpec,
    y_far: float,
    y_near: float,
) -> PersonSpec:
    fps, frames = config.fps, config.frames
    motion = MOTIONS[int(rng.choice(len(MOTIONS), p=(0.45, 0.15, 0.15, 0.25)))]
    body_scale = float(rng.uniform(0.6, 0.75) if rng.uniform() < 0.07 else rng.uniform(0.86, 1.1))
    build = float(rng.uniform(0.88, 1.18))
    appearance = Appearance.random(rng)
    phase = float(rng.uniform())
    facing = float(rng.uniform(-70, 70))
    wave_hand = "left" if rng.uniform() < 0.4 else "right"
    # The person is in view (on the image, whatever the camera does) at t_mid.
    t_mid = float(rng.uniform(0.1, 0.9) * max(frames - 1, 1))
    pan_x, pan_y, zoom = camera.at(t_mid)
    u_mid = rng.uniform(0.1, 0.9) * config.width
    x_mid = float((u_mid - config.width / 2) / zoom + config.width / 2 + pan_x)
    y_mid = float(rng.uniform(y_far, y_near))
    speed = float(rng.uniform(2.4, 4.0) if motion == "run" else rng.uniform(0.9, 1.7))  # m/s
    stationary = motion in ("stand", "wave")
    direction = 1.0 if rng.uniform() < 0.5 else -1.0

    def legs(t0: float, x0: float, y0: float, sign: float, d: float) -> list[tuple[float, float, float]]:
        """Waypoints from (t0, x0, y0) going forward (sign +1) or backward (-1) in time."""
        out: list[tuple[float, float, float]] = []
        t, x, y = t0, x0, y0
        first = True
        while (sign > 0 and t < frames + fps) or (sign < 0 and t > -fps):
            if stationary and first:
                dur = rng.uniform(0.25, 0.6) * frames
                out.append((t + sign * dur, x, y))
                t += sign * dur
                first = False
                if rng.uniform() < 0.5:  # stays put for the rest of the clip
                    break
                continue
            first = False
            r = rng.uniform()
            if r < 0.12:  # a short pause
                dur = rng.uniform(0.5, 1.5) * fps
                t += sign * dur
                out.append((t, x, y))
                continue
            if r < 0.24:
                d = -d
            dur = rng.uniform(1.5, 4.0) * fps
            angle = rng.uniform(-0.35, 0.35)  # heading off the image x axis, into depth
            dist = speed * dur / fps
            depth = persp.depth(y) + dist * math.sin(angle) * sign
            y_new = float(np.clip(persp.row_at_depth(max(depth, 0.5)), y_far, y_near))
            y_avg = 0.5 * (y + y_new)
            x = x + sign * d * dist * math.cos(angle) * persp.pixels_per_metre(y_avg)
            y = y_new
            t += sign * dur
            out.append((t, x, y))
        return out

    forward = legs(t_mid, x_mid, y_mid, 1.0, direction)
    backward = legs(t_mid, x_mid, y_mid, -1.0, direction)
    path = tuple(reversed(backward)) + ((t_mid, x_mid, y_mid),) + tuple(forward)
    return PersonSpec(
        path=path,
        motion=motion,
        body_scale=body_scale,
        build=build,
        facing_deg=facing,
        appearance=appearance,
        phase=phase,
        wave_hand=wave_hand,
    )


# --------------------------------------------------------------------------------------
# Body model: a 3D stick body in units of body height (x = the person's left, y = up from
# the ground, z = forward), posed analytically, turned by its yaw and projected
# orthographically (people are small against their distance to the camera).
# --------------------------------------------------------------------------------------

_ANKLE_H = 0.045
_THIGH, _SHIN = 0.245, 0.245
_SHOULDER_UP = 0.285  # above the hip joints
_WAIST_UP = 0.1
_SHOULDER_HW, _HIP_HW, _WAIST_HW = 0.115, 0.078, 0.092
_CHEST_HD = 0.055  # half depth of the torso, so a side view still has a body
_UPPER_ARM, _FOREARM = 0.165, 0.145
_NECK_UP, _HEAD_UP = 0.035, 0.088
_HEAD_RX, _HEAD_RY = 0.056, 0.066
# Limb radii (start, end) in body heights, before ``build``.
_R_THIGH, _R_SHIN, _R_UPPER, _R_FORE = (0.046, 0.034), (0.035, 0.026), (0.03, 0.024), (0.024, 0.019)
_R_HAND, _R_SHOE, _R_NECK = 0.022, 0.022, 0.024


@dataclass(frozen=True)
class _Gait:
    hip_amp: float  # thigh swing amplitude, rad
    hip_bias: float  # forward thigh offset, rad
    knee_base: float  # knee bend at full gait, rad
    knee_amp: float  # extra knee bend in swing, rad
    shoulder_amp: float
    elbow_base: float
    elbow_amp: float
    lean: float  # forward lean of the upper body, rad
    bob: float  # flight-phase lift, body heights
    stride: float  # metres per gait cycle (two steps) at body scale 1
    speed: float  # m/s at which the gait reaches full amplitude


_WALK = _Gait(0.42, 0.0, 0.06, 0.95, 0.32, 0.2, 0.3, 0.04, 0.0, 1.45, 1.2)
_RUN = _Gait(0.62, 0.12, 0.3, 1.5, 0.55, 1.35, 0.2, 0.2, 0.03, 2.6, 2.6)

# Part codes drawn into the label crops (0 = nothing), and the layer each belongs to.
(
    _P_SHIRT, _P_PELVIS, _P_NECK, _P_FACE, _P_HAIR, _P_EYE, _P_FACEDOT,
    _P_UARM_L, _P_FARM_L, _P_HAND_L, _P_UARM_R, _P_FARM_R, _P_HAND_R,
    _P_THIGH_L, _P_SHIN_L, _P_SHOE_L, _P_THIGH_R, _P_SHIN_R, _P_SHOE_R, _P_OCCLUDER,
) = range(1, 21)  # fmt: skip
_N_CODES = 32
_L_TORSO, _L_HEAD, _L_ARM_L, _L_ARM_R, _L_LEG_L, _L_LEG_R, _L_OCC, _L_NONE = range(8)
_LAYER_OF = np.full(_N_CODES, _L_NONE, np.uint8)
for _codes, _layer in (
    ((_P_SHIRT, _P_PELVIS, _P_NECK), _L_TORSO),
    ((_P_FACE, _P_HAIR, _P_EYE, _P_FACEDOT), _L_HEAD),
    ((_P_UARM_L, _P_FARM_L, _P_HAND_L), _L_ARM_L),
    ((_P_UARM_R, _P_FARM_R, _P_HAND_R), _L_ARM_R),
    ((_P_THIGH_L, _P_SHIN_L, _P_SHOE_L), _L_LEG_L),
    ((_P_THIGH_R, _P_SHIN_R, _P_SHOE_R), _L_LEG_R),
    ((_P_OCCLUDER,), _L_OCC),
):
    _LAYER_OF[list(_codes)] = _layer
_LAYER_OF.setflags(write=False)

_K = KEYPOINT_INDEX
_FACE_KPS = (_K["nose"], _K["left_eye"], _K["right_eye"], _K["left_ear"], _K["right_ear"])
# Layers whose pixels count as "this keypoint seen" (bit mask per keypoint). Shoulders and
# hips sit where a limb meets the torso, so both count (the torso only while that side
# is not turned away; see _render_person).
_OWN = np.zeros(NUM_KEYPOINTS, np.int64)
for _k in _FACE_KPS:
    _OWN[_k] = 1 << _L_HEAD
for _name, _layers in (
    ("left_shoulder", (_L_ARM_L, _L_TORSO)), ("right_shoulder", (_L_ARM_R, _L_TORSO)),
    ("left_elbow", (_L_ARM_L,)), ("right_elbow", (_L_ARM_R,)),
    ("left_wrist", (_L_ARM_L,)), ("right_wrist", (_L_ARM_R,)),
    ("left_hip", (_L_LEG_L, _L_TORSO)), ("right_hip", (_L_LEG_R, _L_TORSO)),
    ("left_knee", (_L_LEG_L,)), ("right_knee", (_L_LEG_R,)),
    ("left_ankle", (_L_LEG_L,)), ("right_ankle", (_L_LEG_R,)),
):  # fmt: skip
    _OWN[_K[_name]] = sum(1 << layer for layer in _layers)
# The part whose code is written at each keypoint's own pixel, so the keypoint always
# lands on its own body even for tiny people (rasterisation never misses it).
_HOME_PART = {
    _K["nose"]: _P_FACEDOT, _K["left_eye"]: _P_EYE, _K["right_eye"]: _P_EYE,
    _K["left_ear"]: _P_FACEDOT, _K["right_ear"]: _P_FACEDOT,
    _K["left_shoulder"]: _P_UARM_L, _K["right_shoulder"]: _P_UARM_R,
    _K["left_elbow"]: _P_UARM_L, _K["right_elbow"]: _P_UARM_R,
    _K["left_wrist"]: _P_FARM_L, _K["right_wrist"]: _P_FARM_R,
    _K["left_hip"]: _P_THIGH_L, _K["right_hip"]: _P_THIGH_R,
    _K["left_knee"]: _P_THIGH_L, _K["right_knee"]: _P_THIGH_R,
    _K["left_ankle"]: _P_SHIN_L, _K["right_ankle"]: _P_SHIN_R,
}  # fmt: skip
_LAYER_KPS = {
    _L_HEAD: _FACE_KPS,
    _L_ARM_L: (_K["left_shoulder"], _K["left_elbow"], _K["left_wrist"]),
    _L_ARM_R: (_K["right_shoulder"], _K["right_elbow"], _K["right_wrist"]),
    _L_LEG_L: (_K["left_hip"], _K["left_knee"], _K["left_ankle"]),
    _L_LEG_R: (_K["right_hip"], _K["right_knee"], _K["right_ankle"]),
    _L_TORSO: (),
}
_FACE_HIDDEN = -0.2  # face points this far (head radii) behind the head centre are hidden


@dataclass(frozen=True, eq=False)
class _Pose3D:
    """A posed body in body units. ``kp`` (17, 3); other fields (3,) or (n, 3)."""

    kp: np.ndarray
    neck: np.ndarray
    head: np.ndarray
    hands: np.ndarray  # (2, 3) left, right
    toes: np.ndarray  # (2, 3) left, right
    shirt: np.ndarray  # (12, 3) torso prism corners, shoulders to waist
    pelvis: np.ndarray  # (8, 3) waist to crotch
    lean: float


def _lean(rel: np.ndarray, angle: float) -> np.ndarray:
    """Rotate points (..., 3) about the x axis so that +y tips towards +z by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    out = rel.copy()
    out[..., 1] = rel[..., 1] * c - rel[..., 2] * s
    out[..., 2] = rel[..., 1] * s + rel[..., 2] * c
    return out


def _pose3d(
    motion: str, phase: float, amp: float, t_sec: float, build: float, wave_left: bool, idle: float
) -> _Pose3D:
    """The body at gait ``phase`` (cycles), gait amplitude ``amp`` in [0, 1] (0 = standing)."""
    g = _RUN if motion == "run" else _WALK
    a = amp
    phi = 2.0 * math.pi * phase
    sway = math.sin(2.0 * math.pi * (t_sec / 3.3 + idle))
    kp = np.zeros((NUM_KEYPOINTS, 3))
    legs = []
    for side, ph in ((1.0, phi), (-1.0, phi + math.pi)):
        th = a * (g.hip_amp * math.sin(ph) + g.hip_bias)
        kn = 0.05 + a * (g.knee_base + g.knee_amp * max(0.0, math.cos(ph)) ** 2)
        legs.append((side, th, kn))
    reach = max(_THIGH * math.cos(th) + _SHIN * math.cos(th - kn) for _, th, kn in legs)
    hip_y = _ANKLE_H + reach + g.bob * a * abs(math.sin(2.0 * phi))
    toes = np.zeros((2, 3))
    for i, (side, th, kn) in enumerate(legs):
        hip = np.array([side * _HIP_HW * build, hip_y, 0.0])
        knee = hip + _THIGH * np.array([0.0, -math.cos(th), math.sin(th)])
        ankle = knee + _SHIN * np.array([0.0, -math.cos(th - kn), math.sin(th - kn)])
        toes[i] = ankle + _lean(np.array([0.0, -0.02, 0.075]), -0.5 * (th - kn))
        names = (
            ("left_hip", "left_knee", "left_ankle")
            if side > 0
            else ("right_hip", "right_knee", "right_ankle")
        )
        for name, p in zip(names, (hip, knee, ankle), strict=True):
            kp[_K[name]] = p

    # Upper body, leaned forward about the pelvis.
    lean = g.lean * a
    pelvis_c = np.array([0.0, hip_y, 0.0])
    sw = _SHOULDER_HW * build
    rel = np.array(
        [
            [sw, _SHOULDER_UP, 0.0],
            [-sw, _SHOULDER_UP, 0.0],
            [0.0, _SHOULDER_UP + _NECK_UP, 0.005],
            [0.0, _SHOULDER_UP + _NECK_UP + _HEAD_UP, 0.012],
        ]
    )
    rel = _lean(rel, lean) + pelvis_c
    kp[_K["left_shoulder"]], kp[_K["right_shoulder"]], neck, head = rel
    cd = _CHEST_HD * build
    # Shoulder corners sit inside the upper-arm capsules and a trapezius point slopes up
    # to the neck, so the shoulders come out round rather than square.
    waist_rel = np.array(
        [[sx * _WAIST_HW * build, _WAIST_UP, sz * cd * 0.95] for sx in (1, -1) for sz in (1, -1)]
    )
    shirt_rel = np.concatenate(
        [
            np.array(
                [[sx * (sw - 0.004), _SHOULDER_UP + 0.016, sz * cd] for sx in (1, -1) for sz in (1, -1)]
            ),
            np.array(
                [[sx * 0.05 * build, _SHOULDER_UP + 0.034, sz * cd * 0.6] for sx in (1, -1) for sz in (1, -1)]
            ),
            waist_rel,
        ]
    )
    shirt = _lean(shirt_rel, lean) + pelvis_c
    waist = _lean(waist_rel, lean) + pelvis_c
    crotch = np.array(
        [[sx * (_HIP_HW + 0.03) * build, -0.045, sz * cd * 0.9] for sx in (1, -1) for sz in (1, -1)]
    )
    pelvis = np.concatenate([waist, crotch + pelvis_c])

    # Arms swing against the legs; angles are relative to gravity, not to the torso.
    hands = np.zeros((2, 3))
    for i, (side, ph) in enumerate(((1.0, phi), (-1.0, phi + math.pi))):
        shoulder = kp[_K["left_shoulder"] if side > 0 else _K["right_shoulder"]]
        waving = motion == "wave" and (side > 0) == wave_left
        if waving:
            ab = 2.35 + 0.06 * math.sin(2.0 * math.pi * 0.9 * t_sec)
            d1 = np.array([side * math.sin(ab), -math.cos(ab), 0.15])
            beta = 0.1 + 0.4 * math.sin(2.0 * math.pi * 1.8 * t_sec)
            d2 = np.array([side * math.sin(beta), math.cos(beta), 0.12])
        else:
            ab = 0.13  # arms hang clear of the hips
            fl = -a * g.shoulder_amp * math.sin(ph) + (1.0 - a) * 0.05 * sway * side
            el = 0.15 + a * (g.elbow_base - 0.15 + g.elbow_amp * max(0.0, -math.sin(ph)))
            d1 = np.array([side * math.sin(ab), -math.cos(ab) * math.cos(fl), math.cos(ab) * math.sin(fl)])
            d2 = np.array(
                [
                    side * math.sin(ab) * 0.5,
                    -math.cos(ab) * math.cos(fl + el),
                    math.cos(ab) * math.sin(fl + el),
                ]
            )
        d1 /= np.linalg.norm(d1)
        d2 /= np.linalg.norm(d2)
        elbow = shoulder + _UPPER_ARM * d1
        wrist = elbow + _FOREARM * d2
        hands[i] = wrist + 0.028 * d2
        if side > 0:
            kp[_K["left_elbow"]], kp[_K["left_wrist"]] = elbow, wrist
        else:
            kp[_K["right_elbow"]], kp[_K["right_wrist"]] = elbow, wrist

    # Face points on an ellipsoidal head (lateral/depth radius RX, vertical RY).
    rx, ry = _HEAD_RX, _HEAD_RY
    for name, off in (
        ("nose", (0.0, -0.15 * ry, 0.97 * rx)),
        ("left_eye", (0.36 * rx, 0.2 * ry, 0.86 * rx)),
        ("right_eye", (-0.36 * rx, 0.2 * ry, 0.86 * rx)),
        ("left_ear", (0.97 * rx, 0.0, -0.1 * rx)),
        ("right_ear", (-0.97 * rx, 0.0, -0.1 * rx)),
    ):
        kp[_K[name]] = head + np.asarray(off)
    return _Pose3D(kp=kp, neck=neck, head=head, hands=hands, toes=toes, shirt=shirt, pelvis=pelvis, lean=lean)


# --------------------------------------------------------------------------------------
# Per-person motion along the path (analytic in t)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Track:
    """Precomputed path arrays of one person: waypoint frames, x, y, and cumulative
    metric distance walked (m) at each waypoint."""

    spec: PersonSpec
    ts: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    dist: np.ndarray
    gait: _Gait
    appearance: Appearance
    lut: np.ndarray  # (_N_CODES, 3) float32 RGB per part code
    shirt_codes: tuple[int, ...]
    trouser_codes: tuple[int, ...]
    index: int


def _make_track(index: int, spec: PersonSpec, persp: Perspective) -> _Track:
    ts = np.array([p[0] for p in spec.path])
    xs = np.array([p[1] for p in spec.path])
    ys = np.array([p[2] for p in spec.path])
    dist = np.zeros(len(ts))
    for i in range(1, len(ts)):
        ppm = persp.pixels_per_metre(0.5 * (ys[i] + ys[i - 1]))
        dx = (xs[i] - xs[i - 1]) / ppm
        dz = persp.depth(ys[i]) - persp.depth(ys[i - 1])
        dist[i] = dist[i - 1] + math.hypot(dx, dz)
    app = spec.appearance or Appearance.random(np.random.default_rng(1_000_003 + index))
    lut = np.zeros((_N_CODES, 3), np.float32)
    skin = np.array(app.skin, np.float32)
    lut[_P_SHIRT] = lut[_P_UARM_L] = lut[_P_UARM_R] = app.shirt
    lut[_P_FARM_L] = lut[_P_FARM_R] = app.shirt if app.long_sleeves else app.skin
    lut[_P_HAND_L] = lut[_P_HAND_R] = lut[_P_NECK] = lut[_P_FACE] = skin
    lut[_P_FACEDOT] = skin * 0.86
    lut[_P_EYE] = (35, 28, 25)
    lut[_P_HAIR] = app.hair
    lut[_P_PELVIS] = lut[_P_THIGH_L] = lut[_P_THIGH_R] = lut[_P_SHIN_L] = lut[_P_SHIN_R] = app.trousers
    lut[_P_SHOE_L] = lut[_P_SHOE_R] = app.shoes
    shirt_codes = (_P_SHIRT, _P_UARM_L, _P_UARM_R) + ((_P_FARM_L, _P_FARM_R) if app.long_sleeves else ())
    trouser_codes = (_P_PELVIS, _P_THIGH_L, _P_THIGH_R, _P_SHIN_L, _P_SHIN_R)
    # The LUT holds the shirt colour; patterns are applied per pixel with the alt colour.
    return _Track(
        spec=spec,
        ts=ts,
        xs=xs,
        ys=ys,
        dist=dist,
        gait=_RUN if spec.motion == "run" else _WALK,
        appearance=app,
        lut=lut,
        shirt_codes=shirt_codes,
        trouser_codes=trouser_codes,
        index=index,
    )


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

_SHIFT = 4  # sub-pixel bits for cv2 drawing: smooth motion without anti-aliasing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class RenderedFrame:
    """One rendered frame with its exact ground truth.

    Attributes:
        rgb: (H, W, 3) uint8 picture.
        poses: ground truth (see the module docstring for visibility and boxes).
        instance_ids: (H, W) int32, the track id of the person seen at each pixel, -1 for
            background, -2 for occluder objects. It is the z-buffer the visibility was
            read from.
    """

    rgb: np.ndarray
    poses: FramePoses
    instance_ids: np.ndarray


@dataclass(frozen=True, eq=False)
class _Drawn:
    """A person's or occluder's label crop placed in the frame."""

    depth: float
    order: int
    x0: int
    y0: int
    codes: np.ndarray  # (h, w) uint8 part codes, 0 = empty
    rgb: np.ndarray  # (h, w, 3) uint8
    person: int = -1  # index into scene.people, -1 for occluders
    kp: np.ndarray | None = None  # (17, 2) image coordinates
    hidden: np.ndarray | None = None  # (17,) bool: geometrically self-occluded
    own: np.ndarray | None = None  # (17,) int64 own-layer bit masks


class SyntheticClip:
    """Renders a scene frame by frame, in any order.

    ``render(t)`` depends only on the scene and ``t``: no state is carried between
    frames, so training code can sample frames or pairs ``(t, t + d)`` at random.
    """

    def __init__(self, scene: SceneSpec) -> None:
        self._scene = scene
        assert scene.perspective is not None
        self._persp = scene.perspective
        self._tracks = [_make_track(i, p, self._persp) for i, p in enumerate(scene.people)]
        tex_rng = np.random.default_rng(scene.texture_seed)
        self._tile = _smooth_noise(tex_rng, 64, 64, 6.0, wrap=True)  # (64, 64) float32 in ~[-1, 1]
        # A few frames of sensor noise, split into positive and negative uint8 parts so a
        # frame gets it with two saturating cv2 adds; frame t uses bank entry t % 3.
        self._noise: list[tuple[np.ndarray, np.ndarray]] = []
        for _ in range(3 if scene.sensor_noise > 0 else 0):
            n = np.round(tex_rng.normal(0.0, scene.sensor_noise, (scene.height, scene.width, 3)))
            n = np.clip(n, -255, 255)
            self._noise.append((np.maximum(n, 0).astype(np.uint8), np.maximum(-n, 0).astype(np.uint8)))
        self._bg, self._bg_origin = self._make_background()

    @classmethod
    def from_config(cls, config: SyntheticConfig) -> SyntheticClip:
        """The random clip of ``config`` (see ``random_scene``)."""
        return cls(random_scene(config))

    @property
    def scene(self) -> SceneSpec:
        """The scene this clip renders."""
        return self._scene

    def __len__(self) -> int:
        return self._scene.frames

    def __iter__(self) -> Iterator[tuple[np.ndarray, FramePoses]]:
        for t in range(self._scene.frames):
            yield self.render(t)

    def render(self, t: int) -> tuple[np.ndarray, FramePoses]:
        """RGB (H, W, 3) uint8 picture and ground truth of frame ``t``."""
        out = self.render_full(t)
        return out.rgb, out.poses

    # ---- per frame --------------------------------------------------------------------

    def render_full(self, t: int) -> RenderedFrame:
        """Frame ``t`` with its instance map (see ``RenderedFrame``)."""
        sc = self._scene
        if not (isinstance(t, (int, np.integer)) and 0 <= t < sc.frames):
            raise IndexError(f"frame {t!r} is outside the clip (0..{sc.frames - 1})")
        t = int(t)
        w, h = sc.width, sc.height
        pan_x, pan_y, zoom = sc.camera.at(t)
        cam = (w / 2 + pan_x, h / 2 + pan_y, zoom)
        rgb = self._background_view(cam)

        drawn: list[_Drawn] = []
        for track in self._tracks:
            d = self._render_person(track, t, cam)
            if d is not None:
                drawn.append(d)
        for i, occ in enumerate(sc.occluders):
            d = self._render_occluder(occ, i, cam)
            if d is not None:
                drawn.append(d)
        # Shadows go on the background before anybody is composited, so a shadow never
        # darkens another person.
        for d in drawn:
            if d.person >= 0:
                self._shadow(rgb, self._tracks[d.person], t, cam)

        obj = np.full((h, w), -1, np.int32)
        part = np.zeros((h, w), np.uint8)
        drawn.sort(key=lambda d: (d.depth, d.order))  # far to near: painter's z-buffer
        for k, d in enumerate(drawn):
            hh, ww = d.codes.shape
            m = d.codes > 0
            sl = (slice(d.y0, d.y0 + hh), slice(d.x0, d.x0 + ww))
            rgb[sl][m] = d.rgb[m]
            obj[sl][m] = k
            part[sl][m] = d.codes[m]

        kps, boxes, ids = [], [], []
        for k, d in enumerate(drawn):
            if d.person < 0:
                continue
            assert d.kp is not None and d.hidden is not None and d.own is not None
            px = np.floor(d.kp).astype(np.int64)
            inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
            vis = np.full(NUM_KEYPOINTS, VIS_ABSENT, np.float32)
            pu, pv = px[inside, 0], px[inside, 1]
            layer = _LAYER_OF[part[pv, pu]].astype(np.int64)
            mine = (obj[pv, pu] == k) & (((d.own[inside] >> layer) & 1) == 1) & ~d.hidden[inside]
            vis[inside] = np.where(mine, VIS_VISIBLE, VIS_OCCLUDED)
            rows = np.flatnonzero(d.codes.any(axis=1))
            cols = np.flatnonzero(d.codes.any(axis=0))
            boxes.append((d.x0 + cols[0], d.y0 + rows[0], d.x0 + cols[-1] + 1, d.y0 + rows[-1] + 1))
            kps.append(np.concatenate([d.kp, vis[:, None]], axis=1))
            ids.append(d.person)

        order = np.argsort(ids, kind="stable")
        n = len(ids)
        poses = FramePoses(
            frame_index=t,
            timestamp=t / sc.fps,
            width=w,
            height=h,
            keypoints=np.asarray(kps, np.float32).reshape(n, NUM_KEYPOINTS, 3)[order],
            boxes=np.asarray(boxes, np.float32).reshape(n, 4)[order],
            scores=np.ones(n, np.float32),
            track_ids=np.asarray(ids, np.int64).reshape(n)[order],
        )
        lut = np.array([d.person if d.person >= 0 else -2 for d in drawn] + [-1], np.int32)
        instance_ids = lut[obj]  # obj == -1 indexes the trailing -1 (background)
        if self._noise:
            plus, minus = self._noise[t % len(self._noise)]
            rgb = cv2.subtract(cv2.add(rgb, plus), minus)
        return RenderedFrame(rgb=rgb, poses=poses, instance_ids=instance_ids)

    def _person_state(self, track: _Track, t: int) -> tuple[float, float, float, float, float, float]:
        """(foot_x, foot_y) world, height (world px), yaw (rad), gait phase and amplitude."""
        spec, persp, fps = track.spec, self._persp, self._scene.fps
        x = float(np.interp(t, track.ts, track.xs))
        y = float(np.interp(t, track.ts, track.ys))
        height = persp.person_height(y) * spec.body_scale
        # Speed and heading over a short window: smooth, and still a closed form of t.
        win = max(1.0, 0.25 * fps)
        d0 = float(np.interp(t - win, track.ts, track.dist))
        d1 = float(np.interp(t + win, track.ts, track.dist))
        speed = (d1 - d0) * fps / (2.0 * win)  # m/s
        amp = min(1.0, speed / (track.gait.speed * spec.body_scale))
        dist = float(np.interp(t, track.ts, track.dist))
        phase = dist / (track.gait.stride * spec.body_scale) + spec.phase
        if spec.yaw_deg is not None:
            yaw = math.radians(spec.yaw_deg)
        else:
            face = math.radians(spec.facing_deg)
            vx, vz = math.sin(face) * (1.0 - amp), math.cos(face) * (1.0 - amp)
            if d1 - d0 > 1e-6:
                xa, xb = np.interp((t - win, t + win), track.ts, track.xs)
                ya, yb = np.interp((t - win, t + win), track.ts, track.ys)
                dx = (xb - xa) / persp.pixels_per_metre(0.5 * (ya + yb))
                toward = persp.depth(ya) - persp.depth(yb)
                norm = math.hypot(dx, toward)
                if norm > 1e-9:
                    vx += amp * dx / norm
                    vz += amp * toward / norm
            yaw = math.atan2(vx, vz) if (abs(vx) + abs(vz)) > 1e-9 else face
        return x, y, height, yaw, phase, amp

    def _render_person(self, track: _Track, t: int, cam: tuple[float, float, float]) -> _Drawn | None:
        sc = self._scene
        spec = track.spec
        cx, cy, zoom = cam
        wx, wy, height, yaw, phase, amp = self._person_state(track, t)
        idle = (track.index * 0.618) % 1.0
        pose = _pose3d(spec.motion, phase, amp, t / sc.fps, spec.build, spec.wave_hand == "left", idle)
        fu = (wx - cx) * zoom + sc.width / 2
        fv = (wy - cy) * zoom + sc.height / 2
        s = height * zoom  # image pixels per body height
        cyaw, syaw = math.cos(yaw), math.sin(yaw)

        def proj(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            lat = p[..., 0] * cyaw + p[..., 2] * syaw
            tc = -p[..., 0] * syaw + p[..., 2] * cyaw  # towards the camera
            return np.stack([fu + s * lat, fv - s * p[..., 1]], axis=-1), tc

        kp2, kp_tc = proj(pose.kp)
        neck2, _ = proj(pose.neck)
        head2, head_tc = proj(pose.head)
        hands2, _ = proj(pose.hands)
        toes2, _ = proj(pose.toes)
        shirt2, _ = proj(pose.shirt)
        pelvis2, _ = proj(pose.pelvis)

        pts = np.concatenate([kp2, neck2[None], head2[None], hands2, toes2, shirt2, pelvis2])
        # Widest reach beyond the points above: thigh radius (scales with build) or hair.
        pad = s * (0.08 + 0.05 * spec.build) + 3.0
        x0 = max(0, int(math.floor(pts[:, 0].min() - pad)))
        x1 = min(sc.width, int(math.ceil(pts[:, 0].max() + pad)))
        y0 = max(0, int(math.floor(pts[:, 1].min() - pad)))
        y1 = min(sc.height, int(math.ceil(pts[:, 1].max() + pad)))
        if x1 <= x0 or y1 <= y0:
            return None
        codes = np.zeros((y1 - y0, x1 - x0), np.uint8)
        # cv2 coordinates: pixel centres at integers, relative to the crop.
        org = np.array([x0 + 0.5, y0 + 0.5])
        b = spec.build

        # Geometric self-occlusion of face points, and far-side shoulders / hips.
        hidden = np.zeros(NUM_KEYPOINTS, bool)
        for k in _FACE_KPS:
            hidden[k] = (kp_tc[k] - head_tc) < _FACE_HIDDEN * _HEAD_RX
        own = _OWN.copy()
        for pair, hw in (
            ((_K["left_shoulder"], _K["right_shoulder"]), _SHOULDER_HW),
            ((_K["left_hip"], _K["right_hip"]), _HIP_HW),
        ):
            mid = 0.5 * (kp_tc[pair[0]] + kp_tc[pair[1]])
            for k in pair:  # turned more than ~45 degrees away: behind the torso
                if kp_tc[k] - mid < -0.7 * hw * b:
                    own[k] &= ~(1 << _L_TORSO)

        def c(p: np.ndarray) -> np.ndarray:
            return p - org

        layers: list[tuple[float, int]] = []
        layers.append((float(np.mean(kp_tc[[_K["left_shoulder"], _K["right_shoulder"]]])), _L_TORSO))
        layers.append((float(head_tc) + 0.05, _L_HEAD))
        for layer, names, bias in (
            (_L_ARM_L, ("left_shoulder", "left_elbow", "left_wrist"), 0.0),
            (_L_ARM_R, ("right_shoulder", "right_elbow", "right_wrist"), 0.0),
            (_L_LEG_L, ("left_hip", "left_knee", "left_ankle"), -0.03),
            (_L_LEG_R, ("right_hip", "right_knee", "right_ankle"), -0.03),
        ):
            layers.append((float(np.mean(kp_tc[[_K[n] for n in names]])) + bias, layer))
        layers.sort()

        face_last = cyaw > -0.2
        for _, layer in layers:
            if layer == _L_TORSO:
                _capsule(codes, c(neck2), c(head2), _R_NECK * s * b, _R_NECK * s * b, _P_NECK)
                _hull(codes, c(pelvis2), _P_PELVIS)
                _hull(codes, c(shirt2), _P_SHIRT)
            elif layer == _L_HEAD:
                hair_c, _ = proj(pose.head + np.array([0.0, 0.22 * _HEAD_RY, -0.3 * _HEAD_RX]))
                face_c, _ = proj(pose.head + np.array([0.0, -0.08 * _HEAD_RY, 0.25 * _HEAD_RX]))
                hair = (c(hair_c), 1.02 * _HEAD_RX * s, 0.86 * _HEAD_RY * s)
                face = (c(face_c), 0.84 * _HEAD_RX * s, 0.93 * _HEAD_RY * s)
                tilt = -math.degrees(pose.lean * syaw)
                first, second = (hair, face) if face_last else (face, hair)
                _ellipse(codes, *first, tilt, _P_HAIR if first is hair else _P_FACE)
                _ellipse(codes, *second, tilt, _P_HAIR if second is hair else _P_FACE)
                eye_r = max(0.0, 0.11 * _HEAD_RX * s)
                for k in _FACE_KPS:
                    if hidden[k]:
                        continue
                    if _HOME_PART[k] == _P_EYE and eye_r >= 0.8:
                        cv2.circle(
                            codes, _fp(c(kp2[k])), int(round(eye_r * _ONE)), _P_EYE, -1, cv2.LINE_8, _SHIFT
                        )
            elif layer in (_L_ARM_L, _L_ARM_R):
                left = layer == _L_ARM_L
                sh, el, wr = (
                    (kp2[_K["left_shoulder"]], kp2[_K["left_elbow"]], kp2[_K["left_wrist"]])
                    if left
                    else (kp2[_K["right_shoulder"]], kp2[_K["right_elbow"]], kp2[_K["right_wrist"]])
                )
                hand = hands2[0 if left else 1]
                pu, pf, ph = (_P_UARM_L, _P_FARM_L, _P_HAND_L) if left else (_P_UARM_R, _P_FARM_R, _P_HAND_R)
                _capsule(codes, c(sh), c(el), _R_UPPER[0] * s * b, _R_UPPER[1] * s * b, pu)
                _capsule(codes, c(el), c(wr), _R_FORE[0] * s * b, _R_FORE[1] * s * b, pf)
                _capsule(codes, c(wr), c(hand), _R_HAND * s * b * 0.8, _R_HAND * s * b, ph)
            else:
                left = layer == _L_LEG_L
                hp, kn, an = (
                    (kp2[_K["left_hip"]], kp2[_K["left_knee"]], kp2[_K["left_ankle"]])
                    if left
                    else (kp2[_K["right_hip"]], kp2[_K["right_knee"]], kp2[_K["right_ankle"]])
                )
                toe = toes2[0 if left else 1]
                pt, ps, pf = (
                    (_P_THIGH_L, _P_SHIN_L, _P_SHOE_L) if left else (_P_THIGH_R, _P_SHIN_R, _P_SHOE_R)
                )
                _capsule(codes, c(hp), c(kn), _R_THIGH[0] * s * b, _R_THIGH[1] * s * b, pt)
                _capsule(codes, c(kn), c(an), _R_SHIN[0] * s * b, _R_SHIN[1] * s * b, ps)
                _capsule(codes, c(an), c(toe), _R_SHOE * s * b, _R_SHOE * s * b, pf)
            # Each keypoint's own pixel carries its own part, whatever the raster did (a
            # face point on the far side of the head lies on the back of the head: hair).
            for k in _LAYER_KPS[layer]:
                u = int(math.floor(kp2[k, 0])) - x0
                v = int(math.floor(kp2[k, 1])) - y0
                if 0 <= v < codes.shape[0] and 0 <= u < codes.shape[1]:
                    codes[v, u] = _P_HAIR if hidden[k] else _HOME_PART[k]

        if not codes.any():
            return None
        rgb = self._shade_person(track, codes, x0, y0, fu, fv, s, kp_tc)
        return _Drawn(
            depth=wy, order=track.index, x0=x0, y0=y0, codes=codes, rgb=rgb,
            person=track.index, kp=kp2, hidden=hidden, own=own,
        )  # fmt: skip

    def _shade_person(
        self,
        track: _Track,
        codes: np.ndarray,
        x0: int,
        y0: int,
        fu: float,
        fv: float,
        s: float,
        kp_tc: np.ndarray,
    ) -> np.ndarray:
        """(h, w, 3) uint8 colours of a person's label crop: clothes, patterns, light, outline."""
        app = track.appearance
        lut = track.lut.copy()
        # Far-side limbs a little darker, so overlapping limbs of one colour stay apart.
        far_arm = _L_ARM_L if kp_tc[_K["left_elbow"]] < kp_tc[_K["right_elbow"]] else _L_ARM_R
        far_leg = _L_LEG_L if kp_tc[_K["left_knee"]] < kp_tc[_K["right_knee"]] else _L_LEG_R
        for layer in (far_arm, far_leg):
            lut[_LAYER_OF[:_N_CODES] == layer] *= 0.82
        col = lut[codes]  # (h, w, 3) float32
        hh, ww = codes.shape
        rows = (np.arange(y0, y0 + hh, dtype=np.float32) + 0.5 - fv) / s  # body heights, down +
        colsf = (np.arange(x0, x0 + ww, dtype=np.float32) + 0.5 - fu) / s
        shirt = np.isin(codes, track.shirt_codes)
        if app.pattern in ("stripes", "checks") and shirt.any():
            period = 0.045
            band = np.floor(rows / period).astype(np.int64)[:, None]
            if app.pattern == "checks":
                band = band + np.floor(colsf / period).astype(np.int64)[None, :]
            alt = shirt & (band % 2 == 1)
            # Keep the far-side darkening: scale the alt colour like the base colour.
            col[alt] = lut[codes[alt]] * (
                np.asarray(app.shirt_alt, np.float32) / np.maximum(np.asarray(app.shirt, np.float32), 1.0)
            )
        tile = self._tile
        ti = (np.arange(y0, y0 + hh) - int(round(fv)) + 17 * track.index) % tile.shape[0]
        tj = (np.arange(x0, x0 + ww) - int(round(fu)) + 29 * track.index) % tile.shape[1]
        tex = tile[ti[:, None], tj[None, :]]
        cloth_gain = np.where(shirt, 0.2 if app.pattern == "noise" else 0.05, 0.0)
        cloth_gain = np.where(np.isin(codes, track.trouser_codes), 0.09, cloth_gain)
        col *= (1.0 + cloth_gain * tex)[..., None]
        # Soft light from above.
        col *= (1.06 + 0.14 * np.clip(rows, -1.2, 0.0))[:, None, None]
        _outline(col, codes)
        return np.clip(col, 0, 255).astype(np.uint8)

    def _render_occluder(
        self, occ: OccluderSpec, index: int, cam: tuple[float, float, float]
    ) -> _Drawn | None:
        sc = self._scene
        cx, cy, zoom = cam
        top_world = (
            occ.y_base - occ.height
            if occ.height is not None
            else min(-10.0 * sc.height, self._bg_origin[1] - 10.0)
        )
        u0 = (occ.x - occ.width / 2 - cx) * zoom + sc.width / 2
        u1 = (occ.x + occ.width / 2 - cx) * zoom + sc.width / 2
        v0 = (top_world - cy) * zoom + sc.height / 2
        v1 = (occ.y_base - cy) * zoom + sc.height / 2
        x0, x1 = max(0, int(math.floor(u0))), min(sc.width, int(math.ceil(u1)) + 1)
        y0, y1 = max(0, int(math.floor(v0))), min(sc.height, int(math.ceil(v1)) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        codes = np.zeros((y1 - y0, x1 - x0), np.uint8)
        org = np.array([x0 + 0.5, y0 + 0.5])
        v0c = max(v0, y0 - 4.0)  # keep fixed-point coordinates small
        quad = np.array([[u0, v0c], [u1, v0c], [u1, v1], [u0, v1]]) - org
        cv2.fillConvexPoly(codes, np.round(quad * _ONE).astype(np.int32), _P_OCCLUDER, cv2.LINE_8, _SHIFT)
        if not codes.any():
            return None
        hh, ww = codes.shape
        # World coordinates of the crop's pixel centres: textures stick to the object.
        xw = (np.arange(x0, x0 + ww) + 0.5 - sc.width / 2) / zoom + cx
        yw = (np.arange(y0, y0 + hh) + 0.5 - sc.height / 2) / zoom + cy
        across = np.clip((xw - occ.x) / (occ.width / 2), -1, 1)
        shade = 0.72 + 0.33 * np.sqrt(np.clip(1.0 - across**2, 0, 1))  # a rounded pillar lit from the front
        col = np.empty((hh, ww, 3), np.float32)
        col[:] = np.asarray(occ.color, np.float32)
        col *= shade[None, :, None]
        if occ.texture == "noise":
            tile = self._tile
            tex = tile[
                (np.floor(yw).astype(np.int64) % 64)[:, None], (np.floor(xw).astype(np.int64) % 64)[None, :]
            ]
            col *= (1.0 + 0.12 * tex)[..., None]
        elif occ.texture == "bricks":
            bh = max(4.0, occ.width / 7.0)
            bw = 2.3 * bh
            row = np.floor(yw / bh)
            fy = yw / bh - row
            offset = (row % 2) * 0.5 * bw
            fx = ((xw[None, :] - occ.x + offset[:, None]) / bw) % 1.0
            mortar = (fy[:, None] < 1.3 / bh) | (fx < 1.3 / bw)
            col[mortar] *= 0.6
        elif occ.texture == "stripes":
            period = max(4.0, occ.width / 5.0)
            band = (np.floor((xw - occ.x) / period) % 2 == 1)[None, :].repeat(hh, axis=0)
            col[band] *= 0.8
        _outline(col, codes)
        return _Drawn(
            depth=occ.y_base,
            order=len(self._tracks) + index,
            x0=x0,
            y0=y0,
            codes=codes,
            rgb=np.clip(col, 0, 255).astype(np.uint8),
        )

    def _shadow(self, rgb: np.ndarray, track: _Track, t: int, cam: tuple[float, float, float]) -> None:
        sc = self._scene
        cx, cy, zoom = cam
        x = float(np.interp(t, track.ts, track.xs))
        y = float(np.interp(t, track.ts, track.ys))
        s = self._persp.person_height(y) * track.spec.body_scale * zoom
        fu = (x - cx) * zoom + sc.width / 2
        fv = (y - cy) * zoom + sc.height / 2
        ax, ay = 0.2 * s, 0.035 * s
        x0, x1 = max(0, int(fu - ax) - 1), min(sc.width, int(fu + ax) + 2)
        y0, y1 = max(0, int(fv - ay) - 1), min(sc.height, int(fv + ay) + 2)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        centre = _fp(np.array([fu - x0 - 0.5, fv - y0 - 0.5]))
        cv2.ellipse(mask, centre, (int(ax * _ONE), int(ay * _ONE)), 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
        region = rgb[y0:y1, x0:x1]
        region[:] = (region * (1.0 - 0.35 * mask[..., None] / 255.0)).astype(np.uint8)

    # ---- background -------------------------------------------------------------------

    def _make_background(self) -> tuple[np.ndarray, tuple[int, int]]:
        """The world backdrop covering every view of the clip, and its world origin."""
        sc = self._scene
        xs0, ys0, xs1, ys1 = 0.0, 0.0, float(sc.width), float(sc.height)
        if sc.camera.keys:
            for t in range(sc.frames):
                px, py, z = sc.camera.at(t)
                xs0 = min(xs0, sc.width / 2 + px - sc.width / (2 * z))
                xs1 = max(xs1, sc.width / 2 + px + sc.width / (2 * z))
                ys0 = min(ys0, sc.height / 2 + py - sc.height / (2 * z))
                ys1 = max(ys1, sc.height / 2 + py + sc.height / (2 * z))
        ox, oy = int(math.floor(xs0)) - 4, int(math.floor(ys0)) - 4
        bw, bh = int(math.ceil(xs1)) + 4 - ox, int(math.ceil(ys1)) + 4 - oy
        canvas = _draw_background(sc.background, bw, bh, ox, oy, sc.width, sc.height, self._persp)
        return canvas, (ox, oy)

    def _background_view(self, cam: tuple[float, float, float]) -> np.ndarray:
        sc = self._scene
        cx, cy, zoom = cam
        ox, oy = self._bg_origin
        # Canvas pixel index of image pixel index (i, j): X = (i + 0.5 - W/2) / zoom + cx.
        tx = (0.5 - sc.width / 2) / zoom + cx - ox - 0.5
        ty = (0.5 - sc.height / 2) / zoom + cy - oy - 0.5
        if zoom == 1.0 and tx == int(tx) and ty == int(ty):
            return self._bg[int(ty) : int(ty) + sc.height, int(tx) : int(tx) + sc.width].copy()
        m = np.array([[1.0 / zoom, 0.0, tx], [0.0, 1.0 / zoom, ty]])
        return cv2.warpAffine(
            self._bg, m, (sc.width, sc.height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )  # fmt: skip


# --------------------------------------------------------------------------------------
# Raster helpers (label crops are uint8 part codes; coordinates are cv2's: pixel centres
# at integers)
# --------------------------------------------------------------------------------------


def _fp(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def _capsule(img: np.ndarray, p1: np.ndarray, p2: np.ndarray, r1: float, r2: float, code: int) -> None:
    """A tapered limb: round ends of radius r1 at p1 and r2 at p2 joined by a trapezoid."""
    r1, r2 = max(r1, 0.6), max(r2, 0.6)
    d = p2 - p1
    length = math.hypot(float(d[0]), float(d[1]))
    if length > 1e-3:
        n = np.array([-d[1], d[0]]) / length
        quad = np.array([p1 + n * r1, p2 + n * r2, p2 - n * r2, p1 - n * r1])
        cv2.fillConvexPoly(img, np.round(quad * _ONE).astype(np.int32), code, cv2.LINE_8, _SHIFT)
    cv2.circle(img, _fp(p1), int(round(r1 * _ONE)), code, -1, cv2.LINE_8, _SHIFT)
    cv2.circle(img, _fp(p2), int(round(r2 * _ONE)), code, -1, cv2.LINE_8, _SHIFT)


def _hull(img: np.ndarray, pts: np.ndarray, code: int) -> None:
    fixed = np.round(pts * _ONE).astype(np.int32)
    cv2.fillConvexPoly(img, cv2.convexHull(fixed), code, cv2.LINE_8, _SHIFT)


def _ellipse(img: np.ndarray, centre: np.ndarray, ax: float, ay: float, angle: float, code: int) -> None:
    axes = (max(1, int(round(ax * _ONE))), max(1, int(round(ay * _ONE))))
    cv2.ellipse(img, _fp(centre), axes, angle, 0, 360, code, -1, cv2.LINE_8, _SHIFT)


def _outline(col: np.ndarray, codes: np.ndarray) -> None:
    """Darken pixels on the border between layers (and the silhouette), in place."""
    lm = _LAYER_OF[codes]
    edge = np.zeros(codes.shape, bool)
    dh = lm[:, 1:] != lm[:, :-1]
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    dv = lm[1:] != lm[:-1]
    edge[1:] |= dv
    edge[:-1] |= dv
    edge &= codes > 0
    col[edge] *= 0.62


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float, wrap: bool = False) -> np.ndarray:
    """(h, w) float32 smooth noise in about [-1, 1] with blobs of ``cell`` pixels."""
    if wrap:  # blur a 3x3 tiling and keep the middle: the tile repeats seamlessly
        base = rng.standard_normal((h, w)).astype(np.float32)
        out = cv2.GaussianBlur(np.tile(base, (3, 3)), (0, 0), cell / 2.0)[h : 2 * h, w : 2 * w]
    else:
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
        base = rng.standard_normal((gh, gw)).astype(np.float32)
        out = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    out = out - out.mean()
    return (out / (3.0 * out.std() + 1e-6)).clip(-1, 1).astype(np.float32)


def _draw_background(
    spec: BackgroundSpec, bw: int, bh: int, ox: int, oy: int, width: int, height: int, persp: Perspective
) -> np.ndarray:
    """A (bh, bw, 3) uint8 canvas whose pixel (i, j) covers world [ox + i, ox + i + 1) x ..."""
    rng = np.random.default_rng(spec.seed)
    a = np.asarray(spec.color_a, np.float32)
    b = np.asarray(spec.color_b, np.float32)
    yw = np.arange(bh, dtype=np.float32) + oy + 0.5  # world rows
    xw = np.arange(bw, dtype=np.float32) + ox + 0.5
    horizon = persp.horizon_y
    img = np.empty((bh, bw, 3), np.float32)
    if spec.style == "room":
        floor_y = horizon + 0.3 * (height - horizon)
        t = np.clip((yw - (floor_y - height)) / max(height, 1), 0, 1)
        wall = a[None, :] * (1.08 - 0.18 * t[:, None])
        img[:] = wall[:, None, :]
        if rng.uniform() < 0.6:  # wallpaper stripes
            period = rng.uniform(12, 40)
            stripe = (np.floor(xw / period) % 2 == 1).astype(np.float32)
            img *= (1.0 - 0.06 * stripe)[None, :, None]
        for _ in range(int(rng.integers(2, 6))):  # doors, posters, windows
            rw = rng.uniform(0.06, 0.2) * width
            rh = rng.uniform(0.1, 0.35) * height
            rx = rng.uniform(xw[0], xw[-1])
            ry = floor_y - rh - rng.uniform(0, 0.25) * height
            col = _hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.7), rng.uniform(0.25, 0.9))
            p1 = (int(rx - ox), int(ry - oy))
            p2 = (int(rx + rw - ox), int(ry + rh - oy))
            cv2.rectangle(img, p1, p2, tuple(float(v) for v in col), -1)
            cv2.rectangle(img, p1, p2, tuple(float(v) * 0.5 for v in col), 2)
        floor_rows = yw >= floor_y
        depth = np.clip((yw - floor_y) / max(height - floor_y, 1), 0, 1.5)
        img[floor_rows] = (b[None, :] * (0.8 + 0.3 * depth[floor_rows, None]))[:, None, :]
        fy = int(round(floor_y - oy))
        # Tiles converge to the vanishing point at the horizon, as the people's scaling does.
        vp = (width / 2.0 - ox, horizon - oy)
        line = tuple(float(v) * 0.75 for v in b)
        tile_w = rng.uniform(0.06, 0.14) * width
        for k in range(-40, 41):
            xb = width / 2.0 + k * tile_w - ox
            bottom = (vp[0] + (xb - vp[0]) * (bh - vp[1]) / max(fy - vp[1], 1), bh)
            start = (vp[0] + (xb - vp[0]), float(fy))
            cv2.line(
                img, (int(start[0]), int(start[1])), (int(bottom[0]), int(bottom[1])), line, 1, cv2.LINE_AA
            )
        z = 1.0
        while True:
            yrow = horizon + (floor_y - horizon) / z
            if yrow < floor_y + 2:
                z -= 0.12
                if z <= 0.05:
                    break
                continue
            if yrow - oy > bh:
                break
            cv2.line(img, (0, int(yrow - oy)), (bw, int(yrow - oy)), line, 1, cv2.LINE_AA)
            z -= 0.12
            if z <= 0.05:
                break
        cv2.rectangle(img, (0, fy - 3), (bw, fy + 2), tuple(float(v) * 0.45 for v in a), -1)  # skirting
    elif spec.style == "outdoor":
        t = np.clip((yw - (horizon - height)) / max(height, 1), 0, 1)
        sky = a[None, :] * (0.85 + 0.2 * t[:, None]) + 20.0 * t[:, None]
        img[:] = sky[:, None, :]
        x = float(xw[0])
        while x < xw[-1]:  # skyline / trees on the horizon
            bwid = rng.uniform(0.03, 0.12) * width
            bht = rng.uniform(0.02, 0.16) * height
            tone = rng.uniform(0.35, 0.7)
            col = tuple(float(v) for v in (a * tone * 0.8 + b * 0.2))
            cv2.rectangle(
                img,
                (int(x - ox), int(horizon - bht - oy)),
                (int(x + bwid - ox), int(horizon - oy) + 1),
                col,
                -1,
            )
            x += bwid * rng.uniform(0.6, 1.1)
        ground = yw >= horizon
        depth = np.clip((yw - horizon) / max(height - horizon, 1), 0, 1.5)
        img[ground] = (b[None, :] * (0.7 + 0.45 * depth[ground, None]))[:, None, :]
        grass = _smooth_noise(rng, bh, bw, 3.0)
        img[ground] *= (1.0 + 0.12 * grass[ground])[..., None]
    elif spec.style == "noise":
        n1 = _smooth_noise(rng, bh, bw, rng.uniform(40, 120))
        n2 = _smooth_noise(rng, bh, bw, rng.uniform(8, 20))
        mix = np.clip(0.5 + 0.5 * n1 + 0.2 * n2, 0, 1)[..., None]
        img[:] = a * mix + b * (1.0 - mix)
    elif spec.style == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(14, 60)
        proj = xw[None, :] * math.cos(angle) + yw[:, None] * math.sin(angle)
        mix = (0.5 + 0.5 * np.sin(2 * math.pi * proj / period)) ** 3
        img[:] = a * mix[..., None] + b * (1.0 - mix[..., None])
    else:  # gradient
        angle = rng.uniform(0, 2 * math.pi)
        proj = (xw[None, :] - ox) * math.cos(angle) / max(bw, 1) + (yw[:, None] - oy) * math.sin(angle) / max(
            bh, 1
        )
        mix = np.clip(proj - proj.min(), 0, None)
        mix = mix / max(float(mix.max()), 1e-6)
        img[:] = a * mix[..., None] + b * (1.0 - mix[..., None])
    fine = _smooth_noise(rng, bh, bw, 1.5)
    img *= (1.0 + 0.04 * fine)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Scripted scenarios (tracker scenario tests, demos). Positions are fractions of the frame
# so they work at any size; each returns a plain SceneSpec that can be edited further
# with dataclasses.replace.
# --------------------------------------------------------------------------------------


def _scenario_base(width: int, height: int, fps: float, frames: int, **kw: object) -> SceneSpec:
    return SceneSpec(width=width, height=height, fps=fps, frames=frames, **kw)  # type: ignore[arg-type]


def _walk_px_per_frame(persp: Perspective, y: float, fps: float, speed_mps: float = 1.3) -> float:
    return speed_mps * persp.pixels_per_metre(y) / fps


def crossing_scene(width: int = 640, height: int = 480, frames: int = 100, fps: float = 25.0) -> SceneSpec:
    """Two people walk towards each other and cross mid-clip, person 1 nearer (in front).

    Person 0 (far, smaller) goes left to right, person 1 (near, larger) right to left;
    both are at ``x = width / 2`` at frame ``(frames - 1) / 2``.
    """
    persp = Perspective.for_frame(width, height)
    mid, t_mid = width / 2.0, (frames - 1) / 2.0
    people = []
    for i, (y, sign) in enumerate(((0.62 * height, 1.0), (0.9 * height, -1.0))):
        v = _walk_px_per_frame(persp, y, fps) * sign
        people.append(
            PersonSpec(
                path=((0.0, mid - v * t_mid, y), (float(frames - 1), mid + v * t_mid, y)),
                appearance=Appearance.random(np.random.default_rng(7 + i)),
                phase=0.3 * i,
            )
        )
    return _scenario_base(width, height, fps, frames, people=tuple(people), perspective=persp)


def occlusion_scene(
    width: int = 640, height: int = 480, frames: int = 100, fps: float = 25.0, hidden_frames: int = 20
) -> SceneSpec:
    """Person 0 walks behind a floor-to-ceiling pillar and is wholly hidden for about
    ``hidden_frames`` frames around the middle of the clip (then reappears on the other side)."""
    persp = Perspective.for_frame(width, height)
    y = 0.62 * height
    v = _walk_px_per_frame(persp, y, fps)
    # The pillar must cover the person's widest stride (about 0.55 body heights) plus the
    # distance walked while hidden.
    pillar_w = 0.6 * persp.person_height(y) + v * hidden_frames
    mid, t_mid = width / 2.0, (frames - 1) / 2.0
    walker = PersonSpec(
        path=((0.0, mid - v * t_mid, y), (float(frames - 1), mid + v * t_mid, y)),
        appearance=Appearance.random(np.random.default_rng(11)),
    )
    pillar = OccluderSpec(
        x=mid, y_base=0.92 * height, width=pillar_w, color=(140, 135, 128), texture="bricks"
    )
    return _scenario_base(
        width, height, fps, frames, people=(walker,), occluders=(pillar,), perspective=persp
    )


def reentry_scene(width: int = 640, height: int = 480, frames: int = 150, fps: float = 25.0) -> SceneSpec:
    """Person 0 walks out of the right edge, turns round out of view and walks back in;
    person 1 stands waving at the left throughout."""
    persp = Perspective.for_frame(width, height)
    y = 0.8 * height
    v = _walk_px_per_frame(persp, y, fps, 1.5)
    turn_x = width + 0.5 * persp.person_height(y)  # comfortably outside the frame
    start_x = 0.55 * width
    t_turn = (turn_x - start_x) / v
    # Stay out for a while so the track is really lost, then come back.
    back = t_turn + 0.25 * frames
    walker = PersonSpec(
        path=((0.0, start_x, y), (t_turn, turn_x, y), (back, turn_x, y), (back + t_turn, start_x, y)),
        appearance=Appearance.random(np.random.default_rng(13)),
        facing_deg=-90.0,
    )
    waver = PersonSpec(
        path=((0.0, 0.2 * width, 0.75 * height),),
        motion="wave",
        appearance=Appearance.random(np.random.default_rng(17)),
    )
    return _scenario_base(width, height, fps, frames, people=(walker, waver), perspective=persp)


def zoom_scene(
    width: int = 640, height: int = 480, frames: int = 100, fps: float = 25.0, zoom: float = 1.6
) -> SceneSpec:
    """Three people (standing, waving, walking slowly) while the camera zooms in to
    ``zoom`` and pans right over the first half, then holds."""
    persp = Perspective.for_frame(width, height)
    outfits = [Appearance.random(np.random.default_rng(19 + i)) for i in range(3)]
    people = (
        PersonSpec(
            path=((0.0, 0.35 * width, 0.7 * height),), motion="stand", facing_deg=20.0, appearance=outfits[0]
        ),
        PersonSpec(
            path=((0.0, 0.6 * width, 0.66 * height),), motion="wave", facing_deg=-15.0, appearance=outfits[1]
        ),
        PersonSpec(
            path=((0.0, 0.2 * width, 0.85 * height), (float(frames), 0.5 * width, 0.85 * height)),
            appearance=outfits[2],
        ),
    )
    camera = CameraSpec(keys=((0.0, 0.0, 0.0, 1.0), (frames / 2.0, 0.06 * width, 0.05 * height, zoom)))
    return _scenario_base(width, height, fps, frames, people=people, camera=camera, perspective=persp)


# --------------------------------------------------------------------------------------
# Writing a clip
# --------------------------------------------------------------------------------------


def write_synthetic_clip(out_dir: Path, config: SyntheticConfig, progress: bool = False) -> tuple[Path, Path]:
    """Render ``config``'s clip to ``out_dir/video.mp4`` (H.264) and ``out_dir/gt.jsonl``.

    The JSON Lines file holds one ``FramePoses`` per frame (also frames with nobody in
    them), with visibility as the keypoint score. Returns ``(video_path, gt_path)``.
    """
    from posestream.models.data.video import VideoWriter  # PyAV loads only when a clip is written to a file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path, gt_path = out_dir / "video.mp4", out_dir / "gt.jsonl"
    clip = SyntheticClip.from_config(config)
    with (
        VideoWriter(video_path, config.width, config.height, config.fps, crf=config.crf) as writer,
        open(gt_path, "w", encoding="utf-8") as gt,
    ):
        for t in tqdm(range(config.frames), desc="synth", unit="frame", disable=not progress):
            rgb, poses = clip.render(t)
            writer.write(rgb)
            gt.write(dumps_frame(poses) + "\n")
    log.info("wrote %s and %s (%d frames, seed %d)", video_path, gt_path, config.frames, config.seed)
    return video_path, gt_path


__all__ = [
    "BACKGROUND_STYLES",
    "MOTIONS",
    "OCCLUDER_TEXTURES",
    "PATTERNS",
    "Appearance",
    "BackgroundSpec",
    "CameraSpec",
    "OccluderSpec",
    "PersonSpec",
    "Perspective",
    "RenderedFrame",
    "SceneSpec",
    "SyntheticClip",
    "SyntheticConfig",
    "crossing_scene",
    "occlusion_scene",
    "random_scene",
    "reentry_scene",
    "write_synthetic_clip",
    "zoom_scene",
]
