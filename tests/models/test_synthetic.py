"""The synthetic video generator: determinism, scripted scenarios, exact visibility, files, CLI."""

import numpy as np
import pytest

from posestream.models.data.draw import draw_poses, track_color
from posestream.models.data.synthetic import (
    CameraSpec,
    OccluderSpec,
    PersonSpec,
    Perspective,
    SceneSpec,
    SyntheticClip,
    SyntheticConfig,
    crossing_scene,
    occlusion_scene,
    random_scene,
    reentry_scene,
    write_synthetic_clip,
    zoom_scene,
)
from posestream.models.data.video import iter_video_frames, probe_video
from posestream.models.poses import read_jsonl
from posestream.models.skeleton import VIS_ABSENT, VIS_OCCLUDED, VIS_VISIBLE

W, H = 320, 240
SMALL = {"width": 192, "height": 144}


def _scene(people=(), **kw):
    kw.setdefault("sensor_noise", 0.0)
    return SceneSpec(width=W, height=H, frames=kw.pop("frames", 61), people=tuple(people), **kw)


def _person_rows(frame, track_id):
    rows = np.flatnonzero(frame.track_ids == track_id)
    assert len(rows) <= 1
    return rows


def _kp(frame, track_id):
    rows = _person_rows(frame, track_id)
    assert len(rows) == 1, f"track {track_id} not in frame {frame.frame_index}"
    return frame.keypoints[rows[0]]


def _pixels(kp):
    return np.floor(kp[:, :2]).astype(int)


# ---- determinism and random access --------------------------------------------------


def test_same_seed_same_pixels_and_gt_in_any_order():
    config = SyntheticConfig(seed=5, frames=30, people=3, **SMALL)
    a, b = SyntheticClip.from_config(config), SyntheticClip.from_config(config)
    assert random_scene(config) == random_scene(config)
    rgb_b17, gt_b17 = b.render(17)
    for t in (3, 17, 0):
        rgb_a, gt_a = a.render(t)
        rgb_b, gt_b = b.render(t)
        np.testing.assert_array_equal(rgb_a, rgb_b)
        np.testing.assert_array_equal(gt_a.keypoints, gt_b.keypoints)
        np.testing.assert_array_equal(gt_a.boxes, gt_b.boxes)
        np.testing.assert_array_equal(gt_a.track_ids, gt_b.track_ids)
    # random access: frame 17 does not depend on what was rendered before
    np.testing.assert_array_equal(a.render(17)[0], rgb_b17)
    np.testing.assert_array_equal(a.render(17)[1].keypoints, gt_b17.keypoints)
    other = SyntheticClip.from_config(SyntheticConfig(seed=6, frames=30, people=3, **SMALL))
    assert not np.array_equal(other.render(17)[0], rgb_b17)


def test_every_random_person_appears_and_gt_is_well_formed():
    config = SyntheticConfig(seed=11, frames=40, people=4, occluders=2, **SMALL)
    clip = SyntheticClip.from_config(config)
    seen = set()
    for t in range(config.frames):
        _, gt = clip.render(t)
        assert (gt.frame_index, gt.width, gt.height) == (t, 192, 144)
        assert gt.timestamp == pytest.approx(t / config.fps)
        assert set(np.unique(gt.keypoints[..., 2])) <= {0.0, 1.0, 2.0}
        assert np.all(gt.scores == 1.0)
        assert (
            np.all(gt.boxes[:, :2] >= 0) and np.all(gt.boxes[:, 2] <= 192) and np.all(gt.boxes[:, 3] <= 144)
        )
        assert np.all(gt.boxes[:, 2] > gt.boxes[:, 0]) and np.all(gt.boxes[:, 3] > gt.boxes[:, 1])
        assert list(gt.track_ids) == sorted(gt.track_ids)
        seen.update(int(i) for i in gt.track_ids)
    assert seen == set(range(config.people))


