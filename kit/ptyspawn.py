"""A process under a pseudo-terminal: ``slipway run bash``, confined as every app process.

The same spawner as kit/spawn.py (the app's clean environment, its confinement,
death with slipway), with the pty slave as stdin, stdout and stderr and as the
command's controlling terminal, so Ctrl-C typed at the far end (byte 0x03)
becomes SIGINT for the foreground job, a window size change becomes SIGWINCH,
and a shell gets job control.

The controlling terminal is set by util-linux's ``setsid --ctty`` (next to
``setpriv``, in the same package): a new session whose terminal is the pty.

- Unconfined, the child is started in slipway's process group (not as a group
  leader), so ``setsid`` makes the session in place: its pid is the command's,
  the session and group it leads are what ``kill`` reaches.
- In bubblewrap the sandbox keeps ``--new-session``: that flag exists so a
  sandboxed process cannot push keystrokes (TIOCSTI) into the terminal that
  started bwrap; here slipway has no terminal (its children start in a session
  of their own), and ``setsid --ctty`` inside makes the sandbox's own pty its
  controlling terminal. TIOCSTI on it can only inject input the sandbox itself
  reads: the other end is this process, which forwards bytes and never runs
  them. (Kernels from 6.2 can turn TIOCSTI off altogether:
  ``dev.tty.legacy_tiocsti=0``.) The sandbox's /dev/pts holds that one slave
  and nothing else (kit/spawn.py ``wrap(tty=...)``): neither the host's other
  terminals nor a ptmx to make more. As root, the slave belongs to the app's
  own uid, as a login's terminal belongs to its user.

Reading is on demand (``read``): nothing is read from the master until the
caller asks, so a child that prints faster than the far end takes its bytes
blocks on a full pty, and memory stays bounded. ``write`` waits while the
child does not read its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import shutil
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping, Sequence

from kit.spawn import CHILD_UMASK, Confiner, Jail, watch_exit

#: Read from the master in one go.
READ_CHUNK = 65536
#: A terminal's size when the far end says none (columns, rows).
DEFAULT_SIZE = (80, 24)


class PtyChild:
    """A process on a pty: the master end, its exit, and how to stop all it started."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        master: int,
        exited: asyncio.Future[int],
        *,
        confined: bool,
        tty: str,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.tty = tty
        self.confined = confined
        self._master: int | None = master
        #: Reads and writes waiting for the master, and how to stop watching it for each.
        self._waiting: dict[asyncio.Future[None], Callable[[int], object]] = {}
        self._exited = exited
        self._loop = asyncio.get_running_loop()
        os.set_blocking(master, False)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    async def read(self) -> bytes:
        """The next bytes the command wrote; b"" once nothing will (every holder of the
        slave has exited, or this end was closed)."""
        while self._master is not None:
            try:
                return os.read(self._master, READ_CHUNK)
            except BlockingIOError:
                await self._ready(self._loop.add_reader, self._loop.remove_reader)
            except OSError:  # EIO: the slave's last holder is gone
                return b""
        return b""

    async def write(self, data: bytes) -> None:
        """Type ``data``; waits while the pty's input is full (the command does not read)."""
        view = memoryview(data)
        while view and self._master is not None:
            try:
                view = view[os.write(self._master, view) :]
            except BlockingIOError:
                await self._ready(self._loop.add_writer, self._loop.remove_writer)
            except OSError:
                return  # it has gone: what was typed goes nowhere

    async def _ready(
        self, add: Callable[[int, Callable[[], object]], object], remove: Callable[[int], object]
    ) -> None:
        master = self._master
        if master is None:
            return
        ready: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add(master, wake)
        self._waiting[ready] = remove
        try:
            await ready
        finally:
            if self._waiting.pop(ready, None) is not None and self._master is not None:
                remove(master)

    def resize(self, cols: int, rows: int) -> None:
        """TIOCSWINSZ: the kernel tells the foreground job (SIGWINCH)."""
        if self._master is not None:
            set_size(self._master, cols, rows)

    def kill(self) -> None:
        """SIGKILL to the whole session: every job a shell started, in whatever group."""
        if self.popen.returncode is not None:
            return  # a reaped pid may be reused
        if self.confined:
            # bwrap leads the outer group; its death takes the sandbox's pid 1 and with
            # it every process of the pid namespace.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            return
        for pid in session_members(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Close the master: the command's terminal hangs up (SIGHUP to its session)."""
        master, self._master = self._master, None
        if master is None:
            return
        for waiter, remove in self._waiting.items():  # unwatched before the number is reused
            remove(master)
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()
        os.close(master)


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def session_members(sid: int) -> list[int]:
    """Every process of session ``sid`` (its leader first), from /proc."""
    found = [sid]
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == sid:
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            # After the command: state, ppid, pgrp, session.
            if len(fields) > 3 and fields[3] == str(sid):
                found.append(int(name))
    return found


async def spawn_pty(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    confiner: Confiner,
    jail: Jail | None,
    size: tuple[int, int] = DEFAULT_SIZE,
) -> PtyChild:
    """Start ``argv`` on a new pty of ``size`` (columns, rows), confined as ``spawn`` would."""
    setsid = shutil.which("setsid")
    if setsid is None:
        raise OSError("util-linux's setsid is missing: no controlling terminal to give")
    loop = asyncio.get_running_loop()
    confined = confiner.confined and jail is not None
    master, slave = os.openpty()
    try:
        tty = os.ttyname(slave)
        set_size(slave, *size)
        if confined and jail is not None:
            if confiner.per_app_uid:
                os.fchown(slave, confiner.uid_of(jail.app), -1)
            await loop.run_in_executor(None, confiner.prepare, jail)
            inner = [setsid, "--ctty", "--wait", "--", *argv]
            full = confiner.wrap(inner, jail=jail, cwd=cwd, tty=tty)
        else:
            full = [setsid, "--ctty", "--", *confiner.wrap(argv, jail=None, cwd=cwd)]
        popen = await loop.run_in_executor(
            None,
            functools.partial(_popen, full, None if confined else cwd, dict(env), slave, confined),
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    exited: asyncio.Future[int] = loop.create_future()
    watch_exit(loop, popen, exited)
    return PtyChild(popen, master, exited, confined=confined, tty=tty)


def _popen(
    argv: list[str], cwd: str | None, env: dict[str, str], slave: int, confined: bool
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        # Confined: bwrap in a session of its own, as kit/spawn.py starts it. Unconfined:
        # not a group leader, so `setsid --ctty` makes the session in place (no fork).
        start_new_session=confined,
        umask=CHILD_UMASK,
    )
