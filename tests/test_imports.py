"""No import cycles among yapbench's and provision's modules, nor among their packages.

The graph is read from the source (every import statement, including those inside functions and under
TYPE_CHECKING: a lazy import still makes the layers depend on each other). Packages: a subpackage such as
yapbench.report counts as one node with all its modules; a top-level module (yapbench.gates) is a node of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("yapbench", "provision")


def modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package)"""
    found = {}
    for top in packages:
        for path in (root / top).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, dict[str, str]]:
    """module -> {imported module: "file:line" of the first such import}"""
    mods = modules(root, packages)

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, str]] = {}
    for name, (path, is_package) in mods.items():
        package = name.split(".") if is_package else name.split(".")[:-1]
        edges: dict[str, str] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [known(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module or ""
                # `from pkg import name` uses pkg itself; `from pkg import sub` imports the submodule and runs pkg
                # first, so it depends on both (pkg's __init__ importing sub, even lazily, closes a cycle)
                targets = [known(base)] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            for target in targets:
                if target and target != name:
                    edges.setdefault(target, f"{path.relative_to(root)}:{node.lineno}")
        graph[name] = edges
    return graph


def package_of(module: str, mods: dict[str, tuple[Path, bool]]) -> str:
    head = ".".join(module.split(".")[:2])
    return head if mods.get(head, (None, False))[1] else module


def package_graph(graph: dict[str, dict[str, str]], mods: dict[str, tuple[Path, bool]]) -> dict[str, dict[str, str]]:
    packages: dict[str, dict[str, str]] = {}
    for module, edges in graph.items():
        source = packages.setdefault(package_of(module, mods), {})
        for target, where in edges.items():
            if package_of(target, mods) != package_of(module, mods):
                source.setdefault(package_of(target, mods), where)
    return packages


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def describe(graph: dict[str, dict[str, str]], components: list[list[str]]) -> str:
    return "\n".join(f"{a} -> {b} ({graph[a][b]})" for comp in components for a in comp for b in graph[a]
                     if b in comp)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    files = {
        "pkg/__init__.py": "X = 1\n",
        "pkg/low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import H\n",
        "pkg/high.py": "def f():\n    from . import low\n    from pkg.sub import leaf\n",
        "pkg/uses_init.py": "from . import X\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/leaf.py": "import pkg.uses_init\nfrom .. import X\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ("pkg",))
    assert {m: set(e) for m, e in graph.items()} == {
        "pkg": set(), "pkg.low": {"pkg.high"}, "pkg.high": {"pkg", "pkg.low", "pkg.sub", "pkg.sub.leaf"},
        "pkg.uses_init": {"pkg"},
        "pkg.sub": set(), "pkg.sub.leaf": {"pkg.uses_init", "pkg"}}
    assert graph["pkg.low"]["pkg.high"] == "pkg/low.py:3"
    assert cycles(graph) == [["pkg.high", "pkg.low"]]
    packages = package_graph(graph, modules(tmp_path, ("pkg",)))
    # a subpackage is one node
    assert packages["pkg.high"] == {"pkg": "pkg/high.py:2", "pkg.low": "pkg/high.py:2", "pkg.sub": "pkg/high.py:3"}
    assert set(packages["pkg.sub"]) == {"pkg.uses_init", "pkg"} and "pkg.sub.leaf" not in packages


def test_no_module_imports_itself_back():
    graph = import_graph()
    assert not cycles(graph), "import cycles between modules:\n" + describe(graph, cycles(graph))


def test_no_package_imports_itself_back():
    graph = package_graph(import_graph(), modules())
    assert not cycles(graph), "import cycles between packages:\n" + describe(graph, cycles(graph))
