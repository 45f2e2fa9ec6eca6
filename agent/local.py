"""Long because: spawn, probe, restart, stop and pipe a child share one instance's state.
LocalRuntime: an app's Procfile processes as child processes of this one.

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
import itertools
import logging
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from agent.apps import WEB, AppConfig
from agent.errors import RuntimeFailure, UnknownApp
from agent.once import RELEASE_DYNO, open_shell, run_shell
from agent.output import ConsoleSink, ProcessLogSink
from agent.runtime import Instance, OnceResult, ProcessSpec, ProcessStatus
from agent.settings import LocalSettings
from kit.ptyspawn import PtyChild
from kit.spawn import Child, Confiner, Jail, app_env, spawn

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
    #: Wall-clock start of the current process (``ps``'s "since"); None until spawned.
    started_at: float | None = None
    task: asyncio.Task[None] | None = None
    #: The running process (for the dyno monitor's samples and kills); None between runs.
    child: Child | None = None
    #: Why the platform killed it (R15), said instead of the bare signal when it exits.
    killed_for: str = ""


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
        self,
        *,
        settings: LocalSettings | None = None,
        sink: ProcessLogSink | None = None,
        confiner: Confiner | None = None,
    ) -> None:
        self.settings = settings or LocalSettings()
        self.sink: ProcessLogSink = sink or ConsoleSink()
        #: How app processes are confined (kit/spawn.py); None: plain children (tests,
        #: ``slipway serve agent`` behind its own isolation).
        self.confiner = confiner
        self._spawning = asyncio.Semaphore(self.settings.max_spawning)
        self._runs = itertools.count(1)
        self._groups: dict[tuple[str, str], _Group] = {}
        self._watchers: list[asyncio.Queue[ProcessStatus | None]] = []
        self._recent_ports: collections.deque[int] = collections.deque(maxlen=RECENT_PORTS)
        #: (app, dyno) -> the one-off process running as ``run.N`` or ``release.1``.
        self._once: dict[tuple[str, str], tuple[ProcessSpec, Child | PtyChild]] = {}
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
        if not spec.restart_on_change:
            return  # the running instances keep their process; a next start takes the spec
        for index in list(group.running):
            self._retire(group, index)
        self._reconcile(key)

    # Nothing of LocalRuntime outlives the agent: its processes end with it (kit/spawn.py),
    # so there is no definition or activity to keep for a next agent.
    activity_interval: float | None = None

    def describe(self, config: AppConfig) -> None:
        pass

    def last_activity(self, app: str) -> float | None:
        return None

    async def record_activity(self, app: str, process: str, at: float) -> None:
        pass

    async def restart(self, app: str, process: str) -> None:
        """New processes for every instance of the type, as a new release gets: each is
        retired and started again at the same replicas (requests are held meanwhile)."""
        key = (app, process)
        group = self._group(key)
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
        group = self._group(key)
        others = sum(g.desired for (a, p), g in self._groups.items() if a == app and p != process)
        allowed = max(0, self.settings.max_instances - others)
        if replicas > allowed:
            # The runtime's own ceiling, whatever the control plane let through: one app
            # must not take the machine (and every other app on it) down.
            if group.desired != allowed:
                log.warning(
                    "instances capped",
                    extra={"app": app, "process_type": process, "asked": replicas, "cap": allowed},
                )
            replicas = allowed
        group.desired = replicas
        self._reconcile(key)

    async def run_once(self, spec: ProcessSpec, command: str, *, timeout: float) -> OnceResult:
        """A shell in the release's directory with its env, confined as the app's processes
        are, in its own process group: a timeout kills the whole group."""
        if self._closed:
            raise RuntimeFailure("the runtime is closed")
        # Heroku's names: release.1 for the release phase, run.N for one-off runs.
        dyno = RELEASE_DYNO if spec.process == RELEASE else f"run.{next(self._runs)}"
        jail = await self._jail(spec)

        def running(child: Child | None) -> None:  # for the dyno monitor
            if child is None:
                self._once.pop((spec.app, dyno), None)
            else:
                self._once[(spec.app, dyno)] = (spec, child)

        async with self._spawning:
            result = await run_shell(
                command,
                cwd=spec.cwd,
                env=spec.env,
                timeout=timeout,
                dyno=dyno,
                confiner=self.confiner,
                jail=jail,
                running=running,
            )
        log.info(
            "one-off process finished",
            extra={"app": spec.app, "release": spec.release, "ok": result.ok},
        )
        return result

    async def open_terminal(
        self, spec: ProcessSpec, command: str, *, dyno: str, size: tuple[int, int], term: str
    ) -> PtyChild:
        """``run_once``'s process on a pty, for a person at a terminal (agent/once.py
        ``open_shell``): the caller reads, writes and kills it; the dyno monitor sees it
        until it exits."""
        if self._closed:
            raise RuntimeFailure("the runtime is closed")
        jail = await self._jail(spec)
        async with self._spawning:
            try:
                child = await open_shell(
                    command,
                    cwd=spec.cwd,
                    env=spec.env,
                    dyno=dyno,
                    size=size,
                    term=term,
                    confiner=self.confiner,
                    jail=jail,
                )
            except OSError as exc:
                raise RuntimeFailure(f"command could not start: {exc}") from exc
        key = (spec.app, dyno)
        self._once[key] = (spec, child)

        def ended(_: object) -> None:
            if key in self._once and self._once[key][1] is child:
                del self._once[key]

        asyncio.ensure_future(child.wait()).add_done_callback(ended)
        return child

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

    # -- the dyno monitor's view (agent/dynolocal.py) ---------------------------------------

    def running(self) -> list[tuple[ProcessSpec, str, int]]:
        """(spec, instance name, pid) of every process running now, one-off ones included."""
        return [
            (group.spec, inc.name, inc.child.pid)
            for group in self._groups.values()
            for inc in group.running.values()
            if inc.child is not None and inc.child.returncode is None
        ] + [
            (spec, dyno, child.pid)
            for (_, dyno), (spec, child) in self._once.items()
            if child.returncode is None
        ]

    def kill(self, app: str, name: str, pid: int, *, reason: str) -> bool:
        """SIGKILL the instance ``name`` if ``pid`` still runs it; it restarts as a crash
        (a one-off process ends, and its result says it was killed)."""
        once = self._once.get((app, name))
        if once is not None and once[1].pid == pid:
            once[1].kill()
            return True
        for (owner, _), group in self._groups.items():
            for inc in group.running.values() if owner == app else ():
                if inc.name == name and inc.child is not None and inc.child.pid == pid:
                    inc.killed_for = reason
                    inc.child.kill()
                    return True
        return False

    # -- reconciling ----------------------------------------------------------------------

    def _group(self, key: tuple[str, str]) -> _Group:
        group = self._groups.get(key)
        if group is None:
            raise UnknownApp(*key)
        return group

    def _reconcile(self, key: tuple[str, str]) -> None:
        group = self._groups[key]
        # Fewer, but not none (a scale-down, not a sleep, which drains first): out of the
        # route table now, stopped a little later, so no request is sent to a dying process.
        later = self.settings.retire_delay if group.desired > 0 and not self._closed else 0.0
        for index in sorted(group.running, reverse=True):
            if index > group.desired:
                self._retire(group, index, after=later)
        for index in range(1, group.desired + 1):
            if index not in group.running:
                inc = _Incarnation(f"{key[1]}.{index}")
                group.running[index] = inc
                inc.task = asyncio.get_running_loop().create_task(
                    self._supervise(key, inc), name=f"local:{key[0]}:{inc.name}"
                )
                inc.task.add_done_callback(_log_failure)
        self._emit(key)

    def _retire(self, group: _Group, index: int, *, after: float = 0.0) -> None:
        inc = group.running.pop(index)
        inc.ready = False
        if after > 0:
            asyncio.get_running_loop().call_later(after, inc.stop.set)
        else:
            inc.stop.set()
        group.stopping.add(inc)
        if inc.task is not None:
            inc.task.add_done_callback(lambda _: group.stopping.discard(inc))

    async def _wait_stopped(self, group: _Group) -> None:
        for inc in group.stopping:  # a scale-down's retire delay is not waited out
            inc.stop.set()
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
                    started_at=inc.started_at,
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
                inc.started_at = time.time()
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
            if inc.killed_for:
                inc.reason, inc.killed_for = f"{inc.killed_for}, {inc.reason}", ""
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
        proc: Child,
        started: float,
    ) -> tuple[float, int | None]:
        """Until the process exits (its code) or is stopped (None); and how long it was up."""
        loop = asyncio.get_running_loop()
        readers = [
            loop.create_task(self._pump(key[0], inc.name, stream))
            for stream in (proc.stdout, proc.stderr)
            if stream is not None
        ]
        inc.child = proc
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
            inc.child = None
            for task in (exited, stopped, probe):
                task.cancel()
            proc.kill()
            if readers:
                await asyncio.wait(readers, timeout=1.0)
                for reader in readers:
                    reader.cancel()
            proc.close()

    async def _spawn(self, spec: ProcessSpec, name: str, port: int | None) -> Child:
        platform = {"DYNO": name}
        if port is not None:
            platform["PORT"] = str(port)
        jail = await self._jail(spec)
        # A crash loop of many instances must not turn into as many forks at once.
        async with self._spawning:
            return await spawn(
                ["/bin/sh", "-c", shell_line(spec.command)],
                cwd=spec.cwd,
                env=app_env(spec.env, home=spec.cwd, platform=platform),
                confiner=self.confiner,
                jail=jail,
            )

    async def _jail(self, spec: ProcessSpec) -> Jail | None:
        """The sandbox's view of the host (a few stats, off the loop); none unconfined."""
        if self.confiner is None or not self.confiner.confined:
            return None
        return await asyncio.to_thread(jail_of, spec.app, spec.cwd)

    async def _terminate(self, proc: Child) -> None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.settings.stop_grace)
        except TimeoutError:
            proc.kill()
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


