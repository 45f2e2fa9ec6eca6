"""The SSE and text API on a real aiohttp server: history, live, resume, drops, auth, errors."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import aiohttp
import pytest

from logs.model import Source
from tests.logs.conftest import ADMIN, SHOP_TOKEN, Service, start_service
from tests.logs.sse import SSE

AUTH = {"Authorization": f"Bearer {ADMIN}"}


def publish(
    svc: Service, n: int, *, start: int = 0, app: str = "shop", process: str = "web.1"
) -> None:
    for i in range(start, start + n):
        svc.service.publish(app, Source.APP, process, f"line {i}", 1_795_000_000.0 + i)


class TestHistoryThenLive:
    async def test_history_comes_first_then_live_lines_with_ids(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        publish(svc, 3)
        async with http.get(f"{svc.url}/apps/shop/logs?tail=1", headers=AUTH) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/event-stream"
            assert r.headers["X-Accel-Buffering"] == "no"
            stream = SSE(r)
            history = await stream.take(3)
            assert [e.data["text"] for e in history] == ["line 0", "line 1", "line 2"]
            publish(svc, 1, start=3)
            live = await stream.next()
            assert (live.id, live.data["text"], live.data["process"]) == ("4", "line 3", "web.1")

    async def test_without_tail_the_stream_ends_after_history(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        publish(svc, 5)
        async with http.get(f"{svc.url}/apps/shop/logs?lines=2", headers=AUTH) as r:
            body = await r.text()
        assert body.count("data: ") == 2
        assert "line 3" in body
        assert "line 4" in body

    async def test_source_and_process_filters_apply_to_history_and_live(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        publish(svc, 1, process="web.1")
        publish(svc, 1, start=1, process="worker.1")
        url = f"{svc.url}/apps/shop/logs?tail=1&process=worker&source=app"
        async with http.get(url, headers=AUTH) as r:
            stream = SSE(r)
            assert (await stream.next()).data["text"] == "line 1"
            svc.service.emit("shop", "at=info status=200")
            publish(svc, 1, start=2, process="worker.2")
            assert (await stream.next()).data["process"] == "worker.2"

    async def test_heartbeat_comments_keep_an_idle_stream_open(
        self, tmp_path: Path, http: aiohttp.ClientSession
    ) -> None:
        svc, stop = await start_service(tmp_path, heartbeat=0.05)
        try:
            async with http.get(f"{svc.url}/apps/shop/logs?tail=1", headers=AUTH) as r:
                raw = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
                assert raw == b": keep-alive\n\n"
        finally:
            await stop()

    async def test_the_text_format_is_herokus(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        at = dt.datetime(2026, 11, 23, 10, 0, 0, 123456, dt.UTC).timestamp()
        svc.service.publish("shop", Source.APP, "web.1", "hello", at)
        svc.service.publish("shop", Source.RELEASE, "release", "Deploy v3", at + 0.876544)
        async with http.get(f"{svc.url}/apps/shop/logs?format=text", headers=AUTH) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            assert await r.text() == (
                "2026-11-23T10:00:00.123456+00:00 app[web.1]: hello\n"
                "2026-11-23T10:00:01.000000+00:00 slipway[release]: Deploy v3\n"
            )


class TestResume:
    async def test_a_reconnect_with_last_event_id_has_no_gap_and_no_duplicate(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        publish(svc, 3)
        async with http.get(f"{svc.url}/apps/shop/logs?tail=1", headers=AUTH) as r:
            seen = await SSE(r).take(3)
        last = seen[-1].id
        publish(svc, 4, start=3)  # while disconnected
        headers = {**AUTH, "Last-Event-ID": str(last)}
        async with http.get(f"{svc.url}/apps/shop/logs?tail=1", headers=headers) as r:
            stream = SSE(r)
            resumed = await stream.take(4)
            publish(svc, 1, start=7)
            resumed.append(await stream.next())
        ids = [int(e.id or 0) for e in seen + resumed]
        assert ids == list(range(1, 9))

    async def test_a_reconnect_too_late_is_told_how_many_lines_it_missed(
        self, tmp_path: Path, http: aiohttp.ClientSession
    ) -> None:
        svc, stop = await start_service(tmp_path, lines=10)
        try:
            publish(svc, 30)
            headers = {**AUTH, "Last-Event-ID": "5"}
            async with http.get(f"{svc.url}/apps/shop/logs", headers=headers) as r:
                stream = SSE(r)
                missed = await stream.next()
                assert (missed.event, missed.data) == ("missed", {"count": 15})
                rest = await stream.take(10)
                assert rest[0].id == "21"
        finally:
            await stop()

    async def test_a_bad_last_event_id_is_a_clear_400(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        headers = {**AUTH, "Last-Event-ID": "yesterday"}
        async with http.get(f"{svc.url}/apps/shop/logs", headers=headers) as r:
            assert r.status == 400
            assert "Last-Event-ID must be an integer" in await r.text()


class TestSlowSubscribers:
    async def test_a_subscriber_that_falls_behind_gets_a_dropped_event(
        self, tmp_path: Path, http: aiohttp.ClientSession
    ) -> None:
        svc, stop = await start_service(tmp_path, queue=5)
        try:
            async with http.get(f"{svc.url}/apps/shop/logs?tail=1", headers=AUTH) as r:
                stream = SSE(r)
                await asyncio.wait_for(_until_subscribed(svc), 5)
                # 20 lines with no await between them: the handler cannot run, the queue fills
                publish(svc, 20)
                events = await stream.take(6)
                assert [e.id for e in events[:5]] == ["1", "2", "3", "4", "5"]
                assert (events[5].event, events[5].data) == ("dropped", {"count": 15})
                publish(svc, 1, start=20)
                assert (await stream.next()).id == "21"
            assert svc.sample("slipway_logs_lines_dropped_total", reason="slow_subscriber") == 15
        finally:
            await stop()

    async def test_subscribers_are_counted_and_released_on_disconnect(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        async with http.get(f"{svc.url}/apps/shop/logs?tail=1", headers=AUTH):
            await asyncio.wait_for(_until_subscribed(svc), 5)
            assert svc.sample("slipway_logs_sse_subscribers") == 1
        async with asyncio.timeout(5):
            while svc.hub.subscriber_count():
                await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            while svc.sample("slipway_logs_sse_subscribers"):
                await asyncio.sleep(0.01)


async def _until_subscribed(svc: Service) -> None:
    while svc.hub.subscriber_count() == 0:
        await asyncio.sleep(0.005)


class TestAuth:
    async def test_no_token_is_401(self, svc: Service, http: aiohttp.ClientSession) -> None:
        async with http.get(f"{svc.url}/apps/shop/logs") as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == "Bearer"

    async def test_a_wrong_token_is_403(self, svc: Service, http: aiohttp.ClientSession) -> None:
        headers = {"Authorization": "Bearer nope"}
        async with http.get(f"{svc.url}/apps/shop/logs", headers=headers) as r:
            assert r.status == 403

    async def test_an_app_token_reads_its_app_only(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        headers = {"Authorization": f"Bearer {SHOP_TOKEN}"}
        async with http.get(f"{svc.url}/apps/shop/logs", headers=headers) as r:
            assert r.status == 200
        async with http.get(f"{svc.url}/apps/blog/logs", headers=headers) as r:
            assert r.status == 403
            assert "may not read blog" in await r.text()

    async def test_a_token_in_the_query_works_for_browsers(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        async with http.get(f"{svc.url}/apps/shop/logs?token={SHOP_TOKEN}") as r:
            assert r.status == 200


class TestBadRequests:
    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("lines=many", "lines must be an integer"),
            ("lines=-1", "lines must be between"),
            ("source=kernel", "source must be one of"),
            ("since=last-tuesday", "since must be unix seconds or ISO 8601"),
            # NaN, inf and 1e20 pass float() but no datetime holds them.
            ("since=nan&until=nan", "since must be unix seconds from 0 to 253402300799"),
            ("since=1e20&until=1e20", "since must be unix seconds from 0 to"),
            ("since=0&until=inf", "until must be unix seconds from 0 to"),
        ],
    )
    async def test_each_bad_parameter_gets_a_400_that_says_why(
        self, svc: Service, http: aiohttp.ClientSession, query: str, message: str
    ) -> None:
        async with http.get(f"{svc.url}/apps/shop/logs?{query}", headers=AUTH) as r:
            assert r.status == 400
            assert message in await r.text()

    async def test_an_invalid_app_name_is_a_400(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        async with http.get(f"{svc.url}/apps/Not_An_App/logs", headers=AUTH) as r:
            assert r.status == 400

    async def test_archive_reads_without_an_archive_are_404(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        async with http.get(f"{svc.url}/apps/shop/logs?since=0&until=10", headers=AUTH) as r:
            assert r.status == 404
            assert "no archive" in await r.text()


class TestOps:
    async def test_metrics_and_probes_are_served(
        self, svc: Service, http: aiohttp.ClientSession
    ) -> None:
        publish(svc, 2)
        async with http.get(f"{svc.url}/metrics") as r:
            assert 'slipway_logs_lines_received_total{source="app"} 2.0' in await r.text()
        async with http.get(f"{svc.url}/readyz") as r:
            assert r.status == 200
