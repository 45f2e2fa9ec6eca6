"""Add-on plans: the limits that keep one tenant from starving the others.

Numbers are for a small shared server (PostgreSQL's default max_connections is
100; a handful of review apps on ``mini`` must not exhaust it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PostgresPlan:
    #: CONNECTION LIMIT of the role: its share of the server's max_connections.
    connection_limit: int
    #: statement_timeout of the role: no query holds locks or CPU longer.
    statement_timeout: str
    #: idle_in_transaction_session_timeout: an abandoned transaction frees its locks.
    idle_in_transaction_timeout: str
    #: temp_file_limit: one sort cannot fill the server's disk.
    temp_file_limit: str


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

REDIS_PLANS: dict[str, RedisPlan] = {
    "mini": RedisPlan("25mb"),
    "basic": RedisPlan("100mb"),
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


DEDICATED_REDIS_PLANS: dict[str, DedicatedRedisPlan] = {
    "dedicated": DedicatedRedisPlan(64 * 1024 * 1024, "noeviction", 100),
}
