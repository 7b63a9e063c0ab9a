"""Reconciliation with Finance's ledger: every difference, line by line, classified and explained.

Finance books a monthly P&L (``finance_ledger``) with its own rules; ours differs from it by
design in two documented ways, and by accident in others. Both sides are compared at Finance's
grain, one *line* per (period, category, subcategory, currency), e.g.
``2026-09|operations|travel|EUR``. The difference of a line (ours minus Finance, USD cents) is
split exactly into components that add up to it:

=====================  ========================  =========  ===============================================
class                  cause                     expected   what it is
=====================  ========================  =========  ===============================================
``fx``                 ``rate_date``             yes        we convert at each day's rate, Finance at the
                                                            month-end rate of ``fx_rates``
``timing``             ``finance_close_rule``    yes        Finance books an expense submitted after its
                                                            close (the 5th business day) in the month it
                                                            was submitted; we book it in the month incurred
``timing``             ``dunning``               yes        revenue of lines still in dunning (``open``)
                                                            that Finance has already written off
``timing``             ``adjacent_month``        no         the same amount appears with the opposite sign
                                                            on the same line in the month before or after
``missing_category``   ``missing_in_ours`` /     no         one side has no rows at all for the category
                       ``missing_in_finance``               (subcategory) that month
``fx``                 ``rate_source``           no         Finance's rate is not the month-end rate
``unexplained``        ``""``                    no         whatever is left
=====================  ========================  =========  ===============================================

Every line gets every component (zero where it does not apply). The check ``finance_mismatch`` passes when the
unexpected components add up (in absolute value) to no more than the tolerance:
``max(reconciliation_tolerance_usd_cents, reconciliation_tolerance_share x Finance's revenue)``.
Without Finance's ledger for the month (it arrives on Finance's close day) the status is
``pending``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.money import MICRO, convert_cents
from helpers.core.periods import period_of, periods_around
from helpers.profit.fx import month_end_rates, rate_micros
from helpers.profit.inputs import concat_findings, empty_findings, latest, screen_integers, utc_day

KEY = ["category", "subcategory", "currency"]
EVIDENCE_COLUMNS = [
    "line_id", "category", "subcategory", "currency", "our_local", "our_usd_cents", "finance_local",
    "finance_usd_cents", "difference_usd_cents", "difference_class", "cause", "expected", "component_local",
    "component_usd_cents", "detail",
]  # fmt: skip


def finance_lines(ledger: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Finance's ledger lines (latest delivery of each ``line_id``) with the rate in millionths."""
    cols = ["period", *KEY, "line_id", "finance_local", "finance_rate_micros", "finance_usd_cents"]
    if not len(ledger):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols}), empty_findings()
    rows = latest(ledger, ["line_id"], ["booked_at"])
    rows, bad_local = screen_integers(rows, "amount_local", source="finance_ledger", key="line_id")
    rows, bad_usd = screen_integers(rows, "amount_usd", source="finance_ledger", key="line_id")
    out = rows.assign(
        period=period_of(utc_day(rows["period"])),
        finance_local=rows["amount_local"],
        finance_rate_micros=rate_micros(rows["fx_rate"]),
        finance_usd_cents=rows["amount_usd"],
    )
    return out[cols].reset_index(drop=True), concat_findings([bad_local, bad_usd])


def finance_period(ops: pd.DataFrame, cutoffs: Mapping[str, pd.Timestamp]) -> pd.Series:
    """The month Finance books each expense in: the month incurred if submitted before that
    month's cut-off (Finance's close), else the month submitted (docs/pipelines.md, "Reconciliation with Finance")."""
    cutoff = ops["period"].map(cutoffs)
    late = ops["submitted_at"] >= cutoff
    return ops["period"].where(~late, period_of(ops["submitted"]))


def bridge(ops: pd.DataFrame, cutoffs: Mapping[str, pd.Timestamp], periods: Sequence[str]) -> pd.DataFrame:
    """Expenses Finance books in another month than we do, as signed moves per line.

    One row per expense and side: ``-amount`` on the line of the month incurred (ours), ``+amount``
    on the line of the month Finance books it in. Rows outside ``periods`` are kept (a neighbour
    month needs them too).
    """
    cols = ["period", *KEY, "amount_local", "expense_id", "note"]
    known = ops[ops["period"].isin(cutoffs.keys())]
    booked = finance_period(known, cutoffs)
    moved = known[booked != known["period"]].assign(finance_period=booked[booked != known["period"]])
    if not len(moved):
        return pd.DataFrame(columns=cols)
    base = moved.assign(category="operations", subcategory=moved["category"])
    note = (
        moved["expense_id"] + " (submitted " + moved["submitted"].dt.strftime("%Y-%m-%d")
        + " after the " + moved["period"] + " close) booked by Finance in " + moved["finance_period"]
    )  # fmt: skip
    out = pd.concat(
        [
            base.assign(amount_local=-base["amount"], note=note),
            base.assign(period=base["finance_period"], amount_local=base["amount"], note=note),
        ],
        ignore_index=True,
    )
    out = out[out["period"].isin(periods)]
    return out[cols].reset_index(drop=True)


