"""The status board's freshness and lineage: what is late, and what it puts at risk downstream.

Pure functions of the monitors' results (``helpers.checks.monitors.evaluate_monitors``, the same
verdicts the alerts come from), the landing arrivals, the open incidents and the configuration:

- **Freshness** (:func:`freshness_rows`): each pipeline's marts and each landing source against its
  SLA bands: *fresh*, *late* (older than ``freshness_warn_hours``: the monitor's warning) or
  *breached* (older than ``freshness_critical_hours``: critical). A source read by several
  pipelines is judged by each reader's bands and shows the worst; a monthly source is judged on its
  latest due period (``sources.<name>.cadence`` in ``config/pipelines.yml``).
- **Lineage** (:func:`lineage`): sources -> pipelines -> investor figures, following
  ``Pipeline.lineage`` (``depends_on`` and ``reads``). A pipeline has problems of its own (a late
  or missing source, stale marts, a failed or blocked recent run, an open incident about it) and
  inherits those of everything upstream of it: anything with either is *at risk*, with the reason
  in words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helpers.checks.framework import CheckResult
from helpers.core import config as cfgmod
from helpers.core.timeutil import as_utc, format_age
from helpers.investor import metrics
from helpers.runs.dag import Dag

FRESH, LATE, BREACHED = "fresh", "late", "breached"
BAND_RANK = {FRESH: 0, LATE: 1, BREACHED: 2}
OK, AT_RISK = "ok", "at risk"
RISK_ORDER = ("incident", "run", "source", "marts")  # Risk.origin's first word, most pressing first


def band_of(result: CheckResult) -> str:
    """A freshness monitor's verdict as a band: passing is fresh, a warning late, critical breached."""
    if not result.failed:
        return FRESH
    return LATE if result.severity == "warning" else BREACHED


# ---------------------------------------------------------------- freshness


@dataclass(frozen=True)
class Freshness:
    """One mart (a pipeline's marts) or landing source against its SLA bands at ``as_of``."""

    kind: str  # mart | source
    name: str  # the pipeline (its marts) or the source
    band: str  # fresh | late | breached
    last_update: dt.datetime | None  # latest mart write / landing arrival by as_of
    warn_hours: float
    critical_hours: float
    summary: str  # the monitor's sentence (the worst reader's, for a source)
    readers: tuple[str, ...] = ()  # the pipelines judging it
    tables: tuple[str, ...] = ()  # a pipeline's marts
    cadence: str = "daily"  # daily | monthly (sources); day | month (marts: the partition)

    def age(self, as_of: dt.datetime) -> dt.timedelta | None:
        return as_utc(as_of) - self.last_update if self.last_update else None

    def updated(self, as_of: dt.datetime) -> str:
        """``updated 3 h 5 min ago``, or ``no data yet``."""
        age = self.age(as_of)
        return f"updated {format_age(age)} ago" if age is not None else "no data yet"

    def detail(self) -> str:
        """The monitor's sentence without the name the row already shows: ``is 19.5 h old (> 18 h)``."""
        text = self.summary.removeprefix(
            f"{self.name} marts" if self.kind == "mart" else f"source {self.name}"
        )
        return text.removeprefix(":").strip().removeprefix("(latest arrival)").strip()

    def as_json(self, as_of: dt.datetime) -> dict[str, Any]:
        age = self.age(as_of)
        return {
            "kind": self.kind,
            "name": self.name,
            "band": self.band,
            "last_update": self.last_update.isoformat() if self.last_update else None,
            "age_hours": round(age.total_seconds() / 3600, 2) if age is not None else None,
            "updated": self.updated(as_of),
            "warn_hours": self.warn_hours,
            "critical_hours": self.critical_hours,
            "summary": self.summary,
            "detail": self.detail(),
            "readers": list(self.readers),
            "tables": list(self.tables),
            "cadence": self.cadence,
        }


def _last_update(result: CheckResult) -> dt.datetime | None:
    value = result.evidence.get("last_update")
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, str) and value:
        return as_utc(dt.datetime.fromisoformat(value))
    return None


