"""The logs service inside a real ``slipway up`` process: its forward key, and a SIGKILL.

The forward port under ``slipway up`` always wants the shared key kept in the
state directory (as the token is); and what it acked before a crash is back in
the tail and the resume after a restart, with ids that keep growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from click.testing import CliRunner

from control.cli import main
from tests.conftest import free_port
from tests.logs.conftest import ForwardClient
from tests.logs.sse import SSE, Event

SLIPWAY = str(Path(sys.executable).parent / "slipway")
T = 1_795_000_000.5


@dataclass
class UpProcess:
    state: Path
    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def logs_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['logs']}"

    @property
    def forward_port(self) -> int:
        return self.ports["forward"]

    def token(self) -> str:
        return (self.state / "token").read_text().strip()

    def key(self) -> bytes:
        return (self.state / "forward-key").read_bytes().strip()

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("SLIPWAY_TOKEN", "SLIPWAY_LOGS_SHARED_KEY")
        }
        self.proc = subprocess.Popen(
            [
                SLIPWAY,
                "up",
                f"--state-dir={self.state}",
                f"--port={self.ports['router']}",
                f"--ops-port={self.ports['ops']}",
                f"--agent-port={self.ports['agent']}",
                f"--logs-port={self.ports['logs']}",
                f"--forward-port={self.ports['forward']}",
                f"--control-port={self.ports['control']}",
                "--log-level=WARNING",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        """Until the token reads logs: the control plane that checks it starts last."""
        async with asyncio.timeout(30), aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                assert self.proc.poll() is None, "slipway up exited"
                with contextlib.suppress(aiohttp.ClientError, FileNotFoundError):
                    async with http.get(
                        f"{self.logs_url}/apps/shop/logs",
                        params={"lines": "0"},
                        headers={"Authorization": f"Bearer {self.token()}"},
                    ) as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    names = ("router", "ops", "agent", "logs", "forward", "control")
    process = UpProcess(tmp_path / "state", {name: free_port() for name in names})
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def keyed(port: int, key: bytes) -> ForwardClient:
    """A forward client through the handshake, as Fluent Bit with ``Shared_Key`` does it."""
    client = await ForwardClient.connect(port)
    helo = await client.reply()
    salt = os.urandom(16)
    digest = hashlib.sha512(salt + b"fluent-bit" + helo[1]["nonce"] + key).hexdigest()
    await client.send(msgpack.packb(["PING", "fluent-bit", salt, digest, "", ""]))
    pong = await client.reply()
    assert pong[:2] == ["PONG", True], pong
    return client


def frame(chunk: str, *texts: str, tag: str = "slipway.shop.web.1") -> list[Any]:
    return [tag, [[T, {"log": text}] for text in texts], {"chunk": chunk}]


async def read_all(http: aiohttp.ClientSession, up: UpProcess, **params: str) -> list[Event]:
    headers = {"Authorization": f"Bearer {up.token()}"}
    if "last_event_id" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id")
    async with http.get(f"{up.logs_url}/apps/shop/logs", params=params, headers=headers) as r:
        assert r.status == 200, await r.text()
        sse = SSE(r)
        events = []
        with contextlib.suppress(EOFError):
            while True:
                events.append(await sse.next())
        return events


async def received_lines(http: aiohttp.ClientSession, up: UpProcess) -> float:
    """Lines taken into any app's stream, of any source, since the process started."""
    async with http.get(f"{up.logs_url}/metrics") as r:
        return sum(
            float(line.split()[-1])
            for line in (await r.text()).splitlines()
            if line.startswith("slipway_logs_lines_received_total{")
        )


