"""The dyno monitor with real processes: memory read from /proc, R14 past the quota, R15 kills.

A child (tests/agent/hog.py) allocates and writes HOG_MB megabytes; the monitor
samples every 50 ms instead of Heroku's 20 s. The smallest explicit size, 64MB,
puts the quota at 64 MB and the hard limit at 128 MB.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic as _monotonic

import aiohttp
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from agent.dynolocal import LocalSource
from agent.dynoproc import tree
from agent.dynosize import MB
from agent.dynowatch import DynoMonitor, DynoSettings
from agent.local import LocalRuntime
from agent.runtime import ProcessSpec, ProcessStatus
from agent.settings import LocalSettings
from control.cli import main
from control.up import Up
from kit.spawn import detect
from tests.agent.conftest import HERE, local_up_settings, write_app
from tests.helpers import eventually

ROOT = HERE.parent.parent
HOG = f"{sys.executable} -S {HERE / 'hog.py'}"
INTERVAL = 0.05


@dataclass
class SourcedSink:
    """Every published line with its source: ``(app, source, process, text)``."""

    lines: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: When each text was first published (monotonic), for the detection delays.
    at: dict[str, float] = field(default_factory=dict)

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        self.lines.append((app, source, process, text))
        self.at.setdefault(text.split(" rss_kb", maxsplit=1)[0], _monotonic())

    def of(self, source: str, process: str) -> list[str]:
        return [t for _, s, p, t in self.lines if s == source and p == process]


@dataclass
class Monitored:
    runtime: LocalRuntime
    monitor: DynoMonitor
    sink: SourcedSink
    registry: CollectorRegistry
    statuses: list[ProcessStatus] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
async def monitored() -> AsyncIterator[Monitored]:
    sink = SourcedSink()
    registry = CollectorRegistry()
    runtime = LocalRuntime(
        settings=LocalSettings(backoff_initial=0.05, backoff_max=0.2, stop_grace=0.5), sink=sink
    )
    monitor = DynoMonitor(
        LocalSource(runtime),
        sink=sink,
        registry=registry,
        settings=DynoSettings(interval=INTERVAL),
    )
    monitored = Monitored(runtime, monitor, sink, registry)

    async def follow() -> None:
        async for status in runtime.watch():
            monitored.statuses.append(status)

    tasks = [asyncio.create_task(monitor.run()), asyncio.create_task(follow())]
    yield monitored
    tasks[0].cancel()
    await runtime.close()
    await asyncio.wait_for(tasks[1], 5)


def hog(megabytes: int, *, size: str = "64MB", **env: str) -> ProcessSpec:
    return ProcessSpec(
        "mem", "worker", HOG, env={"HOG_MB": str(megabytes), **env}, cwd=str(HERE), size=size
    )


def holding(sink: SourcedSink, process: str = "worker.1") -> int | None:
    """The peak RSS (bytes) the child reported, once it holds its memory."""
    for text in sink.of("app", process):
        if match := re.match(r"holding rss_kb=(\d+)", text):
            return int(match.group(1)) * 1024
    return None


async def test_the_series_follow_the_real_rss_of_the_process(monitored: Monitored) -> None:
    await monitored.runtime.apply(hog(40, size="standard-1x"))
    await monitored.runtime.scale("mem", "worker", 1)
    peak = await eventually(lambda: holding(monitored.sink))
    assert peak is not None
    labels = {"app": "mem", "process": "worker", "dyno": "worker.1"}

    def off_by() -> tuple[float, float] | None:
        """How far the series are from what the child reads (once a sample came after it
        held its memory: one taken mid-allocation is behind), and the tolerance."""
        rss = monitored.value("slipway_dyno_memory_rss_bytes", **labels)
        cache = monitored.value("slipway_dyno_memory_cache_bytes", **labels)
        if rss is None or cache is None:
            return None
        # statm counts every resident page, anonymous and file-backed alike.
        off, tolerance = abs((rss + cache) - peak), max(0.05 * peak, 4 * MB)
        return (off, tolerance) if off <= tolerance else None

    # Within tolerance by the next samples; never, if the monitor read something else.
    assert await eventually(off_by)
    assert monitored.value("slipway_dyno_memory_quota_bytes", **labels) == 512 * MB
    assert monitored.value("slipway_dyno_memory_limit_bytes", **labels) == 1024 * MB
    assert monitored.value("slipway_dyno_memory_swap_bytes", **labels) == 0.0
    assert monitored.value("slipway_dyno_cpu_seconds_total", **labels) is not None
    # Under the quota: no R14.
    assert not monitored.value("slipway_dyno_r14_total", app="mem", process="worker")
    usage = monitored.monitor.usage("mem")["worker.1"]
    assert usage["memory_rss"] > 40 * MB
    assert usage["size"] == "standard-1x"


async def test_past_the_quota_an_r14_is_logged_and_counted_and_the_process_keeps_running(
    monitored: Monitored,
) -> None:
    await monitored.runtime.apply(hog(80))
    await monitored.runtime.scale("mem", "worker", 1)
    await eventually(
        lambda: "Error R14 (Memory quota exceeded)" in monitored.sink.of("dyno", "worker.1")
    )
    # From the moment the child starts allocating (tens of ms) to the R14 line.
    delay = monitored.sink.at["Error R14 (Memory quota exceeded)"] - monitored.sink.at["allocating"]
    lines = monitored.sink.of("dyno", "worker.1")
    running = lines[lines.index("Error R14 (Memory quota exceeded)") - 1]
    assert re.fullmatch(r"Process running mem=\d+M\(1\d\d\.\d%\)", running), running
    assert (monitored.value("slipway_dyno_r14_total", app="mem", process="worker") or 0) >= 1
    # A warning only: it repeats at each sample while over, and nothing is killed.
    await eventually(
        lambda: (monitored.value("slipway_dyno_r14_total", app="mem", process="worker") or 0) >= 3
    )
    assert not monitored.value("slipway_dyno_r15_total", app="mem", process="worker")
    [(_, name, _)] = monitored.runtime.running()
    assert name == "worker.1"
    print(f"R14 after {delay * 1000:.0f} ms, sampling every {INTERVAL * 1000:.0f} ms")


async def test_past_the_hard_limit_the_process_is_killed_and_restarted_with_an_r15(
    monitored: Monitored,
) -> None:
    await monitored.runtime.apply(hog(150))
    await monitored.runtime.scale("mem", "worker", 1)
    await eventually(
        lambda: "Error R15 (Memory quota vastly exceeded)" in monitored.sink.of("dyno", "worker.1")
    )
    lines = monitored.sink.of("dyno", "worker.1")
    at = lines.index("Error R15 (Memory quota vastly exceeded)")
    assert re.fullmatch(r"Process running mem=\d+M\(2\d\d\.\d%\)", lines[at - 1]), lines[at - 1]
    assert lines[at + 1] == "Stopping process with SIGKILL"
    delay = monitored.sink.at[lines[at]] - monitored.sink.at["allocating"]
    print(f"R15 after {delay * 1000:.0f} ms, sampling every {INTERVAL * 1000:.0f} ms")
    assert (monitored.value("slipway_dyno_r15_total", app="mem", process="worker") or 0) >= 1

    # Killed: the instance shows crashed, saying why (what `slipway ps` shows meanwhile)...
    def crashed() -> list[str]:
        return [i.reason for st in monitored.statuses for i in st.instances if i.crashed]

    reasons = await eventually(crashed)
    assert reasons[0] == "R15 (memory quota vastly exceeded), killed by SIGKILL", reasons
    # ...then is started again (a crash: at once the first time) and allocates again.
    await eventually(
        lambda: len([t for t in monitored.sink.of("app", "worker.1") if t == "allocating"]) >= 2
    )


async def test_runtime_metrics_lines_only_for_an_app_that_enables_them(
    monitored: Monitored,
) -> None:
    await monitored.runtime.apply(hog(10, size="standard-2x", LOG_RUNTIME_METRICS="true"))
    await monitored.runtime.scale("mem", "worker", 1)
    quiet = ProcessSpec("calm", "worker", HOG, env={"HOG_MB": "1"}, cwd=str(HERE))
    await monitored.runtime.apply(quiet)
    await monitored.runtime.scale("calm", "worker", 1)

    def memory_line() -> str | None:
        for text in monitored.sink.of("dyno", "worker.1"):
            if "sample#memory_total" in text:
                return text
        return None

    line = await eventually(memory_line)
    assert line is not None
    assert re.fullmatch(
        r"source=worker\.1 dyno=slipway\.mem\.\S+ sample#memory_total=[\d.]+MB "
        r"sample#memory_rss=[\d.]+MB sample#memory_cache=[\d.]+MB sample#memory_swap=0\.00MB "
        r"sample#memory_pgpgin=\d+pages sample#memory_pgpgout=\d+pages "
        r"sample#memory_quota=1024\.00MB",
        line,
    ), line
    await eventually(
        lambda: any("sample#load_avg_1m=" in t for t in monitored.sink.of("dyno", "worker.1"))
    )
    assert not [
        line for app, source, _, line in monitored.sink.lines if app == "calm" and source == "dyno"
    ]


async def test_series_of_an_app_that_sleeps_are_removed(tmp_path: Path) -> None:
    """Under ``slipway up``: the web process's series exist while it runs, none once asleep."""
    (tmp_path / "sleepy").mkdir()
    (tmp_path / "sleepy" / "Procfile").write_text(f"web: {HOG}\n")
    (tmp_path / "apps.toml").write_text(
        '[apps.sleepy]\nhosts = ["sleepy.test"]\nidle_after = "1s"\nenv = { HOG_MB = "5" }\n'
    )
    (tmp_path / "sleepy" / "hog.py").write_text((HERE / "hog.py").read_text())
    settings = local_up_settings(
        tmp_path / "apps.toml",
        local=LocalSettings(stop_grace=1.0),
        dynos=DynoSettings(interval=INTERVAL),
    )
    registry = CollectorRegistry()
    sink = SourcedSink()
    up = Up(settings, registry=registry, app_sink=sink, router_sink=_Drop())
    await up.start()
    try:
        labels = {"app": "sleepy", "process": "web", "dyno": "web.1"}
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{up.router.port}/"
            async with http.get(url, headers={"Host": "sleepy.test"}) as resp:
                assert resp.status == 200
        await eventually(lambda: registry.get_sample_value("slipway_dyno_memory_rss_bytes", labels))
        # The agent's API shows the sample with the instance (what `slipway ps` reads).
        api = f"http://127.0.0.1:{up.api_port}/v1/apps/sleepy"
        async with aiohttp.ClientSession() as http, http.get(api) as resp:
            usage = (await resp.json())["processes"]["web"]["usage"]
        assert usage["web.1"]["memory_quota"] == 512 * MB
        await eventually(lambda: str(up.agent.machines["sleepy"].phase) == "asleep", timeout=15)
        await eventually(
            lambda: registry.get_sample_value("slipway_dyno_memory_rss_bytes", labels) is None
        )
        assert registry.get_sample_value("slipway_dyno_memory_quota_bytes", labels) is None
    finally:
        await up.stop()


