"""The route table the agent publishes, in the router's wire form.

These TypedDicts have the shape of ``router.routes.RouteTablePayload`` (the
router must not import the agent, and the agent does not need the router's
code to speak its format); a test checks the router parses what we build.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from agent.machine import AppMachine


class EndpointWire(TypedDict):
    host: str
    port: int
    dyno: str


class AppRouteWire(TypedDict):
    hosts: list[str]
    endpoints: list[EndpointWire]
    state: str
    boot_timeout: float
    max_held: int
    reason: str


class RouteTableWire(TypedDict):
    version: int
    apps: dict[str, AppRouteWire]


def app_route(machine: AppMachine) -> AppRouteWire:
    view = machine.view()
    policy = machine.config.policy
    return {
        "hosts": list(machine.config.hosts),
        "endpoints": [{"host": h, "port": p, "dyno": d} for h, p, d in view.endpoints],
        "state": view.state,
        "boot_timeout": policy.boot_timeout,
        "max_held": policy.max_held,
        "reason": view.reason,
    }


def route_table(version: int, machines: Iterable[AppMachine]) -> RouteTableWire:
    """Apps without hosts (workers only) are not routed and not listed."""
    return {
        "version": version,
        "apps": {m.name: app_route(m) for m in machines if m.config.hosts},
    }
