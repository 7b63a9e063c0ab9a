"""Headless Chromium, with the network cut off: print a page to PDF, take a screenshot, read its DOM.

The workbook's pages are self-contained, so the browser is never allowed to reach the network:
every host name resolves to nothing (``--host-resolver-rules``) except 127.0.0.1, and Chromium's
own background services (updates, sign-in, time queries) are switched off. Debian's package is
``chromium``; as root it needs ``--no-sandbox`` (always passed: the pages are our own files).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

INSTALL_HINT = "install headless Chromium (Debian/Ubuntu: apt-get install chromium) and run it again"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
    "--disable-default-apps", "--no-default-browser-check", "--disable-domain-reliability", "--no-pings",
    "--disable-breakpad", "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--proxy-bypass-list=<-loopback>",
    "--hide-scrollbars",
)  # fmt: skip


class BrowserMissing(RuntimeError):
    """No Chromium on this machine."""

    def __init__(self) -> None:
        super().__init__(f"headless Chromium was not found: {INSTALL_HINT}")


def find_chromium() -> Path | None:
    """Chromium's executable (``chromium``, ``chromium-browser``, ``google-chrome``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return Path(found)
    fallback = Path("/usr/bin/chromium")
    return fallback if fallback.exists() else None


def run(
    target: Path | str,
    *extra: str,
    profile: Path | None = None,
    timeout_s: float = 120,
    virtual_time_ms: int = 5000,
) -> subprocess.CompletedProcess[str]:
    """Open ``target`` (a file or a ``http://127.0.0.1`` URL) headless with ``extra`` flags.

    Raises :class:`BrowserMissing` when there is no Chromium and ``RuntimeError`` with the end of
    its stderr when it fails. ``profile``: a user-data directory (default: a temporary one).
    """
    exe = find_chromium()
    if exe is None:
        raise BrowserMissing()
    url = target if isinstance(target, str) else Path(target).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="workbook-chromium-") as tmp:
        cmd = [str(exe), *FLAGS, f"--user-data-dir={profile or tmp}",
               f"--virtual-time-budget={virtual_time_ms}", *extra, url]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"Chromium exited {proc.returncode} on {url}: {proc.stderr[-1500:]}")
    return proc


def print_pdf(page: Path, pdf: Path, *, extra: Sequence[str] = ()) -> Path:
    """Print ``page`` to ``pdf`` as the browser's "Save as PDF" does (the page's print CSS, A4 if it says so).

    Written beside its final name and renamed, so ``pdf`` is complete or absent.
    """
    pdf.parent.mkdir(parents=True, exist_ok=True)
    partial = pdf.with_name(f".{pdf.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        run(page, f"--print-to-pdf={partial}", "--no-pdf-header-footer", *extra)
        if not partial.is_file() or partial.stat().st_size == 0:
            raise RuntimeError(f"Chromium wrote no PDF for {page}")
        partial.replace(pdf)
    finally:
        partial.unlink(missing_ok=True)
    return pdf


def screenshot(page: Path | str, png: Path, *, width: int = 1280, height: int = 1600) -> Path:
    """A PNG of ``page`` at ``width`` x ``height`` CSS pixels."""
    png.parent.mkdir(parents=True, exist_ok=True)
    run(page, f"--screenshot={png}", f"--window-size={width},{height}")
    return png


def dom(page: Path | str) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``)."""
    return run(page, "--dump-dom").stdout


def pdf_pages(pdf: Path) -> int:
    """The number of pages of a PDF Chromium wrote (its page objects; no PDF library needed)."""
    data = pdf.read_bytes()
    return data.count(b"/Type /Page") - data.count(b"/Type /Pages")
