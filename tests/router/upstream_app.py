"""A real app process for router tests: ``python upstream_app.py PORT [NAME]``.

Each path exercises one thing a proxy must carry: keep-alive, bodies streamed
both ways, chunked encoding, SSE, WebSockets, slow answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

from aiohttp import WSMsgType, web

NAME = sys.argv[2] if len(sys.argv) > 2 else "app"
peers: set[str] = set()


async def hello(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.Response(text=f"hello from {NAME} via {peer[1] if peer else '?'}\n")


async def headers(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "method": request.method,
            "path_qs": request.path_qs,
        }
    )


async def upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response(
        {
            "size": size,
            "sha256": digest.hexdigest(),
            "chunked": "chunked" in request.headers.get("Transfer-Encoding", ""),
        }
    )


async def echo(request: web.Request) -> web.StreamResponse:
    """Streams the body back as it arrives (chunked)."""
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    async for chunk in request.content.iter_chunked(65536):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def download(request: web.Request) -> web.StreamResponse:
    """``size`` bytes in 64 KiB chunks, chunked, made as they are sent."""
    size = int(request.query.get("size", "1048576"))
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    block = b"x" * 65536
    left = size
    while left > 0:
        piece = block[: min(left, len(block))]
        await resp.write(piece)
        left -= len(piece)
    await resp.write_eof()
    return resp


async def sse(request: web.Request) -> web.StreamResponse:
    """Three events, ``gap`` seconds apart: a proxy must pass each as it comes."""
    gap = float(request.query.get("gap", "0.5"))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(3):
        await resp.write(f"id: {i}\ndata: event {i}\n\n".encode())
        await asyncio.sleep(gap)
    return resp


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("seconds", "2")))
    return web.Response(text="finally\n")


async def ws(request: web.Request) -> web.WebSocketResponse:
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for msg in sock:
        if msg.type == WSMsgType.TEXT:
            await sock.send_str(f"echo: {msg.data}")
        elif msg.type == WSMsgType.BINARY:
            await sock.send_bytes(msg.data)
    return sock


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text=json.dumps({"ok": True}))


def main() -> None:
    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/", hello)
    app.router.add_route("*", "/headers", headers)
    app.router.add_post("/upload", upload)
    app.router.add_post("/echo", echo)
    app.router.add_get("/download", download)
    app.router.add_get("/sse", sse)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/status/{code}", status)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
        shutdown_timeout=0.5,
    )


if __name__ == "__main__":
    main()
