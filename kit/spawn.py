"""The one way slipway starts a process it does not trust: apps, release phases, builds.

Every app process (web, workers, the release phase, one-off runs, build steps)
goes through ``spawn``, which applies the same four things:

- a clean environment: the app's config vars plus the platform's own (PORT,
  DYNO, HOME, PATH, ...), built by ``app_env``; never slipway's own
  environment, so an exported SLIPWAY_TOKEN or an add-on admin DSN cannot leak;
- its own session and process group, so a stop reaches what the command started;
- death with slipway: nothing an app started outlives ``slipway up``, even
  when it is killed with SIGKILL;
- the confinement in force (``Confiner``), chosen once at start.

Confinement is one mechanism: bubblewrap (``bwrap``, Debian's ``bubblewrap``).
Each process gets

- a mount namespace holding only read-only system directories (/usr, /etc, the
  Python slipway runs on), its own app directory (read-only: a restart starts
  from the slug, as on Heroku), a private /tmp and a minimal /dev: the state
  directory (token, SQLite, spool) and other apps' directories are not mounted
  at all;
- a pid namespace with its own /proc: other apps' processes are neither
  visible (no /proc/<pid>/environ to read) nor addressable by kill(2); when
  the namespace's first process dies, the kernel kills everything in it, and
  ``--die-with-parent`` kills that first process when slipway dies (this is
  what reaches grandchildren that a parent-death signal on one child cannot);
- when slipway runs as root, a distinct uid per app (``setpriv`` inside the
  sandbox, every capability dropped): bwrap runs privileged so it can mount
  the interpreter under /root (mode 0700) for a uid that could not traverse it.

The network is shared: a web process binds $PORT on loopback for the router.
A parent-death signal (bwrap's, or setpriv's without a sandbox) fires when
the *thread* that spawned the process ends: spawns run in the loop's default
executor, whose threads live as long as the loop.
Where bwrap cannot run, confinement is ``none`` and says why; ``slipway up``
then refuses app tokens (an admin runs only what it trusts).

Outputs are read from pipes this module creates and closes itself: the event
loop is given raw descriptors with ``add_reader``, never file objects, because
a transport that closes a descriptor its file object closes again can close
another thread's freshly opened descriptor of the same number (uvloop then
aborts the whole process on the next epoll_ctl: the SIGABRT of issue #18).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: PATH when the app does not set one: the system's directories, never slipway's.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Children make files others may read (a build's slug is read by the app's own uid),
#: whatever umask slipway itself keeps for its state directory.
CHILD_UMASK = 0o022
#: The first uid given to an app when slipway runs as root: far above the ids
#: /etc/passwd hands out, so no real user (nor another app) shares it.
UID_BASE = 610000
#: Read in one go from an app's pipe; a line longer than this arrives in pieces.
READ_CHUNK = 65536
#: System directories every sandbox sees read-only (those that exist).
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/opt")


class Mode(enum.StrEnum):
    NONE = "none"
    BWRAP = "bwrap"


@dataclass(frozen=True, slots=True)
class Jail:
    """What one confined process may see of the host, besides the system directories."""

    #: Whose process it is: one uid per app (as root).
    app: str
    #: Host directories mounted read-only at the same path.
    read_only: tuple[str, ...] = ()
    #: Host directories mounted read-write at the same path (a build's work directory).
    read_write: tuple[str, ...] = ()


@dataclass
class Confiner:
    """The confinement in force for this process's children; chosen once, at start."""

    mode: Mode
    #: Why there is no confinement (``mode`` none), for the log and for refusals.
    reason: str = ""
    #: A uid per app (slipway runs as root); otherwise apps run as slipway's own uid.
    per_app_uid: bool = False
    bwrap: str = "bwrap"
    #: util-linux's setpriv (a uid per app; parent-death signal without a sandbox).
    setpriv: str | None = None
    #: Extra host directories every sandbox sees read-only: the interpreter and the
    #: environment slipway runs on, which built virtualenvs point into.
    runtime_dirs: tuple[str, ...] = ()
    #: Paths no sandbox may ever include, nor a directory above them: slipway's own
    #: secrets (the token, the database, the spool). A release naming such a directory
    #: fails to start instead of mounting them.
    hidden: tuple[str, ...] = ()
    _uids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def none(cls, reason: str) -> Confiner:
        return cls(Mode.NONE, reason=reason, setpriv=shutil.which("setpriv"))

    @property
    def confined(self) -> bool:
        return self.mode is not Mode.NONE

    def fields(self) -> dict[str, str]:
        """What the log says about it (``slipway up``'s first lines)."""
        if not self.confined:
            return {"confinement": "none", "reason": self.reason}
        return {"confinement": "bwrap", "uid": "per-app" if self.per_app_uid else "shared"}

    def uid_of(self, app: str) -> int:
        """The app's own uid: distinct for every app this process runs."""
        uid = self._uids.get(app)
        if uid is None:
            uid = self._uids[app] = UID_BASE + len(self._uids)
        return uid

    def prepare(self, jail: Jail | None) -> None:
        """Give the app's uid what it may write (a build's work and cache directories).

        Blocking (a walk of the tree): call it off the loop. Symbolic links are never
        followed and files with other hard links are left alone, so a link planted
        in a tree the app wrote cannot hand it a file of anyone else's.
        """
        if not (self.confined and self.per_app_uid and jail is not None and jail.read_write):
            return
        uid = self.uid_of(jail.app)
        for top in jail.read_write:
            _chown_tree(top, uid)

    def _refuse_hidden(self, path: str) -> None:
        real = os.path.realpath(path)
        for hidden in self.hidden:
            if real == hidden or hidden.startswith(real.rstrip("/") + "/"):
                raise PermissionError(
                    f"{path} holds slipway's own state ({hidden}); an app cannot run there: "
                    "deploy a directory of its own"
                )

    def wrap(
        self, argv: Sequence[str], *, jail: Jail | None, cwd: str | None, tty: str | None = None
    ) -> list[str]:
        """``argv`` as it runs under this confinement (unchanged without one); ``tty``: the
        pty slave the sandbox sees as its only /dev/pts entry (kit/ptyspawn.py)."""
        if not self.confined or jail is None:
            if self.setpriv:
                # No sandbox: at least the direct child dies with slipway (its own
                # children do not; a confined one's pid namespace takes them all).
                return [self.setpriv, "--pdeathsig", "KILL", "--", *argv]
            return list(argv)
        for path in (*jail.read_only, *jail.read_write, *([cwd] if cwd else [])):
            self._refuse_hidden(path)
        inner = list(argv)
        args = [self.bwrap, *_mounts(self.runtime_dirs, jail)]
        if self.per_app_uid and self.setpriv:
            uid = str(self.uid_of(jail.app))
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            inner = [
                self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *inner,
            ]  # fmt: skip
        args += [
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session",
        ]  # fmt: skip
        if cwd is not None:
            args += ["--chdir", cwd]
        if tty is not None:  # the host's other terminals stay out of sight
            args += ["--tmpfs", "/dev/pts", "--dev-bind", tty, tty]
        return [*args, "--", *inner]


