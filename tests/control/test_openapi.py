"""/openapi.json: a valid OpenAPI 3.1 document that matches what the server does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig

from control.api.routes import ROUTES, openapi
from tests.control.conftest import Api
from tests.control.server import Server, control_server


class TestTheDocument:
    def test_it_is_valid_openapi(self) -> None:
        validate(openapi())

    def test_it_lists_every_route_once(self) -> None:
        document = openapi()
        documented = {
            (method.upper(), path) for path, ops in document["paths"].items() for method in ops
        }
        assert documented == {(r.method, r.path) for r in ROUTES}
        assert len(documented) == len(ROUTES)

    async def test_the_server_serves_it(self, api: Api) -> None:
        status, body, _ = await api.call("GET", "/openapi.json")
        assert (status, body) == (200, openapi(plans=api.control.plan_names()))
        plan = body["paths"]["/apps/{app}/addons"]["post"]["requestBody"]["content"]
        assert plan["application/json"]["schema"]["properties"]["plan"]["enum"] == [
            "postgres",
            "postgres:mini",
            "postgres:basic",
            "postgres:standard",
            "redis:shared",
            "redis:shared-basic",
        ]

    async def test_every_documented_operation_is_routed(self, api: Api) -> None:
        """No documented route answers aiohttp's 'no such route' or 'method not allowed'."""
        for route in ROUTES:
            path = route.path.replace("{version}", "1")
            for name in ("app", "type", "addon", "id", "hostname", "service"):
                path = path.replace("{" + name + "}", "ghost")
            status, body, _ = await api.call(route.method, path, json={})
            assert status != 405, route.path
            assert not (isinstance(body, dict) and body.get("id") == "not_found"), route.path


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with control_server(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


# The offered plans as the fuzz server has them (postgres and redis configured).
schema = schemathesis.openapi.from_dict(
    openapi(plans=["postgres", "postgres:mini", "redis:shared"]),
    # No NUL in drawn strings: the document says bodies never hold one (a 400, kit/jsonbody).
    config=SchemathesisConfig.from_dict(
        {"phases": {"coverage": {"enabled": False}}, "generation": {"allow-x00": False}}
    ),
)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_the_running_api_conforms_to_its_document(
    case: schemathesis.Case, fuzz_server: Server, tmp_path: Path
) -> None:
    case.call_and_validate(
        base_url=fuzz_server.url, headers={"Authorization": f"Bearer {fuzz_server.token}"}
    )
