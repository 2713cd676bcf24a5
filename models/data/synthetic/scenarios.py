"""Scripted synthetic scenarios (tracker scenario tests, demos).

Positions are fractions of the frame so they work at any size; each returns a plain
``SceneSpec`` that can be edited further with ``dataclasses.replace``.
"""

from __future__ import annotations

import numpy as np

from posestream.models.data.synthetic.specs import (
    Appearance,
    CameraSpec,
    OccluderSpec,
    PersonSpec,
    Perspective,
    SceneSpec,
)


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
