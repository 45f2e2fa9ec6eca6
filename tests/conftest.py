"""Fixtures shared by every package's tests."""

from __future__ import annotations

import os
import random
import socket
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis's own CI profile everywhere, not only where CI=true: every property test draws
# the same examples on every run and machine (derandomized, no example database), so a
# failure found once fails every time until it is fixed.
settings.load_profile("ci")


# Ports handed out lately in this process: never the same one twice in a row (a test that
# asks for a router port and an ops port once got one port twice).
_RECENT: deque[int] = deque(maxlen=4096)
# Below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
# default). A port the kernel hands out for bind(0) is one it also gives to outgoing
# connections as their local port: between free_port() and the server's bind, any client
# of any test could take it (CI saw "address already in use" exactly so).
_pick = random.Random()


def _candidates() -> range:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    # A machine whose ephemeral range starts too low to leave room gets 10000-32000 anyway.
    return range(10_000, low if low >= 12_000 else 32_000)


_CANDIDATES = _candidates()


def free_port() -> int:
    """A port free on 127.0.0.1 now, outside the ephemeral range, not handed out lately."""
    for _ in range(1000):
        port = _pick.choice(_CANDIDATES)
        if port in _RECENT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _RECENT.append(port)
        return port
    raise RuntimeError("no fresh free port on 127.0.0.1")


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports: a router with N workers serves ops on
    its ops port and the N after it, and a neighbour taken by chance kills a worker."""
    for _ in range(100):
        base = free_port()
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            _RECENT.extend(range(base, base + count))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(autouse=True)
def _umask_kept() -> Iterator[None]:
    """A test that runs `slipway up` in process (CliRunner) sets its umask 077 for the whole
    session; later tests' files would then be unreadable to the apps they run (a uid each)."""
    kept = os.umask(0o022)
    os.umask(kept)
    yield
    os.umask(kept)
