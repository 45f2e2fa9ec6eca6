"""Failed builds: a clear error with the last lines, and nothing left where a release looks."""

from __future__ import annotations

import asyncio
import shutil
import stat
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from control.builds.errors import (
    BuildError,
    BuildFailed,
    BuildTimeout,
    DetectError,
    ProcfileError,
    SourceError,
)
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import Source
from control.builds.settings import BuildSettings
from tests.builds.apps import RecordingSink, commit, python_app


async def test_a_bad_requirement_fails_with_pips_last_lines_and_leaves_the_last_slug_alone(
    tmp_path: Path, builder: LocalBuilder, settings: BuildSettings, registry: CollectorRegistry
) -> None:
    repo = tmp_path / "repo"
    good = await builder.build("demo", Source.git(str(repo), commit(repo, python_app())))
    bad = commit(repo, {"requirements.txt": "no-such-package-slipway==9.9\n"})

    with pytest.raises(BuildFailed) as caught:
        await builder.build("demo", Source.git(str(repo), bad), build_id="bad1")

    assert caught.value.message == "pip install failed (exit status 1)"
    assert any("no-such-package-slipway" in line for line in caught.value.tail)
    assert sorted(p.name for p in (settings.slugs_dir / "demo").iterdir()) == [good.build_id]
    assert list(settings.work_dir.iterdir()) == []
    deps = sorted(p.name for p in (settings.cache_dir / "demo" / "deps").iterdir())
    assert deps == [(good.slug / ".venv").resolve().parent.name]
    assert (good.slug / ".venv" / "bin" / "python").exists()
    assert (
        registry.get_sample_value("slipway_builds_total", {"stack": "python", "result": "failed"})
        == 1.0
    )


