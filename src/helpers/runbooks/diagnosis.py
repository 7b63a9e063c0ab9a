"""The Diagnose step: the symptom, the candidate causes with their evidence, and the conclusion.

:class:`Diagnosis` concludes with one line and a ``cause``: a failure-catalogue id, a generic
condition id (:data:`GENERIC_CAUSES`) or :data:`NO_PROBLEM`. :meth:`Diagnosis.glue` records the
``diagnosis``, ``cause``, ``evidence``, ``findings``, ``fixes`` and ``verification`` scraps, which
:mod:`helpers.runbooks.registry` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from helpers.checks.framework import json_safe
from helpers.runbooks.context import RunbookContext
from helpers.runbooks.evidence import Evidence
from helpers.runbooks.fixes import fixes, rerun_targets
from helpers.runbooks.formatting import clip
from helpers.runbooks.verification import Verification, verify
from helpers.runs.scraps import glue_all

NO_PROBLEM = "no_problem_found"
# Causes outside the failure catalogue, named after the generic runbook that handles them.
GENERIC_CAUSES: tuple[str, ...] = (
    "row_count_anomaly",
    "null_critical_columns",
    "job_failure",
    "fix_deadline",
    "month_end_close",
)
# The diagnosis line stays readable in a page or a chat message; the evidence scrap has the rest.
SYMPTOM_CHARS, DETAIL_CHARS = 240, 360


@dataclass(frozen=True)
class Finding:
    """One candidate cause: the cause id it implies, which "likely cause" it is, and its evidence."""

    cause: str
    reason: str
    holds: bool
    detail: str
    evidence: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "reason": self.reason, "holds": self.holds, "detail": self.detail}


class Diagnosis:
    """The symptom and the candidate causes of one runbook run, and the conclusion.

    :meth:`symptom` says whether the problem is there now; :meth:`finding` records each likely
    cause with its evidence, most specific first. :meth:`conclude`: no symptom -> ``no problem
    found`` (with the evidence that says so); a symptom and holding findings -> the first one's
    cause; a symptom and no holding finding -> ``default_cause``, saying no cause was confirmed.
    """

    def __init__(self, ctx: RunbookContext, *, default_cause: str) -> None:
        self.ctx = ctx
        self.default_cause = default_cause
        self.symptoms: list[Evidence] = []
        self.findings: list[Finding] = []
        self.notes: dict[str, Any] = {}
        self.verification: Verification | None = None
        self._concluded: tuple[str, str] | None = None

    def symptom(self, evidence: Evidence) -> Evidence:
        """Record whether the runbook's problem is present now (several calls: any of them)."""
        self.symptoms.append(evidence)
        self._concluded = None
        return evidence

    def finding(self, cause: str, reason: str, evidence: Evidence) -> Evidence:
        """Record one likely cause (``cause``: a catalogue id or a generic cause id)."""
        self.findings.append(Finding(cause, reason, evidence.holds, evidence.detail, evidence.as_json()))
        self._concluded = None
        return evidence

    def note(self, key: str, value: Any) -> None:
        """Extra evidence to record with the diagnosis."""
        self.notes[key] = json_safe(value)

    @property
    def present(self) -> bool:
        return any(e.holds for e in self.symptoms)

    def _conclusion(self) -> tuple[str, str]:
        if self._concluded is None:
            shown = "; ".join(e.detail for e in self.symptoms if e.holds) or "; ".join(
                e.detail for e in self.symptoms
            )
            shown = clip(shown or "nothing to check", SYMPTOM_CHARS)
            holding = [f for f in self.findings if f.holds]
            if not self.present:
                checked = ", ".join(f.reason for f in self.findings)
                text = f"no problem found: {shown}" + (f" (also checked: {checked})" if checked else "")
                self._concluded = (NO_PROBLEM, text)
            elif holding:
                first = holding[0]
                also = ", ".join(f.reason for f in holding[1:])
                text = f"{first.cause}: {first.reason} - {clip(first.detail, DETAIL_CHARS)}"
                text += f" (also: {also})" if also else ""
                self._concluded = (first.cause, f"{text} [symptom: {shown}]")
            else:
                text = f"{self.default_cause}: {shown}; no likely cause confirmed by the evidence"
                self._concluded = (self.default_cause, text)
        return self._concluded

    @property
    def cause(self) -> str:
        return self._conclusion()[0]

    @property
    def text(self) -> str:
        return self._conclusion()[1]

    @property
    def evidence(self) -> dict[str, Any]:
        """What the diagnosis rests on, JSON-able: the symptom, each finding, notes."""
        return json_safe(
            {
                "context": self.ctx.as_json(),
                "symptom": [e.as_json() for e in self.symptoms],
                "findings": [{**f.as_json(), "evidence": f.evidence} for f in self.findings],
                **self.notes,
            }
        )

    def targets(self, *evidence: Evidence) -> list[tuple[str, str]]:
        """:func:`rerun_targets` of ``evidence`` when the problem is present, else nothing to re-run."""
        return rerun_targets(*evidence) if self.present else []

    def verify(
        self, check_id: str | None = None, *, kind: str | None = None, match: str = ""
    ) -> Verification:
        """:func:`verify` (stored as ``self.verification``). Without an alert's check and with no
        problem found there is nothing to verify."""
        if not (check_id or self.ctx.check_id) and not self.present:
            self.verification = Verification((), "none", False)
            print("verify: nothing to verify (no problem found)")
        else:
            self.verification = verify(check_id, self.ctx, kind=kind, match=match)
        return self.verification

    def table(self) -> pd.DataFrame:
        """The findings as a table (cause, likely cause, holds, detail)."""
        return pd.DataFrame(
            [f.as_json() for f in self.findings], columns=["cause", "reason", "holds", "detail"]
        )

    def conclude(self) -> str:
        """Print and return the diagnosis line."""
        print("DIAGNOSIS:", self.text)
        return self.text

    def glue(self) -> dict[str, Any]:
        """Record the outcome as scraps: ``diagnosis`` (text), ``cause``, ``evidence``, ``findings``,
        ``fixes`` and ``verification``; returns them."""
        scraps = {
            "diagnosis": self.text,
            "cause": self.cause,
            "evidence": self.evidence,
            "findings": [f.as_json() for f in self.findings],
            "fixes": [f.as_json() for f in fixes()],
            "verification": self.verification.as_json() if self.verification else {},
        }
        glue_all({name: json_safe(value) for name, value in scraps.items()})
        return scraps
