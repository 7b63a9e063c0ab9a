"""The weekly metrics review without notebooks: figures, formats, flag sentences and what it needs.

tests/notebooks/test_weekly_review.py runs the notebook through the runner on a demo company.
"""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from helpers.investor import weekly, weekly_needs
from helpers.runs import locks
from helpers.runs import records as runs
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.unit
D = dt.date.fromisoformat
UTC = dt.UTC


def days(start: str, end: str) -> list[dt.date]:
    return list(pd.date_range(start, end, freq="D").date)


def engagement(start: str, end: str, **values: float) -> pd.DataFrame:
    base = {"events": 1000, "dau": 50, "wau": 200, "mau": 400, "stickiness": 0.125, "api_requests": 100}
    return pd.DataFrame({"date": days(start, end), **{**base, **values}})


def growth(start: str, end: str) -> pd.DataFrame:
    return pd.DataFrame({"date": days(start, end), "new_accounts": 2, "churned": 1, "customers_end": 90,
                         "net_new_mrr_usd_cents": 12_345})  # fmt: skip


# ---------------------------------------------------------------- figures and flags


def test_weekly_review_flags_what_moved_more_than_the_monitor_variance():
    eng = engagement("2026-09-28", "2026-10-25")
    eng.loc[eng["date"] >= D("2026-10-19"), "events"] = 1500  # the last week: +50 %
    figures = weekly.weekly_figures("2026-10-25", {"engagement_metrics_daily": eng}, weeks=3)
    assert list(figures["week ending"]) == ["2026-10-04", "2026-10-11", "2026-10-18", "2026-10-25"]
    assert figures["events"].tolist() == [7000, 7000, 7000, 10500]
    assert figures[weekly.days_column("engagement_aggregate")].tolist() == [7, 7, 7, 7]
    assert figures[weekly.days_column("growth_daily")].tolist() == [0, 0, 0, 0]
    flags = weekly.weekly_anomalies(figures, variance=0.2).set_index("figure")
    assert flags.loc["events", "flag"] == "ANOMALY"
    assert flags.loc["events", "says"] == (
        "events 10,500 this week: +50.0 % against the median of the 3 weeks before (7,000); "
        "more than the 20 % the row-count monitor allows"
    )
    assert flags.loc["DAU (mean of the days)", "flag"] == "ok"
    assert flags.loc["DAU (mean of the days)", "says"].endswith("+0.0 % against the median of the 3 weeks "
                                                                "before (50.0); ok: within 20 %")  # fmt: skip
    assert flags.loc["new accounts", "says"] == (
        "new accounts: no verdict: no figure this week (growth_daily lacks days of it; see section 1)"
    )
    assert weekly.flag_sentences(flags.reset_index()) == [flags.loc["events", "says"]]


def test_a_week_missing_a_day_has_no_figures_and_drops_out_of_the_median():
    eng = engagement("2026-09-28", "2026-10-25")
    eng = eng[eng["date"] != D("2026-10-08")]  # the week ending 10-11 lacks a day
    eng.loc[eng["date"] >= D("2026-10-19"), "events"] = 1100  # +10 %: within the variance
    figures = weekly.weekly_figures("2026-10-25", {"engagement_metrics_daily": eng}, weeks=3)
    assert figures["events"].tolist() == [7000, None, 7000, 7700]
    assert figures[weekly.days_column("engagement_aggregate")].tolist() == [7, 6, 7, 7]
    events = weekly.weekly_anomalies(figures, variance=0.2).set_index("figure").loc["events"]
    assert (events["flag"], events["earlier weeks"]) == ("ok", 2)
    assert events["says"] == (
        "events 7,700 this week: +10.0 % against the median of the 2 of 3 earlier weeks with data (7,000); "
        "ok: within 20 %"
    )
    view = weekly.figures_view(figures)
    assert list(view.columns) == ["figure", "to 2026-10-04", "to 2026-10-11", "to 2026-10-18",
                                  "this week, to 2026-10-25"]  # fmt: skip
    assert view.set_index("figure").loc["events", "to 2026-10-11"] == "no data (6 of 7 days)"
    (note,) = weekly.figures_notes(figures)
    assert note.startswith("All 4 weeks (ending 2026-10-04, 2026-10-11, 2026-10-18, 2026-10-25)")
    assert "no data (n of 7 days)" in note  # growth_daily has no day at all


