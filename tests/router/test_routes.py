"""The route table: host -> app, exact before wildcard, swapped atomically."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from router.errors import RouteTableError
from router.routes import AppRoute, AppState, Endpoint, Routes, RouteTable, load_file


def table() -> RouteTable:
    return RouteTable.build(
        1,
        [
            AppRoute("web", hosts=("www.example.com", "*.example.com")),
            AppRoute("pr", hosts=("*.pr.example.com",)),
            AppRoute("api", hosts=("api.example.com",)),
        ],
    )


@pytest.mark.parametrize(
    ("host", "app"),
    [
        ("www.example.com", "web"),
        ("WWW.Example.COM:8080", "web"),
        ("www.example.com.", "web"),
        ("api.example.com", "api"),
        ("anything.example.com", "web"),
        ("pr-7.pr.example.com", "pr"),  # the longest wildcard wins
        ("example.com", None),  # a wildcard needs a label in front
        ("other.test", None),
    ],
)
def test_hosts_resolve_exact_first_then_the_longest_wildcard(host: str, app: str | None) -> None:
    route = table().resolve(host)
    assert (route.name if route else None) == app


def test_one_host_for_two_apps_is_refused() -> None:
    with pytest.raises(RouteTableError, match="claimed by apps 'a' and 'b'"):
        RouteTable.build(1, [AppRoute("a", hosts=("x.test",)), AppRoute("b", hosts=("X.test",))])


def test_the_wire_form_round_trips() -> None:
    original = RouteTable.build(
        7,
        [
            AppRoute(
                "web",
                hosts=("a.test",),
                endpoints=(Endpoint("10.0.0.1", 5000, "web-abc"),),
                state=AppState.AWAKE,
                boot_timeout=12.0,
                max_held=5,
            )
        ],
    )
    again = RouteTable.from_payload(json.loads(json.dumps(original.to_payload())))
    assert again.apps == original.apps
    assert again.version == 7


@pytest.mark.parametrize(
    "payload",
    [
        {"apps": {}},
        {"version": 1, "apps": {"a": {}}},
        {"version": 1, "apps": {"a": {"hosts": ["a"], "state": "sleepy"}}},
        {"version": 1, "apps": {"a": {"hosts": ["a"], "endpoints": [{"host": "h"}]}}},
    ],
)
def test_a_malformed_table_is_refused_with_the_reason(payload: object) -> None:
    with pytest.raises(RouteTableError, match="malformed route table"):
        RouteTable.from_payload(payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([], "the table must be a JSON object"),
        ({"version": "1", "apps": {}}, "version must be an integer"),
        ({"version": True, "apps": {}}, "version must be an integer"),
        ({"version": 1, "apps": []}, "apps must be an object"),
        ({"version": 1, "apps": {"a": "x"}}, "app 'a' must be an object"),
        ({"version": 1, "apps": {"a": {"hosts": "a.test"}}}, "hosts must be a list of host names"),
        ({"version": 1, "apps": {"a": {"hosts": [1]}}}, "hosts must be a list of host names"),
        ({"version": 1, "apps": {"a": {"hosts": [], "endpoints": {}}}}, "endpoints must be a list"),
        (
            {"version": 1, "apps": {"a": {"hosts": [], "endpoints": [{"host": 5, "port": 1}]}}},
            "an endpoint's host must be",
        ),
        (
            {
                "version": 1,
                "apps": {"a": {"hosts": [], "endpoints": [{"host": "h", "port": "80"}]}},
            },
            "an endpoint's port must be an integer from 1 to 65535",
        ),
        (
            {"version": 1, "apps": {"a": {"hosts": [], "endpoints": [{"host": "h", "port": 0}]}}},
            "an endpoint's port must be an integer from 1 to 65535",
        ),
        ({"version": 1, "apps": {"a": {"hosts": [], "state": "sleepy"}}}, "state must be one of"),
        ({"version": 1, "apps": {"a": {"hosts": [], "boot_timeout": "60"}}}, "boot_timeout"),
        ({"version": 1, "apps": {"a": {"hosts": [], "boot_timeout": -1}}}, "boot_timeout"),
        ({"version": 1, "apps": {"a": {"hosts": [], "max_held": 2.5}}}, "max_held must be"),
        ({"version": 1, "apps": {"a": {"hosts": [], "max_held": True}}}, "max_held must be"),
        ({"version": 1, "apps": {"a": {"hosts": [], "reason": 7}}}, "reason must be a string"),
    ],
)
def test_each_wrong_field_is_named_in_the_refusal_before_any_route_is_built(
    payload: object, reason: str
) -> None:
    # Checked before typed objects exist: a compiled router would otherwise raise a bare
    # TypeError from a constructor instead of saying which field to fix.
    with pytest.raises(RouteTableError, match="malformed route table: .*" + re.escape(reason)):
        RouteTable.from_payload(payload)


def test_a_route_file_that_is_not_json_says_so(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text("{not json")
    with pytest.raises(RouteTableError, match="cannot read route table"):
        load_file(path)


async def test_a_waiter_is_released_by_the_swap_that_gives_its_app_endpoints() -> None:
    routes = Routes(RouteTable.build(1, [AppRoute("a", hosts=("a.test",), state=AppState.ASLEEP)]))
    waiter = asyncio.create_task(routes.wait_for("a", 5))
    await asyncio.sleep(0)
    routes.replace(RouteTable.build(2, [AppRoute("a", hosts=("a.test",), state=AppState.WAKING)]))
    await asyncio.sleep(0)
    assert not waiter.done()
    ready = AppRoute("a", hosts=("a.test",), endpoints=(Endpoint("127.0.0.1", 1),))
    routes.replace(RouteTable.build(3, [ready]))
    assert (await waiter).endpoints == ready.endpoints


async def test_a_waiter_times_out_and_leaves_nothing_behind() -> None:
    routes = Routes(RouteTable.build(1, [AppRoute("a", hosts=("a.test",), state=AppState.ASLEEP)]))
    with pytest.raises(TimeoutError):
        await routes.wait_for("a", 0.05)
    assert routes._waiters == {}


async def test_a_failed_wake_releases_waiters_as_crashed() -> None:
    routes = Routes(RouteTable.build(1, [AppRoute("a", hosts=("a.test",), state=AppState.ASLEEP)]))
    waiter = asyncio.create_task(routes.wait_for("a", 5))
    await asyncio.sleep(0)
    routes.fail("a", "no runtime")
    route = await waiter
    assert route.state is AppState.CRASHED
    assert route.reason == "no runtime"
