"""The runner: one set of tasks per process, stopped on a signal or on the first failure."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap

import pytest

from kit.runner import supervise
from kit.tasks import TaskSet


class TestSupervise:
    async def test_a_failed_task_sets_stop_and_the_exit_code_is_1(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        seen: list[str] = []

        async def main(tasks: TaskSet, stop: asyncio.Event) -> int:
            component = tasks.child()

            async def feed() -> None:
                await asyncio.sleep(0.01)
                raise RuntimeError("a bug in the feed")

            component.start("agent-feed", feed())
            await stop.wait()
            seen.append("stopped in order")
            await component.stop()
            return 0

        with caplog.at_level(logging.ERROR):
            code = await asyncio.wait_for(supervise(main), 5)
        assert code == 1
        assert seen == ["stopped in order"]  # main's own teardown ran
        named = [getattr(r, "task", None) for r in caplog.records]
        assert named.count("agent-feed") == 2  # the failure, and why the process stops

    async def test_a_stop_without_failure_returns_mains_code(self) -> None:
        stop = asyncio.Event()

        async def main(tasks: TaskSet, stop: asyncio.Event) -> int:
            tasks.child().start("router-sweeper", asyncio.Event().wait())
            await stop.wait()
            return 0

        running = asyncio.create_task(supervise(main, stop=stop))
        await asyncio.sleep(0.01)
        stop.set()
        assert await asyncio.wait_for(running, 5) == 0

    async def test_tasks_main_left_running_are_cancelled(self) -> None:
        tasks = TaskSet()
        left: list[asyncio.Task[object]] = []

        async def main(tasks: TaskSet, stop: asyncio.Event) -> int:
            left.append(tasks.child().start("archive-uploader", asyncio.Event().wait()))
            return 3  # a start-up failure: main's code, and nothing left behind

        assert await asyncio.wait_for(supervise(main, tasks=tasks), 5) == 3
        assert left[0].cancelled()

    async def test_main_raising_is_exit_1_not_a_traceback_out_of_the_runner(self) -> None:
        async def main(tasks: TaskSet, stop: asyncio.Event) -> int:
            raise RuntimeError("a bug in start-up")

        assert await asyncio.wait_for(supervise(main), 5) == 1


PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    from kit import logfmt
    from kit.runner import run

    async def main(tasks, stop):
        async def poll():
            if sys.argv[1] == "fail":
                await asyncio.sleep(0.05)
                raise RuntimeError("a bug in the poller")
            await asyncio.Event().wait()
        tasks.child().start("exporter-redis-poll", poll())
        print("started", flush=True)
        await stop.wait()
        return 0

    logfmt.configure()
    sys.exit(run(main))
    """
)


class TestRunAsAProcess:
    def test_a_process_whose_task_fails_exits_1_with_a_line_naming_it(self) -> None:
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM, "fail"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1, done.stderr
        assert 'msg="background task failed" task=exporter-redis-poll' in done.stderr
        assert 'error="RuntimeError: a bug in the poller"' in done.stderr

    def test_sigterm_stops_it_with_exit_0(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", PROGRAM, "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "started\n"
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "background task failed" not in err
