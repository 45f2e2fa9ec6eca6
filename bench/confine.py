"""Spawn-to-ready of a trivial app, unconfined and in kit/spawn.py's sandbox.

Apps sleep and wake, so what confinement adds to a start is added to every
wake. For each round, LocalRuntime starts one web instance of a tiny HTTP
server (Python's http.server, -S) and the time until its readiness probe
answers is taken, alternating unconfined and confined runs so that a noisy
machine hurts both alike. A bare ``sh -c true`` spawn-to-exit is timed the
same way, which isolates bubblewrap's own setup from the app's boot.

Printed: median and p90 of each, and the confined/unconfined ratio.

Run: .venv/bin/python bench/confine.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.local import LocalRuntime  # noqa: E402
from agent.runtime import ProcessSpec  # noqa: E402
from agent.settings import LocalSettings  # noqa: E402
from kit.spawn import Confiner, Jail, app_env, detect, spawn  # noqa: E402

WEB = f"{sys.executable} -S -m http.server $PORT --bind 127.0.0.1"


class _Quiet:
    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        pass


async def ready_time(directory: str, confiner: Confiner | None) -> float:
    runtime = LocalRuntime(settings=LocalSettings(), sink=_Quiet(), confiner=confiner)
    watch = runtime.watch()
    await runtime.apply(ProcessSpec(app="bench", process="web", command=WEB, cwd=directory))
    started = time.perf_counter()
    await runtime.scale("bench", "web", 1)
    async for status in watch:
        if status.ready:
            elapsed = time.perf_counter() - started
            break
    await runtime.close()
    return elapsed


async def bare_time(directory: str, confiner: Confiner | None) -> float:
    started = time.perf_counter()
    child = await spawn(
        ["/bin/sh", "-c", "true"],
        cwd=directory,
        env=app_env({}, home=directory),
        confiner=confiner,
        jail=Jail(app="bench", read_only=(directory,)),
    )
    await child.wait()
    child.close()
    return time.perf_counter() - started


def summary(name: str, times: list[float]) -> float:
    median = statistics.median(times)
    p90 = sorted(times)[int(len(times) * 0.9) - 1]
    print(f"{name:28s} median {median * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms")
    return median


async def main(rounds: int) -> None:
    confiner = detect()
    print("confinement:", confiner.fields())
    if not confiner.confined:
        raise SystemExit("no sandbox here: nothing to compare")
    with tempfile.TemporaryDirectory() as directory:
        Path(directory).chmod(0o755)
        results: dict[str, list[float]] = {k: [] for k in ("ready", "ready+", "bare", "bare+")}
        for _ in range(rounds):
            results["ready"].append(await ready_time(directory, None))
            results["ready+"].append(await ready_time(directory, confiner))
            results["bare"].append(await bare_time(directory, None))
            results["bare+"].append(await bare_time(directory, confiner))
    plain = summary("spawn-to-ready, unconfined", results["ready"])
    boxed = summary("spawn-to-ready, sandbox", results["ready+"])
    summary("sh -c true, unconfined", results["bare"])
    summary("sh -c true, sandbox", results["bare+"])
    print(f"ratio sandbox/unconfined (ready): {boxed / plain:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
