"""Notebook files: authoring from percent-format text, and the repository's hygiene rules.

Hygiene (docs/architecture.md, "Conventions"; enforced by ``tests/unit/runs/test_notebook_hygiene.py``):
a committed notebook has no outputs, keeps its kernelspec and cell tags, has exactly one cell
tagged ``parameters``, and that cell holds only typed, commented literals
(``name: type = literal``) — nothing computed, since papermill does not recompute derived values
after injecting new ones.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (workbook)", "language": "python"}
_CELL = re.compile(r"^# %%(?P<md> \[markdown\])?(?P<rest>.*)$")


def from_percent(text: str) -> nbformat.NotebookNode:
    """Build a notebook from ``# %%`` / ``# %% [markdown]`` cells; ``tags=[...]`` after the marker."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    cells: list[tuple[bool, list[str], list[str]]] = []
    for line in text.splitlines():
        m = _CELL.match(line)
        if m:
            tags = re.findall(r'"([^"]+)"', m.group("rest")) if "tags=" in m.group("rest") else []
            cells.append((bool(m.group("md")), tags, []))
        elif cells:
            cells[-1][2].append(line)
    for is_md, tags, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if is_md:
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines)
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines))
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def parameter_cell_problems(source: str) -> list[str]:
    """Statements of a parameters cell that are not ``name[: type] = literal``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"parameters cell does not parse: {e.msg} (line {e.lineno})"]
    problems = []
    for stmt in tree.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            value, name = stmt.value, stmt.target.id
        elif (
            isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
        ):
            value, name = stmt.value, stmt.targets[0].id
        else:
            problems.append(
                f"line {stmt.lineno}: only 'name: type = literal' assignments belong in parameters"
            )
            continue
        if not _is_literal(value):
            problems.append(f"line {stmt.lineno}: {name} is computed; parameters must be literals")
    return problems


def hygiene_problems(path: Path, *, require_parameters: bool = True) -> list[str]:
    """Every way ``path`` breaks the repository's notebook rules (empty list: clean)."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:
        return [f"{path}: not a readable notebook ({e})"]
    problems = []
    if not nb.metadata.get("kernelspec"):
        problems.append(f"{path}: no kernelspec in metadata")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append(
                f"{path}: cell {i} has outputs or an execution count (strip them before committing)"
            )
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if require_parameters and len(params) != 1:
        problems.append(f"{path}: expected exactly one cell tagged 'parameters', found {len(params)}")
    for c in params:
        problems.extend(f"{path}: {p}" for p in parameter_cell_problems(c.source))
    return problems


def strip_outputs(path: Path) -> bool:
    """Remove outputs and execution counts in place, keeping tags and kernelspec. True if changed."""
    nb = nbformat.read(str(path), as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(nb, str(path))
    return changed
