"""``slipway run bash`` at a terminal: a one-off on a pseudo-terminal over a WebSocket.

``GET /apps/{app}/dynos/tty`` upgrades to a WebSocket once the token may act
on the app (403 before anything runs, as ``POST /apps/{app}/dynos``), the
runtime can give a terminal (409 otherwise: a one-off on Kubernetes is a Job,
with nothing to attach to) and the app has code (409). Then::

    client → {"command": "bash", "cols": 120, "rows": 40, "term": "xterm-256color"}
    server → {"dyno": "run.4821"}
    both   → binary frames: keystrokes one way, terminal output the other
    client → {"cols": 100, "rows": 30}        (a window size change)
    server → {"exit_code": 0}                 (or {"error": "...", "exit_code": 1}), then close

The command comes in the first message, not the URL, so no access log keeps it.
The process is the one ``POST /apps/{app}/dynos`` runs (the same release, env,
DYNO naming and sandbox; agent/once.py ``open_shell``), on a pty. It is killed,
with everything it started, when the socket closes for any reason, after
``idle`` seconds with no byte either way (Heroku's one hour) and after
``total`` seconds in all (a one-off's day). Both directions are bounded: the
pty is read only once the last frame was handed to the socket (a fast printer
blocks on its full terminal), and a frame is read from the socket only once
the last keystrokes were written to the pty (TCP holds the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from control.api import runs
from control.errors import ApiError, BadRequest, Conflict
from control.service import Control
from kit.ptyspawn import DEFAULT_SIZE, PtyChild
from kit.redact import mask_text

log = logging.getLogger(__name__)

#: Seconds the client has to send its first message (the command) after the upgrade.
HELLO_TIMEOUT = 10.0
#: A keystroke frame or control message larger than this closes the socket (1009).
MAX_FRAME = 64 * 1024
#: Seconds of output still read once the command exited (what its last write left).
DRAIN = 1.0
#: Pings keep proxies from closing a quiet session and find a vanished client.
HEARTBEAT = 30.0
#: Largest window a client may ask for, each way.
MAX_SIDE = 10_000


@dataclass(frozen=True, slots=True)
class Limits:
    #: Seconds with no byte either way before the session is closed (Heroku: 1 h).
    idle: float = 3600.0
    #: Seconds a session may last in all (Heroku cycles one-off dynos after 24 h).
    total: float = 86400.0


LIMITS: web.AppKey[Limits] = web.AppKey("terminal_limits", Limits)
#: Open sessions, closed (and their processes killed) when the API shuts down.
SESSIONS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("terminal_sessions", set)


async def close_all(app: web.Application) -> None:
    """on_shutdown: every session ends (1001, going away) rather than hold the shutdown."""
    for ws in list(app.get(SESSIONS, ())):
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=1001, message=b"the control plane is stopping")


@dataclass(frozen=True, slots=True)
class Hello:
    command: str
    size: tuple[int, int]
    term: str


async def attach(
    request: web.Request, control: Control, *, app: str, actor: str
) -> web.StreamResponse:
    """Checked before the upgrade (HTTP statuses), then the session until it ends."""
    refusal = control.terminal_refusal()
    if refusal is not None:
        raise Conflict(refusal, id="tty_unsupported")
    await runs.check_code(control, app)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME)
    if not ws.can_prepare(request).ok:
        raise BadRequest("this endpoint speaks WebSocket (slipway run on a terminal)")
    await ws.prepare(request)
    sessions = request.app.get(SESSIONS, set())
    sessions.add(ws)
    try:
        return await _session(ws, request, control, app=app, actor=actor)
    finally:
        sessions.discard(ws)


async def _session(
    ws: web.WebSocketResponse, request: web.Request, control: Control, *, app: str, actor: str
) -> web.WebSocketResponse:
    limits = request.app.get(LIMITS) or Limits()
    try:
        hello = await _hello(ws)
        dyno = runs.dyno_name()
        child = await control.open_terminal(
            app, hello.command, actor=actor, dyno=dyno, size=hello.size, term=hello.term
        )
    except (ApiError, TimeoutError, ValueError) as exc:
        said = exc.message if isinstance(exc, ApiError) else str(exc) or "no command was sent"
        await _end(ws, {"error": mask_text(said), "exit_code": 1})
        return ws
    except Exception as exc:
        # Past the upgrade no error status can be sent (the store, the agent): say it here.
        said = mask_text(str(exc))
        log.error("interactive run failed", extra={"app": app, "error": said})
        await _end(ws, {"error": said, "exit_code": 1})
        return ws
    log.info("interactive run started", extra={"app": app, "dyno": dyno})
    try:
        await ws.send_json({"dyno": dyno})
        code = await Session(ws, child, limits).run()
    finally:
        child.kill()
        child.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await child.wait()
    log.info("interactive run ended", extra={"app": app, "dyno": dyno, "code": code})
    if isinstance(code, str):
        await _end(ws, {"error": code, "exit_code": 1})
    elif code is not None:
        await _end(ws, {"exit_code": code})
    return ws


async def _hello(ws: web.WebSocketResponse) -> Hello:
    async with asyncio.timeout(HELLO_TIMEOUT):
        msg = await ws.receive()
    if msg.type is not WSMsgType.TEXT:
        raise ValueError('the first message must be JSON: {"command": ...}')
    body = json.loads(msg.data)
    command = body.get("command") if isinstance(body, dict) else None
    if not isinstance(command, str) or not command.strip() or len(command) > 10_000:
        raise ValueError("command must be a non-empty shell line of at most 10000 characters")
    term = body.get("term", "")
    return Hello(command=command, size=_size(body) or DEFAULT_SIZE, term=str(term)[:64])


def _size(body: Any) -> tuple[int, int] | None:
    if not isinstance(body, dict):
        return None
    cols, rows = body.get("cols"), body.get("rows")
    if not (isinstance(cols, int) and isinstance(rows, int)):
        return None
    if not (0 < cols <= MAX_SIDE and 0 < rows <= MAX_SIDE):
        return None
    return cols, rows


async def _end(ws: web.WebSocketResponse, event: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        if not ws.closed:
            await ws.send_json(event)
            await ws.close()


class Session:
    """The two pumps and the clocks; ``run`` answers the exit code, a reason it was cut
    (str), or None when the client went away."""

    def __init__(self, ws: web.WebSocketResponse, child: PtyChild, limits: Limits) -> None:
        self.ws = ws
        self.child = child
        self.limits = limits
        self.active = asyncio.Event()

    async def run(self) -> int | str | None:
        loop = asyncio.get_running_loop()
        output = loop.create_task(self._output())
        typed = loop.create_task(self._input())
        idle = loop.create_task(self._idle())
        exited = loop.create_task(self.child.wait())
        tasks = {output, typed, idle, exited}
        try:
            async with asyncio.timeout(self.limits.total):
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if exited in done or output in done:
                    # The command ended (or closed its terminal): what it printed last, then
                    # its code. A daemon it left holding the pty does not keep the session.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(DRAIN):
                            await output
                    self.child.kill()
                    async with asyncio.timeout(5):
                        code = await exited
                    return code if code >= 0 else 128 - code  # killed by a signal: 128+N
                if idle in done:
                    return f"closed after {self.limits.idle:g}s with no input or output"
                return None  # the client closed the socket, or it broke
        except TimeoutError:
            return f"closed after {self.limits.total:g}s, the longest a session may last"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _output(self) -> None:
        while chunk := await self.child.read():
            self.active.set()
            await self.ws.send_bytes(chunk)  # waits while the socket's buffer is full

    async def _input(self) -> None:
        async for msg in self.ws:
            self.active.set()
            if msg.type is WSMsgType.BINARY:
                await self.child.write(msg.data)
            elif msg.type is WSMsgType.TEXT:
                with contextlib.suppress(ValueError):
                    size = _size(json.loads(msg.data))
                    if size is not None:
                        self.child.resize(*size)

    async def _idle(self) -> None:
        """Returns once ``idle`` seconds passed with no byte either way."""
        while True:
            self.active.clear()
            try:
                async with asyncio.timeout(self.limits.idle):
                    await self.active.wait()
            except TimeoutError:
                return
