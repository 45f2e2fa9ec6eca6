"""Add-ons of an app: provisioned on their servers, attached as ``NAME_URL``, each a release.

The provisioners (control/addons/) make and drop the role, database or user;
this attaches the result to an app through the releaser, and keeps the
exporters' targets file in step with the registry.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from control.addons import OwnedProvisioner, Provisioner, ResizableProvisioner, names
from control.addons.names import canonical
from control.addons.plans import DEFAULT_PLANS
from control.errors import AddonError, Conflict, ControlError, Unprocessable
from control.models import Addon, Release
from control.releaser import Releaser
from control.rules import DEFAULT_ATTACHMENT, validate_attachment
from control.store.db import Store

log = logging.getLogger(__name__)

#: Why a service's default plan may be missing, and what to do (said with the refusal).
_NO_DEDICATED = {
    "redis": (
        "; dedicated Redis instances run under `slipway up` only. A shared plan "
        "(redis:shared) fences keys to a prefix and denies Lua: RQ, Sidekiq, Celery and "
        "Bull fail on it; choose it explicitly if the app uses neither"
    ),
    "search": (
        "; only search:dev (in memory, for review apps and development) runs here: a paid "
        "Bonsai or SearchBox tier holds data it would lose at a restart"
    ),
}

TargetsWriter = Callable[[list[Addon]], Awaitable[None]]
#: Told of an add-on about to be destroyed, before anything of it is (its backup schedule
#: and CronJob go first: ``Backups.forget_addon``); an error refuses the destroy.
DestroyHook = Callable[[Addon], Awaitable[None]]


class Addons:
    def __init__(
        self,
        *,
        store: Store,
        releaser: Releaser,
        provisioners: dict[str, Provisioner],
        targets_writer: TargetsWriter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.releaser = releaser
        #: Shared with ``Control.provisioners``: an operator (or a test) may swap one.
        self.provisioners = provisioners
        self._targets_writer = targets_writer
        self._clock = clock
        #: What else an add-on takes with it (appended by whoever composes the control plane).
        self.before_destroy: list[DestroyHook] = []

    async def destroying(self, addon: Addon) -> None:
        """Tell ``before_destroy`` that ``addon`` goes (its app's deletion included)."""
        for hook in self.before_destroy:
            await hook(addon)

    async def ensure(self) -> None:
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

    def plan_names(self) -> list[str]:
        """Every plan a client may ask for: ``postgres``, ``postgres:mini``, ..."""
        names = []
        for service, provisioner in sorted(self.provisioners.items()):
            if DEFAULT_PLANS.get(service, next(iter(provisioner.plans), "")) in provisioner.plans:
                names.append(service)  # a bare name only where its default is offered
            names += [f"{service}:{plan}" for plan in provisioner.plans]
        return names

    def provisioner(self, service: str) -> Provisioner:
        provisioner = self.provisioners.get(service)
        if provisioner is None:
            raise Unprocessable(
                f"no {service!r} add-on service here (available: "
                f"{', '.join(sorted(self.provisioners)) or 'none'})",
                id="service_not_found",
            )
        return provisioner

    async def create_addon(
        self, name: str, *, plan: str, attachment: str | None, actor: str
    ) -> tuple[Addon, Release]:
        """An add-on on ``plan`` (``postgres``, ``postgres:mini``, or Heroku's names such as
        ``heroku-postgresql:essential-0``) attached as ``attachment``."""
        service, _, plan_name = canonical(plan).partition(":")
        provisioner = self.provisioner(service)
        plan_name = plan_name or DEFAULT_PLANS.get(service) or next(iter(provisioner.plans), "")
        if plan_name not in provisioner.plans:
            raise Unprocessable(
                f"no {service} plan {plan_name!r} (plans: {', '.join(provisioner.plans)})"
                + _NO_DEDICATED.get(service, ""),
                id="plan_not_found",
            )
        if attachment is None:
            # A service without a default (none today) needs the client to name one.
            attachment = validate_attachment(
                names.attachment(plan) or DEFAULT_ATTACHMENT.get(service)
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
        if isinstance(provisioner, OwnedProvisioner):
            provisioned = await provisioner.create_for(name, plan_name)
        else:
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
            provision_message=provisioned.message,
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
        await self.write_targets()
        release = await self.releaser.release_quietly(
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
        await self.destroying(addon)
        await self.provisioner(addon.service).destroy(addon.resource)
        async with self.store.tx() as tx:
            await tx.remove_addon(addon)
            await tx.record(
                actor=actor,
                action="addon.destroy",
                app=name,
                detail={"addon": addon.name},
                now=self._clock(),
            )
        await self.write_targets()
        release = await self.releaser.release_quietly(
            app, f"Detach {addon.attachment} ({addon.name})", actor, {"addon": addon.name}
        )
        return addon, release

    async def resize_addon(
        self, name: str, addon_name: str, *, plan: str, actor: str
    ) -> tuple[Addon, Release | None, str]:
        """Move an add-on to another plan of its service in place, its data kept (Heroku's
        ``addons:upgrade``); a release only when its URL changed with it; what the
        provisioner says of the move ("" mostly)."""
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            addon = await tx.get_addon(app, addon_name)
        # ``basic`` (or Heroku's ``essential-0``): a plan of the add-on's own service.
        ref = plan if ":" in plan else f"{addon.service}:{plan}"
        service, _, plan_name = canonical(ref).partition(":")
        if service != addon.service:
            raise Unprocessable(
                f"{addon.name} is a {addon.service} add-on; a {service} plan needs a new "
                f"add-on (slipway addons:create {plan})",
                id="plan_change_impossible",
            )
        provisioner = self.provisioner(service)
        if plan_name not in provisioner.plans:
            raise Unprocessable(
                f"no {service} plan {plan_name!r} (plans: {', '.join(provisioner.plans)})",
                id="plan_not_found",
            )
        if plan_name == addon.plan:
            raise Unprocessable(
                f"{addon.name} is already on {service}:{plan_name}", id="plan_unchanged"
            )
        if not isinstance(provisioner, ResizableProvisioner):
            raise Unprocessable(
                f"{service} add-ons here cannot change plan in place: create one on "
                f"{service}:{plan_name} (--as OTHER), move the data, then destroy {addon.name}",
                id="plan_change_impossible",
            )
        resized = await provisioner.resize(
            addon.resource, app=name, url=addon.url, plan=addon.plan, to=plan_name
        )
        url, message = resized.url, resized.message
        moved = replace(addon, plan=plan_name, url=url)
        async with self.store.tx() as tx:
            await tx.update_addon(moved)
            await tx.record(
                actor=actor,
                action="addon.resize",
                app=name,
                detail={
                    "addon": addon.name,
                    "from": addon.plan,
                    "plan": plan_name,
                    **({"message": message} if message else {}),
                },
                now=self._clock(),
            )
        await self.write_targets()
        if url == addon.url:
            return moved, None, message
        release = await self.releaser.release_quietly(
            app,
            f"Update {addon.attachment} ({addon.name}) to {service}:{plan_name}",
            actor,
            {"addon": addon.name},
        )
        return moved, release, message

    async def write_targets(self) -> None:
        if self._targets_writer is None:
            return
        async with self.store.tx(write=False) as tx:
            addons = await tx.all_addons()
        try:
            await self._targets_writer(addons)
        except (OSError, ControlError) as exc:
            # The registry is the truth; the targets are rewritten at the next change or start.
            log.error("writing the exporters' targets failed", extra={"error": str(exc)})
