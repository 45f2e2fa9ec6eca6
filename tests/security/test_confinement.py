"""Attacks on other tenants and on the platform, from inside an app's own processes.

Every test runs ``slipway up`` as a real subprocess, deploys apps with real
processes, and attacks from app A's release phase (its output comes back in
the release) or looks at what the machine shows from outside. The sandbox is
kit/spawn.py's (bubblewrap); these tests need it installed, as CI does.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from control.builds.errors import BuildError
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import Source
from control.builds.settings import BuildSettings
from kit.spawn import detect
from tests.builds.apps import RecordingSink, python_app
from tests.security.slipway import (
    ADMIN_TOKEN,
    OPERATOR_VAR,
    Slipway,
    app_dir,
    environ_of,
    processes_with,
    start,
    wait_until,
)

WEB = f"{sys.executable} -S -m http.server $PORT --bind 127.0.0.1"


@pytest.fixture
def slipway(tmp_path: Path) -> object:
    running = start(tmp_path)
    yield running
    running.stop()


def victim(slipway: Slipway, tmp_path: Path) -> int:
    """App B, up, with a secret in its config; the pid of its web process."""
    slipway.deploy("bee", app_dir(tmp_path, "bee"), {"web": WEB})
    status, _ = slipway.call(
        "PATCH", "/apps/bee/config-vars", {"DATABASE_URL": "postgres://b:bsecret@db/b"}
    )
    assert status == 200
    slipway.wait_up("bee")
    pids = wait_until(
        lambda: [p for p in processes_with("bsecret") if environ_of(p).get("DYNO") == "web.1"],
        timeout=10,
        what="B's web process",
    )
    return int(pids[0])


def attack(slipway: Slipway, tmp_path: Path, command: str) -> str:
    """Run ``command`` as app A's release phase; what it printed."""
    directory = tmp_path / "ay"
    if not directory.exists():
        app_dir(tmp_path, "ay")
    slipway.call("POST", "/apps", {"name": "ay"})
    status, release = slipway.call(
        "POST", "/apps/ay/releases", {"artifact": str(directory), "procfile": {"release": command}}
    )
    # A failing command fails the release; its output comes back either way.
    assert status == 201 or release["id"] == "release_failed", release
    return str(release["output"])


class TestTheLogSaysWhichConfinementIsInForce:
    def test_slipway_up_names_bubblewrap_and_a_uid_per_app_in_its_first_lines(
        self, slipway: Slipway
    ) -> None:
        first = slipway.log().splitlines()[0]
        assert "confinement=bwrap" in first
        assert ("uid=per-app" if os.geteuid() == 0 else "uid=shared") in first


class TestAnAppCannotReadAnotherAppsEnvironment:
    def test_reading_bs_proc_environ_finds_no_such_process(
        self, slipway: Slipway, tmp_path: Path
    ) -> None:
        """Attack: A reads /proc/<B's pid>/environ for B's DATABASE_URL; and every
        /proc/*/environ it can list. Its pid namespace has no B: nothing comes back."""
        pid = victim(slipway, tmp_path)
        output = attack(
            slipway,
            tmp_path,
            f"cat /proc/{pid}/environ; cat /proc/*/environ | tr '\\0' '\\n'; ls /proc",
        )
        assert "bsecret" not in output
        assert "No such file" in output

    def test_the_attackers_own_environment_holds_nothing_of_slipways(
        self, slipway: Slipway, tmp_path: Path
    ) -> None:
        """Attack: A dumps its environment, looking for SLIPWAY_TOKEN or the operator's
        variables inherited from `slipway up`. Only its config and the platform's own."""
        output = attack(slipway, tmp_path, "env")
        assert ADMIN_TOKEN not in output
        assert "SLIPWAY_" not in output
        assert OPERATOR_VAR[1] not in output
        assert "DYNO=release.1" in output
        assert f"HOME={tmp_path / 'ay'}" in output


