"""The archive against moto's S3 server on loopback: keys, contents, outages, restarts."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from logs.archive import Spool, Uploader, hour_prefixes, object_key
from logs.errors import ArchiveError
from logs.metrics import LogsMetrics
from logs.model import LogLine, Source
from logs.ring import Filter, Hub
from logs.s3 import S3Store
from logs.service import LogService
from tests.helpers import eventually
from tests.logs.conftest import ADMIN, ForwardClient, Moto, start_service

BUCKET = "slipway-logs"
T = 1_795_000_000.0  # 2026-11-18T11:06:40Z
KEY = re.compile(r"^logs/shop/\d{4}/\d{2}/\d{2}/\d{2}/\d+-\d+\.ndjson\.gz$")


async def store_for(moto: Moto) -> S3Store:
    # The store's own 10 s, not 2 s: every call here must succeed, against moto (a Python
    # server) that a loaded machine can keep for seconds.
    store = S3Store(bucket=BUCKET, endpoint_url=moto.url)
    await store.ensure_bucket()
    return store


async def archived(store: S3Store, app: str = "shop") -> list[dict[str, object]]:
    lines = []
    for key in sorted(await store.keys(f"logs/{app}/")):
        assert KEY.match(key), key
        lines += [json.loads(raw) for raw in gzip.decompress(await store.get(key)).splitlines()]
    return sorted(lines, key=lambda line: int(str(line["seq"])))


def spool_at(path: Path, **kwargs: float) -> Spool:
    return Spool(
        path,
        max_bytes=int(kwargs.get("max_bytes", 10_000_000)),
        flush_bytes=int(kwargs.get("flush_bytes", 1_000_000)),
        flush_age=kwargs.get("flush_age", 60.0),
    )


def local(
    path: Path, clock: list[float]
) -> tuple[LogService, Spool, LogsMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = LogsMetrics(registry)
    spool = spool_at(path)
    service = LogService(hub=Hub(), metrics=metrics, spool=spool, clock=lambda: clock[0])
    return service, spool, metrics, registry


class TestKeysAndFlushing:
    def test_the_key_names_app_hour_and_sequence_range(self) -> None:
        assert object_key("shop", "2026112310", 5, 90) == "logs/shop/2026/11/23/10/5-90.ndjson.gz"

    def test_hour_prefixes_cover_every_hour_of_a_range(self) -> None:
        assert hour_prefixes("shop", T, T + 7200) == [
            "logs/shop/2026/11/18/11/",
            "logs/shop/2026/11/18/12/",
            "logs/shop/2026/11/18/13/",
        ]

    def test_a_journal_is_sealed_by_age_on_a_faked_clock(self, tmp_path: Path) -> None:
        clock = [T]
        service, spool, _, _ = local(tmp_path, clock)
        service.publish("shop", Source.APP, "web.1", "x")
        spool.seal_due(T + 59)
        assert spool.ready() == []
        spool.seal_due(T + 60)
        assert len(spool.ready()) == 1
        spool.close()

    def test_a_journal_is_sealed_by_size(self, tmp_path: Path) -> None:
        spool = spool_at(tmp_path, flush_bytes=500)
        service = LogService(
            hub=Hub(), metrics=LogsMetrics(CollectorRegistry()), spool=spool, clock=lambda: T
        )
        for i in range(10):
            service.publish("shop", Source.APP, "web.1", f"line {i} " + "x" * 40)
        spool.seal_due(T)
        assert len(spool.ready()) == 1
        spool.close()

    def test_lines_of_different_hours_go_to_different_objects(self, tmp_path: Path) -> None:
        clock = [T]
        service, spool, _, _ = local(tmp_path, clock)
        service.publish("shop", Source.APP, "web.1", "first hour", T)
        service.publish("shop", Source.APP, "web.1", "second hour", T + 3600)
        service.publish("shop", Source.APP, "web.1", "late, first hour", T + 1)
        spool.seal_all()
        assert [p.name for p in spool.ready()] == [
            f"2026111811-{1:020d}-{3:020d}.ready",
            f"2026111812-{2:020d}-{2:020d}.ready",
        ]
        spool.close()


class TestUpload:
    async def test_lines_land_in_s3_as_gzip_ndjson_and_leave_the_spool(
        self, tmp_path: Path, moto: Moto
    ) -> None:
        clock = [T]
        service, spool, metrics, registry = local(tmp_path, clock)
        for i in range(3):
            service.publish("shop", Source.APP, "web.1", f"line {i}", T + i)
        service.emit("shop", "at=info status=200")
        spool.seal_all()
        store = await store_for(moto)
        assert await Uploader(spool, store, metrics=metrics).upload_ready()
        lines = await archived(store)
        assert [line["text"] for line in lines] == [
            "line 0",
            "line 1",
            "line 2",
            "at=info status=200",
        ]
        assert lines[3]["source"] == "router"
        assert spool.ready() == []
        assert spool.bytes == 0
        assert registry.get_sample_value("slipway_logs_lines_archived_total") == 4

    async def test_an_outage_loses_nothing_once_s3_is_back(
        self, tmp_path: Path, moto: Moto
    ) -> None:
        svc, stop = await start_service(tmp_path)
        try:
            store = await store_for(moto)
            uploader = Uploader(svc.spool, store, metrics=svc.metrics)
            moto.stop()  # S3 is down
            client = await ForwardClient.connect(svc.forward_port)
            for n in range(5):
                entries = [[T + n, {"log": f"chunk {n} line {i}"}] for i in range(20)]
                await client.send(["slipway.shop.web.1", entries, {"chunk": f"c{n}"}])
                assert await client.reply() == {"ack": f"c{n}"}  # acked from the spool
                svc.spool.seal_all()
            await client.close()
            assert not await uploader.upload_ready()
            assert svc.sample("slipway_logs_s3_upload_failures_total") == 1
            assert len(svc.spool.ready()) == 5
            assert svc.sample("slipway_logs_spool_bytes") > 0
            moto.start()  # back, and empty: moto keeps nothing across a restart
            await store.ensure_bucket()
            assert await uploader.upload_ready()
            lines = await archived(store)
            assert len(lines) == 100
            assert [line["seq"] for line in lines] == list(range(1, 101))
            assert svc.spool.ready() == []
        finally:
            await stop()

    async def test_what_a_crashed_service_acked_is_uploaded_by_the_next_one(
        self, tmp_path: Path, moto: Moto
    ) -> None:
        svc, stop = await start_service(tmp_path)
        client = await ForwardClient.connect(svc.forward_port)
        await client.send(
            ["slipway.shop.web.1", [[T, {"log": "acked before the crash"}]], {"chunk": "z"}]
        )
        assert await client.reply() == {"ack": "z"}
        await client.close()
        await stop()  # the journal stays open on disk, as after a kill
        with (tmp_path / "spool" / "shop").joinpath("torn.open").open("wb") as torn:
            torn.write(b'{"seq": 9, "te')  # a write cut short leaves a torn line; it is skipped
        spool = spool_at(tmp_path / "spool")
        assert spool.recover() == 1
        store = await store_for(moto)
        assert await Uploader(spool, store, metrics=LogsMetrics(CollectorRegistry())).upload_ready()
        assert [line["text"] for line in await archived(store)] == ["acked before the crash"]

    async def test_a_full_spool_refuses_to_ack_so_the_client_retries(self, tmp_path: Path) -> None:
        svc, stop = await start_service(tmp_path)
        try:
            svc.spool.max_bytes = 0
            client = await ForwardClient.connect(svc.forward_port)
            await client.send(["slipway.shop.web.1", [[T, {"log": "no room"}]], {"chunk": "f"}])
            # The service has read the chunk (under load that can take longer than a fixed
            # wait): an ack, had it sent one, is on its way by now, and none comes.
            await eventually(
                lambda: svc.sample("slipway_logs_lines_dropped_total", reason="spool_full") == 1
            )
            with pytest.raises(TimeoutError):
                await client.reply(timeout=0.3)
            assert svc.hub.history("shop", Filter(), lines=10)[0] == []
            await client.close()
        finally:
            await stop()

    async def test_s3_errors_are_translated_to_archive_errors(self, moto: Moto) -> None:
        store = S3Store(bucket="no-such-bucket", endpoint_url=moto.url)
        with pytest.raises(ArchiveError, match="S3 put failed"):
            await store.put("k", b"x")


class TestArchiveReads:
    async def test_since_and_until_read_lines_back_from_s3(
        self, tmp_path: Path, moto: Moto
    ) -> None:
        store = await store_for(moto)
        svc, stop = await start_service(tmp_path, store=store)
        try:
            for i in range(4):
                svc.service.publish(
                    "shop", Source.APP, "web.1" if i % 2 else "worker.1", f"old {i}", T + i
                )
            svc.spool.seal_all()
            assert await Uploader(svc.spool, store, metrics=svc.metrics).upload_ready()
            headers = {"Authorization": f"Bearer {ADMIN}"}
            async with aiohttp.ClientSession() as http:
                url = f"{svc.url}/apps/shop/logs?since={T + 1}&until={T + 3}&process=web"
                async with http.get(url, headers=headers) as r:
                    assert r.status == 200
                    assert r.content_type == "application/x-ndjson"
                    got = [json.loads(line)["text"] for line in (await r.text()).splitlines()]
                assert got == ["old 1", "old 3"]
                url = f"{svc.url}/apps/shop/logs?since=2026-11-18T11:06:40Z&until={T}&format=text"
                async with http.get(url, headers=headers) as r:
                    assert (
                        await r.text() == "2026-11-18T11:06:40.000000+00:00 app[worker.1]: old 0\n"
                    )
                url = f"{svc.url}/apps/shop/logs?since={T}&until={T + 30 * 86400}"
                async with http.get(url, headers=headers) as r:
                    assert r.status == 400
                    assert "more than 7 days" in await r.text()
        finally:
            await stop()

    async def test_an_archive_outage_is_a_503_not_a_crash(self, tmp_path: Path, moto: Moto) -> None:
        store = await store_for(moto)
        svc, stop = await start_service(tmp_path, store=store)
        try:
            moto.stop()
            async with aiohttp.ClientSession() as http:
                url = f"{svc.url}/apps/shop/logs?since={T}&until={T + 10}"
                async with http.get(url, headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                    assert r.status == 503
        finally:
            await stop()


def lines_for(seqs: range, text: str = "l", at: float = T) -> list[LogLine]:
    return [LogLine(s, at, Source.APP, "web.1", f"{text}{s}") for s in seqs]


class TestWhatARestartReadsBack:
    def test_the_newest_lines_of_each_app_come_back_after_recovery(self, tmp_path: Path) -> None:
        spool = spool_at(tmp_path)
        spool.append("shop", lines_for(range(1, 40)), T)
        spool.seal_all()
        spool.append("shop", lines_for(range(1000, 1010)), T)  # a later process, still open
        spool.append("blog", lines_for(range(5, 8)), T)
        spool.close()  # as a kill leaves them
        again = spool_at(tmp_path)
        again.recover()
        recent = again.recent(15, apps=10)
        assert [line.seq for line in recent["shop"]] == [*range(34, 40), *range(1000, 1010)][-15:]
        assert [line.text for line in recent["blog"]] == ["l5", "l6", "l7"]

    def test_a_torn_last_line_is_left_out(self, tmp_path: Path) -> None:
        spool = spool_at(tmp_path)
        spool.append("shop", lines_for(range(1, 4)), T)
        spool.close()
        [journal] = (tmp_path / "shop").iterdir()
        with journal.open("ab") as f:
            f.write(b'{"app": "shop", "seq": 4, "ti')
        again = spool_at(tmp_path)
        again.recover()
        assert [line.seq for line in again.recent(10, apps=10)["shop"]] == [1, 2, 3]

    def test_a_big_journal_is_read_from_its_end(self, tmp_path: Path) -> None:
        spool = spool_at(tmp_path, flush_bytes=10**9)
        spool.append("shop", lines_for(range(1, 20_001), "x" * 100), T)
        spool.seal_all()
        recent = spool.recent(1500, apps=10)["shop"]
        assert [line.seq for line in recent] == list(range(18_501, 20_001))

    def test_only_the_most_recently_written_apps_come_back(self, tmp_path: Path) -> None:
        spool = spool_at(tmp_path)
        for n, app in enumerate(("old", "mid", "new")):
            spool.append(app, lines_for(range(n * 10 + 1, n * 10 + 3)), T)
        spool.seal_all()
        assert sorted(spool.recent(10, apps=2)) == ["mid", "new"]


class TestSpoolBounds:
    def test_past_max_open_the_oldest_journal_is_sealed(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path, max_bytes=10**7, flush_bytes=10**7, flush_age=60.0, max_open=2)
        for app in ("a", "b", "c"):
            spool.append(app, lines_for(range(1, 3)), T)
        assert [p.parent.name for p in spool.ready()] == ["a"]
        spool.close()

    def test_without_a_store_the_oldest_journals_are_pruned_to_keep_acking(
        self, tmp_path: Path
    ) -> None:
        spool = spool_at(tmp_path, max_bytes=4000)
        for hour in range(4):
            at = T + hour * 3600
            spool.append("shop", lines_for(range(hour * 10, hour * 10 + 10), at=at), at)
        spool.seal_all()
        assert not spool.has_room()
        uploader = Uploader(spool, None, metrics=LogsMetrics(CollectorRegistry()))
        assert asyncio.run(uploader.upload_ready())
        assert spool.has_room()
        kept = spool.recent(100, apps=10)["shop"]
        assert kept[-1].seq == 39  # the newest survive
        assert kept[0].seq > 0
