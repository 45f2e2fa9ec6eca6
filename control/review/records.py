"""What review apps leave in the state store: GitHub deliveries and each app's status.

A delivery id is claimed in the store, so GitHub's redelivery of a handled
delivery is recognised after a restart too; ids older than ``DELIVERY_TTL``
are pruned as new ones arrive (GitHub offers redelivery for 3 days). A
delivery whose plan failed may be claimed again: redelivering it from
GitHub's "Recent Deliveries" is how someone retries after fixing the cause.

The status of an app (review app, or the staging app a push deploys) is what
its last plan came to, with the reason, and app.json's ``pr-predestroy`` as
last deployed, so a stale or closed app runs it even when its branch is gone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from control.errors import Conflict
from control.store.db import Store
from control.store.schema import github_deliveries, review_apps

#: Seconds a delivery id is remembered: GitHub lets people redeliver for 3 days; 7 is ample.
DELIVERY_TTL = 7 * 86400.0
#: Characters of a reason kept: the cause and the tail of what a command said.
REASON_LIMIT = 2000
#: What a plan cut short by a stop of the control plane says.
INTERRUPTED = (
    "the control plane stopped before this delivery's plan finished; "
    "redeliver it from the webhook's Recent Deliveries on GitHub"
)


class DeliveryState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ReviewState(enum.StrEnum):
    PENDING = "pending"
    DEPLOYED = "deployed"
    DESTROYED = "destroyed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    event: str
    app: str
    summary: str
    state: DeliveryState
    reason: str
    received_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class ReviewStatus:
    app: str
    state: ReviewState
    reason: str
    commit: str | None
    delivery: str | None
    predestroy: str | None
    updated_at: float


class _Keep(enum.Enum):
    KEEP = "keep"


#: ``set_status(predestroy=KEEP)``: leave the recorded command as it is.
KEEP = _Keep.KEEP


class ReviewRecords:
    def __init__(self, store: Store, *, keep: float = DELIVERY_TTL) -> None:
        self._store = store
        self._keep = keep

    async def claim(self, delivery: str, *, event: str, app: str, summary: str, now: float) -> bool:
        """True when ``delivery`` is new or failed before (it is now running); else False."""
        try:
            async with self._store.tx() as tx:
                conn = tx.conn
                await conn.execute(
                    github_deliveries.delete().where(
                        github_deliveries.c.received_at < now - self._keep
                    )
                )
                row = (
                    await conn.execute(
                        sa.select(github_deliveries.c.state).where(
                            github_deliveries.c.id == delivery
                        )
                    )
                ).first()
                values = {
                    "event": event,
                    "app": app,
                    "summary": summary[:500],
                    "state": DeliveryState.RUNNING.value,
                    "reason": "",
                    "received_at": now,
                    "finished_at": None,
                }
                if row is None:
                    await conn.execute(github_deliveries.insert().values(id=delivery, **values))
                    return True
                if row.state != DeliveryState.FAILED.value:
                    return False
                result = await conn.execute(
                    github_deliveries.update()
                    .where(
                        github_deliveries.c.id == delivery,
                        github_deliveries.c.state == DeliveryState.FAILED.value,
                    )
                    .values(**values)
                )
                return bool(result.rowcount)
        except Conflict:
            return False  # the same delivery, claimed by a request running beside this one

    async def release(self, delivery: str) -> None:
        """Forget a claim whose plan never started, so GitHub's redelivery gets through."""
        async with self._store.tx() as tx:
            await tx.conn.execute(
                github_deliveries.delete().where(github_deliveries.c.id == delivery)
            )

    async def finish(self, delivery: str, *, ok: bool, reason: str, now: float) -> None:
        state = DeliveryState.SUCCEEDED if ok else DeliveryState.FAILED
        async with self._store.tx() as tx:
            await tx.conn.execute(
                github_deliveries.update()
                .where(github_deliveries.c.id == delivery)
                .values(state=state.value, reason=reason[:REASON_LIMIT], finished_at=now)
            )

    async def delivery(self, delivery: str) -> DeliveryRecord | None:
        async with self._store.tx(write=False) as tx:
            row = (
                await tx.conn.execute(
                    sa.select(github_deliveries).where(github_deliveries.c.id == delivery)
                )
            ).first()
        return None if row is None else _delivery(row)

    async def set_status(
        self,
        app: str,
        state: ReviewState,
        reason: str,
        *,
        now: float,
        commit: str | None = None,
        delivery: str | None = None,
        predestroy: str | _Keep | None = KEEP,
    ) -> None:
        values: dict[str, Any] = {
            "state": state.value,
            "reason": reason[:REASON_LIMIT],
            "updated_at": now,
        }
        if commit is not None:
            values["commit"] = commit
        if delivery is not None:
            values["delivery"] = delivery
        if predestroy is not KEEP:
            values["predestroy"] = predestroy
        async with self._store.tx() as tx:
            result = await tx.conn.execute(
                review_apps.update().where(review_apps.c.app == app).values(**values)
            )
            if not result.rowcount:
                await tx.conn.execute(review_apps.insert().values(app=app, **values))

    async def status(self, app: str) -> ReviewStatus | None:
        async with self._store.tx(write=False) as tx:
            row = (
                await tx.conn.execute(sa.select(review_apps).where(review_apps.c.app == app))
            ).first()
        return None if row is None else _status(row)

    async def predestroys(self) -> Mapping[str, str]:
        """App -> its recorded pr-predestroy, for apps not destroyed yet."""
        async with self._store.tx(write=False) as tx:
            rows = await tx.conn.execute(
                sa.select(review_apps.c.app, review_apps.c.predestroy).where(
                    review_apps.c.predestroy.is_not(None),
                    review_apps.c.state != ReviewState.DESTROYED.value,
                )
            )
            return {row.app: row.predestroy for row in rows}

    async def interrupted(self, *, before: float, now: float) -> int:
        """Plans running when the control plane stopped: failed, saying how to run them again.

        Only those received ``before`` this start: a delivery claimed since is this
        process's own.
        """
        async with self._store.tx() as tx:
            result = await tx.conn.execute(
                github_deliveries.update()
                .where(
                    github_deliveries.c.state == DeliveryState.RUNNING.value,
                    github_deliveries.c.received_at < before,
                )
                .values(state=DeliveryState.FAILED.value, reason=INTERRUPTED, finished_at=now)
            )
            await tx.conn.execute(
                review_apps.update()
                .where(
                    review_apps.c.state == ReviewState.PENDING.value,
                    review_apps.c.updated_at < before,
                )
                .values(state=ReviewState.FAILED.value, reason=INTERRUPTED, updated_at=now)
            )
            return int(result.rowcount)


def _delivery(row: sa.Row[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        event=row.event,
        app=row.app,
        summary=row.summary,
        state=DeliveryState(row.state),
        reason=row.reason,
        received_at=row.received_at,
        finished_at=row.finished_at,
    )


def _status(row: sa.Row[Any]) -> ReviewStatus:
    return ReviewStatus(
        app=row.app,
        state=ReviewState(row.state),
        reason=row.reason,
        commit=row.commit,
        delivery=row.delivery,
        predestroy=row.predestroy,
        updated_at=row.updated_at,
    )