def freshness_rows(
    results: Sequence[CheckResult],
    config: cfgmod.WorkbookConfig,
    *,
    last_arrivals: Mapping[str, dt.datetime | None],
    mart_tables: Mapping[str, Sequence[str]],
) -> list[Freshness]:
    """Every pipeline's marts (config order), then every source its pipelines read (by name).

    ``results``: the monitors' results; ``last_arrivals``: each source's latest landing arrival by
    ``as_of``; ``mart_tables``: the tables of each pipeline's marts.
    """
    pipes = config.pipelines.pipelines
    marts = {
        r.pipeline: r for r in results if r.kind == "freshness" and r.check_id == f"{r.pipeline}.freshness"
    }
    out = []
    for pid, p in pipes.items():
        r = marts.get(pid)
        if r is None:
            continue
        out.append(
            Freshness(
                "mart",
                pid,
                band_of(r),
                _last_update(r),
                p.sla.freshness_warn_hours,
                p.sla.freshness_critical_hours,
                r.summary,
                (pid,),
                tuple(mart_tables.get(pid, ())),
                p.partition,
            )  # fmt: skip
        )
    by_source: dict[str, list[CheckResult]] = {}
    for r in results:
        if r.kind == "source_freshness":
            by_source.setdefault(r.check_id.rsplit(".", 1)[-1], []).append(r)
    for source in sorted(by_source):
        found = by_source[source]
        worst = max(found, key=lambda r: (BAND_RANK[band_of(r)], -pipes[r.pipeline].sla.freshness_warn_hours))
        p = pipes[worst.pipeline]
        cadence = config.pipelines.sources.get(source)
        out.append(
            Freshness(
                "source",
                source,
                band_of(worst),
                last_arrivals.get(source),
                p.sla.freshness_warn_hours,
                p.sla.freshness_critical_hours,
                worst.summary,
                tuple(dict.fromkeys(r.pipeline for r in found)),
                (),
                cadence.cadence if cadence else "daily",
            )  # fmt: skip
        )
    return out


# ---------------------------------------------------------------- lineage


@dataclass(frozen=True)
class Risk:
    """Something wrong at ``origin`` (a source, a pipeline, an incident), and why, in words."""

    origin: str
    reason: str


@dataclass(frozen=True)
class Node:
    """One node of the lineage: a source, a pipeline or a group of investor figures.

    ``own``: its own problems; ``inherited``: ``(upstream, risk)`` for each problem upstream of it
    (each origin once, through the nearest upstream that carries it).
    """

    kind: str  # source | pipeline | figures
    name: str
    label: str
    inputs: tuple[str, ...]  # sources and upstream pipelines it reads (figures: the pipelines)
    own: tuple[Risk, ...] = ()
    inherited: tuple[tuple[str, Risk], ...] = ()
    band: str | None = None  # sources: their freshness band

    @property
    def state(self) -> str:
        if self.kind == "source":
            return self.band or FRESH
        return AT_RISK if self.own or self.inherited else OK

    @property
    def risks(self) -> list[Risk]:
        """Every problem it carries, its own first, each origin once."""
        seen: dict[str, Risk] = {r.origin: r for r in self.own}
        for _via, r in self.inherited:
            seen.setdefault(r.origin, r)
        return list(seen.values())

    def reasons(self) -> list[str]:
        """Why it is at risk, one sentence per problem."""
        out = [r.reason for r in self.own]
        out += [f"upstream {via}: {r.reason}" for via, r in self.inherited]
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "label": self.label,
            "inputs": list(self.inputs),
            "state": self.state,
            "reasons": self.reasons(),
        }


@dataclass(frozen=True)
class Lineage:
    """Sources -> pipelines (lineage order) -> investor figures, each with its state."""

    sources: tuple[Node, ...]
    pipelines: tuple[Node, ...]
    figures: tuple[Node, ...]

    def node(self, name: str) -> Node:
        for n in (*self.sources, *self.pipelines, *self.figures):
            if n.name == name:
                return n
        raise KeyError(name)

    def at_risk(self) -> list[str]:
        return [n.name for n in (*self.pipelines, *self.figures) if n.state == AT_RISK]

    def as_json(self) -> dict[str, Any]:
        return {
            "sources": [n.as_json() for n in self.sources],
            "pipelines": [n.as_json() for n in self.pipelines],
            "figures": [n.as_json() for n in self.figures],
            "at_risk": self.at_risk(),
        }


