"""Rendering a synthetic scene frame by frame: compositing, shading and exact visibility."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from posestream.models.data.synthetic.body import (
    _FACE_HIDDEN,
    _FACE_KPS,
    _HEAD_RX,
    _HEAD_RY,
    _HIP_HW,
    _HOME_PART,
    _K,
    _L_ARM_L,
    _L_ARM_R,
    _L_HEAD,
    _L_LEG_L,
    _L_LEG_R,
    _L_TORSO,
    _LAYER_KPS,
    _LAYER_OF,
    _N_CODES,
    _OWN,
    _P_EYE,
    _P_FACE,
    _P_FARM_L,
    _P_FARM_R,
    _P_HAIR,
    _P_HAND_L,
    _P_HAND_R,
    _P_NECK,
    _P_OCCLUDER,
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
    _R_FORE,
    _R_HAND,
    _R_NECK,
    _R_SHIN,
    _R_SHOE,
    _R_THIGH,
    _R_UPPER,
    _SHOULDER_HW,
    _pose3d,
)
from posestream.models.data.synthetic.motion import _make_track, _Track
from posestream.models.data.synthetic.raster import (
    _ONE,
    _SHIFT,
    _capsule,
    _draw_background,
    _ellipse,
    _fp,
    _hull,
    _outline,
    _smooth_noise,
)
from posestream.models.data.synthetic.scenes import random_scene
from posestream.models.data.synthetic.specs import OccluderSpec, SceneSpec, SyntheticConfig
from posestream.models.poses import FramePoses
from posestream.models.skeleton import NUM_KEYPOINTS, VIS_ABSENT, VIS_OCCLUDED, VIS_VISIBLE


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
