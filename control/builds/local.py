"""The local builder: git source at a commit -> a slug directory a release can run.

Layout under ``settings.root``::

    work/<app>-<build>/       a build in progress; deleted on success and on failure
    slugs/<app>/<build>/      finished slugs: app/ (source), .venv or app/node_modules
    cache/<app>/repo.git      a bare mirror, so a rebuild fetches only new objects
    cache/<app>/pip, npm      the installers' download caches
    cache/<app>/deps/<key>/   installed dependency sets, one per dependency key

A slug appears under slugs/ only by one rename, after everything in it is
complete, so a release can never pick up a half-installed build. A dependency
set is used only once its ``.complete`` marker exists; one without it is the
remains of a failed install and is rebuilt. Dependency sets are immutable and
installed at their final path, so the absolute paths a virtualenv's scripts
carry stay true.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tarfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from control.builds.detect import Detected, detect
from control.builds.errors import BuildError, BuildFailed, BuildTimeout, DetectError, SourceError
from control.builds.metrics import BuildMetrics
from control.builds.model import Artifact, LogSink, Source, Stack
from control.builds.process import run_step
from control.builds.settings import BuildSettings

log = logging.getLogger(__name__)

_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_COMMIT = re.compile(r"^[0-9a-f]{4,64}$")
_BUILD_ID = re.compile(r"^[a-z0-9]{1,32}$")
_MARKER = ".complete"
#: Written into every slug: what a release needs to know without re-reading the source.
SLUG_META = "slipway.json"


class LocalBuilder:
    """Builds on this machine, ``settings.concurrency`` at a time, one at a time per app."""

    def __init__(
        self,
        settings: BuildSettings,
        *,
        sink: LogSink,
        metrics: BuildMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._app_locks: dict[str, asyncio.Lock] = {}
        self._python_version: str | None = None

    async def build(self, app: str, source: Source, *, build_id: str | None = None) -> Artifact:
        if not _APP_NAME.match(app):
            raise BuildError(f"app name {app!r} must be lowercase letters, digits and '-'")
        if source.commit is not None and not _COMMIT.match(source.commit):
            raise SourceError(f"commit {source.commit!r} is not a hexadecimal sha")
        if build_id is None:
            build_id = secrets.token_hex(6)
        if not _BUILD_ID.match(build_id):
            raise BuildError(f"build id {build_id!r} must be 1-32 lowercase letters and digits")
        # The app's lock first: a second build of a busy app waits without taking a
        # slot that another app's build could use.
        async with self._app_locks.setdefault(app, asyncio.Lock()), self._slots:
            return await self._timed(app, source, build_id)

    async def _timed(self, app: str, source: Source, build_id: str) -> Artifact:
        started = time.monotonic()
        result = "failed"
        work = self._settings.work_dir / f"{app}-{build_id}"
        tail: deque[str] = deque(maxlen=self._settings.tail_lines)
        run = _Run(app, build_id, work, tail)
        try:
            async with asyncio.timeout(self._settings.timeout):
                artifact = await self._build(run, source, build_id)
            result = "succeeded"
            self._metrics.cache.labels("hit" if artifact.cache_hit else "miss").inc()
            self._say(run, f"-----> Build {build_id} succeeded ({artifact.digest[:19]})")
            return artifact
        except TimeoutError as exc:
            result = "timeout"
            message = f"build timed out after {self._settings.timeout:g}s and was killed"
            self._say(run, f" !     {message}")
            raise BuildTimeout(message, tail=tuple(tail)) from exc
        except BuildError as exc:
            self._say(run, f" !     {str(exc).splitlines()[0]}")
            raise
        except OSError as exc:
            # The build root itself failed us (disk full, permissions): still a failed build.
            self._say(run, f" !     build directory error: {exc.strerror}")
            raise BuildFailed(f"build directory error: {exc}", tail=tuple(tail)) from exc
        finally:
            elapsed = time.monotonic() - started
            self._metrics.builds.labels(run.stack, result).inc()
            self._metrics.duration.labels(result).observe(elapsed)
            await asyncio.to_thread(shutil.rmtree, work, True)
            log.info(
                "build finished",
                extra={"app": app, "build": build_id, "result": result, "seconds": elapsed},
            )

    async def _build(self, run: _Run, source: Source, build_id: str) -> Artifact:
        started = time.monotonic()
        app, work = run.app, run.work
        work.mkdir(parents=True)
        slug = work / "slug"
        src = slug / "app"
        src.mkdir(parents=True)
        cache = self._settings.cache_dir / app
        cache.mkdir(parents=True, exist_ok=True)

        commit = await self._fetch(run, source, src, cache)
        detected = await asyncio.to_thread(detect, src)
        run.stack = detected.stack.value
        self._say(run, f"-----> {detected.stack.value.capitalize()} app detected")
        self._say(run, "       Procfile declares types -> " + ", ".join(detected.process_types))
        key, cache_hit = await self._install(run, detected, src, cache)
        digest = await asyncio.to_thread(_digest, src, key)
        meta = {
            "build": build_id,
            "app": app,
            "commit": commit,
            "stack": detected.stack.value,
            "process_types": detected.process_types,
            "dependencies": key,
            "digest": digest,
        }
        (slug / SLUG_META).write_text(json.dumps(meta, indent=2) + "\n")
        final = self._settings.slugs_dir / app / build_id
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise BuildError(f"build {build_id} of {app} already has a slug")
        slug.rename(final)
        return Artifact(
            build_id=build_id,
            app=app,
            commit=commit,
            slug=final,
            process_types=MappingProxyType(dict(detected.process_types)),
            stack=detected.stack,
            cache_hit=cache_hit,
            digest=digest,
            duration=time.monotonic() - started,
        )

    # -- fetch ---------------------------------------------------------------

    async def _fetch(self, run: _Run, source: Source, src: Path, cache: Path) -> str | None:
        if source.tarball is not None:
            self._say(run, "-----> Unpacking source archive")
            await asyncio.to_thread(_unpack, source.tarball, src)
            return None
        assert source.git_url is not None
        assert source.commit is not None
        repo = cache / "repo.git"
        git_dir = f"--git-dir={repo}"
        if not (repo / "HEAD").exists():
            await self._step(
                run, [self._settings.git, "init", "--quiet", "--bare", str(repo)], "git init"
            )
        self._say(run, f"-----> Fetching {source.commit[:12]} from {_redact(source.git_url)}")
        try:
            # A commit is fetched by its sha alone: no branch has to point at it.
            await self._step(
                run,
                [self._settings.git, git_dir, "fetch", "--quiet", source.git_url, source.commit],
                "git fetch",
            )
        except BuildFailed as exc:
            raise SourceError(
                f"cannot fetch commit {source.commit} from {_redact(source.git_url)}: "
                + " / ".join(exc.tail[-3:])
            ) from exc
        archive = run.work / "source.tar"
        await self._step(
            run,
            [
                self._settings.git,
                git_dir,
                "archive",
                "--format=tar",
                "-o",
                str(archive),
                "FETCH_HEAD",
            ],
            "git archive",
        )
        await asyncio.to_thread(_unpack, archive, src)
        archive.unlink()
        out: deque[str] = deque(maxlen=1)
        await run_step(
            [self._settings.git, git_dir, "rev-parse", "FETCH_HEAD"],
            cwd=run.work,
            env=self._env(),
            on_line=_ignore,
            tail=out,
            what="git rev-parse",
        )
        return out[0].strip()

    # -- install -------------------------------------------------------------

    async def _install(
        self, run: _Run, detected: Detected, src: Path, cache: Path
    ) -> tuple[str, bool]:
        if detected.stack is Stack.PYTHON:
            toolchain = await self._python_identity()
        else:
            toolchain = await self._node_identity(run.work)
        key = hashlib.sha256(
            f"{detected.fingerprint}\0{toolchain}\0{self._settings.pip_args}".encode()
        ).hexdigest()[:24]
        deps = cache / "deps" / key
        if (deps / _MARKER).exists():
            self._say(run, f"-----> Reusing cached dependencies ({detected.manifest} unchanged)")
            _link(detected.stack, deps, src)
            return key, True
        await asyncio.to_thread(shutil.rmtree, deps, True)
        deps.parent.mkdir(parents=True, exist_ok=True)
        try:
            if detected.stack is Stack.PYTHON:
                await self._install_python(run, detected, src, cache, deps)
            else:
                await self._install_node(run, src, cache, deps)
        except BaseException:
            # Leave no half-installed set behind; the marker was never written anyway.
            await asyncio.to_thread(shutil.rmtree, deps, True)
            raise
        (deps / _MARKER).write_text(detected.fingerprint + "\n")
        _link(detected.stack, deps, src)
        return key, False

    async def _install_python(
        self, run: _Run, detected: Detected, src: Path, cache: Path, deps: Path
    ) -> None:
        venv = deps / "venv"
        python = self._settings.python
        self._say(run, "-----> Creating virtualenv")
        # No pip inside the app's venv: the builder's pip installs into it with
        # --python, which saves seconds per cold build and megabytes per slug.
        await self._step(run, [python, "-m", "venv", "--without-pip", str(venv)], "venv")
        if not detected.requirements:
            self._say(run, f"       {detected.manifest} lists no dependencies")
            return
        self._say(run, f"-----> Installing dependencies from {detected.manifest}")
        argv = [
            python, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
            "--cache-dir", str(cache / "pip"),
            *self._settings.pip_args, *detected.requirements,
        ]  # fmt: skip
        await self._step(run, argv, "pip install", cwd=src)

    async def _install_node(self, run: _Run, src: Path, cache: Path, deps: Path) -> None:
        await asyncio.to_thread(_copy_manifests, src, deps)
        self._say(run, "-----> Installing dependencies with npm ci")
        argv = [self._settings.npm, "ci", "--no-audit", "--no-fund", "--cache", str(cache / "npm")]
        await self._step(run, argv, "npm ci", cwd=deps)
        (deps / "node_modules").mkdir(exist_ok=True)

    async def _python_identity(self) -> str:
        if self._python_version is None:
            python = self._settings.python
            if shutil.which(python) is None:
                raise DetectError(f"Python app, but the interpreter {python!r} is not installed")
            proc = await asyncio.create_subprocess_exec(
                python,
                "-c",
                "import sys; print(sys.version)",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise DetectError(f"Python app, but {python!r} does not run")
            real = await asyncio.to_thread(os.path.realpath, python)
            self._python_version = f"{real} {out.decode().strip()}"
        return self._python_version

    async def _node_identity(self, work: Path) -> str:
        npm = self._settings.npm
        if shutil.which(npm) is None:
            raise DetectError(
                f"Node app (package.json), but npm ({npm!r}) is not installed on the builder: "
                "install Node.js and npm, or set the npm path in the build settings"
            )
        out: deque[str] = deque(maxlen=1)
        await run_step(
            [npm, "--version"], cwd=work, env=self._env(), on_line=_ignore, tail=out, what="npm"
        )
        return f"npm {out[0] if out else '?'}"

    # -- plumbing ------------------------------------------------------------

    async def _step(
        self, run: _Run, argv: list[str], what: str, *, cwd: Path | None = None
    ) -> None:
        await run_step(
            argv,
            cwd=cwd or run.work,
            env=self._env(),
            on_line=lambda line: self._say(run, "       " + line),
            tail=run.tail,
            what=what,
        )

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._settings.root),
            "LANG": "C.UTF-8",
            # git must never stop to ask for credentials: there is nobody to answer.
            "GIT_TERMINAL_PROMPT": "0",
            # Only transports that fetch: never ext:: (runs a command) nor fd::.
            "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(self._settings.env)
        return env

    def _say(self, run: _Run, text: str) -> None:
        # One "process" per build (build.<id>), as dynos are web.1: the logs service's
        # process filter then streams one build (process=build.<id>) or all (process=build).
        self._sink.publish(run.app, "build", f"build.{run.build_id}", text, self._clock())


@dataclass(slots=True)
class _Run:
    """One build in progress: whose it is, where it works, its last lines of output."""

    app: str
    build_id: str
    work: Path
    tail: deque[str]
    stack: str = "unknown"


def _ignore(_: str) -> None:
    pass


def _link(stack: Stack, deps: Path, src: Path) -> None:
    if stack is Stack.PYTHON:
        (src.parent / ".venv").symlink_to(deps / "venv", target_is_directory=True)
    else:
        (src / "node_modules").symlink_to(deps / "node_modules", target_is_directory=True)


def _copy_manifests(src: Path, deps: Path) -> None:
    deps.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(src / name, deps / name)


def _unpack(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise SourceError(f"cannot unpack source archive {archive.name}: {exc}") from exc
    entries = list(dest.iterdir())
    # GitHub-style archives wrap everything in one top directory: build from inside it.
    if len(entries) == 1 and entries[0].is_dir() and not (dest / "Procfile").exists():
        inner = entries[0]
        for child in list(inner.iterdir()):
            child.rename(dest / child.name)
        inner.rmdir()


def _digest(src: Path, dependency_key: str) -> str:
    digest = hashlib.sha256(b"slipway-slug-v1\0" + dependency_key.encode() + b"\0")
    for path in sorted(src.rglob("*")):
        rel = str(path.relative_to(src)).encode()
        if path.is_symlink():
            digest.update(b"L" + rel + b"\0" + os.readlink(path).encode() + b"\0")
        elif path.is_file():
            digest.update(b"F" + rel + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 16), b""):
                    digest.update(block)
            digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def _redact(url: str) -> str:
    """A git URL without the credentials it may carry."""
    return re.sub(r"//[^/@]*@", "//***@", url)