def own_risks(
    results: Sequence[CheckResult], incidents: Iterable[Any], config: cfgmod.WorkbookConfig
) -> dict[str, list[Risk]]:
    """Each pipeline's own problems: late sources, stale marts, failed or blocked runs, open incidents.

    An incident about a late source the pipeline already shows is added to that source's reason
    rather than listed twice.
    """
    pipes = config.pipelines.pipelines
    out: dict[str, list[Risk]] = {pid: [] for pid in pipes}
    for r in results:
        if r.pipeline not in out or not r.failed:
            continue
        if r.kind == "source_freshness":
            out[r.pipeline].append(Risk(f"source {r.check_id.rsplit('.', 1)[-1]}", r.summary))
        elif r.kind == "freshness" and r.check_id == f"{r.pipeline}.freshness":
            out[r.pipeline].append(Risk(f"marts {r.pipeline}", r.summary))
        elif r.kind == "run_status":
            status = r.evidence.get("status") or "failed"
            error = r.evidence.get("error") or ""
            out[r.pipeline].append(
                Risk(
                    f"run {r.pipeline} {r.partition}", f"{status} run of {r.partition}: {error}".rstrip(": ")
                )
            )
    for inc in incidents:
        kind, _, subject = (getattr(inc, "cause_key", None) or "").partition(":")
        hit = {pid for pid, p in pipes.items() if subject in p.sources} if kind == "source" else set()
        hit |= {subject} if kind in ("run", "pipeline") and subject in pipes else set()
        hit |= {inc.pipeline} if inc.pipeline in pipes else set()
        opened = f"incident {inc.incident_id} open ({inc.severity})"
        for pid in hit:
            same = [i for i, r in enumerate(out[pid]) if kind == "source" and r.origin == f"source {subject}"]
            if same:
                r = out[pid][same[0]]
                out[pid][same[0]] = Risk(r.origin, f"{r.reason}; {opened}")
            else:
                out[pid].append(Risk(f"incident {inc.incident_id}", f"{opened}: {inc.cause or inc.summary}"))
    for risks in out.values():  # the most pressing first: incidents, failed runs, sources, then marts
        risks.sort(key=lambda r: RISK_ORDER.index(r.origin.split(" ", 1)[0]))
    return out


def _inherit(
    upstreams: Sequence[str], done: Mapping[str, Node], own: Sequence[Risk] = ()
) -> tuple[tuple[str, Risk], ...]:
    """Each problem upstream (nearest upstream first), its origins once, none of ``own``'s again."""
    found: dict[str, tuple[str, Risk]] = {}
    mine = {r.origin for r in own}
    for up in upstreams:
        for risk in done[up].risks:
            if risk.origin not in mine:
                found.setdefault(risk.origin, (up, risk))
    return tuple(found.values())


def figure_groups(config: cfgmod.WorkbookConfig) -> list[tuple[str, str, tuple[str, ...], list[str]]]:
    """``(name, label, pipelines, metric labels)`` per group of investor figures, by source pipeline."""
    pipes = config.pipelines.pipelines
    if metrics.PIPELINE not in pipes:
        return []
    groups: dict[str, list[str]] = {}
    for m in metrics.METRICS:
        groups.setdefault(m.source, []).append(m.label)
    out = []
    for source, labels in groups.items():
        if source not in pipes:
            continue
        if source == metrics.PIPELINE:
            name, label, inputs = "figures:cross-pipeline", "Cross-pipeline investor figures", (source,)
        else:
            family = pipes[source].family
            name, label = f"figures:{family}", f"{family.capitalize()} investor figures"
            inputs = (source, metrics.PIPELINE)
        out.append((name, label, inputs, labels))
    return out


def _some(labels: Sequence[str], shown: int = 3) -> str:
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more


def lineage(
    config: cfgmod.WorkbookConfig,
    results: Sequence[CheckResult],
    incidents: Iterable[Any],
    freshness: Sequence[Freshness],
) -> Lineage:
    """The lineage with what is at risk (see the module doc)."""
    pipes = config.pipelines.pipelines
    bands = {f.name: f.band for f in freshness if f.kind == "source"}
    sources = tuple(
        Node("source", s, s, (), band=bands.get(s, FRESH))
        for s in dict.fromkeys(s for p in pipes.values() for s in p.sources)
    )
    own = own_risks(results, incidents, config)
    done: dict[str, Node] = {}
    for pid in Dag({k: p.lineage for k, p in pipes.items()}).order():
        p = pipes[pid]
        done[pid] = Node("pipeline", pid, p.title, (*p.sources, *p.lineage), tuple(own[pid]),
                         _inherit(p.lineage, done, own[pid]))  # fmt: skip
    figures = tuple(
        Node("figures", name, f"{label}: {_some(labels)}", inputs, (), _inherit(inputs, done))
        for name, label, inputs, labels in figure_groups(config)
    )
    return Lineage(sources, tuple(done.values()), figures)