def test_too_little_history_and_a_zero_median_give_no_verdict_saying_why():
    eng = engagement("2026-10-12", "2026-10-25", api_requests=0)
    eng.loc[eng["date"] >= D("2026-10-19"), "events"] = 2000
    figures = weekly.weekly_figures("2026-10-25", {"engagement_metrics_daily": eng}, weeks=3)
    flags = weekly.weekly_anomalies(figures, variance=0.2).set_index("figure")
    assert flags.loc["events", "says"] == (
        "events 14,000 this week: no verdict: only 1 earlier week with data (at least 2 needed)"
    )
    assert flags.loc["events", "flag"] == "no verdict"
    eng = engagement("2026-09-28", "2026-10-25", api_requests=0)
    eng.loc[eng["date"] == D("2026-10-25"), "api_requests"] = 5
    flags = weekly.weekly_anomalies(
        weekly.weekly_figures("2026-10-25", {"engagement_metrics_daily": eng}, weeks=3), variance=0.2
    ).set_index("figure")
    assert flags.loc["API requests", "says"] == (
        "API requests 5 this week: no verdict: the median of the 3 weeks before is 0, so a change in % does not exist"
    )


def test_growth_days_sum_the_arms_of_one_experiment_even_when_experiments_change(home):
    rows = []
    for day in days("2026-10-01", "2026-10-02"):
        experiments = ["a_test", "b_test"] if day == D("2026-10-01") else ["b_test"]  # a_test ended
        for exp in experiments:
            for arm, n in (("control", 1), ("treatment", 2), ("unassigned", 4)):
                rows.append({"date": day.isoformat(), "experiment": exp, "arm": arm, "new_accounts": n,
                             "churned": 0, "customers_end": 10 * n, "net_new_mrr_usd_cents": 100 * n})  # fmt: skip
    _put("growth_daily", pd.DataFrame(rows), at=dt.datetime(2026, 10, 3, tzinfo=UTC))
    frame = weekly.daily_frames()["growth_daily"]
    assert frame["date"].tolist() == [D("2026-10-01"), D("2026-10-02")]
    assert frame["new_accounts"].tolist() == [7, 7] and frame["customers_end"].tolist() == [70, 70]


# ---------------------------------------------------------------- formats


def test_values_read_as_people_write_them():
    assert weekly.fmt_value(10500, "count") == "10,500"
    assert weekly.fmt_value(314.666667, "average") == "314.7"
    assert weekly.fmt_value(0.3258, "ratio") == "32.6 %"
    assert weekly.fmt_value(123456, "usd_cents") == "$1,234.56"
    assert weekly.fmt_value(-5, "usd_cents") == "-$0.05"
    for missing in (None, float("nan"), pd.NA):
        assert weekly.fmt_value(missing, "count") == weekly.DASH
    assert weekly.fmt_change(0.123) == "+12.3 %" and weekly.fmt_change(-0.04) == "-4.0 %"
    assert weekly.fmt_change(57.006) == "+5,700.6 %"
    assert (
        weekly.fmt_value(0.5, "count") == "0.5" and weekly.fmt_value(7.0, "count") == "7"
    )  # a median of counts
    assert weekly.fmt_change(None) == weekly.DASH
    assert weekly.fmt_percent(0.2) == "20 %" and weekly.fmt_percent(0.125) == "12.5 %"
    assert weekly_needs.day_ranges([D("2026-11-05"), D("2026-11-03"), D("2026-11-04"), D("2026-11-09")]) == (
        "2026-11-03 .. 2026-11-05, 2026-11-09"
    )


