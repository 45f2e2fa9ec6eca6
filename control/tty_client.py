"""``slipway run`` on a terminal: the local end of control/api/terminal.py's WebSocket.

The local terminal goes raw (every key, Ctrl-C included, is a byte for the
remote pty, which turns 0x03 into SIGINT there), and is restored whatever
happens: the command's end, an error, a broken connection, a signal. A window
size change (SIGWINCH) is sent on, and the exit code is the remote command's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import termios
import tty
from typing import Any

import aiohttp

from control.client import Client, CliError

#: Keystrokes read in one go.
READ_CHUNK = 4096
#: Seconds to open the connection (the command then runs as long as the server lets it).
CONNECT_TIMEOUT = 30.0


class NoTerminal(CliError):
    """One-offs run where no terminal can be given (Kubernetes Jobs): ``--no-tty`` works."""


def run_tty(client: Client, app: str, path: str, command: str) -> int:
    """Run ``command`` attached to this terminal; its exit code."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    try:
        return asyncio.run(_session(client, app, path, command, raw=saved is not None))
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def window() -> tuple[int, int]:
    for stream in (sys.stdout, sys.stdin, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            size = os.get_terminal_size(stream.fileno())
            return size.columns, size.lines
    return 80, 24


def _say(text: str, raw: bool) -> None:
    sys.stderr.write(text.replace("\n", "\r\n") if raw else text)
    sys.stderr.flush()


async def _session(client: Client, app: str, path: str, command: str, *, raw: bool) -> int:
    url = client.base_url + path
    headers = {"Authorization": f"Bearer {client.token}"}
    timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT)
    ) as http:
        try:
            ws = await http.ws_connect(url, headers=headers, heartbeat=30.0, timeout=timeout)
        except aiohttp.WSServerHandshakeError as exc:
            # The same GET without the upgrade answers the same refusal, with its message.
            try:
                await asyncio.to_thread(client.call, "GET", path)
            except CliError as refused:
                if "(tty_unsupported)" in refused.message:
                    raise NoTerminal(refused.message) from None
                raise
            raise CliError(f"the API refused the terminal: {exc.status} {exc.message}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CliError(f"cannot reach the slipway API at {client.base_url}: {exc}") from None
        async with ws:
            cols, rows = window()
            hello = {"command": command, "cols": cols, "rows": rows}
            hello["term"] = os.environ.get("TERM", "")
            await ws.send_json(hello)
            if raw:
                tty.setraw(sys.stdin.fileno())
            return await _pump(ws, raw=raw)


async def _pump(ws: aiohttp.ClientWebSocketResponse, *, raw: bool) -> int:
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    typed: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    def readable() -> None:
        if typed.full():
            loop.remove_reader(fd)  # taken up again once the socket took what is queued
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
        typed.put_nowait(data)

    sizes: set[asyncio.Task[None]] = set()

    def resized() -> None:
        cols, rows = window()
        task = loop.create_task(ws.send_json({"cols": cols, "rows": rows}))
        sizes.add(task)
        task.add_done_callback(sizes.discard)

    async def keys() -> None:
        while True:
            data = await typed.get()
            if not data:
                await ws.send_bytes(b"\x04")  # EOF of a piped stdin: ^D to the pty
                return
            await ws.send_bytes(data)
            if typed.empty():
                loop.add_reader(fd, readable)

    loop.add_reader(fd, readable)
    loop.add_signal_handler(signal.SIGWINCH, resized)
    sender = loop.create_task(keys())
    try:
        return await _receive(ws, raw=raw)
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)
        loop.remove_reader(fd)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await sender


async def _receive(ws: aiohttp.ClientWebSocketResponse, *, raw: bool) -> int:
    out = sys.stdout.fileno()
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.BINARY:
            _write_all(out, msg.data)
        elif msg.type is aiohttp.WSMsgType.TEXT:
            event: dict[str, Any] = json.loads(msg.data)
            if "dyno" in event:
                _say(f"up, {event['dyno']}\n", raw)
            if "error" in event:
                _say(f"\nError: {event['error']}\n", raw)
            if "exit_code" in event:
                return int(event["exit_code"])
    raise CliError("the run ended without an exit code: the connection broke off")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
