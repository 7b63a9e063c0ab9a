"""Source contracts: what each landing source delivers (columns and types, key, schedule).

The landing zone screens deliveries against these contracts (:func:`schema`), the extract
adapters land rows in them, and the demo generator writes its extracts to them.

Batch sources are :class:`SourceDef` records in :data:`SOURCES`, declared with :func:`source`
using column kinds (:data:`KINDS`): ``str``; ``int`` (int64); ``bool``; ``date`` (date32);
``ts`` (timestamp[us, UTC]); ``dec18_6`` / ``dec38_18`` (decimal128). ``cloud_costs`` holds the
FOCUS 1.0 columns (:data:`FOCUS_COLUMNS`, typed by :data:`FOCUS_DECIMALS` and
:data:`FOCUS_TIMESTAMPS`) plus the two integer micros columns (:data:`FOCUS_MICROS`).

The four product-event sources have fixed Arrow schemas (:data:`SCHEMAS`): ``events`` (Segment
messages as the Kafka extract lands them; a message in an unknown format, such as the frontend's
v2 of :data:`V2_FORMAT`, lands unparsed in ``_raw_json``), ``web_analytics``,
``mobile_analytics`` and ``api_logs``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

KINDS = {
    "str": pa.string(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "ts": pa.timestamp("us", tz="UTC"),
    "dec18_6": pa.decimal128(18, 6),
    "dec38_18": pa.decimal128(38, 18),
}


@dataclass(frozen=True)
class SourceDef:
    """A landing source: its columns (name, kind), the key naming its rows, and a description.

    ``schedule_hours``: a daily extract delivers every day of the history, also when it found no
    rows (an empty file), this many hours after the partition day's start (26.0 = next day 02:00
    UTC); ``None`` for sources delivered only when there is something (monthly bills, payroll).
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    key: str
    doc: str
    schedule_hours: float | None = None

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c, KINDS[k]) for c, k in self.columns])


SOURCES: dict[str, SourceDef] = {}


def source(
    name: str, key: str, doc: str, columns: list[tuple[str, str]], *, schedule_hours: float | None = None
) -> SourceDef:
    """Declare a source (once, below)."""
    if name in SOURCES:
        raise ValueError(f"source {name!r} declared twice")
    for _, kind in columns:
        if kind not in KINDS:
            raise ValueError(f"source {name!r}: unknown column kind {kind!r}")
    SOURCES[name] = SourceDef(name, tuple(columns), key, doc, schedule_hours)
    return SOURCES[name]


# ------------------------------------------------------------------ billing (Stripe) and FX

BILLING_CUSTOMERS = source(
    "billing_customers",
    "customer_id",
    "Stripe customers: one row per customer at creation (signup); the contact email only as a salted sha256.",
    [
        ("customer_id", "str"),
        ("email_sha256", "str"),
        ("name", "str"),
        ("currency", "str"),
        ("country", "str"),
        ("account_id", "str"),  # metadata.account_id: the product account
        ("created", "ts"),
    ],
    schedule_hours=24 + 2.0,
)
SUBSCRIPTIONS = source(
    "subscriptions",
    "event_id",
    "Stripe customer.subscription.* change events: status, item (tier, price, quantity), periods, cancellation.",
    [
        ("event_id", "str"),
        ("event_type", "str"),
        ("subscription_id", "str"),
        ("customer_id", "str"),
        ("status", "str"),
        ("item_price_id", "str"),
        ("item_tier", "str"),
        ("item_quantity", "int"),
        ("item_unit_amount", "int"),
        ("currency", "str"),
        ("trial_start", "ts"),
        ("trial_end", "ts"),
        ("current_period_start", "ts"),
        ("current_period_end", "ts"),
        ("cancel_at", "ts"),
        ("canceled_at", "ts"),
        ("cancellation_details_reason", "str"),
        ("event_at", "ts"),
    ],
    schedule_hours=24 + (2 + 1 / 6),
)
BILLING_INVOICES = source(
    "billing_invoices",
    "invoice_line_id",
    "Stripe invoice lines (and credit-note lines) with service periods; a new row per status change.",
    [
        ("invoice_id", "str"),
        ("invoice_line_id", "str"),
        ("customer_id", "str"),
        ("subscription_id", "str"),
        ("line_type", "str"),
        ("description", "str"),
        ("tier", "str"),
        ("quantity", "int"),
        ("unit_amount", "int"),
        ("amount", "int"),
        ("currency", "str"),
        ("period_start", "date"),
        ("period_end", "date"),
        ("proration", "bool"),
        ("status", "str"),
        ("credit_note_id", "str"),
        ("created", "ts"),
        ("updated_at", "ts"),
    ],
    schedule_hours=24 + 2.25,
)
BILLING_PAYMENTS = source(
    "billing_payments",
    "payment_id",
    "Stripe charges (every attempt, failed ones with a failure_code) and refunds of credit notes.",
    [
        ("payment_id", "str"),
        ("type", "str"),
        ("invoice_id", "str"),
        ("customer_id", "str"),
        ("amount", "int"),
        ("currency", "str"),
        ("status", "str"),
        ("failure_code", "str"),
        ("attempt", "int"),
        ("created", "ts"),
    ],
    schedule_hours=24 + (2 + 1 / 3),
)
FX_RATES = source(
    "fx_rates",
    "currency",
    "Daily FX rates: US dollars per unit of each currency (decimal128(18,6); USD is 1).",
    [("date", "date"), ("currency", "str"), ("usd_per_unit", "dec18_6")],
    schedule_hours=16.5,
)

