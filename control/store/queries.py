"""Long because: one method per question or change (about 40), composable on one Tx.
What the control plane asks of its database, one method per question or change.

A ``Tx`` wraps one open transaction; methods compose inside it, so an
operation and its audit entry commit together or not at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from control.errors import Conflict, NotFound
from control.models import (
    Addon,
    App,
    AuditEntry,
    Build,
    BuildStatus,
    Domain,
    Formation,
    Release,
    ReleaseStatus,
    Token,
)
from control.store.schema import (
    addons,
    apps,
    audit,
    builds,
    domains,
    formation,
    memberships,
    releases,
    tokens,
    users,
)
from kit.redact import mask_data


def _app(row: sa.Row[Any]) -> App:
    return App(
        id=row.id,
        name=row.name,
        current_release=row.current_release,
        created_at=row.created_at,
        updated_at=row.updated_at,
        maintenance=bool(row.maintenance),
    )


def _release(row: sa.Row[Any], app: str) -> Release:
    return Release(
        app=app,
        version=row.version,
        status=ReleaseStatus(row.status),
        description=row.description,
        artifact=row.artifact,
        procfile=dict(row.procfile),
        config=dict(row.config),
        addon_env=dict(row.addon_env),
        output=row.output,
        actor=row.actor,
        created_at=row.created_at,
    )


def _formation(row: sa.Row[Any]) -> Formation:
    return Formation(
        type=row.type,
        quantity=row.quantity,
        idle_after=row.idle_after,
        min_scale=row.min_scale,
        max_scale=row.max_scale,
        never_sleep=row.never_sleep,
        updated_at=row.updated_at,
        size=row.size,
        autoscale=dict(row.autoscale) if row.autoscale else None,
        queue=dict(row.queue) if row.queue else None,
    )


def _addon(row: sa.Row[Any], app: str) -> Addon:
    return Addon(
        id=row.id,
        app=app,
        name=row.name,
        service=row.service,
        plan=row.plan,
        attachment=row.attachment,
        url=row.url,
        resource=row.resource,
        created_at=row.created_at,
    )


def _build(row: sa.Row[Any], app: str) -> Build:
    return Build(
        id=row.id,
        app=app,
        status=BuildStatus(row.status),
        source_url=row.source_url,
        source_version=row.source_version,
        source_ref=row.source_ref,
        commit=row.commit,
        artifact=row.artifact,
        digest=row.digest,
        procfile=dict(row.procfile),
        release=row.release_version,
        release_status=None if row.release_status is None else ReleaseStatus(row.release_status),
        output=row.output,
        actor=row.actor,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _builds_query() -> sa.Select[Any]:
    """Builds with the status of the release each made (an outer join: most have none yet)."""
    return sa.select(builds, releases.c.status.label("release_status")).select_from(
        builds.outerjoin(
            releases,
            sa.and_(
                releases.c.app_id == builds.c.app_id,
                releases.c.version == builds.c.release_version,
            ),
        )
    )


class Tx:
    def __init__(self, conn: AsyncConnection, *, sqlite: bool) -> None:
        self.conn = conn
        self._sqlite = sqlite

    # -- apps ---------------------------------------------------------------

    async def create_app(self, name: str, *, now: float) -> App:
        if await self.find_app(name) is not None:
            raise Conflict(f"an app named {name!r} already exists", id="name_taken")
        result = await self.conn.execute(
            apps.insert()
            .values(name=name, current_release=None, created_at=now, updated_at=now)
            .returning(*apps.c)
        )
        return _app(result.one())

    async def find_app(self, name: str, *, lock: bool = False) -> App | None:
        query = apps.select().where(apps.c.name == name)
        if lock and not self._sqlite:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).one_or_none()
        return None if row is None else _app(row)

    async def get_app(self, name: str, *, lock: bool = False) -> App:
        app = await self.find_app(name, lock=lock)
        if app is None:
            raise NotFound(f"no app named {name!r}", id="app_not_found")
        return app

    async def list_apps(self, *, after: str | None, limit: int) -> list[App]:
        query = apps.select().order_by(apps.c.name).limit(limit)
        if after is not None:
            query = query.where(apps.c.name > after)
        return [_app(row) for row in await self.conn.execute(query)]

    async def rename_app(self, app: App, new_name: str, *, now: float) -> App:
        if await self.find_app(new_name) is not None:
            raise Conflict(f"an app named {new_name!r} already exists", id="name_taken")
        await self.conn.execute(
            apps.update().where(apps.c.id == app.id).values(name=new_name, updated_at=now)
        )
        return await self.get_app(new_name)

    async def set_maintenance(self, app: App, on: bool, *, now: float) -> App:
        await self.conn.execute(
            apps.update().where(apps.c.id == app.id).values(maintenance=on, updated_at=now)
        )
        return await self.get_app(app.name)

    async def delete_app(self, app: App) -> None:
        # Explicit children first: the same on every database, cascade or not.
        for table in (releases, formation, addons, tokens, builds, domains, memberships):
            await self.conn.execute(table.delete().where(table.c.app_id == app.id))
        await self.conn.execute(apps.delete().where(apps.c.id == app.id))

    # -- domains --------------------------------------------------------------

    async def domain_owner(self, hostname: str) -> str | None:
        """The app that has ``hostname`` as a custom domain, if one does."""
        owner: str | None = await self.conn.scalar(
            sa.select(apps.c.name)
            .join(domains, domains.c.app_id == apps.c.id)
            .where(domains.c.hostname == hostname)
        )
        return owner

    async def add_domain(self, app: App, hostname: str, *, now: float) -> Domain:
        owner = await self.domain_owner(hostname)
        if owner is not None:
            raise Conflict(f"{hostname} is already a domain of {owner}", id="domain_taken")
        await self.conn.execute(
            domains.insert().values(app_id=app.id, hostname=hostname, created_at=now)
        )
        return Domain(app=app.name, hostname=hostname, created_at=now)

    async def list_domains(self, app: App) -> list[Domain]:
        query = domains.select().where(domains.c.app_id == app.id).order_by(domains.c.hostname)
        return [
            Domain(app=app.name, hostname=row.hostname, created_at=row.created_at)
            for row in await self.conn.execute(query)
        ]

    async def remove_domain(self, app: App, hostname: str) -> None:
        result = await self.conn.execute(
            domains.delete().where(domains.c.app_id == app.id, domains.c.hostname == hostname)
        )
        if result.rowcount == 0:
            raise NotFound(f"{app.name} has no domain {hostname}", id="domain_not_found")

    # -- releases -------------------------------------------------------------

    async def add_release(
        self,
        app: App,
        *,
        description: str,
        artifact: str | None,
        procfile: Mapping[str, str],
        config: Mapping[str, str],
        addon_env: Mapping[str, str],
        actor: str,
        now: float,
        status: ReleaseStatus = ReleaseStatus.PENDING,
    ) -> Release:
        """A release numbered one past the newest; the caller locked the app row."""
        newest = await self.conn.scalar(
            sa.select(sa.func.max(releases.c.version)).where(releases.c.app_id == app.id)
        )
        version = (newest or 0) + 1
        result = await self.conn.execute(
            releases.insert()
            .values(
                app_id=app.id,
                version=version,
                status=status.value,
                description=description,
                artifact=artifact,
                procfile=dict(procfile),
                config=dict(config),
                addon_env=dict(addon_env),
                output="",
                actor=actor,
                created_at=now,
            )
            .returning(*releases.c)
        )
        return _release(result.one(), app.name)

    async def finish_release(
        self, app: App, version: int, status: ReleaseStatus, *, output: str, now: float
    ) -> None:
        await self.conn.execute(
            releases.update()
            .where(releases.c.app_id == app.id, releases.c.version == version)
            .values(status=status.value, output=output)
        )
        if status is ReleaseStatus.SUCCEEDED:
            await self.conn.execute(
                apps.update()
                .where(apps.c.id == app.id)
                .values(current_release=version, updated_at=now)
            )

    async def get_release(self, app: App, version: int) -> Release:
        row = (
            await self.conn.execute(
                releases.select().where(releases.c.app_id == app.id, releases.c.version == version)
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"{app.name} has no release v{version}", id="release_not_found")
        return _release(row, app.name)

    async def current_release(self, app: App) -> Release:
        if app.current_release is None:
            raise NotFound(f"{app.name} has no release yet", id="release_not_found")
        return await self.get_release(app, app.current_release)

    async def list_releases(self, app: App, *, after: int | None, limit: int) -> list[Release]:
        query = (
            releases.select()
            .where(releases.c.app_id == app.id)
            .order_by(releases.c.version)
            .limit(limit)
        )
        if after is not None:
            query = query.where(releases.c.version > after)
        return [_release(row, app.name) for row in await self.conn.execute(query)]

    async def fail_interrupted_releases(self, *, now: float) -> int:
        """Pending releases left by a crash can never finish: mark them failed."""
        result = await self.conn.execute(
            releases.update()
            .where(releases.c.status == ReleaseStatus.PENDING.value)
            .values(
                status=ReleaseStatus.FAILED.value, output="interrupted: the control plane stopped"
            )
        )
        return result.rowcount

    # -- formation ----------------------------------------------------------

    async def list_formation(self, app: App) -> list[Formation]:
        query = formation.select().where(formation.c.app_id == app.id).order_by(formation.c.type)
        return [_formation(row) for row in await self.conn.execute(query)]

    async def put_formation(self, app: App, item: Formation) -> None:
        values = {
            "quantity": item.quantity,
            "idle_after": item.idle_after,
            "min_scale": item.min_scale,
            "max_scale": item.max_scale,
            "never_sleep": item.never_sleep,
            "updated_at": item.updated_at,
            "size": item.size,
            "autoscale": item.autoscale,
            "queue": item.queue,
        }
        result = await self.conn.execute(
            formation.update()
            .where(formation.c.app_id == app.id, formation.c.type == item.type)
            .values(**values)
        )
        if result.rowcount == 0:
            await self.conn.execute(
                formation.insert().values(app_id=app.id, type=item.type, **values)
            )

    async def remove_formation(self, app: App, types: Sequence[str]) -> None:
        if types:
            await self.conn.execute(
                formation.delete().where(
                    formation.c.app_id == app.id, formation.c.type.in_(list(types))
                )
            )

    # -- add-ons --------------------------------------------------------------

    async def add_addon(self, app: App, addon: Addon) -> None:
        taken = await self.conn.scalar(
            sa.select(addons.c.name).where(
                addons.c.app_id == app.id, addons.c.attachment == addon.attachment
            )
        )
        if taken is not None:
            raise Conflict(
                f"{app.name} already has an add-on attached as {addon.attachment} ({taken})",
                id="attachment_taken",
            )
        await self.conn.execute(
            addons.insert().values(
                id=addon.id,
                app_id=app.id,
                name=addon.name,
                service=addon.service,
                plan=addon.plan,
                attachment=addon.attachment,
                url=addon.url,
                resource=addon.resource,
                created_at=addon.created_at,
            )
        )

    async def list_addons(self, app: App) -> list[Addon]:
        query = addons.select().where(addons.c.app_id == app.id).order_by(addons.c.name)
        return [_addon(row, app.name) for row in await self.conn.execute(query)]

    async def all_addons(self) -> list[Addon]:
        query = (
            sa.select(addons, apps.c.name.label("app_name"))
            .join(apps, apps.c.id == addons.c.app_id)
            .order_by(addons.c.name)
        )
        return [_addon(row, row.app_name) for row in await self.conn.execute(query)]

    async def get_addon(self, app: App, name_or_id: str) -> Addon:
        row = (
            await self.conn.execute(
                addons.select().where(
                    addons.c.app_id == app.id,
                    sa.or_(
                        addons.c.name == name_or_id,
                        addons.c.id == name_or_id,
                        addons.c.attachment == name_or_id,
                    ),
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"{app.name} has no add-on {name_or_id!r}", id="addon_not_found")
        return _addon(row, app.name)

    async def update_addon(self, addon: Addon) -> None:
        """Record ``addon``'s plan and URL (a plan change); the rest never changes."""
        await self.conn.execute(
            addons.update().where(addons.c.id == addon.id).values(plan=addon.plan, url=addon.url)
        )

    async def remove_addon(self, addon: Addon) -> None:
        await self.conn.execute(addons.delete().where(addons.c.id == addon.id))

    # -- builds ---------------------------------------------------------------

    async def add_build(
        self,
        app: App,
        *,
        build_id: str,
        source_url: str,
        source_version: str | None,
        actor: str,
        now: float,
        source_ref: str | None = None,
    ) -> Build:
        await self.conn.execute(
            builds.insert().values(
                id=build_id,
                app_id=app.id,
                status=BuildStatus.PENDING.value,
                source_url=source_url,
                source_version=source_version,
                source_ref=source_ref,
                procfile={},
                output="",
                actor=actor,
                created_at=now,
            )
        )
        return await self.get_build(app, build_id)

    async def finish_build(
        self,
        app: App,
        build_id: str,
        status: BuildStatus,
        *,
        now: float,
        output: str = "",
        commit: str | None = None,
        artifact: str | None = None,
        digest: str | None = None,
        procfile: Mapping[str, str] | None = None,
    ) -> None:
        await self.conn.execute(
            builds.update()
            .where(builds.c.app_id == app.id, builds.c.id == build_id)
            .values(
                status=status.value,
                output=output,
                commit=commit,
                artifact=artifact,
                digest=digest,
                procfile=dict(procfile or {}),
                finished_at=now,
            )
        )

    async def set_build_release(self, app: App, build_id: str, version: int) -> None:
        await self.conn.execute(
            builds.update()
            .where(builds.c.app_id == app.id, builds.c.id == build_id)
            .values(release_version=version)
        )

    async def get_build(self, app: App, build_id: str) -> Build:
        row = (
            await self.conn.execute(
                _builds_query().where(builds.c.app_id == app.id, builds.c.id == build_id)
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"{app.name} has no build {build_id!r}", id="build_not_found")
        return _build(row, app.name)

    async def list_builds(self, app: App, *, limit: int) -> list[Build]:
        """The newest ``limit`` builds, oldest first (Heroku lists builds the same way)."""
        query = (
            _builds_query()
            .where(builds.c.app_id == app.id)
            .order_by(builds.c.created_at.desc(), builds.c.id.desc())
            .limit(limit)
        )
        return [_build(row, app.name) for row in await self.conn.execute(query)][::-1]

    async def has_artifact(self, app: App, artifact: str) -> bool:
        """Whether one of ``app``'s builds made ``artifact`` or one of its releases ran it."""
        built = sa.select(builds.c.id).where(
            builds.c.app_id == app.id, builds.c.artifact == artifact
        )
        released = sa.select(releases.c.id).where(
            releases.c.app_id == app.id, releases.c.artifact == artifact
        )
        query = sa.select(sa.or_(sa.exists(built), sa.exists(released)))
        return bool((await self.conn.execute(query)).scalar())

    async def last_builds(self) -> dict[str, float]:
        """App name -> when its newest build was made (apps without builds are absent)."""
        query = (
            sa.select(apps.c.name, sa.func.max(builds.c.created_at))
            .join(builds, builds.c.app_id == apps.c.id)
            .group_by(apps.c.name)
        )
        return {row[0]: row[1] for row in await self.conn.execute(query)}

    async def pending_builds(self) -> list[Build]:
        """Builds not finished, oldest first, across apps."""
        query = (
            _builds_query()
            .add_columns(apps.c.name.label("app_name"))
            .join(apps, apps.c.id == builds.c.app_id)
            .where(builds.c.status == BuildStatus.PENDING.value)
            .order_by(builds.c.created_at)
        )
        return [_build(row, row.app_name) for row in await self.conn.execute(query)]

    async def fail_interrupted_builds(self, *, now: float) -> int:
        """Pending builds left by a crash have no process left to finish them."""
        result = await self.conn.execute(
            builds.update()
            .where(builds.c.status == BuildStatus.PENDING.value)
            .values(
                status=BuildStatus.FAILED.value,
                output="interrupted: the control plane stopped",
                finished_at=now,
            )
        )
        return result.rowcount

    # -- tokens ---------------------------------------------------------------

    async def add_token(
        self,
        *,
        name: str,
        digest: str,
        admin: bool,
        app: App | None,
        now: float,
        user_id: int | None = None,
    ) -> Token:
        token_id = secrets.token_hex(8)
        await self.conn.execute(
            tokens.insert().values(
                id=token_id,
                name=name,
                hash=digest,
                admin=admin,
                app_id=None if app is None else app.id,
                created_at=now,
                user_id=user_id,
            )
        )
        return Token(
            id=token_id,
            name=name,
            admin=admin,
            app=None if app is None else app.name,
            created_at=now,
        )

    async def find_token(self, digest: str) -> Token | None:
        query = (
            sa.select(tokens, apps.c.name.label("app_name"), users.c.name.label("user_name"))
            .select_from(
                tokens.outerjoin(apps, apps.c.id == tokens.c.app_id).outerjoin(
                    users, users.c.id == tokens.c.user_id
                )
            )
            .where(tokens.c.hash == digest)
        )
        row = (await self.conn.execute(query)).one_or_none()
        if row is None:
            return None
        member_of: frozenset[str] = frozenset()
        if row.user_id is not None and not row.admin:
            member_of = await self.member_apps(row.user_id)
        return Token(
            id=row.id,
            name=row.name,
            admin=row.admin,
            app=row.app_name,
            created_at=row.created_at,
            user=row.user_name,
            apps=member_of,
        )

    async def member_apps(self, user_id: int) -> frozenset[str]:
        """The names of the apps a (collaborator) user is a member of."""
        query = (
            sa.select(apps.c.name)
            .select_from(memberships.join(apps, apps.c.id == memberships.c.app_id))
            .where(memberships.c.user_id == user_id)
        )
        return frozenset(r.name for r in await self.conn.execute(query))

    async def delete_token(self, token_id: str) -> None:
        result = await self.conn.execute(tokens.delete().where(tokens.c.id == token_id))
        if result.rowcount == 0:
            raise NotFound(f"no token {token_id!r}", id="token_not_found")

    # -- audit ----------------------------------------------------------------

    async def record(
        self,
        *,
        actor: str,
        action: str,
        app: str | None,
        detail: Mapping[str, Any],
        now: float,
    ) -> None:
        # Masked here, the one way into the audit log: no call site can leak a URL's
        # credentials into it.
        await self.conn.execute(
            audit.insert().values(
                at=now, actor=actor, action=action, app=app, detail=mask_data(dict(detail))
            )
        )

    async def list_audit(
        self, *, app: str | None, after: int | None, limit: int
    ) -> list[AuditEntry]:
        query = audit.select().order_by(audit.c.id).limit(limit)
        if app is not None:
            query = query.where(audit.c.app == app)
        if after is not None:
            query = query.where(audit.c.id > after)
        return [
            AuditEntry(
                id=row.id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                app=row.app,
                detail=dict(row.detail),
            )
            for row in await self.conn.execute(query)
        ]
