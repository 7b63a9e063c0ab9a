"""Entity resolution: keys, names, merges recorded with reasons, and the reviewed mapping file."""

import pandas as pd
import pytest

from conftest import REPO
from helpers.growth import entities
from helpers.growth.lifecycle import GrowthSources

pytestmark = pytest.mark.unit


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def company(crm_id, product, name, domain, *, customer, country="US", parent=None, created="2025-01-01"):
    return {
        "crm": {
            "account_id": crm_id,
            "name": name,
            "domain": domain,
            "parent_account_id": parent,
            "product_account_id": product,
            "billing_country": country,
            "created_at": ts(created),
            "updated_at": ts(created),
        },
        "db": {
            "account_id": product,
            "company_name": name,
            "domain": domain,
            "billing_customer_id": customer,
            "created_at": ts(created),
            "updated_at": ts(created),
        },
    }


BASE = [
    company(
        "001A", "A1", "Maplescale Foods Inc", "maplescalefoods.com", customer="cus_1", created="2024-01-01"
    ),
    company(
        "001B", "A2", "Orbitpath Clinics Inc", "orbitpathclinics.com", customer="cus_2", created="2024-02-01"
    ),
    company("001C", "A3", "Atlaslens Foods Ltd", "atlaslensfoods.co.uk", customer="cus_3", country="GB"),
    company("001D", "A4", "Greenrail Construction Inc", "greenrailconstruction.com", customer="cus_4"),
    company("001E", "A5", "Greentrail Construction Inc", "greentrailconstruction.com", customer="cus_5"),
]


def sources(rows, extra_crm=(), extra_db=()) -> GrowthSources:
    crm = pd.DataFrame([r["crm"] for r in rows] + list(extra_crm))
    db = pd.DataFrame([r["db"] for r in rows] + list(extra_db))
    customers = pd.DataFrame(
        [{"customer_id": r["db"]["billing_customer_id"], "account_id": r["db"]["account_id"]} for r in rows]
    ).drop_duplicates("customer_id")
    empty = pd.DataFrame()
    return GrowthSources(
        as_of=ts("2026-12-01"),
        crm_accounts=crm,
        crm_stages=empty,
        account_db=db,
        sales=empty,
        customers=customers,
        subscriptions=empty,
        invoices=empty,
        payments=empty,
        fx=empty,
        assignments=empty,
    )


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("ACME ANALYTICS, Inc.", "acme analytics"),
        ("The Acme Analytics Company", "acme analytics"),
        ("Acme Analytics Incorporated", "acme analytics"),
        ("Acme Analytics Ltd (EMEA)", "acme analytics"),
        ("Oakline Data B.V.", "oakline data"),
        (None, ""),
    ],
)
def test_normalise_name(raw, norm):
    assert entities.normalise_name(raw) == norm


def test_normalise_domain():
    assert entities.normalise_domain("https://WWW.Acme.com/about") == "acme.com"
    assert entities.normalise_domain("www.acme.co.uk.") == "acme.co.uk"


def test_distinct_companies_stay_apart_and_look_alikes_are_only_candidates():
    res = entities.resolve_sources(sources(BASE))
    assert res.merges.empty
    assert (res.entity_of == res.entity_of.index).all()
    cand = res.candidates()
    assert list(zip(cand["a"], cand["b"], strict=True)) == [("A4", "A5")]  # Greenrail vs Greentrail
    assert 95 <= cand["score"].iloc[0] < 100


def test_name_variant_with_shared_billing_customer_merges_into_the_original():
    dup = company(
        "001Z",
        "A9",
        "MAPLESCALE FOODS, Inc.",
        "www.maplescalefoods.com",
        customer="cus_1",
        created="2026-10-08",
    )
    res = entities.resolve_sources(sources(BASE, [dup["crm"]], [dup["db"]]))
    m = res.merges.set_index("account_id").loc["A9"]
    assert m["into"] == "A1" and m["status"] == "proposed"
    assert set(m["reasons"].split("+")) == {"billing_customer", "domain", "name"}
    assert m["seen_at"] == ts("2026-10-08")
    assert res.entity_of["A9"] == "A1" and res.customer_entity(sources(BASE).customers)["cus_1"] == "A1"


