"""The request charts on Kubernetes: the same points, read from Prometheus (``query_range``).

Configured by ``SLIPWAY_PROMETHEUS_URL``. The series are the routers' and the agent's
own (router/metrics.py, agent/metrics.py), summed over every router replica:

- requests: ``increase(slipway_router_requests_total[step])`` by ``status_class``;
- latency: ``histogram_quantile`` of ``slipway_router_request_duration_seconds``
  (so as exact as its buckets, 5 ms .. 30 s; the rollup's sketch is finer);
- H-codes: ``increase(slipway_router_errors_total[step])`` by ``code``;
- wakes and wake time: ``slipway_agent_wakes_total`` and
  ``slipway_agent_wake_duration_seconds``; sleeps, wakes and crashes, as events,
  at each step where ``slipway_agent_{sleeps,wakes,crashes}_total`` went up.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp

from control.errors import ApiError
from control.rollup.store import STATUS_CLASSES, EventJson, PointJson

#: Seconds a Prometheus query may take before the chart says it is unavailable.
QUERY_TIMEOUT = 10.0


class MetricsUnavailable(ApiError):
    status = 503
    default_id = "metrics_unavailable"


Series = dict[str, dict[int, float]]  # label value -> {timestamp: value}


class PrometheusSource:
    name = "prometheus"

    def __init__(self, url: str, *, timeout: float = QUERY_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _range(self, query: str, by: str, since: float, until: float, step: int) -> Series:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        params = {"query": query, "start": str(since), "end": str(until), "step": str(step)}
        try:
            async with self._session.get(f"{self.url}/api/v1/query_range", params=params) as r:
                body: Any = await r.json(content_type=None)
                status = r.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise MetricsUnavailable(
                f"cannot read Prometheus at {self.url} ({exc.__class__.__name__}); "
                "check SLIPWAY_PROMETHEUS_URL and that Prometheus is up"
            ) from exc
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise MetricsUnavailable(f"Prometheus answered {status} to a query: {error}")
        out: Series = {}
        for item in body["data"]["result"]:
            label = str(item.get("metric", {}).get(by, ""))
            values = out.setdefault(label, {})
            for stamp, raw in item["values"]:
                value = float(raw)
                if math.isfinite(value):
                    values[int(float(stamp))] = value
        return out

    async def points(self, app: str, *, since: float, until: float, step: int) -> list[PointJson]:
        sel = f'{{app="{app}"}}'  # app names are [a-z0-9-]: nothing to escape
        window = f"[{step}s]"

        def quantile(q: float, metric: str) -> str:
            return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{sel}{window})))"

        start = int(since // step * step)
        queries = {
            "requests": (
                f"sum by (status_class) (increase(slipway_router_requests_total{sel}{window}))",
                "status_class",
            ),
            "p50": (quantile(0.5, "slipway_router_request_duration_seconds"), ""),
            "p95": (quantile(0.95, "slipway_router_request_duration_seconds"), ""),
            "p99": (quantile(0.99, "slipway_router_request_duration_seconds"), ""),
            "codes": (
                f"sum by (code) (increase(slipway_router_errors_total{sel}{window}))",
                "code",
            ),
            "wakes": (f"sum(increase(slipway_agent_wakes_total{sel}{window}))", ""),
            "wake_p50": (quantile(0.5, "slipway_agent_wake_duration_seconds"), ""),
            "wake_max": (quantile(1.0, "slipway_agent_wake_duration_seconds"), ""),
        }
        found = dict(
            zip(
                queries,
                await asyncio.gather(
                    *(self._range(q, by, start, until, step) for q, by in queries.values())
                ),
                strict=True,
            )
        )
        points: list[PointJson] = []
        for t in range(start, int(until) + 1, step):
            requests = {c: round(found["requests"].get(c, {}).get(t, 0.0)) for c in STATUS_CLASSES}
            lat = {q: found[q].get("", {}).get(t) for q in ("p50", "p95", "p99")}
            wake = {"p50": found["wake_p50"].get("", {}).get(t),
                    "max": found["wake_max"].get("", {}).get(t)}  # fmt: skip
            codes = {c: round(v[t]) for c, v in found["codes"].items() if round(v.get(t, 0))}
            points.append(
                {
                    "t": t,
                    "requests": requests,
                    "latency_ms": _ms(lat),
                    "codes": dict(sorted(codes.items())),
                    "wakes": round(found["wakes"].get("", {}).get(t, 0.0)),
                    "wake_ms": _ms(wake),
                }
            )
        return points

    async def events(self, app: str, *, since: float, until: float) -> list[EventJson]:
        # A minute's resolution is what the charts' time axis can show anyway.
        step = max(60, int((until - since) // 1000 // 60 * 60) or 60)
        out: list[EventJson] = []
        for metric, kind in (("slipway_agent_sleeps_total", "sleep"),
                             ("slipway_agent_wakes_total", "wake"),
                             ("slipway_agent_crashes_total", "crash")):  # fmt: skip
            query = f'sum(increase({metric}{{app="{app}"}}[{step}s])) > 0'
            series = await self._range(query, "", since, until, step)
            for t, count in sorted(series.get("", {}).items()):
                out.append({"t": float(t), "kind": kind, "detail": f"{round(count)} in {step}s"})
        return sorted(out, key=lambda e: e["t"])


def _ms(values: dict[str, float | None]) -> dict[str, float] | None:
    if any(v is None for v in values.values()):
        return None
    return {k: round(v * 1000, 1) for k, v in values.items() if v is not None}
