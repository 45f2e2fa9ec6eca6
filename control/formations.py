"""Formation (process types, quantities, idle policy) and the dynos that run it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.apps import WEB
from control.errors import NotFound
from control.models import Formation
from control.releaser import Releaser
from control.releasing import Dyno
from control.requests import FormationChange
from control.rules import apply_formation_change, check_process_ceiling
from control.settings import Limits
from control.store.db import Store


class Formations:
    def __init__(
        self,
        *,
        store: Store,
        releaser: Releaser,
        limits: Limits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.releaser = releaser
        self.limits = limits
        self._clock = clock

    async def formation(self, name: str) -> list[Formation]:
        async with self.store.tx(write=False) as tx:
            return await tx.list_formation(await tx.get_app(name))

    async def update_formation(
        self, name: str, changes: Sequence[FormationChange], *, actor: str, admin: bool = False
    ) -> list[Formation]:
        """Apply ``changes``; past the process ceiling of the token kind (``admin``), 422."""
        now = self._clock()
        changed: list[Formation] = []
        async with self.store.tx() as tx:
            app = await tx.get_app(name, lock=True)
            current = {f.type: f for f in await tx.list_formation(app)}
            before = list(current.values())
            for change in changes:
                item = current.get(change.type)
                if item is None:
                    raise NotFound(
                        f"{name} has no process type {change.type!r}", id="process_not_found"
                    )
                new = apply_formation_change(item, change, now)
                current[new.type] = new
                changed.append(new)
            ceiling, variable = self.limits.processes(admin=admin)
            check_process_ceiling(
                name, before, current.values(), ceiling=ceiling, variable=variable
            )
            for new in changed:
                await tx.put_formation(app, new)
            await tx.record(
                actor=actor,
                action="formation.update",
                app=name,
                detail={"updates": [c.given() for c in changes]},
                now=now,
            )
            result = sorted(current.values(), key=lambda f: f.type)
        await self.releaser.scale(app, changed)
        return result

    async def dynos(self, name: str) -> list[Dyno]:
        async with self.store.tx(write=False) as tx:
            await tx.get_app(name)
        return await self.releaser.target.dynos(name)

    async def autoscale(self, name: str) -> dict[str, Any]:
        """Web's autoscaling: the agent's state and recent decisions when it runs the app,
        else the formation's settings with no decisions (``GET /apps/{app}/autoscale``)."""
        async with self.store.tx(write=False) as tx:
            items = await tx.list_formation(await tx.get_app(name))
        web = next((f for f in items if f.type == WEB), None)
        found = await self.releaser.target.autoscale(name)
        if found is not None:
            return {**found, "running": True}
        return {
            "app": name,
            "process": WEB,
            "enabled": bool(web and web.autoscale),
            "running": False,
            "settings": web.autoscale if web else None,
            "min": web.min_scale if web else 0,
            "max": web.max_scale if web else 0,
            "desired": 0,
            "panicking": False,
            "avg_concurrency": None,
            "panic_concurrency": None,
            "decisions": [],
        }

    async def restart(self, name: str, process: str | None, *, actor: str) -> None:
        async with self.store.tx() as tx:
            app = await tx.get_app(name)
            types = {f.type for f in await tx.list_formation(app)}
            if process is not None and process not in types:
                raise NotFound(f"{name} has no process type {process!r}", id="process_not_found")
            await tx.record(
                actor=actor,
                action="dyno.restart",
                app=name,
                detail={"process": process or "all"},
                now=self._clock(),
            )
        await self.releaser.target.restart(name, process)
