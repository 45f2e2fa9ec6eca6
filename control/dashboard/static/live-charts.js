// Request charts: throughput by status class, p50/p95/p99 latency, H-codes, wakes and wake
// time, as SVG drawn here, with deploys, restarts, sleeps, wakes and crashes on the time axis.
//
// Embed:
//   <section data-live-charts data-metrics-url="/dashboard/apps/APP/metrics/requests"
//            data-events-url="/dashboard/apps/APP/events"
//            [data-span="3600"] seconds shown   [data-refresh="10"] seconds between updates
//            [data-label="hello"]></section>
//   <script type="module" src=".../live-charts.js"></script>
// The URLs answer what GET /apps/{app}/metrics/requests and /apps/{app}/events answer
// (control/api/live.py); the page's cookie goes along (same origin).
// Each chart is an <svg role="img"> with <title> and <desc>, and a <details> table of the
// same numbers follows the charts. The element gets data-updated (the last update's time,
// ms) and data-state (loading, ok, error).

const W = 640;
const H = 150;
const PAD = { left: 46, right: 10, top: 10, bottom: 22 };
const SVG = "http://www.w3.org/2000/svg";
const STATUS = [["2xx", "#2da44e"], ["3xx", "#218bff"], ["4xx", "#d4a72c"], ["5xx", "#cf222e"]];
const LATENCY = [["p50", "#218bff"], ["p95", "#bf8700"], ["p99", "#cf222e"]];
const CODE_COLOURS = ["#cf222e", "#8250df", "#bf3989", "#fb8500", "#57606a", "#0969da"];
const EVENT_COLOURS = {
  deploy: "#8250df", restart: "#0969da", sleep: "#57606a", wake: "#2da44e", crash: "#cf222e",
};

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function hhmm(t) {
  const d = new Date(t * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * power) return m * power;
  return 10 * power;
}

function fmt(value, unit) {
  if (unit === "ms" && value >= 1000) return `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s`;
  const rounded = value >= 100 ? Math.round(value) : Math.round(value * 10) / 10;
  return `${rounded}${unit ? ` ${unit}` : ""}`;
}

// One chart: a frame, y ticks, x ticks, then the caller's marks, then the events.
class Frame {
  constructor(title, desc, data, max, unit) {
    this.data = data;
    this.max = niceMax(max);
    this.unit = unit;
    this.root = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", class: "lc-chart",
    });
    this.root.append(svg("title", {}, title), svg("desc", {}, desc));
    const n = Math.max(data.points.length, 1);
    this.slot = (W - PAD.left - PAD.right) / n;
    this.t0 = data.points.length ? data.points[0].t : data.since;
    this.t1 = this.t0 + n * data.step;
    const axis = svg("g", { class: "lc-axis", "aria-hidden": "true" });
    for (const f of [0, 0.5, 1]) {
      const y = this.y(this.max * f);
      axis.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "lc-grid" }));
      axis.append(svg("text", { x: PAD.left - 4, y: y + 4, "text-anchor": "end" },
        fmt(this.max * f, unit)));
    }
    const ticks = Math.min(6, n);
    for (let i = 0; i < ticks; i += 1) {
      const t = this.t0 + Math.round((i * n) / ticks) * data.step;
      axis.append(svg("text", { x: this.x(t), y: H - 6, "text-anchor": "middle" }, hhmm(t)));
    }
    this.root.append(axis);
  }

  x(t) {
    return PAD.left + ((t - this.t0) / (this.t1 - this.t0)) * (W - PAD.left - PAD.right);
  }

  y(v) {
    return H - PAD.bottom - (Math.min(v, this.max) / this.max) * (H - PAD.top - PAD.bottom);
  }

  stacked(series) {
    // series: [[name, colour, point => value]]; one stacked bar per point.
    const g = svg("g", { class: "lc-bars" });
    for (const p of this.data.points) {
      let base = 0;
      for (const [name, colour, value] of series) {
        const v = value(p);
        if (!v) continue;
        const top = this.y(base + v);
        const bar = svg("rect", {
          x: this.x(p.t) + 0.5, width: Math.max(this.slot - 1, 0.5), y: top,
          height: Math.max(this.y(base) - top, 0.5), fill: colour, "data-series": name,
        });
        bar.append(svg("title", {}, `${hhmm(p.t)} ${name}: ${fmt(v, this.unit)}`));
        g.append(bar);
        base += v;
      }
    }
    this.root.append(g);
  }

  line(name, colour, value) {
    // A polyline per run of points that have a value: no line across a gap.
    const runs = [[]];
    for (const p of this.data.points) {
      const v = value(p);
      if (v == null) {
        if (runs[runs.length - 1].length) runs.push([]);
      } else {
        runs[runs.length - 1].push(`${(this.x(p.t) + this.slot / 2).toFixed(1)},${this.y(v).toFixed(1)}`);
      }
    }
    for (const run of runs) {
      if (!run.length) continue;
      const shape = run.length === 1
        ? svg("circle", { cx: run[0].split(",")[0], cy: run[0].split(",")[1], r: 2, fill: colour })
        : svg("polyline", { points: run.join(" "), fill: "none", stroke: colour, "stroke-width": 1.5 });
      shape.setAttribute("data-series", name);
      this.root.append(shape);
    }
  }

  events(events) {
    const g = svg("g", { class: "lc-events" });
    for (const e of events) {
      if (e.t < this.t0 || e.t > this.t1) continue;
      const x = this.x(e.t);
      const mark = svg("line", {
        x1: x, x2: x, y1: PAD.top, y2: H - PAD.bottom, stroke: EVENT_COLOURS[e.kind] || "#57606a",
        class: `lc-event lc-event-${e.kind}`, "data-kind": e.kind,
      });
      mark.append(svg("title", {}, eventText(e)));
      g.append(mark);
    }
    this.root.append(g);
  }
}

