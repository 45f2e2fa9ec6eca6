"""What the control plane does, independent of HTTP: the facade over its services.

The API, the CLI, review apps and ``slipway up`` call ``Control``; it hands
each call to the service that owns the concept, one module each:

- ``releaser``: the one path that makes a release, and the per-app locks
- ``apps``, ``domains``, ``config_vars``, ``releases``, ``formations``,
  ``attachments`` (add-ons), ``tokens``

Every method takes typed values: the HTTP edge (``control/api/parse.py``)
parsed and checked the body once, with the rules of ``control/rules.py``.
Each change commits together with its audit entry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from control import auth
from control.addons import Provisioner
from control.apps import Apps
from control.attachments import Addons, TargetsWriter
from control.builds.model import LogSink
from control.config_vars import ConfigVars
from control.domains import Domains
from control.formations import Formations
from control.models import Addon, App, AuditEntry, Domain, Formation, Release, Token
from control.releaser import Releaser
from control.releases import Releases
from control.releasing import Dyno, PhaseResult, ReleaseTarget
from control.requests import Deploy, FormationChange
from control.settings import Limits
from control.store.db import Store
from control.tokens import TOKEN_CACHE_MAX, TOKEN_CACHE_TTL, Tokens
from kit.ptyspawn import PtyChild

__all__ = ["TOKEN_CACHE_MAX", "TOKEN_CACHE_TTL", "Control", "TargetsWriter"]

log = logging.getLogger(__name__)


class Control:
    def __init__(
        self,
        *,
        store: Store,
        target: ReleaseTarget,
        provisioners: Mapping[str, Provisioner] | None = None,
        targets_writer: TargetsWriter | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        app_domain: str | None = None,
        reserved_domains: Sequence[str] = (),
        limits: Limits | None = None,
        app_tokens_refused: str | None = None,
        sink: LogSink | None = None,
    ) -> None:
        """``sink``: the logs service (or a console), for the release phase's lines."""
        self.store = store
        #: Every app answers at ``{name}.{app_domain}`` (Heroku's herokuapp.com), if set.
        self.app_domain = app_domain
        #: Domains whose names the platform gives out (the app domain, review apps'):
        #: an app token adds none under them but its own ``{name}.{app_domain}``'s.
        self.reserved_domains = tuple(d for d in (app_domain, *reserved_domains) if d)
        self.limits = limits or Limits()
        self.target = target
        self.provisioners = dict(provisioners or {})
        self._clock = clock
        self.releaser = Releaser(
            store=store, target=target, clock=clock, app_domain=app_domain, sink=sink
        )
        self.tokens = Tokens(
            store=store,
            clock=clock,
            monotonic=monotonic,
            app_tokens_refused=app_tokens_refused,
        )
        self.addons = Addons(
            store=store,
            releaser=self.releaser,
            provisioners=self.provisioners,
            targets_writer=targets_writer,
            clock=clock,
        )
        self.apps = Apps(
            store=store,
            releaser=self.releaser,
            tokens=self.tokens,
            addons=self.addons,
            clock=clock,
            app_domain=app_domain,
        )
        self.domains = Domains(
            store=store,
            releaser=self.releaser,
            clock=clock,
            app_domain=app_domain,
            reserved_domains=self.reserved_domains,
        )
        self.config_vars = ConfigVars(store=store, releaser=self.releaser)
        self.releases = Releases(store=store, releaser=self.releaser, clock=clock)
        self.formations = Formations(
            store=store, releaser=self.releaser, limits=self.limits, clock=clock
        )

    async def start(
        self,
        *,
        bootstrap_admin_token: str | None = None,
        resume: bool = True,
        fail_builds: bool = True,
    ) -> None:
        """Migrate, recover from a crash, and bring the runtime back to the current releases.

        ``fail_builds=False`` leaves pending builds to ``Builds.resume`` (a builder whose
        builds outlive this process follows them again).
        """
        await self.store.migrate()
        async with self.store.tx() as tx:
            interrupted = await tx.fail_interrupted_releases(now=self._clock())
            builds = await tx.fail_interrupted_builds(now=self._clock()) if fail_builds else 0
            if bootstrap_admin_token is not None:
                digest = auth.digest(bootstrap_admin_token)
                if await tx.find_token(digest) is None:
                    await tx.add_token(
                        name="bootstrap", digest=digest, admin=True, app=None, now=self._clock()
                    )
        if interrupted:
            log.warning(
                "releases interrupted by a restart marked failed", extra={"count": interrupted}
            )
        if builds:
            log.warning("builds interrupted by a restart marked failed", extra={"count": builds})
        await self._write_targets()
        await self._ensure_addons()
        if resume:
            await self.resume()

    async def _write_targets(self) -> None:
        await self.addons.write_targets()

    async def _ensure_addons(self) -> None:
        await self.addons.ensure()

    async def resume(self) -> None:
        """Hand every app's current release to the target again (after a restart)."""
        after: str | None = None
        while True:
            page = await self.list_apps(after=after, limit=200)
            for app in page:
                try:
                    await self.releaser.redeploy(app)
                except Exception as exc:
                    # One app that cannot start must not keep the others (or the API) down.
                    log.error("resuming an app failed", extra={"app": app.name, "error": str(exc)})
            if len(page) < 200:
                return
            after = page[-1].name

    # -- auth -----------------------------------------------------------------

    async def authenticate(self, secret: str) -> auth.Principal:
        return await self.tokens.authenticate(secret)

    async def create_token(
        self, *, name: str, admin: bool, app: str | None, actor: str
    ) -> tuple[Token, str]:
        return await self.tokens.create_token(name=name, admin=admin, app=app, actor=actor)

    async def delete_token(self, token_id: str, *, actor: str) -> None:
        await self.tokens.delete_token(token_id, actor=actor)

    # -- apps -----------------------------------------------------------------

    async def create_app(self, name: str, *, actor: str) -> App:
        return await self.apps.create_app(name, actor=actor)

    async def list_apps(
        self,
        *,
        after: str | None,
        limit: int,
        only: str | None = None,
        among: Collection[str] | None = None,
    ) -> list[App]:
        return await self.apps.list_apps(after=after, limit=limit, only=only, among=among)

    async def get_app(self, name: str) -> App:
        return await self.apps.get_app(name)

    async def rename_app(self, name: str, new_name: str, *, actor: str) -> App:
        return await self.apps.rename_app(name, new_name, actor=actor)

    async def set_maintenance(self, name: str, on: bool, *, actor: str) -> App:
        return await self.apps.set_maintenance(name, on, actor=actor)

    async def delete_app(self, name: str, *, actor: str) -> App:
        return await self.apps.delete_app(name, actor=actor)

    # -- config vars ----------------------------------------------------------

    async def config(self, name: str) -> dict[str, str]:
        return await self.config_vars.config(name)

    async def update_config(
        self, name: str, changes: Mapping[str, str | None], *, actor: str
    ) -> tuple[dict[str, str], Release]:
        return await self.config_vars.update_config(name, changes, actor=actor)

    # -- releases -------------------------------------------------------------

    async def deploy(self, name: str, request: Deploy, *, actor: str, tenant: bool) -> Release:
        return await self.releases.deploy(name, request, actor=actor, tenant=tenant)

    async def rollback(self, name: str, version: int, *, actor: str) -> Release:
        return await self.releases.rollback(name, version, actor=actor)

    async def release_build(
        self,
        name: str,
        *,
        build_id: str,
        artifact: str,
        procfile: Mapping[str, str],
        description: str,
        actor: str,
    ) -> Release:
        return await self.releases.release_build(
            name,
            build_id=build_id,
            artifact=artifact,
            procfile=procfile,
            description=description,
            actor=actor,
        )

    async def run_once(self, name: str, command: str, *, reason: str, actor: str) -> PhaseResult:
        return await self.releases.run_once(name, command, reason=reason, actor=actor)

    async def open_terminal(
        self, name: str, command: str, *, actor: str, dyno: str, size: tuple[int, int], term: str
    ) -> PtyChild:
        return await self.releases.open_terminal(
            name, command, actor=actor, dyno=dyno, size=size, term=term
        )

    def terminal_refusal(self) -> str | None:
        return self.releases.terminal_refusal()

    async def list_releases(self, name: str, *, after: int | None, limit: int) -> list[Release]:
        return await self.releases.list_releases(name, after=after, limit=limit)

    async def get_release(self, name: str, version: int) -> Release:
        return await self.releases.get_release(name, version)

    # -- domains --------------------------------------------------------------

    async def list_domains(self, name: str) -> list[Domain]:
        return await self.domains.list_domains(name)

    async def add_domain(
        self, name: str, hostname: str, *, actor: str, tenant: bool = False
    ) -> Domain:
        return await self.domains.add_domain(name, hostname, actor=actor, tenant=tenant)

    async def remove_domain(self, name: str, hostname: str, *, actor: str) -> None:
        await self.domains.remove_domain(name, hostname, actor=actor)

    # -- formation and dynos --------------------------------------------------

    async def formation(self, name: str) -> list[Formation]:
        return await self.formations.formation(name)

    async def update_formation(
        self, name: str, changes: Sequence[FormationChange], *, actor: str, admin: bool = False
    ) -> list[Formation]:
        return await self.formations.update_formation(name, changes, actor=actor, admin=admin)

    async def dynos(self, name: str) -> list[Dyno]:
        return await self.formations.dynos(name)

    async def autoscale(self, name: str) -> dict[str, Any]:
        return await self.formations.autoscale(name)

    async def restart(self, name: str, process: str | None, *, actor: str) -> None:
        await self.formations.restart(name, process, actor=actor)

    # -- add-ons --------------------------------------------------------------

    def plan_names(self) -> list[str]:
        return self.addons.plan_names()

    async def create_addon(
        self, name: str, *, plan: str, attachment: str | None, actor: str
    ) -> tuple[Addon, Release]:
        return await self.addons.create_addon(name, plan=plan, attachment=attachment, actor=actor)

    async def list_addons(self, name: str) -> list[Addon]:
        return await self.addons.list_addons(name)

    async def destroy_addon(
        self, name: str, addon_name: str, *, actor: str
    ) -> tuple[Addon, Release]:
        return await self.addons.destroy_addon(name, addon_name, actor=actor)

    async def resize_addon(
        self, name: str, addon_name: str, *, plan: str, actor: str
    ) -> tuple[Addon, Release | None, str]:
        return await self.addons.resize_addon(name, addon_name, plan=plan, actor=actor)

    # -- audit ----------------------------------------------------------------

    async def audit(self, *, app: str | None, after: int | None, limit: int) -> list[AuditEntry]:
        async with self.store.tx(write=False) as tx:
            if app is not None:
                await tx.get_app(app)
            return await tx.list_audit(app=app, after=after, limit=limit)