def detect(*, bwrap: str | None = None) -> Confiner:
    """The strongest confinement this machine gives; tried for real, never assumed."""
    found = bwrap or shutil.which("bwrap")
    if found is None:
        return Confiner.none(
            "bubblewrap is not installed (apt-get install bubblewrap); app processes "
            "would run unconfined"
        )
    root = os.geteuid() == 0
    setpriv = shutil.which("setpriv")
    if root and setpriv is None:
        return Confiner.none("setpriv (util-linux) is missing: no per-app uid as root")
    confiner = Confiner(
        Mode.BWRAP,
        per_app_uid=root,
        bwrap=found,
        setpriv=setpriv,
        runtime_dirs=runtime_dirs(),
    )
    probe = confiner.wrap(["/bin/sh", "-c", "exit 0"], jail=Jail(app="probe"), cwd="/")
    try:
        done = subprocess.run(
            probe, env={"PATH": DEFAULT_PATH}, capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Confiner.none(f"bubblewrap does not run here: {exc}")
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        return Confiner.none(
            f"bubblewrap cannot make a sandbox here ({error[0]}); allow unprivileged "
            "user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run as root"
        )
    confiner._uids.clear()  # the probe's uid is not an app's
    return confiner


def runtime_dirs() -> tuple[str, ...]:
    """The Python slipway runs on (and its venv): what built virtualenvs link into."""
    dirs = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    return tuple(sorted(d for d in dirs if not d.startswith(("/usr/", "/etc/")) and d != "/usr"))


def _mounts(runtime: Sequence[str], jail: Jail) -> list[str]:
    args: list[str] = []
    made: set[str] = set()

    def parents(path: str) -> None:
        # bwrap makes missing parents with the host's modes (/root is 0700): another uid
        # could not traverse them, so each is made here, world-traversable.
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:i])
            if parent not in made:
                made.add(parent)
                args.extend(["--perms", "0755", "--dir", parent])

    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    # /tmp writable by the app's own uid, sticky as on any host: Heroku apps write there
    # (gunicorn's worker heartbeat files, uploads, tempfile); a plain tmpfs is 0755 root's.
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "01777", "--tmpfs", "/tmp"]
    made.update({"/proc", "/dev", "/tmp"})
    for path in (*runtime, *jail.read_only):
        parents(path)
        args += ["--ro-bind", path, path]
    for path in jail.read_write:
        parents(path)
        args += ["--bind", path, path]
    return args


