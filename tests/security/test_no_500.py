"""A property: no body, of any shape, to the JSON endpoints of control or agent is a 500.

Hypothesis draws JSON values of any shape (NaN, Infinity, huge and negative
numbers, surrogates, deep nesting, the endpoints' own field names with wrong
values) and raw bytes, and sends them with an admin or an app token to a
real server on loopback; every answer must be a 4xx or a success, in the
error shape, never an internal error.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.control.conftest import ADMIN_TOKEN, Api, running_api
from tests.security.test_input import (
    AGENT_ENDPOINTS,
    JSON_ENDPOINTS,
    AgentApi,
    agent_api,  # noqa: F401 -- the fixture, for the agent's property
    app_token,
)

#: The endpoints' own field names, so drawn objects reach past "unknown fields".
FIELDS = [
    "name", "hostname", "artifact", "procfile", "release", "description", "updates", "type",
    "quantity", "idle_after", "min_scale", "max_scale", "never_sleep", "plan", "attachment",
    "source_blob", "url", "version", "admin", "app", "K", "PORT", "web", "hosts", "env",
    "processes", "formation", "policy", "always_on", "command", "timeout", "definition",
    "router", "apps", "requests", "in_flight", "idle_for", "process",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["web", "worker", "shop", "v1", "shop\n", "\ud800", "127.0.0.1", "a.b"])
)
keys = st.sampled_from(FIELDS) | st.text(max_size=12)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=20,
)


def encoded(value: Any) -> bytes:
    # allow_nan: the wire may carry NaN and Infinity even though JSON does not.
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


bodies = (
    values.map(encoded)
    | st.binary(max_size=64)
    | st.integers(min_value=33, max_value=5_000).map(lambda n: b'{"K":' * n)
)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The control API with no add-on servers: drawn bodies must not provision databases."""
    async with running_api(
        f"sqlite+aiosqlite:///{tmp_path}/state.db",
        tmp_path,
        provisioners={},
        app_domain="localhost",
    ) as running:
        yield running


@pytest.fixture
async def shop_token(api: Api, tmp_path: Path) -> str:
    await api.call("POST", "/apps", json={"name": "shop"})
    await api.call(
        "POST",
        "/apps/shop/releases",
        json={"artifact": str(tmp_path), "procfile": {"web": "x", "worker": "y"}},
    )
    return await app_token(api, "shop")


PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(endpoint=st.sampled_from(JSON_ENDPOINTS), body=bodies, admin=st.booleans(), data=st.data())
async def test_no_body_to_the_control_api_is_a_500(
    api: Api,
    shop_token: str,
    endpoint: tuple[str, str],
    body: bytes,
    admin: bool,
    data: st.DataObject,
) -> None:
    method, path = endpoint
    headers = {
        "Authorization": f"Bearer {ADMIN_TOKEN if admin else shop_token}",
        "Content-Type": data.draw(st.sampled_from(["application/json", "text/plain"])),
    }
    async with api.session.request(
        method, api.base + path, data=io.BytesIO(body), headers=headers
    ) as resp:
        answer = await resp.json()
    # 503 is documented everywhere (no builder here); an internal error is a bug.
    assert resp.status < 500 or resp.status == 503, (resp.status, answer, body[:200])
    if resp.status >= 400:
        assert set(answer) >= {"id", "message"}
        assert answer["id"] != "internal_error"


@PROPERTY
@given(
    # Not /run: a body that passes would run its command; its refusals are tested by hand.
    endpoint=st.sampled_from([e for e in AGENT_ENDPOINTS if not e[1].endswith("/run")]),
    body=bodies,
)
async def test_no_body_to_the_agent_is_a_500(
    agent_api: AgentApi,  # noqa: F811 -- the fixture imported above
    endpoint: tuple[str, str],
    body: bytes,
) -> None:
    method, path = endpoint
    status, answer = await send(agent_api, method, path, body)
    assert status < 500, (status, answer, body[:200])


async def send(agent: AgentApi, method: str, path: str, body: bytes) -> tuple[int, Any]:
    try:
        return await agent.send(method, path, body)
    except aiohttp.ContentTypeError:
        # 202/204 answers carry no JSON; a success is not what this property is about.
        return 200, None
