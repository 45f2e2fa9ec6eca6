"""What an app is and what it depends on, read from its source tree.

The dependency key is the identity of an installed dependency set: the same
key means the cached virtualenv (or node_modules) is exactly what a fresh
install would make, so it may be reused untouched. It covers the manifest's
bytes, every local file the manifest points at, the interpreter and the
installer's arguments.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from control.builds.errors import DetectError, ProcfileError
from control.builds.model import Stack
from control.builds.procfile import parse_procfile

# Nested ``-r`` includes followed before giving up (a loop, or absurd nesting).
_MAX_INCLUDE_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Detected:
    stack: Stack
    process_types: dict[str, str]
    manifest: str
    """The file that named the stack: requirements.txt, pyproject.toml or package.json."""
    requirements: tuple[str, ...]
    """Python: the pip arguments to install (``-r requirements.txt`` or the pyproject list)."""
    fingerprint: str
    """sha256 of everything that decides the installed dependencies, bar the toolchain."""


def detect(src: Path) -> Detected:
    procfile = src / "Procfile"
    if not procfile.is_file():
        raise ProcfileError("missing: add a Procfile with a line such as 'web: python app.py'")
    try:
        text = procfile.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProcfileError("is not UTF-8 text") from exc
    processes = parse_procfile(text)
    if (src / "requirements.txt").is_file():
        return _python_requirements(src, processes)
    if (src / "pyproject.toml").is_file():
        return _python_pyproject(src, processes)
    if (src / "package.json").is_file():
        return _node(src, processes)
    raise DetectError(
        "no supported app found: expected requirements.txt or pyproject.toml (Python) "
        "or package.json (Node) at the top of the source"
    )


def _python_requirements(src: Path, processes: dict[str, str]) -> Detected:
    digest = hashlib.sha256(b"python-requirements\0")
    _hash_requirements(src, Path("requirements.txt"), digest, depth=0)
    text = (src / "requirements.txt").read_text(encoding="utf-8", errors="replace")
    # An app with nothing to install skips pip, which costs a second or two just to start.
    empty = all(not line.strip() or line.strip().startswith("#") for line in text.splitlines())
    return Detected(
        stack=Stack.PYTHON,
        process_types=processes,
        manifest="requirements.txt",
        requirements=() if empty else ("-r", "requirements.txt"),
        fingerprint=digest.hexdigest(),
    )


def _hash_requirements(src: Path, rel: Path, digest: hashlib._Hash, *, depth: int) -> None:
    if depth > _MAX_INCLUDE_DEPTH:
        raise DetectError(f"{rel}: requirement includes nest deeper than {_MAX_INCLUDE_DEPTH}")
    path = src / rel
    if not path.is_file():
        raise DetectError(f"{rel}: included requirements file does not exist")
    data = path.read_bytes()
    digest.update(str(rel).encode() + b"\0" + data + b"\0")
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        first, _, rest = line.partition(" ")
        if first in ("-e", "--editable") or first.startswith("--editable="):
            raise DetectError(
                f"{rel} line {number}: editable requirements point into one build's "
                "directory and cannot be shared between releases; drop the -e"
            )
        if first in ("-r", "--requirement", "-c", "--constraint"):
            _hash_requirements(src, rel.parent / rest.strip(), digest, depth=depth + 1)
            continue
        local = src / rel.parent / first
        if first.startswith((".", "/")) or local.is_file():
            _hash_local(local, digest)


def _hash_local(path: Path, digest: hashlib._Hash) -> None:
    """A requirement that is a local file or directory: its content is part of the key."""
    if path.is_file():
        digest.update(path.read_bytes())
    elif path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode() + b"\0" + child.read_bytes())


def _python_pyproject(src: Path, processes: dict[str, str]) -> Detected:
    try:
        data = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DetectError(f"pyproject.toml is not valid TOML: {exc}") from exc
    project = data.get("project", {})
    deps = project.get("dependencies", []) if isinstance(project, dict) else None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise DetectError("pyproject.toml: [project] dependencies must be a list of strings")
    digest = hashlib.sha256(b"python-pyproject\0" + json.dumps(deps).encode())
    return Detected(
        stack=Stack.PYTHON,
        process_types=processes,
        manifest="pyproject.toml",
        requirements=tuple(deps),
        fingerprint=digest.hexdigest(),
    )


def _node(src: Path, processes: dict[str, str]) -> Detected:
    """A Node app; with a lockfile npm ci installs it, without one npm install (as Heroku)."""
    try:
        json.loads((src / "package.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DetectError(f"package.json is not valid JSON: {exc}") from exc
    digest = hashlib.sha256(b"node\0" + (src / "package.json").read_bytes())
    for name in ("package-lock.json", "npm-shrinkwrap.json"):
        if (src / name).is_file():
            digest.update(b"\0" + name.encode() + b"\0" + (src / name).read_bytes())
            break
    return Detected(
        stack=Stack.NODE,
        process_types=processes,
        manifest="package.json",
        requirements=(),
        fingerprint=digest.hexdigest(),
    )
