"""Pod logs for the test apiserver: ``GET .../pods/{name}/log`` with ``follow``, written by tests.

The apiserver proxies a container's log from the kubelet: what was written so
far, then (``follow=true``) every new line until the container ends. Here the
test writes the lines (``write``) and ends the container's log (``end``), as
kubelet would when the container terminates. As on a real cluster, the log of
a container that has not started is a 400 ("is waiting to start").

Deletes are recorded with their query (``deletes``), so a test can check the
``propagationPolicy`` a client asked for.
"""

from __future__ import annotations

import asyncio

import aiohttp.web
import attrs
from kmock._internal import rendering

from tests.kube.apiserver import ApiServer


@attrs.define
class ContainerLog:
    lines: list[str] = attrs.field(factory=list)
    ended: bool = False
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)


@attrs.define(kw_only=True)
class LoggingApiServer(ApiServer):
    _logs: dict[tuple[str | None, str, str], ContainerLog] = attrs.field(factory=dict, init=False)
    #: (plural, name, query) of every DELETE of an object, in order.
    deletes: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list, init=False)
    #: Requests for a container's log, (pod, container, query), in order.
    log_requests: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list, init=False)

    def container_log(self, namespace: str, pod: str, container: str) -> ContainerLog:
        return self._logs.setdefault((namespace, pod, container), ContainerLog())

    def write(self, namespace: str, pod: str, container: str, *lines: str) -> None:
        log = self.container_log(namespace, pod, container)
        log.lines.extend(lines)
        log.changed.set()

    def end(self, namespace: str, pod: str, container: str) -> None:
        log = self.container_log(namespace, pod, container)
        log.ended = True
        log.changed.set()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        r = request.resource
        method = str(request.method.value if request.method else "").upper()
        if (
            r is not None
            and r.plural == "pods"
            and request.subresource == "log"
            and request.name is not None
            and method == "GET"
        ):
            return await self._log(request, request.namespace, request.name)
        if method == "DELETE" and r is not None and request.name is not None:
            self.deletes.append((r.plural, request.name, dict(request.params)))
        return await super()._handle(request)

    async def _log(
        self, request: rendering.Request, namespace: str | None, pod: str
    ) -> aiohttp.web.StreamResponse:
        if self.outage:
            return self._error(503, "ServiceUnavailable", "the apiserver is down (test outage)")
        params = dict(request.params)
        container = params.get("container", "")
        self.log_requests.append((pod, container, params))
        log = self._logs.get((namespace, pod, container))
        if log is None:
            return self._error(
                400,
                "BadRequest",
                f'container "{container}" in pod "{pod}" is waiting to start: PodInitializing',
            )
        raw_request = request._raw_request
        assert raw_request is not None
        stream = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await stream.prepare(raw_request)
        follow = params.get("follow", "").lower() in ("true", "1")
        sent = 0
        try:
            while True:
                log.changed.clear()
                while sent < len(log.lines):
                    # Lines written while this one is sent are sent next, none skipped.
                    await stream.write(log.lines[sent].encode() + b"\n")
                    sent += 1
                if log.ended or not follow:
                    break
                await log.changed.wait()
            await stream.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return stream
