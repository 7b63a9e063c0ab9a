"""Profit-side company sources: HR payroll, cloud costs (FOCUS 1.0), operations expenses and
Finance's ledger.

These do not depend on individual accounts, only on company-wide totals accumulated over the
account chunks (:class:`Totals`: active seats per day, customers per month, recognised revenue),
so they are built once, after every chunk. Finance's ledger is built from the *clean* business
(Finance keeps its own books: AP, payroll provider, billing exports it reconciles itself), so a
fault in our copies of the sources shows up as a difference against it. Their columns and keys
(the FOCUS 1.0 columns of ``cloud_costs`` among them) are their contracts
(``helpers.storage.contracts``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from helpers.core.businesscal import BusinessCalendar
from helpers.core.money import convert_cents
from helpers.core.periods import month_end
from helpers.demo import company as co
from helpers.demo.company import Company, World
from helpers.demo.extracts import ARRIVAL, PARTITION, at, day_of, nullable_int
from helpers.demo.sources_billing import FX_BASE, fx_micros
from helpers.storage.contracts import SOURCES

PSEUDONYM_SALT = "workbook-demo:employee:v1"
FINANCE_CLOSE_BUSINESS_DAY = 5  # Finance closes month M on the 5th US business day of M+1
PAYROLL_HOUR, LEDGER_HOUR, CLOUD_HOUR = 20.0, 18.0, 8.0
OPS_HOUR = SOURCES["ops_expenses"].schedule_hours
US_CALENDAR = BusinessCalendar("US")  # Finance's business days: US federal holidays (observed)

# ------------------------------------------------------------------ company-wide totals


@dataclass
class Totals:
    """What the company-level sources need from the account chunks (clean business)."""

    world: World
    seats: np.ndarray = field(init=False)  # active seats per history day (trial, customer, grace)
    customers: np.ndarray = field(init=False)  # paying accounts on each month's first day
    revenue: np.ndarray = field(init=False)  # recognised revenue [month, currency], minor units

    def __post_init__(self) -> None:
        n_days = self.world.end - self.world.start + 1
        self.seats = np.zeros(n_days, np.int64)
        self.customers = np.zeros(len(self.world.months), np.int64)
        self.revenue = np.zeros((len(self.world.months), len(co.CURRENCIES)), np.int64)

    def add(self, company: Company) -> None:
        w = self.world
        iv = company.intervals
        s = iv["start"].to_numpy() - w.start
        e = iv["end"].to_numpy() - w.start
        diff = np.zeros(len(self.seats) + 1, np.int64)
        np.add.at(diff, s, iv["seats"].to_numpy())
        np.add.at(diff, e + 1, -iv["seats"].to_numpy())
        self.seats += np.cumsum(diff)[:-1]
        firsts = co.month_start(w.months)
        paying = iv["state"].to_numpy() > 0
        covers = (iv["start"].to_numpy()[None, :] <= firsts[:, None]) & (
            iv["end"].to_numpy()[None, :] >= firsts[:, None]
        )
        self.customers += (covers & paying[None, :]).sum(axis=1)
        self.revenue += recognised_revenue(company)


def split_by_month(
    period_start: np.ndarray, period_end: np.ndarray, amount: np.ndarray, months: np.ndarray
) -> np.ndarray:
    """Spread amounts evenly over the days of ``[period_start, period_end)`` into ``months``.

    Integer minor units with cumulative rounding, so every line's parts add up to its amount;
    returns ``[len(amount), len(months)]`` (days outside ``months`` are dropped).
    """
    ps, pe, amt = (np.asarray(x, dtype=np.int64) for x in (period_start, period_end, amount))
    total = np.maximum(pe - ps, 1)
    out = np.zeros((len(amt), len(months)), np.int64)
    first = co.month_of(ps)
    done = np.zeros(len(amt), np.int64)
    for k in range(3):  # a line spans at most three months (monthly periods and shorter)
        m = first + k
        lo = np.maximum(ps, co.month_start(m))
        hi = np.minimum(pe, co.month_start(m + 1))
        days = np.maximum(hi - lo, 0)
        cum = done + days
        part = amt * cum // total - amt * done // total
        done = cum
        col = m - months[0]
        ok = (col >= 0) & (col < len(months)) & (days > 0)
        out[np.flatnonzero(ok), col[ok]] += part[ok]
    return out


def recognised_revenue(company: Company) -> np.ndarray:
    """Revenue recognised per [month, currency]: every invoice line that is not written off,
    spread over its service period (credit notes too)."""
    ln = company.lines.merge(
        company.invoices[["acc", "inv_seq", "status"]], on=["acc", "inv_seq"], how="left"
    )
    ln = ln[ln["status"] != co.ST_UNCOLLECTIBLE]
    months = company.world.months
    parts = split_by_month(
        ln["period_start"].to_numpy(), ln["period_end"].to_numpy(), ln["amount"].to_numpy(), months
    )
    cur = company.accounts["currency"].to_numpy()[ln["acc"].to_numpy()]
    out = np.zeros((len(months), len(co.CURRENCIES)), np.int64)
    for c in range(len(co.CURRENCIES)):
        out[:, c] = parts[cur == c].sum(axis=0)
    return out


# ------------------------------------------------------------------ calendars


def finance_close_day(month_first: dt.date) -> dt.date:
    """Finance's close of a month: the 5th US business day (Mon-Fri, federal holidays excluded) of the next month."""
    return US_CALENDAR.nth_business_day_after_month_end(
        month_first.year, month_first.month, FINANCE_CLOSE_BUSINESS_DAY
    )


