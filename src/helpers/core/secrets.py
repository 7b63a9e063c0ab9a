"""Secrets come from the environment only; this module finds them so they can be kept out.

A value counts as secret when it is the password of ``WORKBOOK_WAREHOUSE_URL`` (or of any
``*_URL`` variable with credentials), or the value of a variable whose name says it is one
(``*_PASSWORD``, ``*_TOKEN``, ``*_SECRET``, ``*_KEY``, ``*_WEBHOOK_URL``, ``*_ROUTING_KEY``).
The runner refuses them as papermill parameters (also inside a longer value) and scrubs them from
every archived file, from ``run.log`` as it is written, and from what ``pipeline_runs`` and
``run_scraps`` store.

A secret is found in every form it takes in a file or a column (:func:`variants`): raw,
JSON-escaped, HTML-escaped (``html.escape`` and Jinja's ``&#34;``), URL-encoded, the backslash-doubled
form of a ``repr`` in a traceback, and two of these stacked (a traceback's ``repr`` inside the
notebook's JSON). Values shorter than :data:`MIN_SECRET_LENGTH` are ignored.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

from sqlalchemy.engine import make_url

_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET|_KEY|WEBHOOK_URL|ROUTING_KEY|CREDENTIALS?)$", re.I)
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words
REDACTED = "***REDACTED***"


def _url_password(value: str) -> str | None:
    if "://" not in value or "@" not in value:
        return None
    try:
        pw = make_url(value).password
    except Exception:
        m = re.match(r"^[a-z0-9+.-]+://[^:/@]+:([^@]+)@", value, re.I)
        pw = unquote(m.group(1)) if m else None
    return str(pw) if pw else None


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value in ``env`` (default ``os.environ``), longest first, with URL-encoded forms."""
    env = os.environ if env is None else env
    found: set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        pw = _url_password(value) if name.endswith("_URL") or "://" in value else None
        if pw:
            found.update({pw, quote(pw, safe=""), value})
        if _SECRET_NAME.search(name):
            found.add(value)
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _markup_escape(s: str) -> str:
    """Jinja's and markupsafe's HTML escape (nbconvert's): ``&#34;`` and ``&#39;`` for the quotes."""
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


# How a text is escaped on its way into a file or a column; two may stack (see variants).
_ESCAPES: tuple[Callable[[str], str], ...] = (
    lambda s: json.dumps(s)[1:-1],  # JSON, ensure_ascii (json.dumps' default)
    lambda s: json.dumps(s, ensure_ascii=False)[1:-1],  # JSON as nbformat writes it
    lambda s: html.escape(s, quote=True),
    lambda s: html.escape(s, quote=False),
    _markup_escape,
    lambda s: s.replace("\\", "\\\\"),  # a repr in a traceback doubles the backslashes
    lambda s: repr(s)[1:-1],  # ... and escapes quotes and control characters
)


def _url_forms(s: str) -> set[str]:
    forms = {quote(s, safe=""), quote(s), quote_plus(s), quote_plus(s, safe="/")}
    return forms | {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), f) for f in forms}


@lru_cache(maxsize=512)
def variants(value: str) -> tuple[str, ...]:
    """Every form ``value`` takes in a file or a column, longest first; ``()`` when it is shorter
    than :data:`MIN_SECRET_LENGTH` (it would redact ordinary words).

    The raw value (and its URL-decoded form), each escape of :data:`_ESCAPES` and any two stacked
    (JSON of a traceback's repr, HTML of a JSON string), and its URL encodings.
    """
    if len(value) < MIN_SECRET_LENGTH:
        return ()
    base = {value, unquote(value)}
    once = base | {esc(b) for esc in _ESCAPES for b in base}
    twice = once | {esc(v) for esc in _ESCAPES for v in once}
    found = twice | {u for b in base for u in _url_forms(b)}
    return tuple(sorted((f for f in found if len(f) >= MIN_SECRET_LENGTH), key=lambda f: (-len(f), f)))


@lru_cache(maxsize=64)
def _forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    found = {f for s in secrets for f in variants(s)}
    return tuple(sorted(found, key=lambda f: (-len(f), f)))


def all_variants(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every form (:func:`variants`) of every secret, longest first: a longer form is replaced
    before a shorter one inside it could break it up."""
    return _forms(tuple(sorted(set(secrets))))


def contains_secret(text: str, secrets: Iterable[str]) -> bool:
    """Whether ``text`` holds any secret in any of its forms."""
    return any(f in text for f in all_variants(secrets))


def redact(text: str, secrets: Iterable[str]) -> tuple[str, int]:
    """``text`` with every form of each secret replaced (longest first); returns the text and how
    many replacements were made."""
    return _replace(text, all_variants(secrets))


def _replace(text: str, forms: Iterable[str]) -> tuple[str, int]:
    count = 0
    for f in forms:
        if f in text:
            count += text.count(f)
            text = text.replace(f, REDACTED)
    return text, count


def scrub_tree(root: Path, secrets: Iterable[str]) -> int:
    """Redact secrets (every form) from every file under ``root`` in place; returns replacements made."""
    forms = all_variants(secrets)
    total = 0
    if not forms:
        return 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            data = path.read_bytes()
            for s in forms:
                if s.encode() in data:
                    total += data.count(s.encode())
                    data = data.replace(s.encode(), REDACTED.encode())
            path.write_bytes(data)
            continue
        new, n = _replace(text, forms)
        if n:
            path.write_text(new, encoding="utf-8")
            total += n
    return total


def find_secrets(root: Path, secrets: Iterable[str]) -> list[str]:
    """Files under ``root`` that contain any secret in any form (for tests and audits)."""
    forms = [f.encode() for f in all_variants(secrets)]
    return [str(p) for p in root.rglob("*") if p.is_file() and any(f in p.read_bytes() for f in forms)]
