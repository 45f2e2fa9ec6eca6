// Live logs: an app's (or one build's) log stream, followed over SSE with resume.
//
// Embed:
//   <section data-live-logs data-stream-url="/dashboard/apps/APP/logs/stream"
//            [data-source="build" data-process="build.ID"]  fixed filters, asked of the server
//            [data-lines="1000"] history to start with   [data-cap="50000"] lines kept
//            [data-controls="all|search|none"] [data-label="Logs of APP"]></section>
//   <script type="module" src=".../live-logs.js"></script>
// Every [data-live-logs] element is mounted on load; mount(element) does one by hand.
// The element gets data-state (connecting, open, reconnecting, closed) and
// data-count (lines kept), which tests and the bench read.
//
// Resume: each line's SSE id is the app's sequence number. EventSource resends the
// last one (Last-Event-ID) when it reconnects by itself; when it gave up, and whenever
// the tab comes back from the background (a throttled or frozen tab may have lost
// its connection without an error), the stream is reopened with ?last_event_id=.
// Lines already shown are skipped by sequence number, so a resume never duplicates.
//
// Rendering: lines go into a ring buffer (cap); only the rows in view (plus a few)
// are in the DOM, redrawn at most once per animation frame, so 10,000+ lines stay
// fluid. A line holding \r (a progress bar) shows only its last segment.

const ROW_HEIGHT = 18; // px; must match .ll-row's height in live-logs.css
const OVERSCAN = 10; // rows drawn above and below the view, so a fast scroll shows no gap
const RETRY_MAX = 15000; // ms; reconnect back-off ceiling (the service's keep-alive is 15 s)
const HIDDEN_RESYNC = 1000; // ms in the background after which the stream is reopened
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
const SOURCES = ["app", "router", "build", "release"];

