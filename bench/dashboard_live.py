"""Benchmark of the dashboard's live logs in Chromium: print-to-visible delay, responsiveness.

``slipway up`` runs in this process with one real app that prints ``--rate`` lines/s
(each carrying its wall-clock print time); Chromium (headless, Playwright) opens a
page embedding live-logs.js over the control plane's relay of the logs SSE stream
(control/livelogs.py), following. Figures:

- visible: for each line, (the time the frame that shows it, or a later line, put its
  rows in the DOM) - (the time the app printed it). Following at 1,000 lines/s a frame
  can bring more lines than the view has rows; those scrolled past count as shown then.
  Goal p95 < 250 ms.
- peer: in the same page, a bare EventSource on the same relay, no rendering:
  (receipt - print). The ratio visible/peer is what the view itself adds.
- responsiveness: gaps between consecutive animation frames while the lines flow
  (60 Hz is 16.7 ms; a long task shows as a long gap), and long tasks (> 50 ms)
  as the browser's PerformanceObserver counts them.

Both clocks are this machine's, so the delays need no synchronisation.
TTFB with 200 apps is the dashboard's own figure (added with the pages).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control.up import Up
from tests.agent.conftest import ListSink
from tests.control.conftest import ADMIN_TOKEN, up_settings
from tests.dashboard_live.browser import chromium, demo_server

HOST = "ticker.localhost"
#: Prints ``rate`` lines/s for ``seconds`` when asked (GET /start), in batches every 10 ms.
TICKER = textwrap.dedent(
    """
    import http.server, os, sys, threading, time, urllib.parse

    def tick(rate, seconds):
        n, start = 0, time.time()
        while time.time() - start < seconds:
            due = int((time.time() - start) * rate)
            out = []
            while n < due:
                out.append(f"tick {n} {time.time():.6f}\\n")
                n += 1
            if out:
                sys.stdout.write("".join(out))
                sys.stdout.flush()
            time.sleep(0.01)

    class App(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            if self.path.startswith("/start"):
                args = (int(q["rate"][0]), float(q["seconds"][0]))
                threading.Thread(target=tick, args=args, daemon=True).start()
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
    """
)

#: Installed before the page's scripts: watches rows entering the log view, the bare
#: EventSource peer, animation frame gaps and long tasks.
PROBE = """
window.bench = {visible: [], drawn: 0, peer: [], gaps: [], longTasks: 0, next: null, on: false};
new PerformanceObserver(list => { if (bench.on) bench.longTasks += list.getEntries().length; })
  .observe({type: 'longtask', buffered: false});
let last = null;
function frame(t) { if (bench.on && last !== null) bench.gaps.push(t - last); last = t;
  requestAnimationFrame(frame); }
requestAnimationFrame(frame);
function tick(text) { const m = /^tick (\\d+) ([0-9.]+)$/.exec(text);
  return m ? [Number(m[1]), Number(m[2]) * 1000] : null; }
document.addEventListener('DOMContentLoaded', () => {
  const root = document.querySelector('#logs');
  new MutationObserver(records => {
    if (!bench.on) return;
    const now = Date.now();
    let top = -1;
    for (const r of records) for (const node of r.addedNodes) {
      const text = node.querySelector && node.querySelector('.ll-text');
      const t = text && tick(text.textContent);
      if (t) { top = Math.max(top, t[0]); bench.drawn += 1; }
    }
    if (top < 0) return;
    // Every line up to the newest drawn one is on screen now or was scrolled past in this
    // frame (following, more lines than rows can arrive in one frame): all count as shown.
    const ring = root.liveLogs.ring;
    if (bench.next === null) bench.next = ring.first;
    for (; bench.next < ring.next; bench.next++) {
      const t = tick(ring.get(bench.next)?.text || '');
      if (!t) continue;
      if (t[0] > top) break;
      bench.visible.push(now - t[1]);
    }
  }).observe(root, {childList: true, subtree: true});
  const es = new EventSource('/logs/ticker?tail=1&lines=0');
  es.onmessage = e => { if (!bench.on) return; const t = tick(JSON.parse(e.data).text);
    if (t) bench.peer.push(Date.now() - t[1]); };
});
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


async def run(rate: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        code = state / "ticker"
        code.mkdir()
        (code / "ticker.py").write_text(TICKER)
        settings = dataclasses.replace(up_settings(state), rollup_file=None)
        sink = ListSink()
        up = Up(settings, app_sink=sink, router_sink=sink)
        await up.start()
        try:
            assert up.control is not None
            base = f"http://127.0.0.1:{up.control.port}"
            router = f"http://127.0.0.1:{up.router.port}"
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with aiohttp.ClientSession() as s:
                await s.post(f"{base}/apps", json={"name": "ticker"}, headers=auth)
                release = {"artifact": str(code), "procfile": {"web": "exec python3 -u ticker.py"}}
                async with s.post(f"{base}/apps/ticker/releases", json=release, headers=auth) as r:
                    assert r.status == 201, await r.text()
                async with s.get(router + "/", headers={"Host": HOST}) as r:
                    assert r.status == 200  # awake
                async with demo_server(up) as demo, chromium() as browser:
                    page = await browser.new_page(viewport={"width": 1280, "height": 900})
                    await page.add_init_script(PROBE)
                    await page.goto(f"{demo.url}/?app=ticker&lines=0&refresh=3600")
                    await page.wait_for_selector('#logs[data-state="open"]', timeout=30_000)
                    await page.evaluate("bench.on = true")
                    url = f"{router}/start?rate={rate}&seconds={seconds}"
                    async with s.get(url, headers={"Host": HOST}) as r:
                        assert r.status == 200
                    await asyncio.sleep(seconds + 1.5)
                    await page.evaluate("bench.on = false")
                    figures: dict[str, Any] = await page.evaluate(
                        "({visible: bench.visible, drawn: bench.drawn, peer: bench.peer,"
                        " gaps: bench.gaps,"
                        " longTasks: bench.longTasks,"
                        " rows: document.querySelectorAll('.ll-row').length,"
                        " kept: Number(document.querySelector('#logs').dataset.count)})"
                    )
        finally:
            await up.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="lines/s the app prints")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    f = asyncio.run(run(args.rate, args.seconds))
    sent = int(args.rate * args.seconds)
    visible, peer, gaps = f["visible"], f["peer"], f["gaps"]
    print(
        f"lines: {sent} printed at {args.rate}/s; {len(peer)} received by the bare stream, "
        f"{len(visible)} shown by the view, {f['drawn']} of them drawn as rows (following, a "
        "frame that brings more lines than rows scrolls some past: they count as shown)"
    )
    print(
        f"visible: p50 {pct(visible, 0.5):.0f} ms, p95 {pct(visible, 0.95):.0f} ms, "
        f"max {max(visible, default=float('nan')):.0f} ms (goal p95 < 250 ms)"
    )
    print(
        f"peer:    p50 {pct(peer, 0.5):.0f} ms, p95 {pct(peer, 0.95):.0f} ms (EventSource only); "
        f"ratio p95 {pct(visible, 0.95) / max(pct(peer, 0.95), 1e-9):.2f}"
    )
    print(
        f"frames:  {len(gaps)} in {args.seconds:.0f} s, gap p50 {pct(gaps, 0.5):.1f} ms, "
        f"p95 {pct(gaps, 0.95):.1f} ms, max {max(gaps, default=float('nan')):.1f} ms; "
        f"long tasks {f['longTasks']}"
    )
    print(f"dom:     {f['rows']} rows in the page for {f['kept']} lines kept")
    print(f"(cpus: {os.cpu_count()}; Chromium, slipway and the app share them; noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