class TestTheForwardKey:
    async def test_the_key_is_made_once_in_the_state_directory_readable_by_us_only(
        self, up: UpProcess
    ) -> None:
        await up.ready()
        mode = stat.S_IMODE((up.state / "forward-key").stat().st_mode)
        assert mode == 0o600
        assert len(up.key()) >= 32
        assert up.key() != up.token().encode()

    async def test_without_the_key_nothing_lands_in_any_stream(
        self, up: UpProcess, http: aiohttp.ClientSession
    ) -> None:
        """Attack: a local process (an app's own, say) writes lines into shop's stream
        through the forward port, without the key or with a guessed one."""
        await up.ready()
        bare = await ForwardClient.connect(up.forward_port)
        assert (await bare.reply())[0] == "HELO"
        await bare.send(frame("no-key", "forged without a key"))
        assert await bare.closed_by_server()
        await bare.close()

        guess = await ForwardClient.connect(up.forward_port)
        helo = await guess.reply()
        salt = b"0123456789abcdef"
        digest = hashlib.sha512(salt + b"x" + helo[1]["nonce"] + b"guess").hexdigest()
        await guess.send(msgpack.packb(["PING", "x", salt, digest, "", ""]))
        assert (await guess.reply())[:3] == ["PONG", False, "shared_key mismatch"]
        await guess.send(frame("bad-key", "forged with a wrong key"))
        assert await guess.closed_by_server()
        await guess.close()

        assert await received_lines(http, up) == 0
        assert await read_all(http, up, lines="100") == []

        client = await keyed(up.forward_port, up.key())
        await client.send(frame("with-key", "shipped with the key"))
        assert await client.reply() == {"ack": "with-key"}
        await client.close()
        [event] = await read_all(http, up, lines="100")
        assert event.data["text"] == "shipped with the key"
        assert await received_lines(http, up) == 1

    def test_an_empty_key_file_is_refused_rather_than_used_as_a_key(self, tmp_path: Path) -> None:
        """An empty key would let anyone pass the handshake; say so instead of starting."""
        state = tmp_path / "state"
        state.mkdir()
        (state / "forward-key").write_text("\n")
        result = CliRunner().invoke(
            main,
            ["up", f"--state-dir={state}"],
            env={"SLIPWAY_LOGS_SHARED_KEY": None, "SLIPWAY_TOKEN": "slw_test"},
        )
        assert result.exit_code == 1
        assert "forward-key is empty; remove it" in result.output


class TestACrash:
    async def test_acked_lines_are_read_back_by_resume_and_tail_after_sigkill(
        self, up: UpProcess, http: aiohttp.ClientSession
    ) -> None:
        await up.ready()
        client = await keyed(up.forward_port, up.key())
        await client.send(frame("first", "seen live"))
        assert await client.reply() == {"ack": "first"}
        [seen] = await read_all(http, up, lines="1")
        last_seen = seen.id
        assert last_seen is not None

        # 50 lines acked while no client follows, in five chunks as a shipper sends them
        for n in range(5):
            await client.send(frame(f"c{n}", *(f"acked {n * 10 + i}" for i in range(10))))
            assert await client.reply() == {"ack": f"c{n}"}
        await client.close()
        up.kill()

        up.start()
        await up.ready()
        resumed = await read_all(http, up, lines="0", last_event_id=last_seen)
        assert [e.event for e in resumed] == ["message"] * 50, "no missed, no gap"
        assert [e.data["text"] for e in resumed] == [f"acked {i}" for i in range(50)]
        ids = [int(str(e.id)) for e in resumed]
        assert ids == sorted(ids)
        assert min(ids) > int(last_seen)

        tail = await read_all(http, up, lines="1500")
        assert [e.data["text"] for e in tail] == ["seen live"] + [f"acked {i}" for i in range(50)]

        # ids continue above the acked ones; resuming from the last acked id is exact
        client = await keyed(up.forward_port, up.key())
        await client.send(frame("after", "after the restart"))
        assert await client.reply() == {"ack": "after"}
        await client.close()
        [new] = await read_all(http, up, lines="0", last_event_id=str(ids[-1]))
        assert new.event == "message"
        assert new.data["text"] == "after the restart"
        assert int(str(new.id)) > ids[-1]
