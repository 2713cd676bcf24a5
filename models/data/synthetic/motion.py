"""Per-person motion along the path, analytic in the frame index ``t``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from posestream.models.data.synthetic.body import (
    _N_CODES,
    _P_EYE,
    _P_FACE,
    _P_FACEDOT,
    _P_FARM_L,
    _P_FARM_R,
    _P_HAIR,
    _P_HAND_L,
    _P_HAND_R,
    _P_NECK,
    _P_PELVIS,
    _P_SHIN_L,
    _P_SHIN_R,
    _P_SHIRT,
    _P_SHOE_L,
    _P_SHOE_R,
    _P_THIGH_L,
    _P_THIGH_R,
    _P_UARM_L,
    _P_UARM_R,
    _RUN,
    _WALK,
    _Gait,
)
from posestream.models.data.synthetic.specs import Appearance, PersonSpec, Perspective


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
