"""Imports go down the layers: models imports nothing of ours above it, inference never imports
training, and the tracker uses only models' torch-free modules (read from the source, so
imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TORCH_FREE_MODELS = {"posestream.models.skeleton", "posestream.models.poses", "posestream.models.geometry"}
INFERENCE = ("spatial_estimator", "estimator", "checkpoints", "movenet_decode", "decode", "refine", "geometry", "poses")


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _ours(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith("posestream.")}


@pytest.mark.parametrize("path", sorted((REPO / "models").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_models_import_nothing_above_them(path: Path) -> None:
    above = {n for n in _ours(_imports(path)) if n.startswith(("posestream.tracker", "posestream.service"))}
    assert not above, f"{path.relative_to(REPO)} imports {sorted(above)}; pass what it needs in from the caller"


@pytest.mark.parametrize("name", INFERENCE)
def test_inference_does_not_import_training(name: str) -> None:
    training = {n for n in _ours(_imports(REPO / "models" / f"{name}.py")) if n.startswith("posestream.models.train")}
    assert not training, f"models/{name}.py imports {sorted(training)}"


@pytest.mark.parametrize("path", sorted((REPO / "tracker").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_tracker_uses_only_torch_free_models(path: Path) -> None:
    models = {
        n for n in _ours(_imports(path))
        if n.startswith("posestream.models") and n != "posestream.models"
        and not any(n == m or n.startswith(m + ".") for m in TORCH_FREE_MODELS)
    }  # fmt: skip
    above = {n for n in _ours(_imports(path)) if n.startswith("posestream.service")}
    assert not models and not above, f"{path.relative_to(REPO)} imports {sorted(models | above)}"
