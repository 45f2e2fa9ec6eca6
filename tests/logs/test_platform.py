"""``POST /platform/lines``: the platform's lines from another process, with its token only.

Against the whole service as ``slipway serve logs`` runs it (LogsComponent on loopback)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from logs.component import LogsComponent
from logs.platform import MAX_BODY, MAX_LINES
from logs.settings import LogsSettings

PLATFORM = "platform-token-0123456789"
ADMIN = "admin-token-0123456789"


async def started(tmp: Path, platform: str | None, *, port: int = 0) -> LogsComponent:
    settings = LogsSettings(
        http_port=port, forward_port=0, admin_token=ADMIN, platform_token=platform,
        spool_dir=tmp / "spool",
    )  # fmt: skip
    component = LogsComponent(settings)
    await component.start()
    return component


@pytest.fixture
async def logs(tmp_path: Path) -> AsyncIterator[LogsComponent]:
    component = await started(tmp_path, PLATFORM)
    try:
        yield component
    finally:
        await component.stop()


def line(**over: Any) -> dict[str, Any]:
    base = {"app": "shop", "source": "dyno", "process": "web.1",
            "text": "Error R14 (Memory quota exceeded)", "time": 1_796_536_800.0}  # fmt: skip
    return base | over


async def post(component: LogsComponent, body: object, token: str | None = PLATFORM) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{component.http_port}/platform/lines"
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as resp:
        return resp.status


async def read(component: LogsComponent, app: str = "shop") -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{component.http_port}/apps/{app}/logs?lines=100"
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        text = await resp.text()
    return [json.loads(x[6:]) for x in text.splitlines() if x.startswith("data: ")]


async def test_platform_lines_reach_the_app_s_stream_as_the_platform_s(
    logs: LogsComponent,
) -> None:
    body = {"lines": [line(), line(source="router", process="router", text="at=info")]}
    assert await post(logs, body) == 204
    got = [(x["source"], x["process"], x["text"], x["time"]) for x in await read(logs)]
    assert got == [
        ("dyno", "web.1", "Error R14 (Memory quota exceeded)", 1_796_536_800.0),
        ("router", "router", "at=info", 1_796_536_800.0),
    ]


async def test_without_the_platform_token_nothing_is_kept(logs: LogsComponent) -> None:
    """Attack: a tenant that reached the service posts a fake R14 (or an app's read token
    tries to write): only the platform token writes."""
    body = {"lines": [line()]}
    assert await post(logs, body, token=None) == 401
    assert await post(logs, body, token="guess") == 403
    assert await post(logs, body, token=ADMIN) == 403  # reading every app is not writing
    assert await read(logs) == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not an object", 422),
        ({"lines": "x"}, 422),
        ({"lines": [line(source="app")]}, 422),  # app lines come from processes' output
        ({"lines": [line(source="nope")]}, 422),
        ({"lines": [line(app="Not An App")]}, 422),
        ({"lines": [line(process="")]}, 422),
        ({"lines": [line(text=5)]}, 422),
        ({"lines": [line(time="now")]}, 422),
        ({"lines": [line(time=-1)]}, 422),
        ({"lines": [line(), 7]}, 422),
        ({"lines": [line()] * (MAX_LINES + 1)}, 422),
    ],
)
async def test_a_bad_batch_is_refused_whole(logs: LogsComponent, body: object, status: int) -> None:
    assert await post(logs, body) == status
    assert await read(logs) == []  # a batch with one bad line keeps none of it


async def test_a_batch_of_a_megabyte_and_more_is_read_whole(logs: LogsComponent) -> None:
    """A body longer than what one read returns (several TCP segments, or a chunked post):
    every line kept, not a 400 for the half that had arrived."""
    texts = [f'at=info method=GET path="/{i:04d}{"p" * 1500}"' for i in range(MAX_LINES)]
    body = {"lines": [line(source="router", process="router", text=t) for t in texts]}
    raw = json.dumps(body).encode()
    assert 1024 * 1024 < len(raw) < MAX_BODY
    posting = {"Authorization": f"Bearer {PLATFORM}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{logs.http_port}/platform/lines"
        async with http.post(url, data=io.BytesIO(raw), headers=posting) as resp:
            assert resp.status == 204
        url = f"http://127.0.0.1:{logs.http_port}/apps/shop/logs?lines={MAX_LINES}"
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with http.get(url, headers=headers) as resp:
            text = await resp.text()
    kept = [json.loads(x[6:])["text"] for x in text.splitlines() if x.startswith("data: ")]
    assert kept == texts


async def test_a_body_over_the_limit_is_a_413_however_it_is_sent(logs: LogsComponent) -> None:
    url = f"http://127.0.0.1:{logs.http_port}/platform/lines"
    headers = {"Authorization": f"Bearer {PLATFORM}"}

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to refuse up front
        for _ in range(3):
            yield b" " * (MAX_BODY // 2)

    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=chunked(), headers=headers) as resp,
    ):
        assert resp.status == 413
    assert await read(logs) == []


async def test_bad_json_is_a_400_saying_so(logs: LogsComponent) -> None:
    url = f"http://127.0.0.1:{logs.http_port}/platform/lines"
    headers = {"Authorization": f"Bearer {PLATFORM}"}
    async with aiohttp.ClientSession() as http, http.post(url, data=b"{", headers=headers) as resp:
        assert (resp.status, await resp.text()) == (400, "the body is not valid JSON\n")


async def test_without_a_platform_token_configured_the_route_is_off(tmp_path: Path) -> None:
    component = await started(tmp_path, None)
    try:
        assert await post(component, {"lines": [line()]}) == 404
        assert await read(component) == []
    finally:
        await component.stop()
