"""What the control plane does, independent of HTTP: the operations behind every endpoint.

Each change commits together with its audit entry. Releases follow one path
(``_release``): number it (app row locked), run the release phase, deploy,
then mark it succeeded and current; any failure marks it failed and leaves the
previous release current and running. Releases of one app are serialised by a
lock per app in this process, so the release phase of one never races
another's deploy.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from control import auth
from control.addons import Provisioner
from control.errors import (
    AddonError,
    Conflict,
    ControlError,
    NotFound,
    ReleaseFailed,
    Unauthorized,
    Unprocessable,
)
from control.models import (
    Addon,
    App,
    AuditEntry,
    Domain,
    Formation,
    Release,
    ReleaseStatus,
    Token,
)
from control.releasing import Deployment, Dyno, PhaseResult, ReleaseTarget, split_procfile
from control.rules import (
    ATTACHMENT,
    DEFAULT_ATTACHMENT,
    apply_config_changes,
    apply_formation_update,
    as_int,
    default_formation,
    validate_app_name,
    validate_config_changes,
    validate_hostname,
    validate_procfile,
)
from control.store.db import Store
from control.store.queries import Tx

log = logging.getLogger(__name__)

#: Seconds a verified token is trusted without asking the store again: the delay
#: before another replica sees a revocation, and the most an app token can lag a rename.
TOKEN_CACHE_TTL = 1.0
#: Cached tokens before the cache starts over (a bound, not a tuning knob).
TOKEN_CACHE_MAX = 10_000

TargetsWriter = Callable[[list[Addon]], Awaitable[None]]
T = TypeVar("T")

#: What a new release runs, from the current one: (artifact, procfile, config).
Compose = Callable[[Release], tuple[str | None, Mapping[str, str], Mapping[str, str]]]


def same_as(current: Release) -> tuple[str | None, Mapping[str, str], Mapping[str, str]]:
    return current.artifact, current.procfile, current.config


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
    ) -> None:
        self.store = store
        #: Every app answers at ``{name}.{app_domain}`` (Heroku's herokuapp.com), if set.
        self.app_domain = app_domain
        self.target = target
        self.provisioners = dict(provisioners or {})
        self._targets_writer = targets_writer
        self._clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        self._monotonic = monotonic
        #: digest -> (principal, until): every request checks its token, and a lookup
        #: is a transaction. Revocations and deletions here clear it at once; another
        #: replica's take effect within TOKEN_CACHE_TTL.
        self._principals: dict[str, tuple[auth.Principal, float]] = {}

    def _lock(self, app: App) -> asyncio.Lock:
        return self._locks.setdefault(app.id, asyncio.Lock())

    async def start(self, *, bootstrap_admin_token: str | None = None, resume: bool = True) -> None:
        """Migrate, recover from a crash, and bring the runtime back to the current releases."""
        await self.store.migrate()
        async with self.store.tx() as tx:
            interrupted = await tx.fail_interrupted_releases(now=self._clock())
            builds = await tx.fail_interrupted_builds(now=self._clock())
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

    async def _ensure_addons(self) -> None:
        """Re-assert every add-on on its server: limits as the plan says, Redis users back."""
        async with self.store.tx(write=False) as tx:
            addons = await tx.all_addons()
        for addon in addons:
            provisioner = self.provisioners.get(addon.service)
            if provisioner is None:
                log.error("add-on service not configured", extra={"addon": addon.name})
                continue
            try:
                await provisioner.ensure(addon.resource, url=addon.url, plan=addon.plan)
            except AddonError as exc:
                log.error("add-on check failed", extra={"addon": addon.name, "error": str(exc)})

    async def resume(self) -> None:
        """Hand every app's current release to the target again (after a restart)."""
        after: str | None = None
        while True:
            page = await self.list_apps(after=after, limit=200)
            for app in page:
                try:
                    await self._redeploy_current(app)
                except Exception as exc:
                    # One app that cannot start must not keep the others (or the API) down.
                    log.error("resuming an app failed", extra={"app": app.name, "error": str(exc)})
            if len(page) < 200:
                return
            after = page[-1].name

    # -- auth -----------------------------------------------------------------

    async def authenticate(self, secret: str) -> auth.Principal:
        digest = auth.digest(secret)
        now = self._monotonic()
        cached = self._principals.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        async with self.store.tx(write=False) as tx:
            token = await tx.find_token(digest)
        if token is None:
            raise Unauthorized("the token is not valid", id="unauthorized")
        if len(self._principals) >= TOKEN_CACHE_MAX:
            self._principals.clear()
        principal = auth.Principal(token)
        self._principals[digest] = (principal, now + TOKEN_CACHE_TTL)
        return principal

    async def create_token(
        self, *, name: object, admin: bool, app: str | None, actor: str
    ) -> tuple[Token, str]:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise Unprocessable("a token needs a name of 1-200 characters")
        if admin == (app is not None):
            raise Unprocessable("a token is either admin or for one app, not both or neither")
        secret = auth.new_token()
        now = self._clock()
        async with self.store.tx() as tx:
            scope = None if app is None else await tx.get_app(app)
            token = await tx.add_token(
                name=name, digest=auth.digest(secret), admin=admin, app=scope, now=now
            )
            await tx.record(
                actor=actor,
                action="token.create",
                app=app,
                detail={"token": token.id, "name": name, "admin": admin},
                now=now,
            )
        return token, secret

    async def delete_token(self, token_id: str, *, actor: str) -> None:
        async with self.store.tx() as tx:
            await tx.delete_token(token_id)
            await tx.record(
                actor=actor,
                action="token.delete",
                app=None,
                detail={"token": token_id},
                now=self._clock(),
            )
        self._principals.clear()

    # -- apps -----------------------------------------------------------------

    async def create_app(self, name: object, *, actor: str) -> App:
        name = validate_app_name(name)
        now = self._clock()
        async with self.store.tx() as tx:
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
        self, *, after: str | None, limit: int, only: str | None = None
    ) -> list[App]:
        async with self.store.tx(write=False) as tx:
            if only is not None:
                app = await tx.find_app(only)
                return [app] if app is not None and (after is None or app.name > after) else []
            return await tx.list_apps(after=after, limit=limit)

    async def get_app(self, name: str) -> App:
        async with self.store.tx(write=False) as tx:
            return await tx.get_app(name)

    async def rename_app(self, name: str, new_name: object, *, actor: str) -> App:
        new_name = validate_app_name(new_name)
        now = self._clock()
        async with self.store.tx() as tx:
            app = await tx.get_app(name, lock=True)
            renamed = await tx.rename_app(app, new_name, now=now)
            await tx.record(
                actor=actor, action="app.rename", app=new_name, detail={"from": name}, now=now
            )
        self._principals.clear()  # app tokens name their app
        if renamed.current_release is not None and name != new_name:
            # The runtime knows the app by name: move its processes under the new one.
            await self.target.forget(name)
            await self._redeploy_current(renamed)
        return renamed

    async def delete_app(self, name: str, *, actor: str) -> App:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            addons = await tx.list_addons(app)
        async with self._lock(app):
            for addon in addons:
                await self._provisioner(addon.service).destroy(addon.resource)
            await self.target.forget(name)
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
        self._principals.clear()  # its tokens are gone
        self._locks.pop(app.id, None)
        await self._write_targets()
        return app

    # -- config vars ----------------------------------------------------------

    async def config(self, name: str) -> dict[str, str]:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            release = await tx.current_release(app)
            addons = await tx.list_addons(app)
        return {**release.config, **{a.config_var: a.url for a in addons}}

    async def update_config(
        self, name: str, changes: object, *, actor: str
    ) -> tuple[dict[str, str], Release]:
        changes = validate_config_changes(changes)
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            owned = {a.config_var: a.name for a in await tx.list_addons(app)}
        for key in changes:
            if key in owned:
                raise Conflict(
                    f"{key} belongs to add-on {owned[key]}; destroy or re-attach it instead",
                    id="addon_config_var",
                )

        def compose(current: Release) -> tuple[str | None, Mapping[str, str], Mapping[str, str]]:
            return current.artifact, current.procfile, apply_config_changes(current.config, changes)

        set_keys = sorted(k for k, v in changes.items() if v is not None)
        unset_keys = sorted(k for k, v in changes.items() if v is None)
        parts = []
        if set_keys:
            parts.append(f"Set {', '.join(set_keys)} config vars")
        if unset_keys:
            parts.append(f"Remove {', '.join(unset_keys)} config vars")
        release = await self._release(
            app,
            description="; ".join(parts),
            compose=compose,
            actor=actor,
            # Names only: values may be secrets and the audit log is widely read.
            audit={"set": set_keys, "unset": unset_keys},
        )
        return await self.config(app.name), release

    # -- releases -------------------------------------------------------------

    async def deploy(
        self, name: str, *, artifact: object, procfile: object, description: object, actor: str
    ) -> Release:
        if not isinstance(artifact, str) or not artifact:
            raise Unprocessable("artifact must be a non-empty string (a directory or an image)")
        checked = validate_procfile(procfile)
        if description is not None and not isinstance(description, str):
            raise Unprocessable("description must be a string")
        app = await self.get_app(name)
        return await self._release(
            app,
            description=description or f"Deploy {artifact}",
            compose=lambda current: (artifact, checked, current.config),
            actor=actor,
            audit={"artifact": artifact},
        )

    async def rollback(self, name: str, version: object, *, actor: str) -> Release:
        number = as_int(version)
        if number is None or number < 1:
            raise Unprocessable("release must be a release version number (v3 is 3)")
        version = number
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            old = await tx.get_release(app, version)
        if old.status is not ReleaseStatus.SUCCEEDED:
            raise Unprocessable(
                f"v{version} {old.status.value}; roll back to a release that succeeded",
                id="release_not_succeeded",
            )
        return await self._release(
            app,
            description=f"Rollback to v{version}",
            compose=lambda _: (old.artifact, old.procfile, old.config),
            actor=actor,
            audit={"to": version},
        )

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
        """Release a finished build through the one release path; the build records the version.

        A failed release phase still numbers a release: the build points at it (failed).
        """
        checked = validate_procfile(dict(procfile))
        app = await self.get_app(name)
        try:
            release = await self._release(
                app,
                description=description,
                compose=lambda current: (artifact, checked, current.config),
                actor=actor,
                audit={"build": build_id, "artifact": artifact},
            )
        except ReleaseFailed as exc:
            async with self.store.tx() as tx:
                await tx.set_build_release(await tx.get_app(name), build_id, exc.version)
            raise
        async with self.store.tx() as tx:
            await tx.set_build_release(await tx.get_app(name), build_id, release.version)
        return release

    async def run_once(self, name: str, command: str, *, reason: str, actor: str) -> PhaseResult:
        """A one-off command on the current release with its env (postdeploy, pr-predestroy)."""
        async with self.store.tx() as tx:
            app = await tx.get_app(name)
            release = await tx.current_release(app)
            addons = await tx.list_addons(app)
            await tx.record(
                actor=actor,
                action="run.once",
                app=name,
                detail={"reason": reason, "release": release.version},
                now=self._clock(),
            )
        processes, _ = split_procfile(release.procfile)
        deployment = Deployment(
            app=name,
            version=release.version,
            artifact=release.artifact,
            processes=processes,
            env={**release.config, **{a.config_var: a.url for a in addons}},
        )
        return await self.target.release_phase(deployment, command)

    async def list_releases(self, name: str, *, after: int | None, limit: int) -> list[Release]:
        async with self.store.tx(write=False) as tx:
            return await tx.list_releases(await tx.get_app(name), after=after, limit=limit)

    async def get_release(self, name: str, version: int) -> Release:
        async with self.store.tx(write=False) as tx:
            return await tx.get_release(await tx.get_app(name), version)

    async def _release(
        self,
        app: App,
        *,
        description: str,
        compose: Compose,
        actor: str,
        audit: Mapping[str, Any],
    ) -> Release:
        async with self._lock(app):
            now = self._clock()
            async with self.store.tx() as tx:
                app = await tx.get_app(app.name, lock=True)
                artifact, procfile, config = compose(await tx.current_release(app))
                addons = await tx.list_addons(app)
                hosts = await self._hosts(tx, app)
                existing = {f.type: f for f in await tx.list_formation(app)}
                release = await tx.add_release(
                    app,
                    description=description,
                    artifact=artifact,
                    procfile=procfile,
                    config=config,
                    addon_env={a.config_var: a.url for a in addons},
                    actor=actor,
                    now=now,
                )
                await tx.record(
                    actor=actor,
                    action="release.create",
                    app=app.name,
                    detail={"version": release.version, "description": description, **audit},
                    now=now,
                )
            processes, command = split_procfile(procfile)
            formation = [
                existing.get(p) or default_formation(p, now=now) for p in sorted(processes)
            ]
            deployment = Deployment(
                app=app.name,
                version=release.version,
                artifact=artifact,
                processes=processes,
                env={**config, **release.addon_env},
                formation=formation,
                hosts=hosts,
            )
            output = ""
            try:
                if command is not None and artifact is not None:
                    result = await self.target.release_phase(deployment, command)
                    output = result.output
                    if not result.ok:
                        raise ReleaseFailed(
                            f"the release command of v{release.version} failed; "
                            f"v{app.current_release} keeps running",
                            version=release.version,
                            output=output,
                        )
                if artifact is not None:
                    await self.target.deploy(deployment)
            except Exception as exc:
                # Whatever broke, the release must not stay pending: record it as failed.
                if not isinstance(exc, ReleaseFailed):
                    output = f"{output}\ndeploy failed: {exc}".strip()
                await self._finish(app, release, ReleaseStatus.FAILED, output, actor)
                if isinstance(exc, ReleaseFailed):
                    raise
                raise ReleaseFailed(
                    f"deploying v{release.version} failed: {exc}",
                    version=release.version,
                    output=output,
                ) from exc
            async with self.store.tx() as tx:
                await tx.finish_release(
                    app, release.version, ReleaseStatus.SUCCEEDED, output=output, now=self._clock()
                )
                for item in formation:
                    if item.type not in existing:
                        await tx.put_formation(app, item)
                await tx.remove_formation(app, [t for t in existing if t not in processes])
                return await tx.get_release(app, release.version)

    async def _finish(
        self, app: App, release: Release, status: ReleaseStatus, output: str, actor: str
    ) -> None:
        now = self._clock()
        async with self.store.tx() as tx:
            await tx.finish_release(app, release.version, status, output=output, now=now)
            await tx.record(
                actor=actor,
                action="release.fail",
                app=app.name,
                detail={"version": release.version},
                now=now,
            )

    async def _redeploy_current(self, app: App) -> None:
        async with self.store.tx(write=False) as tx:
            release = await tx.current_release(app)
            formation = await tx.list_formation(app)
            addons = await tx.list_addons(app)
            hosts = await self._hosts(tx, app)
        if release.artifact is None:
            return
        processes, _ = split_procfile(release.procfile)
        await self.target.deploy(
            Deployment(
                app=app.name,
                version=release.version,
                artifact=release.artifact,
                processes=processes,
                env={**release.config, **{a.config_var: a.url for a in addons}},
                formation=formation,
                hosts=hosts,
            )
        )

    async def _hosts(self, tx: Tx, app: App) -> list[str]:
        default = [f"{app.name}.{self.app_domain}"] if self.app_domain else []
        return default + [d.hostname for d in await tx.list_domains(app)]

    # -- domains --------------------------------------------------------------

    async def list_domains(self, name: str) -> list[Domain]:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            default = (
                [Domain(app=name, hostname=f"{name}.{self.app_domain}", created_at=app.created_at)]
                if self.app_domain
                else []
            )
            return default + await tx.list_domains(app)

    async def add_domain(self, name: str, hostname: object, *, actor: str) -> Domain:
        """Route ``hostname`` to the app too (the running release learns it at once)."""
        hostname = validate_hostname(hostname)
        if self.app_domain and hostname.endswith("." + self.app_domain):
            owner = hostname.removesuffix("." + self.app_domain)
            if "." not in owner:
                raise Conflict(
                    f"{hostname} is the default domain of the app {owner}", id="domain_taken"
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
        async with self._lock(app):
            await self._redeploy_current(app)
        return result

    # -- formation and dynos --------------------------------------------------

    async def formation(self, name: str) -> list[Formation]:
        async with self.store.tx(write=False) as tx:
            return await tx.list_formation(await tx.get_app(name))

    async def update_formation(self, name: str, updates: object, *, actor: str) -> list[Formation]:
        if not isinstance(updates, list) or not updates:
            raise Unprocessable("updates must be a non-empty list of {type, quantity, ...}")
        now = self._clock()
        changed: list[Formation] = []
        async with self.store.tx() as tx:
            app = await tx.get_app(name, lock=True)
            current = {f.type: f for f in await tx.list_formation(app)}
            for update in updates:
                if not isinstance(update, dict) or not isinstance(update.get("type"), str):
                    raise Unprocessable("each update needs a process type: {type, quantity}")
                item = current.get(update["type"])
                if item is None:
                    raise NotFound(
                        f"{name} has no process type {update['type']!r}", id="process_not_found"
                    )
                new = apply_formation_update(item, update, now)
                await tx.put_formation(app, new)
                current[new.type] = new
                changed.append(new)
            await tx.record(
                actor=actor,
                action="formation.update",
                app=name,
                detail={"updates": [dict(u) for u in updates]},
                now=now,
            )
            result = sorted(current.values(), key=lambda f: f.type)
        for item in changed:
            await self.target.scale(name, item)
        return result

    async def dynos(self, name: str) -> list[Dyno]:
        await self.get_app(name)
        return await self.target.dynos(name)

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
        await self.target.restart(name, process)

    # -- add-ons --------------------------------------------------------------

    def plan_names(self) -> list[str]:
        """Every plan a client may ask for: ``postgres``, ``postgres:mini``, ..."""
        names = []
        for service, provisioner in sorted(self.provisioners.items()):
            names.append(service)
            names += [f"{service}:{plan}" for plan in provisioner.plans]
        return names

    def _provisioner(self, service: str) -> Provisioner:
        provisioner = self.provisioners.get(service)
        if provisioner is None:
            raise Unprocessable(
                f"no {service!r} add-on service here (available: "
                f"{', '.join(sorted(self.provisioners)) or 'none'})",
                id="service_not_found",
            )
        return provisioner

    async def create_addon(
        self, name: str, *, plan: object, attachment: object, actor: str
    ) -> tuple[Addon, Release]:
        if not isinstance(plan, str) or not plan:
            raise Unprocessable("plan must be a string like 'postgres' or 'postgres:mini'")
        service, _, plan_name = plan.partition(":")
        provisioner = self._provisioner(service)
        plan_name = plan_name or next(iter(provisioner.plans), "")
        if plan_name not in provisioner.plans:
            raise Unprocessable(
                f"no {service} plan {plan_name!r} (plans: {', '.join(provisioner.plans)})",
                id="plan_not_found",
            )
        attachment = attachment if attachment is not None else DEFAULT_ATTACHMENT.get(service)
        if not isinstance(attachment, str) or not ATTACHMENT.match(attachment):
            raise Unprocessable(
                f"attachment name {attachment!r} is invalid: uppercase letters, digits, _",
                id="invalid_attachment",
            )
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            current = await tx.current_release(app)
            taken = {a.attachment: a.name for a in await tx.list_addons(app)}
        if attachment in taken:
            raise Conflict(
                f"{name} already has {taken[attachment]} attached as {attachment}",
                id="attachment_taken",
            )
        if f"{attachment}_URL" in current.config:
            raise Conflict(
                f"config var {attachment}_URL is set; unset it or attach under another name",
                id="config_var_taken",
            )
        provisioned = await provisioner.create(plan_name)
        now = self._clock()
        addon = Addon(
            id=secrets.token_hex(8),
            app=name,
            name=f"{service}-{secrets.token_hex(4)}",
            service=service,
            plan=plan_name,
            attachment=attachment,
            url=provisioned.url,
            resource=provisioned.resource,
            created_at=now,
        )
        try:
            async with self.store.tx() as tx:
                await tx.add_addon(await tx.get_app(name), addon)
                await tx.record(
                    actor=actor,
                    action="addon.create",
                    app=name,
                    detail={"addon": addon.name, "plan": plan, "as": attachment},
                    now=now,
                )
        except ControlError:
            await provisioner.destroy(provisioned.resource)
            raise
        await self._write_targets()
        release = await self._release_quietly(
            app, f"Attach {attachment} ({addon.name})", actor, {"addon": addon.name}
        )
        return addon, release

    async def list_addons(self, name: str) -> list[Addon]:
        async with self.store.tx(write=False) as tx:
            return await tx.list_addons(await tx.get_app(name))

    async def destroy_addon(
        self, name: str, addon_name: str, *, actor: str
    ) -> tuple[Addon, Release]:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            addon = await tx.get_addon(app, addon_name)
        await self._provisioner(addon.service).destroy(addon.resource)
        async with self.store.tx() as tx:
            await tx.remove_addon(addon)
            await tx.record(
                actor=actor,
                action="addon.destroy",
                app=name,
                detail={"addon": addon.name},
                now=self._clock(),
            )
        await self._write_targets()
        release = await self._release_quietly(
            app, f"Detach {addon.attachment} ({addon.name})", actor, {"addon": addon.name}
        )
        return addon, release

    async def _release_quietly(
        self, app: App, description: str, actor: str, audit: Mapping[str, Any]
    ) -> Release:
        """A release for an add-on change; its failure is reported in the release, not raised."""
        try:
            return await self._release(
                app,
                description=description,
                compose=same_as,
                actor=actor,
                audit=audit,
            )
        except ReleaseFailed as exc:
            return await self.get_release(app.name, exc.version)

    async def _write_targets(self) -> None:
        if self._targets_writer is None:
            return
        async with self.store.tx(write=False) as tx:
            addons = await tx.all_addons()
        try:
            await self._targets_writer(addons)
        except OSError as exc:
            # The registry is the truth; the file is rewritten at the next change or start.
            log.error("writing the exporters' targets failed", extra={"error": str(exc)})

    # -- audit ----------------------------------------------------------------

    async def audit(self, *, app: str | None, after: int | None, limit: int) -> list[AuditEntry]:
        async with self.store.tx(write=False) as tx:
            if app is not None:
                await tx.get_app(app)
            return await tx.list_audit(app=app, after=after, limit=limit)
