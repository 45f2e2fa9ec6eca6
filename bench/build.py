"""Cold and warm build time of a demo-like Python app, with the local builder.

The bench makes a git repository: a small web app with a Procfile and a
requirements.txt naming vendored wheels (made here, so no index is needed
and the figures do not depend on the network), about the size of a small
Flask app's dependency set. Then, for each round, in a fresh build root:

- cold: the first build of the app (virtualenv made, every wheel installed);
- warm: the next commit, a code change with requirements.txt untouched (the
  common push), which must reuse the cached virtualenv.

Printed: the median cold and warm times, their ratio, and whether every warm
build was a cache hit.

Run: .venv/bin/python bench/build.py [--rounds 3] [--wheels 12] [--modules 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from control.builds.local import LocalBuilder  # noqa: E402
from control.builds.metrics import BuildMetrics  # noqa: E402
from control.builds.model import Source  # noqa: E402
from control.builds.settings import BuildSettings  # noqa: E402
from tests.builds.apps import commit, wheel  # noqa: E402


class Discard:
    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        pass


def demo_app(wheels: int, modules: int) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {
        "Procfile": "web: python app.py\nworker: python worker.py\n",
        "app.py": "import http.server\nprint('demo')\n",
        "worker.py": "print('worker')\n",
    }
    lines = []
    for index in range(wheels):
        # A module body of a few KB, like a real library's files.
        body = "".join(f"def f{j}(x):\n    return x * {j}\n\n" for j in range(modules * 5))
        name, data = wheel(f"demodep{index}", "1.0", body)
        files[f"vendor/{name}"] = data
        lines.append(f"./vendor/{name}")
    files["requirements.txt"] = "\n".join(lines) + "\n"
    return files


async def one_round(workdir: Path, repo: Path, shas: tuple[str, str]) -> tuple[float, float, bool]:
    settings = BuildSettings(root=workdir, pip_args=("--no-index",))
    builder = LocalBuilder(settings, sink=Discard(), metrics=BuildMetrics(CollectorRegistry()))
    cold = await builder.build("demo", Source.git(str(repo), shas[0]))
    warm = await builder.build("demo", Source.git(str(repo), shas[1]))
    assert not cold.cache_hit
    return cold.duration, warm.duration, warm.cache_hit


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wheels", type=int, default=12)
    parser.add_argument("--modules", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slipway-bench-build-") as tmp:
        base = Path(tmp)
        repo = base / "demo"
        first = commit(repo, demo_app(args.wheels, args.modules))
        second = commit(repo, {"app.py": "import http.server\nprint('demo v2')\n"})
        colds, warms, hits = [], [], []
        for index in range(args.rounds):
            cold, warm, hit = await one_round(base / f"round{index}", repo, (first, second))
            colds.append(cold)
            warms.append(warm)
            hits.append(hit)
            print(f"round {index + 1}: cold {cold:.2f}s warm {warm:.2f}s cache_hit={hit}")
    cold_med, warm_med = statistics.median(colds), statistics.median(warms)
    print(f"app: {args.wheels} vendored wheels, Procfile with 2 types")
    print(f"cold build (median of {args.rounds}): {cold_med:.2f}s")
    print(f"warm build (median of {args.rounds}): {warm_med:.2f}s")
    print(f"cold/warm: {cold_med / warm_med:.1f}x; every warm build a cache hit: {all(hits)}")


if __name__ == "__main__":
    asyncio.run(main())
