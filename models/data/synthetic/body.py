"""Body model of the synthetic people.

A 3D stick body in units of body height (x = the person's left, y = up from the ground,
z = forward), posed analytically, turned by its yaw and projected orthographically (people
are small against their distance to the camera). Also the part codes drawn into the label
crops and the layer each part belongs to, which visibility is read from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from posestream.models.skeleton import KEYPOINT_INDEX, NUM_KEYPOINTS

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
