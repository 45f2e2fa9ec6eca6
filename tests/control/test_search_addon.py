"""The search add-on under ``slipway up``: a real osmem-server per add-on, agent-run.

The official OpenSearch client talks to it through the URL the app gets (its
credentials let it through the add-on's proxy; none, wrong ones or another add-on's
are a 401), the app itself (a real process released by the control plane) reaches it
through its env, and destroying the add-on stops the server and frees its port.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from click.testing import CliRunner
from opensearchpy import AsyncOpenSearch, AuthenticationException, NotFoundError, helpers

from control.addons.env import addon_env, config_vars
from control.addons.instances import APP_PREFIX
from control.addons.names import attachment, canonical
from control.addons.search import MESSAGE, SearchAddons, definition, search_command
from control.addons.search_proxy import authorized
from control.agent_target import LocalAgent
from control.cli import main
from control.errors import AddonError, Unprocessable
from control.models import Addon
from control.review.appjson import Addon as AppJsonAddon
from control.review.appjson import AddonKind, parse_app_json
from control.up import Up
from kit.spawn import detect
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.control.test_dedicated_redis import port_closed

#: Bound on a released app process coming up and answering (real processes, shared CPU).
SETTLE = 20.0

#: An app that counts the documents of an index through the URL its env gives it.
APP = textwrap.dedent(
    """
    import base64, http.server, json, os, urllib.parse, urllib.request

    class Count(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = os.environ.get("ELASTICSEARCH_URL")
            if url is None:
                body = b"unset"
            else:
                # What searchkick's Faraday does with a URL's userinfo: Basic auth.
                parts = urllib.parse.urlsplit(url)
                pair = f"{parts.username}:{parts.password}".encode()
                request = urllib.request.Request(
                    f"http://{parts.hostname}:{parts.port}/products/_count",
                    headers={"Authorization": "Basic " + base64.b64encode(pair).decode()},
                )
                with urllib.request.urlopen(request, timeout=5) as r:
                    body = str(json.load(r)["count"]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Count).serve_forever()
    """
)
HOST = "counter.localhost"


class World:
    def __init__(self, up: Up, session: aiohttp.ClientSession) -> None:
        assert up.control is not None
        self.up = up
        self.session = session
        self.base = f"http://127.0.0.1:{up.control.port}"
        self.router = f"http://127.0.0.1:{up.router.port}"

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as response:
            return response.status, await response.json()

    async def config(self, app: str) -> dict[str, str]:
        status, config = await self.call("GET", f"/apps/{app}/config-vars")
        assert status == 200
        return dict(config)

    def instances(self) -> list[str]:
        return [app for app in self.up.agent.machines if app.startswith(APP_PREFIX)]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    up = Up(up_settings(tmp_path / "state"), app_sink=ListSink(), router_sink=ListSink())
    await up.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield World(up, session)
        assert not up.failed.is_set()
    finally:
        await session.close()
        await up.stop()


def test_the_definition_binds_loopback_never_sleeps_and_is_never_routed() -> None:
    command = search_command("/opt/osmem bin/osmem-server")
    assert "-addr 127.0.0.1:$PORT" in command  # no auth: never on another interface
    assert "-no-stdin-watch" in command  # the agent gives no stdin
    assert "'/opt/osmem bin/osmem-server'" in command  # a path with a space stays one word
    found = definition("/usr/bin/osmem-server")
    assert found["hosts"] == []
    assert found["policy"]["never_sleep"] is True
    assert found["formation"] == {"web": 1}


async def test_the_official_client_indexes_queries_aggregates_and_destroy_stops_the_server(
    world: World,
) -> None:
    assert (await world.call("POST", "/apps", {"name": "shop"}))[0] == 201
    status, addon = await world.call("POST", "/apps/shop/addons", {"plan": "search:dev"})
    assert status == 201, addon
    assert addon["plan"]["name"] == "search:dev"
    assert addon["provision_message"] == MESSAGE
    assert "NOTHING across restarts" in addon["provision_message"]
    assert addon["config_vars"] == ["ELASTICSEARCH_URL", "OPENSEARCH_URL"]
    config = await world.config("shop")
    url = config["ELASTICSEARCH_URL"]
    assert config["OPENSEARCH_URL"] == url
    parts = urlsplit(url)
    assert parts.scheme == "http"
    assert parts.hostname == "127.0.0.1"
    assert parts.username is not None
    assert parts.username.startswith(APP_PREFIX)
    assert parts.password is not None
    assert len(parts.password) >= 32  # as Bonsai's and SearchBox's URLs, credentials in it
    _, releases = await world.call("GET", "/apps/shop/releases")
    assert releases[-1]["description"].startswith("Attach ELASTICSEARCH")

    client = AsyncOpenSearch(hosts=[url], timeout=10)
    try:
        created = await client.indices.create(
            index="products",
            body={
                "mappings": {
                    "properties": {
                        "name": {"type": "text"},
                        "brand": {"type": "keyword"},
                        "price": {"type": "integer"},
                    }
                }
            },
        )
        assert created["acknowledged"] is True
        docs = [
            ("red running shoe", "acme", 80),
            ("blue running shoe", "acme", 90),
            ("green rain jacket", "zenith", 150),
            ("red rain hat", "zenith", 25),
            ("trail running sock", "acme", 12),
        ]
        ok, errors = await helpers.async_bulk(
            client,
            (
                {"_index": "products", "_id": str(n), "name": name, "brand": brand, "price": price}
                for n, (name, brand, price) in enumerate(docs)
            ),
            refresh=True,
        )
        assert (ok, errors) == (len(docs), [])
        found = await client.search(
            index="products", body={"query": {"match": {"name": "running"}}}
        )
        names = sorted(hit["_source"]["name"] for hit in found["hits"]["hits"])
        assert names == sorted(name for name, _, _ in docs if "running" in name)
        aggregated = await client.search(
            index="products",
            body={
                "size": 0,
                "aggs": {
                    "brands": {
                        "terms": {"field": "brand"},
                        "aggs": {"total": {"sum": {"field": "price"}}},
                    }
                },
            },
        )
        buckets = {
            b["key"]: (b["doc_count"], b["total"]["value"])
            for b in aggregated["aggregations"]["brands"]["buckets"]
        }
        assert buckets == {"acme": (3, 182.0), "zenith": (2, 175.0)}
    finally:
        await client.close()

    assert parts.hostname is not None
    assert parts.port is not None
    assert len(world.instances()) == 1
    status, _ = await world.call("DELETE", f"/apps/shop/addons/{addon['name']}")
    assert status == 200
    assert await port_closed(parts.hostname, parts.port, within=10.0)  # the server stopped
    assert world.instances() == []
    config = await world.config("shop")
    assert "ELASTICSEARCH_URL" not in config
    assert "OPENSEARCH_URL" not in config


async def test_two_add_ons_are_two_servers_and_the_first_attached_owns_the_aliases(
    world: World,
) -> None:
    assert (await world.call("POST", "/apps", {"name": "both"}))[0] == 201
    status, bonsai = await world.call("POST", "/apps/both/addons", {"plan": "bonsai:sandbox"})
    assert status == 201, bonsai
    assert bonsai["plan"]["name"] == "search:dev"
    assert bonsai["attachment"]["name"] == "BONSAI"  # what Bonsai's own add-on sets
    assert bonsai["config_vars"] == ["BONSAI_URL", "ELASTICSEARCH_URL", "OPENSEARCH_URL"]
    status, box = await world.call("POST", "/apps/both/addons", {"plan": "searchbox:starter"})
    assert status == 201, box
    config = await world.config("both")
    first, second = config["BONSAI_URL"], config["SEARCHBOX_URL"]
    assert urlsplit(first).port != urlsplit(second).port
    assert config["ELASTICSEARCH_URL"] == config["OPENSEARCH_URL"] == first

    one, other = AsyncOpenSearch(hosts=[first]), AsyncOpenSearch(hosts=[second])
    try:
        await one.index(index="notes", id="1", body={"text": "mine"}, refresh=True)
        assert (await one.count(index="notes"))["count"] == 1
        with pytest.raises(NotFoundError):  # a server of its own: nothing of the other's
            await other.count(index="notes")
    finally:
        await one.close()
        await other.close()

    # An app's own ELASTICSEARCH_URL wins over the alias; BONSAI_URL stays the add-on's.
    status, _ = await world.call(
        "PATCH", "/apps/both/config-vars", {"ELASTICSEARCH_URL": "http://search.example:9200"}
    )
    assert status == 200
    config = await world.config("both")
    assert config["ELASTICSEARCH_URL"] == "http://search.example:9200"
    assert config["OPENSEARCH_URL"] == config["BONSAI_URL"] == first
    status, refused = await world.call("PATCH", "/apps/both/config-vars", {"BONSAI_URL": "x"})
    assert (status, refused["id"]) == (409, "addon_config_var")

    # Detaching the first hands the aliases the app did not set to the second.
    assert (await world.call("DELETE", f"/apps/both/addons/{bonsai['name']}"))[0] == 200
    config = await world.config("both")
    assert config["OPENSEARCH_URL"] == config["SEARCHBOX_URL"] == second
    assert "BONSAI_URL" not in config


async def test_only_the_add_ons_own_credentials_get_through_its_url(world: World) -> None:
    """What another process on the machine (another tenant's app) can try: the URL without
    credentials, a guessed password, or its own add-on's credentials on this one's port."""
    assert (await world.call("POST", "/apps", {"name": "victim"}))[0] == 201
    assert (await world.call("POST", "/apps", {"name": "other"}))[0] == 201
    assert (await world.call("POST", "/apps/victim/addons", {"plan": "bonsai"}))[0] == 201
    assert (await world.call("POST", "/apps/other/addons", {"plan": "searchbox"}))[0] == 201
    mine = urlsplit((await world.config("victim"))["BONSAI_URL"])
    theirs = urlsplit((await world.config("other"))["SEARCHBOX_URL"])
    here = f"{mine.hostname}:{mine.port}"
    owner = AsyncOpenSearch(hosts=[mine.geturl()], timeout=10)
    try:
        # Bigger than the proxy's chunk both ways: the body and the reply are streamed.
        text = "lorem ipsum " * 40_000
        await owner.index(index="private", id="1", body={"text": text}, refresh=True)
        assert (await owner.get(index="private", id="1"))["_source"]["text"] == text
        assert await owner.indices.exists(index="private")  # a HEAD: headers, no body
        assert not await owner.indices.exists(index="nonesuch")
        attempts = {
            "none": f"http://{here}",
            "wrong password": f"http://{mine.username}:{mine.password}x@{here}",
            "wrong user": f"http://other:{mine.password}@{here}",
            "another add-on's": f"http://{theirs.username}:{theirs.password}@{here}",
        }
        for what, url in attempts.items():
            intruder = AsyncOpenSearch(hosts=[url], timeout=10)
            try:
                with pytest.raises(AuthenticationException) as refused:
                    await intruder.search(index="private", body={"query": {"match_all": {}}})
                assert refused.value.status_code == 401, what
                with pytest.raises(AuthenticationException):
                    await intruder.indices.delete(index="private")
            finally:
                await intruder.close()
        assert (await owner.count(index="private"))["count"] == 1  # untouched
        async with world.session.get(
            f"http://{here}/private/_search", headers={"Authorization": "Bearer x"}
        ) as reply:
            assert reply.status == 401
            assert reply.headers["WWW-Authenticate"] == 'Basic realm="search"'
            assert (await reply.json())["error"]["type"] == "security_exception"
    finally:
        await owner.close()


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic", "Basic !!!", "Bearer dXNlcjpwYXNz", "Basic dXNlcjpwYXNzeA==",
     "Basic dXNlcjpwYXM=", "basic dXNlcjpwYXNz"],
)  # fmt: skip
def test_authorized_takes_exactly_the_pair(header: str | None) -> None:
    expected = b"user:pass"
    assert authorized(header, expected) is (header == "basic dXNlcjpwYXNz")
    assert authorized("Basic dXNlcjpwYXNz", expected)


@pytest.mark.parametrize(
    ("plan", "says"),
    [
        ("search:nonesuch", "no search plan 'nonesuch' (plans: dev)"),
        ("bonsai:standard-sm", "a paid Bonsai or SearchBox tier holds data"),
        ("elasticsearch:large", "no search plan 'large'"),
    ],
)
async def test_a_plan_that_is_not_here_is_refused_with_the_plans_listed(
    world: World, plan: str, says: str
) -> None:
    assert (await world.call("POST", "/apps", {"name": "picky"}))[0] == 201
    status, body = await world.call("POST", "/apps/picky/addons", {"plan": plan})
    assert (status, body["id"]) == (422, "plan_not_found")
    assert says in body["message"]
    assert world.instances() == []  # nothing started
    status, plans = await world.call("GET", "/addon-services/bonsai/plans")
    assert status == 200
    assert [p["name"] for p in plans] == ["search:dev"]
    assert "NOTHING across restarts" in plans[0]["limits"]["description"]


async def test_the_app_reaches_its_search_server_through_the_url_the_release_gave_it(
    world: World, tmp_path: Path
) -> None:
    code = tmp_path / "counter"
    code.mkdir()
    (code / "app.py").write_text(APP)
    assert (await world.call("POST", "/apps", {"name": "counter"}))[0] == 201
    status, _ = await world.call(
        "POST",
        "/apps/counter/releases",
        {"artifact": str(code), "procfile": {"web": "exec python3 app.py"}},
    )
    assert status == 201
    assert await app_says(world) == "unset"
    status, _ = await world.call("POST", "/apps/counter/addons", {"plan": "search"})
    assert status == 201
    url = (await world.config("counter"))["ELASTICSEARCH_URL"]
    client = AsyncOpenSearch(hosts=[url])
    try:
        for n in range(3):
            await client.index(index="products", id=str(n), body={"n": n}, refresh=True)
    finally:
        await client.close()
    deadline = asyncio.get_running_loop().time() + SETTLE
    while (said := await app_says(world)) != "3":  # restarted onto the add-on's release
        assert asyncio.get_running_loop().time() < deadline, said
        await asyncio.sleep(0.1)


async def app_says(world: World) -> str:
    async with world.session.get(world.router + "/", headers={"Host": HOST}) as response:
        text = await response.text()
        assert response.status == 200, (response.status, text)
        return text


async def test_a_lost_instance_comes_back_empty_and_a_slow_start_leaves_nothing(
    world: World,
) -> None:
    link = LocalAgent(world.up.agent)
    search = SearchAddons(link)
    made = await search.create("dev")
    assert made.message == MESSAGE
    try:
        client = AsyncOpenSearch(hosts=[made.url], timeout=10)
        try:
            await client.index(index="kept", id="1", body={"n": 1}, refresh=True)
            await search.ensure(made.resource, url=made.url, plan="dev")  # running: no-op
            assert (await client.count(index="kept"))["count"] == 1
            await world.up.agent.forget(made.resource)  # the agent lost it
            # Back, empty, on a fresh port of its own, behind the same URL.
            await search.ensure(made.resource, url=made.url, plan="dev")
            with pytest.raises(NotFoundError):
                await client.count(index="kept")
        finally:
            await client.close()
        # A control plane restarted (a new SearchAddons): its proxy listens on the URL's
        # port again, unless that port is taken; a URL without credentials is refused.
        await search.close()
        again = SearchAddons(link)
        try:
            await again.ensure(made.resource, url=made.url, plan="dev")
            client = AsyncOpenSearch(hosts=[made.url], timeout=10)
            try:
                assert (await client.cluster.health())["status"] in ("green", "yellow")
            finally:
                await client.close()
            with pytest.raises(AddonError, match="cannot listen on"):
                await SearchAddons(link).ensure(made.resource, url=made.url, plan="dev")
            front = urlsplit(made.url)
            with pytest.raises(AddonError, match="without credentials"):
                await again.ensure(
                    made.resource, url=f"http://{front.hostname}:{front.port}", plan="dev"
                )
            await again.destroy(made.resource)
        finally:
            await again.close()
    finally:
        await search.close()
    with pytest.raises(Unprocessable, match="no search plan"):
        await search.create("large")

    hasty = SearchAddons(link, ready_timeout=0.0)
    with pytest.raises(AddonError, match="not ready"):
        await hasty.create("dev")
    missing = SearchAddons(link, binary=str(Path(__file__).parent / "no-such-osmem"))
    with pytest.raises(AddonError, match="osmem-server not found"):
        await missing.create("dev")
    assert world.instances() == []


async def test_the_cli_says_what_it_set_and_that_nothing_is_kept(
    world: World, tmp_path: Path
) -> None:
    assert (await world.call("POST", "/apps", {"name": "clisearch"}))[0] == 201
    runner = CliRunner(
        env={
            "SLIPWAY_API_URL": world.base,
            "SLIPWAY_TOKEN": ADMIN_TOKEN,
            "SLIPWAY_APP": None,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
    )
    # In a thread: the CLI's client blocks, and the control plane runs on this loop.
    result = await asyncio.to_thread(
        runner.invoke, main, ["addons:create", "bonsai:sandbox", "-a", "clisearch"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Creating search:dev on clisearch... done: search-")
    assert "BONSAI_URL, ELASTICSEARCH_URL, OPENSEARCH_URL set, v2" in lines[0]
    assert lines[1] == MESSAGE


@pytest.mark.parametrize(
    ("ref", "ours", "attached"),
    [
        ("search", "search", None),
        ("bonsai:sandbox", "search:dev", "BONSAI"),
        ("bonsai:sandbox-10", "search:dev", "BONSAI"),
        ("searchbox:starter", "search:dev", "SEARCHBOX"),
        ("opensearch:dev", "search:dev", None),
        ("bonsai:standard-sm", "search:standard-sm", "BONSAI"),  # refused: not a plan here
        ("search:sandbox", "search:dev", None),  # a review app's app.json, service resolved
    ],
)
def test_heroku_search_names_map_to_dev_and_imply_their_attachment(
    ref: str, ours: str, attached: str | None
) -> None:
    assert canonical(ref) == ours
    assert attachment(ref) == attached


def test_an_app_json_asking_for_bonsai_gets_bonsai_url() -> None:
    config = parse_app_json(
        json.dumps({"addons": ["bonsai:sandbox", {"plan": "searchbox", "as": "FIND"}, "search"]})
    )
    assert config.addons == (
        AppJsonAddon(AddonKind.SEARCH, plan="sandbox", alias="BONSAI"),
        AppJsonAddon(AddonKind.SEARCH, plan=None, alias="FIND"),  # "as" wins
        AppJsonAddon(AddonKind.SEARCH, plan=None, alias=None),
    )


def attached(name: str, service: str, attachment: str, created_at: float) -> Addon:
    return Addon(
        id=name,
        app="a",
        name=name,
        service=service,
        plan="dev",
        attachment=attachment,
        url=f"http://{name}",
        resource=f"addon-{name}",
        created_at=created_at,
    )


def test_aliases_yield_to_the_apps_config_to_own_vars_and_to_the_first_attached() -> None:
    first = attached("first", "search", "BONSAI", 1.0)
    second = attached("second", "search", "ELASTICSEARCH", 2.0)
    db = attached("db", "postgres", "DATABASE", 0.5)
    # Listed in any order, the earlier search add-on holds OPENSEARCH_URL; the later one's
    # own var is ELASTICSEARCH_URL, which beats the earlier one's alias of that name.
    assert addon_env([second, db, first], {}) == {
        "DATABASE_URL": "http://db",
        "BONSAI_URL": "http://first",
        "ELASTICSEARCH_URL": "http://second",
        "OPENSEARCH_URL": "http://first",
    }
    assert addon_env([first], {"OPENSEARCH_URL": "http://mine"}) == {
        "BONSAI_URL": "http://first",
        "ELASTICSEARCH_URL": "http://first",
    }
    assert config_vars(first) == ["BONSAI_URL", "ELASTICSEARCH_URL", "OPENSEARCH_URL"]
    assert config_vars(db) == ["DATABASE_URL"]


async def test_under_the_app_sandbox_the_server_still_starts_and_answers(tmp_path: Path) -> None:
    """``slipway up`` confines every agent process (bubblewrap): the venv's osmem-server
    must be visible and reachable inside it, as a release's processes are."""
    confiner = detect()
    if not confiner.confined:
        pytest.skip(f"no sandbox on this machine: {confiner.reason}")
    up = Up(
        up_settings(tmp_path / "state"),
        app_sink=ListSink(),
        router_sink=ListSink(),
        confiner=confiner,
    )
    await up.start()
    try:
        search = SearchAddons(LocalAgent(up.agent))
        made = await search.create("dev")
        client = AsyncOpenSearch(hosts=[made.url])
        try:
            await client.index(index="jailed", id="1", body={"ok": True}, refresh=True)
            assert (await client.count(index="jailed"))["count"] == 1
        finally:
            await client.close()
        await search.destroy(made.resource)
        await search.close()
    finally:
        await up.stop()
