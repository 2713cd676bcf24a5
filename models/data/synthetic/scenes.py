"""Random synthetic scenes: the scene a seed stands for."""

from __future__ import annotations

import math

import numpy as np

from posestream.models.data.synthetic.specs import (
    BACKGROUND_STYLES,
    MOTIONS,
    OCCLUDER_TEXTURES,
    Appearance,
    BackgroundSpec,
    CameraSpec,
    OccluderSpec,
    PersonSpec,
    Perspective,
    SceneSpec,
    SyntheticConfig,
    _hsv_to_rgb,
)

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
