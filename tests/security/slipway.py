"""``slipway up`` as a real subprocess, for tests that attack it from an app's side."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "slw_admin-token-of-the-confinement-tests"
#: A variable of the operator's shell: no app may ever see it.
OPERATOR_VAR = ("OPERATOR_ONLY_SECRET", "operator-secret-value-1b9f")


@dataclass
class Slipway:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    control_port: int
    log_path: Path
    token: str = ADMIN_TOKEN

    def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def deploy(self, app: str, directory: Path, procfile: dict[str, str]) -> dict[str, Any]:
        status, _ = self.call("POST", "/apps", {"name": app})
        assert status in (201, 409), status
        status, release = self.call(
            "POST", f"/apps/{app}/releases", {"artifact": str(directory), "procfile": procfile}
        )
        assert status == 201, release
        assert isinstance(release, dict)
        return release

    def wait_up(self, app: str, *, timeout: float = 20.0) -> None:
        """Keep the app awake (no router traffic wakes it in these tests) and wait for it."""
        status, body = self.call("PATCH", f"/apps/{app}/formation/web", {"never_sleep": True})
        assert status == 200, body
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, dynos = self.call("GET", f"/apps/{app}/dynos")
            if status == 200 and dynos and all(d["state"] == "up" for d in dynos):
                return
            time.sleep(0.05)
        raise AssertionError(f"{app} did not come up: {dynos}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def start(tmp: Path, *, path: str | None = None, token_file: bool = False) -> Slipway:
    """slipway up on free ports, its state under ``tmp``; ready once its API answers.

    The admin token comes from SLIPWAY_TOKEN, or with ``token_file`` from the file
    slipway up generates.
    """
    unique: set[int] = set()
    while len(unique) < 6:  # the kernel may hand the same free port out twice
        unique.add(free_port())
    ports = dict(zip(("port", "ops", "agent", "logs", "fwd", "ctl"), sorted(unique), strict=True))
    state_dir = tmp / "state"
    log_path = tmp / "slipway.log"
    env = {
        "PATH": path if path is not None else os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        OPERATOR_VAR[0]: OPERATOR_VAR[1],
    }
    if not token_file:
        env["SLIPWAY_TOKEN"] = ADMIN_TOKEN
    argv = [
        sys.executable, "-m", "control", "up", "--state-dir", str(state_dir),
        "--port", str(ports["port"]), "--ops-port", str(ports["ops"]),
        "--agent-port", str(ports["agent"]), "--logs-port", str(ports["logs"]),
        "--forward-port", str(ports["fwd"]), "--control-port", str(ports["ctl"]),
    ]  # fmt: skip
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    slipway = Slipway(proc, state_dir, ports["ctl"], log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, slipway.log()
        try:
            if token_file:
                slipway.token = (state_dir / "token").read_text().strip()
            if slipway.call("GET", "/apps")[0] == 200:
                return slipway
        except OSError:
            pass
        time.sleep(0.05)
    slipway.stop(signal.SIGKILL)
    raise AssertionError("slipway up did not answer:\n" + slipway.log())


def app_dir(root: Path, name: str, files: dict[str, str] | None = None) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    for file, text in (files or {}).items():
        (directory / file).write_text(text)
    return directory


def processes_with(marker: str) -> Iterator[int]:
    """Pids of app processes whose environment holds ``marker`` (root reads them all);
    not bubblewrap's own, which carry the environment they hand on."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if marker.encode() in environ and not argv0.endswith(b"bwrap"):
            yield int(entry.name)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def wait_until(predicate: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")
