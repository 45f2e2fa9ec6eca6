"""LocalRuntime: an app's Procfile processes as child processes of this one.

Each instance (``web.1``) is supervised by one task: pick a port, spawn
``sh -c COMMAND`` in a new process group with ``PORT`` set, probe readiness
(a TCP connect, or GET of the health path) every few milliseconds while it
boots, then wait for it to exit or be stopped. An exit that was not asked
for is a crash: the instance shows ``crashed`` (with the exit code) and is
restarted: at once the first time, then after a backoff that doubles with
each crash in a row, so a crash loop is visible and cheap instead of hidden
and hot.

Output is read line by line from pipes and handed to a ``ProcessLogSink``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from agent.apps import WEB
from agent.errors import RuntimeFailure, UnknownApp
from agent.once import run_shell
from agent.output import ConsoleSink, ProcessLogSink
from agent.runtime import Instance, OnceResult, ProcessSpec, ProcessStatus
from agent.settings import LocalSettings

log = logging.getLogger(__name__)

# Lines longer than this are cut into pieces: one runaway line must not hold memory.
MAX_LINE = 64 * 1024
# A just-released port is not handed out again for this many picks, so a new
# incarnation never looks like the one a router just saw refuse (it is retired).
RECENT_PORTS = 256


@dataclass(eq=False)
class _Incarnation:
    """One instance slot (``web.1``) while it is wanted, across restarts."""

    name: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    port: int | None = None
    ready: bool = False
    crashed: bool = False
    reason: str = ""
    restarts: int = 0
    task: asyncio.Task[None] | None = None


@dataclass
class _Group:
    spec: ProcessSpec
    desired: int = 0
    #: index -> the incarnation serving it.
    running: dict[int, _Incarnation] = field(default_factory=dict)
    #: incarnations being stopped (no longer in status).
    stopping: set[_Incarnation] = field(default_factory=set)


class LocalRuntime:
    def __init__(
        self, *, settings: LocalSettings | None = None, sink: ProcessLogSink | None = None
    ) -> None:
        self.settings = settings or LocalSettings()
        self.sink: ProcessLogSink = sink or ConsoleSink()
        self._groups: dict[tuple[str, str], _Group] = {}
        self._watchers: list[asyncio.Queue[ProcessStatus | None]] = []
        self._recent_ports: collections.deque[int] = collections.deque(maxlen=RECENT_PORTS)
        self._closed = False

    # -- the Runtime protocol -------------------------------------------------------------

    async def apply(self, spec: ProcessSpec) -> None:
        key = (spec.app, spec.process)
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = _Group(spec)
            self._emit(key)
            return
        if group.spec == spec:
            return
        group.spec = spec
        for index in list(group.running):
            self._retire(group, index)
        self._reconcile(key)

    async def remove(self, app: str, process: str) -> None:
        key = (app, process)
        group = self._group(key)
        group.desired = 0
        self._reconcile(key)
        await self._wait_stopped(group)
        del self._groups[key]

    async def scale(self, app: str, process: str, replicas: int) -> None:
        if replicas < 0:
            raise RuntimeFailure(f"cannot scale {app}/{process} to {replicas}")
        if self._closed:
            raise RuntimeFailure("the runtime is closed")
        key = (app, process)
        self._group(key).desired = replicas
        self._reconcile(key)

    async def run_once(self, spec: ProcessSpec, command: str, *, timeout: float) -> OnceResult:
        """A shell in the release's directory with its env (plus PATH, HOME and the locale
        inherited), in its own process group: a timeout kills the whole group."""
        if self._closed:
            raise RuntimeFailure("the runtime is closed")
        result = await run_shell(command, cwd=spec.cwd, env=spec.env, timeout=timeout)
        log.info(
            "one-off process finished",
            extra={"app": spec.app, "release": spec.release, "ok": result.ok},
        )
        return result

    async def watch(self) -> AsyncIterator[ProcessStatus]:
        queue: asyncio.Queue[ProcessStatus | None] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            for key in list(self._groups):
                yield self._status(key)
            while (status := await queue.get()) is not None:
                yield status
        finally:
            self._watchers.remove(queue)

    async def close(self) -> None:
        self._closed = True
        for group in self._groups.values():
            group.desired = 0
            for index in list(group.running):
                self._retire(group, index)
        for group in self._groups.values():
            await self._wait_stopped(group)
        for queue in self._watchers:
            queue.put_nowait(None)

    # -- reconciling ----------------------------------------------------------------------

    def _group(self, key: tuple[str, str]) -> _Group:
        group = self._groups.get(key)
        if group is None:
            raise UnknownApp(*key)
        return group

    def _reconcile(self, key: tuple[str, str]) -> None:
        group = self._groups[key]
        for index in sorted(group.running, reverse=True):
            if index > group.desired:
                self._retire(group, index)
        for index in range(1, group.desired + 1):
            if index not in group.running:
                inc = _Incarnation(f"{key[1]}.{index}")
                group.running[index] = inc
                inc.task = asyncio.get_running_loop().create_task(
                    self._supervise(key, inc), name=f"local:{key[0]}:{inc.name}"
                )
                inc.task.add_done_callback(_log_failure)
        self._emit(key)

    def _retire(self, group: _Group, index: int) -> None:
        inc = group.running.pop(index)
        inc.ready = False
        inc.stop.set()
        group.stopping.add(inc)
        if inc.task is not None:
            inc.task.add_done_callback(lambda _: group.stopping.discard(inc))

    async def _wait_stopped(self, group: _Group) -> None:
        tasks = [i.task for i in group.stopping if i.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.stop_grace + 5)

    def _status(self, key: tuple[str, str]) -> ProcessStatus:
        group = self._groups[key]
        return ProcessStatus(
            app=key[0],
            process=key[1],
            desired=group.desired,
            instances=tuple(
                Instance(
                    name=inc.name,
                    host=self.settings.host if inc.port is not None else None,
                    port=inc.port,
                    # A worker has no port: running is ready.
                    ready=inc.ready,
                    crashed=inc.crashed,
                    reason=inc.reason,
                    restarts=inc.restarts,
                )
                for _, inc in sorted(group.running.items())
            ),
        )

    def _emit(self, key: tuple[str, str]) -> None:
        if key not in self._groups:
            return
        status = self._status(key)
        for queue in self._watchers:
            queue.put_nowait(status)

    # -- one instance ---------------------------------------------------------------------

    async def _supervise(self, key: tuple[str, str], inc: _Incarnation) -> None:
        loop = asyncio.get_running_loop()
        crashes_in_a_row = 0
        while not inc.stop.is_set():
            group = self._groups[key]
            spec = group.spec
            port = self._pick_port() if spec.process == WEB else None
            inc.port = port
            started = loop.time()
            try:
                proc = await self._spawn(spec, inc.name, port)
                self._emit(key)  # booting, on its port
            except OSError as exc:
                code: int | str = f"could not start: {exc.strerror or exc}"
                up_for = 0.0
            else:
                up_for, exit_code = await self._run(key, inc, spec, proc, started)
                if exit_code is None:
                    return  # stopped on purpose
                code = exit_code
            if inc.stop.is_set():
                return
            if up_for >= self.settings.backoff_reset:
                crashes_in_a_row = 0
            crashes_in_a_row += 1
            # Like Heroku: the first crash restarts at once, a loop backs off.
            delay = (
                0.0
                if crashes_in_a_row == 1
                else min(
                    self.settings.backoff_max,
                    self.settings.backoff_initial * 2 ** (crashes_in_a_row - 2),
                )
            )
            inc.ready, inc.crashed = False, True
            inc.reason = code if isinstance(code, str) else _describe_exit(code)
            log.warning(
                "process crashed",
                extra={
                    "app": key[0],
                    "dyno": inc.name,
                    "reason": inc.reason,
                    "restart_in": round(delay, 3),
                },
            )
            self._emit(key)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inc.stop.wait(), delay)
            if not inc.stop.is_set():
                inc.restarts += 1
                inc.reason = f"restarting after {inc.reason}"
                self._emit(key)

    async def _run(
        self,
        key: tuple[str, str],
        inc: _Incarnation,
        spec: ProcessSpec,
        proc: _Child,
        started: float,
    ) -> tuple[float, int | None]:
        """Until the process exits (its code) or is stopped (None); and how long it was up."""
        loop = asyncio.get_running_loop()
        readers = [
            loop.create_task(self._pump(key[0], inc.name, stream))
            for stream in (proc.stdout, proc.stderr)
            if stream is not None
        ]
        exited = loop.create_task(proc.wait())
        stopped = loop.create_task(inc.stop.wait())
        probe = loop.create_task(self._probe(spec, inc.port))
        ready_at: float | None = None
        try:
            pending = {exited, stopped, probe}
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if probe in done and probe.result() and not inc.ready:
                    ready_at = loop.time()
                    inc.ready, inc.crashed, inc.reason = True, False, ""
                    log.info(
                        "process ready",
                        extra={
                            "app": key[0],
                            "dyno": inc.name,
                            "port": inc.port,
                            "boot_ms": round((ready_at - started) * 1000),
                        },
                    )
                    self._emit(key)
                if stopped in done:
                    await self._terminate(proc)
                    return 0.0, None
                if exited in done:
                    up_for = 0.0 if ready_at is None else loop.time() - ready_at
                    return up_for, proc.returncode if proc.returncode is not None else -1
        finally:
            for task in (exited, stopped, probe):
                task.cancel()
            _kill_group(proc, signal.SIGKILL)
            if readers:
                await asyncio.wait(readers, timeout=1.0)
                for reader in readers:
                    reader.cancel()

    async def _spawn(self, spec: ProcessSpec, name: str, port: int | None) -> _Child:
        env = {**os.environ, **spec.env, "DYNO": name}
        if port is not None:
            env["PORT"] = str(port)
        return await _Child.spawn(
            ["/bin/sh", "-c", shell_line(spec.command)], cwd=spec.cwd, env=env
        )

    async def _terminate(self, proc: _Child) -> None:
        _kill_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.settings.stop_grace)
        except TimeoutError:
            _kill_group(proc, signal.SIGKILL)
            await proc.wait()

    async def _probe(self, spec: ProcessSpec, port: int | None) -> bool:
        """Poll until the instance answers; workers (no port) are ready once running."""
        if port is None:
            return True
        host = self.settings.host
        while True:
            if await _answers(host, port, spec.health_path, self.settings.probe_timeout):
                return True
            await asyncio.sleep(self.settings.probe_interval)

    async def _pump(self, app: str, name: str, stream: asyncio.StreamReader) -> None:
        buffer = b""
        while chunk := await stream.read(65536):
            *lines, buffer = (buffer + chunk).split(b"\n")
            # A line longer than MAX_LINE goes out in pieces, so memory stays bounded.
            pieces = [p for line in lines for p in _cut(line)]
            while len(buffer) >= MAX_LINE:
                pieces.append(buffer[:MAX_LINE])
                buffer = buffer[MAX_LINE:]
            now = time.time()
            for piece in pieces:
                self.sink.publish(app, "app", name, _text(piece), now)
        if buffer:
            self.sink.publish(app, "app", name, _text(buffer), time.time())

    def _pick_port(self) -> int:
        for _ in range(64):
            with socket.socket() as sock:
                sock.bind((self.settings.host, 0))
                port: int = sock.getsockname()[1]
            if port not in self._recent_ports:
                self._recent_ports.append(port)
                return port
        raise RuntimeFailure("no free port that was not used recently")


async def _answers(host: str, port: int, path: str | None, timeout: float) -> bool:
    """A TCP connect succeeds; with ``path``, a GET also answers 2xx or 3xx."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                if path is None:
                    return True
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
                    "User-Agent: slipway-probe\r\n\r\n".encode()
                )
                status_line = await reader.readline()
                parts = status_line.split()
                return len(parts) >= 2 and parts[1][:1] in (b"2", b"3")
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, ValueError):  # ValueError: a status line over 64 KiB
        return False


