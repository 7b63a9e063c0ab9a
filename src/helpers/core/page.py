"""Self-contained HTML pages: the status board and the run history are one file each, no network.

Every page the workbook writes outside a notebook goes through :func:`document`: one ``<style>``
block, no script or font from elsewhere, a real ``<title>``, and readable in print. A status is
never colour alone: :func:`badge` writes its word too, and the colours pass contrast on white.
"""

from __future__ import annotations

import html
from typing import Any

BASE_CSS = """
:root{--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--info:#0969da;--muted:#57606a;--line:#d0d7de}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 margin:0 auto;padding:16px 24px 40px;max-width:1280px;color:#1f2328;font-size:14px;line-height:1.45}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.wb-sub{color:var(--muted);margin:0 0 12px}
table{border-collapse:collapse;margin:4px 0 8px}
th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
th{font-weight:600;background:#f6f8fa}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:var(--info)}
.wb-badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;
 color:#fff;white-space:nowrap}
.wb-ok{background:var(--ok)}.wb-warn{background:var(--warn)}.wb-bad{background:var(--bad)}
.wb-info{background:var(--info)}.wb-none{background:#fff;color:var(--muted);border:1px solid var(--line)}
.wb-muted{color:var(--muted)}
@media print{body{max-width:none;padding:0}a{color:inherit;text-decoration:none}}
"""

# Run and check statuses -> badge class (anything else reads as "none").
STATUS_CLASS = {
    "succeeded": "wb-ok", "ok": "wb-ok", "pass": "wb-ok", "fresh": "wb-ok", "final": "wb-ok",
    "running": "wb-info", "queued": "wb-info", "skipped": "wb-none", "pending": "wb-none",
    "warn": "wb-warn", "late": "wb-warn", "at risk": "wb-warn", "blocked": "wb-warn", "provisional": "wb-warn",
    "failed": "wb-bad", "fail": "wb-bad", "error": "wb-bad", "breached": "wb-bad", "critical": "wb-bad",
    "conflict": "wb-bad", "cancelled": "wb-none", "locked": "wb-info", "published": "wb-ok",
    "withdrawn": "wb-none",
}  # fmt: skip


def esc(value: Any) -> str:
    """``value`` as HTML text (None reads as an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def badge(status: str, text: str | None = None, *, title: str | None = None) -> str:
    """A status as colour and word: ``<span class="wb-badge wb-bad">failed</span>``."""
    cls = STATUS_CLASS.get(str(status).lower(), "wb-none")
    tip = f' title="{esc(title)}"' if title else ""
    return f'<span class="wb-badge {cls}" data-status="{esc(status)}"{tip}>{esc(text or status)}</span>'


def link(href: str | None, text: str) -> str:
    """``text`` linked to ``href`` (escaped), or just the text when there is no target."""
    return f'<a href="{esc(href)}">{esc(text)}</a>' if href else esc(text)


def table(headers: list[str], rows: list[list[str]], *, numeric: tuple[int, ...] = (), cls: str = "") -> str:
    """A table from already-escaped cell HTML; ``numeric``: column positions aligned right."""

    def cell(tag: str, i: int, body: str) -> str:
        return f"<{tag}{' class=num' if i in numeric else ''}>{body}</{tag}>"

    head = "".join(cell("th", i, esc(h)) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    klass = f' class="{esc(cls)}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def document(
    title: str, body: str, *, refresh_seconds: int | None = None, extra_css: str = "", script: str = ""
) -> str:
    """A whole page: ``title`` in ``<title>``, ``body`` (HTML) inside, one style block, nothing fetched.

    ``refresh_seconds``: the browser reloads the page that often (``<meta http-equiv=refresh>``).
    ``script``: inline JavaScript (a filter, say); the page works without it.
    """
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    js = f"<script>{script}</script>" if script else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{refresh}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{BASE_CSS}{extra_css}</style></head>"
        f"<body>{body}{js}</body></html>\n"
    )
