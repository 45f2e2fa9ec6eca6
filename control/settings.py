"""Settings of the control plane, built once at the entry point from flags and ``SLIPWAY_*``."""

from __future__ import annotations

from dataclasses import dataclass

#: The embedded default: one file beside where slipway runs.
DEFAULT_DB_URL = "sqlite+aiosqlite:///slipway.db"


@dataclass(frozen=True, slots=True)
class AddonServers:
    """The shared servers add-ons are carved out of."""

    #: Admin DSN of the shared PostgreSQL (a superuser or CREATEROLE+CREATEDB role);
    #: None disables the postgres add-on.
    postgres_admin_dsn: str | None = None
    #: Host and port apps use to reach that server (may differ from the admin's view).
    postgres_public_host: str = "127.0.0.1"
    postgres_public_port: int = 5432
    #: Admin URL of the shared Redis (a user allowed ACL SETUSER/DELUSER);
    #: None disables the redis add-on.
    redis_admin_url: str | None = None
    redis_public_host: str = "127.0.0.1"
    redis_public_port: int = 6379


@dataclass(frozen=True, slots=True)
class ControlSettings:
    #: SQLAlchemy async URL of the state store: ``sqlite+aiosqlite:///path`` on one
    #: machine, ``postgresql+psycopg://...`` on a cluster.
    db_url: str = DEFAULT_DB_URL
    host: str = "127.0.0.1"
    #: 8000: the conventional port of an HTTP API behind an ingress.
    port: int = 8000
    #: An admin token to make sure exists at start (its hash is stored, never the token);
    #: how the first operator gets in. None: mint one with ``slipway tokens:create``.
    bootstrap_admin_token: str | None = None
    addons: AddonServers = AddonServers()
    #: Every app answers at ``{app}.{app_domain}`` (``localhost`` under ``slipway up``).
    app_domain: str | None = None
    #: The agent that runs the apps (``http://agent:9081``); None: releases are recorded only.
    agent_url: str | None = None
    #: Directory where the exporters' targets files (and the DSN files they refer to)
    #: are rewritten after every add-on change. None: not written.
    exporter_targets_dir: str | None = None
    #: Names of the variables that hold monitoring DSNs of the shared servers in the
    #: exporters' environment; with one, add-ons are polled through the server target.
    exporter_postgres_dsn_env: str | None = None
    exporter_redis_dsn_env: str | None = None
    #: Seconds a ``release:`` command may run before the release fails.
    release_timeout: float = 300.0
