"""The Finance reconciliation pack: our Profit against Finance's ledger, the CRM findings, the
cross-pipeline validations and the open problems that need another team.

The notebook ``notebooks/reports/finance_reconciliation.ipynb`` calls these functions. The pack also
holds the engineering side of the month-end investor report: the close checklist, what is
provisional and why, and the runs behind every figure (the investor report itself keeps to the
figures, their sources in plain words and their definitions).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core.periods import shift_period
from helpers.investor.inputs import latest_run
from helpers.investor.metrics import PIPELINE, format_value, readable
from helpers.investor.report import _table, monthly


def reconciliation(period: str) -> tuple[pd.DataFrame, str]:
    """Profit against Finance's ledger: the month's differences by class and cause, and the status."""
    recon = _table("finance_reconciliation", where={"period": period})
    profit = _table("profit_monthly", where={"period": period})
    status = str(profit["reconciliation_status"].iloc[0]) if len(profit) else "no Profit figures"
    if recon.empty:
        return pd.DataFrame(columns=["class", "cause", "expected", "lines", "amount"]), status
    g = recon.groupby(["difference_class", "cause", "expected"], as_index=False).agg(
        lines=("line_id", "nunique"), cents=("component_usd_cents", "sum")
    )
    g = g[g["cents"] != 0].sort_values("cents", key=lambda s: s.abs(), ascending=False)
    g["amount"] = g["cents"].map(lambda c: format_value(c, "usd_cents"))
    g["cause"] = g["cause"].replace("", "(none)")
    return g.rename(columns={"difference_class": "class"})[
        ["class", "cause", "expected", "lines", "amount"]
    ], status


def reconciliation_lines(period: str, *, limit: int = 25) -> pd.DataFrame:
    """The ledger lines with a difference, largest first (ours minus Finance)."""
    recon = _table("finance_reconciliation", where={"period": period})
    if recon.empty:
        return pd.DataFrame(columns=["line_id", "ours", "finance", "difference", "explained by"])
    lines = recon.groupby("line_id", as_index=False).agg(
        ours=("our_usd_cents", "first"), finance=("finance_usd_cents", "first"),
        diff=("difference_usd_cents", "first"),
    )  # fmt: skip
    parts = recon[recon["component_usd_cents"].fillna(0) != 0]
    labels = parts["difference_class"].str.cat(parts["cause"].fillna(""), sep="/").str.rstrip("/")
    causes = labels.groupby(parts["line_id"]).agg(lambda s: ", ".join(sorted(set(s))))
    lines["causes"] = lines["line_id"].map(causes).fillna("")
    lines = lines[lines["diff"].fillna(0) != 0].sort_values("diff", key=lambda s: s.abs(), ascending=False)
    out = pd.DataFrame(
        {
            "line_id": lines["line_id"],
            "ours": lines["ours"].map(lambda c: format_value(c, "usd_cents")),
            "finance": lines["finance"].map(lambda c: format_value(c, "usd_cents")),
            "difference": lines["diff"].map(lambda c: format_value(c, "usd_cents")),
            "explained by": lines["causes"],
        }
    )
    return out.head(limit).reset_index(drop=True)


def validations(period: str, run_id: str | None) -> pd.DataFrame:
    """The investor aggregate's cross-pipeline validations as recorded with its run."""
    from helpers.checks import store

    if not run_id:
        return pd.DataFrame(columns=["check", "status", "summary"])
    rows = [r for r in store.list_results(run_id=run_id) if r["partition"] == period]
    latest: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["result_id"]):
        latest[r["check_id"]] = r
    return pd.DataFrame(
        [(k, v["status"], v["summary"]) for k, v in sorted(latest.items())],
        columns=["check", "status", "summary"],
    )


def bridge(period: str, run_id: str | None) -> pd.DataFrame:
    """The revenue vs MRR bridge recorded with the investor run (evidence of ``revenue_vs_mrr``)."""
    from helpers.checks import store

    found = store.list_results(run_id=run_id, check_id=f"{PIPELINE}.revenue_vs_mrr") if run_id else []
    steps = found[0]["evidence"].get("bridge") if found else None
    if not steps:
        return pd.DataFrame(columns=["step", "amount", "what"])
    frame = pd.DataFrame(steps)
    frame["amount"] = frame["usd_cents"].map(lambda c: format_value(c, "usd_cents"))
    return frame[["step", "amount", "what"]]


def pack_period(run_date: str, period: str = "") -> str:
    """The month the Finance meeting of ``run_date`` reconciles: ``period``, else the month before."""
    if period:
        return period
    return shift_period(str(run_date)[:7], -1)


