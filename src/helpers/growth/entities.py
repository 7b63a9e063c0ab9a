"""Entity resolution: which product accounts are the same company (``duplicate_accounts``).

One row per product account (:func:`account_directory`) is compared on three keys and a name:

- ``billing_customer``: two accounts billed to the same Stripe customer;
- ``domain``: the same web domain once normalised (``www.`` and case dropped);
- ``parent_account``: the CRM records one account as the parent of another (an acquisition);
- ``name``: company names scored with rapidfuzz's ``token_sort_ratio`` once normalised (case,
  punctuation, a leading "The", legal suffixes such as Inc/GmbH/Company and a "(EMEA)" dropped),
  in the same billing country. Identical normalised names ("ACME ANALYTICS, Inc." and "The Acme
  Analytics Company") link the accounts; a merely similar name (score at least the configured
  threshold, default 95) does not: on the default demo company "Greenrail Construction" and
  "Greentrail Construction" are two companies, and so are seven other such pairs. Those are
  *candidates*, listed for a reviewer, who can merge them in the review file.

Linked accounts form one entity (connected components); its id is the product account that
survives: the parent for an acquisition, else the oldest account. Every merge is recorded with
its reasons and score. A reviewed mapping file (``config/account_merges.yml``) overrides the
automatic decisions: ``merges`` confirm (or add) a merge, ``keep_separate`` rejects one. An
automatic merge not yet confirmed there is *proposed*: it is applied to the figures, and the
``duplicate_accounts`` check lists it until someone reviews it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
from rapidfuzz import fuzz, process

from helpers.core import config as cfgmod
from helpers.core import paths
from helpers.growth.lifecycle import GrowthSources

# Links that merge on their own; ``similar_name`` alone only makes a candidate for review.
MERGING_REASONS = frozenset({"billing_customer", "domain", "parent_account", "name"})
# Tokens that say what kind of company it is, not which one.
LEGAL_SUFFIXES = frozenset(
    "inc incorporated corp corporation co company llc ltd limited plc gmbh ag sa sas sarl bv nv sl srl "
    "spa oy ab as aps pty".split()
)
_PARENS = re.compile(r"\([^)]*\)")
_NON_WORD = re.compile(r"[^0-9a-z]+")
_DOTTED = re.compile(r"\b([a-z])\.([a-z])\.?(?=\s|$)")  # "b.v." -> "bv", "s.l." -> "sl"


def normalise_name(name: object) -> str:
    """A company name reduced to what identifies the company (see the module doc)."""
    if not isinstance(name, str):
        return ""
    text = _PARENS.sub(" ", name.lower())
    text = _DOTTED.sub(r"\1\2", text)
    tokens = _NON_WORD.sub(" ", text).split()
    if tokens and tokens[0] == "the":
        tokens = tokens[1:]
    while tokens and tokens[-1] in LEGAL_SUFFIXES:
        tokens = tokens[:-1]
    return " ".join(tokens)


def normalise_domain(domain: object) -> str:
    """``https://WWW.Acme.com/about`` -> ``acme.com``."""
    if not isinstance(domain, str):
        return ""
    text = domain.strip().lower()
    text = re.sub(r"^[a-z]+://", "", text).split("/")[0].rstrip(".")
    return text[4:] if text.startswith("www.") else text


# ---------------------------------------------------------------- the directory


def _map_unique(values: pd.Series, fn: Callable[[object], str]) -> pd.Series:
    """``values.map(fn)``, calling ``fn`` once per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return pd.Series([fn(v) for v in uniques], dtype=object).take(codes).set_axis(values.index)


def _since(versions: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Per account, when its current ``keys`` values first appeared (the start of the latest run of equal versions)."""
    if versions.empty:
        return pd.Series(dtype="datetime64[us, UTC]")
    v = versions.sort_values(["account_id", "updated_at"], kind="stable").reset_index(drop=True)
    vals = v[keys].astype("string").fillna("")
    changed = (vals != vals.groupby(v["account_id"]).shift()).any(axis=1)
    run = changed.groupby(v["account_id"]).cumsum()
    last_run = run.groupby(v["account_id"]).transform("max")
    return v[run == last_run].groupby("account_id")["updated_at"].min()


