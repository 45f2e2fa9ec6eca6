"""Postgres: the queries, and the pure mapping of their rows to samples.

One server target is polled with a handful of queries on one kept connection;
the per-database rows are then split between the server target and the
database targets that claim a database on it (the add-on model: one database
per add-on on a shared server). Names and labels follow prometheus-community
postgres_exporter so its dashboards (9628, 14114) work; the ``slipway_pg_*``
health series are Heroku-style ``pg:diagnose`` checks no community exporter has.

Server-wide series (``pg_static``, every ``pg_settings_*``, ``pg_stat_bgwriter_*``;
the last two from :mod:`exporters.pg_server`) are built once per poll and
repeated on every database target of the server: each add-on is its own
``instance`` on the dashboards, as it would be with an exporter of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from exporters import pg_server
from exporters.errors import ErrorKind
from exporters.samples import (
    Family,
    Labels,
    Outcome,
    Sample,
    ScrapeNames,
    SharedSamples,
    counter,
    down,
    gauge,
)
from exporters.targets import Scope, Target

SERVER_QUERY = """
SELECT version(),
       current_setting('server_version_num')::int,
       extract(epoch FROM pg_postmaster_start_time())::float8,
       pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN 0
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))
       END::float8,
       current_database()
"""

# pg_database_size() needs CONNECT on the database (or pg_read_all_stats); asking
# for it otherwise fails the whole query, so the size is NULL where it may not be read.
DATABASES_QUERY = """
SELECT d.datname, d.datconnlimit,
       CASE WHEN has_database_privilege(d.oid, 'CONNECT')
              OR pg_has_role('pg_read_all_stats', 'USAGE')
            THEN pg_database_size(d.oid) END,
       age(d.datfrozenxid), mxid_age(d.datminmxid),
       s.numbackends, s.xact_commit, s.xact_rollback, s.blks_read, s.blks_hit,
       s.tup_returned, s.tup_fetched, s.tup_inserted, s.tup_updated, s.tup_deleted,
       s.conflicts, s.temp_files, s.temp_bytes, s.deadlocks,
       s.blk_read_time, s.blk_write_time
FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
ORDER BY d.datname
"""

# Sessions of other users show a NULL state unless the exporter's role has
# pg_read_all_stats (pg_monitor); those are left out rather than guessed.
ACTIVITY_QUERY = """
SELECT datname, state, count(*),
       coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8,
       count(*) FILTER (WHERE state = 'active' AND now() - query_start > make_interval(secs => %s)),
       count(*) FILTER (WHERE wait_event_type = 'Lock')