def line_table(
    ours: pd.DataFrame,
    moves: pd.DataFrame,
    finance: pd.DataFrame,
    month_end: pd.DataFrame,
    open_revenue: pd.DataFrame,
    periods: Sequence[str],
) -> pd.DataFrame:
    """Both sides of every line of ``periods`` side by side, with the replica of Finance's booking
    (``replica_local`` = ours moved by Finance's close rule) and the residual left to explain."""
    keys = ["period", *KEY]
    o = ours[ours["period"].isin(periods)].rename(
        columns={"amount_local": "our_local", "usd_cents": "our_usd_cents"}
    )
    m = moves.groupby(keys, sort=True)["amount_local"].sum().rename("moved_local").reset_index()
    f = finance[finance["period"].isin(periods)]
    t = o[[*keys, "our_local", "our_usd_cents"]].merge(m, on=keys, how="outer").merge(f, on=keys, how="outer")
    for col in ("our_local", "our_usd_cents", "moved_local", "finance_local", "finance_usd_cents"):
        t[col] = pd.to_numeric(t[col]).fillna(0).astype("int64")
    t["has_finance"] = t["line_id"].notna()
    t["line_id"] = t["line_id"].fillna(
        t["period"] + "|" + t["category"] + "|" + t["subcategory"] + "|" + t["currency"]
    )
    t = t.merge(
        month_end.rename(columns={"rate_micros": "month_end_rate"}), on=["period", "currency"], how="left"
    )
    effective = pd.Series(
        np.where(
            t["our_local"] != 0,
            t["our_usd_cents"] * MICRO / t["our_local"].where(t["our_local"] != 0, 1),
            MICRO,
        ),
        index=t.index,
    ).round()
    # no published month-end rate (fx_rates missing): Finance's rate, else our effective one
    t["rate"] = (
        t["month_end_rate"]
        .astype("float64")
        .fillna(t["finance_rate_micros"].astype("float64"))
        .fillna(effective)
    ).astype("int64")
    t.loc[t["currency"] == "USD", "rate"] = MICRO
    t["replica_local"] = t["our_local"] + t["moved_local"]
    t = t.merge(
        open_revenue.rename(columns={"amount_local": "open_local"}), on=["period", "currency"], how="left"
    )
    t["open_local"] = (
        pd.to_numeric(t["open_local"]).where(t["category"] == "revenue", 0).fillna(0).astype("int64")
    )
    t["residual_local"] = t["replica_local"] - t["finance_local"]
    # the part of a revenue residual that lines still in dunning explain (Finance wrote them off)
    t["dunning_local"] = np.minimum(t["residual_local"].clip(lower=0), t["open_local"])
    t["left_local"] = t["residual_local"] - t["dunning_local"]
    return t.sort_values(keys).reset_index(drop=True)


# The components every line is split into, in this order: (class, cause, expected).
COMPONENTS = (
    ("fx", "rate_date", True),
    ("timing", "finance_close_rule", True),
    ("timing", "dunning", True),
    ("timing", "adjacent_month", False),
    ("missing_category", "", False),
    ("unexplained", "", False),
    ("fx", "rate_source", False),
)


def classify(table: pd.DataFrame, period: str, moves: pd.DataFrame, ours_rows: pd.DataFrame) -> pd.DataFrame:
    """The evidence rows of ``period``: every line split into the :data:`COMPONENTS`.

    Every line gets every component (zero where it does not apply), so the table's size follows
    the number of ledger lines and the components of a line add up to its difference exactly:
    each USD part is its local amount at the month-end rate, half-even, and the last part of the
    residual takes what rounding leaves.
    """
    t = table[table["period"] == period]
    # only a month whose ledger has arrived can show the other half of a timing difference
    neighbours = {
        p: table[table["period"] == p].set_index(KEY)
        for p in periods_around(period)
        if p != period and table.loc[table["period"] == p, "has_finance"].any()
    }
    mine = t[["category", "subcategory"]]
    finance_cats = set(map(tuple, mine[t["has_finance"].to_numpy()].to_numpy().tolist()))
    ours_mine = ours_rows[ours_rows["period"] == period]
    our_cats = set(zip(ours_mine["category"], ours_mine["subcategory"], strict=True))
    rows = []
    for line in t.itertuples(index=False):
        cat = (line.category, line.subcategory)
        other_side = cat in our_cats if line.has_finance else cat in finance_cats
        rows += line_components(line, period, moves, neighbours, other_side=other_side)
    out = pd.DataFrame(rows, columns=EVIDENCE_COLUMNS)
    for col in ("our_local", "our_usd_cents", "finance_local", "finance_usd_cents", "difference_usd_cents",
                "component_local", "component_usd_cents"):  # fmt: skip
        out[col] = out[col].astype("int64")
    out["expected"] = out["expected"].astype(bool)
    return out.sort_values(["category", "subcategory", "currency"], kind="stable").reset_index(drop=True)


