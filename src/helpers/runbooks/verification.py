"""The Verify step: re-run the failing check at ``ctx.as_of`` and say whether it passes now.

Monitor checks are evaluated afresh; a pipeline's own domain checks only run inside its run, so their
latest stored result is shown. Results are recorded, and alerts synced (a pass resolves the alert),
only when fixes were applied (:func:`recorded_verification`): a diagnosis must not change what it observes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from helpers.checks.framework import CheckResult, json_safe
from helpers.core import config as cfgmod
from helpers.oncall import alerts as alertsmod
from helpers.runbooks.context import RunbookContext
from helpers.runbooks.evidence_marts import partition_results, results_frame


@dataclass(frozen=True)
class Verification:
    """The re-run check(s): ``source`` monitor (evaluated now), stored (a run's latest result) or none."""

    results: tuple[CheckResult, ...]
    source: str
    recorded: bool

    @property
    def passed(self) -> bool | None:
        """All passed (None: nothing to verify)."""
        return None if not self.results else not any(r.failed for r in self.results)

    def frame(self) -> pd.DataFrame:
        return results_frame(self.results)

    def as_json(self) -> dict[str, Any]:
        return json_safe(
            {
                "passed": self.passed,
                "source": self.source,
                "recorded": self.recorded,
                "results": [
                    {
                        "check_id": r.check_id,
                        "partition": r.partition,
                        "status": r.status,
                        "summary": r.summary,
                    }
                    for r in self.results
                ],
            }
        )

    def __repr__(self) -> str:
        verdict = {True: "PASSED", False: "STILL FAILING", None: "nothing to verify"}[self.passed]
        body = "" if not self.results else "\n" + self.frame().to_string()
        return f"verify: {verdict} ({self.source}{', recorded' if self.recorded else ''}){body}"


@dataclass(frozen=True)
class HandledVerification(Verification):
    """A :class:`Verification` that also passes when all that still fails is ``handled``: a check
    that keeps listing rows the pipeline already deals with (the landing zone is immutable), e.g.
    records quarantined with their reason. The alert stays open for the source's owner."""

    handled: tuple[str, ...] = ()

    @property
    def passed(self) -> bool | None:
        if not self.results:
            return None
        return all(not r.failed or r.check_id in self.handled for r in self.results)

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "passed": self.passed, "handled": list(self.handled)}

    def __repr__(self) -> str:
        text = super().__repr__().replace("STILL FAILING", "PASSED" if self.passed else "STILL FAILING")
        return text + (
            f"\nhandled by the pipeline (listed, not wrong): {', '.join(self.handled)}"
            if self.handled
            else ""
        )


def _pipeline_of(check_id: str, config: cfgmod.WorkbookConfig) -> str | None:
    head = check_id.split(".", 1)[0]
    return head if head in config.pipelines.pipelines else None


def _monitor_results(
    ctx: RunbookContext, pipeline: str, check_id: str, partition: str | None
) -> list[CheckResult]:
    from helpers.checks import monitors

    if partition and partition != monitors.CURRENT and (".row_count." in check_id or ".nulls." in check_id):
        found = monitors.partition_checks(pipeline, partition, as_of=ctx.as_of, config=ctx.config)
    else:
        found = monitors.evaluate_monitors(ctx.as_of, pipelines=[pipeline], config=ctx.config)
    mine = [r for r in found if r.check_id == check_id]
    same = [r for r in mine if r.partition == partition]
    return same or mine


def _stored_result(check_id: str, partition: str | None) -> list[CheckResult]:
    from helpers.checks import store

    fields = CheckResult.__dataclass_fields__
    for row in store.list_results(check_id=check_id, limit=50):
        if partition in (None, row["partition"]):
            return [CheckResult(**{k: row[k] for k in fields if k in row})]
    return []


def verify(
    check_id: str | None,
    ctx: RunbookContext,
    *,
    partition: str | None = None,
    kind: str | None = None,
    match: str = "",
) -> Verification:
    """Re-run the failing check at ``ctx.as_of`` (default: the context's check and partition).

    Monitor checks (freshness, row counts, NULLs, run status, SLAs) are evaluated afresh; a
    pipeline's own domain checks only run inside its run, so their latest stored result (e.g. from
    the re-run a fix made) is shown. Without a check id, every ``kind`` check of the pipelines in
    scope is evaluated (``match``: only check ids containing it). What is recorded:
    :func:`recorded_verification`.
    """
    from helpers.checks import monitors

    check_id = check_id or ctx.check_id
    partition = partition or ctx.partition
    results: list[CheckResult] = []
    source = "none"
    if check_id:
        pipeline = ctx.pipeline or _pipeline_of(check_id, ctx.config)
        if pipeline:
            results, source = _monitor_results(ctx, pipeline, check_id, partition), "monitor"
        if not results:
            results, source = _stored_result(check_id, partition), "stored"
    elif kind in ("row_count", "nulls"):
        results, source = partition_results(ctx, kind), "monitor"
    elif kind:
        found = (
            monitors.evaluate_monitors(ctx.as_of, pipelines=ctx.scope, config=ctx.config) if ctx.scope else []
        )
        mine = [r for r in found if r.kind == kind and r.pipeline in ctx.scope and match in r.check_id]
        results, source = mine, "monitor"
    return recorded_verification(ctx, results, source)


def recorded_verification(ctx: RunbookContext, results: Sequence[CheckResult], source: str) -> Verification:
    """The :class:`Verification` of re-run ``results`` (printed in one line).

    Monitor results are recorded, and alerts synced (a pass resolves the alert), only when fixes
    were applied: a diagnosis must not change what it observes.
    """
    from helpers.checks import store

    recorded = bool(ctx.apply_fix and results and source == "monitor")
    if recorded:
        store.record_results(list(results))
        alertsmod.sync(list(results), config=ctx.config)
    outcome = Verification(tuple(results), source if results else "none", recorded)
    print(repr(outcome).splitlines()[0])
    return outcome