FROM pg_stat_activity
WHERE datname IS NOT NULL AND state IS NOT NULL
GROUP BY datname, state
"""

LOCKS_QUERY = """
SELECT d.datname, lower(l.mode), count(*)
FROM pg_locks l JOIN pg_database d ON d.oid = l.database
GROUP BY d.datname, lower(l.mode)
"""

#: pg_stat_activity states postgres_exporter zero-fills, so a dashboard line exists at 0.
STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)
#: pg_locks modes postgres_exporter zero-fills.
LOCK_MODES = (
    "accesssharelock",
    "rowsharelock",
    "rowexclusivelock",
    "shareupdateexclusivelock",
    "sharelock",
    "sharerowexclusivelock",
    "exclusivelock",
    "accessexclusivelock",
    "sireadlock",
)
#: pg_stat_database columns exported as postgres_exporter's counters, in query order.
STAT_COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "conflicts",
    "temp_files",
    "temp_bytes",
    "deadlocks",
    "blk_read_time",
    "blk_write_time",
)


class ServerRow(NamedTuple):
    version: str
    version_num: int
    start_time: float
    in_recovery: bool
    lag_seconds: float
    current_database: str


class DatabaseRow(NamedTuple):
    datname: str
    connlimit: int
    size: int | None
    frozenxid_age: int | None
    minmxid_age: int | None
    numbackends: int | None
    xact_commit: int | None
    xact_rollback: int | None
    blks_read: int | None
    blks_hit: int | None
    tup_returned: int | None
    tup_fetched: int | None
    tup_inserted: int | None
    tup_updated: int | None
    tup_deleted: int | None
    conflicts: int | None
    temp_files: int | None
    temp_bytes: int | None
    deadlocks: int | None
    blk_read_time: float | None
    blk_write_time: float | None


class ActivityRow(NamedTuple):
    datname: str
    state: str
    sessions: int
    max_tx_duration: float
    long_running: int
    waiting: int


class LockRow(NamedTuple):
    datname: str
    mode: str
    locks: int


@dataclass(frozen=True)
class PgRaw:
    """Everything one poll of one server read, as rows."""

    server: ServerRow
    settings: Sequence[pg_server.SettingRow]
    bgwriter: pg_server.BgwriterRow | None
    databases: Sequence[DatabaseRow]
    activity: Sequence[ActivityRow]
    locks: Sequence[LockRow]


FAMILIES: dict[str, Family] = {
    "pg_up": gauge("Whether the last poll of this target succeeded (1) or not (0)."),
    "pg_static": gauge("Version string as reported by postgres."),
    "pg_postmaster_start_time_seconds": gauge("Time at which postmaster started."),
    "pg_settings_max_connections": gauge("Server Parameter: max_connections"),
    "pg_settings_superuser_reserved_connections": gauge(
        "Server Parameter: superuser_reserved_connections"
    ),
    "pg_settings_shared_buffers_bytes": gauge(
        "Server Parameter: shared_buffers [Units converted to bytes.]"
    ),
    "pg_replication_is_replica": gauge("Indicates if the server is a replica."),
    "pg_replication_lag_seconds": gauge("Replication lag behind master in seconds."),
    "pg_database_size_bytes": gauge("Disk space used by the database."),
    "pg_database_connection_limit": gauge("Connection limit set for the database."),
    "pg_database_wraparound_age_datfrozenxid_seconds": gauge(
        "Age of the oldest transaction ID that has not been frozen."
    ),
    "pg_database_wraparound_age_datminmxid_seconds": gauge(
        "Age of the oldest multi-transaction ID that has been replaced with a transaction ID."
    ),
    "pg_stat_database_numbackends": gauge(
        "Number of backends currently connected to this database."
    ),
    **{
        f"pg_stat_database_{column}": counter(
            f"pg_stat_database.{column}: cumulative since the last statistics reset."
        )
        for column in STAT_COUNTERS
    },
    **pg_server.BGWRITER_FAMILIES,
    "pg_stat_activity_count": gauge("number of connections in this state"),
    "pg_stat_activity_max_tx_duration": gauge(
        "max duration in seconds any active transaction has been running"
    ),
    "pg_locks_count": gauge("Number of locks"),
    "slipway_pg_connections_used_ratio": gauge(
        "Connections in use over the connections allowed: the server's max_connections less "
        "the superuser reserve, or for an add-on database its plan's or the database's limit."
    ),
    "slipway_pg_cache_hit_ratio": gauge(
        "blks_hit / (blks_hit + blks_read) since the statistics reset; below 0.99 usually means "
        "the working set no longer fits in memory."
    ),
    "slipway_pg_long_running_queries": gauge(
        "Queries active for longer than the long-query threshold."
    ),
    "slipway_pg_idle_in_transaction": gauge(
        "Sessions idle inside an open transaction (they hold locks and block vacuum)."
    ),
    "slipway_pg_waiting_queries": gauge("Sessions waiting on a lock held by another session."),
    "slipway_pg_database_size_plan_ratio": gauge(
        "Database size over the size the add-on's plan allows."
    ),
}

#: postgres_exporter's series about its own scrape.
SCRAPE_NAMES = ScrapeNames(
    duration="pg_exporter_last_scrape_duration_seconds",
    scrapes="pg_exporter_scrapes_total",
    error="pg_exporter_last_scrape_error",
)

_SHORT_VERSION = re.compile(r"PostgreSQL (\d+)\.(\d+)(?:\.(\d+))?")


def short_version(version: str) -> str:
    """``PostgreSQL 15.20 (Debian ...)`` -> ``15.20.0``, postgres_exporter's semver form."""
    match = _SHORT_VERSION.search(version)
    if match is None:
        return ""
    return f"{match.group(1)}.{match.group(2)}.{match.group(3) or 0}"


@dataclass
class _Out:
    samples: list[Sample] = field(default_factory=list)

    def add(self, name: str, value: float | None, labels: Labels = ()) -> None:
        if value is not None:
            self.samples.append(Sample(name, labels, float(value)))


class ServerLevel(NamedTuple):
    shared: SharedSamples
    """The same on every target of the server."""
    families: dict[str, Family]
    """One per pg_settings row."""
    max_connections: float
    superuser_reserved: float


def _server_level(raw: PgRaw) -> ServerLevel:
    out = _Out()
    out.add(
        "pg_static",
        1,
        (("short_version", short_version(raw.server.version)), ("version", raw.server.version)),
    )
    out.add("pg_postmaster_start_time_seconds", raw.server.start_time)
    out.add("pg_replication_is_replica", 1 if raw.server.in_recovery else 0)
    out.add("pg_replication_lag_seconds", raw.server.lag_seconds)
    families: dict[str, Family] = {}
    values: dict[str, float] = {}
    for row in raw.settings:
        parsed = pg_server.setting(row)
        if parsed is None:
            continue
        out.add(parsed.name, parsed.value)
        families[parsed.name] = parsed.family
        values[row.name] = parsed.value
    if raw.bgwriter is not None:
        out.samples.extend(pg_server.bgwriter_samples(raw.bgwriter, raw.server.version_num))
    return ServerLevel(
        SharedSamples(tuple(out.samples)),
        families,
        values.get("max_connections", 0.0),
        values.get("superuser_reserved_connections", 0.0),
    )