function eventText(e) {
  const when = new Date(e.t * 1000).toLocaleTimeString();
  const extra = e.seconds != null ? ` in ${fmt(e.seconds * 1000, "ms")}` : e.detail ? ` ${e.detail}` : "";
  return `${when} ${e.kind}${extra}`;
}

function legend(items) {
  const ul = el("ul", { class: "lc-legend" });
  for (const [name, colour] of items) {
    const li = el("li");
    li.append(el("span", { class: "lc-swatch", style: `background:${colour}` }), document.createTextNode(name));
    ul.append(li);
  }
  return ul;
}

export class LiveCharts {
  constructor(root) {
    this.root = root;
    const d = root.dataset;
    if (!d.metricsUrl) throw new Error("live-charts: data-metrics-url is required");
    this.metricsUrl = d.metricsUrl;
    this.eventsUrl = d.eventsUrl || "";
    this.span = Number(d.span || 3600);
    this.refresh = Number(d.refresh || 10) * 1000;
    this.label = d.label || "";
    root.classList.add("live-charts");
    this.status = el("p", { class: "lc-status", role: "status", "aria-live": "polite" });
    this.body = el("div", { class: "lc-body" });
    root.replaceChildren(this.status, this.body);
    this.onVisibility = () => {
      if (!document.hidden) this.update();
    };
    document.addEventListener("visibilitychange", this.onVisibility);
    this.update();
  }

