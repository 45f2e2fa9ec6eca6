"""Web autoscaling through the control API: the formation's settings, the 4xx for bad ones,
what the agent's definition says, and ``GET /apps/{app}/autoscale`` with nothing running."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.definition import parse_definition
from control.agent_target import definition_of
from control.models import Formation
from control.releasing import Deployment
from tests.control.conftest import Api

PROCFILE = {"web": "python3 app.py", "worker": "python3 worker.py"}


@pytest.fixture
async def shop(api: Api, tmp_path: Path) -> Api:
    assert (await api.call("POST", "/apps", json={"name": "shop"}))[0] == 201
    status, body, _ = await api.call(
        "POST", "/apps/shop/releases", json={"artifact": str(tmp_path), "procfile": PROCFILE}
    )
    assert status == 201, body
    return api


async def test_web_autoscaling_is_set_completed_with_defaults_and_turned_off(shop: Api) -> None:
    status, web, _ = await shop.call(
        "PATCH",
        "/apps/shop/formation/web",
        json={"min_scale": 1, "max_scale": 4, "autoscale": {"target": 5, "panic_window": 3}},
    )
    assert status == 200, web
    assert web["autoscale"] == {
        "target": 5.0,
        "stable_window": 60.0,
        "panic_window": 3.0,
        "panic_threshold": 2.0,
        "scale_down_delay": 60.0,
    }
    status, listed, _ = await shop.call("GET", "/apps/shop/formation")
    assert next(f for f in listed if f["type"] == "web")["autoscale"]["target"] == 5.0
    # Other formation changes keep it.
    status, web, _ = await shop.call("PATCH", "/apps/shop/formation/web", json={"quantity": 2})
    assert web["autoscale"]["panic_window"] == 3.0
    status, view, _ = await shop.call("GET", "/apps/shop/autoscale")
    assert status == 200
    assert view["enabled"] is True
    assert view["running"] is False  # nothing runs it here: the settings, no decisions
    assert (view["min"], view["max"], view["decisions"]) == (1, 4, [])
    status, web, _ = await shop.call("PATCH", "/apps/shop/formation/web", json={"autoscale": None})
    assert (status, web["autoscale"]) == (200, None)
    status, view, _ = await shop.call("GET", "/apps/shop/autoscale")
    assert view["enabled"] is False
    _, audit, _ = await shop.call("GET", "/apps/shop/audit")
    updates = [e["detail"]["updates"] for e in audit if e["action"] == "formation.update"]
    assert updates[0][0]["autoscale"] == {"target": 5.0, "panic_window": 3.0}
    assert updates[-1][0]["autoscale"] == {}


@pytest.mark.parametrize(
    ("process", "autoscale", "status", "message"),
    [
        ("worker", {"target": 5}, 422, "autoscale applies to web only"),
        ("web", {"target": 5, "panic_window": 120}, 422, "at most the stable_window"),
        ("web", {"stable_window": 30}, 422, "target (requests in flight per replica) is required"),
        ("web", {"target": 0}, 422, "target must be above 0"),
        ("web", {"target": "5"}, 422, "values must be numbers"),
        ("web", [5], 422, "must be an object with a target, or null"),
        ("web", {"target": 5, "rate": 2}, 422, "unknown keys ['rate']"),
    ],
)
async def test_bad_autoscaling_is_refused_saying_why(
    shop: Api, process: str, autoscale: object, status: int, message: str
) -> None:
    found, body, _ = await shop.call(
        "PATCH", f"/apps/shop/formation/{process}", json={"autoscale": autoscale}
    )
    assert found == status, body
    assert message in body["message"]
    _, listed, _ = await shop.call("GET", "/apps/shop/formation")
    assert all(f["autoscale"] is None for f in listed)  # nothing half-applied


async def test_an_unknown_app_has_no_autoscaling(api: Api) -> None:
    status, body, _ = await api.call("GET", "/apps/ghost/autoscale")
    assert (status, body["id"]) == (404, "app_not_found")


def test_the_agent_gets_web_autoscaling_in_the_definition(tmp_path: Path) -> None:
    settings = {"target": 4.0, "stable_window": 60.0, "panic_window": 6.0,
                "panic_threshold": 2.0, "scale_down_delay": 60.0}  # fmt: skip
    web = Formation("web", 1, 300.0, 1, 5, False, updated_at=0.0, autoscale=settings)
    worker = Formation("worker", 1, 300.0, 0, 10, False, updated_at=0.0)
    deployment = Deployment(
        app="shop",
        version=3,
        artifact=str(tmp_path),
        processes=PROCFILE,
        env={},
        formation=(web, worker),
        hosts=("shop.localhost",),
    )
    definition = definition_of(deployment)
    assert definition is not None
    assert definition["autoscale"] == {"web": settings}
    config = parse_definition("shop", definition)
    assert config.autoscale["web"].target == 4.0
    off = definition_of(
        Deployment(
            app="shop", version=3, artifact=str(tmp_path), processes=PROCFILE, env={},
            formation=(worker,), hosts=(),
        )
    )  # fmt: skip
    assert off is not None
    assert off["autoscale"] == {}
