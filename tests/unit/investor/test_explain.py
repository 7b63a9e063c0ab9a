"""Explaining a figure without notebooks: the chain's levels, the companies behind a figure, the report links.

Months are seeded straight into the warehouse as in test_close_status.py; landing zones are written
with ``landing.write_delivery``. tests/notebooks/test_explain_figures.py runs the real close and the CLI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import test_close_status as seeded  # a seeded, closed month (tests/unit/investor is on sys.path)

from conftest import demo_landing, home_with_demo
from helpers.cli import explain as cli_explain
from helpers.cli.main import main
from helpers.core import paths
from helpers.core.errors import EXIT_USAGE, UsageError
from helpers.investor import explain, explain_accounts, report
from helpers.investor.metrics import ENGAGEMENT, GROWTH, METRICS, PROFIT
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.unit
UTC = dt.UTC
P = "2026-09"
AS_OF = dt.datetime(2026, 10, 16, 12, tzinfo=UTC)


# ---------------------------------------------------------------- metric names


def test_an_unknown_metric_is_a_usage_error_naming_every_valid_one():
    with pytest.raises(UsageError) as e:
        explain.metric_named("dau")
    text = str(e.value)
    assert "did you mean dau_avg?" in text
    assert all(m.name in text for m in METRICS)
    assert explain.metric_named("dau_avg").unit == "users"


# ---------------------------------------------------------------- landing deliveries


def test_deliveries_of_the_month_arrived_by_as_of_are_read_later_ones_are_not(tmp_path):
    root = tmp_path / "landing"
    frame = pd.DataFrame({"x": [1, 2, 3]})
    t = dt.datetime(2026, 9, 2, 3, tzinfo=UTC)
    aug = landing.write_delivery("subscriptions", "2026-08-31", frame, arrived_at=t, root=root)
    sep1 = landing.write_delivery("subscriptions", "2026-09-01", frame, arrived_at=t, root=root)
    sep30 = landing.write_delivery("subscriptions", "2026-09-30", frame.head(1), arrived_at=t.replace(month=10),
                                   root=root)  # fmt: skip
    late = landing.write_delivery("subscriptions", "2026-09-01", frame, arrived_at=AS_OF + dt.timedelta(days=3),
                                  root=root)  # fmt: skip
    found = explain.source_deliveries("subscriptions", P, AS_OF, root=root, verify=True)
    assert found.read == (sep1, sep30) and found.rows == 4
    assert found.visible_elsewhere == 1 and aug not in found.read
    assert found.arrived_after == (late,)
    assert found.verified == {sep1.file: True, sep30.file: True}
    assert sep1.sha256 == hashlib.sha256((root / "subscriptions" / sep1.file).read_bytes()).hexdigest()

    (root / "subscriptions" / sep30.file).write_bytes(b"not what was delivered")
    tampered = explain.source_deliveries("subscriptions", P, AS_OF, root=root, verify=True)
    assert tampered.verified == {sep1.file: True, sep30.file: False}
    as_json = tampered.as_json(root)
    assert [d["checksum_ok"] for d in as_json["deliveries"]] == [True, False]
    assert as_json["deliveries"][0]["path"] == str(root / "subscriptions" / sep1.file)


def test_reads_name_the_sources_each_upstream_actually_reads(
    home, tmp_path_factory, duckdb_engine, monkeypatch
):
    """READS is what the pipelines' own code asks the landing zone for (rows or manifests)."""
    from helpers.core import businesscal
    from helpers.core import config as cfgmod
    from helpers.engagement.inputs import load
    from helpers.engagement.window import run_window
    from helpers.growth.month import build_month
    from helpers.profit.aggregate import build_aggregate
    from helpers.profit.inputs import load_inputs

    home_with_demo(home, demo_landing(tmp_path_factory, accounts=60, months=3, seed=7, end="2026-10-31",
                                      events=True))  # fmt: skip
    asked: dict[str, set[str]] = {}
    current = [""]
    real = landing.deliveries

    def spy(source, *args, **kwargs):
        asked.setdefault(current[0], set()).add(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(landing, "deliveries", spy)
    cfg = cfgmod.get()
    current[0] = PROFIT
    inputs = load_inputs(P, AS_OF, settings=cfg.pipelines.profit)
    build_aggregate(inputs, settings=cfg.pipelines.profit, calendar=businesscal.BusinessCalendar.from_team(cfg.team),
                    run_id="t")  # fmt: skip
    current[0] = GROWTH
    build_month(P, AS_OF, settings=cfg.pipelines.growth)
    current[0] = ENGAGEMENT
    load(duckdb_engine, run_window("2026-09-30", AS_OF, 3))
    assert {p: set(s) for p, s in explain.READS.items()} == asked


# ---------------------------------------------------------------- the chain on a seeded month


def test_the_chain_names_the_runs_and_partitions_behind_a_figure(home):
    ids = seeded.seed_month()
    chain = explain.explain(P, "ending_mrr_usd_cents", landing_root=home / "data" / "landing")
    assert chain.value == 10_100_000 and chain.status == "final"
    assert chain.investor_run.run_id == ids["investor_aggregate"] and chain.investor_run.status == "succeeded"
    assert [r.run_id for r in chain.upstream_runs] == [ids["growth_aggregate"]]
    assert chain.upstream_runs[0].code_version == "test"
    marts = {m.table: m for m in chain.marts}
    assert list(marts) == ["growth_mrr_monthly", "growth_accounts_monthly", "investor_monthly"]
    assert marts["growth_accounts_monthly"].rows == 4 and marts["growth_accounts_monthly"].current
    assert marts["investor_monthly"].run_id == ids["investor_aggregate"]
    assert chain.publication["published"] is False
    # no archives in a seeded month: said, never hidden
    assert f"run {ids['growth_aggregate']}: archive missing (None)" in chain.problems

    cross = explain.explain(P, "revenue_mrr_runrate_usd_cents", landing_root=home / "data" / "landing")
    assert {r.run_id for r in cross.upstream_runs} == {ids["profit_aggregate"], ids["growth_aggregate"]}
    writers = {m.table: m.expected_run_id for m in cross.marts}
    assert writers["profit_monthly"] == ids["profit_aggregate"]
    assert writers["growth_mrr_monthly"] == ids["growth_aggregate"]


def test_a_partition_rewritten_after_the_figure_is_flagged(home):
    ids = seeded.seed_month()
    later = seeded.run("growth_aggregate", P, seeded.T0 + dt.timedelta(hours=1))
    seeded.put("growth_mrr_monthly", [seeded.rows.growth_row()], later, {"period": P})
    chain = explain.explain(P, "ending_mrr_usd_cents", landing_root=home / "data" / "landing")
    mart = next(m for m in chain.marts if m.table == "growth_mrr_monthly")
    assert not mart.current and mart.run_id == later and mart.expected_run_id == ids["growth_aggregate"]
    assert any(p.startswith("growth_mrr_monthly period=2026-09: now written by") for p in chain.problems)


def test_a_month_without_investor_figures_is_not_closed(home):
    with pytest.raises(
        explain.NotClosed, match="2026-08: no investor figures: the month has not been closed"
    ):
        explain.explain("2026-08", "profit_usd_cents")
    seeded.seed_month()
    with pytest.raises(explain.NotClosed, match="investor_monthly has no value of margin"):
        frame = explain.investor.read_monthly([P])
        seeded.put("investor_monthly", frame[frame["metric"] != "margin"].to_dict("records"),
                   str(frame["run_id"].iloc[0]), {"period": P})  # fmt: skip
        explain.explain(P, "margin")


def test_cli_exit_codes_for_bad_input(home, capsys):
    assert main(["explain", "--month", P, "dau"]) == EXIT_USAGE
    assert "did you mean dau_avg?" in capsys.readouterr().err
    assert main(["explain", "--month", "2026-9", "dau_avg"]) == EXIT_USAGE
    assert "--month: expected a month as YYYY-MM" in capsys.readouterr().err
    assert main(["explain", "--month", P, "dau_avg"]) == EXIT_USAGE
    assert "has not been closed" in capsys.readouterr().err
    seeded.seed_month()
    assert main(["explain", "--month", P, "margin", "--accounts"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "not margin" in err and "new_mrr_usd_cents" in err and "churned_customers" in err


# ---------------------------------------------------------------- the companies behind a figure

ACCOUNTS = pd.DataFrame(
    {
        "period": P,
        "account_id": ["A1", "A2", "A3", "A4", "A5", "A6", "A7"],
        "crm_account_id": ["C1", "C2", "C3", "C4", "C5", "C6", "C7"],
        "member_accounts": ["A1", "A2;A9", "A3", "A4", "A5", "A6", "A7"],
        "currency": "USD",
        "starting_mrr_usd_cents": [0, 10_000, 20_000, 5_000, 7_000, 0, 3_000],
        "ending_mrr_usd_cents": [12_345, 15_000, 12_500, 0, 0, 999, 3_000],
        "mrr_change_usd_cents": [12_345, 5_000, -7_500, -5_000, -7_000, 999, 0],
        "movement": [
            "new",
            "expansion",
            "contraction",
            "churn_voluntary",
            "churn_involuntary",
            "reactivation",
            "flat",
        ],
        "tier_end": ["growth", "business", "starter", None, None, "starter", "starter"],
        "seats_end": pd.array([5, 10, 2, pd.NA, pd.NA, 1, 3], dtype="Int64"),
    }
)
BEFORE = pd.DataFrame({"account_id": ["A2", "A3", "A4"], "tier_end": ["growth", "business", "starter"],
                       "seats_end": pd.array([8, 4, 2], dtype="Int64")})  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "accounts", "total"),
    [
        ("new_mrr_usd_cents", ["A1"], 12_345),
        ("expansion_mrr_usd_cents", ["A2"], 5_000),
        ("contraction_mrr_usd_cents", ["A3"], -7_500),
        ("churn_voluntary_mrr_usd_cents", ["A4"], -5_000),
        ("churn_involuntary_mrr_usd_cents", ["A5"], -7_000),
        ("reactivation_mrr_usd_cents", ["A6"], 999),
        ("starting_mrr_usd_cents", ["A3", "A2", "A5", "A4", "A7"], 45_000),
        ("ending_mrr_usd_cents", ["A2", "A3", "A1", "A7", "A6"], 43_844),
        ("arr_usd_cents", ["A2", "A3", "A1", "A7", "A6"], 12 * 43_844),
        ("churned_customers", ["A5", "A4"], 2),
        ("customers_end", ["A2", "A3", "A1", "A7", "A6"], 5),
    ],
)
def test_the_companies_behind_a_figure_add_up_to_it(metric, accounts, total):
    rule = explain_accounts.rule_for(metric)
    rows = explain_accounts.account_rows(ACCOUNTS, BEFORE, rule)
    assert list(rows["account_id"]) == accounts  # largest amounts first
    assert (len(rows) if rule.count else int(rows["amount_usd_cents"].sum())) == total


def test_plans_before_come_from_the_month_before_and_are_unknown_without_it():
    rows = explain_accounts.account_rows(
        ACCOUNTS, BEFORE, explain_accounts.rule_for("starting_mrr_usd_cents")
    )
    by = rows.set_index("account_id")
    assert (by.loc["A3", "tier_before"], by.loc["A3", "seats_before"]) == ("business", 4)
    assert (by.loc["A3", "tier_after"], by.loc["A3", "seats_after"]) == ("starter", 2)
    assert pd.isna(by.loc["A5", "tier_before"])  # paid at the start, but not in the month before: unknown
    assert pd.isna(by.loc["A4", "tier_after"]) and by.loc["A4", "mrr_after_usd_cents"] == 0
    new = explain_accounts.account_rows(
        ACCOUNTS, pd.DataFrame(), explain_accounts.rule_for("new_mrr_usd_cents")
    )
    assert new["tier_before"].isna().all() and int(new["mrr_before_usd_cents"].iloc[0]) == 0
    assert cli_explain.plan(None, None, 0) == "-" and cli_explain.plan(None, None, 500) == "?"
    assert cli_explain.plan("business", 4, 500) == "business x 4"


def test_accounts_of_a_seeded_month_match_the_figure_and_print_within_100_columns(home, capsys):
    seeded.seed_month()
    # the seeded growth row says new MRR 300,000: seed accounts that add up to it
    accounts = ACCOUNTS.assign(mrr_change_usd_cents=ACCOUNTS["mrr_change_usd_cents"].where(
        ACCOUNTS["movement"] != "new", 300_000))  # fmt: skip
    run = explain.investor.read_monthly([P]).set_index("metric").loc["new_mrr_usd_cents", "source_run_id"]
    with warehouse.get_engine().begin() as conn:  # the seeded mart has fewer columns than Growth's
        conn.execute(sa.text("DROP TABLE growth_accounts_monthly"))
    seeded.put("growth_accounts_monthly", accounts.to_dict("records"), run, {"period": P})
    found = explain_accounts.explain_accounts(P, "new_mrr_usd_cents")
    assert found.matches and found.total == found.figure == 300_000 and found.figure_run_id == run
    assert found.before.rows is None  # 2026-08 never built
    assert main(["explain", "--month", P, "new_mrr_usd_cents", "--accounts"]) == 0
    out = capsys.readouterr().out
    assert "= the sum of the amounts below (exact)" in out and "$3,000.00" in out
    assert "unknown: growth_accounts_monthly has no 2026-08" in out
    assert max(len(line) for line in out.splitlines()) <= 100

    seeded.put(
        "growth_accounts_monthly", ACCOUNTS.to_dict("records"), run, {"period": P}
    )  # 12,345 != 300,000
    assert main(["explain", "--month", P, "new_mrr_usd_cents", "--accounts"]) == 1
    assert "the companies add up to 12345, not the figure 300000" in capsys.readouterr().err


# ---------------------------------------------------------------- links from the report


def test_archive_links_are_relative_under_runs_and_file_uris_elsewhere(home, tmp_path):
    archive = paths.runs_dir() / "profit_aggregate" / P / "r1"
    assert explain.archive_href(str(archive)) == f"../../../profit_aggregate/{P}/r1/notebook.html"
    outside = tmp_path / "elsewhere" / "r2"
    assert explain.archive_href(str(outside)) == (outside / "notebook.html").resolve().as_uri()
    assert explain.archive_href(None) is None


def test_report_links_each_figure_to_the_run_that_computed_it(home):
    ids = seeded.seed_month()
    links = explain.report_links(P)
    assert links["profit_usd_cents"].run_id == ids["profit_aggregate"]
    assert links["ending_mrr_usd_cents"].run_id == ids["growth_aggregate"]
    assert links["dau_avg"].run_id == ids["engagement_aggregate"]
    assert links["revenue_mrr_runrate_usd_cents"].run_id == ids["investor_aggregate"]  # cross-pipeline
    assert links["profit_usd_cents"].href is None  # the seeded runs have no archive

    archived = Path(paths.runs_dir() / "profit_aggregate" / P / ids["profit_aggregate"])
    linked = {**links, "profit_usd_cents": explain.RunLink("profit_usd_cents", ids["profit_aggregate"],
                                                           PROFIT, explain.archive_href(str(archived)))}  # fmt: skip
    kpis = report.headline(P)
    page = report.headline_html(kpis, P, links=linked)
    href = f"../../../profit_aggregate/{P}/{ids['profit_aggregate']}/notebook.html"
    assert f'<a href="{href}" title="computed by profit_aggregate run {ids["profit_aggregate"]}">' in page
    assert (
        f'data-metric="profit_usd_cents" data-value="3500000" data-unit="usd_cents" data-run="{ids["profit_aggregate"]}"'
        in page
    )
    assert "Each value links to the archived run that computed it." in page
    assert "<a " not in report.headline_html(kpis, P)  # without links: as before


def test_long_lines_are_broken_at_paths_and_spaces():
    line = "    archive  runs/engagement_aggregate/2026-09-30/engagement_aggregate-2026-09-30-20261206T071942-597cf6"
    parts = cli_explain.fit(line)
    assert len(parts) == 2 and all(len(p) <= 100 for p in parts)
    assert "".join(p.strip() for p in parts) == line.strip()
