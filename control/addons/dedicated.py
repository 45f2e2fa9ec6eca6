"""Dedicated Redis add-ons: one redis-server per add-on, run by the agent.

A shared server cannot cap one tenant's memory (Redis has no per-user
maxmemory); a dedicated instance can. The control plane does not start it:
it hands the agent an app definition named after the add-on
(``addon-1a2b3c4d5e6f``) whose one ``web`` process is the redis-server. The
``web`` type is what gets a ``$PORT`` and a TCP readiness probe from the
runtime; the definition has no hosts, so the router never routes to it, and
``never_sleep`` keeps it up. The add-on's URL is where the agent says the
instance listens once it is ready. Destroying the add-on forgets the
definition, so the agent stops the process.

``DedicatedRedis`` wraps the shared-server provisioner (when there is one)
so ``redis:mini`` and ``redis:dedicated`` are plans of one service: shared
plans go to the shared server, ``dedicated`` here. Resources tell them
apart by their name (``addon-`` is the agent app; anything else is an ACL
user).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from control.addons import Provisioned, Provisioner
from control.addons.plans import DEDICATED_REDIS_PLANS, DedicatedRedisPlan
from control.errors import AddonError, ControlError, Unprocessable

if TYPE_CHECKING:
    from control.agent_target import AgentLink

log = logging.getLogger(__name__)

#: Agent app names of dedicated add-ons start with this.
APP_PREFIX = "addon-"
#: Bound on waiting for the agent to report the instance ready.
READY_TIMEOUT = 20.0
_POLL = 0.05


#: The variable the password reaches redis-server through (never its argv: ``ps`` shows that).
PASSWORD_VAR = "REDIS_PASSWORD"


def redis_command(plan: DedicatedRedisPlan) -> str:
    """The line the agent runs (pure): memory capped, no disk, password read from stdin.

    ``redis-server -`` reads config lines from stdin before its arguments, so the
    password (``token_urlsafe``: no spaces or quotes) never appears in a process list.
    """
    return " ".join(
        [
            f"printf 'requirepass %s\\n' \"${PASSWORD_VAR}\" |",
            "redis-server -",
            "--port $PORT",
            "--bind 127.0.0.1" if plan.loopback else "--bind 0.0.0.0",
            f"--maxmemory {plan.maxmemory_bytes}",
            f"--maxmemory-policy {plan.maxmemory_policy}",
            f"--maxclients {plan.maxclients}",
            # No RDB/AOF: the instance holds a cache or queue; losing it on restart is the
            # documented trade (docs/control.md), and it never writes to the agent's disk.
            "--save ''",
            "--appendonly no",
            "--protected-mode no",
        ]
    )


def definition(plan: DedicatedRedisPlan, password: str) -> dict[str, Any]:
    """The agent app definition of one dedicated instance (pure)."""
    return {
        "hosts": [],
        "env": {PASSWORD_VAR: password},
        "processes": {"web": {"command": redis_command(plan)}},
        "formation": {"web": 1},
        "policy": {"never_sleep": True, "min_scale": 1, "max_scale": 1},
    }


class DedicatedRedis:
    service = "redis"

    def __init__(
        self,
        link: AgentLink,
        *,
        shared: Provisioner | None = None,
        plans: Mapping[str, DedicatedRedisPlan] = DEDICATED_REDIS_PLANS,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self._link = link
        self._shared = shared
        self._dedicated = dict(plans)
        self._ready_timeout = ready_timeout

    @property
    def plans(self) -> Mapping[str, object]:
        shared = dict(self._shared.plans) if self._shared is not None else {}
        return {**shared, **self._dedicated}

    async def create(self, plan: str) -> Provisioned:
        chosen = self._dedicated.get(plan)
        if chosen is None:
            if self._shared is None:
                raise Unprocessable(
                    f"no redis plan {plan!r} (plans: {', '.join(sorted(self.plans))})",
                    id="plan_not_found",
                )
            return await self._shared.create(plan)
        app = f"{APP_PREFIX}{secrets.token_hex(6)}"
        password = secrets.token_urlsafe(24)
        try:
            await self._link.define(app, definition(chosen, password))
            host, port = await self._ready(app)
        except (ControlError, AddonError) as exc:
            await self._link.forget(app)
            raise AddonError(f"creating dedicated redis {app} failed: {exc}") from exc
        log.info("dedicated redis created", extra={"resource": app, "plan": plan, "port": port})
        return Provisioned(resource=app, url=f"redis://:{password}@{host}:{port}/0")

    async def _ready(self, app: str) -> tuple[str, int]:
        """Where the agent says the instance listens, once ready; AddonError past the bound."""
        try:
            async with asyncio.timeout(self._ready_timeout):
                while True:
                    status = await self._link.status(app)
                    for view in (status or {}).get("processes", {}).values():
                        for instance in view["instances"]:
                            if instance["ready"] and instance["host"] and instance["port"]:
                                return str(instance["host"]), int(instance["port"])
                    await asyncio.sleep(_POLL)
        except TimeoutError:
            raise AddonError(f"not ready within {self._ready_timeout:g} s") from None

    async def destroy(self, resource: str) -> None:
        if not resource.startswith(APP_PREFIX):
            if self._shared is None:
                raise AddonError(f"redis add-on {resource} is on a shared server not configured")
            await self._shared.destroy(resource)
            return
        await self._link.forget(resource)
        log.info("dedicated redis destroyed", extra={"resource": resource})

    async def ensure(self, resource: str, *, url: str, plan: str) -> None:
        """Define the instance again if the agent lost it (its data is gone: no persistence).

        Raises AddonError when the instance now listens elsewhere than the URL says.
        """
        if not resource.startswith(APP_PREFIX):
            if self._shared is not None:
                await self._shared.ensure(resource, url=url, plan=plan)
            return
        chosen = self._dedicated.get(plan)
        parts = urlsplit(url)
        if chosen is None or not parts.password:
            raise AddonError(f"dedicated redis {resource} has no plan or password")
        if await self._link.status(resource) is None:
            await self._link.define(resource, definition(chosen, parts.password))
        host, port = await self._ready(resource)
        if (host, port) != (parts.hostname, parts.port):
            raise AddonError(
                f"dedicated redis {resource} listens on {host}:{port}, its URL says "
                f"{parts.hostname}:{parts.port}; destroy and create the add-on again"
            )
