"""The add-ons' health on the app page, from the exporters' Heroku-style series.

Read, in this order of preference, from:

- the exporter's ``/probe?target=NAME`` (the target is the add-on's name, as
  control/exporter_targets.py writes it) when ``SLIPWAY_EXPORTER_POSTGRES_URL`` /
  ``SLIPWAY_EXPORTER_REDIS_URL`` is set;
- else Prometheus' instant query when ``SLIPWAY_PROMETHEUS_URL`` is set (the same
  series, by their ``target`` label);
- else nothing: the page says "no health source configured".

Postgres add-ons also show their backup health when backups are configured
(``Backups.health``). Every read shares one deadline (:data:`DEADLINE`), so a slow or
dead exporter costs the page at most that much; what did not answer in time is shown
as "unknown". Thresholds are docs/dashboard.md's ("Add-on health").
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from control.backups.service import Health as BackupHealth
from control.dashboard.html import Html, h, join
from control.models import Addon

#: Seconds every health read of one page may take together.
DEADLINE = 0.25

GREEN, AMBER, RED, UNKNOWN = "green", "amber", "red", "unknown"
_RANK = {GREEN: 0, UNKNOWN: 1, AMBER: 2, RED: 3}

#: The series read; for series with a ``datname`` (one per database), the worst is kept.
POSTGRES_SERIES = (
    "pg_up",
    "slipway_pg_connections_used_ratio",
    "slipway_pg_cache_hit_ratio",
    "slipway_pg_long_running_queries",
    "slipway_pg_idle_in_transaction",
    "slipway_pg_waiting_queries",
    "slipway_pg_database_size_plan_ratio",
)
REDIS_SERIES = (
    "redis_up",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "slipway_redis_memory_used_ratio",
    "slipway_redis_clients_used_ratio",
)
#: Where a lower value is the worse one (the worst of several databases is the minimum).
LOWER_IS_WORSE = {"pg_up", "redis_up", "slipway_pg_cache_hit_ratio"}


class BackupsReader(Protocol):
    """``Backups`` (control/backups/service.py): each Postgres add-on's backup health."""

    def health(self, app: str) -> Awaitable[list[BackupHealth]]: ...


@dataclass(frozen=True, slots=True)
class Check:
    label: str
    value: str
    state: str


@dataclass(frozen=True, slots=True)
class AddonHealth:
    source: str  # "exporter", "prometheus", or "" (none configured)
    checks: tuple[Check, ...] = ()
    #: Why there are no checks (unreachable, timed out, no source), else "".
    note: str = ""

    @property
    def state(self) -> str:
        if not self.checks:
            return UNKNOWN
        return max((c.state for c in self.checks), key=_RANK.__getitem__)


@dataclass
class HealthSources:
    """Where health is read from; the control plane fills ``backups`` once it has them."""

    exporters: dict[str, str] = field(default_factory=dict)  # service -> exporter base URL
    prometheus_url: str | None = None
    backups: BackupsReader | None = None
    deadline: float = DEADLINE

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HealthSources:
        named = {"postgres": "SLIPWAY_EXPORTER_POSTGRES_URL", "redis": "SLIPWAY_EXPORTER_REDIS_URL"}
        exporters = {
            service: url.rstrip("/")
            for service, var in named.items()
            if (url := env.get(var, "").strip())
        }
        prometheus = env.get("SLIPWAY_PROMETHEUS_URL", "").strip().rstrip("/") or None
        return cls(exporters=exporters, prometheus_url=prometheus)


def parse_samples(text: str, names: Sequence[str]) -> dict[str, float]:
    """The worst value of each wanted series in a text exposition (format 0.0.4)."""
    wanted = set(names)
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        if brace >= 0:
            name = line[:brace]
            rest = line[line.rfind("}") + 1 :].split()
        else:
            name, *rest = line.split()
        if name not in wanted or not rest:
            continue
        try:
            value = float(rest[0])
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        _keep_worst(out, name, value)
    return out


def _keep_worst(out: dict[str, float], name: str, value: float) -> None:
    if name not in out:
        out[name] = value
    elif name in LOWER_IS_WORSE:
        out[name] = min(out[name], value)
    else:
        out[name] = max(out[name], value)


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def _ratio_state(value: float, amber: float, red: float) -> str:
    return RED if value > red else AMBER if value > amber else GREEN


def postgres_checks(values: Mapping[str, float]) -> list[Check]:
    """docs/dashboard.md's thresholds for a Postgres add-on."""
    if values.get("pg_up") == 0:
        return [Check("up", "down: the exporter cannot reach it", RED)]
    out = []
    if (v := values.get("slipway_pg_connections_used_ratio")) is not None:
        out.append(Check("connections", _percent(v), _ratio_state(v, 0.80, 0.95)))
    if (v := values.get("slipway_pg_cache_hit_ratio")) is not None:
        out.append(Check("cache hit", _percent(v), AMBER if v < 0.99 else GREEN))
    for name, label in (
        ("slipway_pg_long_running_queries", "long-running queries"),
        ("slipway_pg_idle_in_transaction", "idle in transaction"),
        ("slipway_pg_waiting_queries", "waiting on a lock"),
    ):
        if (v := values.get(name)) is not None:
            out.append(Check(label, f"{v:.0f}", AMBER if v > 0 else GREEN))
    if (v := values.get("slipway_pg_database_size_plan_ratio")) is not None:
        out.append(Check("size of plan", _percent(v), _ratio_state(v, 0.75, 0.90)))
    return out


