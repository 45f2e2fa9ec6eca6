"""The targets file: which servers and databases to poll, and how to reach them.

TOML, read with the standard library::

    [[targets]]
    name = "pg-shared-1"              # the ``target`` label; unique
    dsn_env = "PG_SHARED_1_DSN"       # or dsn_file = "/run/secrets/pg1", or dsn = "..."
    password_file = "/run/secrets/pg1-password"   # optional, kept out of the DSN
    labels = { cluster = "shared-1" }

    [[targets]]                       # Postgres only: one add-on database on that server,
    name = "blue-db"                  # polled through the server target's connection
    server = "pg-shared-1"
    database = "addon_blue"
    labels = { app = "blue", plan = "hobby" }
    limits = { size_bytes = 10_000_000_000, connections = 20 }

Parsing is pure (:func:`parse_targets` takes the text, the environment and a
file reader); :func:`load_targets` is the shell that reads them. Errors name the
file and the target, never the value of a DSN or a password.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporters.errors import TargetsFileError


class Kind(enum.StrEnum):
    POSTGRES = "postgres"
    REDIS = "redis"


class Scope(enum.StrEnum):
    """Which databases a Postgres server target reports per-database series for."""

    SERVER = "server"  # every database the DSN's user can see (postgres_exporter's way)
    DATABASE = "database"  # only the database the DSN connects to (an add-on's own DSN)


@dataclass(frozen=True)
class Limits:
    """What the add-on's plan allows; the health ratios are measured against it."""

    size_bytes: float | None = None
    """Postgres: database size the plan allows."""
    connections: int | None = None
    """Postgres: connections the plan allows; Redis: clients the plan allows."""
    memory_bytes: float | None = None
    """Redis: memory the plan allows (when maxmemory is not set on a shared server)."""


@dataclass(frozen=True)
class Target:
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    limits: Limits = Limits()
    dsn: str | None = field(default=None, repr=False)
    """Resolved connection string; None for a database target. Never logged."""
    password: str | None = field(default=None, repr=False)
    server: str | None = None
    """Postgres database target: the name of the server target it is polled through."""
    database: str | None = None
    scope: Scope = Scope.SERVER

    @property
    def is_database(self) -> bool:
        return self.server is not None


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Labels the exporter sets itself; a user label of the same name would clash.
RESERVED_LABELS = frozenset(
    {
        "target",
        "instance",
        "job",
        "datname",
        "datid",
        "state",
        "mode",
        "db",
        "cmd",
        "role",
        "error",
        "short_version",
        "version",
        "redis_version",
        "maxmemory_policy",
        "redis_mode",
        "master_host",
        "master_port",
        "server",
    }
)
_COMMON_KEYS = {
    "name",
    "labels",
    "limits",
    "dsn",
    "dsn_env",
    "dsn_file",
    "password_env",
    "password_file",
}
_KEYS = {
    Kind.POSTGRES: _COMMON_KEYS | {"server", "database", "scope"},
    Kind.REDIS: set(_COMMON_KEYS),
}
_LIMIT_KEYS = {"size_bytes", "connections", "memory_bytes"}
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

