"""Published versions of a month's investor report: publish and lock, reopen and withdraw, restate.

``workbook close --final`` publishes version 1 of a month (``helpers.investor.close`` decides when):
the report is copied to :func:`published_dir` (:func:`write_files`), and one transaction records the
publication in ``close_publications`` (version, report run, the figures as published, the sign-offs),
locks the month's partitions (``helpers.runs.locks``) and writes the audit event. Then the published
HTML is printed to ``investor_report_<M>.pdf`` beside it (:func:`print_pdf`, headless Chromium with
the network off); without Chromium, or when it fails, the HTML stands published alone and
``publication.json`` says why there is no PDF.

``workbook reopen --month M --by DE1 --reason TEXT`` (:func:`reopen`) releases the locks, withdraws
the published report (it moves, its PDF and its ``publication.json`` marked ``withdrawn`` and a
``WITHDRAWN.txt`` saying who, when and why, to ``withdrawn/v<N>/`` beside it: kept, never deleted),
records it in the audit log and tells the team. The next ``--final`` publishes version N+1, whose
report opens with the *Restated* table (:func:`restated`): each figure that differs from the
withdrawn version, its old and new value, and the runs that changed it.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.core import config as cfgmod
from helpers.core import paths
from helpers.core.errors import UsageError
from helpers.core.timeutil import as_utc, naive_utc
from helpers.investor import signoff
from helpers.investor.metrics import BY_NAME, format_value
from helpers.runs import locks
from helpers.storage import warehouse
from helpers.storage.warehouse import metadata, register_tables

REPORT = "month_end_report"
PUBLISHED, WITHDRAWN = "published", "withdrawn"

close_publications = sa.Table(
    "close_publications",
    metadata,
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(12), nullable=False),  # published | withdrawn
    sa.Column("published_at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("published_by", sa.String(64), nullable=False),
    sa.Column("as_of", sa.DateTime(), nullable=False),
    sa.Column("report_run_id", sa.String(80), nullable=True),
    sa.Column("path", sa.Text, nullable=False),  # where the report is now (moves when withdrawn)
    sa.Column("figures", sa.Text, nullable=False),  # JSON {metric: {value, run_id, source_run_id}}
    sa.Column("signed_off", sa.Text, nullable=False),  # JSON [[engineer, ISO time], ...]
    sa.Column("withdrawn_at", sa.DateTime(), nullable=True),
    sa.Column("withdrawn_by", sa.String(64), nullable=True),
    sa.Column("withdraw_reason", sa.Text, nullable=True),
)

register_tables(close_publications)


def published_dir(period: str) -> Path:
    """Where a final report of ``period`` is published: ``runs/published/month_end_report/<period>/``."""
    return paths.runs_dir() / "published" / REPORT / period


@dataclass(frozen=True)
class Publication:
    """One published version of a month's report."""

    period: str
    version: int
    status: str
    published_at: dt.datetime
    published_by: str
    as_of: dt.datetime
    report_run_id: str | None
    path: str
    figures: dict[str, dict[str, Any]]
    signed_off: tuple[tuple[str, str], ...]
    withdrawn_at: dt.datetime | None = None
    withdrawn_by: str | None = None
    withdraw_reason: str | None = None

    @classmethod
    def from_row(cls, r: Any) -> Publication:
        return cls(
            r["period"], r["version"], r["status"], as_utc(r["published_at"]), r["published_by"], as_utc(r["as_of"]),
            r["report_run_id"], r["path"], json.loads(r["figures"]),
            tuple((w, a) for w, a in json.loads(r["signed_off"])),
            as_utc(r["withdrawn_at"]) if r["withdrawn_at"] else None, r["withdrawn_by"], r["withdraw_reason"],
        )  # fmt: skip

    @property
    def html(self) -> Path:
        """Where the report is now: a published one in this workbook's :func:`published_dir` (``path``
        is absolute, and the workbook's home may have been copied or moved since), else ``path``."""
        if self.status == PUBLISHED:
            return published_dir(self.period) / Path(self.path).name
        return Path(self.path)

    @property
    def pdf(self) -> Path | None:
        """The report printed to PDF beside its HTML (None: none was written, see ``publication.json``)."""
        found = pdf_of(self.html)
        return found if found.is_file() else None

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("published_at", "as_of", "withdrawn_at"):
            out[k] = out[k].isoformat() if out[k] else None
        out["signed_off"] = [list(x) for x in self.signed_off]
        out["pdf"] = str(self.pdf) if self.pdf else None
        out.pop("figures")
        return out


