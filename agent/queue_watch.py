"""The I/O shell of queue-depth workers: read each worker type's queue, ask the agent for workers.

Every ``interval`` seconds the watcher reads each source of every app the agent
runs (``AppConfig.queues``): a few Redis reads in one pipeline on the app's own
Redis (the URL in its config var), or the app's Postgres query in a read-only,
time-limited session. Each reading goes through ``queues.decide``; a change is
logged with its reason and handed to the agent (``demand``), which runs
``max(what the app's phase asks, what the queue asks)`` workers, so a job queued
while the app sleeps starts a worker without any web request, and the worker
sleeps again once its queue stayed empty for the app's ``idle_after``.

Every read is bounded (``READ_TIMEOUT``); a source that cannot be read keeps the
last decision and is reported once per outage, not once per poll. The watcher is
one task of the agent's task set (``agent-queues``): if it dies, the process
stops, as for any other task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import RedisError

from agent.apps import AppConfig
from agent.metrics import remove_series
from agent.queues import Depth, Kind, Op, QueueSource, QueueState, decide

log = logging.getLogger(__name__)

#: How often each queue is read. One LLEN a second per worker type costs Redis nothing,
#: and a job waits at most this long before its worker is asked for.
INTERVAL = 1.0
#: Bound on one source's reading (connect included): a stuck server delays one poll only.
READ_TIMEOUT = 2.0

Demand = Callable[[str, str, int], None]


@dataclass
class _Watched:
    state: QueueState = field(default_factory=QueueState)
    #: The last reading that succeeded.
    depth: Depth | None = None
    #: Why the source could not be read last time ("" when it could): logged once per outage.
    failing: str = ""


class QueueMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Gauge(
            "slipway_queue_jobs",
            "Jobs in a worker type's queue at the last reading",
            ["app", "process_type", "state"],
            registry=registry,
        )
        self.decisions = Counter(
            "slipway_queue_scale_decisions_total",
            "Worker counts changed by queue depth",
            ["app", "process_type", "direction"],
            registry=registry,
        )


class QueueWatcher:
    def __init__(
        self,
        *,
        apps: Callable[[], Iterable[AppConfig]],
        demand: Demand,
        registry: CollectorRegistry,
        interval: float = INTERVAL,
    ) -> None:
        self._apps = apps
        self._demand = demand
        self._interval = interval
        self._watched: dict[tuple[str, str], _Watched] = {}
        self._redis: dict[str, aioredis.Redis] = {}
        self._postgres: dict[str, psycopg.AsyncConnection[tuple[object, ...]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.metrics = QueueMetrics(registry)

    async def run(self) -> None:
        """Poll until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.poll(loop.time())
                await asyncio.sleep(self._interval)
        finally:
            await self.close()

    async def poll(self, now: float) -> None:
        """Read every source once, all at once (one slow server delays no other app), and
        hand each changed decision to the agent."""
        jobs: list[tuple[AppConfig, str, QueueSource, _Watched]] = []
        for config in list(self._apps()):
            for process, source in config.queues.items():
                if process not in config.processes or process in config.always_on:
                    continue  # not run, or never asleep: nothing to wake
                watched = self._watched.setdefault((config.name, process), _Watched())
                jobs.append((config, process, source, watched))
        depths = await asyncio.gather(
            *(
                self._read((c.name, p), source, c.processes[p].env, watched)
                for c, p, source, watched in jobs
            )
        )
        for (config, process, source, watched), depth in zip(jobs, depths, strict=True):
            if self._watched.get((config.name, process)) is not watched:
                continue  # its app was deleted while the sources were read (``forget``)
            self._decide(config, process, source, watched, depth, now)
        seen = {(c.name, p) for c, p, _, _ in jobs}
        for key in set(self._watched) - seen:
            # An app (or its source) gone: its demand goes with it, and its depth series.
            remove_series(self.metrics.jobs, app=key[0], process_type=key[1])
            if self._watched.pop(key).state.replicas:
                self._demand(key[0], key[1], 0)

    def forget(self, app: str) -> None:
        """A deleted app: what was read of its queues, and its series, go."""
        for key in [key for key in self._watched if key[0] == app]:
            del self._watched[key]
        remove_series(self.metrics.jobs, app=app)
        remove_series(self.metrics.decisions, app=app)

    def _decide(
        self,
        config: AppConfig,
        process: str,
        source: QueueSource,
        watched: _Watched,
        depth: Depth | None,
        now: float,
    ) -> None:
        decision = decide(
            source, depth, watched.state, idle_after=config.policy.idle_after, now=now
        )
        before, watched.state = watched.state.replicas, decision.state
        if depth is not None:
            watched.depth = depth
            self.metrics.jobs.labels(config.name, process, "waiting").set(depth.waiting)
            self.metrics.jobs.labels(config.name, process, "running").set(depth.running)
        if not decision.changed:
            return
        direction = "up" if decision.replicas > before else "down"
        self.metrics.decisions.labels(config.name, process, direction).inc()
        log.info(
            "workers scaled by queue",
            extra={
                "app": config.name,
                "process_type": process,
                "replicas": decision.replicas,
                "was": before,
                "reason": decision.reason,
                "waiting": depth.waiting if depth else None,
                "running": depth.running if depth else None,
                "source": str(source.kind),
            },
        )
        self._demand(config.name, process, decision.replicas)

    def view(self, app: str, process: str) -> dict[str, Any] | None:
        """What the watcher knows of one worker type's queue (the agent's status shows it)."""
        watched = self._watched.get((app, process))
        if watched is None:
            return None
        return {
            "workers": watched.state.replicas,
            "waiting": watched.depth.waiting if watched.depth else None,
            "running": watched.depth.running if watched.depth else None,
            "error": watched.failing or None,
        }

    async def _read(
        self, key: tuple[str, str], source: QueueSource, env: Mapping[str, str], watched: _Watched
    ) -> Depth | None:
        url = env.get(source.url_var)
        problem = ""
        depth = None
        if not url:
            problem = f"config var {source.url_var} is not set"
        else:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    if source.kind is Kind.POSTGRES:
                        depth = await self._read_postgres(url, source)
                    else:
                        depth = await self._read_redis(url, source)
            except (RedisError, OSError, TimeoutError, psycopg.Error, ValueError) as exc:
                problem = type(exc).__name__
                await self._drop(url)
        if problem and problem != watched.failing:
            log.warning(
                "queue cannot be read; workers stay as they are",
                extra={"app": key[0], "process_type": key[1], "error": problem},
            )
        elif not problem and watched.failing:
            log.info("queue readable again", extra={"app": key[0], "process_type": key[1]})
        watched.failing = problem
        return depth

    async def _read_redis(self, url: str, source: QueueSource) -> Depth:
        client = self._redis.get(url)
        if client is None:
            client = self._redis[url] = aioredis.Redis.from_url(
                url, socket_timeout=READ_TIMEOUT, socket_connect_timeout=READ_TIMEOUT
            )
        measures = source.measures()
        async with client.pipeline(transaction=False) as pipe:
            for measure in measures:
                if measure.op is Op.LLEN:
                    pipe.llen(measure.key)
                elif measure.op is Op.ZCARD:
                    pipe.zcard(measure.key)
                else:
                    pipe.hlen(measure.key)
            counts = await pipe.execute()
        waiting = sum(int(n) for m, n in zip(measures, counts, strict=True) if not m.busy)
        running = sum(int(n) for m, n in zip(measures, counts, strict=True) if m.busy)
        return Depth(waiting, running)

    async def _read_postgres(self, dsn: str, source: QueueSource) -> Depth:
        assert source.query is not None
        async with self._locks.setdefault(dsn, asyncio.Lock()):  # one connection per server
            conn = await self._connect_postgres(dsn)
        async with conn.cursor() as cursor:
            await cursor.execute(source.query.encode())
            row = await cursor.fetchone()
        if row is None or len(row) != 1:
            raise ValueError("the query must return one row of one number")
        value = row[0]
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError("the query must return one number")
        return Depth(max(0, int(value)))

    async def _connect_postgres(self, dsn: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
        conn = self._postgres.get(dsn)
        if conn is None or conn.closed:
            conn = self._postgres[dsn] = await psycopg.AsyncConnection.connect(
                dsn,
                autocommit=True,
                connect_timeout=max(1, int(READ_TIMEOUT)),
                application_name="slipway-queue-watch",
                # The app's own query, run read-only and briefly: it cannot write, nor hold
                # its server past a poll.
                options=f"-c statement_timeout={int(READ_TIMEOUT * 1000)}"
                " -c default_transaction_read_only=on",
            )
        return conn

    async def _drop(self, url: str) -> None:
        client = self._redis.pop(url, None)
        if client is not None:
            await client.aclose()
        conn = self._postgres.pop(url, None)
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        for url in list(self._redis) + list(self._postgres):
            await self._drop(url)