def account_directory(src: GrowthSources) -> pd.DataFrame:
    """One row per product account with everything resolution compares.

    Columns: ``account_id`` (product), ``crm_account_id``, ``name`` (CRM), ``db_name`` (account
    database), ``domains`` (normalised, from both), ``customer_ids`` (billing customers: the
    account database's ``billing_customer_id`` and the customers whose metadata names the
    account), ``country``, ``parent_account_id`` (the product account of the CRM parent),
    ``created_at`` and ``updated_at`` (the latest change of any of its records).
    """
    crm = src.crm_accounts.sort_values(["account_id", "updated_at"], kind="stable").drop_duplicates(
        "account_id", keep="last"
    )
    db = src.account_db.sort_values(["account_id", "updated_at"], kind="stable")
    db_last = db.drop_duplicates("account_id", keep="last").set_index("account_id")
    crm_by_product = crm.drop_duplicates("product_account_id", keep="last").set_index("product_account_id")
    product_of_crm = crm.set_index("account_id")["product_account_id"]
    ids = sorted(
        set(crm["product_account_id"].dropna())
        | set(db_last.index)
        | set(src.customers.get("account_id", pd.Series(dtype=object)).dropna())
    )
    d = pd.DataFrame({"account_id": ids}).set_index("account_id", drop=False)
    d["crm_account_id"] = crm_by_product["account_id"].reindex(d.index)
    d["name"] = crm_by_product["name"].reindex(d.index)
    d["db_name"] = db_last["company_name"].reindex(d.index)
    d["country"] = crm_by_product["billing_country"].reindex(d.index)
    d["parent_account_id"] = crm_by_product["parent_account_id"].reindex(d.index).map(product_of_crm)
    crm_dom = _map_unique(crm_by_product["domain"].reindex(d.index), normalise_domain)
    db_dom = _map_unique(db_last["domain"].reindex(d.index), normalise_domain)
    d["domains"] = [tuple(sorted({x for x in pair if x})) for pair in zip(crm_dom, db_dom, strict=True)]
    cust = (
        src.customers.groupby("account_id")["customer_id"].agg(tuple) if len(src.customers) else pd.Series()
    )
    db_cust = db_last["billing_customer_id"].reindex(d.index)
    d["customer_ids"] = [
        tuple(sorted({c for c in (*(own if isinstance(own, tuple) else ()), bc) if isinstance(c, str)}))
        for own, bc in zip(cust.reindex(d.index), db_cust, strict=True)
    ]
    created = pd.concat(
        [
            crm_by_product["created_at"].reindex(d.index),
            db.groupby("account_id")["created_at"].min().reindex(d.index),
        ],
        axis=1,
    )
    updated = pd.concat(
        [
            crm_by_product["updated_at"].reindex(d.index),
            db.groupby("account_id")["updated_at"].max().reindex(d.index),
        ],
        axis=1,
    )
    d["created_at"] = created.min(axis=1)
    d["updated_at"] = updated.max(axis=1)
    # when the keys that link accounts (parent, domain, billing customer) took their current values
    crm_since = _since(src.crm_accounts, ["parent_account_id", "domain"])
    crm_since.index = crm_since.index.map(product_of_crm)
    db_since = _since(src.account_db, ["domain", "billing_customer_id"])
    since = pd.concat([crm_since[crm_since.index.notna()], db_since], axis=1).groupby(level=0).max()
    d["key_since"] = since.max(axis=1).reindex(d.index).fillna(d["created_at"])
    d["norm_name"] = _map_unique(d["name"].fillna(d["db_name"]), normalise_name)
    return d.reset_index(drop=True)


# ---------------------------------------------------------------- candidate pairs


def _key_pairs(d: pd.DataFrame, column: str, reason: str) -> pd.DataFrame:
    """Pairs of accounts sharing any value of a tuple-valued ``column``."""
    long = d[["account_id", column]].explode(column).dropna().drop_duplicates()
    shared = long[long.duplicated(column, keep=False)]  # values held by two accounts or more
    both = shared.merge(shared, on=column, suffixes=("_a", "_b"))
    both = both[both["account_id_a"] < both["account_id_b"]]
    return pd.DataFrame(
        {
            "a": both["account_id_a"].to_numpy(),
            "b": both["account_id_b"].to_numpy(),
            "reason": reason,
            "score": 100.0,
        },
        columns=["a", "b", "reason", "score"],
    )