class _Child:
    """A child process with asyncio pipes, spawned off the event loop.

    ``loop.subprocess_exec`` under uvloop forks the whole (large) parent on
    the loop: ~8 ms during which the router in the same process stalls, on
    every wake. ``subprocess.Popen`` uses vfork (~1-3 ms) and runs here in a
    thread; the exit is watched with a pidfd on the loop (a thread on kernels
    without pidfd_open).
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        exited: asyncio.Future[int],
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdout = stdout
        self.stderr = stderr
        self._exited = exited

    @classmethod
    async def spawn(cls, argv: list[str], *, cwd: str | None, env: dict[str, str]) -> _Child:
        loop = asyncio.get_running_loop()
        popen = await loop.run_in_executor(None, functools.partial(_popen, argv, cwd, env))
        assert popen.stdout is not None
        assert popen.stderr is not None
        stdout, stderr = asyncio.StreamReader(), asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), popen.stdout)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stderr), popen.stderr)
        exited: asyncio.Future[int] = loop.create_future()
        _watch_exit(loop, popen, exited)
        return cls(popen, stdout, stderr, exited)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


# Characters that make a Procfile line more than one simple command.
_COMPOUND = frozenset(";&|()`{}\n")
# A first word that is a path or a program name, not an assignment or a shell builtin.
_PROGRAM = re.compile(r"^[\w./+-]+$")
_BUILTINS = frozenset(
    {
        "exec",
        "cd",
        "export",
        "if",
        "for",
        "while",
        "until",
        "case",
        "set",
        "eval",
        "ulimit",
        "umask",
        "trap",
        "source",
        ".",
        "!",
        "time",
        "nice",
        "nohup",
    }
)


def shell_line(command: str) -> str:
    """``exec COMMAND`` for one simple command, so the app itself gets SIGTERM and its grace.

    Otherwise the shell is what dies on SIGTERM (at once), and the app behind it would be
    killed with the group before it could finish its requests. Anything else (``a && b``,
    pipes, ``FOO=1 app``, a line that already says ``exec``) runs as written.
    """
    first = command.split(None, 1)[0] if command.strip() else ""
    if any(c in _COMPOUND for c in command) or not _PROGRAM.match(first) or first in _BUILTINS:
        return command
    return f"exec {command}"


def _popen(argv: list[str], cwd: str | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Its own process group: a stop reaches whatever the shell line started.
        start_new_session=True,
    )


def _watch_exit(
    loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes], exited: asyncio.Future[int]
) -> None:
    def reap() -> None:
        code = popen.wait()  # it has exited: this does not block
        if not exited.done():
            exited.set_result(code)

    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        # No pidfd: a thread waits instead.
        waiting = loop.run_in_executor(None, popen.wait)

        def done(future: asyncio.Future[int]) -> None:
            if not exited.done():
                exited.set_result(future.result())

        waiting.add_done_callback(done)
        return

    def readable() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        reap()

    loop.add_reader(pidfd, readable)


def _cut(line: bytes) -> list[bytes]:
    return [line[i : i + MAX_LINE] for i in range(0, len(line), MAX_LINE)] or [b""]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


def _log_failure(task: asyncio.Task[None]) -> None:
    """A supervisor must never die silently: its instance would look up forever."""
    if not task.cancelled() and task.exception() is not None:
        log.error("supervisor failed", exc_info=task.exception(), extra={"task": task.get_name()})


def _kill_group(proc: _Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
