"""Every committed notebook: no outputs, a kernelspec, one literal-only parameters cell."""

import nbformat
import pytest

from conftest import REPO
from helpers.runs.notebooks import from_percent, hygiene_problems, parameter_cell_problems, write_notebook

pytestmark = pytest.mark.unit
NOTEBOOKS = sorted(
    p
    for d in ("notebooks", "tests/fixtures")
    for p in (REPO / d).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_notebook_is_clean(path):
    assert hygiene_problems(path) == []


def test_checker_catches_outputs_missing_parameters_and_computation(tmp_path):
    nb = from_percent('# %% tags=["parameters"]\na: int = 1\nb = a * 2\n# %%\nprint(a)\n')
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    path = tmp_path / "bad.ipynb"
    write_notebook(nb, path)
    problems = "\n".join(hygiene_problems(path))
    assert "cell 1 has outputs" in problems
    assert "b is computed" in problems

    nb2 = from_percent("# %%\nx = 1\n")
    del nb2.metadata["kernelspec"]
    write_notebook(nb2, tmp_path / "noparams.ipynb")
    problems2 = "\n".join(hygiene_problems(tmp_path / "noparams.ipynb"))
    assert "exactly one cell tagged 'parameters'" in problems2
    assert "no kernelspec" in problems2


@pytest.mark.parametrize(
    "source, ok",
    [
        ('run_date: str = "2026-10-31"  # comment', True),
        ("n: int = -3\nflags: list = [1, 2]\nx = None", True),
        ("import os", False),
        ("n: int = len('abc')", False),
        ("a, b = 1, 2", False),
    ],
)
def test_parameter_cell_rules(source, ok):
    assert (parameter_cell_problems(source) == []) is ok