def _database_level(
    db: DatabaseRow,
    activity: dict[tuple[str, str], ActivityRow],
    locks: dict[tuple[str, str], int],
    out: _Out,
    *,
    plan_size: float | None,
) -> None:
    labels: Labels = (("datname", db.datname),)
    out.add("pg_database_size_bytes", db.size, labels)
    out.add("pg_database_connection_limit", db.connlimit, labels)
    out.add("pg_database_wraparound_age_datfrozenxid_seconds", db.frozenxid_age, labels)
    out.add("pg_database_wraparound_age_datminmxid_seconds", db.minmxid_age, labels)
    out.add("pg_stat_database_numbackends", db.numbackends, labels)
    for column in STAT_COUNTERS:
        out.add(f"pg_stat_database_{column}", getattr(db, column), labels)
    long_running = idle_in_tx = waiting = 0
    for state in STATES:
        row = activity.get((db.datname, state))
        state_labels = (("datname", db.datname), ("state", state))
        out.add("pg_stat_activity_count", row.sessions if row else 0, state_labels)
        out.add("pg_stat_activity_max_tx_duration", row.max_tx_duration if row else 0, state_labels)
        if row:
            long_running += row.long_running
            waiting += row.waiting
            if state.startswith("idle in transaction"):
                idle_in_tx += row.sessions
    for mode in LOCK_MODES:
        out.add(
            "pg_locks_count",
            locks.get((db.datname, mode), 0),
            (("datname", db.datname), ("mode", mode)),
        )
    hits, reads = db.blks_hit or 0, db.blks_read or 0
    if hits + reads > 0:
        out.add("slipway_pg_cache_hit_ratio", hits / (hits + reads), labels)
    out.add("slipway_pg_long_running_queries", long_running, labels)
    out.add("slipway_pg_idle_in_transaction", idle_in_tx, labels)
    out.add("slipway_pg_waiting_queries", waiting, labels)
    if plan_size and db.size is not None:
        out.add("slipway_pg_database_size_plan_ratio", db.size / plan_size, labels)


def _server_ratio(
    server: Target, raw: PgRaw, by_name: dict[str, DatabaseRow], available: float
) -> float:
    """Connections used on a server target, against what limits them.

    An add-on polled with its own DSN (``scope = "database"``, control's targets without
    a monitoring DSN) is on a shared server: its plan's ``connections`` (else its
    database's CONNECTION LIMIT) is what runs out, not the server's max_connections, and
    only its own database's backends count against it. The exporter's own kept
    connection is one of them: it is one of the role's connections, so the ratio says
    what the app can still open.
    """
    own = by_name.get(raw.server.current_database)
    if server.scope is Scope.DATABASE and own is not None:
        limit = server.limits.connections or (own.connlimit if own.connlimit > 0 else 0)
        if limit > 0:
            return (own.numbackends or 0) / limit
    total_backends = sum(db.numbackends or 0 for db in raw.databases)
    return total_backends / available


def outcomes(server: Target, raw: PgRaw, members: Iterable[Target]) -> dict[str, Outcome]:
    """Split one server poll into the outcome of the server and of each database target."""
    activity = {(row.datname, row.state): row for row in raw.activity}
    locks = {(row.datname, row.mode): row.locks for row in raw.locks}
    by_name = {db.datname: db for db in raw.databases}
    members = list(members)
    claimed = {m.database for m in members}

    level = _server_level(raw)
    server_out = _Out([Sample("pg_up", (), 1.0)])
    available = max(level.max_connections - level.superuser_reserved, 1.0)
    server_out.add(
        "slipway_pg_connections_used_ratio", _server_ratio(server, raw, by_name, available)
    )
    for db in raw.databases:
        if db.datname in claimed:
            continue
        if server.scope is Scope.DATABASE and db.datname != raw.server.current_database:
            continue
        _database_level(db, activity, locks, server_out, plan_size=server.limits.size_bytes)
    result = {
        server.name: Outcome(server_out.samples, families=level.families, shared=level.shared)
    }

    for member in members:
        db_row = by_name.get(member.database or "")
        if db_row is None:
            result[member.name] = down("pg_up", ErrorKind.NOT_FOUND)
            continue
        out = _Out([Sample("pg_up", (), 1.0)])
        limit = float(
            member.limits.connections or (db_row.connlimit if db_row.connlimit > 0 else available)
        )
        out.add("slipway_pg_connections_used_ratio", (db_row.numbackends or 0) / limit)
        _database_level(db_row, activity, locks, out, plan_size=member.limits.size_bytes)
        result[member.name] = Outcome(out.samples, families=level.families, shared=level.shared)
    return result
