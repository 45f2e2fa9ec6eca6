"""Which Python an app's virtualenv is made with: what the app asks, what the machine has.

An app asks with ``.python-version`` (``3.11`` or ``3.11.7``, as pyenv and
Heroku read it) or ``runtime.txt`` (``python-3.11.7``, Heroku's older file);
``.python-version`` wins when both exist. A major.minor request takes the
newest patch release of that minor the machine has; a full version must be
there exactly. Nothing asked: the machine's newest, as Heroku defaults to its
newest. Python versions are never downloaded: what the machine has is what
there is, and a request it cannot meet fails the build in one line naming what
was asked and what is available, before pip runs.

``parse_request`` and ``choose`` are pure; ``discover`` looks at the machine.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from control.builds.errors import DetectError
from kit import command

#: Where interpreters are looked for besides PATH (pyenv's versions, the system's).
SEARCH_GLOBS = (
    "/root/.pyenv/versions/*/bin/python3",
    "/usr/local/bin/python3.*",
    "/usr/bin/python3.*",
)
#: Older interpreters are left out: their bundled pip cannot read today's package metadata.
MIN_VERSION = (3, 8)
#: The builder's own pip runs *under* the target interpreter (``pip --python``) and needs
#: this or newer (pip 26 requires 3.10); an older one gets a pip of its own in its venv.
PIP_PYTHON_MIN = (3, 10)
_EXECUTABLE = re.compile(r"^python3(\.\d+)?$")
_REQUEST = re.compile(r"^(?:python-)?(3)\.(\d+)(?:\.(\d+))?$")
_PROBE = "import sys; print(*sys.version_info[:3], sys.base_prefix)"

Version = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Interpreter:
    version: Version
    path: str
    """The executable (its real path: the same interpreter found twice is listed once)."""
    prefix: str
    """``sys.base_prefix``: what a sandbox must see for the venv's python to run."""

    @property
    def label(self) -> str:
        return ".".join(map(str, self.version))


@dataclass(frozen=True, slots=True)
class Request:
    """A version the app asked for: (major, minor) and maybe the patch release."""

    major: int
    minor: int
    patch: int | None
    source: str
    """The file that asked: ``.python-version`` or ``runtime.txt``."""

    @property
    def label(self) -> str:
        base = f"{self.major}.{self.minor}"
        return base if self.patch is None else f"{base}.{self.patch}"


def parse_request(src: Path) -> Request | None:
    """The version ``src`` asks for, None when it asks for none; a bad file is a DetectError."""
    for name in (".python-version", "runtime.txt"):
        path = src / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        wanted = lines[0] if lines else ""
        match = _REQUEST.match(wanted)
        if match is None:
            example = "3.12 or 3.12.1" if name == ".python-version" else "python-3.12.1"
            raise DetectError(
                f"{name} asks for {wanted[:40]!r}, which is no Python 3 version: "
                f"write one such as {example}"
            )
        patch = match[3]
        return Request(int(match[1]), int(match[2]), None if patch is None else int(patch), name)
    return None


def choose(request: Request | None, found: list[Interpreter]) -> tuple[Interpreter, str]:
    """The interpreter to use and why (pure); DetectError naming asked and available."""
    if not found:
        raise DetectError("Python app, but this builder has no Python 3 interpreter")
    newest = max(found, key=lambda i: i.version)
    if request is None:
        return newest, "the newest here; pin one with .python-version"
    fits = [
        i
        for i in found
        if i.version[:2] == (request.major, request.minor)
        and (request.patch is None or i.version[2] == request.patch)
    ]
    if not fits:
        available = ", ".join(sorted({i.label for i in found}, key=_key))
        raise DetectError(
            f"Python {request.label} was asked for ({request.source}) but this builder has "
            f"{available}: ask for one of those"
        )
    return max(fits, key=lambda i: i.version), f"from {request.source}"


def _key(label: str) -> tuple[int, ...]:
    return tuple(int(part) for part in label.split("."))


def candidates(path_env: str, *, search: bool = True) -> list[str]:
    """Executables that may be Python 3 interpreters: on PATH and (``search``) the usual places."""
    seen: list[str] = []
    for directory in path_env.split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            if _EXECUTABLE.match(name):
                seen.append(os.path.join(directory, name))
    for pattern in SEARCH_GLOBS if search else ():
        seen += sorted(p for p in glob.glob(pattern) if _EXECUTABLE.match(os.path.basename(p)))
    # pyenv's shims are scripts that pick an interpreter by the caller's directory: never
    # one to build with (the interpreters they point at are found on their own).
    return [
        p
        for p in seen
        if os.access(p, os.X_OK) and os.path.isfile(p) and "/shims/" not in os.path.realpath(p)
    ]


async def discover(
    path_env: str, *, extra: tuple[str, ...] = (), search: bool = True
) -> list[Interpreter]:
    """Every Python 3 (``MIN_VERSION`` and newer) on this machine, each asked its version."""
    paths = await asyncio.to_thread(_real_paths, (*extra, *candidates(path_env, search=search)))
    found_all = await asyncio.gather(*(_probe(real) for real in paths))
    unique: dict[Version, Interpreter] = {}
    for interpreter in found_all:
        if interpreter is None or interpreter.version[:2] < MIN_VERSION:
            continue
        # The same version twice (a venv's python and its base): the first found is kept.
        unique.setdefault(interpreter.version, interpreter)
    return sorted(unique.values(), key=lambda i: i.version)


def _real_paths(paths: tuple[str, ...]) -> list[str]:
    """Each interpreter once, by its real path (a venv's python is its base's)."""
    real: dict[str, None] = {}
    for path in paths:
        found = shutil.which(path) if not os.path.isabs(path) else path
        if found is not None:
            real.setdefault(os.path.realpath(found))
    return list(real)


async def _probe(path: str) -> Interpreter | None:
    try:
        code, out = await command.output(
            [path, "-I", "-c", _PROBE],
            timeout=10,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stderr=False,
        )
    except (OSError, TimeoutError):
        return None
    parts = out.decode(errors="replace").split(maxsplit=3)
    if code != 0 or len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    version = (int(parts[0]), int(parts[1]), int(parts[2]))
    if version[0] != 3:
        return None
    return Interpreter(version=version, path=path, prefix=parts[3].strip())


def prefixes(path_env: str) -> tuple[str, ...]:
    """Installation prefixes of the interpreters ``discover`` may find, without running them.

    A sandbox must see the prefix a virtualenv's python links into; the system's
    (/usr) is always mounted, so only the others are named.
    """
    found = set()
    for path in candidates(path_env):
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(path)))
        if prefix != "/usr" and not prefix.startswith(("/usr/", "/etc/")):
            found.add(prefix)
    return tuple(sorted(found))
