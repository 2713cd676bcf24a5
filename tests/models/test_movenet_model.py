"""MoveNet in PyTorch vs the TFLite file: reader, loader, architecture and parity.

Parity is checked on real frames (vtest.avi frame 200) and a synthetic frame:
- raw head maps after the heads' activation vs the interpreter's intermediate tensors
  (reference kernels, all tensors preserved): max abs diff < 1e-3 with the PyTorch model in
  float64 (isolating our graph from fp32 rounding), and in float32 within 1e-3 + 1e-4 * max|ref|
  (the regression / box heads reach 45-60 cells; fp32 accumulation-order noise is ~1e-3
  there on both sides: our float64 model is 4x closer to the interpreter than our float32 one);
- decoded people (our decoder, reference settings) vs the TFLite file's own output:
  keypoints within 1 px at input scale for keypoints with score > 0.3, boxes within 0.5 px.
  Keypoint scores are equal where people do not overlap; the reference scores a keypoint
  with the best distance weight of *any* of its 6 people at that cell, ours with the
  person's own weight, so ours can only be lower (person scores agree within 0.02).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from posestream.models.backbones.movenet import (
    FEATURE_CHANNELS,
    MoveNetMultiPose,
    MoveNetWeightsError,
    load_tflite_weights,
    tflite_layer_key,
)
from posestream.models.estimator import letterbox
from posestream.models.heads import MOVENET_HEADS, activate_all
from posestream.models.movenet_decode import DecoderConfig, decode
from posestream.models.tflite_reader import TFLiteFormatError, TFLiteModel
from tests.models import test_movenet_weights as shared

pytestmark = [
    pytest.mark.weights,
    pytest.mark.filterwarnings("ignore::UserWarning"),  # the interpreter warns about preserve_all_tensors
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
]

# The shared fixtures (fetch the weights like a user would; skip only when that fails).
synthetic_frame = shared.synthetic_frame
vtest_frame200 = shared.vtest_frame200

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="ai-edge-litert (the TFLite interpreter) is needed"
)


@pytest.fixture(scope="module")
def tfl(movenet_tflite: Path) -> TFLiteModel:
    return TFLiteModel.from_file(movenet_tflite)


@pytest.fixture(scope="module")
def model(movenet_tflite: Path) -> MoveNetMultiPose:
    return MoveNetMultiPose.from_tflite(movenet_tflite)


def _reference_run(path: Path, canvas: np.ndarray, preserve: bool):
    kwargs = {"model_path": str(path), "num_threads": 2}
    if preserve:
        kwargs["experimental_preserve_all_tensors"] = True
        kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = litert.Interpreter(**kwargs)
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(canvas.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], canvas)
    it.invoke()
    return it


def _head_tensors(tfl: TFLiteModel, model: MoveNetMultiPose) -> dict[str, int]:
    """Head name -> index of the TFLite tensor its last convolution writes."""
    modules = model.tflite_layer_names()
    out = {}
    for op in tfl.operators_of("CONV_2D", "DEPTHWISE_CONV_2D"):
        key = tflite_layer_key(
            tfl.tensors[tfl.source_constant(op.inputs[1])].name, op.op == "DEPTHWISE_CONV_2D"
        )
        for name, head in model.heads.items():
            if modules[key] is head.out:
                out[name] = op.outputs[0]
        if modules[key] is model.fpn.smooth2.pointwise:
            out["features"] = op.outputs[0]
    return out


def _activate_np(spec_activation: str, x: np.ndarray) -> np.ndarray:
    if spec_activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    if spec_activation == "relu":
        return np.maximum(x, 0.0)
    return x


# ---- reader and loader ------------------------------------------------------------------------


def test_reader_matches_litert_schema(movenet_tflite: Path, tfl: TFLiteModel) -> None:
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    ref = schema.ModelT.InitFromPackedBuf(movenet_tflite.read_bytes(), 0)
    sg = ref.subgraphs[0]
    assert len(tfl.tensors) == len(sg.tensors) and len(tfl.operators) == len(sg.operators)
    for t, r in zip(tfl.tensors, sg.tensors, strict=True):
        assert t.name == r.name.decode()
        assert t.shape == tuple(int(s) for s in (r.shape if r.shape is not None else []))
        data = ref.buffers[r.buffer].data
        if data is None:
            assert t.data is None
        else:
            assert t.data is not None and t.data.reshape(-1).view(np.uint8).tobytes() == bytes(
                np.asarray(data, np.uint8)
            )
    for op, r in zip(tfl.operators, sg.operators, strict=True):
        assert op.inputs == tuple(r.inputs) and op.outputs == tuple(r.outputs)
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            o = r.builtinOptions
            assert op.options["padding"] == ("SAME" if o.padding == 0 else "VALID")
            assert op.options["stride"] == (o.strideH, o.strideW)
    with pytest.raises(TFLiteFormatError):
        TFLiteModel(b"not a flatbuffer at all")


def test_fp16_constants_widen_exactly(tfl: TFLiteModel) -> None:
    t = tfl.tensor("center_net_mobile_net_v2fpn_feature_extractor/model_1/model/Conv1/Conv2D")
    assert t.dtype == np.float16 and t.shape == (48, 3, 3, 3)
    w = tfl.constant(t.index)
    assert w.dtype == np.float32 and np.array_equal(w.astype(np.float16), t.data)


def test_loader_fails_loudly_on_unmapped_or_unused(tfl: TFLiteModel) -> None:
    no_box = MoveNetMultiPose(heads=[h for h in MOVENET_HEADS if h.name != "box_offset"])
    with pytest.raises(MoveNetWeightsError, match="unused tensor"):
        load_tflite_weights(no_box, tfl)

    class Renamed(MoveNetMultiPose):
        def tflite_layer_names(self):  # one module under a name the file does not have
            names = super().tflite_layer_names()
            names["model/block_99_expand/Conv2D"] = names.pop("model/block_1_expand/Conv2D")
            return names

    with pytest.raises(MoveNetWeightsError, match="unmapped module: model/block_99_expand"):
        load_tflite_weights(Renamed(), tfl)


def test_loaded_model_reads_the_input_normalisation(model: MoveNetMultiPose) -> None:
    assert float(model.input_scale) == pytest.approx(1 / 127.5, rel=1e-3)  # fp16 0.0078430
    assert float(model.input_shift) == 1.0 and float(model.input_mean.abs().max()) == 0.0


def test_output_shapes_batched_any_multiple_of_32_and_torchscript(model: MoveNetMultiPose) -> None:
    x = torch.rand(2, 3, 160, 224) * 255
    with torch.inference_mode():
        out = model(x)
    for spec in MOVENET_HEADS:
        assert out[spec.name].shape == (2, spec.channels, 160 // spec.stride, 224 // spec.stride)
    assert out["features"].shape == (2, FEATURE_CHANNELS, 40, 56)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 100, 128))
    scripted = torch.jit.script(copy.deepcopy(model))
    with torch.inference_mode():
        again = scripted(x)
    assert all(torch.equal(again[k], out[k]) for k in out)


# ---- parity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "size"),
    [("vtest", 256), ("vtest", 512), ("synthetic", 256)],
    ids=["vtest-256", "vtest-512", "synthetic-256"],
)
def test_raw_head_parity_with_interpreter(
    movenet_tflite: Path,
    tfl: TFLiteModel,
    model: MoveNetMultiPose,
    vtest_frame200: np.ndarray,
    synthetic_frame: np.ndarray,
    source: str,
    size: int,
) -> None:
    frame = vtest_frame200 if source == "vtest" else synthetic_frame
    canvas, _ = letterbox([frame], size, square=True)
    it = _reference_run(movenet_tflite, canvas, preserve=True)
    tensors = _head_tensors(tfl, model)
    x = torch.from_numpy(canvas).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        out32 = activate_all(MOVENET_HEADS, model(x))
        out64 = activate_all(MOVENET_HEADS, copy.deepcopy(model).double()(x.double()))
    report = {}
    for spec in MOVENET_HEADS:
        ref = _activate_np(spec.activation, it.get_tensor(tensors[spec.name])[0].astype(np.float64))
        ours32 = out32[spec.name][0].permute(1, 2, 0).double().numpy()
        ours64 = out64[spec.name][0].permute(1, 2, 0).numpy()
        d64, d32 = np.abs(ours64 - ref), np.abs(ours32 - ref)
        report[spec.name] = (float(d64.max()), float(d32.max()))
        assert d64.max() < 1e-3, f"{spec.name}: float64 max abs diff {d64.max():.2e}"
        limit32 = 1e-3 + 1e-4 * np.abs(ref).max()
        assert d32.max() <= limit32, f"{spec.name}: float32 max abs diff {d32.max():.2e} > {limit32:.2e}"
        if spec.activation == "sigmoid":
            assert d32.max() < 1e-4, f"{spec.name}: float32 probabilities differ by {d32.max():.2e}"
    feats = it.get_tensor(tensors["features"])[0]
    assert np.abs(out32["features"][0].permute(1, 2, 0).numpy() - feats).max() < 1e-3
    print(
        f"{source}@{size} max abs diff (float64, float32):",
        {k: (f"{a:.1e}", f"{b:.1e}") for k, (a, b) in report.items()},
    )


@pytest.mark.parametrize(("source", "size"), [("vtest", 512), ("vtest", 256), ("synthetic", 256)])
def test_decoded_people_match_the_tflite_output(
    movenet_tflite: Path,
    model: MoveNetMultiPose,
    vtest_frame200: np.ndarray,
    synthetic_frame: np.ndarray,
    source: str,
    size: int,
) -> None:
    frame = vtest_frame200 if source == "vtest" else synthetic_frame
    canvas, _ = letterbox([frame], size, square=True)
    ref = _reference_run(movenet_tflite, canvas, preserve=False)
    people = ref.get_tensor(ref.get_output_details()[0]["index"])[0]  # (6, 56)
    with torch.inference_mode():
        maps = activate_all(MOVENET_HEADS, model(torch.from_numpy(canvas).permute(0, 3, 1, 2).float()))
    ours = decode(maps, DecoderConfig.reference())[0]
    assert len(ours) == 6
    compared = 0
    for row in people:
        kp = row[:51].reshape(17, 3)  # (y, x, score), normalised
        ref_box = row[51:55] * size  # (y1, x1, y2, x2)
        j = int(np.argmin(np.abs(ours.boxes[:, [1, 0, 3, 2]] - ref_box).sum(1)))
        assert np.abs(ours.boxes[j, [1, 0, 3, 2]] - ref_box).max() < 0.5
        assert ours.scores[j] == pytest.approx(row[55], abs=0.02)
        sure = kp[:, 2] > 0.3
        dxy = np.abs(ours.keypoints[j, :, [1, 0]].T - kp[:, :2] * size)
        assert np.all(dxy[sure] <= 1.0), f"person {j}: keypoints differ by up to {dxy[sure].max():.3f} px"
        assert np.all(ours.keypoints[j, :, 2] <= kp[:, 2] + 1e-4)
        assert np.median(np.abs(ours.keypoints[j, :, 2] - kp[:, 2])) < 1e-3
        compared += int(sure.sum())
    assert compared > 0