# ------------------------------------------------------------------ CRM (Salesforce) and the product database

CRM_ACCOUNTS = source(
    "crm_accounts",
    "account_id",
    "Salesforce Account records: name, domain, industry, owner AE, parent account; a new row per update.",
    [
        ("account_id", "str"),
        ("name", "str"),
        ("domain", "str"),
        ("industry", "str"),
        ("owner_id", "str"),
        ("owner_name", "str"),
        ("parent_account_id", "str"),
        ("product_account_id", "str"),
        ("billing_country", "str"),
        ("created_at", "ts"),
        ("updated_at", "ts"),
    ],
    schedule_hours=24 + 4.0,
)
CRM_STAGE_HISTORY = source(
    "crm_stage_history",
    "stage_event_id",
    "Lifecycle stage transitions lead/trial/customer/lost/churned (and tier changes) as AEs record them.",
    [
        ("stage_event_id", "str"),
        ("account_id", "str"),
        ("from_stage", "str"),
        ("to_stage", "str"),
        ("tier", "str"),
        ("seats", "int"),
        ("effective_at", "ts"),
        ("entered_at", "ts"),
        ("entered_by", "str"),
    ],
    schedule_hours=24 + 4.0,
)
ACCOUNT_DB = source(
    "account_db",
    "account_id",
    "The product's accounts table, extracted incrementally by updated_at (one row per change).",
    [
        ("account_id", "str"),
        ("company_name", "str"),
        ("domain", "str"),
        ("billing_customer_id", "str"),
        ("status", "str"),
        ("plan", "str"),
        ("seats", "int"),
        ("created_at", "ts"),
        ("updated_at", "ts"),
    ],
    schedule_hours=24 + 1.5,
)
SALES_RECORDS = source(
    "sales_records",
    "deal_id",
    "Closed-won deals of sales-led accounts: contract start, signature, expected first payment, value.",
    [
        ("deal_id", "str"),
        ("account_id", "str"),
        ("contract_start", "date"),
        ("signed_at", "ts"),
        ("first_payment_expected", "date"),
        ("term_months", "int"),
        ("contract_value", "int"),
        ("currency", "str"),
        ("tier", "str"),
        ("seats", "int"),
        ("ae_id", "str"),
    ],
    schedule_hours=24 + 6.0,
)
EXPERIMENT_ASSIGNMENTS = source(
    "experiment_assignments",
    "account_id",
    "Experiment arms of new accounts (pricing_v2, onboarding_checklist), assigned at signup.",
    [("account_id", "str"), ("experiment", "str"), ("arm", "str"), ("assigned_at", "ts")],
    schedule_hours=24 + 3.0,
)

# ------------------------------------------------------------------ finance: payroll, cloud bills, expenses, ledger

HR_PAYROLL = source(
    "hr_payroll",
    "employee_id",
    "Monthly payroll per employee (pseudonymised id), department and cost center, USD cents.",
    [
        ("payroll_month", "date"),
        ("pay_date", "date"),
        ("employee_id", "str"),
        ("department", "str"),
        ("cost_center", "str"),
        ("gross_pay", "int"),
        ("employer_taxes", "int"),
        ("benefits", "int"),
        ("currency", "str"),
    ],
)
# The FOCUS 1.0 columns, in the order of a FOCUS export (the sample's header).
FOCUS_COLUMNS = (
    "AvailabilityZone BilledCost BillingAccountId BillingAccountName BillingCurrency BillingPeriodEnd "
    "BillingPeriodStart ChargeCategory ChargeClass ChargeDescription ChargeFrequency ChargePeriodEnd "
    "ChargePeriodStart CommitmentDiscountCategory CommitmentDiscountId CommitmentDiscountName "
    "CommitmentDiscountStatus CommitmentDiscountType ConsumedQuantity ConsumedUnit ContractedCost "
    "ContractedUnitPrice EffectiveCost InvoiceIssuerName ListCost ListUnitPrice PricingCategory "
    "PricingQuantity PricingUnit ProviderName PublisherName RegionId RegionName ResourceId ResourceName "
    "ResourceType ServiceCategory Id ServiceName SkuId SkuPriceId SubAccountId SubAccountName Tags"
).split()
# FOCUS cost and quantity columns (decimals) and period columns (UTC timestamps); the rest is text.
FOCUS_DECIMALS = (
    "BilledCost",
    "ConsumedQuantity",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "ListCost",
    "ListUnitPrice",
    "PricingQuantity",
)
FOCUS_TIMESTAMPS = ("BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart")
# The cost columns landed again as integer millionths of the billing currency.
FOCUS_MICROS = {"BilledCost": "BilledCostMicros", "EffectiveCost": "EffectiveCostMicros"}
CLOUD_COSTS = source(
    "cloud_costs",
    "Id",
    "Cloud bills of AWS, Azure and GCP in FOCUS 1.0 columns (decimals as decimal128(38,18)); one delivery "
    "per provider and billing month, days after the month ends.",
    [
        (c, "dec38_18" if c in FOCUS_DECIMALS else "ts" if c in FOCUS_TIMESTAMPS else "str")
        for c in FOCUS_COLUMNS
    ]
    + [(micros, "int") for micros in FOCUS_MICROS.values()],
)
OPS_EXPENSES = source(
    "ops_expenses",
    "expense_id",
    "Operations expenses entered by hand: incurred date vs submission time, category, vendor, amount.",
    [
        ("expense_id", "str"),
        ("incurred_date", "date"),
        ("submitted_at", "ts"),
        ("category", "str"),
        ("vendor", "str"),
        ("amount", "int"),
        ("currency", "str"),
        ("entered_by", "str"),
    ],
    schedule_hours=23.5,
)
FINANCE_LEDGER = source(
    "finance_ledger",
    "line_id",
    "Finance's monthly P&L by category (revenue, salaries, infrastructure, operations), booked by "
    "Finance's rules and delivered on its close day.",
    [
        ("line_id", "str"),
        ("period", "date"),
        ("category", "str"),
        ("subcategory", "str"),
        ("currency", "str"),
        ("amount_local", "int"),
        ("fx_rate", "dec18_6"),
        ("amount_usd", "int"),
        ("booked_at", "ts"),
    ],
)