def app_env(
    config: Mapping[str, str],
    *,
    home: str | None,
    platform: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An app process's whole environment: defaults, its config vars, the platform's own.

    Nothing comes from slipway's environment: the defaults are fixed, config vars
    may replace them (PATH to a slug's virtualenv, LANG), and the platform's own
    (DYNO, PORT) win over config, as on Heroku.
    """
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "HOME": home or "/tmp",
    }
    env.update(config)
    env.update(platform or {})
    return env


class Child:
    """A spawned process: its output as stream readers, its exit as an awaitable.

    Spawned in a thread (``subprocess.Popen`` uses vfork, ~1-3 ms; forking the
    whole process on the loop stalls the router beside it). The exit is watched
    with a pidfd on the loop (a thread on kernels without pidfd_open).
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        pipes: list[_Pipe],
        exited: asyncio.Future[int],
        *,
        confined: bool,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._pipes = pipes
        #: stdout (and stderr, when merged into it).
        self.stdout = pipes[0].reader
        self.stderr = pipes[1].reader if len(pipes) > 1 else None
        self.confined = confined
        self._exited = exited

    def close(self) -> None:
        """Stop reading its output (EOF to the readers); the process is not touched."""
        for pipe in self._pipes:
            pipe.close()

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def terminate(self) -> None:
        """SIGTERM to what the command started, so it may finish in its grace."""
        target = self._command_group()
        if target is None:
            self.kill()
            return
        _signal_group(target, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to everything: the group and, in a sandbox, its whole pid namespace."""
        _signal_group(self.pid, signal.SIGKILL)
        if self.confined and self.popen.returncode is None:  # a reaped pid may be reused
            # bwrap's process is the group leader; its death takes the sandbox's pid 1
            # (--die-with-parent), and with it every process in the namespace.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    def _command_group(self) -> int | None:
        if not self.confined:
            return self.pid
        # In a sandbox bwrap itself leads the outer group, and dies at once on SIGTERM
        # (taking the sandbox with it, without grace). The command runs in the session
        # that the sandbox's pid 1 (bwrap's first child) leads: that group gets it.
        children = _children(self.pid)
        return children[0] if children else None


async def spawn(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    confiner: Confiner | None = None,
    jail: Jail | None = None,
    merge_stderr: bool = False,
) -> Child:
    """Start ``argv`` confined (when a confiner and a jail are given), off the loop.

    Without a confiner the process still gets its own session and a parent-death
    signal (``setpriv --pdeathsig``, when util-linux is there).
    """
    loop = asyncio.get_running_loop()
    confiner = confiner or _unconfined()
    confined = confiner.confined and jail is not None
    full = confiner.wrap(argv, jail=jail, cwd=cwd)
    if confined:
        await loop.run_in_executor(None, confiner.prepare, jail)
    popen, out_fd, err_fd = await loop.run_in_executor(
        None,
        functools.partial(_popen, full, None if confined else cwd, dict(env), merge_stderr),
    )
    pipes = [_Pipe(loop, out_fd)] + ([_Pipe(loop, err_fd)] if err_fd is not None else [])
    exited: asyncio.Future[int] = loop.create_future()
    watch_exit(loop, popen, exited)
    return Child(popen, pipes, exited, confined=confined)


@functools.cache
def _unconfined() -> Confiner:
    return Confiner.none("no confinement asked for")


def _popen(
    argv: list[str], cwd: str | None, env: dict[str, str], merge_stderr: bool
) -> tuple[subprocess.Popen[bytes], int, int | None]:
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = (None, None) if merge_stderr else os.pipe2(os.O_CLOEXEC)
    try:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=subprocess.STDOUT if merge_stderr else err_w,
            # Its own session and group: a stop reaches whatever the command started.
            start_new_session=True,
            umask=CHILD_UMASK,
        )
    except BaseException:
        for fd in (out_r, err_r):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w):
            if fd is not None:
                os.close(fd)
    return popen, out_r, err_r


class _Pipe:
    """The read end of a child's output pipe, owned here: read on the loop, closed once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self.reader = asyncio.StreamReader(limit=READ_CHUNK)
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.reader.feed_data(data)
        else:
            self.close()

    def close(self) -> None:
        """At EOF, or when nobody reads any more (a descendant that escaped still writes)."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
            self.reader.feed_eof()


def watch_exit(
    loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes], exited: asyncio.Future[int]
) -> None:
    def reap() -> None:
        code = popen.wait()  # it has exited: this does not block
        if not exited.done():
            exited.set_result(code)

    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        # No pidfd: a thread waits instead.
        waiting = loop.run_in_executor(None, popen.wait)

        def done(future: asyncio.Future[int]) -> None:
            if not exited.done():
                exited.set_result(future.result())

        waiting.add_done_callback(done)
        return

    def readable() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        reap()

    loop.add_reader(pidfd, readable)


def _chown_tree(top: str, uid: int) -> None:
    for root, dirs, files in os.walk(top, followlinks=False):
        for name in (root, *(os.path.join(root, f) for f in (*dirs, *files))):
            try:
                st = os.lstat(name)
                if st.st_uid == uid or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
                    continue
                os.chown(name, uid, uid, follow_symlinks=False)
            except FileNotFoundError:
                continue


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