class TestAnAppCannotReadTheStateDirectory:
    def test_the_token_and_the_database_are_not_there(
        self, slipway: Slipway, tmp_path: Path
    ) -> None:
        """Attack: A's release phase cats the admin token and slipway.db (every tenant's
        config) from the state directory. It is not mounted in A's sandbox."""
        state = slipway.state_dir
        output = attack(
            slipway,
            tmp_path,
            f"cat {state}/token; head -c 64 {state}/slipway.db; ls {state} {tmp_path}",
        )
        assert ADMIN_TOKEN not in output
        assert "SQLite" not in output
        assert "No such file" in output
        assert "bee" not in output  # nor other apps' directories

    def test_a_release_whose_directory_is_the_state_directory_does_not_start(
        self, slipway: Slipway
    ) -> None:
        """Attack: a release names the state directory (or a parent of it) as its
        artifact, so that its sandbox would mount the token and slipway.db."""
        for artifact in (slipway.state_dir, slipway.state_dir.parent, Path("/")):
            slipway.call("POST", "/apps", {"name": "ay"})
            status, release = slipway.call(
                "POST",
                "/apps/ay/releases",
                {"artifact": str(artifact), "procfile": {"release": "cat token"}},
            )
            assert status != 201
            assert ADMIN_TOKEN not in str(release)
            assert "holds slipway's own state" in release["output"], release


class TestAnAppCannotSignalAnotherApp:
    def test_killing_bs_pid_fails_and_b_keeps_running(
        self, slipway: Slipway, tmp_path: Path
    ) -> None:
        """Attack: A sends SIGKILL to B's web process by its host pid. The pid does not
        exist in A's namespace; B stays up."""
        pid = victim(slipway, tmp_path)
        output = attack(slipway, tmp_path, f"kill -9 {pid} && echo KILLED; echo done")
        assert "KILLED" not in output
        assert "done" in output
        os.kill(pid, 0)  # still there
        assert environ_of(pid)["DYNO"] == "web.1"


class TestAppProcessesRunWithACleanEnvironment:
    def test_a_web_process_has_its_config_and_the_platforms_variables_only(
        self, slipway: Slipway, tmp_path: Path
    ) -> None:
        pid = victim(slipway, tmp_path)
        env = environ_of(pid)
        assert env["DATABASE_URL"] == "postgres://b:bsecret@db/b"
        assert env["DYNO"] == "web.1"
        assert env["PORT"].isdigit()
        assert env["HOME"] == str(tmp_path / "bee")
        platform = {"DYNO", "PORT", "HOME", "PATH", "LANG", "TMPDIR", "PWD"}  # PWD: from sh
        assert set(env) <= {"DATABASE_URL", *platform}

    def test_apps_run_under_distinct_uids_when_slipway_is_root(
        self, slipway: Slipway, tmp_path: Path
    ) -> None:
        if os.geteuid() != 0:
            pytest.skip("a uid per app needs root; unprivileged, the namespaces separate apps")
        pid = victim(slipway, tmp_path)
        output = attack(slipway, tmp_path, "id -u")
        b_uid = os.stat(f"/proc/{pid}").st_uid
        a_uid = int(output.strip().splitlines()[0])
        assert 0 not in (a_uid, b_uid)
        assert a_uid != b_uid