ReadFile = Callable[[str], str]


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def load_targets(path: str | Path, *, kind: Kind) -> list[Target]:
    """Read and parse the targets file at ``path`` with the process environment."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetsFileError(f"{path}: cannot read the targets file ({exc.strerror})") from exc
    return parse_targets(
        text, kind=kind, source=str(path), environ=os.environ, read_file=_read_text
    )


def parse_targets(
    text: str,
    *,
    kind: Kind,
    source: str = "<targets>",
    environ: Mapping[str, str],
    read_file: ReadFile,
) -> list[Target]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetsFileError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(document) - {"targets"}
    if unknown:
        raise TargetsFileError(
            f"{source}: unknown top-level keys {sorted(unknown)}; only [[targets]] is allowed"
        )
    entries = document.get("targets", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TargetsFileError(f"{source}: 'targets' must be an array of tables ([[targets]])")
    targets: list[Target] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        target = _parse_one(
            entry,
            kind=kind,
            where=f"{source}: targets[{index}]",
            environ=environ,
            read_file=read_file,
        )
        if target.name in seen:
            raise TargetsFileError(f"{source}: target name {target.name!r} is used twice")
        seen.add(target.name)
        targets.append(target)
    _check_servers(targets, source)
    return targets


def _check_servers(targets: list[Target], source: str) -> None:
    by_name = {t.name: t for t in targets}
    claimed: dict[tuple[str, str], str] = {}
    for target in targets:
        if target.server is None or target.database is None:
            continue
        server = by_name.get(target.server)
        if server is None:
            raise TargetsFileError(
                f"{source}: target {target.name!r} names server "
                f"{target.server!r}, which is not a target in this file"
            )
        if server.is_database:
            raise TargetsFileError(
                f"{source}: target {target.name!r} names server "
                f"{target.server!r}, which is itself a database target"
            )
        key = (target.server, target.database)
        if key in claimed:
            raise TargetsFileError(
                f"{source}: targets {claimed[key]!r} and {target.name!r} both "
                f"claim database {target.database!r} on {target.server!r}"
            )
        claimed[key] = target.name


def _parse_one(
    entry: dict[str, Any],
    *,
    kind: Kind,
    where: str,
    environ: Mapping[str, str],
    read_file: ReadFile,
) -> Target:
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise TargetsFileError(
            f"{where}: 'name' must be 1-128 characters of letters, digits, '_', '.', ':' or '-'"
        )
    where = f"{where} ({name})"
    unknown = set(entry) - _KEYS[kind]
    if unknown:
        raise TargetsFileError(f"{where}: unknown keys {sorted(unknown)} for a {kind} target")
    labels = _parse_labels(entry.get("labels", {}), where)
    limits = _parse_limits(entry.get("limits", {}), where)
    server, database = entry.get("server"), entry.get("database")
    sources = [k for k in ("dsn", "dsn_env", "dsn_file") if k in entry]
    if server is not None or database is not None:
        if not isinstance(server, str) or not isinstance(database, str) or not database:
            raise TargetsFileError(
                f"{where}: a database target needs both 'server' and 'database' as strings"
            )
        if sources or "password_env" in entry or "password_file" in entry or "scope" in entry:
            raise TargetsFileError(
                f"{where}: a database target is polled through its server; "
                "it takes no dsn, password or scope"
            )
        return Target(name=name, labels=labels, limits=limits, server=server, database=database)
    if len(sources) != 1:
        raise TargetsFileError(f"{where}: give exactly one of 'dsn', 'dsn_env' or 'dsn_file'")
    dsn = _resolve(entry, sources[0], where, environ, read_file, what="DSN")
    if not dsn:
        raise TargetsFileError(f"{where}: the DSN from {sources[0]!r} is empty")
    if kind is Kind.REDIS and not dsn.startswith(_REDIS_SCHEMES):
        raise TargetsFileError(f"{where}: a Redis DSN must be a redis://, rediss:// or unix:// URL")
    passwords = [k for k in ("password_env", "password_file") if k in entry]
    if len(passwords) > 1:
        raise TargetsFileError(f"{where}: give at most one of 'password_env' or 'password_file'")
    password = (
        _resolve(entry, passwords[0], where, environ, read_file, what="password")
        if passwords
        else None
    )
    scope_text = entry.get("scope", Scope.SERVER.value)
    try:
        scope = Scope(scope_text)
    except ValueError:
        raise TargetsFileError(
            f"{where}: 'scope' must be 'server' or 'database', not {scope_text!r}"
        ) from None
    return Target(name=name, labels=labels, limits=limits, dsn=dsn, password=password, scope=scope)


def _resolve(
    entry: dict[str, Any],
    key: str,
    where: str,
    environ: Mapping[str, str],
    read_file: ReadFile,
    *,
    what: str,
) -> str:
    ref = entry[key]
    if not isinstance(ref, str) or not ref:
        raise TargetsFileError(f"{where}: {key!r} must be a non-empty string")
    if key in ("dsn",):
        return ref
    if key.endswith("_env"):
        value = environ.get(ref)
        if value is None:
            raise TargetsFileError(f"{where}: the {what} variable {ref!r} is not set")
        return value
    try:
        return read_file(ref).rstrip("\r\n")
    except OSError as exc:
        raise TargetsFileError(
            f"{where}: cannot read the {what} file {ref!r} ({exc.strerror or type(exc).__name__})"
        ) from exc


def _parse_labels(raw: object, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise TargetsFileError(f"{where}: 'labels' must be a table of strings")
    for key, value in raw.items():
        if not _LABEL.match(key) or key.startswith("__"):
            raise TargetsFileError(f"{where}: label name {key!r} is not a valid Prometheus label")
        if key in RESERVED_LABELS:
            raise TargetsFileError(f"{where}: label {key!r} is set by the exporter itself")
        if not isinstance(value, str):
            raise TargetsFileError(f"{where}: label {key!r} must be a string")
    return tuple(sorted(raw.items()))


def _parse_limits(raw: object, where: str) -> Limits:
    if not isinstance(raw, dict):
        raise TargetsFileError(f"{where}: 'limits' must be a table")
    unknown = set(raw) - _LIMIT_KEYS
    if unknown:
        raise TargetsFileError(
            f"{where}: unknown limits {sorted(unknown)}; known: {sorted(_LIMIT_KEYS)}"
        )
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise TargetsFileError(f"{where}: limit {key!r} must be a positive number")
    connections = raw.get("connections")
    if connections is not None and not isinstance(connections, int):
        raise TargetsFileError(f"{where}: limit 'connections' must be a whole number")
    return Limits(
        size_bytes=raw.get("size_bytes"),
        connections=connections,
        memory_bytes=raw.get("memory_bytes"),
    )
