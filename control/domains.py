"""Host names of an app: ``APP.{app_domain}`` and custom domains, learnt by the running release."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from control.models import App, Domain
from control.releaser import Releaser
from control.rules import check_custom_domain
from control.store.db import Store
from control.store.queries import Tx

T = TypeVar("T")


class Domains:
    def __init__(
        self,
        *,
        store: Store,
        releaser: Releaser,
        clock: Callable[[], float] = time.time,
        app_domain: str | None = None,
        reserved_domains: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.releaser = releaser
        self._clock = clock
        #: Every app answers at ``{name}.{app_domain}`` (Heroku's herokuapp.com), if set.
        self.app_domain = app_domain
        #: Domains whose names the platform gives out (the app domain, review apps'):
        #: an app token adds none under them but its own ``{name}.{app_domain}``'s.
        self.reserved_domains = tuple(reserved_domains)

    async def list_domains(self, name: str) -> list[Domain]:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            default = (
                [Domain(app=name, hostname=f"{name}.{self.app_domain}", created_at=app.created_at)]
                if self.app_domain
                else []
            )
            return default + await tx.list_domains(app)

    async def add_domain(
        self, name: str, hostname: str, *, actor: str, tenant: bool = False
    ) -> Domain:
        """Route ``hostname`` (valid, lower-cased) to the app too; the release learns it at once.

        ``tenant``: asked with an app token, so the platform's names are refused.
        """
        check_custom_domain(
            hostname,
            app=name,
            app_domain=self.app_domain,
            reserved=self.reserved_domains,
            tenant=tenant,
        )
        return await self._change_domains(
            name,
            "domain.create",
            hostname,
            lambda tx, app, now: tx.add_domain(app, hostname, now=now),
            actor=actor,
        )

    async def remove_domain(self, name: str, hostname: str, *, actor: str) -> None:
        await self._change_domains(
            name,
            "domain.delete",
            hostname,
            lambda tx, app, _: tx.remove_domain(app, hostname.lower()),
            actor=actor,
        )

    async def _change_domains(
        self,
        name: str,
        action: str,
        hostname: str,
        change: Callable[[Tx, App, float], Awaitable[T]],
        *,
        actor: str,
    ) -> T:
        """One domain change and its audit entry, then the running release learns the hosts."""
        now = self._clock()
        async with self.store.tx() as tx:
            app = await tx.get_app(name, lock=True)
            result = await change(tx, app, now)
            await tx.record(
                actor=actor, action=action, app=name, detail={"hostname": hostname}, now=now
            )
        await self.releaser.redeploy(app)
        return result
