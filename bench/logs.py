"""Benchmark of the logs service: forward ingest rate, and send -> SSE receipt latency.

The service runs in its own process (one event loop, so one core: the ingest
figure is per core); clients run here. Figures:

- ingest: lines/s through the forward port (PackedForward chunks of 1000 lines,
  acked, spool on), against a peer measured in the same run: msgpack-decoding
  the same bytes in one process with no service at all (the ceiling).
- latency: with 100 SSE subscribers on one app, lines sent one per forward
  message at a steady rate; p50/p99 of (receipt - send) over every subscriber.

Goals (issue 4): 100k lines/s ingest, p99 < 50 ms. Runs in well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgpack

# Run as ``python bench/logs.py``, this file's folder comes first on sys.path and
# this very file would shadow the ``logs`` package; drop it before importing slipway.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import runner
from logs.cli import run_service
from logs.forward import pack_event_time
from logs.settings import LogsSettings
from tests.conftest import free_port

TOKEN = "bench-admin"


def serve(settings: LogsSettings) -> None:
    logging.disable(logging.INFO)
    runner.run(functools.partial(run_service, settings))


def chunk_frame(n: int, index: int) -> bytes:
    now = time.time()
    record = {"log": "x" * 100, "stream": "stdout"}
    entries = b"".join(msgpack.packb([pack_event_time(now), record]) for _ in range(n))
    return msgpack.packb(
        ["slipway.bench.web.1", entries, {"chunk": f"c{index}", "size": n}], use_bin_type=True
    )


async def ingest(port: int, *, connections: int, chunks: int, per_chunk: int) -> float:
    frames = [chunk_frame(per_chunk, i) for i in range(chunks)]

    async def one(conn: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        unpacker = msgpack.Unpacker(raw=False)
        mine = frames[conn::connections]
        window = 8  # in-flight chunks per connection, like Fluent Bit's workers
        sent = acked = 0
        while acked < len(mine):
            while sent < len(mine) and sent - acked < window:
                writer.write(mine[sent])
                sent += 1
            data = await reader.read(65536)
            if not data:
                raise RuntimeError("server closed the connection")
            unpacker.feed(data)
            acked += sum(1 for _ in unpacker)
        writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(c) for c in range(connections))), 120)
    return chunks * per_chunk / (time.perf_counter() - started)


def decode_peer(chunks: int, per_chunk: int) -> float:
    data = b"".join(chunk_frame(per_chunk, i) for i in range(chunks))
    started = time.perf_counter()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    for frame in unpacker:
        inner = msgpack.Unpacker(raw=False)
        inner.feed(frame[1])
        for _ in inner:
            pass
    return chunks * per_chunk / (time.perf_counter() - started)


async def latency(
    http_port: int, fwd_port: int, *, subscribers: int, rate: int, seconds: float
) -> list[float]:
    samples: list[float] = []
    url = f"http://127.0.0.1:{http_port}/apps/lat/logs?tail=1&lines=0"
    total = int(rate * seconds)
    timeout = aiohttp.ClientTimeout(total=seconds + 60)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as http:

        async def subscriber(ready: asyncio.Event, counter: list[int]) -> None:
            async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                counter[0] += 1
                if counter[0] == subscribers:
                    ready.set()
                got = 0
                async for raw in r.content:
                    if raw.startswith(b"data: "):
                        # the text is the last field; slicing beats json.loads for 100 streams
                        sent = float(raw[raw.rindex(b'"text": "') + 9 : -3])
                        samples.append(time.time() - sent)
                        got += 1
                        if got == total:
                            return

        ready = asyncio.Event()
        counter = [0]
        tasks = [asyncio.create_task(subscriber(ready, counter)) for _ in range(subscribers)]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.5)  # every handler is past prepare() and subscribed
        _, writer = await asyncio.open_connection("127.0.0.1", fwd_port)
        interval = 1 / rate
        start = time.perf_counter()
        for i in range(total):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            writer.write(msgpack.packb(["slipway.lat.web.1", now, {"log": repr(now)}]))
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 30)
        writer.close()
    return samples


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--per-chunk", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=int, default=200, help="lines/s in the latency run")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = LogsSettings(
            http_port=free_port(),
            forward_port=free_port(),
            admin_token=TOKEN,
            spool_dir=Path(tmp) / "spool",
            spool_max_bytes=4 * 1024**3,
            subscriber_queue=10_000,
        )
        proc = multiprocessing.get_context("spawn").Process(target=serve, args=(settings,))
        proc.start()
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", settings.forward_port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            rate = asyncio.run(
                ingest(
                    settings.forward_port,
                    connections=args.connections,
                    chunks=args.chunks,
                    per_chunk=args.per_chunk,
                )
            )
            peer = decode_peer(args.chunks, args.per_chunk)
            print(f"ingest: {rate:,.0f} lines/s through forward (goal 100,000)")
            print(f"peer:   {peer:,.0f} lines/s msgpack decode only; ratio {rate / peer:.2f}")
            for subscribers in (1, args.subscribers):
                # 1 subscriber is the peer: the same path with no fan-out, so the ratio
                # shows what 100 tails cost on top of this (noisy, shared) machine.
                samples = asyncio.run(
                    latency(
                        settings.http_port,
                        settings.forward_port,
                        subscribers=subscribers,
                        rate=args.rate,
                        seconds=args.seconds,
                    )
                )
                print(
                    f"latency: {subscribers} subscriber(s), {args.rate} lines/s, "
                    f"{len(samples)} receipts: p50 {pct(samples, 0.5) * 1000:.1f} ms, "
                    f"p99 {pct(samples, 0.99) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms, "
                    f"mean {statistics.fmean(samples) * 1000:.1f} ms (goal p99 < 50 ms at 100)"
                )
        finally:
            proc.terminate()
            proc.join(20)
            if proc.is_alive():
                proc.kill()
    print(f"(cpus: {os.cpu_count()}; shared machine, figures are noisy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