export function readable(text) {
  // A progress line ("10%\r20%\r30%") shows what a terminal would: its last segment.
  const clean = text.replace(ANSI, "");
  if (!clean.includes("\r")) return clean;
  const parts = clean.split("\r").filter((p) => p.length > 0);
  return parts.length ? parts[parts.length - 1] : "";
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

class Ring {
  // Lines by absolute index: index i lives at slots[i % cap] while i >= first.
  constructor(cap) {
    this.cap = cap;
    this.slots = new Array(cap);
    this.first = 0;
    this.next = 0;
  }
  push(line) {
    this.slots[this.next % this.cap] = line;
    this.next += 1;
    if (this.next - this.first > this.cap) this.first = this.next - this.cap;
  }
  get(i) {
    return i >= this.first && i < this.next ? this.slots[i % this.cap] : undefined;
  }
  get size() {
    return this.next - this.first;
  }
}

export class LiveLogs {
  constructor(root, options = {}) {
    const data = root.dataset;
    this.root = root;
    this.url = options.url || data.streamUrl;
    if (!this.url) throw new Error("live-logs: data-stream-url is required");
    this.fixed = { source: data.source || "", process: data.process || "" };
    this.historyLines = Number(data.lines || 1000);
    this.ring = new Ring(Number(data.cap || 50000));
    this.view = []; // absolute indexes of the lines that pass the filter, oldest first
    this.viewHead = 0; // view[viewHead:] are still in the ring
    this.filter = { source: "", process: "", search: "" };
    this.lastSeq = -1;
    this.follow = true;
    this.retry = 1000;
    this.hiddenAt = null;
    this.source = null;
    this.dirty = false;
    this.shown = new Map(); // absolute index -> row element, for the rows in the DOM
    this.build(data.controls || "all", data.label || "Logs");
    this.connect();
    this.onVisibility = () => this.visibility();
    document.addEventListener("visibilitychange", this.onVisibility);
    this.onResume = () => this.reopen("resume");
    document.addEventListener("resume", this.onResume); // Page Lifecycle: a frozen tab thawed
    window.addEventListener("pageshow", (e) => e.persisted && this.reopen("pageshow"));
  }

  // -- the page ---------------------------------------------------------------------------

  build(controls, label) {
    const root = this.root;
    root.classList.add("live-logs");
    root.replaceChildren();
    const bar = el("div", { class: "ll-bar", role: "toolbar", "aria-label": `${label}: filters` });
    if (controls === "all" && !this.fixed.source) {
      const source = el("select", { class: "ll-source", "aria-label": "Source" });
      for (const s of ["", ...SOURCES]) source.append(el("option", { value: s }, s || "all sources"));
      source.addEventListener("change", () => this.setFilter({ source: source.value }));
      bar.append(source);
    }
    if (controls === "all" && !this.fixed.process) {
      const listId = `ll-procs-${Math.random().toString(36).slice(2)}`;
      const proc = el("input", {
        class: "ll-process", type: "search", list: listId, placeholder: "process (web, web.1)",
        "aria-label": "Process",
      });
      this.procList = el("datalist", { id: listId });
      this.procsSeen = new Set();
      proc.addEventListener("input", () => this.setFilter({ process: proc.value.trim() }));
      bar.append(proc, this.procList);
    }
    if (controls !== "none") {
      const search = el("input", {
        class: "ll-search", type: "search", placeholder: "search", "aria-label": "Search the lines",
      });
      search.addEventListener("input", () => this.setFilter({ search: search.value }));
      const followBox = el("input", { class: "ll-follow", type: "checkbox", checked: "" });
      followBox.addEventListener("change", () => {
        this.follow = followBox.checked;
        if (this.follow) this.scrollToEnd();
      });
      const followLabel = el("label", { class: "ll-follow-label" });
      followLabel.append(followBox, document.createTextNode(" follow"));
      this.followBox = followBox;
      bar.append(search, followLabel);
    }
    this.status = el("span", { class: "ll-status", role: "status", "aria-live": "polite" });
    bar.append(this.status);
    // role=log, but not announced line by line: at 1,000 lines/s that helps no one.
    this.scroller = el("div", {
      class: "ll-scroller", role: "log", "aria-live": "off", "aria-label": label, tabindex: "0",
    });
    this.spacer = el("div", { class: "ll-spacer" });
    this.rows = el("div", { class: "ll-rows" });
    this.spacer.append(this.rows);
    this.scroller.append(this.spacer);
    this.scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    root.append(bar, this.scroller);
  }

  setState(state, text) {
    this.root.dataset.state = state;
    this.status.textContent = text;
  }

  // -- the stream -------------------------------------------------------------------------

  streamUrl() {
    const url = new URL(this.url, location.href);
    url.searchParams.set("tail", "1");
    if (this.fixed.source) url.searchParams.set("source", this.fixed.source);
    if (this.fixed.process) url.searchParams.set("process", this.fixed.process);
    if (this.lastSeq >= 0) url.searchParams.set("last_event_id", String(this.lastSeq));
    else url.searchParams.set("lines", String(this.historyLines));
    return url.toString();
  }

  connect() {
    this.close();
    this.setState("connecting", "connecting…");
    const es = new EventSource(this.streamUrl());
    this.source = es;
    es.onopen = () => {
      this.retry = 1000;
      this.setState("open", "live");
    };
    es.onmessage = (e) => this.take(e);
    es.addEventListener("missed", (e) => {
      const count = JSON.parse(e.data).count;
      this.marker(count == null ? "lines may be missing: the logs service restarted"
        : `${count} lines missed: no longer in the service's buffer`);
    });
    es.addEventListener("dropped", (e) => {
      this.marker(`${JSON.parse(e.data).count} lines dropped: the stream fell behind`);
    });
    es.onerror = () => {
      if (es !== this.source) return;
      if (es.readyState === EventSource.CLOSED) {
        // Given up (the relay answered an error): retry ourselves, backing off.
        this.setState("reconnecting", `disconnected; retrying in ${Math.round(this.retry / 1000)} s`);
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.connect(), this.retry);
        this.retry = Math.min(this.retry * 2, RETRY_MAX);
      } else {
        this.setState("reconnecting", "reconnecting…"); // EventSource retries with Last-Event-ID
      }
    };
  }

  reopen(why) {
    if (this.closed) return;
    this.connect();
    this.root.dataset.resyncs = String(Number(this.root.dataset.resyncs || 0) + 1);
    this.root.dataset.lastResync = why;
  }

  visibility() {
    if (document.hidden) {
      this.hiddenAt = performance.now();
      return;
    }
    const away = this.hiddenAt == null ? 0 : performance.now() - this.hiddenAt;
    this.hiddenAt = null;
    const open = this.source && this.source.readyState === EventSource.OPEN;
    if (!open || away > HIDDEN_RESYNC) this.reopen("visible");
  }

  close() {
    clearTimeout(this.timer);
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  destroy() {
    this.closed = true;
    this.close();
    document.removeEventListener("visibilitychange", this.onVisibility);
    document.removeEventListener("resume", this.onResume);
    this.setState("closed", "closed");
  }

  take(event) {
    const line = JSON.parse(event.data);
    if (line.seq <= this.lastSeq) return; // already shown (a resume overlaps)
    this.lastSeq = line.seq;
    this.append({ seq: line.seq, time: line.time, source: line.source, process: line.process,
      text: readable(line.text) });
    if (this.procsSeen && !this.procsSeen.has(line.process)) {
      this.procsSeen.add(line.process);
      this.procList.append(el("option", { value: line.process }));
    }
  }

  marker(text) {
    this.append({ seq: null, time: Date.now() / 1000, source: "", process: "", text: `— ${text} —`,
      marker: true });
  }

  append(line) {
    const index = this.ring.next;
    this.ring.push(line);
    if (this.matches(line)) this.view.push(index);
    this.root.dataset.count = String(this.ring.size);
    this.schedule();
  }

  // -- filtering and drawing ----------------------------------------------------------------

  matches(line) {
    const f = this.filter;
    if (line.marker) return true;
    if (f.source && line.source !== f.source) return false;
    if (f.process && line.process !== f.process && !line.process.startsWith(`${f.process}.`)) {
      return false;
    }
    return !f.search || line.text.toLowerCase().includes(f.search);
  }

  setFilter(change) {
    if ("search" in change) change.search = change.search.toLowerCase();
    Object.assign(this.filter, change);
    this.view = [];
    this.viewHead = 0;
    for (let i = this.ring.first; i < this.ring.next; i += 1) {
      if (this.matches(this.ring.get(i))) this.view.push(i);
    }
    this.clearRows();
    this.schedule();
  }

  schedule() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => this.draw());
  }

  clearRows() {
    this.rows.replaceChildren();
    this.shown.clear();
  }

  onScroll() {
    const s = this.scroller;
    // Our own scroll to the end lands where we put it; anything else is the reader's.
    if (Math.abs(s.scrollTop - this.ourTop) > 1) {
      const atEnd = s.scrollTop + s.clientHeight >= s.scrollHeight - ROW_HEIGHT;
      if (this.follow !== atEnd) {
        this.follow = atEnd;
        if (this.followBox) this.followBox.checked = atEnd;
      }
    }
    this.schedule();
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.ourTop = this.scroller.scrollTop;
  }

  draw() {
    this.dirty = false;
    // Forget the view's entries for lines the ring has let go; compact now and then.
    while (this.viewHead < this.view.length && this.view[this.viewHead] < this.ring.first) {
      this.viewHead += 1;
    }
    if (this.viewHead > 4096 && this.viewHead > this.view.length / 2) {
      this.view = this.view.slice(this.viewHead);
      this.viewHead = 0;
    }
    const total = this.view.length - this.viewHead;
    this.spacer.style.height = `${total * ROW_HEIGHT}px`;
    if (this.follow) this.scrollToEnd();
    const s = this.scroller;
    const from = Math.max(0, Math.floor(s.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const to = Math.min(total, Math.ceil((s.scrollTop + s.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    const wanted = new Set();
    for (let k = from; k < to; k += 1) wanted.add(this.view[this.viewHead + k]);
    for (const [index, row] of this.shown) {
      if (!wanted.has(index)) {
        row.remove();
        this.shown.delete(index);
      }
    }
    for (let k = from; k < to; k += 1) {
      const index = this.view[this.viewHead + k];
      let row = this.shown.get(index);
      if (!row) {
        row = this.row(this.ring.get(index));
        this.shown.set(index, row);
        this.rows.append(row);
      }
      row.style.transform = `translateY(${k * ROW_HEIGHT}px)`;
    }
  }

  row(line) {
    const row = el("div", { class: line.marker ? "ll-row ll-marker" : `ll-row ll-${line.source}` });
    if (line.seq != null) row.dataset.seq = String(line.seq);
    row.append(el("span", { class: "ll-time" }, clock(line.time)));
    if (!line.marker) {
      const who = line.source === "app" ? "app" : "slipway";
      row.append(el("span", { class: "ll-who" }, `${who}[${line.process}]`));
    }
    row.append(el("span", { class: "ll-text" }, line.text));
    return row;
  }
}

export function mount(root, options) {
  if (root.liveLogs) return root.liveLogs;
  root.liveLogs = new LiveLogs(root, options);
  return root.liveLogs;
}

function mountAll() {
  for (const root of document.querySelectorAll("[data-live-logs]")) mount(root);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
else mountAll();
