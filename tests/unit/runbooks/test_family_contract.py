"""The three family runbook modules follow one contract: the same names and signatures for loading
the state, reading the check now, applying a fix and verifying."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from helpers.engagement import runbook as engagement_runbook
from helpers.growth import runbook as growth_runbook
from helpers.profit import runbook as profit_runbook

pytestmark = pytest.mark.unit

FAMILIES = {"profit": profit_runbook, "growth": growth_runbook, "engagement": engagement_runbook}
CONTRACT = {
    "load_state": ["ctx", "catalogue_id"],
    "check_now": ["state"],
    "apply_fix": ["ctx", "diag", "state"],
    "verify": ["ctx", "diag", "state"],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_runbook_module_has_the_contract_functions(family):
    module = FAMILIES[family]
    for name, params in CONTRACT.items():
        fn = getattr(module, name, None)
        assert callable(fn), f"{module.__name__}.{name} is missing"
        assert list(inspect.signature(fn).parameters) == params, f"{module.__name__}.{name}"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_state_is_a_dataclass_that_names_its_catalogue_id(family):
    state = FAMILIES[family].State
    assert dataclasses.is_dataclass(state)
    assert "catalogue_id" in {f.name for f in dataclasses.fields(state)}