def test_the_tables_for_people_have_no_index_and_no_nan_or_none():
    eng = engagement("2026-10-12", "2026-10-25", dau=314.666667, stickiness=0.3258)
    eng.loc[eng["date"] == D("2026-10-14"), "dau"] = float("nan")  # a mean over a NaN day still reads
    figures = weekly.weekly_figures("2026-10-25", {"engagement_metrics_daily": eng}, weeks=3)
    anomalies = weekly.weekly_anomalies(figures, variance=0.2)
    for frame, flag in ((weekly.figures_view(figures), ""),
                        (weekly.anomalies_view(anomalies, variance=0.2), "verdict")):  # fmt: skip
        page = weekly.table_html(frame, text=["figure"], flag=flag)
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", page)
        assert cells and not [c for c in cells if re.search(r"\b(nan|NaN|None|NaT|<NA>)\b", c)]
        assert page.count("<tr>") == len(frame) + 1  # a header row, one row per figure: no index row
        assert "<th></th>" not in page
    view = weekly.figures_view(figures).set_index("figure")
    assert view.loc["stickiness (week end)", "this week, to 2026-10-25"] == "32.6 %"
    assert view.loc["DAU (mean of the days)", "this week, to 2026-10-25"] == "314.7"
    verdicts = weekly.anomalies_view(anomalies, variance=0.2).set_index("figure")["verdict"]
    assert verdicts["events"] == "no verdict: only 1 earlier week with data (at least 2 needed)"
    page = weekly.table_html(weekly.anomalies_view(anomalies, variance=0.2), flag="verdict")
    assert 'data-flag="none">no verdict: only 1 earlier week' in page
    notes = weekly.flag_notes(anomalies, variance=0.2)
    assert notes[0].startswith("No verdict on any figure") and notes[-1].startswith(weekly.DASH)


def test_an_anomaly_cell_carries_its_verdict_as_word_and_colour():
    frame = pd.DataFrame({"figure": ["events <b>"], "verdict": ["ANOMALY: more than 20 % off"]})
    page = weekly.table_html(frame, text=["figure"], flag="verdict")
    assert '<td data-flag="ANOMALY">ANOMALY: more than 20 % off</td>' in page
    assert "events &lt;b&gt;" in page and "td[data-flag=ANOMALY]{background" in page
    page = weekly.table_html(pd.DataFrame({"days": ["2026-10-27 .. 2026-10-28, 2026-11-01"]}), wrap=["days"])
    assert page.count('<span class="wb-nobr">') == 3  # a wrapping cell never breaks inside a date


# ---------------------------------------------------------------- what the review needs


WEEKS = days("2026-10-27", "2026-11-30")  # the review of 2026-11-30 with 4 weeks before


def test_a_published_month_keeps_its_days_out_and_the_window_fills_the_days_after_it():
    locked = set(days("2026-10-01", "2026-11-02"))  # October, and the days whose window reaches into it
    have = set(days("2026-10-29", "2026-10-31"))  # the close's month-end run wrote its 3-day window
    gap = weekly_needs.find_gap("engagement_aggregate", WEEKS, have=have, horizon=D("2026-11-30"), locked=locked,
                          window=3)  # fmt: skip
    assert gap.missing == (D("2026-10-27"), D("2026-10-28"), *days("2026-11-01", "2026-11-30"))
    assert gap.locked == (D("2026-10-27"), D("2026-10-28"))
    assert gap.runs == tuple(days("2026-11-03", "2026-11-30")) and not gap.beyond
    assert gap.command == "workbook backfill engagement_aggregate --from 2026-11-03 --to 2026-11-30"
    lines = weekly_needs._gap_sentences(gap)
    assert lines[0] == (
        "engagement_aggregate: `engagement_metrics_daily` has 3 of the 35 days; "
        "none for 2026-10-27 .. 2026-10-28, 2026-11-01 .. 2026-11-30."
    )
    assert lines[1] == (
        "The `engagement_aggregate` backfill below fills them "
        "(28 runs, one per day, whose windows write the days before 2026-11-03 too)."
    )
    assert lines[2].startswith("2026-10-27 .. 2026-10-28 belong to a published month")


def test_partial_coverage_names_only_the_days_still_missing_and_forces_a_run_that_succeeded_early():
    have = set(WEEKS) - {D("2026-11-10"), D("2026-11-11"), D("2026-11-20")}
    gap = weekly_needs.find_gap("growth_daily", WEEKS, have=have, horizon=D("2026-11-30"))
    assert gap.runs == (D("2026-11-10"), D("2026-11-11"), D("2026-11-20"))
    assert gap.command == "workbook backfill growth_daily --from 2026-11-10 --to 2026-11-20"
    # the latest run of 11-20 succeeded (it ran before the day's data had landed): a backfill skips it
    gap = weekly_needs.find_gap(
        "growth_daily", WEEKS, have=have, horizon=D("2026-11-30"), succeeded={D("2026-11-20")}
    )
    assert gap.force and gap.command.endswith("--to 2026-11-20 --force")
    # Engagement's window: the run of 11-21 writes 11-20 too, and it has not run
    gap = weekly_needs.find_gap("engagement_aggregate", WEEKS, have=have, horizon=D("2026-11-30"),
                          succeeded={D("2026-11-20")}, window=3)  # fmt: skip
    assert not gap.force and gap.runs == (D("2026-11-10"), D("2026-11-11"), D("2026-11-21"))
    done = weekly_needs.find_gap("growth_daily", WEEKS, have=set(WEEKS), horizon=D("2026-11-30"))
    assert done.command is None and not done.missing


