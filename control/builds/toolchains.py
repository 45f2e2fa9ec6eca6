"""The local builder's toolchains: the Python and the Node an app asked for, found or fetched.

Python interpreters are found once per builder (``pythons.discover``) and
chosen per build; Node is the machine's when it fits the app's
``engines.node``, else one cached per version under ``cache/_node/``, else
fetched from the npm registry into that cache (``nodes``). Fetching runs the
builder's own npm before any of the app's code, so it is not confined; what
it writes is a whole Node or nothing (a temporary directory renamed into
place, then its marker).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tarfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from control.builds import nodes, pythons
from control.builds.errors import BuildFailed, DetectError
from control.builds.process import run_step
from control.builds.settings import BuildSettings


@dataclass(frozen=True, slots=True)
class Node:
    version: nodes.Version
    bin_dir: str | None
    """Directory holding its ``node``; None: the machine's own (already on PATH)."""
    why: str

    @property
    def identity(self) -> str:
        return nodes.label(self.version)


class Toolchains:
    def __init__(self, settings: BuildSettings, env: dict[str, str]) -> None:
        self._settings = settings
        self._env = env
        self._pythons: list[pythons.Interpreter] | None = None
        self._machine_node: nodes.Version | None = None
        self._fetching = asyncio.Lock()

    @property
    def node_root(self) -> Path:
        """Fetched Node versions, shared by every app (``_`` starts no app's name)."""
        return self._settings.cache_dir / "_node"

    # -- Python --------------------------------------------------------------

    async def python(self, src: Path) -> tuple[pythons.Interpreter, str]:
        """The interpreter for the app in ``src`` and why; DetectError when none fits."""
        request = await asyncio.to_thread(pythons.parse_request, src)
        if self._pythons is None:
            only = self._settings.python
            if only is not None and shutil.which(only) is None:
                raise DetectError(f"Python app, but the interpreter {only!r} is not installed")
            self._pythons = await pythons.discover(
                "" if only is not None else self._env.get("PATH", ""),
                extra=(only,) if only is not None else (),
                search=only is None,
            )
        return pythons.choose(request, self._pythons)

    # -- Node ----------------------------------------------------------------

    async def node(self, src: Path) -> Node:
        """The Node for the app in ``src``: the machine's, a cached one, or one fetched."""
        request = await asyncio.to_thread(nodes.engines_node, src)
        machine = await self._machine()
        if request is None:
            return Node(machine, None, "the machine's; package.json names no engines.node")
        if request.allows(machine):
            return Node(machine, None, f"the machine's, for engines.node {request.text!r}")
        version = await self._cached(request)
        if version is not None:
            return Node(version, self._bin(version), f"cached, for engines.node {request.text!r}")
        async with self._fetching:  # two builds asking for one version fetch it once
            version = await self._cached(request) or await self._fetch(request, machine)
        return Node(version, self._bin(version), f"downloaded, for engines.node {request.text!r}")

    async def _cached(self, request: nodes.NodeRequest) -> nodes.Version | None:
        """The newest cached Node in the range, if any."""
        found = await asyncio.to_thread(nodes.cached, self.node_root)
        fits = [v for v in found if request.allows(v)]
        return fits[-1] if fits else None

    def _bin(self, version: nodes.Version) -> str:
        return str(self.node_root / nodes.label(version) / "bin")

    async def _machine(self) -> nodes.Version:
        if self._machine_node is None:
            node = shutil.which("node", path=self._env.get("PATH"))
            if node is None:
                raise DetectError(
                    "Node app (package.json), but node is not installed on the builder: "
                    "install Node.js and npm"
                )
            out = await self._run([node, "--version"], "node --version")
            version = nodes.parse_version(out[-1] if out else "")
            if version is None:
                raise DetectError(f"the builder's node reports no version ({out[-1:]})")
            self._machine_node = version
        return self._machine_node

    async def _fetch(self, request: nodes.NodeRequest, machine: nodes.Version) -> nodes.Version:
        package = nodes.package_name()
        cache = self._settings.cache_dir / "_npm"
        have = [nodes.label(machine), *map(nodes.label, nodes.cached(self.node_root))]
        refused = (
            f"Node {request.text} was asked for (package.json engines.node) but this builder "
            f"has {', '.join(have)}"
        )
        try:
            out = await self._run(
                [self._settings.npm, "view", f"{package}@{request.text}", "version", "--json",
                 "--cache", str(cache), "--loglevel=error"],
                "npm view",
            )  # fmt: skip
        except BuildFailed as exc:
            reason = next((line for line in exc.tail if "ERR" in line), "npm view failed")
            raise DetectError(f"{refused}, and the npm registry gave none: {reason}") from exc
        offered = [v for v in nodes.registry_versions("\n".join(out)) if request.allows(v)]
        if not offered:
            said = (
                f" (npm said: {out[0][:120]})" if out and not out[0].startswith(("[", '"')) else ""
            )
            raise DetectError(
                f"{refused}, and the npm registry has no {package} in that range{said}"
            )
        version = offered[-1]
        self.node_root.mkdir(parents=True, exist_ok=True)
        temp = self.node_root / f".fetch-{secrets.token_hex(6)}"
        temp.mkdir()
        try:
            await self._run(
                [self._settings.npm, "pack", f"{package}@{'.'.join(map(str, version))}",
                 "--pack-destination", str(temp), "--cache", str(cache), "--loglevel=error"],
                "npm pack",
            )  # fmt: skip
            tgz = next(temp.glob("*.tgz"), None)
            if tgz is None:
                raise DetectError(f"npm pack {package} left no archive")
            await asyncio.to_thread(_unpack_node, tgz, temp / "node")
            final = self.node_root / nodes.label(version)
            await asyncio.to_thread(shutil.rmtree, final, True)  # a failed fetch's remains
            (temp / "node").rename(final)
            (final / nodes.MARKER).write_text(f"{package}\n")
        except BuildFailed as exc:
            what = nodes.label(version)
            raise DetectError(f"fetching Node {what} failed: {exc.message}") from exc
        finally:
            await asyncio.to_thread(shutil.rmtree, temp, True)
        return version

    async def _run(self, argv: list[str], what: str) -> list[str]:
        out: deque[str] = deque(maxlen=200)
        await run_step(
            argv,
            cwd=self._settings.root,
            env=self._env,
            on_line=lambda _: None,
            tail=out,
            what=what,
        )  # the builder's own tools, before any of the app's code: not confined
        return [line for line in out if line.strip()]


def _unpack_node(tgz: Path, dest: Path) -> None:
    """Only ``package/bin/node`` out of the registry's archive: the rest is headers and docs."""
    with tarfile.open(tgz) as tar:
        member = tar.getmember("package/bin/node")
        source = tar.extractfile(member)
        if source is None:
            raise DetectError(f"{tgz.name} holds no node binary")
        (dest / "bin").mkdir(parents=True)
        with source, (dest / "bin" / "node").open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    os.chmod(dest / "bin" / "node", 0o755)