#: The process type of a release phase (control/releasing.py's RELEASE_COMMAND).
RELEASE = "release"
#: Beside a built slug's ``app/`` (control/builds/local.py writes it): the slug's own
#: directory, with its links to dependency sets, is the app's too.
SLUG_META = "slipway.json"


def jail_of(app: str, cwd: str | None) -> Jail:
    """What an app's process may see of the host: its directory and what that links to.

    Only the directory the release names (never a path from config vars, which the
    app's token sets): for a built slug also the slug and its dependency sets. A
    process with no directory (a dedicated Redis) sees the system directories only.
    """
    if cwd is None:
        return Jail(app=app)
    paths = [os.path.realpath(cwd)]
    slug = os.path.dirname(paths[0])
    if os.path.isfile(os.path.join(slug, SLUG_META)):
        paths.append(slug)
        for link in (os.path.join(slug, ".venv"), os.path.join(paths[0], "node_modules")):
            if os.path.islink(link) and os.path.isdir(link):
                paths.append(os.path.realpath(link))
    # A parent mounted after its child would hide it: parents first.
    unique = sorted(set(paths), key=len)
    return Jail(app=app, read_only=tuple(unique))


# Characters that make a Procfile line more than one simple command.
_COMPOUND = frozenset(";&|()`{}\n")
# A first word that is a path or a program name, not an assignment or a shell builtin.
_PROGRAM = re.compile(r"^[\w./+-]+$")
_BUILTINS = frozenset(
    {
        "exec",
        "exit",
        "return",
        ":",
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


def _cut(line: bytes) -> list[bytes]:
    return [line[i : i + MAX_LINE] for i in range(0, len(line), MAX_LINE)] or [b""]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


def _log_failure(task: asyncio.Task[None]) -> None:
    """A supervisor must never die silently: its instance would look up forever."""
    if not task.cancelled() and task.exception() is not None:
        log.error("supervisor failed", exc_info=task.exception(), extra={"task": task.get_name()})


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
