"""The package's shape: imports point one way (no cycle), production never imports the demo, and
modules and functions stay a size a person can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.unit

SRC = REPO / "src"
HELPERS = SRC / "helpers"
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80
# The demo generator simulates a whole company day by day; its loops are exempt from the function size.
GENERATOR = ("helpers.demo.company", "helpers.demo.events", "helpers.demo.generate",
             "helpers.demo.sources_billing", "helpers.demo.sources_crm", "helpers.demo.sources_finance",
             "helpers.demo.faults_profit", "helpers.demo.faults_growth", "helpers.demo.faults_engagement")  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(HELPERS.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The helpers modules ``name`` imports (at module level or inside functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one node (Tarjan), as sorted lists."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    assert cycles(GRAPH) == []


def test_production_code_never_imports_the_demo():
    production = {n for n in MODULES if not n.startswith(("helpers.demo", "helpers.cli"))}
    offenders = {n: sorted(m for m in GRAPH[n] if m.startswith("helpers.demo")) for n in production}
    assert {n: m for n, m in offenders.items() if m} == {}


def test_no_module_over_800_lines():
    sizes = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES} == {}


def test_no_function_over_80_lines_outside_the_demo_generator():
    long = {}
    for name, path in MODULES.items():
        if name in GENERATOR:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = size
    assert long == {}


def test_the_architecture_page_lists_every_module():
    """docs/architecture.md lists each package (`helpers.<package>`) and its modules (`<module>`)."""
    page = (REPO / "docs" / "architecture.md").read_text()
    missing = []
    for name in MODULES:
        parts = name.split(".")
        if len(parts) < 3 or parts[-1] == "__main__":
            continue
        package, module = ".".join(parts[:2]), ".".join(parts[2:])
        if f"`{package}`" not in page or not (f"`{module}`" in page or f"`{module}/`" in page):
            missing.append(name)
    assert missing == []
