"""helpers.profit.inputs: guards, screening, re-sync copies and joins that assert their row counts."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.profit.inputs import (
    JoinFanOut,
    JoinLog,
    dedupe_exact,
    latest,
    ratio,
    require_complete,
    screen_integers,
)

pytestmark = pytest.mark.unit


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_ratio_gives_a_null_with_its_reason_for_zero_or_null_denominators():
    assert ratio(1, 4, what="m") == (0.25, None)
    assert ratio(1, 0, what="margin") == (None, "margin: zero denominator")
    assert ratio(None, 3, what="m")[1] == "m: an input is NULL"


def test_require_complete_refuses_a_null_before_a_sum():
    with pytest.raises(ValueError, match="1 NULL value"):
        require_complete(pd.DataFrame({"a": [1, None]}), ["a"], what="revenue")


def test_screen_integers_coerces_integer_text_and_quarantines_the_rest():
    frame = pd.DataFrame(
        {
            "expense_id": ["e1", "e2", "e3", "e4", "e5"],
            "amount": [100, "250", "12.5", None, "abc"],
            "_partition": "2026-10-15",
        }
    )
    good, found = screen_integers(frame, "amount", source="ops_expenses", key="expense_id")
    assert good["amount"].tolist() == [100, 250] and good["amount"].dtype == "int64"
    actions = dict(zip(found["key_value"], found["action"], strict=True))
    assert actions == {"e2": "coerced", "e3": "quarantined", "e4": "quarantined", "e5": "quarantined"}
    reasons = dict(zip(found["key_value"], found["reason"], strict=True))
    assert reasons["e4"] == "amount is NULL" and reasons["e5"] == "amount is text that is not a number"
    assert found.loc[found["key_value"] == "e4", "raw"].item() == "NULL"


def test_dedupe_exact_drops_unchanged_redeliveries_but_keeps_new_versions():
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1", "c2"],
            "account_id": ["A1", "A1", "A9", "A2"],
            "_partition": ["2026-09-01", "2026-10-15", "2026-10-20", "2026-09-01"],
            "_arrived_at": [ts("2026-09-02"), ts("2026-10-16"), ts("2026-10-21"), ts("2026-09-02")],
        }
    )
    kept, found = dedupe_exact(frame, source="billing_customers")
    assert len(kept) == 3
    assert found[["key_value", "delivery_partition", "action"]].values.tolist() == [
        ["c1", "2026-10-15", "deduplicated"]
    ]
    assert latest(kept, ["customer_id"]).set_index("customer_id")["account_id"].to_dict() == {
        "c1": "A9",
        "c2": "A2",
    }


def test_join_log_asserts_row_counts_and_records_each_join():
    facts = pd.DataFrame({"customer_id": ["c1", "c1", "c2"], "amount": [1, 2, 3]})
    dim = pd.DataFrame({"customer_id": ["c1", "c2"], "account_id": ["A1", "A2"]})
    joins = JoinLog()
    out = joins.merge(facts, dim, on="customer_id", name="facts x dim")
    assert len(out) == 3 and joins.frame()["result_rows"].tolist() == [3]
    with pytest.raises(JoinFanOut, match="3 rows became 5"):
        joins.merge(facts, pd.concat([dim, dim.head(1)]), on="customer_id", name="facts x duplicated dim")
    assert joins.frame()["right_duplicate_keys"].tolist() == [0, 1]
