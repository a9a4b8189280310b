"""The package layout's two rules (DESIGN §3, §9), checked on the source, not by convention.

1. Dependencies run one way: ``detectors`` -> ``defectgen``. No module of ``defectgen`` names ``detectors``, not
   even inside a function (the CLI finds the detectors' commands through the ``defectgen.commands`` entry points).
2. No import circles. Every import counts, including the ones inside functions, because a lazy import only hides
   a circle from the interpreter, not from a reader. The one circle allowed is each registry's lazy load of its
   built-ins (the registry is imported by what it registers, and imports it on first use).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("defectgen", "detectors")
# functions whose imports are a registry's lazy built-in load: the one circle a registry may close
LAZY_BUILTIN_LOADS = {("defectgen.registry", "_load_builtins"), ("detectors.registry", "_import_builtins")}


def _modules() -> Dict[str, Tuple[Path, str]]:
    """Module name -> (file, the package its relative imports start from)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                name = ".".join(parts[:-1])
                found[name] = (path, name)
            else:
                name = ".".join(parts)
                found[name] = (path, name.rpartition(".")[0])
    return found


def _imports(tree: ast.AST) -> Iterator[Tuple[ast.AST, str]]:
    """(node, enclosing function name or '') for every import statement, skipping ``if TYPE_CHECKING:`` blocks."""

    def visit(node: ast.AST, function: str) -> Iterator[Tuple[ast.AST, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (pair for orelse in child.orelse for pair in visit(orelse, function))
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, function
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            yield from visit(child, inner)

    yield from visit(tree, "")


def _targets(node: ast.AST, package: str, modules: Dict[str, Tuple[Path, str]]) -> Set[str]:
    """The repository modules an import statement names (a package's ``__init__`` only when a name is taken from
    it rather than a submodule)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level:
        base = package.split(".")
        base = base[:len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    targets = set()
    for alias in node.names:
        submodule = f"{module}.{alias.name}"
        targets.add(submodule if submodule in modules else module)
    return targets


def import_graph() -> Dict[str, Set[str]]:
    """Module -> the repository modules it imports (anywhere in the file), less the registries' lazy loads."""
    modules = _modules()
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, (path, package) in modules.items():
        for node, function in _imports(ast.parse(path.read_text(), str(path))):
            if (name, function) in LAZY_BUILTIN_LOADS:
                continue
            for target in _targets(node, package, modules):
                if target != name and target.split(".")[0] in PACKAGES:
                    graph[name].add(target)
    return graph


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import graph's strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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
            connect(node)
    return found


def test_defectgen_never_imports_detectors():
    upward = sorted(f"{name} -> {target}" for name, targets in import_graph().items() if name.startswith("defectgen")
                    for target in targets if target.split(".")[0] == "detectors")
    assert upward == [], "defectgen must not import detectors:\n" + "\n".join(upward)


def test_no_import_circles_but_the_registries():
    found = circles(import_graph())
    assert found == [], "import circles:\n" + "\n".join(" <-> ".join(component) for component in found)


def test_the_checker_finds_a_circle_and_an_upward_import():
    # the checks above must be able to fail: a planted circle and a planted upward edge are found
    graph = {"defectgen.a": {"defectgen.b"}, "defectgen.b": {"defectgen.c"}, "defectgen.c": {"defectgen.a"},
             "defectgen.d": {"detectors.x"}, "detectors.x": set()}
    assert circles(graph) == [["defectgen.a", "defectgen.b", "defectgen.c"]]
    tree = ast.parse("def f():\n    from detectors.cli import main\n")
    (node, function), = list(_imports(tree))
    assert function == "f" and _targets(node, "defectgen", {}) == {"detectors.cli"}


@pytest.mark.parametrize("source, expected", [
    ("from .. import registry", {"defectgen.registry"}),
    ("from ..registry import create_op", {"defectgen.registry"}),
    ("from . import base", {"defectgen.masks.base"}),
    ("from .base import RegionMask", {"defectgen.masks.base"}),
])
def test_relative_imports_resolve_to_modules(source, expected):
    modules = {"defectgen.registry": (Path(), "defectgen"), "defectgen.masks.base": (Path(), "defectgen.masks")}
    (node, _), = list(_imports(ast.parse(source)))
    assert _targets(node, "defectgen.masks", modules) == expected