def test_acquisition_merges_the_child_into_its_parent():
    target = dict(BASE[2]["crm"], parent_account_id="001B", updated_at=ts("2026-10-08 15:00"))
    moved = dict(BASE[2]["db"], domain="orbitpathclinics.com", updated_at=ts("2026-10-08 15:01"))
    res = entities.resolve_sources(sources(BASE, [target], [moved]))
    m = res.merges.set_index("account_id").loc["A3"]
    assert m["into"] == "A2"  # the acquirer survives though the acquired account is older
    assert set(m["reasons"].split("+")) == {"domain", "parent_account"}
    assert m["seen_at"] == ts("2026-10-08 15:01")  # when the link appeared, not when the accounts did


def test_reviewed_file_confirms_rejects_and_adds(tmp_path):
    dup = company("001Z", "A9", "Maplescale Foods Inc.", "maplescalefoods.com", customer="cus_9")
    src = sources(BASE, [dup["crm"]], [dup["db"]])
    path = tmp_path / "account_merges.yml"
    path.write_text(
        "merges:\n"
        "  - {account_id: A9, into: A1, reason: variant, reviewed_by: DE3, reviewed_on: 2026-10-12}\n"
        "  - {account_id: A5, into: A4, reason: same company after all, reviewed_by: DE3, reviewed_on: 2026-10-12}\n"
    )
    res = entities.resolve_sources(src, reviewed=entities.load_reviewed(path))
    status = res.merges.set_index("account_id")["status"].to_dict()
    assert status == {"A9": "confirmed", "A5": "reviewed"}
    assert res.proposed().empty

    path.write_text("keep_separate:\n  - {accounts: [A1, A9], reason: two franchises, reviewed_by: DE4}\n")
    kept = entities.resolve_sources(src, reviewed=entities.load_reviewed(path))
    assert kept.merges.empty and kept.entity_of["A9"] == "A9"
    assert kept.pairs.set_index(["a", "b"]).loc[("A1", "A9"), "status"] == "rejected"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("merges:\n  - {account_id: A1}\n", "merges[0]: expected {account_id"),
        ("keep_separate:\n  - {accounts: [A1]}\n", "keep_separate[0]: expected {accounts"),
        ("merge: []\n", "unknown key(s) ['merge']"),
    ],
)
def test_malformed_review_file_names_the_entry(tmp_path, text, message):
    path = tmp_path / "account_merges.yml"
    path.write_text(text)
    with pytest.raises(ValueError, match="account_merges.yml") as err:
        entities.load_reviewed(path)
    assert message in str(err.value)


def test_the_committed_review_file_loads_and_a_missing_one_is_empty(tmp_path):
    committed = entities.load_reviewed(REPO / "config" / "account_merges.yml")
    assert committed.path is not None
    assert entities.load_reviewed(tmp_path / "absent.yml").merges == ()


def test_resolution_can_be_switched_off():
    dup = company("001Z", "A9", "MAPLESCALE FOODS, Inc.", "maplescalefoods.com", customer="cus_1")
    res = entities.resolve_sources(sources(BASE, [dup["crm"]], [dup["db"]]), enabled=False)
    assert res.merges.empty and res.entity_of["A9"] == "A9"


def test_reviewed_entries_are_ready_to_paste():
    dup = company("001Z", "A9", "MAPLESCALE FOODS, Inc.", "maplescalefoods.com", customer="cus_1")
    res = entities.resolve_sources(sources(BASE, [dup["crm"]], [dup["db"]]))
    (entry,) = entities.reviewed_entries(res.proposed(), by="DE3", on=pd.Timestamp("2026-10-12").date())
    assert entry["account_id"] == "A9" and entry["into"] == "A1" and entry["reviewed_by"] == "DE3"
