"""TemporalNet building blocks: ROI-Align against a numpy bilinear reference, sampling, SIE rendering,
Eq. 6/7 pieces, shapes, checkpoint and context round trips. No weights needed."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posestream.models.roi_align import roi_align, sample_points  # noqa: E402
from posestream.models.temporal_inference import (  # noqa: E402
    CALIBRATED_GATE_HE,
    CellTransform,
    TemporalContext,
    TemporalInference,
    tracker_calibration,
    write_tracker_calibration,
)
from posestream.models.temporal_inputs import human_boxes, render_sie, tie_from_tvf  # noqa: E402
from posestream.models.temporal_loss import triplet_loss  # noqa: E402
from posestream.models.temporalnet import TemporalNet, TemporalNetConfig  # noqa: E402
from posestream.models.train_temporal import _tie_targets  # noqa: E402

torch.set_num_threads(1)


def _bilinear(img: np.ndarray, x: float, y: float) -> np.ndarray:
    """Direct bilinear value of (C, H, W) ``img`` at cell coordinates (0 = top-left edge), border-clamped."""
    _, h, w = img.shape
    x = min(max(x - 0.5, 0.0), w - 1.0)
    y = min(max(y - 0.5, 0.0), h - 1.0)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    return (
        img[:, y0, x0] * (1 - ax) * (1 - ay)
        + img[:, y0, x1] * ax * (1 - ay)
        + img[:, y1, x0] * (1 - ax) * ay
        + img[:, y1, x1] * ax * ay
    )


def _roi_align_reference(img: np.ndarray, box: np.ndarray, ph: int, pw: int, s: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    bw, bh = (x2 - x1) / pw, (y2 - y1) / ph
    out = np.zeros((img.shape[0], ph, pw))
    for i in range(ph):
        for j in range(pw):
            acc = sum(
                _bilinear(img, x1 + (j + (c + 0.5) / s) * bw, y1 + (i + (a + 0.5) / s) * bh)
                for a in range(s)
                for c in range(s)
            )
            out[:, i, j] = acc / (s * s)
    return out


@pytest.mark.parametrize("sampling", [1, 2, 3])
def test_roi_align_matches_numpy_bilinear_reference(sampling: int) -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 5, 11, 13)).astype(np.float32)
    boxes = [
        np.array(
            [[1.2, 2.3, 7.5, 9.1], [0.0, 0.0, 13.0, 11.0], [-1.5, 8.0, 3.0, 12.5]], np.float32
        ),  # last: off the map
        np.zeros((0, 4), np.float32),
    ]
    boxes[1] = np.array([[3.3, 1.1, 5.2, 4.4]], np.float32)
    out = roi_align(torch.from_numpy(feats), [torch.from_numpy(b) for b in boxes], (4, 3), sampling).numpy()
    ref = np.stack(
        [_roi_align_reference(feats[b], box, 4, 3, sampling) for b in range(2) for box in boxes[b]]
    )
    assert out.shape == (4, 5, 4, 3)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_roi_align_handles_images_without_boxes() -> None:
    feats = torch.randn(3, 2, 6, 6)
    empty = torch.zeros((0, 4))
    out = roi_align(feats, [empty, torch.tensor([[1.0, 1.0, 4.0, 5.0]]), empty], (2, 2))
    assert out.shape == (1, 2, 2, 2)
    assert roi_align(feats, [empty] * 3, (2, 2)).shape == (0, 2, 2, 2)


def test_sample_points_matches_reference() -> None:
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(1, 3, 7, 9)).astype(np.float32)
    pts = np.array([[0.5, 0.5], [4.2, 3.7], [8.9, 6.9], [-2.0, 3.0]], np.float32)
    got = sample_points(torch.from_numpy(maps), [torch.from_numpy(pts)])[0].numpy()
    ref = np.stack([_bilinear(maps[0], x, y) for x, y in pts])
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_render_sie_holds_offset_to_person_centre_near_joints() -> None:
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 0] = np.linspace(5, 15, 17)
    kp[0, :, 1] = 10.0
    kp[0, :, 2] = 0.9
    kp[0, 16, 2] = 0.0  # below threshold: neither drawn nor in the centre
    sie = render_sie(kp, (20, 30), radius=1, scale=8.0, min_score=0.2)
    centre = kp[0, :16, :2].mean(0)
    x, y = int(kp[0, 0, 0]), int(kp[0, 0, 1])
    assert sie[2, y, x] == 1.0
    np.testing.assert_allclose(sie[:2, y, x], ((np.array([x, y]) + 0.5) - centre) / 8.0, atol=1e-6)
    assert sie[2, 0, 0] == 0.0 and sie[2, y, int(kp[0, 16, 0]) + 2] == 0.0


def test_eq7_targets_point_from_other_frames_centre() -> None:
    a = np.zeros((2, 17, 3), np.float32)
    a[:, :, 2] = 1
    a[0, :, :2] = [10, 10]
    a[1, :, :2] = [40, 10]
    b = a.copy()
    b[0, :, 0] += 3  # person 0 moved 3 cells right
    b[1, :8, 2] = 0  # some joints of person 1 hidden at b
    pts, tgt = _tie_targets(a, b, scale=1.0)
    assert len(pts) == 17 + 9
    np.testing.assert_allclose(tgt[:17], np.tile([3.0, 0.0], (17, 1)))
    np.testing.assert_allclose(tie_from_tvf(pts, tgt)[:17], np.tile([10.0, 10.0], (17, 1)))


def test_human_boxes_cover_joints_with_margin() -> None:
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 0] = np.linspace(10, 20, 17)
    kp[0, :, 1] = np.linspace(0, 60, 17)
    kp[0, :, 2] = 1.0
    box = human_boxes(kp, margin=0.1, min_score=0.2)[0]
    assert box[0] < 10 and box[2] > 20 and box[1] < -5 and box[3] > 65
    assert (box[2] - box[0]) >= 60 / 3


def test_triplet_loss_eq6() -> None:
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.0, 1.01]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    assert float(triplet_loss(e, labels, 0.3)) == 0.0  # positives at ~0, negatives at 2 > margin
    bad = triplet_loss(e, torch.tensor([0, 1, 0, 1]), 0.3)
    assert float(bad) > 1.0


def test_temporalnet_shapes_and_zero_motion_start() -> None:
    cfg = TemporalNetConfig(embedding_dim=16, he_channels=8, tie_channels=8, he_hidden=32)
    net = TemporalNet(cfg).eval()
    feats, rgb = torch.rand(2, 24, 12, 16), torch.randint(0, 255, (2, 3, 12, 16), dtype=torch.uint8)
    boxes = [
        torch.tensor([[1.0, 1.0, 5.0, 10.0], [6.0, 2.0, 9.0, 11.0]]),
        torch.tensor([[2.0, 2.0, 6.0, 9.0]]),
    ]
    emb = net.embed(feats, rgb, boxes)
    assert emb.shape == (3, 16)
    np.testing.assert_allclose(emb.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)
    prev, cur = torch.rand(2, 44, 12, 16), torch.rand(2, 44, 12, 16)
    tvf = net.tvf(prev, cur)
    assert tvf.shape == (2, 4, 12, 16)
    # Freshly initialised, the TVF is the rendered SIE: forward from t's, backward from t-1's.
    torch.testing.assert_close(tvf[:, :2], cur[:, 41:43])
    torch.testing.assert_close(tvf[:, 2:], prev[:, 41:43])


def test_checkpoint_round_trip(tmp_path) -> None:  # noqa: ANN001
    net = TemporalNet(TemporalNetConfig(embedding_dim=8, he_channels=4, tie_channels=4, he_hidden=8))
    path = net.save(tmp_path / "t.pt", {"name": "x"})
    again = TemporalNet.load(path)
    assert again.config == net.config
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_tracker_calibration_is_stored_in_the_card_and_read_back(tmp_path) -> None:  # noqa: ANN001
    net = TemporalNet(TemporalNetConfig(embedding_dim=8, he_channels=4, tie_channels=4, he_hidden=8))
    path = net.save(tmp_path / "t.pt", {"name": "x"})
    # A card without a calibration runs with the shared default gate.
    assert TemporalInference.load(path).tracker_settings == {"gate_he": CALIBRATED_GATE_HE}
    assert tracker_calibration({}) == {"gate_he": CALIBRATED_GATE_HE}
    write_tracker_calibration(path, {"settings": {"gate_he": 2.0, "lambda_he": 1.0}, "criterion": "IDF1"})
    loaded = TemporalInference.load(path)
    assert loaded.tracker_settings == {"gate_he": 2.0, "lambda_he": 1.0}
    assert loaded.card["name"] == "x" and loaded.card["tracker"]["criterion"] == "IDF1"
    for a, b in zip(net.state_dict().values(), loaded.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)  # the weights are untouched
    with pytest.raises(ValueError, match="settings"):
        write_tracker_calibration(path, {"settings": {}})


def test_context_round_trip_and_cell_transform() -> None:
    ctx = TemporalContext(
        np.random.default_rng(0).normal(size=(44, 6, 8)).astype(np.float16),
        CellTransform(0.4, 0.4, 2.0, 0.0),
        7,
    )
    back = TemporalContext.from_bytes(ctx.to_bytes())
    assert back.seq == 7 and back.transform == ctx.transform
    np.testing.assert_array_equal(back.inputs, ctx.inputs)
    tr = CellTransform(0.5, 0.5, 4.0, 0.0)
    np.testing.assert_allclose(tr.to_cells(np.array([[8.0, 16.0]])), [[2.0, 2.0]])
    np.testing.assert_allclose(tr.vectors_to_frame(np.array([[1.0, -1.0]])), [[8.0, -8.0]])
