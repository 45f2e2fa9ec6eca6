"""Add-on plans: the limits that keep one tenant from starving the others.

Numbers are for a small shared server (PostgreSQL's default max_connections is
100; a handful of review apps on ``mini`` must not exhaust it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: PostgreSQL's time units (``SHOW statement_timeout`` spells them the same way).
_PG_UNITS = {"us": 1e-6, "ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PG_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")


def postgres_seconds(text: str) -> float:
    """Seconds in a PostgreSQL time setting (``300ms``, ``30s``, ``5min``; bare is ms)."""
    match = _PG_TIME.match(text)
    if match is None:
        raise ValueError(f"not a PostgreSQL time: {text!r} (use e.g. 300ms, 30s, 5min)")
    return float(match.group(1)) * _PG_UNITS[match.group(2) or "ms"]


@dataclass(frozen=True, slots=True)
class PostgresPlan:
    #: CONNECTION LIMIT of the role: its share of the server's max_connections.
    connection_limit: int
    #: statement_timeout of the role: no query holds locks or CPU longer. The role's
    #: setting is only its default (a role may SET its own); the control plane's
    #: watchdog (``watchdog.py``) cancels what runs past it whatever the session set.
    statement_timeout: str
    #: idle_in_transaction_session_timeout: an abandoned transaction frees its locks;
    #: enforced by the watchdog too (it terminates the session).
    idle_in_transaction_timeout: str
    #: temp_file_limit: one sort cannot fill the server's disk (superuser-only to SET).
    temp_file_limit: str

    @property
    def statement_seconds(self) -> float:
        return postgres_seconds(self.statement_timeout)

    @property
    def idle_in_transaction_seconds(self) -> float:
        return postgres_seconds(self.idle_in_transaction_timeout)


@dataclass(frozen=True, slots=True)
class RedisPlan:
    #: Shared Redis has no per-user memory or client cap; recorded for the docs and for
    #: the dedicated-instance plans on Kubernetes, where it becomes maxmemory.
    maxmemory: str


POSTGRES_PLANS: dict[str, PostgresPlan] = {
    # 5 connections: a review app's web dyno with a small pool plus a console.
    "mini": PostgresPlan(5, "30s", "60s", "256MB"),
    "basic": PostgresPlan(20, "60s", "5min", "1GB"),
    "standard": PostgresPlan(50, "120s", "10min", "4GB"),
}

#: Plans on the shared server: only by explicit choice (``redis:shared``). Keys must start
#: with the add-on's prefix and Lua is denied, so RQ, Sidekiq, Celery and Bull, which name
#: their own keys (``rq:queue:default``, ``queue:default``, ``celery``, ``bull:*``) and run
#: scripts, fail on them (docs/control.md, "Redis plans").
REDIS_PLANS: dict[str, RedisPlan] = {
    "shared": RedisPlan("25mb"),
    "shared-basic": RedisPlan("100mb"),
}


@dataclass(frozen=True, slots=True)
class DedicatedRedisPlan:
    #: maxmemory of the instance: writes past it fail with OOM (noeviction), so a full
    #: instance says so instead of silently dropping a queue's jobs.
    maxmemory_bytes: int
    maxmemory_policy: str
    #: maxclients: one app's connection leak cannot take the agent's file descriptors.
    maxclients: int
    #: Bind to loopback (``slipway up``); a Kubernetes pod binds every address.
    loopback: bool = True


#: One redis-server per add-on: what Heroku apps expect (any key, Lua, their own queues).
#: The first is the service's default (``redis``, ``heroku-redis:mini``); sizes follow
#: Heroku's tiers of the same names. ``dedicated`` is the name the first such plan had.
DEDICATED_REDIS_PLANS: dict[str, DedicatedRedisPlan] = {
    "mini": DedicatedRedisPlan(25 * 1024 * 1024, "noeviction", 20),
    "basic": DedicatedRedisPlan(100 * 1024 * 1024, "noeviction", 100),
    "dedicated": DedicatedRedisPlan(64 * 1024 * 1024, "noeviction", 100),
}

#: The plan a bare service name gets (``redis``), when it is not the provisioner's first.
#: Redis's is a dedicated instance, never the shared server's: where no dedicated plan is
#: offered (Kubernetes today) a bare ``redis`` is refused with the choice spelled out.
DEFAULT_PLANS: dict[str, str] = {"redis": "mini"}


@dataclass(frozen=True, slots=True)
class SearchPlan:
    #: What ``addons:plans`` and the creation message say about it.
    description: str
    #: Whether what is indexed survives a restart of the instance.
    persistent: bool


#: The search service: an Elasticsearch/OpenSearch REST API per add-on. ``dev`` is
#: osmem-server, in memory only, for review apps and development (search.py).
SEARCH_PLANS: dict[str, SearchPlan] = {
    "dev": SearchPlan(
        "in-memory OpenSearch-compatible server (osmem); keeps NOTHING across restarts: "
        "reindex after one; its URL carries its credentials, on this machine's loopback only",
        persistent=False,
    ),
}
