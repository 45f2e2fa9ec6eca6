"""What the dashboard reads from the store in one query each, for pages that show many apps.

Reads only: every change goes through ``Control`` (control/service.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa

from control.models import AuditEntry
from control.store.db import Store
from control.store.schema import apps, audit, domains, releases


@dataclass(frozen=True, slots=True)
class AppRow:
    name: str
    version: int | None
    description: str
    released_at: float | None
    actor: str
    domains: tuple[str, ...]


async def app_rows(store: Store, *, among: Collection[str] | None) -> list[AppRow]:
    """Every app (or those ``among``) with its current release and custom domains."""
    query = (
        sa.select(
            apps.c.id,
            apps.c.name,
            apps.c.current_release,
            releases.c.description,
            releases.c.created_at,
            releases.c.actor,
        )
        .select_from(
            apps.outerjoin(
                releases,
                sa.and_(
                    releases.c.app_id == apps.c.id, releases.c.version == apps.c.current_release
                ),
            )
        )
        .order_by(apps.c.name)
    )
    if among is not None:
        query = query.where(apps.c.name.in_(sorted(among)))
    async with store.tx(write=False) as tx:
        rows = (await tx.conn.execute(query)).all()
        hosts: dict[int, list[str]] = {}
        domain_query = sa.select(domains.c.app_id, domains.c.hostname).order_by(domains.c.hostname)
        for row in await tx.conn.execute(domain_query):
            hosts.setdefault(row.app_id, []).append(row.hostname)
    return [
        AppRow(
            name=r.name,
            version=r.current_release,
            description=r.description or "",
            released_at=r.created_at,
            actor=r.actor or "",
            domains=tuple(hosts.get(r.id, ())),
        )
        for r in rows
    ]


async def activity(store: Store, app: str, *, limit: int) -> list[AuditEntry]:
    """The app's newest audit entries first."""
    query = audit.select().where(audit.c.app == app).order_by(audit.c.id.desc()).limit(limit)
    async with store.tx(write=False) as tx:
        return [
            AuditEntry(
                id=r.id, at=r.at, actor=r.actor, action=r.action, app=r.app, detail=dict(r.detail)
            )
            for r in await tx.conn.execute(query)
        ]


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    version: int
    status: str
    description: str
    actor: str
    created_at: float
    #: Whether it has code to run (the initial release has none: nothing to roll back to).
    has_code: bool = True


async def recent_releases(store: Store, app_id: int, *, limit: int) -> list[ReleaseRow]:
    """The app's newest releases first."""
    query = (
        sa.select(
            releases.c.version,
            releases.c.status,
            releases.c.description,
            releases.c.actor,
            releases.c.created_at,
            releases.c.artifact,
        )
        .where(releases.c.app_id == app_id)
        .order_by(releases.c.version.desc())
        .limit(limit)
    )
    async with store.tx(write=False) as tx:
        return [
            ReleaseRow(
                version=r.version,
                status=r.status,
                description=r.description,
                actor=r.actor,
                created_at=r.created_at,
                has_code=r.artifact is not None,
            )
            for r in await tx.conn.execute(query)
        ]
