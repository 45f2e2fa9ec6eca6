"""Hostile input at the HTTP edges of the control plane and the agent (issue #18, 3, 7 and 9).

Each test is an attack, written from the attacker's side against a real
server on loopback: the docstring states it, the test asserts the refusal (a
4xx with a message saying what to send) and that nothing was stored.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.api import api_app
from agent.apps import load_apps
from agent.local import LocalRuntime
from agent.settings import AgentSettings, LocalSettings
from control.api.app import build_app
from control.building import Builds
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.settings import BuildSettings
from control.service import Control
from control.settings import Limits
from control.store.db import Store
from tests.agent.conftest import ListSink, write_app
from tests.conftest import free_port
from tests.control.conftest import ADMIN_TOKEN, Api, running_api
from tests.control.targets import RecordingTarget

DEEP = b"[" * 100_000 + b"]" * 100_000
REVIEW_DOMAIN = "review.example.com"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The control API as ``slipway up`` runs it: apps answer at APP.localhost."""
    async with running_api(
        f"sqlite+aiosqlite:///{tmp_path}/state.db",
        tmp_path,
        app_domain="localhost",
        reserved_domains=[REVIEW_DOMAIN],
    ) as running:
        yield running


async def app_token(api: Api, app: str) -> str:
    status, token, _ = await api.call("POST", "/tokens", json={"name": app, "app": app})
    assert status == 201, token
    secret: str = token["token"]
    return secret


@pytest.fixture
async def shop(api: Api, tmp_path: Path) -> str:
    """An app ``shop`` with web and worker processes, and a token for it alone."""
    assert (await api.call("POST", "/apps", json={"name": "shop"}))[0] == 201
    assert (await api.call("POST", "/apps", json={"name": "blog"}))[0] == 201
    status, _, _ = await api.call(
        "POST",
        "/apps/shop/releases",
        json={"artifact": str(tmp_path), "procfile": {"web": "x", "worker": "y"}},
    )
    assert status == 201
    return await app_token(api, "shop")


