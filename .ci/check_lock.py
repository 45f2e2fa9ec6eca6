"""Check that requirements.lock is exactly what pyproject.toml needs, and the venv is the lock.

Run by `make check` with the virtualenv's Python (it reads the installed packages' metadata
for the dependencies of dependencies). Three rules, each failure naming what to run:

1. Every requirement in pyproject.toml (dependencies, every extra, build-system requires) is
   satisfied by a pin: someone who edits pyproject.toml and forgets `make lock` hears it here.
2. The lock is the closure of pyproject.toml, no more and no less: walking requirements from
   pyproject.toml (and pip, which the lock pins too) through each pinned package's metadata
   reaches every pin, and every requirement met on the way is pinned and satisfied. A pin that
   nothing needs is an error: it would install code nobody asked for, and it stays behind when
   a dependency is dropped without `make lock`. The walk evaluates markers for the lock's
   target, CPython 3.11.0 on Linux x86_64 (the lowest 3.11 has the most backports, so the lock
   holds what any 3.11.x needs, as `make lock` resolves it).
3. The virtualenv holds exactly the pinned versions: nothing more, nothing else.

The rules are pure functions of the pyproject table, the lock's text and the installed
distributions; only main() reads files and the environment.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "slipway"

# What `make lock` resolves for (its --python-version 3.11 --python-platform x86_64-manylinux).
TARGET = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.11.0",
    "python_version": "3.11",
    "sys_platform": "linux",
}

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


@dataclass(frozen=True)
class Installed:
    version: str
    requires: tuple[str, ...]


def pins(lock_text: str) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a requirements file."""
    return {canonicalize_name(m[1]): m[2] for m in PIN.finditer(lock_text)}


def roots(pyproject: Mapping[str, object]) -> list[Requirement]:
    """What pyproject.toml asks for directly: dependencies, every extra, build requires."""
    project = pyproject.get("project", {})
    build = pyproject.get("build-system", {})
    assert isinstance(project, dict)
    assert isinstance(build, dict)
    texts: list[str] = [*project.get("dependencies", []), *build.get("requires", [])]
    for extra in project.get("optional-dependencies", {}).values():
        texts.extend(extra)
    return [Requirement(text) for text in texts]


def applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**TARGET, "extra": e}) for e in {"", *extras})


def unmet(req: Requirement, pinned: Mapping[str, str], by: str) -> str | None:
    name = canonicalize_name(req.name)
    version = pinned.get(name)
    if version is None:
        return f"{by} needs {req}, which requirements.lock does not pin: run `make lock`"
    if not req.specifier.contains(version, prereleases=True):
        return f"{by} needs {req}, but requirements.lock pins {name}=={version}: run `make lock`"
    return None


def pyproject_problems(pyproject: Mapping[str, object], lock_text: str) -> list[str]:
    """Rule 1: every requirement of pyproject.toml is satisfied by a pin."""
    pinned = pins(lock_text)
    found = (unmet(req, pinned, "pyproject.toml") for req in roots(pyproject) if applies(req, ()))
    return [problem for problem in found if problem is not None]


def closure_problems(
    pyproject: Mapping[str, object], lock_text: str, installed: Mapping[str, Installed]
) -> list[str]:
    """Rule 2: the pins are exactly what the requirements reach, each one satisfied."""
    pinned = pins(lock_text)
    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(req, "pyproject.toml") for req in [*roots(pyproject), Requirement("pip")]]
    while todo:
        req, by = todo.pop()
        if not applies(req, ()):
            continue
        if (problem := unmet(req, pinned, by)) is not None:
            problems.append(problem)
            continue
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        dist = installed.get(name)
        if dist is None:
            continue  # rule 3 says the venv lacks it
        for text in dist.requires:
            sub = Requirement(text)
            if applies(sub, req.extras):
                sub.marker = None
                todo.append((sub, name))
    reached = {name for name, _ in seen}
    problems.sort()
    problems.extend(
        f"requirements.lock pins {name}=={pinned[name]}, which nothing in pyproject.toml needs:"
        " run `make lock`"
        for name in sorted(pinned.keys() - reached)
    )
    return problems


def venv_problems(lock_text: str, installed: Mapping[str, Installed]) -> list[str]:
    """Rule 3: the virtualenv holds exactly the pinned versions."""
    pinned = pins(lock_text)
    rebuild = "run `make` (it rebuilds the venv from the lock)"
    problems = [
        f"the venv has {name}=={dist.version}, which requirements.lock does not pin: {rebuild}"
        if name not in pinned
        else f"the venv has {name}=={dist.version}, requirements.lock pins"
        f" {name}=={pinned[name]}: {rebuild}"
        for name, dist in sorted(installed.items())
        if pinned.get(name) != dist.version
    ]
    problems.extend(
        f"the venv lacks {name}=={pinned[name]}: {rebuild}"
        for name in sorted(pinned.keys() - installed.keys())
    )
    return problems


def installed_here() -> dict[str, Installed]:
    found: dict[str, Installed] = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name != PROJECT and name not in found:  # the first on sys.path is the one imported
            found[name] = Installed(dist.version, tuple(dist.requires or ()))
    return found


def main() -> int:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock_text = (ROOT / "requirements.lock").read_text()
    installed = installed_here()
    problems = [
        *pyproject_problems(pyproject, lock_text),
        *closure_problems(pyproject, lock_text, installed),
        *venv_problems(lock_text, installed),
    ]
    for problem in dict.fromkeys(problems):
        print(f"check_lock: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_lock: requirements.lock pins {len(pins(lock_text))} packages, as needed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
