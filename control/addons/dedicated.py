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

A plan change (``addons:upgrade``) moves a running instance's maxmemory and
maxclients with ``CONFIG SET``, through its own URL: no restart, the keys
kept, the URL unchanged. The agent's definition keeps the old line until
the instance is defined again (``ensure`` at the next start of ``slipway up``
builds it from the recorded plan); an instance restarted by the agent in
between starts empty under the plan it was created with (docs/control.md).
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
    """The agent app definition of one dedicated instance (pure)."""
    return server_definition(redis_command(plan), {PASSWORD_VAR: password})


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
        self._instances = AgentInstances(link, kind="dedicated redis", ready_timeout=ready_timeout)
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

    async def resize(self, resource: str, *, app: str, url: str, plan: str, to: str) -> str:
        """A dedicated instance takes ``to``'s maxmemory and maxclients while it runs; a
        shared tenant moves between shared plans. Between the two there is no in-place move."""
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
        client = aioredis.Redis.from_url(
            url, socket_timeout=_CONFIG_TIMEOUT, socket_connect_timeout=_CONFIG_TIMEOUT
        )
        try:
            await client.config_set("maxmemory", chosen.maxmemory_bytes)
            await client.config_set("maxmemory-policy", chosen.maxmemory_policy)
            await client.config_set("maxclients", chosen.maxclients)
        except (RedisError, OSError) as exc:
            raise AddonError(
                f"resizing dedicated redis {resource} to {to} failed: {type(exc).__name__}"
            ) from exc
        finally:
            await client.aclose()
        log.info("dedicated redis resized", extra={"resource": resource, "plan": to})
        return url
