"""The package's folders are its layers, and imports flow one way: down, never up or around.

    errors, atomic  <  data, models  <  prompts  <  scoring  <  searchers  <  tuning  <  cli

Every import counts — module level, inside functions and under ``TYPE_CHECKING`` — because a hidden
import is still a dependency. Within a layer, modules may import each other, but the module graph
must have no cycles (a "back-edge"), and no module imports another's private (``_name``) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autoprompt_search"
LAYERS = {"errors": 0, "atomic": 0, "data": 1, "models": 1, "prompts": 2, "scoring": 3, "searchers": 4,
          "tuning": 5, "cli": 6}
TOP = 7  # the package's __init__: the public API, above everything


def module_imports(package: Path) -> dict[str, set[str]]:
    """``{module: {modules it imports from the same package}}``, dotted names relative to ``package``."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        here = parts[:-1]  # the package that holds this module
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                for alias in node.names:  # `from . import x` may name a module
                    candidate = ".".join([*base, alias.name])
                    targets.add(candidate if _exists(package, candidate) else ".".join(base))
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for full in names:
                    if full and full.split(".")[0] == package.name:
                        targets.add(".".join(full.split(".")[1:]))
        graph[name] = {t for t in targets if t != name}
    return graph


def private_imports(package: Path) -> list[str]:
    """``module: name`` for every ``from x import _name`` between modules of ``package``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(package.name)):
                found += [f"{path.relative_to(package)}: {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def layer(module: str) -> int:
    return TOP if module == "" else LAYERS[module.split(".")[0]]


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer of a higher one."""
    return [f"{src} -> {dst}" for src, dsts in graph.items() for dst in sorted(dsts) if layer(dst) > layer(src)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (empty when the module graph is acyclic)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def _exists(package: Path, dotted: str) -> bool:
    target = package.joinpath(*dotted.split("."))
    return target.with_suffix(".py").exists() or (target / "__init__.py").exists()


def test_every_module_sits_in_a_known_layer() -> None:
    unknown = [m for m in module_imports(PACKAGE) if m and m.split(".")[0] not in LAYERS]
    assert not unknown, f"modules outside the layers {sorted(LAYERS)}: {unknown}"


def test_imports_flow_down_the_layers() -> None:
    assert upward_edges(module_imports(PACKAGE)) == []


def test_the_module_graph_has_no_cycles() -> None:
    graph = {m: {d for d in deps if d} for m, deps in module_imports(PACKAGE).items() if m}
    assert cycles(graph) == []


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_imports(PACKAGE) == []


@pytest.fixture()
def toy_package(tmp_path: Path) -> Path:
    """A package laid out like ours: data/tasks.py, scoring/evaluator.py, searchers/base.py."""
    root = tmp_path / "autoprompt_search"
    for folder in ("data", "scoring", "searchers"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("from .searchers.base import Searcher\n")
    (root / "data" / "tasks.py").write_text("class Task: ...\n")
    (root / "scoring" / "evaluator.py").write_text("from ..data.tasks import Task\n")
    (root / "searchers" / "base.py").write_text("from ..scoring.evaluator import Task\nclass Searcher: ...\n")
    return root


def test_the_checks_pass_on_a_clean_toy_package(toy_package: Path) -> None:
    graph = module_imports(toy_package)
    assert graph["searchers.base"] == {"scoring.evaluator"}
    assert upward_edges(graph) == [] and cycles(graph) == [] and private_imports(toy_package) == []


def test_an_upward_import_hidden_in_a_function_is_caught(toy_package: Path) -> None:
    (toy_package / "data" / "tasks.py").write_text("def load():\n    from ..searchers.base import Searcher\n")
    assert upward_edges(module_imports(toy_package)) == ["data.tasks -> searchers.base"]


def test_a_back_edge_within_a_layer_is_caught(toy_package: Path) -> None:
    (toy_package / "scoring" / "plan.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .evaluator import Task\n")
    (toy_package / "scoring" / "evaluator.py").write_text("from ..data.tasks import Task\nfrom . import plan\n")
    graph = module_imports(toy_package)
    assert cycles(graph) == [["scoring.evaluator", "scoring.plan", "scoring.evaluator"]]


def test_a_private_import_is_caught(toy_package: Path) -> None:
    (toy_package / "scoring" / "evaluator.py").write_text("from ..data.tasks import _helper\n")
    assert private_imports(toy_package) == ["scoring/evaluator.py: _helper"]