async def raw(
    api: Api, method: str, path: str, body: bytes, token: str = ADMIN_TOKEN
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # A BytesIO: aiohttp warns that a large bytes body blocks the loop.
    data = io.BytesIO(body)
    async with api.session.request(method, api.base + path, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


async def snapshot(api: Api) -> tuple[Any, ...]:
    """What an attack must leave as it was: apps, shop's config, formation, domains, audit."""
    return (
        (await api.call("GET", "/apps"))[1],
        (await api.call("GET", "/apps/shop/config-vars"))[1],
        (await api.call("GET", "/apps/shop/formation"))[1],
        (await api.call("GET", "/apps/shop/domains"))[1],
        (await api.call("GET", "/audit"))[1],
    )


#: Every JSON endpoint of the control API, with shop as the app.
JSON_ENDPOINTS = [
    ("POST", "/apps"),
    ("PATCH", "/apps/shop"),
    ("PATCH", "/apps/shop/config-vars"),
    ("POST", "/apps/shop/releases"),
    ("PATCH", "/apps/shop/formation"),
    ("PATCH", "/apps/shop/formation/web"),
    ("POST", "/apps/shop/domains"),
    ("POST", "/apps/shop/addons"),
    ("POST", "/apps/shop/builds"),
    ("POST", "/tokens"),
]


class TestJsonBodiesToTheControlApi:
    async def test_a_body_nested_100000_deep_is_a_400_on_every_json_endpoint(
        self, api: Api, shop: str
    ) -> None:
        """Attack: [[[[...]]]] 100,000 deep blows json.loads' recursion (a 500 before)."""
        before = await snapshot(api)
        for method, path in JSON_ENDPOINTS:
            status, body = await raw(api, method, path, DEEP)
            assert (status, body["id"]) == (400, "bad_request"), path
            assert body["message"] == "the body nests objects and arrays deeper than 32 levels"
        assert await snapshot(api) == before

    async def test_invalid_utf8_is_a_400(self, api: Api, shop: str) -> None:
        """Attack: a config value that is not UTF-8 at all."""
        before = await snapshot(api)
        status, body = await raw(api, "PATCH", "/apps/shop/config-vars", b'{"K": "\xc3\x28"}')
        assert (status, body["message"]) == (
            400,
            "the body is not UTF-8 (invalid byte at offset 7)",
        )
        assert await snapshot(api) == before

    async def test_a_lone_surrogate_config_value_is_a_400(self, api: Api, shop: str) -> None:
        """Attack: "\\ud800" as a config value: stored, then unencodable on every read."""
        before = await snapshot(api)
        status, body = await raw(
            api, "PATCH", "/apps/shop/config-vars", b'{"K": "\\ud800"}', token=shop
        )
        assert status == 400
        assert "lone UTF-16 surrogate" in body["message"]
        assert await snapshot(api) == before

    async def test_a_nul_in_a_config_value_is_a_400(self, api: Api, shop: str) -> None:
        """Attack: a NUL character, which PostgreSQL text and an exec'd environment refuse."""
        status, body = await raw(
            api, "PATCH", "/apps/shop/config-vars", b'{"K": "a\\u0000"}', token=shop
        )
        assert status == 400
        assert "NUL" in body["message"]

    @pytest.mark.parametrize("value", [b"Infinity", b"-Infinity", b"NaN"])
    async def test_a_non_finite_idle_after_is_a_400(
        self, api: Api, shop: str, value: bytes
    ) -> None:
        """Attack: idle_after: Infinity was stored and served back as invalid JSON."""
        before = await snapshot(api)
        status, body = await raw(
            api, "PATCH", "/apps/shop/formation/web", b'{"idle_after": ' + value + b"}", shop
        )
        assert status == 400
        assert "is not a JSON number: send a finite number" in body["message"]
        assert await snapshot(api) == before

    async def test_a_huge_idle_after_is_a_422(self, api: Api, shop: str) -> None:
        """Attack: a finite but absurd idle_after (1e15 s) to keep an app up for ever."""
        status, body, _ = await api.call(
            "PATCH", "/apps/shop/formation/web", json={"idle_after": 10**15}, token=shop
        )
        assert status == 422
        assert "from 1 to 2592000" in body["message"]

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/apps/shop/formation/web", b'{"quantity": 1e20}'),
            ("/apps/shop/formation/web", b'{"min_scale": 9223372036854775808}'),
            ("/apps/shop/releases", b'{"release": 9223372036854775808}'),
            ("/apps/shop/releases", b'{"release": 1e400}'),
            ("/apps/shop/releases", b'{"release": ' + b"9" * 5000 + b"}"),
        ],
    )
    async def test_numbers_past_2_53_are_a_400(
        self, api: Api, shop: str, path: str, body: bytes
    ) -> None:
        """Attack: 1e20, 2**63, 5,000 digits: OverflowError or a column overflow before."""
        before = await snapshot(api)
        method = "PATCH" if "formation" in path else "POST"
        status, error = await raw(api, method, path, body)
        assert status == 400
        assert "out of range (at most 2**53 in magnitude)" in error["message"]
        assert await snapshot(api) == before

    async def test_a_body_past_a_mebibyte_is_a_413(self, api: Api, shop: str) -> None:
        """Attack: a 2 MiB config var body, to fill memory and the store."""
        big = b'{"K": "' + b"a" * (2 * 1024**2) + b'"}'
        status, body = await raw(api, "PATCH", "/apps/shop/config-vars", big, token=shop)
        assert (status, body["id"]) == (413, "too_large")


