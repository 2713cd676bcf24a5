"""Layers and cycles: a walk over every module's imports (``ast``, so nothing is imported to check).

The layers are ``models <- tracker <- service``:

- ``posestream.models`` imports nothing of ``posestream.tracker`` or ``posestream.service``;
- ``posestream.tracker`` imports of ``posestream.models`` only the torch-free modules
  ``skeleton``, ``poses`` and ``geometry``, and nothing of ``posestream.service``;
- ``posestream.service`` composes both;

and no import cycle runs among our modules. Every import counts: module level, inside functions,
under ``if TYPE_CHECKING`` and dynamic ones named by a string literal (``import_module("...")``,
``"module:function"`` tables), since a
cycle through a function-level import is still a cycle in the design (it only fails later).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Installed package name -> folder in the checkout (pyproject's package-dir).
MAPPED = {"posestream": "posestream", "posestream.models": "models", "posestream.tracker": "tracker",
          "posestream.service": "service"}  # fmt: skip
MODELS, TRACKER, SERVICE = "posestream.models", "posestream.tracker", "posestream.service"
# The torch-free modules of posestream.models that the tracker may use.
TRACKER_MAY_IMPORT = frozenset({f"{MODELS}.skeleton", f"{MODELS}.poses", f"{MODELS}.geometry"})
TORCH = ("torch", "torchvision")

Graph = dict[str, set[str]]
_MODULE_STRING = re.compile(r"(posestream(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::[A-Za-z_][A-Za-z0-9_.]*)?")


# ---- the checker ---------------------------------------------------------------------------------


def find_modules(mapping: Mapping[str, Path]) -> dict[str, Path]:
    """Every ``.py`` file under the mapped folders, keyed by its dotted module name."""
    modules: dict[str, Path] = {}
    for package, folder in mapping.items():
        for path in sorted(Path(folder).rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            if "__pycache__" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            modules[".".join((package, *parts))] = path
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Dotted names a module's source imports: ``import a.b`` gives ``a.b``, ``from a import b`` gives ``a.b``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: strip ``level`` trailing parts (a package's own name counts as one level less).
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from a import b`` resolves to module ``a.b`` when there is one, else to ``a``
            # (``import_graph`` takes the longest prefix that is a module).
            for alias in node.names:
                yield base if alias.name == "*" else f"{base}.{alias.name}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A string that is exactly a module of ours, optionally with ``:attr``, is a dynamic
            # import: ``importlib.import_module("posestream.x")``, the CLI's "module:function"
            # table, uvicorn's "module:factory".
            match = _MODULE_STRING.fullmatch(node.value)
            if match:
                yield match.group(1)


def import_graph(
    modules: Mapping[str, Path], prefix: str = "posestream"
) -> tuple[Graph, dict[str, set[str]]]:
    """``(ours, external)``: edges between our modules, and each module's top-level external imports.

    ``from pkg import name`` is an edge to ``pkg.name`` when that is one of our modules, else to
    ``pkg`` (an attribute of it). The implicit import of a module's parent packages is not an edge
    (our ``__init__`` files import nothing).
    """
    ours: Graph = {name: set() for name in modules}
    external: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target in _imported_names(tree, name, path.name == "__init__.py"):
            if not target:
                continue
            if target == prefix or target.startswith(prefix + "."):
                # The longest prefix of the dotted name that is one of our modules.
                parts = target.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                if parts and ".".join(parts) != name:
                    ours[name].add(".".join(parts))
            else:
                external[name].add(target.split(".")[0])
    return ours, external


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(graph: Graph) -> list[tuple[str, str]]:
    """Edges that break ``models <- tracker <- service`` (sorted ``(importer, imported)`` pairs)."""
    bad = []
    for src, targets in graph.items():
        for dst in targets:
            if _in(src, MODELS) and (_in(dst, TRACKER) or _in(dst, SERVICE)):
                bad.append((src, dst))
            elif _in(src, TRACKER) and (
                _in(dst, SERVICE) or (_in(dst, MODELS) and dst not in TRACKER_MAY_IMPORT and dst != MODELS)
            ):
                bad.append((src, dst))
            elif src == "posestream" and dst != src:
                bad.append((src, dst))
    return sorted(bad)


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        # Iterative, so a deep import chain cannot hit the recursion limit.
        nonlocal counter
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def cycle_edges(graph: Graph, component: Iterable[str]) -> list[tuple[str, str]]:
    """The edges inside one component (what to cut to break the cycle)."""
    members = set(component)
    return sorted((a, b) for a in members for b in graph.get(a, ()) if b in members)


def closure(graph: Graph, start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others (including ``start``)."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# ---- the checker on a small synthetic tree (so the real tests can fail) -----------------------


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Graph, dict[str, set[str]]]:
    """A three-package tree with an upward import, a function-level cycle and a relative import."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "models/__init__.py": "",
            "models/skeleton.py": "import numpy as np\n",
            "models/net.py": "import torch\nfrom . import skeleton\n\ndef f():\n    from posestream.tracker import step\n",
            "tracker/__init__.py": "",
            "tracker/step.py": "from posestream.models.skeleton import NAMES\nfrom posestream.models import net\n",
            "service/__init__.py": "",
            "service/pipeline.py": "from posestream.service.pipelines import blobs\n",
            "service/pipelines/__init__.py": "from .blobs import X\n",
            "service/pipelines/blobs.py": (
                "def build():\n    import importlib\n    return importlib.import_module('posestream.service.pipeline')\n"
                "COMMANDS = ('posestream.models.net:main',)\n"
            ),
        },
    )
    folders = {"posestream": "pkg", MODELS: "models", TRACKER: "tracker", SERVICE: "service"}
    return import_graph(find_modules({k: tmp_path / v for k, v in folders.items()}))


