"""Headless Chromium for the browser tests, with the network cut off and a trap to prove it.

Every test page is opened with the product's flags (``helpers.core.browser.FLAGS``: DNS disabled
except 127.0.0.1) and every http(s) request goes to a local :class:`Trap` posing as the proxy, so
nothing leaves the machine and whatever a page asks for is recorded. Screenshots go to
``test-artifacts/`` (kept by CI). Without Chromium a test skips, and fails under ``CI=true``.
"""

from __future__ import annotations

import socketserver
import subprocess
from pathlib import Path

from conftest import REPO, need_service
from helpers.core import browser

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_SERVICES = ("google.com", "googleapis.com", "gvt1.com")  # Chromium's own update/sign-in/time pings


def chromium() -> Path:
    found = browser.find_chromium()
    if found is None:
        need_service(f"headless Chromium not found ({browser.INSTALL_HINT})")
    return found


class Trap(socketserver.ThreadingTCPServer):
    """A local "proxy" that answers every request with 403 and remembers its request line."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.hits: list[str] = []
        trap = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                line = self.request.recv(8192).split(b"\r\n", 1)[0].decode("latin-1")
                trap.hits.append(line)
                self.request.sendall(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def page_hits(self) -> list[str]:
        """Trapped requests other than Chromium's own background services."""
        out = []
        for line in self.hits:
            target = line.split(" ")[1] if " " in line else line
            host = target.split("://")[-1].split("/")[0].split(":")[0]
            if not any(host == s or host.endswith("." + s) for s in CHROMIUM_SERVICES):
                out.append(line)
        return out


def browse(page: Path | str, trap: Trap, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Open ``page`` (a file, or a 127.0.0.1 URL) headless, every request sent to ``trap``."""
    chromium()
    proxy = f"--proxy-server=http://127.0.0.1:{trap.server_address[1]}"
    return browser.run(page, proxy, *extra, profile=profile)


def screenshot(page: Path | str, trap: Trap, profile: Path, name: str, *, width: int = 1280,
               height: int = 1600) -> Path:  # fmt: skip
    """A screenshot kept as a CI artefact: ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    browse(page, trap, profile, f"--screenshot={shot}", f"--window-size={width},{height}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot
    return shot
