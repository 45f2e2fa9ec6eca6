"""The dyno core, pure: sizes, the R14/R15 judgement, load averages, Heroku's line formats,
and the cgroup readers on files laid out as the kernel lays them out."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent.apps import AppConfig, parse_apps
from agent.definition import definition_json, parse_definition
from agent.dyno import (
    EventKind,
    Sample,
    event_lines,
    judge,
    runtime_metrics_enabled,
    runtime_metrics_lines,
)
from agent.dynoproc import _children, _parents, cgroups_of, read_v1, read_v2, sample_tree, tree
from agent.dynosize import MB, SIZES, parse_size
from agent.errors import ConfigError

SMALL = parse_size("100MB")


def sample(mb: float, *, swap_mb: float = 0, cpu: float = 0.0, incarnation: str = "1") -> Sample:
    return Sample(
        rss=int(mb * MB), cache=7 * MB, swap=int(swap_mb * MB), cpu_seconds=cpu,
        incarnation=incarnation,
    )  # fmt: skip


class TestSizes:
    def test_heroku_names_have_heroku_memory_and_twice_it_as_the_hard_limit(self) -> None:
        assert {n: s.memory_mb for n, s in SIZES.items()} == {
            "eco": 512, "basic": 512, "standard-1x": 512, "standard-2x": 1024,
            "performance-m": 2560, "performance-l": 14336,
        }  # fmt: skip
        assert parse_size(None).name == "standard-1x"
        assert parse_size("Standard-2X").hard_limit_bytes == 2048 * MB

    def test_an_explicit_size_is_memory_and_optional_cpu(self) -> None:
        size = parse_size("1.5GB,2cpu")
        assert (size.memory_mb, size.cpu_limit, size.cpu_request) == (1536, 2.0, 0.5)
        # One spelling per size, whatever was typed, and short enough for the store.
        assert size.name == "1536mb,2cpu"
        assert parse_size("0000000000000000000000000000000000000064.000000000MB").name == "64mb"
        assert parse_size("768MB").cpu_limit == 1.0

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("huge", "unknown"),
            ("5MB", "memory must be"),
            ("100GB", "memory must be"),
            ("512MB,0cpu", "cpu must be"),
            ("512MB,64cpu", "cpu must be"),
            ("-1MB", "unknown"),
        ],
    )
    def test_a_bad_size_is_refused_saying_what_is_accepted(self, text: str, says: str) -> None:
        with pytest.raises(ConfigError, match=says):
            parse_size(text)

    def test_the_definition_carries_a_size_per_process_and_refuses_a_bad_one(self) -> None:
        data = {"processes": {"web": {"command": "app", "size": "standard-2x"}}}
        config = parse_definition("shop", data)
        assert config.processes["web"].size == "standard-2x"
        assert definition_json(config)["processes"]["web"]["size"] == "standard-2x"
        with pytest.raises(ConfigError, match="process 'web': size 'tiny' is unknown"):
            parse_definition("shop", {"processes": {"web": {"command": "a", "size": "tiny"}}})
        with pytest.raises(ConfigError, match="size must be a string"):
            parse_definition("shop", {"processes": {"web": {"command": "a", "size": 512}}})

    def test_the_apps_file_sets_sizes_per_process_type(self, tmp_path: Path) -> None:
        (tmp_path / "shop").mkdir()
        (tmp_path / "shop" / "Procfile").write_text("web: app\nworker: jobs\n")

        def apps(sizes: object) -> list[AppConfig]:
            data = {"apps": {"shop": {"sizes": sizes}}}
            return parse_apps(data, base=tmp_path, source="apps.toml")

        [shop] = apps({"worker": "Performance-M"})
        assert (shop.processes["web"].size, shop.processes["worker"].size) == (
            None,
            "performance-m",
        )
        with pytest.raises(ConfigError, match=r"sizes names 'clock', not in"):
            apps({"clock": "eco"})
        with pytest.raises(ConfigError, match=r"\[apps.shop\] sizes.web: size 'big' is unknown"):
            apps({"web": "big"})
        with pytest.raises(ConfigError, match="sizes: expected a table"):
            apps("eco")


class TestJudge:
    def test_under_the_quota_nothing_happens(self) -> None:
        _, events = judge(None, sample(99), SMALL, 0.0)
        assert events == []

    def test_rss_plus_swap_over_the_quota_is_an_r14_and_the_cache_does_not_count(self) -> None:
        _, events = judge(None, sample(90, swap_mb=20), SMALL, 0.0)
        assert [e.kind for e in events] == [EventKind.R14]
        assert round(events[0].percent, 1) == 110.0
        # 95 MB of RSS plus 7 MB of cache: under.
        assert judge(None, sample(95), SMALL, 0.0)[1] == []

    def test_past_twice_the_quota_is_an_r15(self) -> None:
        _, events = judge(None, sample(201), SMALL, 0.0)
        assert [e.kind for e in events] == [EventKind.R15]
        assert judge(None, sample(199), SMALL, 0.0)[1][0].kind is EventKind.R14

    def test_the_r14_repeats_at_every_sample_while_over(self) -> None:
        state, _ = judge(None, sample(120), SMALL, 0.0)
        for step in range(1, 4):
            state, events = judge(state, sample(120), SMALL, step * 20.0)
            assert [e.kind for e in events] == [EventKind.R14]

    def test_load_is_cores_from_cpu_deltas_averaged_like_the_kernel(self) -> None:
        state, _ = judge(None, sample(10, cpu=0.0), SMALL, 0.0)
        # One full core for 20 s, sample after sample, on a fake clock.
        for step in range(1, 31):
            state, _ = judge(state, sample(10, cpu=20.0 * step), SMALL, 20.0 * step)
        assert state.cores == pytest.approx(1.0)
        # After 10 minutes at 1 core: the 1-minute average is there, the 15-minute one rising.
        assert state.load_1m == pytest.approx(1.0, abs=0.001)
        assert 0.45 < state.load_15m < 0.5
        assert state.load_1m > state.load_5m > state.load_15m

    def test_a_new_incarnation_starts_its_averages_again(self) -> None:
        state, _ = judge(None, sample(10, cpu=50.0), SMALL, 0.0)
        state, _ = judge(state, sample(10, cpu=70.0), SMALL, 20.0)
        assert state.cores == pytest.approx(1.0)
        fresh, _ = judge(state, sample(10, cpu=0.5, incarnation="2"), SMALL, 40.0)
        assert (fresh.cores, fresh.load_1m, fresh.cpu_seconds) == (0.0, 0.0, 0.5)


class TestLines:
    def test_r14_and_r15_read_as_herokus(self) -> None:
        _, [r14] = judge(None, sample(103.3), SMALL, 0.0)
        assert event_lines(r14) == [
            "Process running mem=103M(103.3%)",
            "Error R14 (Memory quota exceeded)",
        ]
        _, [r15] = judge(None, sample(501), SMALL, 0.0)
        assert event_lines(r15) == [
            "Process running mem=501M(501.0%)",
            "Error R15 (Memory quota vastly exceeded)",
            "Stopping process with SIGKILL",
        ]

    def test_runtime_metrics_lines_are_herokus_log_runtime_metrics(self) -> None:
        state, _ = judge(None, Sample(21 * MB, MB // 10, 0, 1.0, 348836, 343403, "42-7"), SMALL, 0)
        memory, load = runtime_metrics_lines("shop", "web.1", state, parse_size("standard-1x"))
        assert memory == (
            "source=web.1 dyno=slipway.shop.42-7 sample#memory_total=21.10MB "
            "sample#memory_rss=21.00MB sample#memory_cache=0.10MB sample#memory_swap=0.00MB "
            "sample#memory_pgpgin=348836pages sample#memory_pgpgout=343403pages "
            "sample#memory_quota=512.00MB"
        )
        assert load == (
            "source=web.1 dyno=slipway.shop.42-7 sample#load_avg_1m=0.00 "
            "sample#load_avg_5m=0.00 sample#load_avg_15m=0.00"
        )

    @pytest.mark.parametrize(
        ("value", "on"), [("true", True), ("1", True), ("enabled", True), ("0", False), ("", False)]
    )
    def test_the_config_var_turns_them_on(self, value: str, on: bool) -> None:
        assert runtime_metrics_enabled({"LOG_RUNTIME_METRICS": value}) is on
        assert runtime_metrics_enabled({}) is False


class TestReaders:
    def test_cgroup_v2_files(self, tmp_path: Path) -> None:
        group = tmp_path / "web.1"
        group.mkdir()
        (group / "memory.stat").write_text(
            f"anon {30 * MB}\nfile {12 * MB}\nshmem {2 * MB}\npgfault 100\n"
        )
        (group / "memory.swap.current").write_text(f"{3 * MB}\n")
        (group / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
        found = read_v2(str(group), 42)
        assert found is not None
        assert (found.rss, found.cache, found.swap) == (32 * MB, 10 * MB, 3 * MB)
        assert found.cpu_seconds == 2.5

    def test_cgroup_v1_files(self, tmp_path: Path) -> None:
        memory, cpu = tmp_path / "memory", tmp_path / "cpuacct"
        memory.mkdir()
        cpu.mkdir()
        (memory / "memory.stat").write_text(
            f"cache {5 * MB}\nrss {40 * MB}\nswap 0\npgpgin 17612\npgpgout 9448\n"
            f"total_cache {6 * MB}\ntotal_rss {41 * MB}\ntotal_swap {MB}\n"
            "total_pgpgin 20000\ntotal_pgpgout 10000\n"
        )
        (cpu / "cpuacct.usage").write_text("1500000000\n")
        found = read_v1(str(memory), str(cpu), 42)
        assert found is not None
        assert (found.rss, found.cache, found.swap) == (41 * MB, 6 * MB, MB)
        assert (found.cpu_seconds, found.pgpgin, found.pgpgout) == (1.5, 20000, 10000)

    def test_this_process_reads_from_proc(self) -> None:
        own = sample_tree(os.getpid())
        assert own is not None
        assert own.rss > MB
        assert own.cpu_seconds > 0
        assert tree(os.getpid())[0] == os.getpid()
        assert cgroups_of(os.getpid())
        assert sample_tree(2**22 + 1) is None  # above pid_max: never a process

    def test_a_tree_is_found_by_children_files_and_by_a_scan_alike(self) -> None:
        """Kernels without /proc/PID/task/TID/children get the scan of every process."""
        shell = subprocess.Popen(
            ["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"], start_new_session=True
        )
        try:
            found: list[int] = []
            deadline = time.monotonic() + 10
            while len(found) < 3 and time.monotonic() < deadline:
                found = tree(shell.pid)
                time.sleep(0.01)
            assert len(found) == 3
            parents = _parents()
            scanned = [shell.pid, *_children(shell.pid, 0, parents)]
            assert sorted(scanned) == sorted(found)
            whole = sample_tree(shell.pid)
            assert whole is not None
            assert whole.rss > 0
        finally:
            os.killpg(shell.pid, signal.SIGKILL)  # the sleeps too
            shell.wait()