def redis_checks(values: Mapping[str, float]) -> list[Check]:
    """docs/dashboard.md's thresholds for a Redis add-on."""
    if values.get("redis_up") == 0:
        return [Check("up", "down: the exporter cannot reach it", RED)]
    out = []
    used, most = values.get("redis_memory_used_bytes"), values.get("redis_memory_max_bytes")
    ratio = used / most if used is not None and most else None
    if ratio is None:
        ratio = values.get("slipway_redis_memory_used_ratio")
    if ratio is not None:
        out.append(Check("memory", _percent(ratio), _ratio_state(ratio, 0.80, 0.95)))
    elif used is not None:
        out.append(Check("memory", f"{used / 2**20:.1f} MiB, no limit", GREEN))
    if (v := values.get("slipway_redis_clients_used_ratio")) is not None:
        out.append(Check("clients", _percent(v), _ratio_state(v, 0.80, 0.95)))
    return out


CHECKS: dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, float]], list[Check]]]] = {
    "postgres": (POSTGRES_SERIES, postgres_checks),
    "redis": (REDIS_SERIES, redis_checks),
}


async def _from_exporter(
    session: aiohttp.ClientSession, base: str, addon: Addon, names: Sequence[str]
) -> dict[str, float] | str:
    try:
        async with session.get(f"{base}/probe", params={"target": addon.name}) as reply:
            if reply.status == 404:
                return "not yet a target of the exporter"
            if reply.status != 200:
                return f"the exporter answered {reply.status}"
            return parse_samples(await reply.text(), names)
    except (aiohttp.ClientError, OSError) as exc:
        return f"exporter unreachable ({exc.__class__.__name__})"


async def _from_prometheus(
    session: aiohttp.ClientSession, base: str, addon: Addon, names: Sequence[str]
) -> dict[str, float] | str:
    # Add-on names are [a-z0-9-]: nothing to escape in the selector.
    query = f'{{__name__=~"{"|".join(names)}",target="{addon.name}"}}'
    try:
        async with session.get(f"{base}/api/v1/query", params={"query": query}) as reply:
            body: Any = await reply.json(content_type=None)
            status = reply.status
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"Prometheus unreachable ({exc.__class__.__name__})"
    if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
        return f"Prometheus answered {status}"
    out: dict[str, float] = {}
    for item in body["data"]["result"]:
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            _keep_worst(out, str(item["metric"].get("__name__", "")), value)
    return out


async def _one(session: aiohttp.ClientSession, sources: HealthSources, addon: Addon) -> AddonHealth:
    if addon.service not in CHECKS:
        return AddonHealth("", note="no health series for this service")
    names, checks = CHECKS[addon.service]
    exporter = sources.exporters.get(addon.service)
    if exporter is not None:
        source, read = "exporter", await _from_exporter(session, exporter, addon, names)
    elif sources.prometheus_url is not None:
        source = "prometheus"
        read = await _from_prometheus(session, sources.prometheus_url, addon, names)
    else:
        return AddonHealth("", note="no health source configured")
    if isinstance(read, str):
        return AddonHealth(source, note=read)
    found = checks(read)
    return AddonHealth(source, tuple(found), "" if found else "no series for it yet")


async def read_health(
    sources: HealthSources, app: str, addons: Sequence[Addon]
) -> dict[str, AddonHealth]:
    """Each add-on's health by name, within ``sources.deadline`` seconds in all."""
    out = {a.name: AddonHealth("", note="no health source configured") for a in addons}
    timeout = aiohttp.ClientTimeout(total=sources.deadline)
    pending: dict[str, asyncio.Task[AddonHealth]] = {}
    backups: asyncio.Task[list[BackupHealth]] | None = None
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if sources.exporters or sources.prometheus_url:
            pending = {a.name: asyncio.ensure_future(_one(session, sources, a)) for a in addons}
        if sources.backups is not None and any(a.service == "postgres" for a in addons):
            backups = asyncio.ensure_future(sources.backups.health(app))
        waited: list[asyncio.Future[Any]] = [*pending.values()]
        if backups is not None:
            waited.append(backups)
        if waited:
            await asyncio.wait(waited, timeout=sources.deadline)
        for name, task in pending.items():
            if task.done() and task.exception() is None:
                out[name] = task.result()
            else:
                task.cancel()
                out[name] = AddonHealth(
                    "exporter" if sources.exporters else "prometheus",
                    note=f"no answer within {sources.deadline * 1000:.0f} ms",
                )
    if backups is not None:
        if backups.done() and backups.exception() is None:
            for item in backups.result():
                if item.addon in out:
                    old = out[item.addon]
                    backup = Check("backups", item.reason, RED if item.state == RED else GREEN)
                    out[item.addon] = AddonHealth(old.source, (*old.checks, backup), old.note)
        else:
            backups.cancel()
    return out


def render(health: AddonHealth | None) -> Html:
    """An add-on's health cell: its overall state, then each check (all escaped)."""
    if health is None:
        return h('<span class="health unknown">unknown</span>')
    checks = join(
        h('<li class="health {}">{}: {} <span class="sr">({})</span></li>', c.state, c.label,
          c.value, c.state)
        for c in health.checks
    )  # fmt: skip
    note = h('<p class="health-note">{}</p>', health.note) if health.note else ""
    return h(
        '<span class="health {}" data-health="{}">{}</span><ul class="health">{}</ul>{}',
        health.state,
        health.state,
        health.state,
        checks,
        note,
    )
