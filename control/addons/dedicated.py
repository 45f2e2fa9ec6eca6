"""Dedicated Redis add-ons: one redis-server per add-on, run by the agent.

A shared server cannot cap one tenant's memory (Redis has no per-user
maxmemory); a dedicated instance can. The instance is an agent app of its
own (``instances.py`` says how: defined, awaited, forgotten); this module
builds its redis-server line and its URL.

``DedicatedRedis`` wraps the shared-server provisioner (when there is one)
so ``redis:mini`` (dedicated, the default) and ``redis:shared`` are plans of
one service: shared plans go to the shared server, dedicated ones here.
Resources tell them apart by their name (``addon-`` is the agent app;
anything else is an ACL user).

A plan change (``addons:upgrade``) takes effect at once, as Heroku's does:
the agent's definition gets the new plan's line (``restart_on_change: false``:
the running process is kept, a later start by the agent takes the new line),
and the running server gets the new maxmemory and maxclients with ``CONFIG
SET`` through its own URL, so its keys, clients and URL stay. A plan whose
maxmemory is below what the instance holds is refused (Heroku's rule: the
data must fit). When the caps cannot be set live, the instance is restarted
on its new line, and the answer says so: its keys are gone and its URL (a
new port) comes with a release (docs/control.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from control.addons import Provisioned, Provisioner, ResizableProvisioner
from control.addons.instances import APP_PREFIX, READY_TIMEOUT, AgentInstances, server_definition
from control.addons.plans import DEDICATED_REDIS_PLANS, DedicatedRedisPlan
from control.errors import AddonError, Unprocessable

#: Bound on one CONFIG SET round trip to an instance on this machine.
_CONFIG_TIMEOUT = 5.0

if TYPE_CHECKING:
    from control.agent_target import AgentLink

log = logging.getLogger(__name__)

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
    """The agent app definition of one dedicated instance (pure).

    A changed line does not restart the running server: a plan change sets its caps live.
    """
    found = server_definition(redis_command(plan), {PASSWORD_VAR: password})
    found["processes"]["web"]["restart_on_change"] = False
    return found


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


class DedicatedRedis:
    service = "redis"

    def __init__(
        self,
        link: AgentLink,
        *,
        shared: Provisioner | None = None,
        plans: Mapping[str, DedicatedRedisPlan] = DEDICATED_REDIS_PLANS,
        ready_timeout: float = READY_TIMEOUT,
        config_timeout: float = _CONFIG_TIMEOUT,
    ) -> None:
        self._instances = AgentInstances(link, kind="dedicated redis", ready_timeout=ready_timeout)
        self._config_timeout = config_timeout
        self._shared = shared
        self._dedicated = dict(plans)

    @property
    def plans(self) -> Mapping[str, object]:
        # Dedicated first: the first plan is what a bare ``redis`` gets.
        shared = dict(self._shared.plans) if self._shared is not None else {}
        return {**self._dedicated, **{k: v for k, v in shared.items() if k not in self._dedicated}}

    async def create(self, plan: str) -> Provisioned:
        chosen = self._dedicated.get(plan)
        if chosen is None:
            if self._shared is None:
                raise Unprocessable(
                    f"no redis plan {plan!r} (plans: {', '.join(sorted(self.plans))})",
                    id="plan_not_found",
                )
            return await self._shared.create(plan)
        password = secrets.token_urlsafe(24)
        app, host, port = await self._instances.start(definition(chosen, password))
        log.info("dedicated redis created", extra={"resource": app, "plan": plan, "port": port})
        return Provisioned(resource=app, url=f"redis://:{password}@{host}:{port}/0")

    async def destroy(self, resource: str) -> None:
        if not resource.startswith(APP_PREFIX):
            if self._shared is None:
                raise AddonError(f"redis add-on {resource} is on a shared server not configured")
            await self._shared.destroy(resource)
            return
        await self._instances.stop(resource)
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
        await self._instances.restore(
            resource,
            definition(chosen, parts.password),
            host=parts.hostname,
            port=parts.port,
        )

    async def resize(self, resource: str, *, app: str, url: str, plan: str, to: str) -> Provisioned:
        """A dedicated instance takes ``to``'s maxmemory and maxclients while it runs (its
        definition too); a shared tenant moves between shared plans. Between the two there
        is no in-place move. Unprocessable when the instance holds more than ``to`` allows."""
        dedicated = resource.startswith(APP_PREFIX)
        if dedicated != (to in self._dedicated):
            where = "a dedicated instance" if to in self._dedicated else "the shared server"
            raise Unprocessable(
                f"redis:{to} is on {where}, this add-on is not: moving it needs a new add-on; "
                f"create one with `slipway addons:create redis:{to} --as OTHER`, move the keys "
                "over, then destroy this one",
                id="plan_change_impossible",
            )
        if not dedicated:
            shared: object = self._shared
            if not isinstance(shared, ResizableProvisioner):
                raise Unprocessable(
                    "shared redis plans differ in what they record only: nothing to move",
                    id="plan_change_impossible",
                )
            return await shared.resize(resource, app=app, url=url, plan=plan, to=to)
        chosen = self._dedicated[to]
        parts = urlsplit(url)
        password = parts.password
        if not password:
            raise AddonError(f"dedicated redis {resource} has no password in its URL")
        client = aioredis.Redis.from_url(
            url, socket_timeout=self._config_timeout, socket_connect_timeout=self._config_timeout
        )
        try:
            try:
                used = int((await client.info("memory"))["used_memory"])
            except (RedisError, OSError, KeyError, ValueError):
                used = None  # unreachable or refusing: setting the caps live fails too
            if used is not None and used > chosen.maxmemory_bytes:
                raise Unprocessable(
                    f"{resource} holds {_mb(used)} ({used} bytes); redis:{to} allows "
                    f"{_mb(chosen.maxmemory_bytes)} ({chosen.maxmemory_bytes} bytes): delete "
                    f"keys until it fits, or stay on redis:{plan}",
                    id="plan_too_small",
                )
            # The definition first: nothing is restarted, and a refusal here changes nothing.
            await self._instances.redefine(resource, definition(chosen, password))
            try:
                await client.config_set("maxmemory", chosen.maxmemory_bytes)
                await client.config_set("maxmemory-policy", chosen.maxmemory_policy)
                await client.config_set("maxclients", chosen.maxclients)
            except (RedisError, OSError) as exc:
                failed = type(exc).__name__
            else:
                log.info("dedicated redis resized", extra={"resource": resource, "plan": to})
                return Provisioned(resource=resource, url=url)
        finally:
            await client.aclose()
        log.warning(
            "dedicated redis restarted on its new plan",
            extra={"resource": resource, "plan": to, "error": failed},
        )
        was = (parts.hostname, parts.port) if parts.hostname and parts.port else None
        host, port = await self._instances.restart(resource, was=was)
        return Provisioned(
            resource=resource,
            url=f"redis://:{password}@{host}:{port}/0",
            message=(
                f"redis:{to}'s limits could not be set on the running instance ({failed}): "
                f"it was restarted on them, its keys are gone and its URL changed"
            ),
        )