def test_render_outside_clip_raises():
    clip = SyntheticClip(_scene(frames=5))
    with pytest.raises(IndexError, match="outside the clip"):
        clip.render(5)


# ---- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frames": 0}, "frames must be >= 1"),
        ({"people": -1}, "people must be >= 0"),
        ({"width": 8}, "width and height"),
        ({"fps": 0}, "fps must be"),
        ({"seed": -3}, "seed must be a non-negative integer"),
        ({"min_person_height": 0.7, "max_person_height": 0.5}, "min_person_height < max_person_height"),
        ({"max_zoom": 0.5}, "max_zoom"),
        ({"occluders": -1}, "occluders must be >= 0"),
    ],
)
def test_config_validation_says_what_to_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


def test_spec_validation():
    with pytest.raises(ValueError, match="strictly increase"):
        PersonSpec(path=((10, 0, 200), (5, 10, 200)))
    with pytest.raises(ValueError, match="motion must be one of"):
        PersonSpec(path=((0, 0, 200),), motion="dance")
    with pytest.raises(ValueError, match="above the horizon"):
        _scene([PersonSpec(path=((0, 100, 10),))])
    with pytest.raises(ValueError, match="width must be > 0"):
        OccluderSpec(x=10, y_base=200, width=0)
    with pytest.raises(ValueError, match="strictly increase"):
        CameraSpec(keys=((5, 0, 0, 1), (5, 1, 0, 1)))


# ---- scripted scenarios -------------------------------------------------------------


def test_crossing_nearer_person_occludes_farther():
    far = PersonSpec(path=((0, 30, 150), (60, 290, 150)), yaw_deg=0)  # walks right, small
    near = PersonSpec(path=((0, 290, 225), (60, 30, 225)), yaw_deg=0)  # walks left, big
    clip = SyntheticClip(_scene([far, near]))
    for t in (0, 60):  # apart: everything seen
        _, gt = clip.render(t)
        assert np.all(_kp(gt, 0)[:, 2] == VIS_VISIBLE)
        assert np.all(_kp(gt, 1)[:, 2] == VIS_VISIBLE)
    frame = clip.render_full(30)  # both at x = 160
    kp_far, kp_near = _kp(frame.poses, 0), _kp(frame.poses, 1)
    assert np.all(kp_near[:, 2] == VIS_VISIBLE)
    occluded = kp_far[:, 2] == VIS_OCCLUDED
    assert 3 <= occluded.sum() < 17  # the far head sticks out above the near one's
    u, v = _pixels(kp_far).T
    owner = frame.instance_ids[v, u]
    np.testing.assert_array_equal(owner[occluded], 1)  # hidden exactly where the near body is drawn
    np.testing.assert_array_equal(owner[~occluded], 0)
    # depth order in the pixels: the near person is drawn over the far one
    assert (frame.instance_ids == 1).sum() > 2 * (frame.instance_ids == 0).sum()


def test_walking_out_of_frame():
    walker = PersonSpec(path=((0, 200, 200), (40, 420, 200)))
    clip = SyntheticClip(_scene([walker], frames=41))
    partial = 0
    for t in range(41):
        _, gt = clip.render(t)
        if len(gt) == 0:
            continue
        kp = _kp(gt, 0)
        outside = (kp[:, 0] >= W) | (kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 1] >= H)
        np.testing.assert_array_equal(kp[outside, 2], VIS_ABSENT)
        assert np.all(kp[~outside, 2] > VIS_ABSENT)
        if outside.any() and not outside.all():
            partial += 1
            assert gt.boxes[0, 2] <= W  # clipped box
            assert kp[:, 0].max() > W  # true coordinates kept beyond the border
    assert partial >= 2
    assert len(clip.render(40)[1]) == 0  # wholly outside: omitted
    assert len(clip.render(0)[1]) == 1


