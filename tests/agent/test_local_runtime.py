"""LocalRuntime with real child processes: PORT, readiness, output, crashes, stops."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from agent.errors import RuntimeFailure, UnknownApp
from agent.local import LocalRuntime, shell_line
from agent.runtime import ProcessSpec, ProcessStatus
from agent.settings import LocalSettings
from tests.agent.conftest import HERE, ListSink
from tests.helpers import eventually

APP = f"{sys.executable} -S {HERE / 'app.py'}"


@dataclass
class Watched:
    runtime: LocalRuntime
    sink: ListSink
    statuses: list[ProcessStatus] = field(default_factory=list)

    def latest(self, process: str = "web") -> ProcessStatus:
        return [s for s in self.statuses if s.process == process][-1]

    async def until(self, check: Callable[[ProcessStatus], bool], process: str = "web") -> None:
        """Until the latest status of ``process`` passes ``check``."""
        try:
            await eventually(lambda: bool(self.statuses) and check(self.latest(process)))
        except AssertionError as exc:
            raise AssertionError(f"never reached; last: {self.statuses[-1:]}") from exc


@pytest.fixture
async def local() -> AsyncIterator[Watched]:
    sink = ListSink()
    runtime = LocalRuntime(
        settings=LocalSettings(backoff_initial=0.05, backoff_max=0.2, stop_grace=0.5), sink=sink
    )
    watched = Watched(runtime, sink)

    async def follow() -> None:
        async for status in runtime.watch():
            watched.statuses.append(status)

    task = asyncio.create_task(follow())
    yield watched
    await runtime.close()
    await asyncio.wait_for(task, 5)


def spec(process: str = "web", command: str = APP, **env: str) -> ProcessSpec:
    return ProcessSpec("hello", process, command, env=env, cwd=str(HERE))


async def test_a_web_process_gets_a_port_and_is_ready_once_it_answers(local: Watched) -> None:
    await local.runtime.apply(spec())
    await local.runtime.scale("hello", "web", 1)
    await local.until(lambda s: bool(s.ready))
    [instance] = local.latest().instances
    assert (instance.name, instance.host) == ("web.1", "127.0.0.1")
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{instance.port}/") as resp,
    ):
        assert (await resp.text()).startswith("hello from web.1")
    assert ("hello", "web.1", "booting in mode ok") in local.sink.lines


async def test_an_http_health_path_must_answer_2xx_before_ready(
    local: Watched, tmp_path: Path
) -> None:
    healthy = tmp_path / "healthy"
    await local.runtime.apply(
        ProcessSpec("hello", "web", APP, env={"HEALTHY_IF": str(healthy)}, health_path="/health")
    )
    await local.runtime.scale("hello", "web", 1)
    await local.until(lambda s: bool(s.instances) and s.instances[0].port is not None)
    await asyncio.sleep(0.3)  # listening, but /health says 503
    assert not local.latest().ready
    healthy.touch()
    await local.until(lambda s: bool(s.ready))


async def test_workers_have_no_port_and_are_ready_once_running(local: Watched) -> None:
    await local.runtime.apply(spec("worker", "echo working; sleep 30"))
    await local.runtime.scale("hello", "worker", 2)
    await local.until(lambda s: len(s.instances) == 2, "worker")
    await local.until(lambda s: all(i.ready for i in s.instances), "worker")
    assert [i.port for i in local.latest("worker").instances] == [None, None]
    await eventually(lambda: ("hello", "worker.2", "working") in local.sink.lines)


async def test_a_crash_loop_shows_crashed_with_the_exit_code_and_keeps_restarting(
    local: Watched,
) -> None:
    await local.runtime.apply(spec(MODE="crash"))
    await local.runtime.scale("hello", "web", 1)
    await local.until(lambda s: s.crashed and s.instances[0].restarts >= 3)
    [instance] = local.latest().instances
    assert instance.crashed
    assert "exited with code 1" in instance.reason
    assert not local.latest().ready
    assert local.sink.lines.count(("hello", "web.1", "boom: cannot connect to the database")) >= 3


async def test_a_command_that_does_not_exist_crashes_with_code_127(local: Watched) -> None:
    await local.runtime.apply(spec(command="no-such-command-here"))
    await local.runtime.scale("hello", "web", 1)
    await local.until(lambda s: s.crashed)
    assert "exited with code 127" in local.latest().instances[0].reason


async def test_scaling_down_stops_the_process_and_a_stubborn_one_is_killed(
    local: Watched,
) -> None:
    await local.runtime.apply(spec(MODE="stubborn"))
    await local.runtime.scale("hello", "web", 1)
    await local.until(lambda s: bool(s.ready))
    port = local.latest().instances[0].port
    assert port is not None
    started = time.monotonic()
    await local.runtime.scale("hello", "web", 0)
    await local.until(lambda s: s.instances == ())
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
        except OSError:
            break
        # It ignores SIGTERM for ever: only the SIGKILL after stop_grace ends it.
        assert time.monotonic() - started < 20, "still listening after SIGKILL"
        await asyncio.sleep(0.02)
    assert ("hello", "web.1", "ignoring SIGTERM") in local.sink.lines
    assert time.monotonic() - started >= 0.4  # stop_grace passed before SIGKILL


async def test_each_restart_gets_a_port_not_used_just_before(local: Watched) -> None:
    await local.runtime.apply(spec())
    ports = []
    for _ in range(3):
        await local.runtime.scale("hello", "web", 1)
        await local.until(lambda s: bool(s.ready))
        ports.append(local.latest().instances[0].port)
        await local.runtime.scale("hello", "web", 0)
        await local.until(lambda s: s.instances == ())
    assert len(set(ports)) == 3


async def test_long_lines_are_cut_and_partial_last_lines_kept(local: Watched) -> None:
    command = f"{sys.executable} -c \"import sys; sys.stdout.write('x' * 70000 + chr(10) + 'end')\""
    await local.runtime.apply(spec("once", command))
    await local.runtime.scale("hello", "once", 1)
    await eventually(lambda: ("hello", "once.1", "end") in local.sink.lines)
    pieces = [len(t) for a, p, t in local.sink.lines if p == "once.1" and t.startswith("x")]
    assert pieces[:2] == [65536, 70000 - 65536]


async def test_scaling_what_was_never_applied_or_below_zero_is_refused(local: Watched) -> None:
    with pytest.raises(UnknownApp, match="app 'nope' has no process type 'web'"):
        await local.runtime.scale("nope", "web", 1)
    await local.runtime.apply(spec())
    with pytest.raises(RuntimeFailure, match="cannot scale hello/web to -1"):
        await local.runtime.scale("hello", "web", -1)


async def test_closing_stops_every_child(local: Watched) -> None:
    await local.runtime.apply(spec())
    await local.runtime.scale("hello", "web", 2)
    await local.until(lambda s: len(s.ready) == 2)
    text = [t for _, p, t in local.sink.lines]
    assert text.count("booting in mode ok") == 2
    pids = []
    for instance in local.latest().instances:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{instance.port}/") as resp,
        ):
            pids.append(int((await resp.text()).split()[-1]))
    await local.runtime.close()
    # SIGKILL is delivered asynchronously: give the kernel a moment, bounded.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert [pid for pid in pids if alive(pid)] == []


def alive(pid: int) -> bool:
    """Running, not a zombie (the container's init may not reap a reparented grandchild)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(
    ("line", "run"),
    [
        ("python app.py", "exec python app.py"),
        ("bundle exec puma -p $PORT", "exec bundle exec puma -p $PORT"),
        ("exec python3 app.py", "exec python3 app.py"),
        ("FOO=1 python app.py", "FOO=1 python app.py"),
        ("migrate && serve", "migrate && serve"),
        ("echo hi; sleep 30", "echo hi; sleep 30"),
        ("cd web && python app.py", "cd web && python app.py"),
    ],
)
def test_a_simple_procfile_line_is_execd_so_the_app_itself_gets_sigterm(
    line: str, run: str
) -> None:
    assert shell_line(line) == run
