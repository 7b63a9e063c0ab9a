"""Sign-offs, locks, publication versions, reopen and the audit log, without notebooks.

A closed September is seeded straight into the warehouse (``test_close_status.seed_month``); the
whole story through the real close runs in tests/integration/test_close_signoff.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import test_close_status as closing  # the seeded month of the close tests (tests/unit is on sys.path)
import yaml

from helpers.core import config as cfgmod
from helpers.core.errors import EXIT_LOCKED, UsageError
from helpers.investor import aggregate as investor
from helpers.investor import close, publication, signoff, waves
from helpers.investor.inputs import load_inputs
from helpers.oncall.notify import list_notifications
from helpers.runs import locks
from helpers.runs.orchestrate import Outcome
from helpers.storage import warehouse

pytestmark = pytest.mark.unit
P, AS_OF, T0 = closing.P, closing.AS_OF, closing.T0
NOW = dt.datetime(2026, 10, 16, 13, tzinfo=dt.UTC)


def rerun_investor(at: dt.datetime, **changes: int) -> str:
    """A new investor aggregate run whose figures differ by ``changes`` (metric -> new value)."""
    rid = closing.run("investor_aggregate", P, at)
    fig = investor.build(load_inputs(P, AS_OF), run_id=rid)
    for metric, value in changes.items():
        fig.monthly.loc[fig.monthly["metric"] == metric, ["value", "value_int"]] = [float(value), value]
    investor.write(fig)
    return rid


def set_required(value: object) -> None:
    cfg = Path(os.environ["WORKBOOK_CONFIG_DIR"]) / "pipelines.yml"
    data = yaml.safe_load(cfg.read_text())
    data["close"]["required_signoffs"] = value
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    cfgmod._cached.cache_clear()


def final_status() -> close.CloseStatus:
    status = close.close_status(P, AS_OF)
    assert status.final, status.blocker_lines()
    return status


def rendered(tmp_path: Path, text: str = "<html>FINAL v1</html>") -> Outcome:
    archive = tmp_path / f"archive-{len(list(tmp_path.glob('archive-*')))}"
    archive.mkdir()
    (archive / "notebook.html").write_text(text)
    return Outcome(close.REPORT, P, "succeeded", f"month_end_report-{P}-x", None, str(archive))


# ---------------------------------------------------------------- configuration


def test_required_signoffs_default_to_the_rotation_and_must_name_engineers(home):
    assert cfgmod.get().required_signoffs == ("DE1", "DE2", "DE3", "DE4")
    set_required(["DE2", "DE1"])
    assert cfgmod.get().required_signoffs == ("DE2", "DE1")
    set_required([])
    assert cfgmod.get().required_signoffs == ()
    set_required(["DE1", "DE9"])
    with pytest.raises(cfgmod.ConfigError, match=r"close.required_signoffs.1: expected one of DE1, .*'DE9'"):
        cfgmod.get()


# ---------------------------------------------------------------- sign-offs


def test_a_signoff_is_bound_to_the_figures_and_runs_and_a_changed_figure_voids_it(home):
    ids = closing.seed_month()
    config = cfgmod.get()
    with pytest.raises(UsageError, match="--by: expected one of DE1"):
        signoff.sign(P, "DE9", now=NOW)
    with pytest.raises(UsageError, match="no investor figures to sign off"):
        signoff.sign("2026-08", "DE1", now=NOW)
    mine = signoff.sign(P, "DE2", now=NOW, note="checked MRR against billing")
    assert mine.valid and mine.figures["revenue_usd_cents"] == 10_000_000 and mine.figures["margin"] == 0.35
    assert mine.runs["investor_aggregate"] == ids["investor_aggregate"]
    assert mine.runs["profit_aggregate"] == ids["profit_aggregate"]
    assert signoff.missing(P, config) == ["DE1", "DE3", "DE4"]
    # a run that writes the same figures voids nothing
    rerun_investor(T0 + dt.timedelta(minutes=20))
    assert signoff.refresh(P, now=NOW, config=config) == [] and signoff.valid_signoffs(P)[0].signoff_id == 1
    # a run that changes one voids it, naming the run and the change, and tells DE2
    changed_by = rerun_investor(T0 + dt.timedelta(minutes=30), events=9_500)
    later = NOW + dt.timedelta(hours=1)
    [void] = signoff.refresh(P, now=later, config=config)
    assert void.status == "void" and void.voided_by_run == changed_by and void.voided_at == later
    assert void.void_detail == {
        "events": {"old": 9_000, "new": 9_500, "source_run": ids["engagement_aggregate"]}
    }
    assert void.describe().startswith(f"VOID since 2026-10-16 14:00 UTC: run {changed_by} changed events")
    sent = [
        n for n in list_notifications() if n["alert_id"] == f"signoff:{P}:1" and n["channel"] == "warehouse"
    ]
    assert sent and sent[0]["recipient"] == "DE2" and sent[0]["status"] == "sent"
    assert signoff.refresh(P, now=later, config=config) == []  # voided once, told once
    assert signoff.missing(P, config) == ["DE1", "DE2", "DE3", "DE4"]
    events = [(e.event, e.who) for e in signoff.audit_events(P)]
    assert events == [("signoff", "DE2"), ("void", "DE2")]


def test_a_run_that_publishes_changed_figures_voids_the_signoff_as_it_publishes(home, monkeypatch):
    from helpers.runs import records as runs

    closing.seed_month()
    signoff.sign(P, "DE2", now=NOW)
    rid = runs.start_run("investor_aggregate", P, now=NOW, as_of=AS_OF, parameters={}, code_version="test")
    fig = investor.build(load_inputs(P, AS_OF), run_id=rid)
    fig.monthly.loc[fig.monthly["metric"] == "events", ["value", "value_int"]] = [9_500.0, 9_500]
    monkeypatch.setenv(warehouse.RUNNER_ENV, rid)  # as in the runner's kernel: the write is staged
    investor.write(fig)
    monkeypatch.delenv(warehouse.RUNNER_ENV)
    assert signoff.valid_signoffs(P)  # staged, not published: the signed figures still stand
    published_at = NOW + dt.timedelta(minutes=7)
    runs.finish_run(rid, status="succeeded", now=published_at)  # the publish; no refresh called by anyone
    [void] = signoff.list_signoffs(P)
    assert (void.status, void.voided_by_run, void.voided_at) == ("void", rid, published_at)
    told = [
        n for n in list_notifications() if n["alert_id"] == f"signoff:{P}:1" and n["channel"] == "warehouse"
    ]
    assert [n["recipient"] for n in told] == ["DE2"]


def test_signing_again_supersedes_and_the_cli_lists_it(home, capsys):
    from helpers.cli import main as cli

    closing.seed_month()
    assert cli.main(["signoff", "--month", P, "--by", "DE1", "--note", "first look"]) == 0
    assert "DE1 signed off 2026-09" in capsys.readouterr().out
    assert cli.main(["signoff", "--month", P, "--by", "DE1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in out["signoffs"]] == ["superseded", "valid"]
    assert out["recorded"]["engineer"] == "DE1" and out["missing"] == ["DE2", "DE3", "DE4"]
    assert cli.main(["signoff", "--month", P]) == 0
    listing = capsys.readouterr().out
    assert "superseded" in listing and "missing: DE2, DE3, DE4" in listing
    assert cli.main(["signoff", "--month", P, "--by", "DE7"]) == 2
    assert cli.main(["signoff", "--month", "2026-9", "--by", "DE1"]) == 2
    assert "--month: expected a month as YYYY-MM" in capsys.readouterr().err


# ---------------------------------------------------------------- locks


def test_lock_targets_are_the_investor_marts_of_the_month_with_engagement_days_and_its_window(home):
    ids = closing.seed_month()
    config = cfgmod.get()
    targets = close.lock_targets(P, config)
    pipes = {(t.target, t.partition) for t in targets if t.kind == locks.PIPELINE}
    assert {("profit_aggregate", P), ("growth_aggregate", P), ("investor_aggregate", P)} <= pipes
    days = sorted(p for t, p in pipes if t == "engagement_aggregate")
    assert days[0] == "2026-09-01" and days[29] == "2026-09-30" and days[30:] == ["2026-10-01", "2026-10-02"]
    assert not any(t == "profit_unit" for t, _p in pipes)  # feeds experiments, not investors
    tables = {(t.target, t.partition) for t in targets if t.kind == locks.TABLE}
    assert ("profit_monthly", '{"period": "2026-09"}') in tables
    assert ("investor_monthly", '{"period": "2026-09"}') in tables
    assert ("engagement_monthly", '{"period": "2026-09"}') in tables
    assert ids and len(pipes) == 3 + 32


def test_a_locked_partition_refuses_runs_and_writes_until_released(home):
    closing.seed_month()
    eng = warehouse.get_engine()
    signed = [("DE1", NOW), ("DE2", NOW + dt.timedelta(minutes=3))]
    targets = [locks.Target(locks.PIPELINE, "profit_aggregate", P),
               locks.Target(locks.TABLE, "profit_monthly", warehouse.partition_key({"period": P}))]  # fmt: skip
    with eng.begin() as conn:
        assert locks.lock_month(P, targets, version=1, locked_at=NOW, signed_off=signed, conn=conn) == 2
    with pytest.raises(locks.PartitionLocked) as refused:
        locks.refuse_locked_run("profit_aggregate", P)
    text = str(refused.value)
    assert refused.value.exit_code == EXIT_LOCKED == 5
    assert text.startswith("locked: profit_aggregate 2026-09 belongs to 2026-09, published FINAL (version 1)")
    assert "signed off by DE1 at 2026-10-16 13:00 UTC, DE2 at 2026-10-16 13:03 UTC" in text
    assert "workbook reopen --month 2026-09" in text
    locks.refuse_locked_run("growth_aggregate", P)  # not locked: no error
    before = warehouse.read_table("profit_monthly")
    frame = before.assign(revenue_usd_cents=1)
    with pytest.raises(locks.PartitionLocked, match='profit_monthly {"period": "2026-09"}'):
        warehouse.replace_partition(
            "profit_monthly", frame, {"period": P}, written_at=NOW.replace(tzinfo=None)
        )
    pd.testing.assert_frame_equal(warehouse.read_table("profit_monthly"), before)  # the write rolled back
    with eng.begin() as conn:
        assert locks.release_month(P, by="DE1", at=NOW, reason="late expense", conn=conn) == 2
    assert locks.month_lock(P) is None
    locks.refuse_locked_run("profit_aggregate", P)
    warehouse.replace_partition("profit_monthly", frame, {"period": P}, written_at=NOW.replace(tzinfo=None))


def test_the_cli_refuses_a_run_on_a_locked_month_with_exit_5_before_it_starts(home, capsys):
    from helpers.cli import main as cli
    from helpers.runs import records as runs

    closing.seed_month()
    with warehouse.get_engine().begin() as conn:
        locks.lock_month(P, [locks.Target(locks.PIPELINE, "profit_aggregate", P)], version=1, locked_at=NOW,
                         signed_off=[("DE3", NOW)], conn=conn)  # fmt: skip
    before = len(runs.list_runs(pipeline="profit_aggregate"))
    assert cli.main(["run", "profit_aggregate", "--date", P]) == 5
    err = capsys.readouterr().err
    assert (
        "refused: locked: profit_aggregate 2026-09" in err
        and "signed off by DE3 at 2026-10-16 13:00 UTC" in err
    )
    assert len(runs.list_runs(pipeline="profit_aggregate")) == before  # nothing started, nothing recorded
    for argv in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert "5  locked" in capsys.readouterr().out


def test_run_all_and_backfill_report_a_locked_month_as_locked_with_exit_5(home, capsys):
    from helpers.cli import main as cli
    from helpers.runs import orchestrate
    from helpers.runs import records as runs
    from helpers.runs.dag import RunItem

    closing.seed_month()
    targets = [locks.Target(locks.PIPELINE, p, P) for p in ("profit_aggregate", "profit_unit")]
    with warehouse.get_engine().begin() as conn:
        locks.lock_month(P, targets, version=1, locked_at=NOW, signed_off=[("DE1", NOW)], conn=conn)
    before = len(runs.list_runs())
    day = dt.date(2026, 9, 30)
    outcomes = orchestrate.run_items([RunItem("profit_aggregate", P, day), RunItem("profit_unit", P, day)],
                                     clock=lambda: NOW, as_of=AS_OF, workers=1)  # fmt: skip
    assert [(o.pipeline, o.status) for o in outcomes] == [
        ("profit_aggregate", "locked"),
        ("profit_unit", "locked"),
    ]
    assert outcomes[1].reason.startswith("locked: profit_unit 2026-09 belongs to 2026-09, published FINAL")
    assert orchestrate.exit_code(outcomes) == EXIT_LOCKED
    assert orchestrate.exit_code([*outcomes, Outcome("x", P, "failed")]) == 1  # a failure still comes first
    argv = ["backfill", "profit_aggregate", "--from", "2026-09-01", "--to", "2026-09-30", "--force", "--no-checks",
            "--quiet", "--as-of", AS_OF.isoformat()]  # fmt: skip
    assert cli.main(argv) == EXIT_LOCKED
    out, err = capsys.readouterr()
    assert (
        "1 locked" in out and "  profit_aggregate 2026-09: locked: profit_aggregate 2026-09 belongs to" in err
    )
    assert len(runs.list_runs()) == before  # refused before starting: nothing recorded


# ---------------------------------------------------------------- publish, reopen, restate


def test_final_needs_every_required_signoff_then_publishes_and_locks(home, tmp_path):
    closing.seed_month()
    config = cfgmod.get()
    status = final_status()
    for who in ("DE1", "DE2", "DE3"):
        signoff.sign(P, who, now=NOW)
    path, refused, version = close._publish_final(
        status, rendered(tmp_path), now=NOW, by="DE1", config=config
    )
    assert path is None and version is None
    assert refused.startswith("refused to publish 2026-09: no valid sign-off from DE4")
    assert locks.month_lock(P) is None and publication.current(P) is None
    signoff.sign(P, "DE4", now=NOW)
    path, refused, version = close._publish_final(
        status, rendered(tmp_path), now=NOW, by="DE1", config=config
    )
    assert (
        refused is None and version == 1 and path == close.published_dir(P) / "investor_report_2026-09.html"
    )
    meta = json.loads((path.parent / "publication.json").read_text())
    assert meta["version"] == 1 and meta["status"] == "published"
    pub = publication.current(P)
    assert pub.version == 1 and [w for w, _a in pub.signed_off] == ["DE1", "DE2", "DE3", "DE4"]
    assert pub.figures["revenue_usd_cents"]["value"] == 10_000_000
    lock = locks.month_lock(P)
    assert lock.version == 1 and [w for w, _a in lock.signed_off] == ["DE1", "DE2", "DE3", "DE4"]
    with pytest.raises(locks.PartitionLocked):
        signoff.sign(P, "DE1", now=NOW)
    assert [e.event for e in signoff.audit_events(P)] == ["signoff"] * 3 + ["refused", "signoff", "publish"]


def test_reopen_withdraws_keeps_the_report_tells_the_team_and_version_2_is_restated(home, tmp_path):
    from helpers.cli import main as cli

    closing.seed_month()
    set_required(["DE1"])
    config = cfgmod.get()
    signoff.sign(P, "DE1", now=NOW)
    status = final_status()
    first, _r, _v = close._publish_final(status, rendered(tmp_path), now=NOW, by="DE1", config=config)
    with pytest.raises(UsageError, match="--reason"):
        publication.reopen(P, by="DE1", reason=" ", now=NOW)
    assert cli.main(["reopen", "--month", "2026-08", "--by", "DE1", "--reason", "x"]) == 2  # not published
    later = NOW + dt.timedelta(days=1)
    done = publication.reopen(P, by="DE1", reason="late AWS credit", now=later)
    assert done.version == 1 and done.unlocked > 0 and locks.month_lock(P) is None
    assert not first.exists() and done.withdrawn_to == first.parent / "withdrawn" / "v1" / first.name
    assert done.withdrawn_to.read_text() == "<html>FINAL v1</html>"  # kept, unchanged
    meta = json.loads((done.withdrawn_to.parent / "publication.json").read_text())
    assert (
        meta["status"] == "withdrawn"
        and meta["withdrawn_by"] == "DE1"
        and meta["withdraw_reason"] == "late AWS credit"
    )
    assert "WITHDRAWN" in (done.withdrawn_to.parent / "WITHDRAWN.txt").read_text()
    told = {n["recipient"] for n in list_notifications() if n["alert_id"] == f"reopen:{P}:1"}
    assert {"DE1", "DE2", "DE3", "DE4", "lead"} <= told
    assert publication.current(P) is None and publication.publications(P)[0].status == "withdrawn"
    # a run changes profit: DE1's sign-off is void; the Restated table names old, new and the run
    changed_by = rerun_investor(later, profit_usd_cents=3_400_000, total_cost_usd_cents=6_600_000)
    table = publication.restated(P)
    assert table["metric"].tolist() == ["total_cost_usd_cents", "profit_usd_cents"]
    row = table.set_index("metric").loc["profit_usd_cents"]
    assert (row["old_value"], row["new_value"]) == (3_500_000, 3_400_000)
    assert row["old"] == "$35,000.00" and row["new"] == "$34,000.00" and changed_by in row["changed_by"]
    page = publication.restated_html(P)
    assert 'data-metric="profit_usd_cents" data-old="3500000" data-new="3400000"' in page
    assert "Version 2 restates version 1" in page and "late AWS credit" in page
    [void] = signoff.refresh(P, now=later, config=config)
    assert void.engineer == "DE1" and void.voided_by_run == changed_by
    signoff.sign(P, "DE1", now=later)
    second, refused, version = close._publish_final(final_status(), rendered(tmp_path, "<html>v2</html>"),
                                                    now=later, by="DE1", config=config)  # fmt: skip
    assert refused is None and version == 2 and second.read_text() == "<html>v2</html>"
    assert [p.version for p in publication.publications(P)] == [1, 2] and publication.current(P).version == 2
    assert [e.event for e in signoff.audit_events(P)] == [
        "signoff",
        "publish",
        "reopen",
        "void",
        "signoff",
        "publish",
    ]


def test_the_close_of_a_locked_month_runs_nothing_and_refuses_final_with_exit_5(home, tmp_path):
    closing.seed_month()
    set_required([])
    config = cfgmod.get()
    close._publish_final(final_status(), rendered(tmp_path), now=NOW, by="DE2", config=config)
    clock = lambda: NOW  # noqa: E731
    result = close.run_close(P, as_of=AS_OF, clock=clock, config=config, by="DE2")
    assert (
        result.exit_code == 0
        and result.outcomes == ()
        and result.locked.startswith("locked: 2026-09 is published FINAL (version 1)")
    )
    assert result.version == 1 and result.published == close.published_dir(P) / "investor_report_2026-09.html"
    result = close.run_close(P, as_of=AS_OF, clock=clock, final=True, config=config, by="DE2")
    assert result.exit_code == 5 and result.refused.startswith("refused to publish 2026-09 again: locked")
    assert result.as_json()["locked"] and result.as_json()["version"] == 1
    assert [e.event for e in signoff.audit_events(P)][-2:] == ["close", "refused"]


def test_a_close_wave_re_runs_what_reads_a_re_run_and_skips_what_is_locked(home, monkeypatch):
    from helpers.runs import orchestrate
    from helpers.runs.dag import RunItem

    closing.seed_month()
    closing.run("profit_aggregate", P, T0 + dt.timedelta(minutes=8), status="failed")
    with warehouse.get_engine().begin() as conn:
        locks.lock_month(P, [locks.Target(locks.PIPELINE, "growth_aggregate", P)], version=1, locked_at=NOW,
                         signed_off=[], conn=conn)  # fmt: skip
    ran: list[str] = []

    def fake_run_items(items, **_kw):
        ran.extend(i.pipeline for i in items)
        return [Outcome(i.pipeline, i.partition, "succeeded", "r") for i in items]

    monkeypatch.setattr(orchestrate, "run_items", fake_run_items)
    day = dt.date(2026, 9, 30)
    items = [RunItem(p, P, day) for p in close.WAVE_A]
    done = waves.run_wave(items, as_of=AS_OF, parts=close.close_partitions(P, AS_OF), history=False,
                           clock=lambda: NOW, config=cfgmod.get(), workers=1, on_update=lambda o: None,
                           stop=None)  # fmt: skip
    assert ran == [
        "profit_aggregate",
        "profit_unit",
    ]  # profit_unit was up to date, but reads profit_aggregate
    skipped = {o.pipeline: o.reason for o in done if o.status == "skipped"}
    assert skipped["growth_aggregate"].startswith("locked: growth_aggregate 2026-09 belongs to 2026-09")