def publications(period: str | None = None, *, engine: Engine | None = None) -> list[Publication]:
    """Every version of ``period``'s report (every month's: None), oldest month and version first."""
    q = sa.select(close_publications)
    if period is not None:
        q = q.where(close_publications.c.period == period)
    with (engine or warehouse.get_engine()).connect() as conn:
        rows = (
            conn.execute(q.order_by(close_publications.c.period, close_publications.c.version))
            .mappings()
            .all()
        )
    return [Publication.from_row(r) for r in rows]


def current(period: str, *, engine: Engine | None = None) -> Publication | None:
    """The version of ``period`` that stands published (None: none, or it was withdrawn)."""
    found = [p for p in publications(period, engine=engine) if p.status == PUBLISHED]
    return found[-1] if found else None


def next_version(period: str, *, engine: Engine | None = None) -> int:
    found = publications(period, engine=engine)
    return found[-1].version + 1 if found else 1


def published_figures(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The figures as published: ``{metric: {value, run_id, source_run_id}}`` from ``investor_monthly`` rows."""
    values = signoff.figures_of(frame)
    out = {}
    for r in frame.itertuples():
        out[str(r.metric)] = {"value": values[str(r.metric)], "run_id": r.run_id,
                              "source_run_id": None if pd.isna(r.source_run_id) else r.source_run_id}  # fmt: skip
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- publishing and locking


def pdf_of(report_html: Path) -> Path:
    """Where the PDF of a published report goes: beside it, ``investor_report_<M>.pdf``."""
    return report_html.with_suffix(".pdf")


def write_files(period: str, report_html: Path, meta: Mapping[str, Any]) -> Path:
    """Copy the final report to :func:`published_dir` as ``investor_report_<M>.html`` with
    ``publication.json`` (``meta``) beside it; the HTML is complete or absent."""
    target = published_dir(period)
    target.mkdir(parents=True, exist_ok=True)
    out = target / f"investor_report_{period}.html"
    tmp = out.with_suffix(".html.partial")
    shutil.copyfile(report_html, tmp)
    tmp.replace(out)
    pdf_of(out).unlink(missing_ok=True)  # a PDF left by an earlier version is not this version's
    (target / "publication.json").write_text(json.dumps(dict(meta), indent=2))
    return out


def print_pdf(report_html: Path) -> tuple[Path | None, str]:
    """Print the published report to PDF beside it (headless Chromium, network off), and say so in
    ``publication.json`` (``pdf``: its file name, or null with ``pdf_note``: why there is none).

    Never raises for the browser: ``(None, why)`` when Chromium is missing or fails; the HTML stays
    published either way.
    """
    from helpers.core import browser

    pdf, note = pdf_of(report_html), ""
    try:
        browser.print_pdf(report_html, pdf)
    except browser.BrowserMissing:
        note = f"no PDF: headless Chromium was not found ({browser.INSTALL_HINT}); the HTML is published"
    except Exception as e:  # a browser crash or timeout is a warning, never a failed publication
        note = f"no PDF: Chromium failed ({type(e).__name__}: {str(e)[-300:]}); the HTML is published"
    meta = report_html.parent / "publication.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        data.update(pdf=None if note else pdf.name, pdf_note=note or None)
        meta.write_text(json.dumps(data, indent=2))
    return (None, note) if note else (pdf, "")


def record(
    period: str,
    *,
    version: int,
    path: Path,
    as_of: dt.datetime,
    report_run_id: str | None,
    targets: Sequence[locks.Target],
    signed: Sequence[signoff.SignOff],
    now: dt.datetime,
    by: str,
    engine: Engine | None = None,
) -> Publication:
    """Record version ``version`` as published and lock ``targets``, in one transaction."""
    engine = engine or warehouse.get_engine()
    figures = published_figures(signoff.month_figures(period, engine=engine))
    signed_off = [(s.engineer, s.signed_at) for s in signed]
    with engine.begin() as conn:
        conn.execute(close_publications.insert().values(
            period=period, version=version, status=PUBLISHED, published_at=naive_utc(now), published_by=by,
            as_of=naive_utc(as_of), report_run_id=report_run_id, path=str(path), figures=json.dumps(figures),
            signed_off=json.dumps([[w, as_utc(a).isoformat()] for w, a in signed_off]),
        ))  # fmt: skip
        n = locks.lock_month(
            period, targets, version=version, locked_at=now, signed_off=signed_off, conn=conn
        )
        who = ", ".join(w for w, _a in signed_off) or "nobody (none required)"
        signoff.log_event(period, "publish", by, now,
                          f"published FINAL version {version} (signed off by {who}); locked {n} partitions",
                          {"version": version, "path": str(path), "report_run_id": report_run_id,
                           "locked": [f"{t.kind} {t.target} {t.partition}" for t in targets]}, conn=conn)  # fmt: skip
    found = current(period, engine=engine)
    assert found is not None and found.version == version
    return found


# ---------------------------------------------------------------- reopening


@dataclass(frozen=True)
class Reopened:
    """What :func:`reopen` did."""

    period: str
    version: int
    withdrawn_to: Path | None
    unlocked: int
    notified: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"period": self.period, "withdrawn_version": self.version, "unlocked": self.unlocked,
                "withdrawn_to": str(self.withdrawn_to) if self.withdrawn_to else None,
                "notified": list(self.notified)}  # fmt: skip


def _withdraw_files(pub: Publication, *, by: str, at: dt.datetime, reason: str) -> Path | None:
    """Move the published report, its PDF and its ``publication.json`` to ``withdrawn/v<N>/``, marked withdrawn."""
    source = pub.html
    if not source.exists():
        return None
    target = source.parent / "withdrawn" / f"v{pub.version}"
    target.mkdir(parents=True, exist_ok=True)
    meta = source.parent / "publication.json"
    data = json.loads(meta.read_text()) if meta.exists() else {"period": pub.period}
    data.update(status=WITHDRAWN, version=pub.version, withdrawn_at=as_utc(at).isoformat(), withdrawn_by=by,
                withdraw_reason=reason)  # fmt: skip
    (target / "publication.json").write_text(json.dumps(data, indent=2))
    (target / "WITHDRAWN.txt").write_text(
        f"Version {pub.version} of the investor report {pub.period} was WITHDRAWN on "
        f"{as_utc(at):%Y-%m-%d %H:%M} UTC by {by}: {reason}\nIt is kept here unchanged; do not distribute it.\n"
    )
    moved = target / source.name
    os.replace(source, moved)
    if pdf_of(source).exists():
        os.replace(pdf_of(source), pdf_of(moved))
    if meta.exists():
        meta.unlink()  # its content, marked withdrawn, is in the version's folder
    return moved


def reopen(
    period: str,
    *,
    by: str,
    reason: str,
    now: dt.datetime,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
) -> Reopened:
    """Unlock ``period``, withdraw its published report (kept), log it and tell the team.

    Raises :class:`UsageError` when ``by`` is not an engineer, ``reason`` is empty or the month is
    not published.
    """
    config = config or cfgmod.get()
    engine = engine or warehouse.get_engine()
    if by not in config.team.engineers:
        raise UsageError(f"--by: expected one of {', '.join(config.team.engineers)}, got {by!r}")
    if not reason.strip():
        raise UsageError("--reason: say why the month is reopened (it goes to the audit log and the team)")
    pub = current(period, engine=engine)
    if pub is None:
        raise UsageError(f"{period} is not published: nothing to reopen")
    moved = _withdraw_files(pub, by=by, at=now, reason=reason)
    with engine.begin() as conn:
        n = locks.release_month(period, by=by, at=now, reason=reason, conn=conn)
        conn.execute(
            close_publications.update()
            .where((close_publications.c.period == period) & (close_publications.c.version == pub.version))
            .values(status=WITHDRAWN, withdrawn_at=naive_utc(now), withdrawn_by=by, withdraw_reason=reason,
                    path=str(moved or pub.path))
        )  # fmt: skip
        signoff.log_event(period, "reopen", by, now,
                          f"reopened: version {pub.version} withdrawn, {n} partitions unlocked: {reason}",
                          {"version": pub.version, "withdrawn_to": str(moved) if moved else None,
                           "unlocked": n, "reason": reason}, conn=conn)  # fmt: skip
    team = [*config.team.engineers, "lead"]
    signoff.notify_people(
        config, team, subject=f"Investor report {period} version {pub.version} withdrawn: month reopened by {by}",
        body=f"{by} reopened {period}: {reason}\nThe published report is withdrawn (kept at {moved}); its "
        f"partitions are unlocked. The next `workbook close --month {period} --final` publishes version "
        f"{pub.version + 1} with a Restated table.",
        ref=f"reopen:{period}:{pub.version}", at=now, engine=engine,
    )  # fmt: skip
    return Reopened(period, pub.version, moved, n, tuple(team))


# ---------------------------------------------------------------- restatement


RESTATED_COLUMNS = ("metric", "label", "old", "new", "old_value", "new_value", "changed_by")


def restated(period: str, frame: pd.DataFrame | None = None, *, engine: Engine | None = None) -> pd.DataFrame:
    """Each figure that differs from the last withdrawn version: old and new value and the runs behind it.

    Empty (with :data:`RESTATED_COLUMNS`) when no version of ``period`` was withdrawn. ``changed_by``
    names the investor aggregate run that wrote the new figure and, when it changed, its source run.
    """
    withdrawn = [p for p in publications(period, engine=engine) if p.status == WITHDRAWN]
    if not withdrawn:
        return pd.DataFrame(columns=list(RESTATED_COLUMNS))
    old = withdrawn[-1].figures
    frame = (
        signoff.month_figures(period, engine=engine) if frame is None else frame[frame["period"] == period]
    )
    new = published_figures(frame)
    rows = []
    for metric in signoff.changed_figures({k: v["value"] for k, v in old.items()},
                                          {k: v["value"] for k, v in new.items()}):  # fmt: skip
        was, now = old.get(metric, {}), new.get(metric, {})
        unit = BY_NAME[metric].unit if metric in BY_NAME else "count"
        runs = [now.get("run_id")] if now.get("run_id") else []
        if now.get("source_run_id") and now.get("source_run_id") != was.get("source_run_id"):
            runs += [r for r in str(now["source_run_id"]).split(";") if r and r not in runs]
        rows.append({"metric": metric, "label": BY_NAME[metric].label if metric in BY_NAME else metric,
                     "old": format_value(was.get("value"), unit), "new": format_value(now.get("value"), unit),
                     "old_value": was.get("value"), "new_value": now.get("value"),
                     "changed_by": ", ".join(str(r) for r in runs) or "(removed)"})  # fmt: skip
    order = {name: i for i, name in enumerate(BY_NAME)}
    rows.sort(key=lambda r: order.get(r["metric"], len(order)))
    out = pd.DataFrame(rows, columns=list(RESTATED_COLUMNS))
    for col in ("old_value", "new_value"):  # keep cents exact (a float column would turn them into 1.9e6)
        out[col] = pd.Series([r[col] for r in rows], dtype=object)
    return out


def restated_html(period: str, frame: pd.DataFrame | None = None, *, engine: Engine | None = None) -> str:
    """The *Restated* section that opens a version after a reopen ('' for a first version).

    Each row carries ``data-metric``, ``data-old`` and ``data-new`` (exact warehouse values) for machines.
    """
    withdrawn = [p for p in publications(period, engine=engine) if p.status == WITHDRAWN]
    if not withdrawn:
        return ""
    last = withdrawn[-1]
    table = restated(period, frame, engine=engine)
    head = f"<tr><th>Figure</th><th>Was (version {last.version})</th><th>Now</th><th>Why it changed</th></tr>"
    body = "".join(
        f'<tr data-metric="{html.escape(r.metric)}" data-old="{_attr(r.old_value)}" '
        f'data-new="{_attr(r.new_value)}" data-runs="{_attr(r.changed_by)}"><td>{html.escape(r.label)}</td>'
        f"<td>{html.escape(r.old)}</td><td>{html.escape(r.new)}</td><td>{html.escape(_why(r.changed_by))}</td></tr>"
        for r in table.itertuples()
    )
    if not body:
        body = '<tr><td colspan="4">No figure changed.</td></tr>'
    intro = (
        f"Version {last.version + 1} restates version {last.version} (published "
        f"{last.published_at:%Y-%m-%d %H:%M} UTC, withdrawn {last.withdrawn_at:%Y-%m-%d %H:%M} UTC by "
        f"{last.withdrawn_by}: {last.withdraw_reason})."
    )
    return (
        '<div id="restated"><h2>Restated</h2>'
        f'<p>{html.escape(intro)}</p><table class="wb-kpi" id="restated-table">{head}{body}</table></div>'
    )


_SOURCES = {"profit_aggregate": "Profit", "growth_aggregate": "Growth", "engagement_aggregate": "Engagement"}


def _why(changed_by: str) -> str:
    """Why a restated figure changed, in words (the run ids stay in the row's ``data-runs``)."""
    if changed_by == "(removed)":
        return "no longer reported"
    found = []
    for rid in changed_by.split(", "):
        pipeline = rid.split("-", 1)[0]
        if pipeline in _SOURCES and _SOURCES[pipeline] not in found:
            found.append(_SOURCES[pipeline])
    if not found:
        return "recomputed from the same source figures"
    return f"{' and '.join(found)} figures recomputed from corrected data"


def _attr(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def restated_scrap(table: pd.DataFrame) -> dict[str, Mapping[str, Any]]:
    """The Restated table as the report glues it: ``{metric: {old, new, changed_by}}``."""
    return {r.metric: {"old": r.old_value, "new": r.new_value, "changed_by": r.changed_by}
            for r in table.itertuples()}  # fmt: skip
