"""The route table the agent publishes, in the wire form of ``kit.wire``."""

from __future__ import annotations

from collections.abc import Iterable

from agent.machine import AppMachine
from kit.wire import AppRoutePayload, RouteTablePayload


def app_route(machine: AppMachine) -> AppRoutePayload:
    view = machine.view()
    policy = machine.config.policy
    return {
        "hosts": list(machine.config.hosts),
        "endpoints": [{"host": h, "port": p, "dyno": d} for h, p, d in view.endpoints],
        "state": view.state,
        "boot_timeout": policy.boot_timeout,
        "max_held": policy.max_held,
        "reason": view.reason,
        "maintenance": machine.config.maintenance,
    }


def route_table(version: int, machines: Iterable[AppMachine]) -> RouteTablePayload:
    """Apps without hosts (workers only) are not routed and not listed."""
    return {
        "version": version,
        "apps": {m.name: app_route(m) for m in machines if m.config.hosts},
    }
