"""What the dyno monitor costs and how fast it sees a process past its quota.

1. Sampling cost: N idle child processes (Python, -S), each sampled as the
   monitor does (agent/dynoproc.py: its cgroup when it has its own, else its
   /proc tree: stat, status and children files), R rounds; printed in µs per
   process, beside the floor of one ``/proc/PID/statm`` read per process
   measured in the same run (the least any per-process sampler reads), and the
   ratio of the two. Then the same for a sandboxed tree (bwrap, when it runs
   here), which is three processes deep.
2. Detection delay: a worker of a 64MB size (quota 64 MB, hard limit 128 MB)
   sleeps a random part of the interval, prints "allocating", then allocates
   past the quota (R14) or past the hard limit (R15); the delay is from that
   line to the monitor's R14 or R15 line, over K runs (the allocation itself,
   tens of ms, included). The bound is one interval plus a round's reads and
   the allocation; the mean about half an interval.

Run: .venv/bin/python bench/dynos.py [--processes 50] [--rounds 200] [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from agent.dynolocal import LocalSource  # noqa: E402
from agent.dynoproc import cgroups_of, sample_pid  # noqa: E402
from agent.dynowatch import DynoMonitor, DynoSettings  # noqa: E402
from agent.local import LocalRuntime  # noqa: E402
from agent.runtime import ProcessSpec  # noqa: E402
from agent.settings import LocalSettings  # noqa: E402
from kit.spawn import Jail, detect  # noqa: E402

SLEEPER = [sys.executable, "-S", "-c", "import time; time.sleep(3600)"]
HOG = (
    f'{sys.executable} -S -c "import os, random, time; '
    "time.sleep(random.random() * float(os.environ['INTERVAL'])); "
    "print('allocating', flush=True); held = b'x' * (int(os.environ['MB']) << 20); "
    'time.sleep(3600)"'
)


def cost(pids: list[int], rounds: int) -> tuple[float, float]:
    """µs per process: the monitor's sample, and the statm floor (interleaved rounds)."""
    own = cgroups_of(os.getpid()) or {}
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        for pid in pids:
            sample_pid(pid, own_groups=own)
        ours.append((time.perf_counter() - started) / len(pids))
        started = time.perf_counter()
        for pid in pids:
            with open(f"/proc/{pid}/statm") as statm:
                statm.read()
        floor.append((time.perf_counter() - started) / len(pids))
    return statistics.median(ours) * 1e6, statistics.median(floor) * 1e6


class _Lines:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def publish(self, app: str, source: str, process: str, text: str, time_: float) -> None:
        self.at.setdefault(text, time.perf_counter())


async def delay(megabytes: int, error: str, interval: float) -> float:
    lines = _Lines()
    runtime = LocalRuntime(settings=LocalSettings(stop_grace=0.2), sink=lines)
    monitor = DynoMonitor(
        LocalSource(runtime),
        sink=lines,
        registry=CollectorRegistry(),
        settings=DynoSettings(interval=interval),
    )
    env = {"MB": str(megabytes), "INTERVAL": str(interval)}
    spec = ProcessSpec("bench", "worker", HOG, env=env, size="64MB")
    await runtime.apply(spec)
    task = asyncio.create_task(monitor.run())
    await runtime.scale("bench", "worker", 1)
    try:
        async with asyncio.timeout(interval * 5 + 10):
            while error not in lines.at:
                await asyncio.sleep(0.001)
        return lines.at[error] - lines.at["allocating"]
    finally:
        task.cancel()
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    children = [subprocess.Popen(SLEEPER) for _ in range(args.processes)]
    try:
        time.sleep(0.5)
        ours, floor = cost([c.pid for c in children], args.rounds)
        round_ms = ours * args.processes / 1000
        print(
            f"sampling, plain process: {ours:.1f} µs/process, statm floor {floor:.1f} µs "
            f"(x{ours / floor:.1f}); a round of {args.processes}: {round_ms:.2f} ms"
        )
    finally:
        for child in children:
            child.kill()
            child.wait()
    confiner = detect()
    if confiner.confined:
        argv = confiner.wrap(SLEEPER, jail=Jail(app="bench"), cwd="/")
        wrapped = [subprocess.Popen(argv) for _ in range(min(args.processes, 10))]
        try:
            time.sleep(1.0)
            ours, floor = cost([c.pid for c in wrapped], args.rounds)
            print(f"sampling, bwrap tree: {ours:.1f} µs/process (statm of its top {floor:.1f})")
        finally:
            for child in wrapped:
                child.kill()
                child.wait()
    for error, megabytes in (("Error R14 (Memory quota exceeded)", 90),
                             ("Error R15 (Memory quota vastly exceeded)", 160)):  # fmt: skip
        delays = [asyncio.run(delay(megabytes, error, args.interval)) for _ in range(args.runs)]
        mean, worst = statistics.mean(delays) * 1000, max(delays) * 1000
        print(
            f"{error[:9]} delay at a {args.interval:g} s interval: mean {mean:.0f} ms, "
            f"max {worst:.0f} ms ({args.runs} runs)"
        )


if __name__ == "__main__":
    main()