class _Drop:
    def emit(self, app: str, line: str) -> None:
        pass


@pytest.mark.parametrize(
    ("value", "says"),
    [("0", "must be 10 ms to 1 h, not 0 s"), ("2h", "not 7200 s"), ("soon", "not a duration")],
)
def test_the_agent_refuses_a_sampling_interval_it_cannot_keep(
    tmp_path: Path, value: str, says: str
) -> None:
    (tmp_path / "apps.toml").write_text(write_app(tmp_path, "hello"))
    result = CliRunner().invoke(
        main, ["serve", "agent", str(tmp_path / "apps.toml"), "--dyno-interval", value]
    )
    assert result.exit_code == 2, result.output
    assert "--dyno-interval" in result.output
    assert says in result.output


def test_slipway_up_refuses_it_too(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["up", "--dyno-interval", "5ms", "--state-dir", str(tmp_path / "state")]
    )
    assert result.exit_code == 2, result.output
    assert "the dyno sampling interval must be 10 ms to 1 h, not 0.005 s" in result.output


async def test_the_dashboards_dyno_panels_query_series_the_monitor_exports(
    monitored: Monitored,
) -> None:
    """charts/slipway/dashboards/router-agent.json against a real registry, after an R15."""
    await monitored.runtime.apply(hog(150))
    await monitored.runtime.scale("mem", "worker", 1)
    await eventually(lambda: monitored.value("slipway_dyno_r15_total", app="mem", process="worker"))
    # Past 2x at once, a fast machine may never sample it between 1x and 2x: an R14 comes
    # for sure from a process that holds 100 MB of its 64 MB (under the 128 MB kill).
    await monitored.runtime.apply(hog(100))
    await monitored.runtime.scale("mem", "worker", 1)
    await eventually(lambda: monitored.value("slipway_dyno_r14_total", app="mem", process="worker"))
    await eventually(lambda: monitored.monitor.tracked)
    exported = {s.name for m in monitored.registry.collect() for s in m.samples}
    dashboard = json.loads((ROOT / "charts/slipway/dashboards/router-agent.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\bslipway_dyno_[a-z_0-9]+", e)}
    assert len(used) == 6
    assert used <= exported, used - exported