def _name_pairs(d: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Pairs whose normalised names score at least ``threshold`` in the same billing country.

    Reason ``name`` when the normalised names are identical (a variant of the same name: merged),
    ``similar_name`` below that ("Greenrail" / "Greentrail" are two companies as often as one
    typo: a candidate for review, never merged on its own). Blocked on the first three letters of the normalised name (variants of one name keep their
    stem), so the comparison stays near-linear in the number of accounts.
    """
    named = d[d["norm_name"] != ""][["account_id", "norm_name", "country"]]
    named = named.assign(block=named["norm_name"].str[:3])
    rows: list[tuple[str, str, str, float]] = []
    for _block, grp in named.groupby("block", sort=True):
        if len(grp) < 2:
            continue
        names, ids, countries = grp["norm_name"].tolist(), grp["account_id"].tolist(), grp["country"].tolist()
        # rows in slices, each against the names after its first (i < j only): a block of n
        # names never holds an n x n matrix (a common stem at a million accounts is thousands)
        for lo in range(0, len(names) - 1, _NAME_ROWS):
            hi = min(lo + _NAME_ROWS, len(names))
            scores = process.cdist(
                names[lo:hi], names[lo:], scorer=fuzz.token_sort_ratio, score_cutoff=threshold
            )
            for r, c in zip(*scores.nonzero(), strict=True):
                i, j = lo + r, lo + c
                if i < j and countries[i] == countries[j]:
                    score = float(scores[r, c])
                    rows.append((ids[i], ids[j], "name" if score >= 100 else "similar_name", score))
    return pd.DataFrame(rows, columns=["a", "b", "reason", "score"])


_NAME_ROWS = 512  # names scored per slice in _name_pairs


def candidate_pairs(d: pd.DataFrame, *, threshold: float) -> pd.DataFrame:
    """Every pair of accounts that look like one company, one row per pair with all its reasons."""
    parents = d.dropna(subset=["parent_account_id"])
    parent_rows = pd.DataFrame(
        {
            "a": parents["account_id"],
            "b": parents["parent_account_id"],
            "reason": "parent_account",
            "score": 100.0,
        }
    )
    parts = [
        _key_pairs(d, "customer_ids", "billing_customer"),
        _key_pairs(d, "domains", "domain"),
        parent_rows,
        _name_pairs(d, threshold),
    ]
    pairs = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    )
    if pairs.empty:
        return pd.DataFrame(columns=["a", "b", "reasons", "score"])
    lo = pairs[["a", "b"]].min(axis=1)
    hi = pairs[["a", "b"]].max(axis=1)
    pairs = pairs.assign(a=lo, b=hi)
    out = pairs.groupby(["a", "b"], sort=True).agg(
        reasons=("reason", lambda s: "+".join(sorted(set(s)))), score=("score", "min")
    )
    return out.reset_index()


# ---------------------------------------------------------------- reviewed decisions


@dataclass(frozen=True)
class Reviewed:
    """The reviewed mapping file: confirmed merges and rejected ones."""

    merges: tuple[dict[str, Any], ...] = ()  # {account_id, into, reason, reviewed_by, reviewed_on}
    keep_separate: tuple[dict[str, Any], ...] = ()  # {accounts: [...], reason, reviewed_by, reviewed_on}
    path: Path | None = None

    def separate_pairs(self) -> set[tuple[str, str]]:
        """Every pair of accounts a ``keep_separate`` entry keeps apart."""
        out: set[tuple[str, str]] = set()
        for entry in self.keep_separate:
            for a, b in combinations(sorted(set(entry["accounts"])), 2):
                out.add((a, b))
        return out


def merges_path(directory: Path | None = None, filename: str = "account_merges.yml") -> Path:
    """Where the reviewed mapping file lives: the config folder (``WORKBOOK_CONFIG_DIR``)."""
    return (directory or paths.config_dir()) / filename


def load_reviewed(path: Path) -> Reviewed:
    """Read the reviewed mapping file; a missing file is an empty review (nothing decided yet).

    A malformed entry raises ``ValueError`` naming the file, the entry and what was expected.
    """
    if not path.exists():
        return Reviewed(path=path)
    data = cfgmod.load_yaml(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'merges' and 'keep_separate'")
    unknown = sorted(set(data) - {"merges", "keep_separate"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; expected 'merges' and 'keep_separate'")
    merges = tuple(data.get("merges") or ())
    keep = tuple(data.get("keep_separate") or ())
    for i, m in enumerate(merges):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("account_id"), str)
            or not isinstance(m.get("into"), str)
        ):
            raise ValueError(
                f"{path}: merges[{i}]: expected {{account_id: <product id>, into: <product id>, reason: ...}}"
            )
    for i, k in enumerate(keep):
        accts = k.get("accounts") if isinstance(k, dict) else None
        if not isinstance(accts, list) or len(accts) < 2 or not all(isinstance(a, str) for a in accts):
            raise ValueError(
                f"{path}: keep_separate[{i}]: expected {{accounts: [<product id>, <product id>], reason: ...}}"
            )
    return Reviewed(merges, keep, path)


# ---------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Resolution:
    """The outcome of entity resolution."""

    entity_of: pd.Series  # product account -> entity id (itself when alone)
    merges: pd.DataFrame  # one row per merged-away account (see :func:`resolve`)
    pairs: pd.DataFrame  # every candidate pair with reasons, score and status
    directory: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def proposed(self, seen_before: pd.Timestamp | None = None) -> pd.DataFrame:
        """Automatic merges nobody has reviewed yet (seen before ``seen_before`` if given)."""
        m = self.merges[self.merges["status"] == "proposed"]
        return m if seen_before is None else m[m["seen_at"] < seen_before]

    def candidates(self) -> pd.DataFrame:
        """Look-alike pairs linked by a similar name only: not merged, listed for a reviewer."""
        return self.pairs[self.pairs["status"] == "candidate"]

    def customer_entity(self, customers: pd.DataFrame) -> pd.Series:
        """Billing ``customer_id`` -> entity id."""
        acct = customers.set_index("customer_id")["account_id"]
        return acct.map(self.entity_of).fillna(acct)


def _components(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, str]:
    """Union-find: node -> a representative of its connected component."""
    parent = {n: n for n in nodes}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: find(n) for n in parent}


MERGE_COLUMNS = (
    "account_id",
    "into",
    "reasons",
    "score",
    "status",
    "crm_account_id",
    "into_crm_account_id",
    "name",
    "into_name",
    "seen_at",
)


def resolve(d: pd.DataFrame, *, reviewed: Reviewed | None = None, threshold: float = 95) -> Resolution:
    """Group the directory's accounts into companies and record every merge.

    ``merges`` columns (:data:`MERGE_COLUMNS`): ``account_id`` (merged away), ``into`` (the entity
    id), ``reasons`` (``+``-joined: billing_customer, domain, parent_account, name, reviewed),
    ``score`` (the weakest link's score), ``status`` (``proposed``: automatic and unreviewed;
    ``confirmed``: automatic and confirmed in the review file; ``reviewed``: only in the review
    file), the ``crm_account_id`` and ``name`` of both sides, and ``seen_at`` (when the evidence
    appeared: the later record update of the pair).
    """
    reviewed = reviewed or Reviewed()
    pairs = candidate_pairs(d, threshold=threshold)
    separate = reviewed.separate_pairs()
    pairs["status"] = [
        "rejected" if (a, b) in separate else "auto" if set(r.split("+")) & MERGING_REASONS else "candidate"
        for a, b, r in zip(pairs["a"], pairs["b"], pairs["reasons"], strict=True)
    ]
    auto = pairs[pairs["status"] == "auto"]
    edges = list(zip(auto["a"], auto["b"], strict=True))
    edges += [(min(m["account_id"], m["into"]), max(m["account_id"], m["into"])) for m in reviewed.merges]
    info = d.set_index("account_id")
    entity_of = _entity_ids(info, _components(d["account_id"].tolist(), edges), reviewed)
    return Resolution(entity_of, _merge_records(entity_of, auto, info, reviewed), pairs, d)


def _entity_ids(info: pd.DataFrame, comp: dict[str, str], reviewed: Reviewed) -> pd.Series:
    """Product account -> the id of its entity: the account that survives in its component (the
    parent of an acquisition, else a reviewed merge's target, else the oldest account)."""
    members = pd.DataFrame({"account_id": list(comp), "component": list(comp.values())})
    parent = members["account_id"].map(info["parent_account_id"])
    members["is_child"] = parent.notna() & parent.map(comp).eq(members["component"])
    targets = {m["into"] for m in reviewed.merges}
    members["not_target"] = ~members["account_id"].isin(targets)
    members["created_at"] = members["account_id"].map(info["created_at"])
    canon = members.sort_values(
        ["component", "is_child", "not_target", "created_at", "account_id"], kind="stable"
    )
    canon = canon.drop_duplicates("component").set_index("component")["account_id"]
    entity_of = members.set_index("account_id")["component"].map(canon).sort_index()
    entity_of.name = "entity_id"
    return entity_of


def _merge_records(
    entity_of: pd.Series, auto: pd.DataFrame, info: pd.DataFrame, reviewed: Reviewed
) -> pd.DataFrame:
    """One row per merged-away account with the links that merged it (see :func:`resolve`)."""
    merged = entity_of[entity_of.index != entity_of.to_numpy()]
    rows = []
    confirmed = {(m["account_id"], m["into"]) for m in reviewed.merges}
    confirmed_accounts = {m["account_id"] for m in reviewed.merges}
    link_reasons, link_score = _links_within(entity_of, auto)
    for acct, into in merged.items():
        reasons = sorted(link_reasons.get(acct, ()))
        is_manual = acct in confirmed_accounts or (acct, into) in confirmed
        status = ("confirmed" if is_manual else "proposed") if reasons else "reviewed"
        if is_manual:
            reasons.append("reviewed")
        updates = [info.at[acct, "key_since"], info.at[into, "key_since"]]
        rows.append(
            {
                "account_id": acct,
                "into": into,
                "reasons": "+".join(reasons),
                "score": float(link_score.get(acct, 100.0)),
                "status": status,
                "crm_account_id": info.at[acct, "crm_account_id"],
                "into_crm_account_id": info.at[into, "crm_account_id"],
                "name": _name(info, acct),
                "into_name": _name(info, into),
                "seen_at": max(u for u in updates if pd.notna(u))
                if any(pd.notna(u) for u in updates)
                else pd.NaT,
            }
        )
    return pd.DataFrame(rows, columns=list(MERGE_COLUMNS))


def _links_within(entity_of: pd.Series, auto: pd.DataFrame) -> tuple[dict[str, set[str]], dict[str, float]]:
    """Per account, the reasons and the weakest score of its automatic links inside its own entity."""
    ends = auto.assign(ea=auto["a"].map(entity_of), eb=auto["b"].map(entity_of))
    ends = ends[ends["ea"] == ends["eb"]]
    long = pd.concat(
        [ends[["a", "reasons", "score"]].set_axis(["acct", "reasons", "score"], axis=1),
         ends[["b", "reasons", "score"]].set_axis(["acct", "reasons", "score"], axis=1)],
        ignore_index=True,
    )  # fmt: skip
    reasons: dict[str, set[str]] = {}
    for acct, rs in zip(long["acct"], long["reasons"], strict=True):
        reasons.setdefault(acct, set()).update(rs.split("+"))
    return reasons, long.groupby("acct")["score"].min().to_dict()


def _name(info: pd.DataFrame, account: str) -> Any:
    """The account's CRM name, else its account database name."""
    name = info.at[account, "name"]
    return name if pd.notna(name) else info.at[account, "db_name"]


def resolve_sources(
    src: GrowthSources, *, reviewed: Reviewed | None = None, threshold: float = 95, enabled: bool = True
) -> Resolution:
    """:func:`account_directory` then :func:`resolve`; ``enabled=False`` keeps every account apart."""
    d = account_directory(src)
    if not enabled:
        ident = pd.Series(d["account_id"].to_numpy(), index=d["account_id"].to_numpy(), name="entity_id")
        empty = pd.DataFrame(columns=["account_id", "into", "reasons", "score", "status", "seen_at"])
        return Resolution(ident, empty, pd.DataFrame(columns=["a", "b", "reasons", "score", "status"]), d)
    return resolve(d, reviewed=reviewed, threshold=threshold)


def reviewed_entries(merges: pd.DataFrame, *, by: str, on: dt.date) -> list[dict[str, Any]]:
    """``merges`` rows as entries for the review file (what a reviewer pastes after checking them)."""
    return [
        {
            "account_id": r.account_id,
            "into": r.into,
            "reason": f"{r.reasons}: {r.name!s} is {r.into_name!s}",
            "reviewed_by": by,
            "reviewed_on": on.isoformat(),
        }
        for r in merges.itertuples()
    ]
