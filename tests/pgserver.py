"""A throwaway PostgreSQL server of its own: initdb in a temporary directory, on a free port.

For what the shared server on 5432 cannot stand for: a dedicated add-on's
instance (its own superuser and password, TLS), a server configured as a
StatefulSet's start line configures it. initdb and postgres refuse root, so
a root test run drops to the ``postgres`` user for both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.conftest import free_port

#: Bounds for the server: generous, a loaded CI machine's initdb takes seconds.
START_TIMEOUT = 60.0


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    assert found, "PostgreSQL's server binaries (apt-get install postgresql) are missing"
    return found[-1].parent


@dataclass(frozen=True, slots=True)
class Scratch:
    #: A directory the server's user owns (data, socket, log, certificates).
    base: Path
    #: The argv prefix that runs a command as that user (empty when not root).
    prefix: list[str]

    def own(self, path: Path) -> None:
        """Give ``path`` to the server's user (a file it must read, such as a key)."""
        if self.prefix:
            shutil.chown(path, "postgres", "postgres")


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Scratch]:
    base = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
        prefix += ["--pdeathsig", "KILL", "--"]
    try:
        yield Scratch(base, prefix)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def postgres(
    where: Scratch,
    *,
    user: str = "postgres",
    password: str | None = None,
    options: Sequence[str] = (),
) -> Iterator[int]:
    """A server on 127.0.0.1 (and a socket in ``where.base``); its port, once it accepts
    connections. ``password``: TCP clients must give it (scram), the socket stays trusted
    for the test's own setup; None: trust everywhere. ``options``: ``-c`` and the like."""
    pg = pg_bin()
    data = str(where.base / "data")
    initdb = [str(pg / "initdb"), "-D", data, "-U", user, "--no-sync", "-E", "UTF8"]
    if password is None:
        initdb.append("--auth=trust")
    else:
        pwfile = where.base / "pwfile"
        pwfile.write_text(password + "\n")
        where.own(pwfile)
        initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    subprocess.run([*where.prefix, *initdb], check=True, capture_output=True, timeout=START_TIMEOUT)
    port = free_port()
    local = ["-k", str(where.base), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    log = (where.base / "server.log").open("wb")  # a file, not a pipe nobody drains
    server = subprocess.Popen(
        [*where.prefix, str(pg / "postgres"), "-D", data, "-p", str(port), *local, *options],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        socket = f"host={where.base} port={port} user={user} dbname=postgres connect_timeout=5"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert server.poll() is None, (where.base / "server.log").read_text()
            try:
                psycopg.connect(socket).close()
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "postgres did not accept connections"
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        log.close()
