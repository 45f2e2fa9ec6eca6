"""One-off processes (``slipway run``) and add-on plans (``slipway addons:plans``).

``POST /apps/{app}/dynos`` runs a command once on the app's current release,
with its config vars and add-on URLs, where the app's processes run (as the
release phase does). Attached, the answer is NDJSON streamed while it runs::

    {"dyno": "run.4821"}
    {"output": "Operations to perform:\\n"}
    ...
    {"exit_code": 0}

Output comes as the process prints it when the agent runs in this process
(``slipway up``); through an agent elsewhere it comes in one piece at the
end (the tail the agent keeps). Detached (``attach: false``), the answer is
202 at once and the output goes to the app's log stream as dyno ``run.NNNN``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import json
import logging
import re
import secrets
import time
from typing import Any

from aiohttp import web

from control.addons.names import canonical
from control.builds.model import LogSink
from control.errors import Conflict, NotFound, Unprocessable
from control.releasing import PhaseResult
from control.service import Control
from kit.oneoff import WATCHER, Lines, Watcher
from kit.redact import mask_text

log = logging.getLogger(__name__)

#: Seconds of silence after which an attached stream gets an empty line: proxies and the
#: CLI's read timeout (330 s) would otherwise cut a quiet command (a long migration).
HEARTBEAT = 20.0
#: The tail a one-off's output ends with when it failed (agent/once.py writes it).
_EXITED = re.compile(r"command exited with code (\d+)\s*$")


class Running:
    """The detached runs still going, and where their output goes.

    Kept so they are not garbage-collected mid-run, and cancelled (their
    processes killed) when the API stops.
    """

    def __init__(self, sink: LogSink) -> None:
        self.sink = sink
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


RUNNING: web.AppKey[Running] = web.AppKey("runs", Running)


def dyno_name() -> str:
    """Heroku's one-off names: ``run.`` and four digits."""
    return f"run.{secrets.randbelow(9000) + 1000}"


def exit_code(result: PhaseResult, watcher: Watcher) -> int:
    """The process's exit code: seen here, or read from the tail an agent elsewhere sent."""
    if watcher.code is not None:
        return watcher.code
    if result.ok:
        return 0
    found = _EXITED.search(result.output)
    return int(found.group(1)) if found else 1


async def check_code(control: Control, name: str) -> None:
    """404 for an unknown app, 409 for one with nothing deployed to run in."""
    app = await control.get_app(name)
    release = None
    if app.current_release is not None:
        with contextlib.suppress(NotFound):
            release = await control.get_release(name, app.current_release)
    if release is None or release.artifact is None:
        raise Conflict(
            f"{name} has no code to run yet: deploy it first (builds:create or deploy)",
            id="no_code",
        )


async def attached(
    request: web.Request, control: Control, *, app: str, actor: str, command: str
) -> web.StreamResponse:
    """Run ``command``, streaming its output and then its exit code as NDJSON."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    watcher = Watcher(on_output=queue.put_nowait, name=dyno_name())

    async def run() -> PhaseResult:
        WATCHER.set(watcher)
        return await control.run_once(app, command, reason="run", actor=actor)

    task = asyncio.get_running_loop().create_task(run(), name=f"run:{app}")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    announced = False
    try:
        while not (task.done() and queue.empty()):
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, task}, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if not done:
                    await response.write(b"\n")
                continue
            if not announced and watcher.dyno:
                announced = True
                await _send(response, {"dyno": watcher.dyno})
            text = decoder.decode(getter.result())
            if text:
                await _send(response, {"output": text})
        result = task.result()
        if not announced and watcher.dyno:
            await _send(response, {"dyno": watcher.dyno})  # a command that printed nothing
        rest = decoder.decode(b"", final=True)
        if rest:
            await _send(response, {"output": rest})
        if not watcher.seen and result.output:
            await _send(response, {"output": result.output.rstrip("\n") + "\n"})
        await _send(response, {"exit_code": exit_code(result, watcher)})
        await response.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        # The client went away (Ctrl-C at `slipway run`): the process goes too.
        task.cancel()
        raise
    except Exception as exc:
        # Once streaming began no error status can be sent: say it in the stream.
        said = mask_text(str(exc))  # an agent's or a store's error may quote a URL
        log.error("one-off run failed", extra={"app": app, "error": said})
        with contextlib.suppress(ConnectionResetError):
            await _send(response, {"error": said, "exit_code": 1})
            await response.write_eof()
    return response


async def _send(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(json.dumps(event).encode() + b"\n")


def detached(
    running: Running,
    control: Control,
    *,
    app: str,
    actor: str,
    command: str,
) -> dict[str, Any]:
    """Run it in the background; its output goes to the app's logs as ``run.NNNN``."""
    dyno = dyno_name()

    def say(line: str) -> None:
        running.sink.publish(app, "app", dyno, line, time.time())

    lines = Lines(say)
    watcher = Watcher(on_output=lines.feed, name=dyno)

    async def run() -> None:
        WATCHER.set(watcher)
        try:
            result = await control.run_once(app, command, reason="run:detached", actor=actor)
        except Exception as exc:
            lines.flush()
            say(f"run failed: {mask_text(str(exc))}")
            return
        lines.flush()
        if not watcher.seen and result.output:
            for line in result.output.splitlines():
                say(line)
        say(f"Process exited with status {exit_code(result, watcher)}")

    task = asyncio.get_running_loop().create_task(run(), name=f"run:{app}:{dyno}")
    running.add(task)
    return {"name": dyno, "command": command, "attach": False, "state": "starting"}


def plans(control: Control, service: str) -> list[dict[str, Any]]:
    """Heroku's ``addons:plans SERVICE``: our plans, their limits, which one is the default
    (the first: what ``addons:create SERVICE`` makes)."""
    service = canonical(service).partition(":")[0]
    try:
        provisioner = control.addons.provisioner(service)
    except Unprocessable as exc:
        # Named in the path: a service that is not here is a resource that is not.
        raise NotFound(exc.message, id=exc.id) from None
    found = []
    for index, (name, plan) in enumerate(provisioner.plans.items()):
        limits = dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) else {}  # type: ignore[arg-type]
        found.append({"name": f"{service}:{name}", "default": index == 0, "limits": limits})
    return found