def reconciliation_by_category(period: str) -> pd.DataFrame:
    """Ours against Finance's ledger per P&L category (USD): revenue, salaries, infrastructure, operations."""
    recon = _table("finance_reconciliation", where={"period": period})
    if recon.empty:
        return pd.DataFrame(columns=["category", "ours", "finance", "difference", "unexpected"])
    lines = recon.drop_duplicates("line_id")
    unexpected = recon[~recon["expected"].astype(bool)].groupby("category")["component_usd_cents"].sum()
    g = lines.groupby("category").agg(ours=("our_usd_cents", "sum"), finance=("finance_usd_cents", "sum"))
    g["difference"] = g["ours"] - g["finance"]
    g["unexpected"] = unexpected.reindex(g.index).fillna(0)
    out = g.reset_index()
    for c in ("ours", "finance", "difference", "unexpected"):
        out[c] = out[c].map(lambda v: format_value(v, "usd_cents"))
    return out


def pipeline_checks(pipeline: str, partition: str, *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """The checks recorded with a pipeline's latest run of ``partition``: check, status, summary."""
    from helpers.checks import store

    run = latest_run(pipeline, partition, engine=engine)
    if run.run_id is None:
        return pd.DataFrame(columns=["check", "status", "severity", "summary"])
    latest: dict[str, dict[str, Any]] = {}
    for r in sorted(store.list_results(run_id=run.run_id, engine=engine), key=lambda r: r["result_id"]):
        latest[r["check_id"]] = r
    return pd.DataFrame(
        [(k, v["status"], v["severity"], v["summary"][:160]) for k, v in sorted(latest.items())],
        columns=["check", "status", "severity", "summary"],
    )


def cross_team_items(as_of: dt.datetime, config: Any, *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Open alerts whose cause lies with another team, with the contact to bring to the meeting."""
    from helpers.oncall import alerts

    mapping = config.team.escalation.cross_team
    rows = []
    for a in alerts.list_alerts(open_only=True, limit=5000, engine=engine):
        key = mapping.get(a.catalogue_id or "")
        if key is None or a.opened_at > as_of:
            continue
        contact = config.team.contacts[key]
        rows.append((contact.team, contact.name, a.alert_id, a.pipeline, a.check_id, a.summary[:120]))
    return pd.DataFrame(rows, columns=["team", "contact", "alert", "pipeline", "check", "summary"])


# ---------------------------------------------------------------- the close and the runs behind the figures


def close_checklist(period: str, as_of: dt.datetime) -> pd.DataFrame:
    """The month-end close checklist of ``period`` at ``as_of`` (``helpers.investor.close``): blockers first."""
    from helpers.investor import close

    table = close.close_status(period, as_of).checklist()
    order = table["status"].map({"BLOCKER": 0, "ok": 1})
    return table.assign(_o=order).sort_values(["_o", "section", "pipeline"], kind="stable").drop(columns="_o")


def provisional(period: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """What is provisional in the month's investor figures and why, per source pipeline."""
    from helpers.investor import report

    return report.provisional(period, frame)


def provenance(
    period: str, frame: pd.DataFrame | None = None, *, engine: sa.Engine | None = None
) -> pd.DataFrame:
    """Every run the month's investor figures come from: pipeline, partition, run id, as of, code version."""
    from helpers.runs import records as runs

    frame = monthly(period, months=1, engine=engine) if frame is None else frame
    mine = frame[frame["period"] == period]
    ids: dict[str, str] = {}
    for pipeline, source in zip(mine["source_pipeline"], mine["source_run_id"], strict=True):
        for rid in str(source or "").split(";"):
            if rid and rid != "None":
                ids.setdefault(rid, pipeline)
    for rid in mine["run_id"].dropna().unique():
        ids.setdefault(str(rid), PIPELINE)
    rows = []
    for rid in sorted(ids):
        rec = runs.get_run(rid, engine=engine)
        used = (mine["source_run_id"].astype(str).str.contains(rid, regex=False)) | (mine["run_id"] == rid)
        rows.append(
            {"run id": rid, "pipeline": rec.pipeline if rec else ids[rid], "partition": rec.logical_date if rec else "",
             "status": rec.status if rec else "unknown",
             "as of": f"{rec.as_of:%Y-%m-%d %H:%M} UTC" if rec and rec.as_of else "",
             "finished": f"{rec.finished_at:%Y-%m-%d %H:%M:%S} UTC" if rec and rec.finished_at else "",
             "code version": (rec.code_version or "") if rec else "", "metrics": int(used.sum())}
        )  # fmt: skip
    columns = ["run id", "pipeline", "partition", "status", "as of", "finished", "code version", "metrics"]
    return pd.DataFrame(rows, columns=columns)


def metric_provenance(period: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per investor metric of ``period``: its value, status and the run that produced it."""
    frame = monthly(period, months=1) if frame is None else frame
    return readable(frame[frame["period"] == period]).reset_index(drop=True)
