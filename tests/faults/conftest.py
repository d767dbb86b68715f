"""Servers the fault tests may break: a PostgreSQL cluster and a Redis of their own.

The cluster is initialised in a temporary directory with the binaries `make services` uses
(the newest PostgreSQL >= 15 under /usr/lib/postgresql), on a free port, TCP only, and is
migrated with the project's migrations. Running as root, the server runs as the `postgres`
OS user (initdb refuses root), as scripts/services.sh does.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from patient_search.cli import migrate
from tests.conftest import make_settings
from tests.private_servers import free_port

MIN_PG_MAJOR = 15
PG_OS_USER = "postgres"
DATABASE = "patient_search"
# What each fault test measured, printed at the end of the run (the closing figures).
FIGURES: list[str] = []


def _pg_bin() -> Path:
    found: list[tuple[int, Path]] = []
    candidates = list(Path("/usr/lib/postgresql").glob("*/bin"))
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout
        candidates.append(Path(bindir.strip()))
    for bin_dir in candidates:
        if all((bin_dir / tool).exists() for tool in ("postgres", "initdb", "pg_ctl")):
            version = subprocess.run(
                [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True
            ).stdout
            major = re.search(r"(\d+)", version)
            if major and int(major.group(1)) >= MIN_PG_MAJOR:
                found.append((int(major.group(1)), bin_dir))
    if not found:
        pytest.fail("no PostgreSQL >= 15 server binaries (make services installs them)")
    return max(found)[1]


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test session's own, to stop, kill and start again."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgresql.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_OS_USER, "--", *command]
        subprocess.run(
            command,
            check=True,
            cwd="/",
            env={**os.environ, "LC_ALL": "C"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )

    def init(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_OS_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1"
            " -c unix_socket_directories='' -c fsync=off -c full_page_writes=off"
            " -c max_connections=60 -c shared_buffers=32MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast` rolls back and disconnects every session; `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A migrated cluster on a free port; each test leaves it running."""
    # Not pytest's tmp_path: under root its parents are not traversable by `postgres`.
    root = Path(tempfile.mkdtemp(prefix="ps-faults-pg-"))
    server = PrivatePostgres(_pg_bin(), root, free_port())
    try:
        server.init()
        server.start()
        server.create_database(DATABASE)
        migrate(make_settings(server.url()))
        yield server
    finally:
        try:
            server.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(root, ignore_errors=True)


def report(line: str) -> None:
    """Keep one line of figures for the end-of-run summary."""
    FIGURES.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault injection figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