class TestTheStateDirectoryIsPrivate:
    def test_directories_are_0700_and_files_0600(self, tmp_path: Path) -> None:
        slipway = start(tmp_path, token_file=True)
        state = slipway.state_dir
        try:
            pid = victim(slipway, tmp_path)  # some config, a release, log lines
            # Whatever slipway writes later (spool, uploads) is its alone; an app's files not.
            assert umask(slipway.proc.pid) == 0o077
            assert umask(pid) == 0o022
            # SQLite keeps its -wal and -shm only while the database is open.
            for name in ("slipway.db-wal", "slipway.db-shm"):
                assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
        finally:
            slipway.stop()
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
        for name in ("token", "slipway.db"):
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
        for path in (state / "logs").rglob("*"):
            assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def umask(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError(f"no umask for {pid}")


class TestNoAppProcessOutlivesSlipway:
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
    def test_not_even_a_grandchild_that_left_the_process_group(
        self, tmp_path: Path, sig: signal.Signals
    ) -> None:
        """An app's web forks a grandchild that starts a session of its own (out of the
        process group a stop signals), then slipway up ends. Nothing of the app survives."""
        slipway = start(tmp_path)
        try:
            marker = f"orphan-{sig.name}-{os.getpid()}"
            line = f"setsid sleep 300 & sleep 300 & exec {WEB}"
            slipway.deploy("orphans", app_dir(tmp_path, "orphans"), {"web": line})
            slipway.call("PATCH", "/apps/orphans/config-vars", {"MARKER": marker})
            slipway.wait_up("orphans")
            pids = wait_until(
                lambda: [p for p in processes_with(marker)
                         if environ_of(p).get("DYNO") == "web.1"][2:] or None,
                timeout=10,
                what="the web process and its two sleeps",
            )  # fmt: skip
            assert pids
        finally:
            slipway.stop(sig)
        wait_until(
            lambda: not list(processes_with(marker)), timeout=10, what="no process of the app"
        )


class TestWithoutConfinementAppTokensAreRefused:
    def test_an_app_token_gets_403_saying_why_and_the_admin_token_still_works(
        self, tmp_path: Path
    ) -> None:
        """No bubblewrap on PATH: app processes could not be confined, so an app token
        (a tenant) is refused rather than served unsafely."""
        slipway = start(tmp_path, path="/nonexistent")
        try:
            assert "confinement=none" in slipway.log().splitlines()[0]
            assert slipway.call("POST", "/apps", {"name": "solo"})[0] == 201
            status, minted = slipway.call("POST", "/tokens", {"name": "solo", "app": "solo"})
            assert status == 201, minted
            status, body = slipway.call("GET", "/apps/solo", token=minted["token"])
            assert status == 403
            assert body["id"] == "app_tokens_refused"
            assert "bubblewrap" in body["message"]
            assert slipway.call("GET", "/apps/solo")[0] == 200
        finally:
            slipway.stop()


class TestOneAppCannotTakeThePlatformDown:
    def test_a_crash_loop_at_80_instances_with_config_patches_leaves_slipway_up(
        self, slipway: Slipway, tmp_path: Path
    ) -> None:
        """Attack: formation web=80 (min_scale 80) for a web that exits at once, then
        config patches (each restarts every instance). slipway up used to die of SIGABRT
        here. It stays up and answers; the agent runs at most its cap of instances,
        shows them crashed, and restarts them with a backoff, not in a hot loop."""
        slipway.deploy("storm", app_dir(tmp_path, "storm"), {"web": "exit 1"})
        status, body = slipway.call(
            "PATCH",
            "/apps/storm/formation/web",
            {"quantity": 80, "min_scale": 80, "max_scale": 80, "never_sleep": True},
        )
        assert status == 200, body
        for i in range(4):
            time.sleep(0.5)  # the instances crash and restart in between
            assert slipway.proc.poll() is None, slipway.log()[-2000:]
            patch = {"ROUND": str(i)}
            assert slipway.call("PATCH", "/apps/storm/config-vars", patch)[0] == 200
        # Ceilings only (30 s, not 5): 80 instances crash-looping under `slipway up` are
        # what loads a machine most, and a loaded runner adds its own.
        wait_until(lambda: "process crashed" in slipway.log(), timeout=30, what="a crash")
        assert slipway.proc.poll() is None, slipway.log()[-2000:]
        dynos = wait_until(
            lambda: [d for d in slipway.call("GET", "/apps/storm/dynos")[1]
                     if d["state"] == "crashed" or "restarting" in d["reason"]],
            timeout=30, what="the crash loop shown in the dynos",
        )  # fmt: skip
        assert 0 < len(dynos) <= 20  # LocalSettings.max_instances
        assert "instances capped" in slipway.log()
        crashes = slipway.log().count("process crashed")
        # A hot loop would be thousands in these seconds; with the backoff each of the
        # 20 instances of each of the 5 releases crashes a few times.
        assert crashes <= 5 * 20 * 4, crashes
        assert slipway.call("GET", "/apps")[0] == 200


def tarball(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    tree = tmp_path / "tree"
    for name, content in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    archive = tmp_path / "upload.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=".")
    return archive


def confined_builder(tmp_path: Path, sink: RecordingSink) -> LocalBuilder:
    settings = BuildSettings(root=tmp_path / "builds", pip_args=("--no-index",), timeout=60)
    return LocalBuilder(
        settings, sink=sink, metrics=BuildMetrics(CollectorRegistry()), confiner=detect()
    )


class TestBuildsRunConfined:
    async def test_a_requirements_include_of_a_host_file_reads_nothing(
        self, tmp_path: Path
    ) -> None:
        """Attack: requirements.txt includes a file of the host (`-r /path/to/token`);
        unconfined, pip prints the lines it cannot parse (the token). The build step
        runs in the app's sandbox, where that path does not exist."""
        secret = tmp_path / "secret-token"
        secret.write_text("slw_the-platforms-secret-token\n")
        secret.chmod(0o600)
        sink = RecordingSink()
        files = python_app()
        files["requirements.txt"] = f"-r {secret}\n" + str(files["requirements.txt"])
        with pytest.raises(BuildError) as failed:
            await confined_builder(tmp_path, sink).build(
                "thief", Source.archive(tarball(tmp_path, files))
            )
        said = "\n".join([*getattr(failed.value, "tail", ()), str(failed.value), *sink.texts()])
        assert "the-platforms-secret-token" not in said

    async def test_a_confined_build_makes_a_slug_its_app_can_run(self, tmp_path: Path) -> None:
        """The steps (venv, pip) run as the app's own uid in its sandbox; the slug they
        leave runs, and its files belong to that uid, not to root."""
        sink = RecordingSink()
        builder = confined_builder(tmp_path, sink)
        artifact = await builder.build("maker", Source.archive(tarball(tmp_path, python_app())))
        assert artifact.slug is not None
        ran = subprocess.run(
            [str(artifact.slug / ".venv" / "bin" / "python"), "app.py"],
            cwd=artifact.slug / "app",
            capture_output=True,
            text=True,
            check=True,
        )
        assert ran.stdout.strip() == "tinydep 1.0"
        if os.geteuid() == 0:
            venv = (artifact.slug / ".venv").resolve()
            assert (venv / "pyvenv.cfg").stat().st_uid not in (0, os.geteuid())

    def test_an_uploaded_build_releases_and_its_slug_runs_in_the_sandbox(
        self, slipway: Slipway, tmp_path: Path
    ) -> None:
        """Under slipway up the whole way is confined: the build's steps, the release
        phase and the web process, each seeing the slug and its dependency set; also a
        rebuild that reuses the cached dependencies (no step runs as the app then)."""
        files = python_app(
            procfile=(
                "release: python -c \"import tinydep; print('release sees', tinydep.VERSION)\"\n"
                "web: python -S -m http.server $PORT --bind 127.0.0.1\n"
            )
        )
        assert slipway.call("POST", "/apps", {"name": "built"})[0] == 201
        for round in ("cold", "cached"):
            files["app.py"] = f"print({round!r})\n"
            build = upload(slipway, "built", tarball(tmp_path / round, files))
            done = wait_until(
                lambda b=build: (
                    (found := slipway.call("GET", f"/apps/built/builds/{b['id']}")[1])["status"]
                    != "pending"
                    and found
                ),
                timeout=60,
                what="the build to finish",
            )
            assert done["status"] == "succeeded", done
            # A build succeeds, then its release is made (as on Heroku): wait for the
            # build's own release, not whatever release is newest at the time.
            made = wait_until(
                lambda b=build: slipway.call("GET", f"/apps/built/builds/{b['id']}")[1]["release"],
                timeout=30,
                what="the build's release to be made",
            )
            release = wait_until(
                lambda v=made["version"]: (
                    (r := slipway.call("GET", f"/apps/built/releases/{v}")[1])["status"]
                    != "pending"
                    and r
                ),
                timeout=30,
                what="the release phase to finish",
            )
            assert release["status"] == "succeeded", release
            assert "release sees 1.0" in release["output"]
            slipway.wait_up("built")
        assert "Reusing cached dependencies" in slipway.log()


def upload(slipway: Slipway, app: str, archive: Path) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{slipway.control_port}/apps/{app}/builds",
        method="POST",
        data=archive.read_bytes(),
        headers={"Authorization": f"Bearer {slipway.token}", "Content-Type": "application/gzip"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        found: dict[str, Any] = json.loads(response.read())
        return found