def test_full_occlusion_behind_pillar_for_many_frames():
    walker = PersonSpec(path=((0, 40, 140), (120, 280, 140)))
    pillar = OccluderSpec(x=160, y_base=215, width=80)
    clip = SyntheticClip(_scene([walker], occluders=(pillar,), frames=121))
    hidden_run = best = 0
    for t in range(121):
        frame = clip.render_full(t)
        kp = _kp(frame.poses, 0)  # always listed: inside the frame even when hidden
        fully_hidden = not np.any(frame.instance_ids == 0)  # not one pixel of the person shows
        if fully_hidden:
            assert np.all(kp[:, 2] == VIS_OCCLUDED)
            u, v = _pixels(kp).T
            assert np.all(frame.instance_ids[v, u] == -2)  # the occluder's pixels
        hidden_run = hidden_run + 1 if fully_hidden else 0
        best = max(best, hidden_run)
    assert best >= 18


def test_camera_zoom_scales_about_view_centre():
    stander = PersonSpec(path=((0, 160, 160),), motion="stand")
    camera = CameraSpec(keys=((0, 0, 0, 1.0), (20, 0, 0, 1.5)))
    clip = SyntheticClip(_scene([stander], camera=camera, frames=21))
    a, b = _kp(clip.render(0)[1], 0), _kp(clip.render(20)[1], 0)
    centre = np.array([W / 2, H / 2])
    legs = slice(11, 17)  # hips, knees, ankles do not move when standing
    np.testing.assert_allclose(b[legs, :2], (a[legs, :2] - centre) * 1.5 + centre, atol=1e-3)


def test_perspective_lower_is_nearer_and_larger():
    persp = Perspective.for_frame(W, H)
    far = PersonSpec(path=((0, 100, 150),), motion="stand")
    near = PersonSpec(path=((0, 220, 220),), motion="stand")
    _, gt = SyntheticClip(_scene([far, near], frames=1, perspective=persp)).render(0)
    h_far = gt.boxes[0, 3] - gt.boxes[0, 1]
    h_near = gt.boxes[1, 3] - gt.boxes[1, 1]
    expected = persp.person_height(220) / persp.person_height(150)
    assert h_near / h_far == pytest.approx(expected, rel=0.05)
    assert h_far == pytest.approx(persp.person_height(150), rel=0.05)


def test_ready_made_scenarios():
    # crossing: the near person (1) hides part of the far one (0) mid-clip, never the reverse
    clip = SyntheticClip(crossing_scene(W, H, frames=61))
    gt = clip.render(30)[1]
    assert (_kp(gt, 0)[:, 2] == VIS_OCCLUDED).sum() >= 3
    # occlusion: wholly hidden behind the pillar for about the asked number of frames
    clip = SyntheticClip(occlusion_scene(W, H, frames=80, hidden_frames=20))
    hidden = [not np.any(clip.render_full(t).instance_ids == 0) for t in range(20, 60)]
    assert 16 <= sum(hidden) <= 30
    # re-entry: present, gone for a while, present again
    clip = SyntheticClip(reentry_scene(W, H, frames=150))
    present = np.array([0 in clip.render(t)[1].track_ids for t in range(0, 150, 5)])
    changes = np.flatnonzero(np.diff(present.astype(int)))
    assert present[0] and present[-1] and len(changes) == 2 and (changes[1] - changes[0]) * 5 >= 30
    # zoom: the standing person grows by the zoom factor
    clip = SyntheticClip(zoom_scene(W, H, frames=40, zoom=1.5))
    h0 = np.ptp(_kp(clip.render(0)[1], 0)[11:, 1])
    h1 = np.ptp(_kp(clip.render(39)[1], 0)[11:, 1])
    assert h1 / h0 == pytest.approx(1.5, rel=0.02)


# ---- visibility is exactly the rendered pixels --------------------------------------


