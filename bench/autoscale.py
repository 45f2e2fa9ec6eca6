"""Web autoscaling under ``slipway up``: how fast a load step is served by new processes, and
how still the replicas stay under noisy steady load.

Everything runs in this process: ``slipway up`` (router, agent, LocalRuntime)
with real app processes (tests/agent/app.py, which answers ``/slow=SECONDS``
from ``web.N``), and closed-loop clients through the router, each keeping one
request in flight, so the number of active clients is the app's concurrency.
The autoscaler runs as shipped: samples every second, Knative's windows (60 s
stable, 6 s panic at 2x the target), a 60 s scale-down delay.

- boot (the peer): the app's own cold start through the router (a wake), the
  median of three apps, measured in the same run.
- step: one web process, quiet for a stable window; then 4x the target of
  concurrency at once.
  Reported: seconds from the step to the first response from a new process,
  and to responses from every process the autoscaler asked for. The goal is
  within the panic window plus the app's boot: the ratio printed is
  step-to-all-serving / (panic window + boot), under 1 meets it.
- noisy: a steady mean of 2.5x the target (needs 3 processes), each second a
  new level drawn around it (sd a quarter of the mean), for ``--minutes``.
  Reported: replica changes, and those beyond the first settling (the goal: 0).

Run: .venv/bin/python bench/autoscale.py [--minutes 2]   (10 for the real figure)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.autoscale import DEFAULT_PANIC_WINDOW, DEFAULT_STABLE_WINDOW  # noqa: E402
from agent.settings import AgentSettings, LocalSettings  # noqa: E402
from control.up import Up, UpSettings  # noqa: E402
from router.settings import RouterSettings  # noqa: E402

APP = ROOT / "tests" / "agent" / "app.py"
TARGET = 4
MAX = 8
#: Each client's request: long enough that a client is almost always in flight.
REQUEST = "/slow=0.25"


def apps_toml(root: Path) -> str:
    tables = []
    for name in ("step", "noisy", "cold1", "cold2", "cold3"):
        (root / name).mkdir()
        shutil.copy(APP, root / name / "app.py")
        (root / name / "Procfile").write_text(f"web: exec {sys.executable} -S app.py\n")
        cold = name.startswith("cold")
        tables.append(
            f'[apps.{name}]\ndirectory = {name!r}\nhosts = ["{name}.bench"]\n'
            f"min_scale = {0 if cold else 1}\nmax_scale = {MAX}\n"
        )
        if not cold:
            tables.append(f"[apps.{name}.autoscale.web]\ntarget = {TARGET}\n")
    return "\n".join(tables)


class Quiet:
    """App output and router lines are not the figures: dropped."""

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        pass

    def emit(self, app: str, line: str) -> None:
        pass


class Clients:
    """Closed-loop clients of one app: ``level`` of them keep a request in flight."""

    def __init__(self, http: aiohttp.ClientSession, url: str, host: str) -> None:
        self.http, self.url, self.host = http, url, host
        self.level = 0
        self.failed = 0
        #: Why requests failed: the router's error code (H13...) or the client's exception.
        self.why: Counter[str] = Counter()
        self.ok = 0
        #: dyno -> monotonic time of its first response.
        self.first_from: dict[str, float] = {}
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(64)]

    async def _client(self, index: int) -> None:
        while True:
            if index >= self.level:
                await asyncio.sleep(0.05)
                continue
            try:
                async with self.http.get(self.url + REQUEST, headers={"Host": self.host}) as resp:
                    text = await resp.text()
                    if resp.status != 200:
                        self.failed += 1
                        self.why[resp.headers.get("Slipway-Error", str(resp.status))] += 1
                        continue
            except aiohttp.ClientError as exc:
                self.failed += 1
                self.why[type(exc).__name__] += 1
                continue
            self.ok += 1
            self.first_from.setdefault(text.split()[2], time.monotonic())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def cold_boot(http: aiohttp.ClientSession, url: str, name: str) -> float:
    sent = time.monotonic()
    async with http.get(url + "/", headers={"Host": f"{name}.bench"}) as resp:
        await resp.read()
        assert resp.status == 200, resp.status
    return time.monotonic() - sent


def changes(up: Up, app: str) -> list[dict[str, object]]:
    view = up.agent.autoscale(app)
    return [d for d in reversed(view["decisions"]) if d["from"] != d["to"]]


async def main(minutes: float, seed: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "apps.toml").write_text(apps_toml(root))
        up = Up(
            UpSettings(
                apps_file=root / "apps.toml",
                router=RouterSettings(host="127.0.0.1", port=0, ops_host="127.0.0.1", ops_port=0),
                agent=AgentSettings(host="127.0.0.1", port=0),
                local=LocalSettings(stop_grace=2.0, max_instances=MAX),
            ),
            app_sink=Quiet(),
            router_sink=Quiet(),
        )
        await up.start()
        url = f"http://127.0.0.1:{up.router.port}"
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                boots = [await cold_boot(http, url, f"cold{i}") for i in (1, 2, 3)]
                boot = statistics.median(boots)
                print(f"boot (cold start through the router, median of 3): {boot:.2f} s")
                await step(up, http, url, boot)
                await noisy(up, http, url, minutes, seed)
        finally:
            await up.stop()


async def step(up: Up, http: aiohttp.ClientSession, url: str, boot: float) -> None:
    while not up.agent.machines["step"].view().endpoints:
        await asyncio.sleep(0.05)
    # A whole stable window of quiet first, as before a real surge: with fewer samples the
    # stable average is as quick as the panic one, and the step would not be a panic.
    await asyncio.sleep(DEFAULT_STABLE_WINDOW)
    clients = Clients(http, url, "step.bench")
    started = time.monotonic()
    clients.level = TARGET * 4
    goal = DEFAULT_PANIC_WINDOW + boot
    await asyncio.sleep(goal + 10)  # past the goal: what it came to, and when
    await clients.close()
    wanted = up.agent.machines["step"].desired.get("web", 0)
    firsts = sorted(t - started for d, t in clients.first_from.items() if d != "web.1")
    made = changes(up, "step")
    path = " ".join(f"{d['from']}->{d['to']}({d['reason']})" for d in made)
    served = f"{len(firsts)} new processes served" if firsts else "no new process served"
    print(
        f"step 0 -> {TARGET * 4} in flight (target {TARGET}): [{path}]; {served}; "
        + (
            f"the first after {firsts[0]:.2f} s, the last ({len(firsts) + 1} of {wanted}) "
            f"after {firsts[-1]:.2f} s; goal panic window + boot = {goal:.2f} s; "
            f"ratio {firsts[-1] / goal:.2f}; "
            if firsts
            else ""
        )
        + f"failed requests {clients.failed} of {clients.ok + clients.failed} {dict(clients.why)}"
    )


async def noisy(up: Up, http: aiohttp.ClientSession, url: str, minutes: float, seed: int) -> None:
    mean = TARGET * 2.5
    draw = random.Random(seed)
    clients = Clients(http, url, "noisy.bench")
    levels: list[int] = []
    end = time.monotonic() + minutes * 60
    while time.monotonic() < end:
        clients.level = max(0, round(draw.gauss(mean, mean / 4)))
        levels.append(clients.level)
        await asyncio.sleep(1.0)
    await clients.close()
    made = changes(up, "noisy")
    path = " ".join(f"{d['from']}->{d['to']}({d['reason']})" for d in made)
    print(
        f"noisy {minutes:g} min, mean {statistics.mean(levels):.1f} in flight "
        f"(sd {statistics.pstdev(levels):.1f}, target {TARGET}): {len(made)} replica changes "
        f"[{path}], beyond the first: {max(0, len(made) - 1)}; failed requests "
        f"{clients.failed} of {clients.ok + clients.failed}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="noisy load's length")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    asyncio.run(main(args.minutes, args.seed))
