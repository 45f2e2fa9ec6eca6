"""Real git repositories and wheels made on the spot for build tests."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

_GIT = [
    "git",
    "-c",
    "user.name=Test",
    "-c",
    "user.email=test@example.invalid",
    "-c",
    "init.defaultBranch=main",
]


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        [*_GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def commit(repo: Path, files: dict[str, str | bytes], message: str = "change") -> str:
    """Write ``files`` into ``repo`` (made if new), commit them, return the sha."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "--quiet")
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def wheel(name: str, version: str, module_source: str) -> tuple[str, bytes]:
    """A pure-Python wheel's file name and bytes, so pip installs without an index."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module_source.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        sha = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={sha},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    tmp = Path(f"/tmp/{name}-{version}-{time.monotonic_ns()}.whl")
    with zipfile.ZipFile(tmp, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    data = tmp.read_bytes()
    tmp.unlink()
    return f"{name}-{version}-py3-none-any.whl", data


def python_app(
    dep_version: str = "1.0",
    procfile: str = "web: python app.py\nworker: python worker.py\n",
    *,
    deps: bool = True,
) -> dict[str, str | bytes]:
    """A tiny app that needs one local wheel: what a demo app looks like to the builder.

    ``deps=False`` gives the same app with an empty requirements.txt, for tests
    about anything but installing (pip costs seconds per build).
    """
    if not deps:
        return {
            "Procfile": procfile,
            "requirements.txt": "# nothing to install\n",
            "app.py": "print('hello')\n",
            "worker.py": "print('working')\n",
        }
    whl_name, whl = wheel("tinydep", dep_version, f"VERSION = {dep_version!r}\n")
    return {
        "Procfile": procfile,
        "requirements.txt": f"# the one dependency, vendored\n./vendor/{whl_name}\n",
        f"vendor/{whl_name}": whl,
        "app.py": "import tinydep\nprint('tinydep', tinydep.VERSION)\n",
        "worker.py": "print('working')\n",
    }


@dataclass
class RecordingSink:
    """The LogSink seam, keeping every published line."""

    lines: list[tuple[str, str, str, str, float]] = field(default_factory=list)

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        self.lines.append((app, source, process, text, time))

    def texts(self, app: str | None = None) -> list[str]:
        return [line[3] for line in self.lines if app is None or line[0] == app]