def close_days(months: np.ndarray) -> np.ndarray:
    """Epoch day of Finance's close of each month index (computed once per distinct month)."""
    uniq, inv = np.unique(np.asarray(months, dtype=np.int64), return_inverse=True)
    days = np.array(
        [co.epoch_day(finance_close_day(co.to_date(int(co.month_start(m))))) for m in uniq], dtype=np.int64
    )
    return days[inv.reshape(-1)] if len(uniq) else np.zeros(0, np.int64)


def last_business_day(month_first: dt.date) -> dt.date:
    """The month's last US business day (payday)."""
    d = month_end(month_first)
    while not US_CALENDAR.is_business_day(d):
        d -= dt.timedelta(days=1)
    return d


def _pseudonym(prefix: str, values: list[str]) -> np.ndarray:
    return np.array(
        [prefix + hashlib.sha256(f"{PSEUDONYM_SALT}:{v}".encode()).hexdigest()[:12] for v in values],
        dtype=object,
    )


# ------------------------------------------------------------------ HR

DEPARTMENTS = ("Engineering", "Product", "Sales", "Marketing", "Customer Success", "G&A")
DEPARTMENT_P = (0.38, 0.07, 0.20, 0.10, 0.15, 0.10)
COST_CENTERS = ("CC-200", "CC-210", "CC-300", "CC-310", "CC-400", "CC-500")
SALARY_MEDIAN_USD = np.array([165_000, 150_000, 110_000, 115_000, 85_000, 105_000])
ATTRITION = 0.012  # per month
CUSTOMERS_PER_EMPLOYEE = 16
BASE_HEADCOUNT = 1


def _employees(world: World, customers: tuple[int, ...]) -> pd.DataFrame:
    """Employees with department, salary, hire and leave month (headcount follows customers)."""
    return _employees_for(world.spec.seed, int(world.months[0]), int(world.months[-1]), customers).copy()