def adjacent_offsets(
    left: int, key: tuple[str, str, str], neighbours: Mapping[str, pd.DataFrame]
) -> tuple[int, list[str]]:
    """The part of a line's unexplained ``left`` (local) that the same line offsets with the opposite
    sign in a neighbouring month (booked there instead), and a note per offsetting line."""
    adjacent, notes = 0, []
    for frame in neighbours.values():
        if left == 0 or key not in frame.index:
            continue
        other = int(frame.loc[key, "left_local"])
        if other * left < 0:
            part = int(np.sign(left)) * min(abs(left), abs(other))
            adjacent += part
            left -= part
            notes.append(f"offset on {frame.loc[key, 'line_id']} (ours minus Finance there: {other:+d})")
    return adjacent, notes


def line_components(
    line: Any, period: str, moves: pd.DataFrame, neighbours: Mapping[str, pd.DataFrame], *, other_side: bool
) -> list[dict[str, Any]]:
    """One evidence row per :data:`COMPONENTS` entry for one line of :func:`line_table`.

    ``other_side``: the other side (ours for a Finance line, Finance's for one of ours) has rows of
    the line's category (subcategory) that month; without them what is left is a missing category.
    """
    key = (line.category, line.subcategory, line.currency)
    rate = int(line.rate)
    base = dict(
        line_id=line.line_id, category=line.category, subcategory=line.subcategory, currency=line.currency,
        our_local=int(line.our_local), our_usd_cents=int(line.our_usd_cents),
        finance_local=int(line.finance_local), finance_usd_cents=int(line.finance_usd_cents),
        difference_usd_cents=int(line.our_usd_cents) - int(line.finance_usd_cents),
    )  # fmt: skip
    moved = moves[
        (moves["period"] == period)
        & (moves["category"] == key[0])
        & (moves["subcategory"] == key[1])
        & (moves["currency"] == key[2])
    ]
    adjacent, notes = adjacent_offsets(int(line.left_local), key, neighbours)
    left = int(line.left_local) - adjacent
    missing = left if left and not other_side else 0
    locals_ = {
        ("timing", "dunning"): int(line.dunning_local),
        ("timing", "adjacent_month"): adjacent,
        ("missing_category", ""): missing,
        ("unexplained", ""): left - missing,
    }
    usd = component_cents(line, locals_, rate)
    locals_[("timing", "finance_close_rule")] = -int(line.moved_local)
    details = component_details(line, period, rate, "; ".join(moved["note"]), "; ".join(notes))
    rows = []
    for cls, cause, expected in COMPONENTS:
        k = (cls, cause)
        if cls == "missing_category" and missing:
            cause = "missing_in_ours" if line.has_finance else "missing_in_finance"
        rows.append(
            {
                **base, "difference_class": cls, "cause": cause, "expected": expected,
                "component_local": locals_.get(k, 0), "component_usd_cents": usd[k],
                "detail": details[k] if usd[k] or locals_.get(k, 0) else "",
            }
        )  # fmt: skip
    return rows


def component_cents(
    line: Any, locals_: Mapping[tuple[str, str], int], rate: int
) -> dict[tuple[str, str], int]:
    """USD cents of every component of ``line``: each local part at the month-end ``rate``
    (half-even); the unexplained part takes what rounding leaves of the residual."""
    residual_usd = convert_cents(int(line.replica_local), rate) - convert_cents(int(line.finance_local), rate)
    usd = {k: convert_cents(int(v), rate) for k, v in locals_.items()}
    usd[("unexplained", "")] = residual_usd - sum(v for k, v in usd.items() if k != ("unexplained", ""))
    usd[("fx", "rate_date")] = int(line.our_usd_cents) - convert_cents(int(line.our_local), rate)
    usd[("timing", "finance_close_rule")] = convert_cents(int(line.our_local), rate) - convert_cents(
        int(line.replica_local), rate
    )
    usd[("fx", "rate_source")] = convert_cents(int(line.finance_local), rate) - int(line.finance_usd_cents)
    return usd


