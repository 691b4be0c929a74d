"""A throwaway PostgreSQL cluster for tests: Debian's PostgreSQL 15, ``initdb`` and the
server run as the ``postgres`` user (initdb refuses root), listening only on a Unix socket
in a temp dir.

``cluster()`` starts one and removes it, data and all, when done; ``Cluster.database()``
makes a fresh, empty database on it and returns its URL (what ``Ledger.open`` takes).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

# Debian's server binaries: the newest installed major version (15 on Debian 12).
BIN = max(
    Path("/usr/lib/postgresql").glob("*/bin/initdb"),
    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    default=Path("/usr/lib/postgresql/15/bin/initdb"),
).parent
PORT = 5432  # only names the socket file: there is no TCP listener
INITDB = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale", "C", "--no-sync"]


class Cluster:
    def __init__(self, root: Path, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.socket_dir = root / "socket"
        self.process = process
        self._names = itertools.count(1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.socket_dir}&port={PORT}&user=postgres"

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"ledger_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run a command as the cluster's owner (none if we are not root).
    Not through runuser: the server's pid must be the one we signal at the end."""
    if os.geteuid() != 0:
        return {}
    owner = pwd.getpwnam("postgres")
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def cluster(*, fsync: bool = False) -> Iterator[Cluster]:
    """A running cluster in a new temp dir; stopped and removed afterwards. ``fsync`` off by
    default: the tests kill senders, never the server, and a throwaway cluster need not
    survive a power cut."""
    root = Path(tempfile.mkdtemp(prefix="mailer-pg-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        (root / "socket").mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (root, root / "socket"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        data = root / "data"
        subprocess.run(
            [str(BIN / "initdb"), "-D", str(data), *INITDB],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=root,
            **_as_postgres(),
        )
        settings = [
            "listen_addresses=",
            f"port={PORT}",
            f"unix_socket_directories={root / 'socket'}",
            f"fsync={'on' if fsync else 'off'}",
            "max_connections=200",
            "log_min_messages=fatal",
        ]
        argv = [str(BIN / "postgres"), "-D", str(data)]
        for setting in settings:
            argv += ["-c", setting]
        log = (root / "server.log").open("wb")
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=root, **_as_postgres()
        )
        log.close()
        found = Cluster(root, process)
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(found.url(), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "PostgreSQL did not start: " + (root / "server.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.05)
        yield found
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: ends every session at once
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)