  async fetchJson(base, extra) {
    const url = new URL(base, location.href);
    for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, String(v));
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `${response.status}`);
    return body;
  }

  async update() {
    clearTimeout(this.timer);
    if (this.destroyed) return;
    const since = Math.floor(Date.now() / 1000 - this.span);
    this.root.dataset.state = this.root.dataset.state || "loading";
    try {
      const [data, events] = await Promise.all([
        this.fetchJson(this.metricsUrl, { since }),
        this.eventsUrl ? this.fetchJson(this.eventsUrl, { since }) : Promise.resolve({ events: [] }),
      ]);
      this.draw(data, events.events || []);
      this.root.dataset.state = "ok";
      this.status.textContent = `Updated ${new Date().toLocaleTimeString()} (${data.source}, ${data.step} s steps)`;
    } catch (err) {
      this.root.dataset.state = "error";
      this.status.textContent = `Charts unavailable: ${err.message}`;
    }
    this.root.dataset.updated = String(Date.now());
    // A background tab does not poll; visibilitychange brings it up to date.
    if (!document.hidden) this.timer = setTimeout(() => this.update(), this.refresh);
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisibility);
  }

  draw(data, events) {
    const pts = data.points;
    const perStep = `per ${data.step >= 120 ? `${data.step / 60} minutes` : "minute"}`;
    const panels = [];
    const total = (p) => Object.values(p.requests).reduce((a, b) => a + b, 0);
    const requests = new Frame(`Requests ${perStep} by status class`,
      `Stacked bars of 2xx, 3xx, 4xx and 5xx responses; ${pts.reduce((a, p) => a + total(p), 0)} in all.`,
      data, Math.max(...pts.map(total), 0), "");
    requests.stacked(STATUS.map(([c, colour]) => [c, colour, (p) => p.requests[c] || 0]));
    panels.push(["Throughput", requests, legend(STATUS)]);

    const lat = (p, q) => (p.latency_ms ? p.latency_ms[q] : null);
    const latency = new Frame("Response time p50, p95, p99 (ms)",
      "Lines of the 50th, 95th and 99th percentile response time per step; gaps had no requests.",
      data, Math.max(...pts.map((p) => lat(p, "p99") || 0), 0), "ms");
    for (const [q, colour] of LATENCY) latency.line(q, colour, (p) => lat(p, q));
    panels.push(["Latency", latency, legend(LATENCY)]);

    const codes = [...new Set(pts.flatMap((p) => Object.keys(p.codes)))].sort();
    const codeSeries = codes.map((c, i) => [c, CODE_COLOURS[i % CODE_COLOURS.length], (p) => p.codes[c] || 0]);
    const hcodes = new Frame("Router errors (H-codes)",
      codes.length ? `Stacked bars of ${codes.join(", ")}.` : "No router errors in this window.",
      data, Math.max(...pts.map((p) => Object.values(p.codes).reduce((a, b) => a + b, 0)), 0), "");
    hcodes.stacked(codeSeries);
    panels.push(["H-codes", hcodes, legend(codeSeries.map(([c, colour]) => [c, colour]))]);

    const wakeMs = (p) => (p.wake_ms ? p.wake_ms.max : null);
    const wakes = new Frame("Wakes and the slowest wake time",
      "Bars: wakes per step (left scale). Line: the slowest wake in the step, in ms (its own scale).",
      data, Math.max(...pts.map((p) => p.wakes), 0), "");
    wakes.stacked([["wakes", "#2da44e", (p) => p.wakes]]);
    const wakeMax = niceMax(Math.max(...pts.map((p) => wakeMs(p) || 0), 0));
    wakes.line("wake time", "#8250df", (p) => (wakeMs(p) == null ? null : (wakeMs(p) / wakeMax) * wakes.max));
    panels.push(["Wakes", wakes, legend([["wakes", "#2da44e"], [`wake time (max ${fmt(wakeMax, "ms")})`, "#8250df"]])]);

    const fragment = document.createDocumentFragment();
    for (const [name, frame, key] of panels) {
      frame.events(events);
      const figure = el("figure", { class: "lc-panel", "data-panel": name.toLowerCase() });
      figure.append(el("figcaption", {}, name), frame.root, key);
      fragment.append(figure);
    }
    fragment.append(legend(Object.entries(EVENT_COLOURS)), this.table(data, events));
    this.body.replaceChildren(fragment);
  }

  table(data, events) {
    const details = el("details", { class: "lc-table" });
    details.append(el("summary", {}, "The numbers as a table"));
    const table = el("table");
    table.append(el("caption", {}, `Requests ${this.label ? `of ${this.label} ` : ""}per ${data.step} s`));
    const head = el("tr");
    for (const h of ["time", "2xx", "3xx", "4xx", "5xx", "p50 ms", "p95 ms", "p99 ms", "H-codes", "wakes", "wake max ms"]) {
      head.append(el("th", { scope: "col" }, h));
    }
    table.append(el("thead"));
    table.tHead.append(head);
    const body = el("tbody");
    for (const p of data.points) {
      const tr = el("tr");
      const l = p.latency_ms || {};
      const cells = [hhmm(p.t), ...STATUS.map(([c]) => p.requests[c] || 0), l.p50 ?? "", l.p95 ?? "",
        l.p99 ?? "", Object.entries(p.codes).map(([c, n]) => `${c}×${n}`).join(" "), p.wakes,
        p.wake_ms ? p.wake_ms.max : ""];
      cells.forEach((v, i) => tr.append(el(i ? "td" : "th", i ? {} : { scope: "row" }, String(v))));
      body.append(tr);
    }
    table.append(body);
    const list = el("ul", { class: "lc-event-list" });
    for (const e of events) list.append(el("li", { "data-kind": e.kind }, eventText(e)));
    details.append(table, el("p", {}, "Events:"), list);
    return details;
  }
}

export function mount(root) {
  if (!root.liveCharts) root.liveCharts = new LiveCharts(root);
  return root.liveCharts;
}

function mountAll() {
  for (const root of document.querySelectorAll("[data-live-charts]")) mount(root);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
else mountAll();
