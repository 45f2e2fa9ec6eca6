"""The exporters' targets files, written from the add-on registry.

One file per service (``postgres-targets.toml``, ``redis-targets.toml``) in
the format exporters/targets.py reads. Two shapes:

With a monitoring DSN for the shared server (``server_dsn_env``: the name of
the variable holding it in the exporter's environment), the server is one
target and each Postgres add-on a database target polled through it, so
scraping never takes one of a tenant's few connections::

    [[targets]]
    name = "shared-postgres"
    dsn_env = "SLIPWAY_EXPORTER_POSTGRES_DSN"

    [[targets]]
    name = "postgres-1a2b3c4d"
    server = "shared-postgres"
    database = "slipway_0123456789ab"
    labels = { app = "shop", plan = "mini", addon = "postgres-1a2b3c4d" }
    limits = { connections = 5 }

Without one, each Postgres add-on is polled with its own credentials by file
reference (``dsn_file``, one 0600 file per add-on under ``dsn/``, never inline)
and ``scope = "database"``. Redis tenants may not run INFO (it is in
@dangerous), so Redis add-ons on a shared server are visible through the
server target only; a dedicated Redis (``redis:dedicated``) is a server
target of its own, polled with its own URL by file reference. A dedicated
Postgres (a StatefulSet on Kubernetes, ``addon-`` resource) is polled the same
way, never through the shared server it is not on, with its plan's volume as
the size limit. Files are
replaced atomically (write, rename), so an exporter reloading mid-write
never reads half a file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from control.addons.instances import APP_PREFIX
from control.addons.kube_dedicated import KUBE_PLANS, Kind, quantity_bytes
from control.addons.plans import DEDICATED_REDIS_PLANS, POSTGRES_PLANS
from control.models import Addon

SERVICES = ("postgres", "redis")


@dataclass(frozen=True, slots=True)
class Servers:
    """Names of the variables holding monitoring DSNs in the exporters' environment."""

    postgres_dsn_env: str | None = None
    redis_dsn_env: str | None = None
    #: Dedicated add-ons are StatefulSets on Kubernetes (their limits are KUBE_PLANS'),
    #: not the local agent's instances.
    kubernetes: bool = False

    def dsn_env(self, service: str) -> str | None:
        return self.postgres_dsn_env if service == "postgres" else self.redis_dsn_env


def _toml(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(value)


def _table(pairs: Iterable[tuple[str, str | int]]) -> str:
    return ", ".join(f"{k} = {v if isinstance(v, int) else _toml(v)}" for k, v in pairs)


def _labels(addon: Addon) -> str:
    return _table((("app", addon.app), ("plan", addon.plan), ("addon", addon.name)))


def _own_dsn(addon: Addon, dsn_dir: Path | None) -> str:
    """Where a target polled with the add-on's own URL finds it: its 0600 file, or inline
    (``dsn_dir`` None: the whole file is a Kubernetes Secret, ``kube_targets.py``)."""
    if dsn_dir is None:
        return f"dsn = {_toml(addon.url)}\n"
    return f"dsn_file = {_toml(str(dsn_dir / addon.name))}\n"


def render(
    addons: Iterable[Addon], *, service: str, dsn_dir: Path | None, servers: Servers = Servers()
) -> str:
    """The targets file for one service (pure); ``dsn_dir`` None puts each DSN inline."""
    mine = sorted((a for a in addons if a.service == service), key=lambda a: a.name)
    blocks = ["# Written by the slipway control plane; changes here are overwritten.\n"]
    server_env = servers.dsn_env(service)
    server_name = f"shared-{service}"
    if server_env is not None:
        blocks.append(
            f"[[targets]]\nname = {_toml(server_name)}\ndsn_env = {_toml(server_env)}\n"
            'labels = { cluster = "shared" }\n'
        )
    for addon in mine:
        if service == "postgres" and addon.resource.startswith(APP_PREFIX):
            # A server of its own: polled with its own password, its own database only.
            kube = KUBE_PLANS[Kind.POSTGRES].get(addon.plan)
            limits = (
                f"limits = {{ {_table([('size_bytes', quantity_bytes(kube.storage))])} }}\n"
                if kube is not None
                else ""
            )
            blocks.append(
                f"[[targets]]\nname = {_toml(addon.name)}\n"
                f'{_own_dsn(addon, dsn_dir)}scope = "database"\n'
                f"labels = {{ {_labels(addon)} }}\n{limits}"
            )
        elif service == "postgres":
            plan = POSTGRES_PLANS.get(addon.plan)
            limits = (
                f"limits = {{ {_table([('connections', plan.connection_limit)])} }}\n"
                if plan is not None
                else ""
            )
            if server_env is not None:
                where = f"server = {_toml(server_name)}\ndatabase = {_toml(addon.resource)}\n"
            else:
                where = f'{_own_dsn(addon, dsn_dir)}scope = "database"\n'
            blocks.append(
                f"[[targets]]\nname = {_toml(addon.name)}\n{where}"
                f"labels = {{ {_labels(addon)} }}\n{limits}"
            )
        elif addon.resource.startswith(APP_PREFIX):
            # A dedicated instance is a server of its own, polled with its own password.
            pairs: list[tuple[str, str | int]] = []
            if servers.kubernetes:
                kube = KUBE_PLANS[Kind.REDIS].get(addon.plan)
                if kube is not None and kube.server_memory_bytes:
                    pairs = [("memory_bytes", kube.server_memory_bytes)]
            elif (dedicated := DEDICATED_REDIS_PLANS.get(addon.plan)) is not None:
                pairs = [
                    ("memory_bytes", dedicated.maxmemory_bytes),
                    ("connections", dedicated.maxclients),
                ]
            limits = f"limits = {{ {_table(pairs)} }}\n" if pairs else ""
            blocks.append(
                f"[[targets]]\nname = {_toml(addon.name)}\n{_own_dsn(addon, dsn_dir)}"
                f"labels = {{ {_labels(addon)} }}\n{limits}"
            )
        # Shared-server Redis tenants cannot run INFO: the shared server's target covers them.
    return "\n".join(blocks)


def _replace(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_sync(directory: Path, addons: list[Addon], servers: Servers = Servers()) -> None:
    dsn_dir = directory / "dsn"
    dsn_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # DSN files only where a target refers to one: add-ons polled with their own password.
    wanted = {
        a.name for a in addons if a.service == "postgres" and servers.postgres_dsn_env is None
    } | {
        a.name
        for a in addons
        if a.service in SERVICES and a.resource.startswith(APP_PREFIX)  # dedicated instances
    }
    for addon in addons:
        if addon.name in wanted:
            _replace(dsn_dir / addon.name, addon.url, 0o600)
    for stale in dsn_dir.iterdir():
        if stale.name not in wanted and not stale.name.startswith("."):
            stale.unlink()
    for service in SERVICES:
        text = render(addons, service=service, dsn_dir=dsn_dir, servers=servers)
        _replace(directory / f"{service}-targets.toml", text, 0o644)


async def write(directory: Path, addons: list[Addon], servers: Servers = Servers()) -> None:
    await asyncio.to_thread(write_sync, directory, addons, servers)