@lru_cache(maxsize=8)
def _employees_for(seed: int, first_month: int, last_month: int, customers: tuple[int, ...]) -> pd.DataFrame:
    rng = np.random.default_rng([seed, co.S_HR])
    months = np.arange(first_month, last_month + 1)
    target = BASE_HEADCOUNT + np.ceil(np.asarray(customers) / CUSTOMERS_PER_EMPLOYEE).astype(np.int64)
    cap = int(target.max() * 2 + 50)
    dept = co.categorical(rng, cap, DEPARTMENT_P)
    salary = SALARY_MEDIAN_USD[dept] * np.exp(rng.normal(0, 0.18, cap))
    hired = np.full(cap, -1, np.int64)
    left = np.full(cap, np.iinfo(np.int64).max, np.int64)
    hired[: target[0]] = months[0] - rng.integers(0, 36, target[0])
    n = int(target[0])
    for i, m in enumerate(months):
        active = np.flatnonzero((hired[:n] >= 0) & (hired[:n] <= m) & (left[:n] > m))
        leave = active[rng.random(len(active)) < ATTRITION] if i else active[:0]
        left[leave] = m
        need = int(target[i] - (len(active) - len(leave)))
        if need > 0:
            if n + need > cap:
                raise RuntimeError("headcount exceeded the employee capacity")
            hired[n : n + need] = m
            n += need
    frame = pd.DataFrame(
        {"emp": np.arange(n), "dept": dept[:n], "salary": salary[:n], "hired": hired[:n], "left": left[:n]}
    )
    frame["employee_id"] = _pseudonym("emp_", [f"{seed}:{i}" for i in range(n)])
    return frame


def headcount(world: World, totals: Totals) -> np.ndarray:
    """Employees on the payroll in each month of the history."""
    emp = _employees(world, tuple(int(x) for x in totals.customers))
    m = world.months
    return (
        (emp["hired"].to_numpy()[None, :] <= m[:, None]) & (emp["left"].to_numpy()[None, :] > m[:, None])
    ).sum(axis=1)