class TestNamesAreMatchedWhole:
    """Attack, each: a trailing newline on a name, which re.match with $ accepted."""

    async def test_an_app_name_with_a_trailing_newline_is_refused(self, api: Api) -> None:
        status, body, _ = await api.call("POST", "/apps", json={"name": "shop\n"})
        assert (status, body["id"]) == (422, "invalid_name")
        assert (await api.call("GET", "/apps"))[1] == []

    async def test_a_rename_to_a_name_with_a_newline_is_refused(self, api: Api, shop: str) -> None:
        status, body, _ = await api.call("PATCH", "/apps/shop", json={"name": "shop\n"}, token=shop)
        assert (status, body["id"]) == (422, "invalid_name")
        assert (await api.call("GET", "/apps/shop"))[0] == 200

    async def test_a_config_var_name_with_a_newline_is_refused(self, api: Api, shop: str) -> None:
        status, body, _ = await api.call(
            "PATCH", "/apps/shop/config-vars", json={"KEY\n": "v"}, token=shop
        )
        assert (status, body["id"]) == (422, "invalid_config_var")
        assert (await api.call("GET", "/apps/shop/config-vars"))[1] == {}

    async def test_a_domain_with_a_newline_is_refused(self, api: Api, shop: str) -> None:
        status, body, _ = await api.call(
            "POST", "/apps/shop/domains", json={"hostname": "www.example.com\n"}, token=shop
        )
        assert (status, body["id"]) == (422, "invalid_hostname")

    async def test_an_attachment_with_a_newline_is_refused(self, api: Api, shop: str) -> None:
        status, body, _ = await api.call(
            "POST",
            "/apps/shop/addons",
            json={"plan": "redis", "attachment": {"name": "CACHE\n"}},
            token=shop,
        )
        assert (status, body["id"]) == (422, "invalid_attachment")
        assert (await api.call("GET", "/apps/shop/addons"))[1] == []

    @pytest.mark.parametrize(
        "version", ["v1%0A", "v99999999999999999999999", "%C2%B2", "v-1", "1.0"]
    )
    async def test_a_release_version_in_the_path_is_checked_whole(
        self, api: Api, shop: str, version: str
    ) -> None:
        """Also: 23 digits (OverflowError in the store) and '²', which str.isdigit takes."""
        status, body, _ = await api.call("GET", f"/apps/shop/releases/{version}", token=shop)
        assert (status, body["id"]) == (400, "bad_request")
        assert "is not a release version (v3 or 3)" in body["message"]

    async def test_a_range_max_of_thousands_of_digits_is_a_400(self, api: Api, shop: str) -> None:
        """Attack: int() of a 5,000-digit max= raised ValueError (a 500)."""
        status, body, _ = await api.call(
            "GET", "/apps", headers={"Range": "name ..; max=" + "9" * 5000}
        )
        assert (status, body["id"]) == (400, "bad_range")


class TestCustomDomains:
    async def test_an_app_token_cannot_add_an_ip_address(self, api: Api, shop: str) -> None:
        """Attack: 127.0.0.1 as a custom domain, to receive traffic sent to the machine."""
        for host in ("127.0.0.1", "10.0.0.1", "0x7f.1"):
            status, body, _ = await api.call(
                "POST", "/apps/shop/domains", json={"hostname": host}, token=shop
            )
            assert (status, body["id"]) == (422, "invalid_hostname"), host
        assert [d["hostname"] for d in (await api.call("GET", "/apps/shop/domains"))[1]] == [
            "shop.localhost"
        ]

    async def test_an_app_token_cannot_take_another_apps_host_names(
        self, api: Api, shop: str
    ) -> None:
        """Attack: shop's token adds blog.localhost and www.blog.localhost to hijack blog."""
        for host in ("blog.localhost", "www.blog.localhost", "a.b.blog.localhost"):
            status, body, _ = await api.call(
                "POST", "/apps/shop/domains", json={"hostname": host}, token=shop
            )
            assert (status, body["id"]) == (409, "domain_taken"), host
            assert "the default domain of the app blog" in body["message"]
        assert len((await api.call("GET", "/apps/shop/domains"))[1]) == 1

    async def test_an_app_adds_names_under_its_own_default_domain(
        self, api: Api, shop: str
    ) -> None:
        status, body, _ = await api.call(
            "POST", "/apps/shop/domains", json={"hostname": "WWW.shop.localhost."}, token=shop
        )
        assert (status, body["hostname"]) == (201, "www.shop.localhost")

    async def test_an_app_token_cannot_claim_a_review_apps_future_host(
        self, api: Api, shop: str
    ) -> None:
        """Attack: pr-9.review.example.com claimed before PR 9 opens, to get its traffic."""
        status, body, _ = await api.call(
            "POST", "/apps/shop/domains", json={"hostname": f"pr-9.{REVIEW_DOMAIN}"}, token=shop
        )
        assert (status, body["id"]) == (403, "domain_reserved")
        assert "ask an operator" in body["message"]
        # The platform (an admin, the review applier) gives those names out.
        status, _, _ = await api.call(
            "POST", "/apps/shop/domains", json={"hostname": f"pr-9.{REVIEW_DOMAIN}"}
        )
        assert status == 201

    async def test_an_app_token_cannot_add_special_use_names(self, api: Api, shop: str) -> None:
        """Attack: names that resolve inside the platform (.internal, .local) or nowhere."""
        for host in ("db.internal", "printer.local", "x.invalid"):
            status, body, _ = await api.call(
                "POST", "/apps/shop/domains", json={"hostname": host}, token=shop
            )
            assert (status, body["id"]) == (403, "domain_reserved"), host

    async def test_two_apps_never_claim_one_host(self, api: Api, shop: str) -> None:
        """Attack: blog's token adds shop's custom domain, in another spelling."""
        await api.call("POST", "/apps/shop/domains", json={"hostname": "www.shop.com"})
        blog = await app_token(api, "blog")
        status, body, _ = await api.call(
            "POST", "/apps/blog/domains", json={"hostname": "WWW.Shop.Com."}, token=blog
        )
        assert (status, body["id"]) == (409, "domain_taken")
        assert [d["hostname"] for d in (await api.call("GET", "/apps/blog/domains"))[1]] == [
            "blog.localhost"
        ]

    async def test_a_new_app_cannot_take_a_default_host_that_is_another_apps_domain(
        self, api: Api, shop: str
    ) -> None:
        """A host an app holds (added before the app domain was set) is not given to a new app."""
        async with api.control.store.tx() as tx:
            await tx.add_domain(await tx.get_app("shop"), "cart.localhost", now=0.0)
        status, body, _ = await api.call("POST", "/apps", json={"name": "cart"})
        assert (status, body["id"]) == (409, "domain_taken")
        status, body, _ = await api.call("PATCH", "/apps/blog", json={"name": "cart"})
        assert (status, body["id"]) == (409, "domain_taken")
        assert {a["name"] for a in (await api.call("GET", "/apps"))[1]} == {"shop", "blog"}


