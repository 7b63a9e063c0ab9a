"""Generation as a whole: byte-identical output per seed, chunked scale-out, and ``workbook demo-data``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers.cli import demo as cli_demo
from helpers.cli import main as cli
from helpers.demo import company as co
from helpers.demo import generate as gen
from helpers.demo.spec import DemoSpec, FaultSpec
from helpers.storage import landing

pytestmark = pytest.mark.unit

END = dt.date(2026, 10, 31)
SMALL = DemoSpec(accounts=150, months=2, seed=42, end=END, events_per_user_day=0.2)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    a = gen.generate(SMALL, tmp_path / "a" / "landing")
    gen.generate(SMALL, tmp_path / "b" / "landing")
    da, db = digest(tmp_path / "a" / "landing"), digest(tmp_path / "b" / "landing")
    assert da == db and len(da) > 500
    assert {p.split("/")[0] for p in da} >= set(gen.ACCOUNT_SOURCES + gen.COMPANY_SOURCES + gen.EVENT_SOURCES)
    assert a.sources["events"]["rows"] > 0
    gen.generate(DemoSpec(**{**SMALL.__dict__, "seed": 43}), tmp_path / "c" / "landing", events=False)
    dc = digest(tmp_path / "c" / "landing")
    root = tmp_path / "c" / "landing"
    same = [
        k
        for k, v in dc.items()
        if da.get(k) == v and k.endswith(".parquet") and pq.read_metadata(root / k).num_rows
    ]
    assert not same, f"{len(same)} files identical across seeds"


def test_faulted_run_is_deterministic_too(tmp_path: Path) -> None:
    spec = DemoSpec(
        **{
            **SMALL.__dict__,
            "faults": (FaultSpec.parse("math_errors"), FaultSpec.parse("duplicate_accounts")),
        }
    )
    gen.generate(spec, tmp_path / "a", events=False)
    gen.generate(spec, tmp_path / "b", events=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_chunked_generation_matches_the_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accounts are simulated and written in chunks: several part files per partition, one arrival."""
    monkeypatch.setattr(co, "CHUNK_ACCOUNTS", 60)
    spec = DemoSpec(
        accounts=150,
        months=2,
        seed=42,
        end=END,
        faults=(FaultSpec.parse("stale_data"), FaultSpec.parse("math_errors")),
    )
    summary = gen.generate(spec, tmp_path / "landing", events=False)
    root = tmp_path / "landing"
    assert co.World(spec).n_chunks == 3
    subs = landing.read_source("subscriptions", root=root)
    assert subs["subscription_id"].str.startswith("sub_").all()
    accounts = landing.read_source("account_db", root=root)["account_id"]
    assert accounts.nunique() == 150 and accounts.max() == "A0000150"
    by_part: dict[str, set[str]] = {}
    for d in landing.deliveries("billing_customers", root=root):
        by_part.setdefault(d.partition, set()).add(d.arrived_at)
    assert all(len(v) == 1 for v in by_part.values()), "chunks of one partition arrive together"
    assert any(len(list((root / "billing_customers" / f"dt={p}").glob("*.parquet"))) > 1 for p in by_part)
    stale = next(r for r in summary.faults if r.fault == "stale_data")
    inv = landing.read_source("billing_invoices", root=root, with_arrival=True)
    assert inv["_partition"].max() == stale.details["last_delivered_partition"]
    assert stale.details["withheld_rows"] >= len(stale.rows) > 0, "rows of every chunk are withheld"
    nulls = next(r for r in summary.faults if r.fault == "math_errors" and r.source == "billing_invoices")
    assert set(inv.loc[inv["amount"].isna(), "invoice_line_id"]) == set(nulls.rows)


def test_usage_periods_cover_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(co, "CHUNK_ACCOUNTS", 40)
    spec = DemoSpec(accounts=100, months=3, seed=1, end=END)
    chunks = co.simulate(spec)
    assert [c.offset for c in chunks] == [0, 40, 80]
    ids = [a for c in chunks for a in co.account_ids(c)]
    assert ids == [f"A{i:07d}" for i in range(1, 101)]
    assert {p for c in chunks for p in co.usage_periods(c)["account_id"]} <= set(ids)


def test_failed_generation_keeps_the_previous_landing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "landing"
    gen.generate(DemoSpec(accounts=50, months=1, end=END), root, events=False)
    before = digest(root)

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen.fin, "cloud_costs", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        gen.generate(DemoSpec(accounts=60, months=1, end=END), root, events=False)
    assert digest(root) == before
    assert not (tmp_path / ".landing.building").exists()


def test_refuses_to_replace_a_landing_it_did_not_write(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    (root / "billing").mkdir(parents=True)
    (root / "billing" / "real.csv").write_text("keep me")
    with pytest.raises(ValueError, match="did not write"):
        gen.generate(DemoSpec(accounts=20, months=1, end=END), root, events=False)
    assert (root / "billing" / "real.csv").exists()
    gen.generate(DemoSpec(accounts=20, months=1, end=END), root, events=False, force=True)
    assert not (root / "billing").exists() and (root / gen.DEMO_FILE).exists()


# ----------------------------------------------------------------------------- the CLI verb


def test_cli_demo_data_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        [
            "demo-data",
            "--accounts",
            "60",
            "--months",
            "2",
            "--end",
            "2026-10-31",
            "--no-events",
            "--json",
            "--fault",
            "stale_data",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    root = home / "data" / "landing"
    assert out["landing"] == str(root) and out["history"] == {"start": "2026-09-01", "end": "2026-10-31"}
    assert out["sources"]["billing_invoices"]["files"] > 0 and out["faults"][0]["fault"] == "stale_data"
    truth = json.loads((root / gen.FAULTS_FILE).read_text())
    assert truth["spec"]["faults"] == ["stale_data"] and truth["faults"][0]["rows"]
    assert json.loads((root / gen.DEMO_FILE).read_text())["spec"]["accounts"] == 60


def test_cli_defaults_end_to_the_previous_month(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_demo, "wall_clock", lambda: dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC))
    assert cli.main(["demo-data", "--last-complete-month"]) == 0
    assert capsys.readouterr().out.strip() == "2026-10"
    assert cli.main(["demo-data", "--accounts", "40", "--months", "1", "--no-events"]) == 0
    out = capsys.readouterr().out
    assert "end 2026-10-31 (default: the last day of the previous month)" in out
    assert "billing_invoices" in out and "no faults injected" in out
    assert cli.main(["demo-data", "--last-complete-month", "--end", "2026-03-15"]) == 0
    assert capsys.readouterr().out.strip() == "2026-02"


def test_cli_usage_errors(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo-data", "--fault", "nope", "--no-events"]) == 2
    assert "unknown fault" in capsys.readouterr().err
    assert cli.main(["demo-data", "--end", "31/10/2026", "--no-events"]) == 2
    assert "--end" in capsys.readouterr().err
    assert cli.main(["demo-data", "--accounts", "0", "--no-events"]) == 2
    (home / "data" / "landing" / "crm").mkdir(parents=True)
    (home / "data" / "landing" / "crm" / "export.csv").write_text("x")
    assert (
        cli.main(["demo-data", "--accounts", "20", "--months", "1", "--end", "2026-10-31", "--no-events"])
        == 2
    )
    assert "did not write" in capsys.readouterr().err