def hr_payroll(world: World, totals: Totals) -> pd.DataFrame:
    """One payroll row per employee and paid month (paid on the month's last business day)."""
    emp = _employees(world, tuple(int(x) for x in totals.customers))
    parts = []
    for m in world.months:
        first = co.to_date(int(co.month_start(m)))
        if co.epoch_day(last_business_day(first)) > world.end:
            continue  # not paid yet at the end of the history
        e = emp[(emp["hired"] <= m) & (emp["left"] > m)]
        years = (m - np.maximum(e["hired"].to_numpy(), 0)) // 12  # a raise every January-ish year
        annual = np.rint(e["salary"].to_numpy() * 1.03**years * 100).astype(np.int64)
        gross = annual // 12
        pay = co.epoch_day(last_business_day(first))
        parts.append(
            pd.DataFrame(
                {
                    "payroll_month": int(co.month_start(m)),
                    "pay_date": pay,
                    "employee_id": e["employee_id"].to_numpy(),
                    "department": np.asarray(DEPARTMENTS, dtype=object)[e["dept"].to_numpy()],
                    "cost_center": np.asarray(COST_CENTERS, dtype=object)[e["dept"].to_numpy()],
                    "gross_pay": gross,
                    "employer_taxes": gross * 765 // 10_000,
                    "benefits": 90_000 + gross * 4 // 100,
                    "currency": "USD",
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame[PARTITION] = frame["pay_date"].to_numpy()
    frame[ARRIVAL] = at(frame["pay_date"].to_numpy(), PAYROLL_HOUR)
    return frame


# ------------------------------------------------------------------ cloud costs (FOCUS 1.0)


def fixed_cost_scale(world: World) -> float:
    """Fixed costs (base infrastructure, recurring programmes) are sized for the company's scale,
    so a small demo has the default company's shape: 1.0 at the default 2,000 accounts."""
    return max(world.spec.accounts / 2000, 0.05)


@dataclass(frozen=True)
class _Service:
    name: str
    category: str
    share: float
    unit: str
    unit_price: int  # list price per unit, millionths of USD
    sku: str
    resource_type: str
    discount_pct: int


@dataclass(frozen=True)
class _Provider:
    key: str
    provider: str
    publisher: str
    account: str
    lag_days: int  # the bill arrives this many days after the billing month ends
    base_usd_day: float
    usd_per_seat_day: float
    regions: tuple[tuple[str, str, float], ...]
    services: tuple[_Service, ...]
    settlement: tuple[str, float]  # monthly Credit or Adjustment: (ChargeCategory, share of usage)


PROVIDERS = (
    _Provider(
        "aws",
        "AWS",
        "Amazon Web Services, Inc.",
        "123456789012",
        3,
        600.0,
        0.14,
        (("us-east-1", "US East (N. Virginia)", 0.7), ("eu-west-1", "Europe (Ireland)", 0.3)),
        (
            _Service(
                "Amazon Elastic Compute Cloud",
                "Compute",
                0.45,
                "Hours",
                96_000,
                "EC2-m6i.large",
                "Instance",
                8,
            ),
            _Service(
                "Amazon Relational Database Service",
                "Databases",
                0.20,
                "Hours",
                342_000,
                "RDS-db.r6g.large",
                "DBInstance",
                5,
            ),
            _Service(
                "Amazon Simple Storage Service", "Storage", 0.12, "GB-Mo", 23_000, "S3-Standard", "Bucket", 0
            ),
            _Service(
                "Amazon CloudFront", "Networking", 0.08, "GB", 85_000, "CF-DataTransfer", "Distribution", 0
            ),
            _Service("AWS Lambda", "Compute", 0.05, "GB-Seconds", 17, "Lambda-GBs", "Function", 0),
            _Service(
                "Amazon ElastiCache",
                "Databases",
                0.05,
                "Hours",
                226_000,
                "EC-cache.r6g.large",
                "CacheCluster",
                5,
            ),
            _Service(
                "AmazonCloudWatch",
                "Management and Governance",
                0.05,
                "Metrics",
                300_000,
                "CW-Metrics",
                "Metric",
                0,
            ),
        ),
        ("Credit", -0.025),
    ),
    _Provider(
        "azure",
        "Microsoft",
        "Microsoft",
        "8611537e-2c7d-4b7f-9d4a-0f4c1c7a1e55",
        5,
        150.0,
        0.035,
        (("eastus", "East US", 0.6), ("westeurope", "West Europe", 0.4)),
        (
            _Service("Virtual Machines", "Compute", 0.5, "Hours", 192_000, "D4s v5", "Virtual machine", 10),
            _Service(
                "Azure SQL Database",
                "Databases",
                0.3,
                "vCore Hours",
                505_000,
                "SQLDB-GP-Gen5",
                "SQL database",
                5,
            ),
            _Service("Storage", "Storage", 0.2, "GB/Month", 18_000, "Hot LRS", "Storage account", 0),
        ),
        ("Adjustment", 0.004),
    ),
    _Provider(
        "gcp",
        "Google Cloud",
        "Google",
        "01A2B3-C4D5E6-F7A8B9",
        4,
        200.0,
        0.057,
        (("us-central1", "Iowa", 1.0),),
        (
            _Service("BigQuery", "Analytics", 0.5, "Tebibytes", 6_250_000, "BQ-Analysis", "Dataset", 0),
            _Service("Compute Engine", "Compute", 0.3, "Hours", 134_000, "N2-Standard-4", "Instance", 12),
            _Service("Cloud Storage", "Storage", 0.2, "GiB-Months", 20_000, "Standard-Storage", "Bucket", 0),
        ),
        ("Credit", -0.04),
    ),
)
CLOUD_LAG_DAYS = {p.key: p.lag_days for p in PROVIDERS}


def cloud_costs(world: World, totals: Totals) -> pd.DataFrame:
    """FOCUS rows: daily usage per service and region, plus a monthly credit or adjustment."""
    rng = world.rng(co.S_CLOUD)
    days = np.arange(world.start, world.end + 1)
    seats = totals.seats.astype(float)
    parts = []
    for prov in PROVIDERS:
        daily = prov.base_usd_day * fixed_cost_scale(world) + prov.usd_per_seat_day * seats  # USD per day
        combos = [(s, r) for s in prov.services for r in prov.regions]
        n_c = len(combos)
        day = np.repeat(days, n_c)
        svc_i = np.tile(np.arange(n_c), len(days))
        share = np.array([s.share * r[2] for s, r in combos])[svc_i]
        noise = rng.uniform(0.92, 1.08, len(day))
        billed = np.rint(np.repeat(daily, n_c) * share * noise * 1_000_000).astype(np.int64)
        disc = np.array([s.discount_pct for s, _ in combos])[svc_i]
        list_cost = billed * 100 // (100 - disc)
        unit_price = np.array([s.unit_price for s, _ in combos])[svc_i]
        qty = list_cost * 1_000_000 // unit_price
        month = co.month_of(day)
        usage = pd.DataFrame(
            {
                "day": day,
                "month": month,
                "combo": svc_i,
                "ChargeCategory": "Usage",
                "ChargeFrequency": "Usage-Based",
                "BilledCost": billed,
                "ListCost": list_cost,
                "ListUnitPrice": unit_price,
                "ContractedUnitPrice": unit_price * (100 - disc) // 100,
                "ConsumedQuantity": qty,
                "charge_start": at(day),
                "charge_end": at(day + 1),
            }
        )
        # one credit (or adjustment) per billing month, over the whole month
        by_month = usage.groupby("month", sort=True)["BilledCost"].sum()
        kind, rate = prov.settlement
        m = by_month.index.to_numpy()
        settle = pd.DataFrame(
            {
                "day": co.month_start(m),
                "month": m,
                "combo": -1,
                "ChargeCategory": kind,
                "ChargeFrequency": "One-Time",
                "BilledCost": np.rint(by_month.to_numpy() * rate).astype(np.int64),
                "ListCost": 0,
                "ListUnitPrice": -1,
                "ContractedUnitPrice": -1,
                "ConsumedQuantity": -1,
                "charge_start": at(co.month_start(m)),
                "charge_end": at(np.minimum(co.month_start(m + 1), world.end + 1)),
            }
        )
        f = pd.concat([usage, settle], ignore_index=True).sort_values(
            ["month", "day", "combo"], kind="stable"
        )
        parts.append(_focus_frame(world, prov, combos, f))
    return pd.concat(parts, ignore_index=True)


def _focus_frame(world: World, prov: _Provider, combos: list, f: pd.DataFrame) -> pd.DataFrame:
    n = len(f)
    combo = f["combo"].to_numpy()
    is_usage = combo >= 0
    c = np.where(is_usage, combo, 0)

    def pick(values: list) -> np.ndarray:
        return np.where(is_usage, np.asarray(values, dtype=object)[c], None)

    month = f["month"].to_numpy()
    ms, me = co.month_start(month), co.month_start(month + 1)
    seq = f.groupby("month").cumcount().to_numpy() + 1
    ym = pd.Series(ms.astype("datetime64[D]")).dt.strftime("%Y%m").to_numpy().astype(object)
    services = [s for s, _ in combos]
    regions = [r for _, r in combos]
    tags = [
        json.dumps(
            {
                "environment": "prod",
                "team": "platform" if s.category != "Analytics" else "data",
                "service": "workbook-app",
            }
        )
        for s in services
    ]
    resource = [
        f"{prov.key}:{r[0]}:{s.resource_type.lower().replace(' ', '-')}/{s.sku.lower()}" for s, r in combos
    ]
    billed = f["BilledCost"].to_numpy()
    frame = pd.DataFrame(
        {
            "AvailabilityZone": None,
            "BilledCost": billed,
            "BillingAccountId": prov.account,
            "BillingAccountName": "Workbook Demo SaaS",
            "BillingCurrency": "USD",
            "BillingPeriodEnd": at(me),
            "BillingPeriodStart": at(ms),
            "ChargeCategory": f["ChargeCategory"].to_numpy(),
            "ChargeClass": None,
            "ChargeDescription": np.where(
                is_usage,
                pick([f"{s.name} {s.sku} in {r[1]}" for s, r in combos]),
                f"{prov.provider} monthly {prov.settlement[0].lower()}",
            ),
            "ChargeFrequency": f["ChargeFrequency"].to_numpy(),
            "ChargePeriodEnd": f["charge_end"].to_numpy(),
            "ChargePeriodStart": f["charge_start"].to_numpy(),
            "CommitmentDiscountCategory": None,
            "CommitmentDiscountId": None,
            "CommitmentDiscountName": None,
            "CommitmentDiscountStatus": None,
            "CommitmentDiscountType": None,
            "ConsumedQuantity": nullable_int(f["ConsumedQuantity"].to_numpy(), is_usage),
            "ConsumedUnit": pick([s.unit for s in services]),
            "ContractedCost": billed,
            "ContractedUnitPrice": nullable_int(f["ContractedUnitPrice"].to_numpy(), is_usage),
            "EffectiveCost": billed,
            "InvoiceIssuerName": prov.publisher,
            "ListCost": f["ListCost"].to_numpy(),
            "ListUnitPrice": nullable_int(f["ListUnitPrice"].to_numpy(), is_usage),
            "PricingCategory": np.where(is_usage, "Standard", None),
            "PricingQuantity": nullable_int(f["ConsumedQuantity"].to_numpy(), is_usage),
            "PricingUnit": pick([s.unit for s in services]),
            "ProviderName": prov.provider,
            "PublisherName": prov.publisher,
            "RegionId": pick([r[0] for r in regions]),
            "RegionName": pick([r[1] for r in regions]),
            "ResourceId": pick(resource),
            "ResourceName": pick([f"{s.sku.lower()}-prod" for s in services]),
            "ResourceType": pick([s.resource_type for s in services]),
            "ServiceCategory": np.where(is_usage, pick([s.category for s in services]), "Other"),
            "Id": prov.key + "-" + ym + "-" + np.char.zfill(seq.astype(str), 6).astype(object),
            "ServiceName": np.where(is_usage, pick([s.name for s in services]), f"{prov.provider} Billing"),
            "SkuId": pick([s.sku for s in services]),
            "SkuPriceId": pick([f"{s.sku}:ondemand" for s in services]),
            "SubAccountId": f"{prov.key}-prod",
            "SubAccountName": "production",
            "Tags": pick(tags),
            "BilledCostMicros": billed,
            "EffectiveCostMicros": billed,
        },
        index=range(n),
    )
    frame[PARTITION] = ms
    frame[ARRIVAL] = at(me - 1 + prov.lag_days, CLOUD_HOUR)
    return frame


# ------------------------------------------------------------------ operations expenses


@dataclass(frozen=True)
class _Category:
    name: str
    vendors: tuple[str, ...]
    recurring: bool  # one entry per vendor per month on a fixed day, else random entries
    usd: float  # recurring: USD per head per month (per vendor); random: median USD per entry
    sigma: float = 0.0
    per_head: float = 0.0  # random: extra entries per month per head
    base_count: float = 0.0
    foreign: float = 0.0  # share of entries in EUR/GBP


OPS_CATEGORIES = (
    _Category("office_rent", ("Workspace Realty LLC",), True, 950.0),
    _Category(
        "software_subscriptions",
        ("Slack", "GitHub", "Atlassian", "Figma", "Notion", "Google Workspace", "Zoom", "1Password"),
        True,
        14.0,
    ),
    _Category("customer_support_tools", ("Zendesk", "Intercom"), True, 45.0),
    _Category(
        "travel",
        (
            "Delta Air Lines",
            "United Airlines",
            "Lufthansa",
            "British Airways",
            "Marriott",
            "Hilton",
            "Uber",
            "Airbnb",
        ),
        False,
        420.0,
        0.6,
        0.25,
        1.0,
        0.25,
    ),
    _Category(
        "marketing_programs",
        ("Google Ads", "LinkedIn Ads", "Meta Ads", "G2", "SaaStr Events", "Capterra"),
        False,
        3_500.0,
        0.5,
        0.04,
        3.0,
        0.1,
    ),
    _Category(
        "contractors",
        ("Toptal", "Upwork", "Nordic Dev Studio", "Atelier Design"),
        False,
        6_500.0,
        0.35,
        0.025,
        1.0,
        0.3,
    ),
    _Category("legal_accounting", ("Cooley LLP", "Baker Tilly", "Carta"), False, 2_800.0, 0.4, 0.0, 2.0),
    _Category("recruiting", ("Greenhouse", "LinkedIn Recruiter", "Hired"), False, 2_200.0, 0.4, 0.03, 1.0),
)
OPS_LAG_P = (0.85, 0.15)  # submitted within a week; else 8-25 days later
CLEAN_MAX_SUBMIT_LAG_DAYS = 25
OPS_STAFF = 4


def ops_expenses(world: World, totals: Totals) -> pd.DataFrame:
    """Hand-entered operations expenses of every category, numbered in incurred order."""
    rng = world.rng(co.S_OPS)
    heads = headcount(world, totals)
    months = world.months
    staff = _pseudonym("ops_", [f"{world.spec.seed}:ops:{i}" for i in range(OPS_STAFF)])
    parts = []
    for cat in OPS_CATEGORIES:
        if cat.recurring:
            count = np.full(len(months), len(cat.vendors))
        else:
            count = rng.poisson(cat.base_count * fixed_cost_scale(world) + cat.per_head * heads)
            count = np.maximum(count, 1)
        mi = np.repeat(np.arange(len(months)), count)
        n = len(mi)
        ms = co.month_start(months[mi])
        dim = co.month_start(months[mi] + 1) - ms
        k = np.arange(n) - np.repeat(np.cumsum(count) - count, count)
        if cat.recurring:
            vendor = k % len(cat.vendors)
            day = ms + (vendor * 3) % 27  # each vendor bills on its own day
            amount_usd = cat.usd * heads[mi] * (1 + 0.1 * vendor / len(cat.vendors))
            currency = np.zeros(n, np.int64)
        else:
            vendor = rng.integers(0, len(cat.vendors), n)
            day = ms + (rng.random(n) * dim).astype(np.int64)
            amount_usd = cat.usd * np.exp(rng.normal(0, cat.sigma, n))
            currency = np.where(rng.random(n) < cat.foreign, rng.integers(1, 3, n), 0)  # EUR or GBP
        lag = np.where(
            rng.random(n) < OPS_LAG_P[0],
            rng.integers(0, 8, n),
            rng.integers(8, CLEAN_MAX_SUBMIT_LAG_DAYS + 1, n),
        )
        sub_sec = rng.integers(13 * 3600, 23 * 3600, n)
        rate = np.array([1.0, *(FX_BASE[c] for c in co.CURRENCIES[1:])])[currency]
        amount = np.rint(amount_usd / rate * 100).astype(np.int64)
        if cat.recurring:
            amount = (amount + 50) // 100 * 100  # invoices in whole units
        parts.append(
            pd.DataFrame(
                {
                    "incurred_date": day,
                    "submitted_at": co.at_seconds(day + lag, sub_sec),
                    "category": cat.name,
                    "vendor": np.asarray(cat.vendors, dtype=object)[vendor],
                    "amount": amount,
                    "currency": np.asarray(co.CURRENCIES, dtype=object)[currency],
                    "entered_by": staff[rng.integers(0, OPS_STAFF, n)],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[(frame["incurred_date"] >= world.start) & (frame["incurred_date"] <= world.end)]
    frame = frame.sort_values(
        ["incurred_date", "category", "vendor", "amount", "submitted_at"], kind="stable"
    )
    frame = frame.reset_index(drop=True)
    frame.insert(
        0,
        "expense_id",
        np.char.add("EXP-", np.char.zfill((np.arange(len(frame)) + 1).astype(str), 7)).astype(object),
    )
    sub_day = day_of(frame["submitted_at"].to_numpy())
    frame[PARTITION] = sub_day
    frame[ARRIVAL] = at(sub_day, OPS_HOUR)
    return frame


# ------------------------------------------------------------------ Finance's ledger


def month_end_rates(world: World) -> np.ndarray:
    """Finance's rate per [month, currency]: the rate of the month's last day (or the history's end)."""
    days, rates = fx_micros(world)
    last = np.minimum(co.month_start(world.months + 1) - 1, world.end)
    return rates[:, last - days[0]].T


def complete_months(world: World) -> np.ndarray:
    """Months whose last day is inside the history (Finance closes only those)."""
    return world.months[co.month_start(world.months + 1) - 1 <= world.end]


def finance_ledger(
    world: World, totals: Totals, payroll: pd.DataFrame, cloud: pd.DataFrame, ops: pd.DataFrame
) -> pd.DataFrame:
    """Finance's P&L per complete month, from the clean sources and Finance's own rules."""
    months = world.months
    closed = complete_months(world)
    rates = month_end_rates(world)
    rows = []
    mcol = {int(m): i for i, m in enumerate(months)}

    def add(m: np.ndarray, category: str, sub: np.ndarray, cur: np.ndarray, local: np.ndarray) -> None:
        rows.append(
            pd.DataFrame({"m": m, "category": category, "subcategory": sub, "cur": cur, "local": local})
        )

    # revenue: recognised over service periods (per currency)
    mm, cc = np.meshgrid(np.arange(len(months)), np.arange(len(co.CURRENCIES)), indexing="ij")
    rev = totals.revenue
    add(
        months[mm.ravel()],
        "revenue",
        np.full(mm.size, "subscriptions", dtype=object),
        cc.ravel(),
        rev.ravel(),
    )
    # salaries: payroll cost (gross + employer taxes + benefits) per department
    pay = payroll.assign(
        m=co.month_of(payroll["payroll_month"].to_numpy()),
        cost=payroll["gross_pay"] + payroll["employer_taxes"] + payroll["benefits"],
    )
    g = pay.groupby(["m", "department"], sort=True)["cost"].sum().reset_index()
    add(
        g["m"].to_numpy(),
        "salaries",
        g["department"].to_numpy(),
        np.zeros(len(g), np.int64),
        g["cost"].to_numpy(),
    )
    # infrastructure: each cloud bill in its billing period, per provider (USD)
    cl = cloud.assign(m=co.month_of(day_of(cloud["BillingPeriodStart"].to_numpy())))
    g = cl.groupby(["m", "ProviderName"], sort=True)["BilledCostMicros"].sum().reset_index()
    cents = convert_cents(
        g["BilledCostMicros"].to_numpy(), np.full(len(g), 100)
    )  # millionths -> cents, half even
    prov = g["ProviderName"].map({p.provider: p.key for p in PROVIDERS}).to_numpy()
    add(g["m"].to_numpy(), "infrastructure", prov, np.zeros(len(g), np.int64), cents)
    # operations: the month incurred if submitted by Finance's close of that month, else the month submitted
    inc_m = co.month_of(ops["incurred_date"].to_numpy())
    close = close_days(inc_m)
    sub_day = day_of(ops["submitted_at"].to_numpy())
    book_m = np.where(sub_day <= close, inc_m, co.month_of(sub_day))
    o = pd.DataFrame(
        {
            "m": book_m,
            "category": ops["category"].to_numpy(),
            "cur": pd.Series(ops["currency"].to_numpy())
            .map({c: i for i, c in enumerate(co.CURRENCIES)})
            .to_numpy(),
            "amount": ops["amount"].to_numpy().astype(np.int64),
        }
    )
    g = o.groupby(["m", "category", "cur"], sort=True)["amount"].sum().reset_index()
    add(
        g["m"].to_numpy(), "operations", g["category"].to_numpy(), g["cur"].to_numpy(), g["amount"].to_numpy()
    )

    led = pd.concat(rows, ignore_index=True)
    led = led[led["m"].isin(closed) & ((led["local"] != 0) | (led["category"] != "revenue"))]
    mi = led["m"].map(mcol).to_numpy()
    cur = led["cur"].to_numpy().astype(np.int64)
    rate = rates[mi, cur]
    period = co.month_start(led["m"].to_numpy())
    close_day = close_days(led["m"].to_numpy())
    currency = np.asarray(co.CURRENCIES, dtype=object)[cur]
    ym = pd.Series(period.astype("datetime64[D]")).dt.strftime("%Y-%m").to_numpy().astype(object)
    frame = pd.DataFrame(
        {
            "line_id": ym
            + "|"
            + led["category"].to_numpy()
            + "|"
            + led["subcategory"].to_numpy()
            + "|"
            + currency,
            "period": period,
            "category": led["category"].to_numpy(),
            "subcategory": led["subcategory"].to_numpy(),
            "currency": currency,
            "amount_local": led["local"].to_numpy().astype(np.int64),
            "fx_rate": rate,
            "amount_usd": convert_cents(led["local"].to_numpy(), rate),
            "booked_at": at(close_day, LEDGER_HOUR),
        }
    )
    frame[PARTITION] = period
    frame[ARRIVAL] = at(close_day, LEDGER_HOUR)
    return frame.sort_values("line_id", kind="stable").reset_index(drop=True)