# ------------------------------------------------------------------ product events

SCHEMA_VERSION = "1"  # the Segment format's version: what a message without a ``schema_version`` is
_TS = pa.timestamp("us", tz="UTC")  # as the Kafka extract lands them (values are whole milliseconds)
# Landed schemas (fixed, so an all-null column keeps its type).
EVENTS_SCHEMA = pa.schema(
    [
        ("messageId", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("name", pa.string()),
        ("userId", pa.string()),
        ("anonymousId", pa.string()),
        ("timestamp", _TS),
        ("sentAt", _TS),
        ("receivedAt", _TS),
        ("context", pa.string()),
        ("properties", pa.string()),
        ("traits", pa.string()),
        ("schema_version", pa.string()),
        ("_raw_json", pa.string()),
    ]
)
WEB_SCHEMA = pa.schema(
    [
        ("hit_id", pa.string()),
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("account_id", pa.string()),
        ("page", pa.string()),
        ("page_title", pa.string()),
        ("referrer", pa.string()),
        ("duration_s", pa.int32()),
        ("timestamp", _TS),
    ]
)
MOBILE_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("account_id", pa.string()),
        ("platform", pa.string()),
        ("os_version", pa.string()),
        ("app_version", pa.string()),
        ("device_model", pa.string()),
        ("started_at", _TS),
        ("ended_at", _TS),
        ("duration_s", pa.int32()),
        ("screens", pa.int32()),
        ("events", pa.int32()),
        ("synced_at", _TS),
    ]
)
API_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("account_id", pa.string()),
        ("api_key_id", pa.string()),
        ("method", pa.string()),
        ("endpoint", pa.string()),
        ("status_code", pa.int16()),
        ("latency_ms", pa.int32()),
        ("timestamp", _TS),
    ]
)
SCHEMAS = {
    "events": EVENTS_SCHEMA,
    "web_analytics": WEB_SCHEMA,
    "mobile_analytics": MOBILE_SCHEMA,
    "api_logs": API_SCHEMA,
}
EVENT_KEYS = {
    "events": "messageId",
    "web_analytics": "hit_id",
    "mobile_analytics": "session_id",
    "api_logs": "request_id",
}
# Event columns holding JSON text (Segment's objects): each must parse as a JSON object.
JSON_COLUMNS = {"events": ("context", "properties", "traits")}

V2_FORMAT = """\
schema_version "2" (the ``schema_change`` fault), one JSON object per message, landed in ``_raw_json``:
  {"schema_version": "2", "message_id": str, "type": "track"|"page"|"identify",
   "event_name": str (track name | page name | "Identify"), "user_id": str, "anonymous_id": str,
   "account": {"id": str}, "timestamp": int (epoch ms), "sent_at": int (epoch ms),
   "context": {"library": {...}, "device": {"type": "web"}, "os": {...}},
   "properties": {...} (track/page) | "traits": {...} (identify)}
Required: message_id, type, event_name, account.id, timestamp. A broken record lacks one of
event_name, account or timestamp (message_id is always there)."""


def email_sha256(email: Any, salt: str) -> str:
    """The pseudonym landed instead of an email (``email_sha256`` columns and traits): sha256 hex of
    ``salt + email.strip().lower()``. Emails never land raw."""
    return hashlib.sha256((salt + str(email).strip().lower()).encode("utf-8")).hexdigest()


def schema(name: str) -> pa.Schema | None:
    """The landed contract of source ``name`` (``None`` for a source without one)."""
    if name in SCHEMAS:
        return SCHEMAS[name]
    spec = SOURCES.get(name)
    return spec.schema() if spec is not None else None