async def test_a_one_off_process_is_sampled_and_killed_past_its_hard_limit_too(
    monitored: Monitored,
) -> None:
    """``run.N`` (one-off runs, as Heroku's one-off dynos) are dynos as well."""
    result = await asyncio.wait_for(
        monitored.runtime.run_once(hog(150), HOG, timeout=30), timeout=40
    )
    assert not result.ok
    assert "command exited with code -9" in result.output
    lines = monitored.sink.of("dyno", "run.1")
    assert "Error R15 (Memory quota vastly exceeded)" in lines
    assert (monitored.value("slipway_dyno_r15_total", app="mem", process="worker") or 0) >= 1
    assert monitored.runtime.running() == []


async def test_a_sandboxed_process_is_sampled_whole_and_killed_whole(tmp_path: Path) -> None:
    """Under bwrap (kit/spawn.py) the instance is a tree (bwrap, its pid 1, the app): the
    tree's memory counts, and the R15 kill takes the whole sandbox down, then it restarts."""
    confiner = detect()
    assert confiner.confined, f"this test needs bubblewrap, as CI installs it: {confiner.reason}"
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "hog.py").write_text((HERE / "hog.py").read_text())
    sink = SourcedSink()
    registry = CollectorRegistry()
    runtime = LocalRuntime(
        settings=LocalSettings(backoff_initial=0.05, backoff_max=0.2, stop_grace=0.5),
        sink=sink,
        confiner=confiner,
    )
    monitor = DynoMonitor(
        LocalSource(runtime), sink=sink, registry=registry, settings=DynoSettings(interval=INTERVAL)
    )
    task = asyncio.create_task(monitor.run())
    try:
        command = f"{sys.executable} -S hog.py"
        spec = ProcessSpec(
            "boxed", "worker", command, env={"HOG_MB": "150"}, cwd=str(directory), size="64MB"
        )
        await runtime.apply(spec)
        await runtime.scale("boxed", "worker", 1)
        await eventually(
            lambda: "Error R15 (Memory quota vastly exceeded)" in sink.of("dyno", "worker.1")
        )
        # Restarted: a second sandbox allocates again, so nothing of the first survived it.
        await eventually(lambda: sink.of("app", "worker.1").count("allocating") >= 2)
        # What was sampled is a tree: bwrap, the sandbox's pid 1, the app (setpriv execs it).
        await eventually(lambda: any(len(tree(pid)) >= 3 for _, _, pid in runtime.running()))
    finally:
        task.cancel()
        await runtime.close()