def test_checker_resolves_relative_function_level_and_importlib_imports(toy: tuple[Graph, dict]) -> None:
    graph, external = toy
    assert graph[f"{MODELS}.net"] == {f"{MODELS}.skeleton", f"{TRACKER}.step"}
    assert graph[f"{TRACKER}.step"] == {f"{MODELS}.skeleton", f"{MODELS}.net"}
    assert graph[f"{SERVICE}.pipelines"] == {f"{SERVICE}.pipelines.blobs"}
    assert graph[f"{SERVICE}.pipelines.blobs"] == {f"{SERVICE}.pipeline", f"{MODELS}.net"}
    assert external[f"{MODELS}.net"] == {"torch"}
    assert external[f"{MODELS}.skeleton"] == {"numpy"}


def test_checker_reports_upward_imports_and_cycles(toy: tuple[Graph, dict]) -> None:
    graph, _ = toy
    assert layer_violations(graph) == [
        (f"{MODELS}.net", f"{TRACKER}.step"),
        (f"{TRACKER}.step", f"{MODELS}.net"),
    ]
    assert cycles(graph) == [
        [f"{MODELS}.net", f"{TRACKER}.step"],
        [f"{SERVICE}.pipeline", f"{SERVICE}.pipelines.blobs"],
    ]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert closure(graph, f"{TRACKER}.step") == {f"{TRACKER}.step", f"{MODELS}.skeleton", f"{MODELS}.net"}


# ---- the real code ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> tuple[Graph, dict[str, set[str]]]:
    return import_graph(find_modules({k: ROOT / v for k, v in MAPPED.items()}))


def _show(edges: Iterable[tuple[str, str]]) -> str:
    return "\n  ".join(f"{a} -> {b}" for a, b in edges)


def test_the_walk_sees_our_modules(graph: tuple[Graph, dict]) -> None:
    """A sanity floor: the walk found the three packages and some edges between them."""
    ours, external = graph
    assert {MODELS, TRACKER, SERVICE, f"{SERVICE}.cli", f"{TRACKER}.step"} <= set(ours)
    assert f"{MODELS}.poses" in closure(ours, f"{SERVICE}.cli")
    assert "torch" in set().union(*external.values())


def test_models_import_nothing_above_them(graph: tuple[Graph, dict]) -> None:
    ours, _ = graph
    bad = [(a, b) for a, b in layer_violations(ours) if _in(a, MODELS)]
    assert not bad, "posestream.models must not import the tracker or the service:\n  " + _show(bad)


def test_tracker_imports_only_the_torch_free_models_modules(graph: tuple[Graph, dict]) -> None:
    ours, _ = graph
    bad = [(a, b) for a, b in layer_violations(ours) if _in(a, TRACKER)]
    assert not bad, f"posestream.tracker may import only {sorted(TRACKER_MAY_IMPORT)} of ours:\n  " + _show(
        bad
    )


def test_the_tracker_and_what_it_imports_never_import_torch(graph: tuple[Graph, dict]) -> None:
    ours, external = graph
    reach = set().union(*(closure(ours, m) for m in ours if _in(m, TRACKER)))
    bad = sorted((m, t) for m in reach for t in external[m] if t in TORCH)
    assert not bad, "the tracker must run without torch:\n  " + _show(bad)


def test_inference_does_not_import_training(graph: tuple[Graph, dict]) -> None:
    """In ``posestream.models`` only the training modules (``train*``) import the training loops."""
    ours, _ = graph
    training = {m for m in ours if m.startswith(f"{MODELS}.train")}
    bad = sorted(
        (a, b) for a, bs in ours.items() for b in bs if b in training and _in(a, MODELS) and a not in training
    )
    assert not bad, "inference code imports training code:\n  " + _show(bad)


def test_the_package_root_imports_nothing(graph: tuple[Graph, dict]) -> None:
    ours, _ = graph
    assert ours["posestream"] == set()


def test_no_import_cycles(graph: tuple[Graph, dict]) -> None:
    ours, _ = graph
    found = cycles(ours)
    lines = [f"{' <-> '.join(c)}\n    edges: {cycle_edges(ours, c)}" for c in found]
    assert not found, "import cycles among our modules (module- or function-level):\n  " + "\n  ".join(lines)
