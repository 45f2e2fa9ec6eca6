"""Add-on instances run by the agent: one process per add-on, defined, awaited, forgotten.

A dedicated add-on (a redis-server, an osmem-server) is not started by the
control plane: it hands the agent an app definition named after the add-on
(``addon-1a2b3c4d5e6f``) whose one ``web`` process is the server. The ``web``
type is what gets a ``$PORT`` and a TCP readiness probe from the runtime;
the definition has no hosts, so the router never routes to it, and
``never_sleep`` keeps it up. The add-on's URL is where the agent says the
instance listens once it is ready; destroying the add-on forgets the
definition, so the agent stops the process. ``dedicated.py`` (Redis) and
``search.py`` share this; each builds its own definition.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from control.errors import AddonError, ControlError

if TYPE_CHECKING:
    from control.agent_target import AgentLink

#: Agent app names of dedicated add-ons start with this.
APP_PREFIX = "addon-"
#: Bound on waiting for the agent to report the instance ready.
READY_TIMEOUT = 20.0
_POLL = 0.05


def server_definition(command: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The agent app definition of one instance running ``command`` (pure)."""
    return {
        "hosts": [],
        "env": dict(env or {}),
        "processes": {"web": {"command": command}},
        "formation": {"web": 1},
        "policy": {"never_sleep": True, "min_scale": 1, "max_scale": 1},
    }


class AgentInstances:
    """Start, await, restore and stop add-on instances through the agent."""

    def __init__(self, link: AgentLink, *, kind: str, ready_timeout: float = READY_TIMEOUT):
        self._link = link
        #: What the errors call the instance ("dedicated redis", "search").
        self._kind = kind
        self._ready_timeout = ready_timeout

    async def start(self, definition: dict[str, Any]) -> tuple[str, str, int]:
        """A new instance: its agent app name, host and port once ready.

        Raises AddonError (the definition forgotten) when it is not ready in time.
        """
        app = f"{APP_PREFIX}{secrets.token_hex(6)}"
        try:
            await self._link.define(app, definition)
            host, port = await self.ready(app)
        except (ControlError, AddonError) as exc:
            await self._link.forget(app)
            raise AddonError(f"creating {self._kind} {app} failed: {exc}") from exc
        return app, host, port

    async def ready(
        self, app: str, *, other_than: tuple[str, int] | None = None
    ) -> tuple[str, int]:
        """Where the agent says the instance listens, once ready (elsewhere than
        ``other_than``: a restarted one, not the status of the one it replaced);
        AddonError past the bound."""
        try:
            async with asyncio.timeout(self._ready_timeout):
                while True:
                    status = await self._link.status(app)
                    for view in (status or {}).get("processes", {}).values():
                        for instance in view["instances"]:
                            if instance["ready"] and instance["host"] and instance["port"]:
                                found = str(instance["host"]), int(instance["port"])
                                if found != other_than:
                                    return found
                    await asyncio.sleep(_POLL)
        except TimeoutError:
            raise AddonError(f"not ready within {self._ready_timeout:g} s") from None

    async def revive(self, app: str, definition: dict[str, Any]) -> tuple[str, int]:
        """Define the instance again if the agent lost it; where it listens, once ready."""
        if await self._link.status(app) is None:
            await self._link.define(app, definition)
        return await self.ready(app)

    async def restore(
        self, app: str, definition: dict[str, Any], *, host: str | None, port: int | None
    ) -> None:
        """Define the instance again if the agent lost it (a restart of ``slipway up``).

        Raises AddonError when it now listens elsewhere than ``host:port`` (the URL the
        app holds), since the app cannot reach it there.
        """
        found = await self.revive(app, definition)
        if found != (host, port):
            raise AddonError(
                f"{self._kind} {app} listens on {found[0]}:{found[1]}, its URL says "
                f"{host}:{port}; destroy and create the add-on again"
            )

    async def redefine(self, app: str, definition: dict[str, Any]) -> None:
        """The agent's definition of a running instance becomes ``definition`` (restarting
        it unless the definition says ``restart_on_change: false``)."""
        try:
            await self._link.define(app, definition)
        except ControlError as exc:
            raise AddonError(f"redefining {self._kind} {app} failed: {exc}") from exc

    async def restart(self, app: str, *, was: tuple[str, int] | None) -> tuple[str, int]:
        """A fresh process of the instance on its current definition; where it listens once
        ready (a new port: the runtime picks one per start, never ``was``, the old one's)."""
        try:
            await self._link.restart(app, "web")
        except ControlError as exc:
            raise AddonError(f"restarting {self._kind} {app} failed: {exc}") from exc
        return await self.ready(app, other_than=was)

    async def stop(self, app: str) -> None:
        await self._link.forget(app)