async def test_a_deleted_app_leaves_no_series_behind(tmp_path: Path) -> None:
    """Defined over the agent's API, woken, over its quota (R14s), deleted: /metrics then
    names the app nowhere, neither the counters (R14, wakes, the router's) nor the gauges."""
    (tmp_path / "mem").mkdir()
    (tmp_path / "mem" / "hog.py").write_text((HERE / "hog.py").read_text())
    settings = local_up_settings(
        None, local=LocalSettings(stop_grace=1.0), dynos=DynoSettings(interval=INTERVAL)
    )
    registry = CollectorRegistry()
    up = Up(settings, registry=registry, app_sink=SourcedSink(), router_sink=_Drop())
    await up.start()
    try:
        api = f"http://127.0.0.1:{up.api_port}"
        definition = {
            "hosts": ["mem.test"],
            "env": {"HOG_MB": "80"},
            "processes": {
                "web": {
                    "command": f"{sys.executable} -S hog.py",
                    "cwd": str(tmp_path / "mem"),
                    "size": "64MB",
                }
            },
        }
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{api}/v1/apps/mem", json=definition) as resp:
                assert resp.status < 300, await resp.text()
            url = f"http://127.0.0.1:{up.router.port}/"
            async with http.get(url, headers={"Host": "mem.test"}) as resp:
                assert resp.status == 200
            r14 = {"app": "mem", "process": "web"}
            await eventually(lambda: registry.get_sample_value("slipway_dyno_r14_total", r14))
            assert registry.get_sample_value("slipway_agent_wakes_total", {"app": "mem"}) == 1

            async def counted() -> str | None:
                # The router counts a request once its response is sent: a moment after the
                # client has it, on a loaded machine.
                async with http.get(f"{api}/metrics") as resp:
                    text = await resp.text()
                return text if 'slipway_router_requests_total{app="mem"' in text else None

            before = await eventually(counted, what="the router's series of app=mem")
            assert 'slipway_dyno_memory_rss_bytes{app="mem"' in before
            async with http.delete(f"{api}/v1/apps/mem") as resp:
                assert resp.status == 204

            async def left() -> list[str]:
                async with http.get(f"{api}/metrics") as resp:
                    return [
                        line for line in (await resp.text()).splitlines() if 'app="mem"' in line
                    ]

            # The router's per-app families share this registry under `slipway up`: they go
            # too, when the agent's next table lacks the app (router/server.py). On a loaded
            # machine that table (and the last rounds of samples) can take a moment.
            async def gone() -> bool:
                return await left() == []

            await eventually(gone, what="no series of app=mem on /metrics")
            await asyncio.sleep(INTERVAL * 10)  # and later rounds of samples bring none back
            assert await left() == []
    finally:
        await up.stop()
    assert "slipway_dyno_r14_total" in before
    assert 'slipway_router_requests_total{app="mem"' in before
