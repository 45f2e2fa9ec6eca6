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

Long because: a build's steps (fetch, detect, install, slug) share one run's state
and its plumbing (``_step``, ``_say``, the jail); split apart they would pass it around.
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
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from control.builds import nodes, pythons
from control.builds import slug as slug_files
from control.builds.detect import Detected, detect
from control.builds.egress import fetch_config
from control.builds.errors import BuildError, BuildFailed, BuildTimeout, DetectError, SourceError
from control.builds.localgit import export_local
from control.builds.metrics import BuildMetrics
from control.builds.model import Artifact, LogSink, Source, Stack
from control.builds.process import run_step
from control.builds.settings import BuildSettings
from control.builds.sources import ADMIN_PROTOCOLS, check_git_source, local_repository, protocols
from control.builds.toolchains import Node, Toolchains
from kit.redact import mask_text, mask_url
from kit.spawn import Confiner, Jail

log = logging.getLogger(__name__)

_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
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
        confiner: Confiner | None = None,
    ) -> None:
        self._settings = settings
        #: Build steps run confined as the app's own processes (kit/spawn.py); None: plain.
        self._confiner = confiner
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._app_locks: dict[str, asyncio.Lock] = {}
        self._toolchains = Toolchains(settings, self._env())

    async def build(self, app: str, source: Source, *, build_id: str | None = None) -> Artifact:
        """Build ``source``; its ``config`` (the app's config vars) reaches only the steps
        that run the app's own code at build time (collectstatic), as on Heroku."""
        if not _APP_NAME.match(app):
            raise BuildError(f"app name {app!r} must be lowercase letters, digits and '-'")
        if source.git_url is not None:
            assert source.commit is not None
            check_git_source(source.git_url, source.commit, tenant=source.tenant)
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
        run = _Run(app, build_id, work, tail, config=dict(source.config))
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
        run.commit = commit
        detected = await asyncio.to_thread(detect, src)
        run.stack = detected.stack.value
        self._say(run, f"-----> {detected.stack.value.capitalize()} app detected")
        key, cache_hit = await self._install(run, detected, src, cache)
        if detected.stack is Stack.PYTHON:
            await self._collectstatic(run, src)
        self._say(run, "-----> Discovering process types")
        self._say(run, "       Procfile declares types -> " + ", ".join(detected.process_types))
        size = await asyncio.to_thread(slug_files.size, slug)
        # Heroku prints its compressed slug's size; a slug here stays a directory.
        self._say(run, f"-----> Slug size: {size / 1e6:.1f}M (on disk, with its dependencies)")
        digest = await asyncio.to_thread(slug_files.digest, src, key)
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
        if self._confiner is not None:
            # The slug is the app's: its uid reads it, whoever made each file in it.
            await asyncio.to_thread(self._confiner.prepare, Jail(app, read_write=(str(slug),)))
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
            await asyncio.to_thread(slug_files.unpack, source.tarball, src)
            return None
        assert source.git_url is not None
        assert source.commit is not None
        local = local_repository(source.git_url)
        if local is not None and self._confiner is not None and self._confiner.confined:
            self._say(run, f"-----> Fetching {source.commit[:12]} from {local}")
            git, env = self._settings.git, self._env()
            return await export_local(local, source.commit, git, env, run.work, src, run.tail)
        # A tenant's host is checked as resolved, and git held to the addresses checked.
        pinned = await fetch_config(source.git_url, self._settings.egress) if source.tenant else {}
        repo = cache / "repo.git"
        git_dir = f"--git-dir={repo}"
        if not (repo / "HEAD").exists():
            await self._step(
                run, [self._settings.git, "init", "--quiet", "--bare", str(repo)], "git init"
            )
        self._say(run, f"-----> Fetching {source.commit[:12]} from {mask_url(source.git_url)}")
        try:
            # A commit is fetched by its sha alone: no branch has to point at it. "--": the
            # URL is never an option, whatever it says; and git gets only the transports
            # the source's namer may use.
            await self._step(
                run,
                [self._settings.git, git_dir, "fetch", "--quiet", "--", source.git_url,
                 source.commit],
                "git fetch",
                allow_protocols=protocols(tenant=source.tenant),
                extra_env=pinned,
            )  # fmt: skip
        except BuildFailed as exc:
            raise SourceError(
                f"cannot fetch commit {source.commit} from {mask_url(source.git_url)}: "
                + mask_text(" / ".join(exc.tail[-3:]))
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
        await asyncio.to_thread(slug_files.unpack, archive, src)
        archive.unlink()
        out: deque[str] = deque(maxlen=1)
        await run_step(
            [self._settings.git, git_dir, "rev-parse", "FETCH_HEAD"],
            cwd=run.work,
            env=self._env(),
            on_line=_ignore,
            tail=out,
            what="git rev-parse",
            confiner=self._confiner,
            jail=self._jail(run),
        )
        return out[0].strip()

    # -- install -------------------------------------------------------------

    async def _install(
        self, run: _Run, detected: Detected, src: Path, cache: Path
    ) -> tuple[str, bool]:
        python: pythons.Interpreter | None = None
        node: Node | None = None
        if detected.stack is Stack.PYTHON:
            python, why = await self._toolchains.python(src)
            self._say(run, f"-----> Using Python {python.label} ({why})")
            self._widen_sandbox(python.prefix)
            toolchain = f"{python.path} {python.label}"
        else:
            node = await self._toolchains.node(src)
            self._say(run, f"-----> Using Node {nodes.label(node.version)} ({node.why})")
            if node.bin_dir is not None:
                run.read_only = (node.bin_dir,)
            toolchain = f"node {node.identity} {await self._npm_identity(run.work)}"
        key = hashlib.sha256(
            f"{detected.fingerprint}\0{toolchain}\0{self._settings.pip_args}".encode()
        ).hexdigest()[:24]
        deps = cache / "deps" / key
        if (deps / _MARKER).exists():
            self._say(run, f"-----> Reusing cached dependencies ({detected.manifest} unchanged)")
            slug_files.link(detected.stack, deps, src)
            return key, True
        await asyncio.to_thread(shutil.rmtree, deps, True)
        deps.parent.mkdir(parents=True, exist_ok=True)
        try:
            if python is not None:
                await self._install_python(run, detected, python, src, cache, deps)
            else:
                assert node is not None
                await self._install_node(run, node, src, cache, deps)
        except BaseException:
            # Leave no half-installed set behind; the marker was never written anyway.
            await asyncio.to_thread(shutil.rmtree, deps, True)
            raise
        (deps / _MARKER).write_text(detected.fingerprint + "\n")
        slug_files.link(detected.stack, deps, src)
        return key, False

    async def _install_python(
        self,
        run: _Run,
        detected: Detected,
        python: pythons.Interpreter,
        src: Path,
        cache: Path,
        deps: Path,
    ) -> None:
        venv = deps / "venv"
        # The builder's pip installs into the venv with --python (seconds saved per cold
        # build, megabytes per slug) where it can run under the app's Python; an older
        # Python gets the pip it bundles.
        own_pip = python.version[:2] < pythons.PIP_PYTHON_MIN
        venv_argv = [python.path, "-m", "venv", *([] if own_pip else ["--without-pip"]), str(venv)]
        await self._step(run, venv_argv, "venv")
        if not detected.requirements:
            self._say(run, f"       {detected.manifest} lists no dependencies")
            return
        self._say(run, "-----> Installing requirements with pip")
        pip = (
            [str(venv / "bin" / "python"), "-m", "pip"]
            if own_pip
            else [self._settings.pip_python, "-m", "pip", "--python", str(venv / "bin" / "python")]
        )
        argv = [
            *pip, "install",
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
            "--cache-dir", str(cache / "pip"),
            *self._settings.pip_args, *detected.requirements,
        ]  # fmt: skip
        await self._step(run, argv, "pip install", cwd=src)

    async def _install_node(
        self, run: _Run, node: Node, src: Path, cache: Path, deps: Path
    ) -> None:
        lockfile = await asyncio.to_thread(slug_files.copy_manifests, src, deps)
        # npm runs on the machine's node (npm 11 needs 20.17+ or 22.9+); the app's node comes
        # first on PATH, so install scripts (node-gyp, postinstall) run on the one it asked for.
        npm = self._npm_argv()
        if lockfile:
            self._say(run, "-----> Installing dependencies with npm ci (package-lock.json)")
            argv = [*npm, "ci"]
        else:
            self._say(run, "-----> Installing dependencies with npm install (no package-lock.json)")
            argv = [*npm, "install"]
        # No audit, funding or "new npm available" notices: not the app's business here.
        argv += [
            "--no-audit",
            "--no-fund",
            "--update-notifier=false",
            "--cache",
            str(cache / "npm"),
        ]
        await self._step(run, argv, f"npm {argv[len(npm)]}", cwd=deps, node=node)
        modules = deps / "node_modules"
        modules.mkdir(exist_ok=True)
        if node.bin_dir is not None:
            # node_modules/.bin comes first on the release's PATH (releasing.slug_layout) and
            # is what the app's sandbox sees: its node runs the app, and `npm start` too.
            await asyncio.to_thread(
                slug_files.place_node, Path(node.bin_dir) / "node", modules / ".bin"
            )

    async def _collectstatic(self, run: _Run, src: Path) -> None:
        """Django's static files, as Heroku's Python build makes them (DISABLE_COLLECTSTATIC)."""
        venv = src.parent / ".venv"
        if not (src / "manage.py").is_file() or not await asyncio.to_thread(
            slug_files.has_django, venv
        ):
            return
        if run.config.get("DISABLE_COLLECTSTATIC", "") not in ("", "0"):
            self._say(run, "-----> Skipping Django collectstatic (DISABLE_COLLECTSTATIC is set)")
            return
        self._say(run, "-----> $ python manage.py collectstatic --noinput")
        out: deque[str] = deque(maxlen=self._settings.tail_lines)
        env = {**run.config, **self._env(run), "VIRTUAL_ENV": str(venv)}
        env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
        try:
            await run_step(
                [str(venv / "bin" / "python"), "manage.py", "collectstatic", "--noinput"],
                cwd=src,
                env=env,
                on_line=lambda line: self._say(run, "       " + line),
                tail=out,
                what="collectstatic",
                confiner=self._confiner,
                jail=self._jail(run),
            )
        except BuildFailed as exc:
            if any("Unknown command: 'collectstatic'" in line for line in out):
                self._say(run, "       (no django.contrib.staticfiles: nothing to collect)")
                return
            raise BuildFailed(
                "Django's collectstatic failed: fix it (its output is above), or set "
                "DISABLE_COLLECTSTATIC=1 to skip it",
                tail=exc.tail,
            ) from exc

    async def _npm_identity(self, work: Path) -> str:
        npm = self._settings.npm
        if shutil.which(npm) is None:
            raise DetectError(
                f"Node app (package.json), but npm ({npm!r}) is not installed on the builder: "
                "install Node.js and npm, or set the npm path in the build settings"
            )
        out: deque[str] = deque(maxlen=1)
        await run_step(
            [npm, "--version"], cwd=work, env=self._env(), on_line=_ignore, tail=out, what="npm"
        )  # the builder's own npm, before any app's code: not confined
        return f"npm {out[0] if out else '?'}"

    def _npm_argv(self) -> list[str]:
        """npm as the machine's node runs it, whatever node comes first on PATH."""
        npm = shutil.which(self._settings.npm) or self._settings.npm
        script = os.path.realpath(npm)
        node = shutil.which("node", path=self._env()["PATH"])
        if script.endswith(".js") and node is not None:
            return [node, script]
        return [npm]

    def _widen_sandbox(self, prefix: str) -> None:
        """The app's sandboxes (its build steps, later its processes) see its interpreter."""
        if self._confiner is None or prefix == "/usr" or prefix.startswith(("/usr/", "/etc/")):
            return
        if prefix not in self._confiner.runtime_dirs:
            self._confiner.runtime_dirs = tuple(sorted({*self._confiner.runtime_dirs, prefix}))

    # -- plumbing ------------------------------------------------------------

    async def _step(
        self,
        run: _Run,
        argv: list[str],
        what: str,
        *,
        cwd: Path | None = None,
        allow_protocols: str | None = None,
        node: Node | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        env = self._env(run)
        env.update(extra_env or {})
        if node is not None and node.bin_dir is not None:
            env["PATH"] = f"{node.bin_dir}{os.pathsep}{env['PATH']}"
        if allow_protocols is not None:
            env["GIT_ALLOW_PROTOCOL"] = allow_protocols
        await run_step(
            argv,
            cwd=cwd or run.work,
            env=env,
            on_line=lambda line: self._say(run, "       " + line),
            tail=run.tail,
            what=what,
            confiner=self._confiner,
            jail=self._jail(run),
        )

    def _jail(self, run: _Run) -> Jail:
        """A build step writes its work directory and the app's cache, and sees no more."""
        cache = self._settings.cache_dir / run.app
        return Jail(app=run.app, read_only=run.read_only, read_write=(str(run.work), str(cache)))

    def _env(self, run: _Run | None = None) -> dict[str, str]:
        """A build step's environment; with ``run``, Heroku's SOURCE_VERSION (the commit)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._settings.root),
            "LANG": "C.UTF-8",
            # git must never stop to ask for credentials: there is nobody to answer.
            "GIT_TERMINAL_PROMPT": "0",
            # Only transports that fetch: never ext:: (runs a command) nor fd::. A fetch
            # narrows it further to what the source's namer may use.
            "GIT_ALLOW_PROTOCOL": ADMIN_PROTOCOLS,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(self._settings.env)
        if run is not None and run.commit is not None:
            env["SOURCE_VERSION"] = run.commit
        return env

    def _say(self, run: _Run, text: str) -> None:
        # One "process" per build (build.<id>), as dynos are web.1: the logs service's
        # process filter then streams one build (process=build.<id>) or all (process=build).
        # Every line, git's stderr among them, has its URLs' credentials masked.
        self._sink.publish(
            run.app, "build", f"build.{run.build_id}", mask_text(text), self._clock()
        )


@dataclass(slots=True)
class _Run:
    """One build in progress: whose it is, where it works, its last lines of output."""

    app: str
    build_id: str
    work: Path
    tail: deque[str]
    stack: str = "unknown"
    commit: str | None = None
    #: The app's config vars: only collectstatic (the app's own code) sees them.
    config: dict[str, str] = field(default_factory=dict)
    #: Host directories its steps see besides the system's: a fetched Node.
    read_only: tuple[str, ...] = ()


def _ignore(_: str) -> None:
    pass
