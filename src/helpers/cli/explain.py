"""``workbook explain``: the chain behind an investor figure, or the companies behind it (``--accounts``).

The chain (see ``helpers.investor.explain``) is printed in four sections, readable at 100 columns:
the investor run, the upstream runs it read, the mart partitions, the landing deliveries with their
SHA-256. ``--accounts`` (see ``helpers.investor.explain_accounts``) lists the companies behind an
MRR movement or a customer count and their total, which equals the figure. ``--json`` prints the
whole of either for programs. Exit codes: 0 ok, 1 something does not hold together (a checksum
that differs with ``--verify``, accounts that do not add up to the figure), 2 an unknown metric, a
month without investor figures or a bad option.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from helpers.cli import console
from helpers.core.errors import EXIT_FAILED, EXIT_OK, UsageError
from helpers.core.money import usd
from helpers.core.periods import period_days
from helpers.core.timeutil import parse_logical_date

if TYPE_CHECKING:  # the investor modules import pandas and SQLAlchemy: only when the verb runs
    from helpers.investor.explain import Chain, MartPartition, RunInfo, SourceDeliveries
    from helpers.investor.explain_accounts import AccountRows

WIDTH = 100
SHOWN_FILES = 1  # deliveries listed per source without --all-files (the latest arrivals)
MOVEMENT_LABELS = {
    "churn_voluntary": "churn (vol.)",
    "churn_involuntary": "churn (invol.)",
}


# ---------------------------------------------------------------- text helpers


def fit(line: str, width: int = WIDTH) -> list[str]:
    """``line`` broken at ``/`` or spaces into lines of at most ``width``; continuations indented."""
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    out = []
    while len(line) > width:
        cut = max(line.rfind(" ", 0, width), line.rfind("/", 0, width) + 1)
        if cut <= len(indent):
            break
        out.append(line[:cut].rstrip())
        line = indent + line[cut:].lstrip()
    return [*out, line]


def emit(lines: Iterable[str]) -> None:
    for line in lines:
        for part in fit(line):
            print(part)


def plural(n: int, word: str) -> str:
    """``1 row``, ``2 rows``, ``3 companies``."""
    if n == 1:
        return f"1 {word}"
    return f"{n:,} " + (word[:-1] + "ies" if word.endswith("y") else word + "s")


def when(value: dt.datetime | str | None) -> str:
    """``2026-10-16 12:00Z`` (UTC) for people."""
    if value is None:
        return "?"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ")


def month_arg(text: str) -> str:
    try:
        month = parse_logical_date(text, "month")
    except ValueError:
        month = None
    if month != text:
        raise UsageError(f"--month: expected a month as YYYY-MM, got {text!r}")
    return month


# ---------------------------------------------------------------- the chain


def figure_lines(chain: Chain) -> list[str]:
    from helpers.investor.explain import display_path
    from helpers.investor.metrics import format_value

    m, pub = chain.metric, chain.publication
    raw = f"{chain.value} USD cents" if m.unit == "usd_cents" else f"{chain.value!r} {m.unit}"
    status = chain.status + (f": {chain.status_reason}" if chain.status_reason else "")
    out = [
        f"{m.label} ({m.name}), {chain.period}",
        f"  value    {format_value(chain.value, m.unit)}  ({raw}; {status})",
    ]
    if pub.get("published"):
        by = f"by {pub['published_by']}"
        out.append(f"  report   version {pub['version']} published {when(pub['published_at'])} {by}")
        out.append(f"           {display_path(pub['path'])}")
        if pub.get("published_value") is not None and pub["published_value"] != chain.value:
            was = format_value(pub["published_value"], m.unit)
            out.append(
                f"           CHANGED since: published {was} (investor run {pub.get('published_run_id')})"
            )
    else:
        out.append(f"  report   not published (workbook close --month {chain.period} --final publishes it)")
    latest = pub.get("latest_report")
    if latest:
        label = latest.get("label") or latest["status"]
        out += [
            f"  latest report run {latest['run_id']} ({label})",
            f"           {display_path(latest.get('archive'))}",
        ]
    return out


def run_lines(run: RunInfo) -> list[str]:
    from helpers.investor.explain import display_path

    if run.status is None:
        return [f"  {run.run_id}: NO RUN RECORD"]
    missing = "" if run.archive_exists else "  (MISSING)"
    code = run.code_version or "?"
    return [
        f"  {run.pipeline} {run.partition}  {run.status}  as of {when(run.as_of)}  code {code}",
        f"    run      {run.run_id}",
        f"    archive  {display_path(run.archive)}{missing}",
    ]


def mart_lines(marts: Iterable[MartPartition]) -> list[str]:
    out = []
    for m in marts:
        if m.rows is None:
            out.append(f"  {m.table} {m.label()}: never written")
            continue
        flag = "" if m.current else f"  (REWRITTEN: the figure came from {m.expected_run_id})"
        out.append(f"  {m.table} {m.label()}: {plural(m.rows, 'row')}, written {when(m.written_at)}")
        out.append(f"    by {m.run_id}{flag}")
    return out


def delivery_lines(source: SourceDeliveries, *, all_files: bool) -> list[str]:
    read = sorted(source.read, key=lambda d: (d.arrived_at, d.file))
    shown = read if all_files else read[-SHOWN_FILES:]
    other = f"+{source.visible_elsewhere} other partitions seen"
    out = [f"    {source.source}: {len(read)} of the month, {plural(source.rows, 'row')} ({other})"]
    for d in shown:
        check = {True: "  checksum ok", False: "  CHECKSUM DIFFERS"}.get(source.verified.get(d.file), "")
        out.append(f"      {d.file}  {plural(d.rows, 'row')}  arrived {when(d.arrived_at)}{check}")
        out.append(f"        sha256 {d.sha256}")
    if len(read) > len(shown):
        out.append(f"      ... {len(read) - len(shown)} more of the month (--all-files lists them)")
    for d in source.arrived_after:
        out.append(f"      not read: {d.file} arrived {when(d.arrived_at)}, after the run's as of")
    return out


def chain_lines(chain: Chain, *, all_files: bool) -> list[str]:
    from helpers.investor.explain import display_path

    out = figure_lines(chain)
    out += ["", "1 Investor run (wrote the figure to investor_monthly)", *run_lines(chain.investor_run)]
    out += ["", "2 Upstream runs (computed the figure; the investor run read their marts)"]
    for run in chain.upstream_runs:
        out += run_lines(run)
    out += ["", "3 Mart partitions (partition_writes)", *mart_lines(chain.marts)]
    first, last = period_days(chain.period)
    out += ["", f"4 Landing deliveries of the month ({first}..{last}) each upstream run read"]
    out.append(f"  landing zone {display_path(chain.landing_root)}; files relative to <source>/")
    for rl in chain.landing:
        out.append(f"  {rl.run.run_id} (as of {when(rl.run.as_of)})")
        for s in rl.sources:
            out += delivery_lines(s, all_files=all_files)
    problems = chain.problems
    out += ["", "Problems: none" if not problems else "Problems:", *(f"  {p}" for p in problems)]
    return out


# ---------------------------------------------------------------- --accounts


def plan(tier: Any, seats: Any, mrr: int) -> str:
    """``pro x 12`` (tier and seats); ``-`` without MRR, ``?`` when unknown."""
    import pandas as pd

    if mrr <= 0:
        return "-"
    if tier is None or pd.isna(tier):
        return "?"
    return str(tier) if seats is None or pd.isna(seats) else f"{tier} x {int(seats)}"


def account_table(found: AccountRows) -> list[str]:
    """The companies as aligned columns (money right-aligned), then their total."""
    heads = ("account", "movement", "plan before", "MRR before", "plan after", "MRR after", "amount")
    rows = [
        (
            str(r.account_id),
            MOVEMENT_LABELS.get(r.movement, str(r.movement)),
            plan(r.tier_before, r.seats_before, r.mrr_before_usd_cents),
            usd(int(r.mrr_before_usd_cents)),
            plan(r.tier_after, r.seats_after, r.mrr_after_usd_cents),
            usd(int(r.mrr_after_usd_cents)),
            usd(int(r.amount_usd_cents)),
        )
        for r in found.rows.itertuples(index=False)
    ]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]

    def line(cells: tuple[str, ...]) -> str:
        out = "  " + cells[0].ljust(widths[0])
        for i in range(1, len(cells)):
            out += "  " + (cells[i].rjust(widths[i]) if i in (3, 5, 6) else cells[i].ljust(widths[i]))
        return out.rstrip()

    label = f"total: {plural(len(rows), 'company')}"
    span = sum(widths[:-1]) + 2 * (len(widths) - 2)
    total = "  " + label.ljust(span) + "  " + usd(int(found.rows["amount_usd_cents"].sum())).rjust(widths[-1])
    return [line(heads), *(line(r) for r in rows), total]


def accounts_lines(found: AccountRows) -> list[str]:
    from helpers.investor.metrics import format_value

    m, src, before = found.metric, found.source, found.before
    shown = format_value(found.figure, m.unit)
    what = plural(found.total, "company") if found.rule.count else "the sum of the amounts below"
    verdict = "exact" if found.matches else f"DIFFERS: {found.total} against the figure {found.figure}"
    out = [f"{m.label} ({m.name}), {found.period}: {shown}", f"  = {what} ({verdict})"]
    if m.name == "arr_usd_cents":
        out.append("  (each company's amount is 12 x its ending MRR)")
    out += [
        f"  from {src.table} period={found.period}: {plural(src.rows or 0, 'row')}, "
        f"written {when(src.written_at)}",
        f"    by {src.run_id}",
    ]
    if not src.current:
        out.append(f"    REWRITTEN since the investor figure, which came from {found.figure_run_id}")
    prev = before.partition["period"]
    known = (
        f"{before.table} period={prev} (each company's plan at its end)"
        if before.rows is not None
        else (f"unknown: {before.table} has no {prev} (workbook run growth_aggregate --date {prev})")
    )
    out += [f"  plans before: {known}", ""]
    return [*out, *(account_table(found) if len(found.rows) else ["  no companies"])]


# ---------------------------------------------------------------- the verb


def cmd_explain(args: argparse.Namespace) -> int:
    """Print the chain behind ``METRIC`` of ``--month`` (or its companies with ``--accounts``)."""
    from helpers.investor import explain as ex
    from helpers.investor import explain_accounts

    month = month_arg(args.month)
    if args.accounts:
        found = explain_accounts.explain_accounts(month, args.metric)
        if args.json:
            console.print_json(found.as_json())
        else:
            emit(accounts_lines(found))
        if not found.matches:
            console.error(f"the companies add up to {found.total}, not the figure {found.figure}")
        return EXIT_OK if found.matches else EXIT_FAILED
    chain = ex.explain(month, args.metric, verify=args.verify)
    if args.json:
        console.print_json(chain.as_json())
    else:
        emit(chain_lines(chain, all_files=args.all_files))
    bad = [p for p in chain.problems if "SHA-256" in p]
    for p in bad:
        print(f"error: {p}", file=sys.stderr)
    return EXIT_FAILED if bad else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``explain`` to the ``workbook`` parser."""
    p = sub.add_parser(
        "explain",
        help="the chain behind an investor figure: runs, marts, landing files (--accounts: its companies)",
        description="Follow one figure of investor_monthly down to the landing files it came from. "
        "Exit codes: 0 ok, 1 a checksum differs (--verify) or the companies do not add up to the "
        "figure, 2 unknown metric, a month without investor figures, or bad input.",
    )
    p.add_argument("metric", metavar="METRIC", help="an investor metric, e.g. ending_mrr_usd_cents, dau_avg")
    p.add_argument("--month", required=True, help="the month of the figure, YYYY-MM")
    p.add_argument(
        "--accounts",
        action="store_true",
        help="list the companies behind an MRR movement or a customer count (they add up to it)",
    )
    p.add_argument("--all-files", action="store_true", help="list every landing delivery, not the latest")
    p.add_argument("--verify", action="store_true", help="recompute each listed file's SHA-256")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=cmd_explain)