class TestProcessCeilings:
    async def test_an_app_token_cannot_scale_past_the_ceiling(self, api: Api, shop: str) -> None:
        """Attack: quantity 40 with an app token, to take the machine from every other app."""
        before = await snapshot(api)
        status, body, _ = await api.call(
            "PATCH", "/apps/shop/formation/web", json={"quantity": 40}, token=shop
        )
        assert (status, body["message"]) == (422, "quantity 40 exceeds max_scale 10")
        status, body, _ = await api.call(
            "PATCH", "/apps/shop/formation/web", json={"quantity": 40, "max_scale": 40}, token=shop
        )
        assert (status, body["id"]) == (422, "process_ceiling")
        assert body["message"] == (
            "shop would run 40 processes; at most 10 per app "
            "(an operator raises it with SLIPWAY_MAX_PROCESSES_PER_APP)"
        )
        assert await snapshot(api) == before
        assert api.target.scaled == []

    async def test_the_ceiling_counts_every_process_type_and_min_scale(
        self, api: Api, shop: str
    ) -> None:
        """Attack: 6 web and 6 workers, each under the ceiling, 12 together; or min_scale 11."""
        status, body, _ = await api.call(
            "PATCH",
            "/apps/shop/formation",
            json={"updates": [{"type": "web", "quantity": 6}, {"type": "worker", "quantity": 6}]},
            token=shop,
        )
        assert (status, body["id"]) == (422, "process_ceiling")
        status, body, _ = await api.call(
            "PATCH",
            "/apps/shop/formation/web",
            json={"min_scale": 11, "max_scale": 11},
            token=shop,
        )
        assert (status, body["id"]) == (422, "process_ceiling")

    async def test_max_scale_past_the_ceiling_is_refused(self, api: Api, shop: str) -> None:
        status, body, _ = await api.call(
            "PATCH", "/apps/shop/formation/web", json={"max_scale": 50}, token=shop
        )
        assert (status, body["id"]) == (422, "process_ceiling")
        assert "SLIPWAY_MAX_PROCESSES_PER_APP" in body["message"]

    async def test_an_admin_may_go_higher_but_not_past_its_own_ceiling(
        self, api: Api, shop: str
    ) -> None:
        status, web_, _ = await api.call(
            "PATCH", "/apps/shop/formation/web", json={"quantity": 40, "max_scale": 40}
        )
        assert (status, web_["quantity"]) == (200, 40)
        status, body, _ = await api.call(
            "PATCH",
            "/apps/shop/formation",
            json={"updates": [{"type": "worker", "quantity": 61, "max_scale": 61}]},
        )
        assert (status, body["id"]) == (422, "process_ceiling")
        assert "SLIPWAY_MAX_PROCESSES_PER_APP_ADMIN" in body["message"]

    async def test_an_app_above_the_ceiling_may_still_scale_down(self, api: Api, shop: str) -> None:
        await api.call("PATCH", "/apps/shop/formation/web", json={"quantity": 30, "max_scale": 30})
        status, web_, _ = await api.call(
            "PATCH", "/apps/shop/formation/web", json={"quantity": 20}, token=shop
        )
        assert (status, web_["quantity"]) == (200, 20)


