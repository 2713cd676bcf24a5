"""Packaging: the explicit package list, one name per module, and a non-editable install that works.

The repository's top-level folders are installed as ``posestream.models``, ``posestream.tracker``
and ``posestream.service`` (``pyproject.toml``'s ``package-dir`` mapping with an explicit
``packages`` list). These tests keep that list in step with the folders, make sure no module can
be loaded under a second (bare) name, and build a wheel, install it into a fresh virtual
environment outside the checkout and run ``posestream track`` from there, so that code which
finds files relative to its own source (weights, configs) is caught before the worker image is.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.conftest import torch_threads

ROOT = Path(__file__).resolve().parents[1]
# Installed package name -> folder in the checkout (pyproject's package-dir).
MAPPED = {"posestream": "posestream", "posestream.models": "models", "posestream.tracker": "tracker",
          "posestream.service": "service"}  # fmt: skip
BARE = ("models", "tracker", "service")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _packages_on_disk() -> set[str]:
    """Every folder with an ``__init__.py`` under the mapped folders, as its installed package name."""
    found: set[str] = set()
    for package, folder in MAPPED.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join((package, *rel.parts)))
    return found


def _modules_on_disk() -> list[str]:
    """Every ``.py`` module under the mapped folders, as its installed dotted name."""
    names: list[str] = []
    for package, folder in MAPPED.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            names.append(".".join((package, *parts)))
    return names


def test_package_dir_maps_the_top_level_folders() -> None:
    """``package-dir`` maps exactly the four folders this test knows (a new top-level folder updates both)."""
    assert _pyproject()["tool"]["setuptools"]["package-dir"] == MAPPED


def test_package_list_matches_the_folders() -> None:
    """The explicit ``packages`` list equals the folders with an ``__init__.py`` (no sub-package left out of a wheel)."""
    listed = _pyproject()["tool"]["setuptools"]["packages"]
    assert len(listed) == len(set(listed)), f"duplicates in pyproject's packages: {sorted(listed)}"
    on_disk = _packages_on_disk()
    missing, stale = sorted(on_disk - set(listed)), sorted(set(listed) - on_disk)
    assert not missing and not stale, (
        f"pyproject.toml [tool.setuptools] packages is out of step with the folders: add {missing}, "
        f"remove {stale}, then re-run `pip install -e .`"
    )


def test_package_finder_finds_the_same_packages() -> None:
    """The helper above agrees with a mapped walk of a folder tree it did not write (it can fail)."""
    assert {"posestream", "posestream.models", "posestream.models.data", "posestream.service.gateway"} <= (
        _packages_on_disk()
    )
    assert not any(p.startswith(BARE) for p in _packages_on_disk())


def _run_python(code: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("bare", BARE)
def test_bare_folder_names_do_not_import(bare: str) -> None:
    """With the checkout on ``sys.path``, ``import models`` (or tracker, service) fails instead of loading a copy."""
    proc = _run_python(
        f"""
        import importlib
        try:
            importlib.import_module({bare!r})
        except ImportError as exc:
            print("ImportError:", exc)
        else:
            raise SystemExit("imported {bare} under a bare name")
        """,
        cwd=ROOT,
        extra_path=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"import posestream.{bare}, not {bare}" in proc.stdout


def test_every_module_loads_under_one_name() -> None:
    """Import every module of ours; no module object (or source file) is in ``sys.modules`` under two names."""
    modules = _modules_on_disk()
    proc = _run_python(
        f"""
        import importlib, json, sys
        failed = {{}}
        for name in {modules!r}:
            try:
                importlib.import_module(name)
            except Exception as exc:  # report every module that cannot import, not just the first
                failed[name] = f"{{type(exc).__name__}}: {{exc}}"
        ours = {{}}
        for name, mod in list(sys.modules.items()):
            path = getattr(mod, "__file__", None)
            if path and "site-packages" not in path and not path.startswith(sys.base_prefix):
                ours.setdefault(path, []).append(name)
        print(json.dumps({{"failed": failed, "files": ours}}))
        """,
        cwd=ROOT,
        extra_path=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, f"modules that do not import: {report['failed']}"
    twice = {path: names for path, names in report["files"].items() if len(names) > 1}
    assert twice == {}, f"source files loaded under more than one module name: {twice}"
    bare = sorted(n for names in report["files"].values() for n in names if n.split(".")[0] in BARE)
    assert bare == [], f"modules loaded under a bare top-level name: {bare}"
    loaded = {n for names in report["files"].values() for n in names}
    assert set(modules) <= loaded, f"modules that were not found: {sorted(set(modules) - loaded)}"


# ---- a wheel, installed non-editable outside the checkout ------------------------------------


def _venv_site_packages(venv: Path) -> Path:
    """The ``site-packages`` of ``venv`` (the purelib scheme path, as the venv's own interpreter sees it)."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel`` of a clean copy of the sources (no isolation: the build uses this interpreter's setuptools).

    A copy, because an in-tree build leaves ``build/lib`` behind, and setuptools packs what is
    there: a module deleted since the last build would still be in the next wheel.
    """
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in MAPPED.values():
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(dist.glob("posestream-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
@pytest.mark.weights
def test_wheel_installs_non_editable_and_tracks_a_clip(
    tmp_path: Path, temporalnet_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build a wheel, install it into a fresh venv outside the checkout, run ``posestream track`` there.

    The venv sees this interpreter's dependencies through a ``.pth`` file (installing torch again
    would take minutes) but not the checkout: the installed ``posestream`` must run from its own
    ``site-packages``, find our checkpoints through ``POSESTREAM_WEIGHTS_DIR`` and give the same
    JSON Lines as the checkout does with the default model and tracker (MoveNet, ``he+tie``).
    """
    pytest.importorskip("torch")
    pytest.importorskip("av")
    from posestream.models.data.synthetic import SyntheticConfig, write_synthetic_clip
    from posestream.service.cli import main

    assert ROOT not in tmp_path.parents, "the venv must live outside the checkout"
    wheel = _build_wheel(tmp_path)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    venv_python = venv / "bin" / "python"
    venv_site = _venv_site_packages(venv)
    assert venv_site.is_dir(), venv_site
    # The dependencies come from this interpreter's site-packages. A path line in a .pth is only
    # appended to sys.path (the .pth files there, such as the checkout's editable finder, are not
    # run), and the venv's own site-packages comes first, so the wheel's posestream wins.
    deps = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if Path(p).is_dir()]
    (venv_site / "_posestream_test_deps.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv_python), "install", "-q", "--no-deps", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The installed files are in the venv, with nothing generic beside them.
    installed = venv_site / "posestream"
    for rel in (
        "__init__.py",
        "models/poses.py",
        "tracker/step.py",
        "service/cli.py",
        "service/pipelines/models.py",
    ):
        assert (installed / rel).is_file(), f"{rel} missing from the installed wheel"
    in_wheel = sorted(str(p.relative_to(installed)) for p in installed.rglob("*.py"))
    in_checkout = sorted(
        "/".join([*package.split(".")[1:], *path.relative_to(ROOT / folder).parts])
        for package, folder in MAPPED.items()
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    )
    assert in_wheel == in_checkout, "the wheel's modules differ from the checkout's"
    for generic in BARE:
        assert not (venv_site / generic).exists(), f"the wheel installed a top-level {generic}/"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["POSESTREAM_WEIGHTS_DIR"] = str(ROOT / "weights")
    env["OMP_NUM_THREADS"] = (
        "1"  # the same torch thread count as the checkout run below (float sums depend on it)
    )
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = subprocess.run(
        [str(venv_python), "-c", "import posestream.service.cli as m, posestream.models.poses as p; "
         "print(m.__file__); print(p.__file__)"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).resolve().is_relative_to(installed.resolve()), f"imported from {line}, not the venv"

    video, _ = write_synthetic_clip(
        outside / "clip", SyntheticConfig(seed=777, frames=6, people=2, width=320, height=240)
    )
    out = outside / "poses.jsonl"
    track = subprocess.run(
        [str(venv / "bin" / "posestream"), "track", str(video), "--out", str(out), "--max-frames", "4",
         "--device", "cpu", "-q"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert track.returncode == 0, f"posestream track from the wheel failed:\n{track.stdout}\n{track.stderr}"
    assert track.stdout.startswith("4 frames"), track.stdout
    assert "he+tie" in track.stdout, f"not the default tracker: {track.stdout}"
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    frames = [json.loads(line) for line in lines]
    assert [f["frame_index"] for f in frames] == [0, 1, 2, 3]
    assert all((f["width"], f["height"]) == (320, 240) for f in frames)
    for f in frames:
        for pose in f["poses"]:
            assert len(pose["keypoints"]) == 17 and len(pose["box"]) == 4
            assert pose["track_id"] >= 0, "a pose left untracked by he+tie"

    # The same command from the checkout gives byte-identical JSON Lines.
    monkeypatch.setenv("POSESTREAM_WEIGHTS_DIR", str(ROOT / "weights"))
    here = tmp_path / "checkout.jsonl"
    with torch_threads(1):
        assert (
            main(["track", str(video), "--out", str(here), "--max-frames", "4", "--device", "cpu", "-q"]) == 0
        )
    assert out.read_bytes() == here.read_bytes(), "the installed wheel and the checkout track differently"
