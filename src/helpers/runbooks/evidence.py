"""What every evidence function returns: whether a condition holds, one line saying why, the table.

The evidence functions are grouped by what they read: :mod:`helpers.runbooks.evidence_sources`
(the landing zone), :mod:`helpers.runbooks.evidence_runs` (run records, marts' freshness, the
scheduler) and :mod:`helpers.runbooks.evidence_marts` (the mart partitions' own checks and rows).
Each works *as of* ``ctx.as_of``. ``data["targets"]``, when present, lists the ``[pipeline,
partition]`` pairs a re-run would repair (:func:`helpers.runbooks.fixes.rerun_targets`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from helpers.checks.framework import json_safe


@dataclass
class Evidence:
    """Whether a condition holds, one line saying why, and the table behind it."""

    holds: bool
    detail: str
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self, *, max_rows: int = 20) -> dict[str, Any]:
        """The verdict, the line, the data and the table's first ``max_rows`` rows."""
        rows = self.frame.head(max_rows).to_dict("records") if not self.frame.empty else []
        return json_safe({"holds": self.holds, "detail": self.detail, **self.data, "rows": rows})

    def __repr__(self) -> str:
        head = f"[{'HOLDS' if self.holds else 'no'}] {self.detail}"
        return head if self.frame.empty else f"{head}\n{self.frame.to_string(max_rows=30)}"

    def _repr_html_(self) -> str:
        mark = "<b>HOLDS</b>" if self.holds else "no"
        table = "" if self.frame.empty else self.frame.to_html(max_rows=30, index=False)
        return f"<p>[{mark}] {html.escape(self.detail)}</p>{table}"