@dataclass
class Uploads:
    api: Api
    directory: Path


@pytest.fixture
async def uploads(tmp_path: Path) -> AsyncIterator[Uploads]:
    """A control API with a real local builder; app tokens may upload 4 KiB, admins 1 MiB."""
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    target = RecordingTarget()
    control = Control(
        store=store, target=target, limits=Limits(upload_bytes=4096, upload_bytes_admin=1024**2)
    )
    await control.start(bootstrap_admin_token=ADMIN_TOKEN)
    sink = ListSink()
    builder = LocalBuilder(
        BuildSettings(root=tmp_path / "builds", pip_args=("--no-index",), timeout=30),
        sink=sink,
        metrics=BuildMetrics(CollectorRegistry()),
    )
    builds = Builds(control, builder=builder, sink=sink, uploads=tmp_path / "uploads")
    runner = web.AppRunner(
        build_app(control, registry=CollectorRegistry(), ready=lambda: None, builds=builds)
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        api = Api(f"http://127.0.0.1:{port}", session, control, target, tmp_path)
        yield Uploads(api, tmp_path / "uploads")
    await runner.cleanup()
    await store.close()


def tarball(size: int) -> bytes:
    data = bytes(range(256)) * (size // 256 + 1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("app/blob")
        info.size = size
        tar.addfile(info, io.BytesIO(data[:size]))
    return buffer.getvalue()


class TestUploadCaps:
    async def test_an_app_token_cannot_upload_past_its_cap(self, uploads: Uploads) -> None:
        """Attack: a source tarball far past what an app token may send, to fill the disk."""
        api = uploads.api
        await api.call("POST", "/apps", json={"name": "shop"})
        token = await app_token(api, "shop")
        status, body, _ = await api.call(
            "POST",
            "/apps/shop/builds",
            data=tarball(64 * 1024),
            token=token,
            headers={"Content-Type": "application/x-tar"},
        )
        assert (status, body["id"]) == (413, "too_large")
        assert body["message"] == (
            "the upload is larger than 4096 bytes, the most for this token "
            "(an operator raises it with SLIPWAY_MAX_UPLOAD_BYTES)"
        )
        assert (await api.call("GET", "/apps/shop/builds"))[1] == []

    async def test_a_chunked_upload_is_cut_off_at_the_cap(self, uploads: Uploads) -> None:
        """Attack: no Content-Length (chunked), so only counting what arrives can stop it."""
        api = uploads.api
        await api.call("POST", "/apps", json={"name": "shop"})
        token = await app_token(api, "shop")
        payload = tarball(64 * 1024)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 1024):
                yield payload[start : start + 1024]
                await asyncio.sleep(0)

        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-tar"}
        async with api.session.post(
            api.base + "/apps/shop/builds", data=chunks(), headers=headers
        ) as resp:
            assert resp.status == 413
            assert (await resp.json())["id"] == "too_large"
        assert (await api.call("GET", "/apps/shop/builds"))[1] == []
        assert list(uploads.directory.iterdir()) == []  # the partial upload is removed

    async def test_an_admin_may_upload_more(self, uploads: Uploads) -> None:
        api = uploads.api
        await api.call("POST", "/apps", json={"name": "shop"})
        status, build, _ = await api.call(
            "POST",
            "/apps/shop/builds",
            data=tarball(64 * 1024),
            headers={"Content-Type": "application/x-tar"},
        )
        assert status == 201, build


# -- the agent's API --------------------------------------------------------------

AGENT_TOKEN = "agent-test-token"


@dataclass
class AgentApi:
    url: str
    agent: Agent
    session: aiohttp.ClientSession

    async def send(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json"}
        async with self.session.request(
            method, self.url + path, data=io.BytesIO(body), headers=headers
        ) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def agent_api(tmp_path: Path) -> AsyncIterator[AgentApi]:
    """A real agent (one app, hello, asleep) serving its HTTP API with a token."""
    path = tmp_path / "apps.toml"
    path.write_text(write_app(tmp_path, "hello"))
    registry = CollectorRegistry()
    agent = Agent(
        load_apps(path),
        runtime=LocalRuntime(settings=LocalSettings(stop_grace=2), sink=ListSink()),
        registry=registry,
        settings=AgentSettings(host="127.0.0.1", port=0, tick=0.01, token=AGENT_TOKEN),
    )
    await agent.start()
    runner = web.AppRunner(api_app(agent, registry=registry))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield AgentApi(f"http://127.0.0.1:{port}", agent, session)
    await agent.stop()
    await runner.cleanup()


def definition(**overrides: Any) -> bytes:
    body: dict[str, Any] = {"processes": {"web": {"command": "x"}}, **overrides}
    return json.dumps(body).encode()


#: Every JSON endpoint of the agent.
AGENT_ENDPOINTS = [
    ("PUT", "/v1/apps/evil"),
    ("POST", "/v1/activity"),
    ("POST", "/v1/apps/hello/restart"),
    ("POST", "/v1/apps/hello/run"),
]


class TestJsonBodiesToTheAgent:
    async def test_a_body_nested_100000_deep_is_a_400_on_every_json_endpoint(
        self, agent_api: AgentApi
    ) -> None:
        """Attack: RecursionError on every JSON endpoint of the agent (a 500 before)."""
        for method, path in AGENT_ENDPOINTS:
            status, body = await agent_api.send(method, path, DEEP)
            assert status == 400, path
            assert body == {"error": "the body nests objects and arrays deeper than 32 levels"}
        assert set(agent_api.agent.machines) == {"hello"}

    async def test_invalid_utf8_is_a_400_on_every_json_endpoint(self, agent_api: AgentApi) -> None:
        """Attack: bytes that are not UTF-8 (UnicodeDecodeError, a 500 before)."""
        for method, path in AGENT_ENDPOINTS:
            status, body = await agent_api.send(method, path, b'{"x": "\xff\xfe"}')
            assert status == 400, path
            assert body["error"].startswith("the body is not UTF-8"), path

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (definition(policy={"idle_after": float("inf")}), "is not a JSON number"),
            (definition(release=2**63), "out of range"),
            (definition(formation={"web": 10**20}), "out of range"),
            (definition(env={"K": "\ud800"}), "lone UTF-16 surrogate"),
        ],
    )
    async def test_a_definition_with_unkeepable_values_is_a_400_and_defines_nothing(
        self, agent_api: AgentApi, body: bytes, message: str
    ) -> None:
        """Attack: Infinity, 2**63, 1e20 and a lone surrogate in an app's definition."""
        status, error = await agent_api.send("PUT", "/v1/apps/evil", body)
        assert status == 400
        assert message in error["error"]
        assert "evil" not in agent_api.agent.machines

    async def test_a_host_with_a_trailing_newline_is_refused(self, agent_api: AgentApi) -> None:
        """Attack: "hello.test\\n", a second key for hello's host in the route table."""
        status, error = await agent_api.send(
            "PUT", "/v1/apps/evil", definition(hosts=["hello.test\n"])
        )
        assert status == 422
        assert "hosts must be a list of host names" in error["error"]
        assert "evil" not in agent_api.agent.machines

    async def test_an_app_name_with_a_trailing_newline_is_refused(
        self, agent_api: AgentApi
    ) -> None:
        status, error = await agent_api.send("PUT", "/v1/apps/evil%0A", definition())
        assert status == 422
        assert "app names are lower-case letters" in error["error"]
        assert set(agent_api.agent.machines) == {"hello"}

    async def test_another_apps_host_is_refused(self, agent_api: AgentApi) -> None:
        """Attack: a definition naming hello's host, to take its traffic."""
        status, error = await agent_api.send(
            "PUT", "/v1/apps/evil", definition(hosts=["HELLO.test"])
        )
        assert status == 422
        assert error["error"] == "host 'hello.test' belongs to app 'hello'"

    async def test_an_activity_report_with_an_infinite_idle_time_is_a_400(
        self, agent_api: AgentApi
    ) -> None:
        status, error = await agent_api.send(
            "POST",
            "/v1/activity",
            b'{"router": "r", "version": 1, "apps": {"hello": '
            b'{"requests": 1, "in_flight": 0, "idle_for": 1e400}}}',
        )
        assert status == 400
        assert "out of range" in error["error"]

    async def test_a_body_past_a_mebibyte_is_a_413(self, agent_api: AgentApi) -> None:
        status, error = await agent_api.send("PUT", "/v1/apps/evil", b" " * (2 * 1024**2))
        assert status == 413
        assert "1048576" in error["error"]