def test_a_week_past_the_landing_data_names_the_run_date_to_review_and_what_to_run_for_it():
    facts = {
        "engagement_aggregate": {"have": set(days("2026-10-29", "2026-10-31")), "horizon": D("2026-11-30"),
                                 "short": ("api_logs",), "locked": set(days("2026-10-01", "2026-11-02")),
                                 "window": 3},
        "growth_daily": {"have": set(), "horizon": D("2026-11-30"), "short": ("subscriptions",)},
    }  # fmt: skip
    needs = weekly_needs.needs_from("2026-12-05", 4, facts)
    assert needs.first == D("2026-11-01") and needs.data_through == D("2026-11-30")
    assert needs.suggested_run_date == D("2026-11-30")
    assert needs.instead is not None and needs.instead.first == D("2026-10-27")
    assert needs.commands == [
        "workbook backfill engagement_aggregate --from 2026-11-03 --to 2026-11-30",
        "workbook backfill growth_daily --from 2026-10-27 --to 2026-11-30",
    ]
    first, *rest = needs.sentences()
    assert first.startswith(
        "The week ending 2026-12-05 reaches past the landing data (engagement_aggregate's sources through "
        "2026-11-30 (api_logs); growth_daily's sources through 2026-11-30 (subscriptions)): "
        "2026-12-01 .. 2026-12-05 cannot be run yet"
    )
    assert first.endswith(
        "Review the week ending 2026-11-30 instead, the last day the sources cover "
        "(what it needs below; the commands fill its days, the last line reviews it)."
    )
    assert needs.steps() == [*needs.commands, "workbook run weekly_metrics_review --date 2026-11-30"]
    text = needs.markdown()
    assert text.startswith(f"- {first}\n") and text.endswith(
        "Run these, then read the review they end with:\n\n```\n" + "\n".join(needs.steps()) + "\n```"
    )
    assert any("2026-10-27 .. 2026-10-28 belong to a published month" in s for s in rest)
    table = weekly_needs.needs_table(needs)  # of the review to run instead
    assert table["runs that fill them"].tolist() == [
        "28 (2026-11-03 .. 2026-11-30)",
        "35 (2026-10-27 .. 2026-11-30)",
    ]
    assert table["cannot be filled"].tolist() == [
        "2026-10-27 .. 2026-10-28 (published month, locked)",
        "none",
    ]
    complete = weekly_needs.needs_from(
        "2026-11-30", 4, {p: {**f, "have": set(WEEKS)} for p, f in facts.items()}
    )
    assert complete.complete and complete.commands == [] and complete.suggested_run_date is None
    assert complete.steps() == [] and "```" not in complete.markdown()
    two = weekly_needs.needs_from("2026-11-30", 2, facts)
    assert two.steps()[-1] == "workbook run weekly_metrics_review --date 2026-11-30 -p weeks=2"
    assert complete.sentences() == [
        "Every day of 2026-10-27 .. 2026-11-30 is in `engagement_metrics_daily` and `growth_daily`: nothing to run first."
    ]


def _put(table: str, frame: pd.DataFrame, *, at: dt.datetime, run_id: str | None = None) -> None:
    """Write a daily mart the way its pipeline does: one partition per date."""
    frame = frame.assign(date=frame["date"].astype(str))
    for day, rows in frame.groupby("date"):
        warehouse.replace_partition(
            table, rows, {"date": day}, written_at=at.replace(tzinfo=None), run_id=run_id
        )


def _deliver(source: str, start: str, end: str) -> None:
    for day in days(start, end):
        landing.write_delivery(source, day, pd.DataFrame({"x": [1]}), durable=False,
                               arrived_at=dt.datetime.combine(day + dt.timedelta(days=1), dt.time(3), UTC))  # fmt: skip


def _run(pipeline: str, day: str, status: str, at: dt.datetime) -> str:
    rid = runs.start_run(pipeline, day, now=at, as_of=at, parameters={}, code_version="test")
    runs.finish_run(rid, status=status, now=at + dt.timedelta(minutes=1),
                    error_summary=None if status == "succeeded" else "cell 3: ValueError: boom")  # fmt: skip
    return rid


