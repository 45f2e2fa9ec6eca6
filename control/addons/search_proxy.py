"""HTTP Basic auth in front of each ``search:dev`` instance (osmem-server has none).

One aiohttp listener per add-on, in the control plane's process, on the port the app's
URL names; the instance itself listens on the loopback port the agent gave it, which no
config var carries. A request is let through only with the add-on's own credentials
(compared in constant time), then streamed both ways: a bulk body or a large search reply
is never held whole in memory. What this guards: the URL the app is given. What it does
not: osmem's own loopback port, which a local process that scans ports can still reach
(docs/search.md, "Authentication").
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

log = logging.getLogger(__name__)

#: Connecting to the instance is loopback: seconds mean it is down, not slow.
CONNECT_TIMEOUT = 5.0
#: A search or bulk reply that stalls this long between bytes is given up (bounded waits).
READ_TIMEOUT = 300.0
#: Streamed in pieces of this size (a bulk body or reply is never held whole).
CHUNK = 65536
#: Headers that belong to one connection (RFC 9110 7.6.1), never forwarded, plus the
#: credentials (osmem needs none) and Host (the upstream's own).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
    }
)


def _error(status: int, kind: str, reason: str) -> web.Response:
    """An error shaped as Elasticsearch's, so clients report the reason."""
    body = {"error": {"type": kind, "reason": reason}, "status": status}
    headers = {"WWW-Authenticate": 'Basic realm="search"'} if status == 401 else None
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def authorized(header: str | None, expected: bytes) -> bool:
    """Whether an Authorization header carries exactly ``user:password`` (pure).

    The comparison takes the same time wherever the first difference is.
    """
    if header is None:
        return False
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected)


def _forwarded(headers: Mapping[str, str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in HOP_BY_HOP:
            out.add(name, value)
    return out


@dataclass
class _Listener:
    runner: web.AppRunner
    upstream: str
    port: int


class SearchProxies:
    """The listeners of every search add-on of this control plane, by resource."""

    def __init__(self) -> None:
        self._listeners: dict[str, _Listener] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
                ),
                auto_decompress=False,  # bytes pass through as the instance sent them
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    def port(self, resource: str) -> int | None:
        found = self._listeners.get(resource)
        return found.port if found else None

    async def start(
        self, resource: str, *, user: str, password: str, upstream: str, host: str, port: int
    ) -> int:
        """Listen on ``host:port`` (0: any free port) for ``resource``; the port.

        Already listening: only the upstream changes (the instance came back elsewhere).
        Raises OSError when the port cannot be bound.
        """
        found = self._listeners.get(resource)
        if found is not None:
            found.upstream = upstream
            return found.port
        expected = f"{user}:{password}".encode()
        listener: _Listener

        async def handle(request: web.Request) -> web.StreamResponse:
            if not authorized(request.headers.get("Authorization"), expected):
                return _error(401, "security_exception", "missing or wrong credentials")
            return await _relay(self._client(), request, listener.upstream)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        listener = _Listener(runner, upstream, int(bound))
        self._listeners[resource] = listener
        return listener.port

    async def stop(self, resource: str) -> None:
        found = self._listeners.pop(resource, None)
        if found is not None:
            await found.runner.cleanup()

    async def close(self) -> None:
        for resource in list(self._listeners):
            await self.stop(resource)
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _relay(
    session: aiohttp.ClientSession, request: web.Request, upstream: str
) -> web.StreamResponse:
    body = request.content if request.can_read_body else None
    response: web.StreamResponse | None = None
    try:
        async with session.request(
            request.method,
            upstream + request.rel_url.raw_path_qs,
            headers=_forwarded(request.headers),
            data=body,
            allow_redirects=False,
        ) as reply:
            response = web.StreamResponse(status=reply.status, reason=reply.reason)
            response.headers.extend(_forwarded(reply.headers))
            if reply.content_length is not None:
                response.content_length = reply.content_length
            await response.prepare(request)
            async for chunk in reply.content.iter_chunked(CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        if response is not None and response.prepared:
            raise  # mid-reply: the client sees the connection cut, never a spliced error
        log.warning("search instance unreachable", extra={"error": type(exc).__name__})
        return _error(502, "unavailable", "the search instance is not answering")
