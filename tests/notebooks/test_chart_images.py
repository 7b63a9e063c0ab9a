"""Charts render: every pipeline notebook that draws one shows it as an inline image in its archive.

The runner's archived HTML is what the team opens; a chart must be a picture there (and in
JupyterLab), not ``<Figure size 800x380 with 1 Axes>``, and its ``<img>`` says what it plots (``alt``
text, ``data-points``: the template reads them from the chart's PNG metadata).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import REPO, demo_landing, home_with_demo, workbook
from helpers.core import config as cfgmod

pytestmark = pytest.mark.notebooks
INLINE_PNG = re.compile(r'<img[^>]+src="data:image/png;base64,[A-Za-z0-9+/=]{200,}')


def drawing_pipelines() -> list[cfgmod.Pipeline]:
    """The configured pipelines whose notebook calls the chart helpers."""
    pipes = cfgmod.load(REPO / "config").pipelines.pipelines.values()
    return [p for p in pipes if "charts." in (REPO / p.notebook).read_text()]


def test_every_pipeline_that_draws_a_chart_archives_it_as_an_inline_image(home, tmp_path_factory):
    drawing = drawing_pipelines()
    assert {p.id for p in drawing} >= {"profit_aggregate", "growth_aggregate", "engagement_aggregate"}
    home_with_demo(
        home, demo_landing(tmp_path_factory, accounts=40, months=3, seed=7, end="2026-10-31", events=True)
    )
    for p in drawing:
        date = "2026-10" if p.partition == "month" else "2026-10-30"
        proc = workbook(
            "run", p.id, "--date", date, "--as-of", "2026-11-05T06:00:00Z", "--json", "-q", timeout=600
        )
        result = json.loads(proc.stdout)
        assert result["status"] == "succeeded", (p.id, result.get("error"))
        page = (Path(result["archive"]) / "notebook.html").read_text()
        assert INLINE_PNG.search(page), p.id
        assert "<Figure size" not in page, p.id  # no chart left as its text repr
        described = re.search(r'<img [^>]*alt="([^"]+)"[^>]*data-points="(\d+)"', page)
        assert described and int(described.group(2)) >= 1, p.id  # says what it plots (alt text, points)
