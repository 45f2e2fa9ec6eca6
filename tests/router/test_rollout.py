"""A router rollout loses no request: what the chart's preStop and drain settings do.

Two ``slipway serve router`` processes behind nginx (the ingress), requests flowing. One
router is taken out as Kubernetes does it: the endpoint leaves the ingress's upstreams
(nginx reloads without it) while the preStop sleep keeps the router serving, then SIGTERM
starts its drain, in which requests still in flight finish. The ingress never retries
elsewhere (``proxy-next-upstream: off``, as the chart sets it), so any refused or cut
request would be a failure the client sees.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.router.conftest import NGINX, AppProcess, wait_port

SLIPWAY = str(Path(sys.executable).parent / "slipway")
#: What the chart's preStop sleep stands for here: the ingress has reloaded by then.
PRE_STOP = 1.0


def nginx_conf(tmp: Path, port: int, routers: list[int]) -> str:
    servers = "".join(f"server 127.0.0.1:{p};" for p in routers)
    return f"""
worker_processes 1;
daemon off;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    upstream routers {{ {servers} keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://routers;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_next_upstream off;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def start_router(tmp: Path, name: str, routes: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, ops = free_port(), free_port()
    env = {**os.environ, "SLIPWAY_ROUTER_DRAIN_GRACE": "10s"}
    with (tmp / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [SLIPWAY, "serve", "router", "--port", str(port), "--ops-port", str(ops),
             "--routes", str(routes), "--workers", "1"],
            env=env,
            stderr=log,
        )  # fmt: skip
    wait_port(port)
    wait_port(ops)
    return proc, port, ops


def served(ops: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ops}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("slipway_router_requests_total{")
    )


class Load:
    """Clients sending requests through nginx on keep-alive connections until stopped."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.outcomes: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, args=(n,)) for n in range(clients)]

    def client(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            # Every client now and then holds a request across the moment of the SIGTERM.
            path = "/slow?seconds=0.5" if (i + n) % 10 == 0 else "/"
            # A connection per request: ingress-nginx changes endpoints without a reload,
            # but plain nginx here reloads, and an old worker closing an idle client
            # keep-alive is that reload's artefact, not the router's doing.
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", path, headers={"Host": "hello.test", "Connection": "close"})
                reply = conn.getresponse()
                reply.read()
                outcome = str(reply.status)
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
            finally:
                conn.close()
            with self.lock:
                self.outcomes[outcome] += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="slipway-rollout-") as path:
        yield Path(path)


def test_sigterm_to_one_of_two_routers_behind_nginx_under_load_fails_no_request(
    app: AppProcess, tmp: Path
) -> None:
    routes = tmp / "routes.json"
    endpoint = {"host": "127.0.0.1", "port": app.port}
    table = {"version": 1, "apps": {"hello": {"hosts": ["hello.test"], "endpoints": [endpoint]}}}
    routes.write_text(json.dumps(table))
    a, a_port, _ = start_router(tmp, "a", routes)
    b, b_port, b_ops = start_router(tmp, "b", routes)
    front = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, front, [a_port, b_port]))
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp)])
    try:
        wait_port(front)
        with Load(front, clients=8) as load:
            time.sleep(1.5)
            assert served(b_ops) > 0, "router b took no traffic before it was stopped"
            # The endpoint leaves the ingress: nginx reloads without b (old workers finish
            # their requests on b); b keeps serving meanwhile (preStop).
            conf.write_text(nginx_conf(tmp, front, [a_port]))
            subprocess.run([NGINX, "-c", str(conf), "-p", str(tmp), "-s", "reload"], check=True)
            time.sleep(PRE_STOP)
            b.send_signal(signal.SIGTERM)
            assert b.wait(timeout=20) == 0
            time.sleep(1.5)
        outcomes = dict(load.outcomes)
        print(f"rollout under load: {outcomes}")
        assert set(outcomes) == {"200"}, outcomes
        assert outcomes["200"] > 100
    finally:
        nginx.terminate()
        nginx.wait(10)
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
