"""Apps: create, list, rename, delete; each app starts with release v1, which runs nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from control.attachments import Addons
from control.errors import Conflict
from control.models import App, ReleaseStatus
from control.releaser import Releaser
from control.store.db import Store
from control.store.queries import Tx
from control.tokens import Tokens


class Apps:
    def __init__(
        self,
        *,
        store: Store,
        releaser: Releaser,
        tokens: Tokens,
        addons: Addons,
        clock: Callable[[], float] = time.time,
        app_domain: str | None = None,
    ) -> None:
        self.store = store
        self.releaser = releaser
        self.tokens = tokens
        self.addons = addons
        self.app_domain = app_domain
        self._clock = clock

    async def create_app(self, name: str, *, actor: str) -> App:
        now = self._clock()
        async with self.store.tx() as tx:
            await self._default_host_free(tx, name)
            app = await tx.create_app(name, now=now)
            await tx.add_release(
                app,
                description="Initial release",
                artifact=None,
                procfile={},
                config={},
                addon_env={},
                actor=actor,
                now=now,
                status=ReleaseStatus.SUCCEEDED,
            )
            await tx.finish_release(app, 1, ReleaseStatus.SUCCEEDED, output="", now=now)
            await tx.record(actor=actor, action="app.create", app=name, detail={}, now=now)
            return await tx.get_app(name)

    async def list_apps(
        self,
        *,
        after: str | None,
        limit: int,
        only: str | None = None,
        among: Collection[str] | None = None,
    ) -> list[App]:
        """Apps by name after ``after``: all, ``only`` one, or those ``among`` some names
        (a collaborator's, a handful: one lookup each)."""
        if only is not None:
            among = [only]
        async with self.store.tx(write=False) as tx:
            if among is not None:
                found = []
                for name in sorted(n for n in among if after is None or n > after)[:limit]:
                    app = await tx.find_app(name)
                    if app is not None:
                        found.append(app)
                return found
            return await tx.list_apps(after=after, limit=limit)

    async def get_app(self, name: str) -> App:
        async with self.store.tx(write=False) as tx:
            return await tx.get_app(name)

    async def rename_app(self, name: str, new_name: str, *, actor: str) -> App:
        now = self._clock()
        async with self.store.tx() as tx:
            app = await tx.get_app(name, lock=True)
            await self._default_host_free(tx, new_name)
            renamed = await tx.rename_app(app, new_name, now=now)
            await tx.record(
                actor=actor, action="app.rename", app=new_name, detail={"from": name}, now=now
            )
        self.tokens.forget_all()  # app tokens name their app
        if renamed.current_release is not None and name != new_name:
            await self.releaser.move(renamed, old_name=name)
        return renamed

    async def set_maintenance(self, name: str, on: bool, *, actor: str) -> App:
        """Turn maintenance mode on or off: the router answers H80 while on. No new release:
        the same processes keep running, only the route changes (as on Heroku)."""
        now = self._clock()
        async with self.store.tx() as tx:
            app = await tx.get_app(name, lock=True)
            if app.maintenance == on:
                return app
            app = await tx.set_maintenance(app, on, now=now)
            await tx.record(
                actor=actor, action="app.maintenance", app=name, detail={"on": on}, now=now
            )
        await self.releaser.redeploy(app)
        return app

    async def _default_host_free(self, tx: Tx, name: str) -> None:
        """Two apps never answer at one host: ``{name}.{app_domain}`` may be another's domain."""
        if not self.app_domain:
            return
        host = f"{name}.{self.app_domain}"
        owner = await tx.domain_owner(host)
        if owner is not None:
            raise Conflict(
                f"{host} is a custom domain of {owner}; remove it there, or pick another name",
                id="domain_taken",
            )

    async def delete_app(self, name: str, *, actor: str) -> App:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            addons = await tx.list_addons(app)
        async with self.releaser.lock(app):
            for addon in addons:
                await self.addons.destroying(addon)
                await self.addons.provisioner(addon.service).destroy(addon.resource)
            await self.releaser.target.forget(name)
            now = self._clock()
            async with self.store.tx() as tx:
                await tx.delete_app(app)
                await tx.record(
                    actor=actor,
                    action="app.delete",
                    app=name,
                    detail={"addons": [a.name for a in addons]},
                    now=now,
                )
        self.tokens.forget_all()  # its tokens are gone
        self.releaser.forget(app)
        await self.addons.write_targets()
        return app