def component_details(
    line: Any, period: str, rate: int, moved: str, offsets: str
) -> dict[tuple[str, str], str]:
    """What each component of ``line`` is, in words (``moved``: the close-rule moves' notes,
    ``offsets``: the adjacent-month notes)."""
    fin_rate = line.finance_rate_micros
    return {
        ("fx", "rate_date"): f"daily rates vs the month-end rate {rate / MICRO:.6f}",
        ("timing", "finance_close_rule"): moved,
        ("timing", "dunning"): f"lines in dunning (open) with service in {period}; Finance wrote them off",
        ("timing", "adjacent_month"): offsets,
        ("missing_category", ""): (
            f"no {line.category}/{line.subcategory} rows of ours in {period}" if line.has_finance
            else f"Finance's ledger has no {line.category}/{line.subcategory} line for {period}"
        ),
        ("unexplained", ""): "not explained by timing, a missing category or FX",
        ("fx", "rate_source"): (
            f"Finance's rate {int(fin_rate) / MICRO:.6f} vs the month-end rate {rate / MICRO:.6f}"
            if pd.notna(fin_rate) else ""
        ),
    }  # fmt: skip


def nonzero(evidence: pd.DataFrame) -> pd.DataFrame:
    """The components that carry an amount (the rows worth reading)."""
    keep = (evidence["component_usd_cents"] != 0) | (evidence["component_local"] != 0)
    return evidence[keep].reset_index(drop=True)


def reconcile(
    ours: pd.DataFrame,
    ledger: pd.DataFrame,
    ops: pd.DataFrame,
    revenue_days: pd.DataFrame,
    rates: pd.DataFrame,
    cutoffs: Mapping[str, pd.Timestamp],
    period: str,
    settings: Any,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Compare ``period`` (with its neighbours for timing) against Finance; the evidence table and
    a summary (status, tolerance, unexpected total, per-class totals, profit difference)."""
    periods = periods_around(period)
    finance, bad = finance_lines(ledger)
    summary: dict[str, Any] = dict(period=period, finance_rows_quarantined=len(bad))
    if not (finance["period"] == period).any():
        summary.update(
            status="pending",
            reason=f"Finance's ledger for {period} has not arrived",
            tolerance_usd_cents=None,
            unexpected_usd_cents=None,
            finance_profit_difference_usd_cents=None,
            by_class={},
        )
        return pd.DataFrame(columns=EVIDENCE_COLUMNS), summary
    moves = bridge(ops[ops["usd_micro"].notna()] if len(ops) else ops, cutoffs, periods)
    open_rev = (
        revenue_days[revenue_days["status"] == "open"]
        .groupby(["period", "currency"])["amount_local"]
        .sum()
        .reset_index()
        if len(revenue_days)
        else pd.DataFrame(columns=["period", "currency", "amount_local"])
    )
    table = line_table(ours, moves, finance, month_end_rates(rates, periods), open_rev, periods)
    evidence = classify(table, period, moves, ours)
    mine = finance[finance["period"] == period]
    fin_revenue = int(mine.loc[mine["category"] == "revenue", "finance_usd_cents"].sum())
    tolerance = max(
        settings.reconciliation_tolerance_usd_cents,
        round(settings.reconciliation_tolerance_share * abs(fin_revenue)),
    )
    total = int(evidence.loc[~evidence["expected"], "component_usd_cents"].abs().sum())
    lines = evidence.drop_duplicates("line_id")
    sign = np.where(lines["category"] == "revenue", 1, -1)  # profit = revenue - costs
    by_class = evidence.groupby(["difference_class", "cause"])["component_usd_cents"].sum()
    summary.update(
        status="within_tolerance" if total <= tolerance else "mismatch",
        tolerance_usd_cents=int(tolerance),
        unexpected_usd_cents=total,
        finance_revenue_usd_cents=fin_revenue,
        finance_profit_difference_usd_cents=int((lines["difference_usd_cents"] * sign).sum()),
        by_class={f"{c}/{k}" if k else c: int(v) for (c, k), v in by_class.items() if v},
        lines=len(lines),
    )
    return evidence, summary


def unexpected_rows(evidence: pd.DataFrame) -> pd.DataFrame:
    """The components that count against the tolerance (what the check names)."""
    return evidence[~evidence["expected"] & (evidence["component_usd_cents"] != 0)].reset_index(drop=True)
