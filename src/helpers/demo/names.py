"""Names of the demo company's customers, their contacts, users and account executives.

Company names are three words (``Acme`` + ``works`` + ``Analytics``) and a legal suffix of the
account's country; :func:`company_names` maps global account indices onto the name space with an
affine permutation, so names are unique across chunks (a number is appended after the space is
used up) and depend only on the seed. Emails land only pseudonymised (:func:`pseudonymise_email`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from helpers.storage.contracts import email_sha256

_FIRST = (
    "Acme Apex Arbor Aspen Atlas Aurora Beacon Birch Blue Bold Bright Cardinal Cedar Clear Cloud Cobalt "
    "Comet Copper Coral Crest Crystal Delta Desert Echo Ember Emerald Evergreen Falcon Fern First Flint "
    "Fox Fusion Garnet Glacier Gold Granite Green Grove Harbor Hawk Helix Heron Horizon Indigo Iron Ivy "
    "Jade Juniper Keystone Kite Lake Lark Laurel Lumen Lunar Maple Marble Meadow Meridian Mesa Metro Mint "
    "Nimbus North Nova Oak Ocean Onyx Orbit Orchid Pacific Peak Pearl Pine Pioneer Polar Prairie Prime "
    "Quartz Radiant Raven Red Ridge River Rock Ruby Sage Sapphire Sierra Silver Sky Solar Spruce Star"
).split()
_SECOND = (
    "works soft labs data logic stack cloud byte grid path point wave line forge hub sphere scale mind "
    "bridge field craft flow gate link loop mark net ops port shift base beam bit box cast core dash "
    "desk dock frame hive keep lane layer leaf lens mesh mill nest node pulse quest rail reach root sail "
    "scope seed signal spark spring stream sync tide tower trail"
).split()
_THIRD = (
    "Analytics Logistics Health Foods Capital Systems Media Energy Robotics Retail Learning Security "
    "Insurance Travel Design Legal Motors Pharma Studios Networks Partners Solutions Group Holdings "
    "Industries Labs Ventures Consulting Software Dynamics Technologies Brands Outdoors Clinics Finance "
    "Marine Aerospace Textiles Hospitality Construction"
).split()
INDUSTRIES = (
    "Technology",
    "Healthcare",
    "Financial Services",
    "Retail",
    "Manufacturing",
    "Education",
    "Media",
    "Logistics",
    "Professional Services",
    "Real Estate",
    "Energy",
    "Hospitality",
)
COUNTRIES = {"USD": ("US",), "EUR": ("DE", "FR", "NL", "ES", "IE"), "GBP": ("GB",), "CAD": ("CA",)}
_SUFFIX = {
    "US": "Inc",
    "DE": "GmbH",
    "FR": "SAS",
    "NL": "B.V.",
    "ES": "S.L.",
    "IE": "Ltd",
    "GB": "Ltd",
    "CA": "Inc",
}
_TLD = {
    "US": ".com",
    "DE": ".de",
    "FR": ".fr",
    "NL": ".nl",
    "ES": ".es",
    "IE": ".ie",
    "GB": ".co.uk",
    "CA": ".ca",
}
PEOPLE_FIRST = (
    "alex sam jordan taylor morgan casey jamie riley avery quinn maria li wei anna lukas emma noah "
    "olivia liam sofia mateo chloe lucas mia hugo nina omar priya ravi sara tom yuki zoe"
).split()
PEOPLE_LAST = (
    "smith johnson lee brown garcia miller davis martin muller schmidt dubois moreau rossi bianchi "
    "kim chen wang singh patel nguyen silva santos walker young king wright lopez hill scott green"
).split()
_AE_FIRST = "Dana Eli Frankie Gale Harper Iris Jesse Kai Logan Mika Noel Parker Reese Sky Toby Val".split()
_AE_LAST = (
    "Adams Baker Clarke Dixon Ellis Flores Grant Hayes Irwin Jones Keller Lowe Moss Nash Owens Price".split()
)

NAME_SPACE = len(_FIRST) * len(_SECOND) * len(_THIRD)
EMAIL_SALT = (
    "workbook-demo:email:v1"  # stands in for the extract's secret salt (demo data must be reproducible)
)


def country_codes(currencies: tuple[str, ...]) -> list[str]:
    """The countries of each currency, currency by currency (an account's country indexes this list)."""
    return [c for cur in currencies for c in COUNTRIES[cur]]


def company_names(
    gidx: np.ndarray, country: np.ndarray, seed: int, currencies: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Unique company names and domains for global account indices (an affine permutation)."""
    m = NAME_SPACE
    mult = next(p for p in (7_919, 104_729, 1_299_709) if m % p)
    slot = (gidx * mult + 12_345 + seed * 31) % m
    rep = gidx // m
    f = slot % len(_FIRST)
    s = (slot // len(_FIRST)) % len(_SECOND)
    t = slot // (len(_FIRST) * len(_SECOND))
    first = np.asarray(_FIRST, dtype=object)[f]
    second = np.asarray(_SECOND, dtype=object)[s]
    third = np.asarray(_THIRD, dtype=object)[t]
    rep_s = np.where(rep > 0, " " + rep.astype(str), "").astype(object)
    suffix = np.array([_SUFFIX[c] for c in country_codes(currencies)], dtype=object)[country]
    tld = np.array([_TLD[c] for c in country_codes(currencies)], dtype=object)[country]
    name = first + second + " " + third + rep_s + " " + suffix
    domain = (
        pd.Series(first + second + third + np.where(rep > 0, rep.astype(str), "").astype(object))
        .str.lower()
        .to_numpy()
        + tld
    )
    return name, domain


def ae_names(count: int) -> list[str]:
    """The names of the first ``count`` account executives."""
    return [
        f"{_AE_FIRST[i % len(_AE_FIRST)]} {_AE_LAST[(i * 7 + i // 16) % len(_AE_LAST)]}" for i in range(count)
    ]


def user_email(account_id: str, seat: int) -> str:
    """The (synthetic) email of a user as the product database holds it; never landed raw."""
    domain = re.sub(r"[^A-Za-z0-9-]+", "-", account_id).strip("-") or "account"
    return f"User{seat:04d}@{domain}.Example.com"


def pseudonymise_email(email: str, salt: str = EMAIL_SALT) -> str:
    """What the extract lands instead of an email (:func:`helpers.storage.contracts.email_sha256`),
    with the demo's fixed salt."""
    return email_sha256(email, salt)
