"""anec's import graph, for `lint-imports` and the cycle test.

grimp (under import-linter) finds a package's modules by walking its folder, so it never sees
`anec.dialects` and `anec.lowering`, which pyproject's `package-dir` maps from `dialects/` and
`lowering/`, and it drops every import of them. `import_graph()` builds the whole graph from the
three source trees instead: every `import` statement, at module level or inside a function or a
`TYPE_CHECKING` block alike. `AnecLayersContract` is import-linter's layers contract checked on that
graph (registered under `contract_types` in `.importlinter`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import grimp
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import ContractCheck

ROOT = Path(__file__).resolve().parents[1]
TREES = {"anec": ROOT / "anec", "anec.dialects": ROOT / "dialects", "anec.lowering": ROOT / "lowering"}


def source_modules() -> dict[str, Path]:
    """Every module of anec by its dotted name (a package by its `__init__.py`)."""
    modules: dict[str, Path] = {}
    for package, folder in TREES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if package == "anec" and name.split(".")[1:2] in (["dialects"], ["lowering"]):
                continue  # `anec/dialects` would shadow the mapped tree; there is none, but be exact
            modules[name] = path
    return modules


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    for alias in node.names:
        yield f"{base}.{alias.name}"  # a submodule if there is one, else a name in `base`


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> grimp.ImportGraph:
    modules = source_modules()
    graph = grimp.ImportGraph()
    for name in modules:
        graph.add_module(name)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for imported in _imported(node, name, path.name == "__init__.py"):
                    target = _resolve(imported, modules) if imported.startswith("anec") else None
                    if target and target != name:
                        graph.add_import(importer=name, imported=target, line_number=node.lineno,
                                         line_contents=ast.unparse(node))
    return graph


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The import cycles among anec's modules: strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


class AnecLayersContract(LayersContract):
    """import-linter's layers contract, on the graph of all three source trees."""

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        return super().check(import_graph(), verbose)
