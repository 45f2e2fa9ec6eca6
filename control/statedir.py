"""``slipway up``'s state directory: readable by slipway alone, and the secrets it keeps.

The directory holds the admin token, the forward key, every tenant's config
(slipway.db) and their logs (the spool). App processes never see it
(kit/spawn.py mounts none of it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import click


def private_state_dir(state_dir: Path) -> None:
    """The state directory and what slipway keeps in it readable by slipway alone.

    It holds the admin token, every tenant's config (slipway.db, its -wal and -shm,
    which SQLite creates with the database's own mode) and their logs (the spool):
    0700 for the directories, 0600 for the files, also for a directory an older
    version left readable. Apps never see it (kit/spawn.py mounts none of it) and
    builds' slugs under it are mounted into their app's sandbox by path.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    spool = state_dir / "logs"
    spool.mkdir(exist_ok=True)
    spool.chmod(0o700)
    for path in spool.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    db = state_dir / "slipway.db"
    os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    for path in (db, state_dir / "slipway.db-wal", state_dir / "slipway.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)


def local_secret(path: Path, *, env: str = "SLIPWAY_TOKEN", prefix: str = "slw_") -> str:
    """``env`` if set; else the secret kept in ``path`` (made once, readable by us only)."""
    if token := os.environ.get(env):
        return token
    try:
        if token := path.read_text().strip():
            return token
        raise click.ClickException(f"{path} is empty; remove it and a new one is made")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc}; remove it or fix its mode") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    token = prefix + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
