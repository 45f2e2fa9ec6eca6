"""The poll loop: every interval, every due server target, a bounded number at once.

Each target's poll runs under its own timeout (below the interval), so a server
that never answers costs one slot for ``timeout`` seconds and nothing else: the
other targets' snapshots stay fresh. A failure closes the kept connection and
backs the target off (:mod:`exporters.backoff`); its snapshot says ``up 0`` with
the bounded error kind until a poll succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from exporters import backoff
from exporters.collector import SnapshotStore
from exporters.errors import ErrorKind, PollError, classify
from exporters.samples import down
from exporters.settings import ExporterSettings
from exporters.sources import Source
from exporters.targets import Target

log = logging.getLogger(__name__)


class Poller:
    def __init__(
        self,
        *,
        source: Source,
        store: SnapshotStore,
        settings: ExporterSettings,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._store = store
        self._settings = settings
        self._clock = clock
        self._wall = wall
        self._servers: list[Target] = []
        self._members: dict[str, list[Target]] = {}
        self._states: dict[str, backoff.PollState] = {}
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self.rounds = 0

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    @property
    def targets(self) -> list[Target]:
        return [*self._servers, *(m for ms in self._members.values() for m in ms)]

    async def set_targets(self, targets: Sequence[Target]) -> None:
        """Adopt a new target list: changed or removed targets lose their connection."""
        old = {t.name: t for t in self.targets}
        new = {t.name: t for t in targets}
        for name, target in old.items():
            if target.is_database:
                continue
            if new.get(name) != target:
                await self._source.forget(name)
                self._states.pop(name, None)
        self._servers = [t for t in targets if not t.is_database]
        self._members = {}
        for target in targets:
            if target.server is not None:
                self._members.setdefault(target.server, []).append(target)
        self._store.set_targets(targets)

    async def poll_once(self) -> None:
        """One round: poll every due server target, at most ``concurrency`` at once."""
        now = self._now()
        interval = self._settings.interval
        due = [
            t
            for t in self._servers
            if backoff.is_due(self._states.get(t.name, backoff.PollState()), now, interval=interval)
        ]
        if due:
            await asyncio.gather(*(self._poll_one(t, now) for t in due))
        self.rounds += 1
        self._store.round_duration = self._now() - now
        self._store.generation += 1

    async def _poll_one(self, target: Target, tick: float) -> None:
        members = self._members.get(target.name, [])
        async with self._semaphore:
            started = self._now()
            try:
                async with asyncio.timeout(self._settings.timeout):
                    outcomes = await self._source.poll(target, members)
            except (PollError, TimeoutError) as exc:
                kind = classify(exc)
                duration = self._now() - started
                await self._source.forget(target.name)
                self._fail(target, members, kind, duration, tick)
                return
            except Exception:
                # A bug in a mapping must not stop the other targets; it is logged with
                # its traceback and the target reported down as "protocol".
                log.exception("poll crashed", extra={"target": target.name})
                await self._source.forget(target.name)
                self._fail(target, members, ErrorKind.PROTOCOL, self._now() - started, tick)
                return
        duration = self._now() - started
        wall = self._wall()
        pairs = [(m, outcomes[m.name]) for m in [target, *members] if m.name in outcomes]
        # Rendering a server with hundreds of add-on databases is ~100 ms of CPU; in a
        # worker thread the loop keeps answering scrapes (from the previous body) meanwhile.
        snapshots = await asyncio.to_thread(
            lambda: [self._store.prepare(m, o, duration=duration, now_wall=wall) for m, o in pairs]
        )
        self._store.commit(snapshots)
        self._states[target.name] = backoff.after_success(tick, interval=self._settings.interval)

    def _fail(
        self,
        target: Target,
        members: list[Target],
        kind: ErrorKind,
        duration: float,
        tick: float,
    ) -> None:
        state = backoff.after_failure(
            self._states.get(target.name, backoff.PollState()),
            tick,
            interval=self._settings.interval,
            cap=self._settings.max_backoff,
        )
        self._states[target.name] = state
        log.warning(
            "poll failed",
            extra={"target": target.name, "error": kind.value, "failures": state.failures},
        )
        wall = self._wall()
        up_name = self._source.up_name
        self._store.put(target, down(up_name, kind), duration=duration, now_wall=wall)
        for member in members:
            self._store.put(
                member, down(up_name, ErrorKind.SERVER_DOWN), duration=duration, now_wall=wall
            )