def test_review_needs_reads_marts_runs_locks_and_the_landing_zone(home):
    for s in ("events", "web_analytics", "mobile_analytics"):
        _deliver(s, "2026-10-20", "2026-11-30")
    _deliver("api_logs", "2026-10-20", "2026-11-28")  # api_logs is two days behind
    for s in ("crm_stage_history", "subscriptions", "experiment_assignments"):
        _deliver(s, "2026-10-20", "2026-11-30")
    at = dt.datetime(2026, 12, 1, 6, tzinfo=UTC)
    rid = _run("growth_daily", "2026-11-29", "succeeded", at)
    _put(
        "growth_daily",
        growth("2026-11-01", "2026-11-28").assign(experiment="none", arm="all"),
        at=at,
        run_id=rid,
    )
    _put("engagement_metrics_daily", engagement("2026-11-01", "2026-11-26"), at=at)
    with warehouse.get_engine().begin() as conn:
        locks.lock_month("2026-10", [locks.Target(locks.PIPELINE, "engagement_aggregate", d.isoformat())
                                     for d in days("2026-10-01", "2026-11-02")],
                         version=1, locked_at=at, signed_off=[("DE1", at)], conn=conn)  # fmt: skip
    needs = weekly_needs.review_needs(
        "2026-11-30", weekly.daily_frames(), weeks=1
    )  # 2026-11-17 .. 2026-11-30
    eng_gap, growth_gap = needs.gaps
    assert eng_gap.horizon == D("2026-11-28") and eng_gap.short == ("api_logs",)
    assert eng_gap.missing == tuple(days("2026-11-27", "2026-11-30"))
    assert eng_gap.beyond == (D("2026-11-29"), D("2026-11-30"))
    assert eng_gap.command == "workbook backfill engagement_aggregate --from 2026-11-27 --to 2026-11-28"
    assert growth_gap.horizon == D("2026-11-30") and growth_gap.missing == (D("2026-11-29"), D("2026-11-30"))
    # 11-29's latest run succeeded without writing the day: the backfill must --force it
    assert growth_gap.command == "workbook backfill growth_daily --from 2026-11-29 --to 2026-11-30 --force"
    assert needs.suggested_run_date == D("2026-11-28")
    # what to run is for the review of 11-28 instead: growth_daily has all of its days
    assert needs.instead is not None and needs.instead.gaps[1].missing == ()
    assert needs.commands == ["workbook backfill engagement_aggregate --from 2026-11-27 --to 2026-11-28"]


def test_week_runs_say_what_became_of_a_failed_run_and_alerts_stay_in_the_week(home):
    t = dt.datetime(2026, 11, 30, 5, tzinfo=UTC)
    failed = _run("growth_daily", "2026-11-28", "failed", t)
    fixed = _run("growth_daily", "2026-11-28", "succeeded", t + dt.timedelta(hours=1))
    still = _run("engagement_aggregate", "2026-11-29", "failed", t + dt.timedelta(hours=2))
    _run("engagement_aggregate", "2026-11-20", "failed", t)  # another week
    frame = weekly.week_runs("2026-11-30").set_index("run id")
    assert set(frame.index) == {failed, still} and fixed not in frame.index
    assert frame.loc[failed, "since"] == "latest run succeeded"
    assert frame.loc[still, "since"] == "still the latest run"
    assert weekly.week_alerts("2026-11-30").empty
    assert (
        weekly.no_alerts_sentence("2026-11-30") == "No alert was opened in the week 2026-11-24 .. 2026-11-30."
    )


def test_the_events_chart_starts_at_zero_and_needs_two_complete_weeks():
    eng = engagement("2026-10-05", "2026-10-25")
    eng.loc[eng["date"] >= D("2026-10-19"), "events"] = 1020  # +2 %: must look like +2 %
    figures = weekly.weekly_figures("2026-10-25", {"engagement_metrics_daily": eng}, weeks=3)
    chart = weekly.events_chart(figures)
    ax = chart.axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 7140
    assert chart.wb_meta["points"] == 3 and chart.wb_meta["labels"] == [
        "2026-10-11",
        "2026-10-18",
        "2026-10-25",
    ]
    assert ax.yaxis.get_major_formatter()(7000, 0) == "7,000"
    assert (
        weekly.events_chart(figures.iloc[-2:]) is not None and weekly.events_chart(figures.iloc[-1:]) is None
    )