@pytest.mark.parametrize("seed", [2, 3, 8])
def test_visibility_matches_rendered_masks(seed):
    config = SyntheticConfig(seed=seed, frames=60, people=5, occluders=2, **SMALL)
    clip = SyntheticClip.from_config(config)
    depth = {i: p.path for i, p in enumerate(clip.scene.people)}
    assert depth
    checked = 0
    for t in range(0, 60, 6):
        frame = clip.render_full(t)
        gt = frame.poses
        for row, tid in enumerate(gt.track_ids):
            kp = gt.keypoints[row]
            in_frame = kp[:, 2] > VIS_ABSENT
            u, v = _pixels(kp[in_frame]).T
            owner = frame.instance_ids[v, u]
            vis = kp[in_frame, 2]
            np.testing.assert_array_equal(owner[vis == VIS_VISIBLE], tid)  # visible: that person's pixel
            assert np.all(owner != -1)  # a keypoint in the frame always lies on some body
            x, y = kp[:, 0], kp[:, 1]
            inside = (x >= 0) & (x < 192) & (y >= 0) & (y < 144)
            np.testing.assert_array_equal(in_frame, inside)
            # the whole drawn body lies in the box
            ys, xs = np.nonzero(frame.instance_ids == tid)
            if len(xs):
                x1, y1, x2, y2 = gt.boxes[row]
                assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
            checked += int(in_frame.sum())
    assert checked > 100


# ---- files and CLI ------------------------------------------------------------------


def test_write_synthetic_clip_decodes(tmp_path):
    config = SyntheticConfig(seed=4, frames=12, people=2, **SMALL)
    video, gt_path = write_synthetic_clip(tmp_path / "clip", config)
    assert video == tmp_path / "clip" / "video.mp4" and gt_path == tmp_path / "clip" / "gt.jsonl"
    info = probe_video(video)
    assert (info.width, info.height, info.codec) == (192, 144, "h264")
    assert info.fps == pytest.approx(25.0)
    decoded = list(iter_video_frames(video))
    assert len(decoded) == 12
    assert decoded[0][2].shape == (144, 192, 3)
    # the encoded picture is the rendered one, up to compression
    rendered = SyntheticClip.from_config(config).render(5)[0].astype(float)
    assert np.abs(decoded[5][2].astype(float) - rendered).mean() < 8.0
    frames = read_jsonl(gt_path)
    assert [f.frame_index for f in frames] == list(range(12))
    expected = SyntheticClip.from_config(config).render(7)[1]
    np.testing.assert_allclose(frames[7].keypoints, expected.keypoints, atol=0.006)


def test_cli_synth(tmp_path):
    from posestream.service.cli import main

    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--seed", "1", "--frames", "20", "--people", "3", "-q"]) == 0
    assert len(read_jsonl(out / "gt.jsonl")) == 20
    assert probe_video(out / "video.mp4").frames in (0, 20)
    assert sum(1 for _ in iter_video_frames(out / "video.mp4")) == 20
    assert main(["synth", "--out", str(out), "--frames", "0", "-q"]) == 2  # bad usage


# ---- drawing ------------------------------------------------------------------------


def test_draw_poses_draws_on_a_copy():
    rgb, gt = SyntheticClip.from_config(SyntheticConfig(seed=1, frames=10, people=3, **SMALL)).render(5)
    assert len(gt) > 0
    before = rgb.copy()
    out = draw_poses(rgb, gt, min_score=0.5, solid_score=1.5, draw_boxes=True)
    np.testing.assert_array_equal(rgb, before)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out != rgb).any(axis=2).sum() > 200
    by_side = draw_poses(rgb, gt, color_by_track=False, draw_ids=False)
    assert not np.array_equal(by_side, out)
    assert track_color(0) != track_color(1) and track_color(-1) == (200, 200, 200)
    empty = gt.select(np.zeros(len(gt), bool))
    np.testing.assert_array_equal(draw_poses(rgb, empty), rgb)
