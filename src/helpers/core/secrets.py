"""Secrets come from the environment only; this module finds them so they can be kept out.

A value counts as secret when it is the password of ``WORKBOOK_WAREHOUSE_URL`` (or of any
``*_URL`` variable with credentials), or the value of a variable whose name says it is one
(``*_PASSWORD``, ``*_TOKEN``, ``*_SECRET``, ``*_KEY``, ``*_WEBHOOK_URL``, ``*_ROUTING_KEY``).
The runner refuses them as papermill parameters and scrubs them from every archived file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote, unquote

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


def redact(text: str, secrets: Iterable[str]) -> tuple[str, int]:
    """``text`` with each secret replaced; returns the text and how many replacements were made."""
    count = 0
    for s in secrets:
        if s in text:
            count += text.count(s)
            text = text.replace(s, REDACTED)
    return text, count


def scrub_tree(root: Path, secrets: Iterable[str]) -> int:
    """Redact secrets from every text file under ``root`` in place; returns replacements made."""
    secrets = list(secrets)
    total = 0
    if not secrets:
        return 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            data = path.read_bytes()
            for s in secrets:
                if s.encode() in data:
                    data = data.replace(s.encode(), REDACTED.encode())
                    total += 1
            path.write_bytes(data)
            continue
        new, n = redact(text, secrets)
        if n:
            path.write_text(new, encoding="utf-8")
            total += n
    return total


def find_secrets(root: Path, secrets: Iterable[str]) -> list[str]:
    """Files under ``root`` that contain any secret (for tests and audits)."""
    secrets = [s.encode() for s in secrets]
    return [str(p) for p in root.rglob("*") if p.is_file() and any(s in p.read_bytes() for s in secrets)]