async def test_an_unknown_commit_is_a_source_error_naming_the_commit(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    repo = tmp_path / "repo"
    commit(repo, python_app())
    missing = "0" * 40

    with pytest.raises(SourceError, match=f"cannot fetch commit {missing}"):
        await builder.build("demo", Source.git(str(repo), missing))


async def test_credentials_in_a_git_url_never_reach_the_build_output(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    url = "http://user:hunter2@127.0.0.1:9/repo.git"
    with pytest.raises(SourceError) as caught:
        await builder.build("demo", Source.git(url, "a" * 40))

    assert "hunter2" not in str(caught.value)
    assert not any("hunter2" in text for text in sink.texts())


async def test_a_missing_procfile_fails_before_anything_is_installed(
    tmp_path: Path, builder: LocalBuilder, settings: BuildSettings
) -> None:
    files = python_app()
    del files["Procfile"]
    sha = commit(tmp_path / "repo", files)

    with pytest.raises(ProcfileError, match="missing: add a Procfile"):
        await builder.build("demo", Source.git(str(tmp_path / "repo"), sha))
    assert not (settings.cache_dir / "demo" / "deps").exists()


async def test_an_invalid_procfile_line_is_reported_with_its_number(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    sha = commit(
        tmp_path / "repo", python_app(procfile="# processes\nweb: python app.py\nworker\n")
    )

    with pytest.raises(ProcfileError, match=r"Procfile line 3: expected 'name: command'"):
        await builder.build("demo", Source.git(str(tmp_path / "repo"), sha))


async def test_source_without_a_known_manifest_is_a_detect_error(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    sha = commit(tmp_path / "repo", {"Procfile": "web: ./server\n", "server": "#!/bin/sh\n"})

    with pytest.raises(DetectError, match=r"expected requirements\.txt or pyproject\.toml"):
        await builder.build("demo", Source.git(str(tmp_path / "repo"), sha))


async def test_an_editable_requirement_is_refused_with_the_reason(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    sha = commit(tmp_path / "repo", {**python_app(), "requirements.txt": "-e .\n"})

    with pytest.raises(DetectError, match=r"requirements\.txt line 1: editable requirements"):
        await builder.build("demo", Source.git(str(tmp_path / "repo"), sha))


async def test_a_node_app_without_npm_on_the_builder_says_the_toolchain_is_missing(
    tmp_path: Path, settings: BuildSettings, sink: RecordingSink, registry: CollectorRegistry
) -> None:
    files = {
        "Procfile": "web: node index.js\n",
        "package.json": '{"name": "n", "version": "1.0.0"}\n',
        "package-lock.json": '{"name": "n", "lockfileVersion": 3, "packages": {}}\n',
    }
    sha = commit(tmp_path / "repo", files)
    no_npm = BuildSettings(root=settings.root, npm=str(tmp_path / "nowhere" / "npm"))
    builder = LocalBuilder(no_npm, sink=sink, metrics=BuildMetrics(registry))

    with pytest.raises(
        DetectError, match=r"Node app \(package.json\), but npm .* is not installed"
    ):
        await builder.build("demo", Source.git(str(tmp_path / "repo"), sha))


@pytest.mark.parametrize(
    ("app", "commit_sha", "message"),
    [
        ("Demo", "a" * 40, "app name 'Demo'"),
        ("demo/../x", "a" * 40, "app name 'demo/../x'"),
        ("demo", "--upload-pack=evil", "is not a hexadecimal sha"),
    ],
)
async def test_bad_app_names_and_commits_are_refused_before_any_command_runs(
    builder: LocalBuilder, sink: RecordingSink, app: str, commit_sha: str, message: str
) -> None:
    with pytest.raises(BuildError, match=message):
        await builder.build(app, Source.git("/nowhere", commit_sha))
    assert sink.lines == []


@pytest.mark.parametrize("build_id", ["../escape", "UPPER", "", "x" * 33])
async def test_a_build_id_that_could_escape_the_slug_directory_is_refused(
    builder: LocalBuilder, settings: BuildSettings, build_id: str
) -> None:
    with pytest.raises(BuildError, match="must be 1-32 lowercase letters and digits"):
        await builder.build("demo", Source.git("/nowhere", "a" * 40), build_id=build_id)
    assert not settings.root.exists()


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except FileNotFoundError:
        return True
    return state in "ZX"


async def test_a_build_past_its_timeout_is_killed_with_every_process_it_started(
    tmp_path: Path, sink: RecordingSink, registry: CollectorRegistry
) -> None:
    pidfile = tmp_path / "child.pid"
    # A git that hangs the way a stalled network fetch does, with a child of its own.
    slow_git = _script(
        tmp_path / "slow-git",
        f"sleep 30 &\necho $! > {pidfile}\necho 'fetching very slowly'\nwait\n",
    )
    # The script must have written its child's pid and its line before the timeout: 3 s,
    # as on a loaded machine the build's setup and a spawn can take longer than 1 s.
    settings = BuildSettings(root=tmp_path / "b", git=slow_git, timeout=3.0)
    builder = LocalBuilder(settings, sink=sink, metrics=BuildMetrics(registry))

    started = time.monotonic()
    with pytest.raises(BuildTimeout, match="timed out after 3s") as caught:
        await builder.build("demo", Source.git("/nowhere", "a" * 40))

    # Killed at its 3 s timeout, not before, and not after the 30 s the hung git would take.
    assert 3 <= time.monotonic() - started < 20
    assert "fetching very slowly" in caught.value.tail
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
    assert list(settings.work_dir.iterdir()) == []
    assert (
        registry.get_sample_value("slipway_builds_total", {"stack": "unknown", "result": "timeout"})
        == 1.0
    )


async def test_no_more_builds_run_at_once_than_the_concurrency_limit(
    tmp_path: Path, sink: RecordingSink, registry: CollectorRegistry
) -> None:
    events = tmp_path / "events"
    real_git = shutil.which("git")
    # The real git, with each fetch's start and end written down (and stretched a bit).
    timing_git = _script(
        tmp_path / "timing-git",
        f'if [ "$2" = fetch ]; then echo "start $(date +%s.%N)" >> {events}; sleep 0.4; fi\n'
        f'{real_git} "$@"; rc=$?\n'
        f'if [ "$2" = fetch ]; then echo "end $(date +%s.%N)" >> {events}; fi\n'
        "exit $rc\n",
    )
    settings = BuildSettings(
        root=tmp_path / "b", git=timing_git, concurrency=2, pip_args=("--no-index",)
    )
    builder = LocalBuilder(settings, sink=sink, metrics=BuildMetrics(registry))
    repo = tmp_path / "repo"
    sha = commit(repo, python_app(deps=False))

    artifacts = await asyncio.gather(
        *(builder.build(f"app{i}", Source.git(str(repo), sha)) for i in range(4))
    )

    assert sorted(a.app for a in artifacts) == ["app0", "app1", "app2", "app3"]
    running = peak = 0
    marks = sorted(
        (float(stamp), kind)
        for kind, stamp in (line.split() for line in events.read_text().splitlines())
    )
    for _, kind in marks:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert len(marks) == 8
    assert peak == 2
