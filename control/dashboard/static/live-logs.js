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
//
// Search: a case-insensitive substring filter; the matches are marked in the rows drawn
// (and only there: a row is built when it comes into view), counted ("N matches"), and
// Enter / Shift+Enter in the search box go to the next / previous one, scrolling the view
// to it even when its row was not drawn. Log text is attacker-controlled: rows are built
// from text nodes and <mark> elements, never from markup.
//
// Assistive tech: rows are positioned by transform, so their order on screen is not
// their order in the DOM by itself; the rows drawn are kept in visual order in the DOM,
// and each is a listitem with aria-posinset / aria-setsize, so a screen reader gets the
// true position and count of a line among all the lines kept, not only those drawn.

const ROW_HEIGHT = 18; // px; must match .ll-row's height in live-logs.css
const OVERSCAN = 10; // rows drawn above and below the view, so a fast scroll shows no gap
const RETRY_MAX = 15000; // ms; reconnect back-off ceiling (the service's keep-alive is 15 s)
const HIDDEN_RESYNC = 1000; // ms in the background after which the stream is reopened
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
const SOURCES = ["app", "router", "build", "release"];
const MAX_HITS = 1000; // matches counted and marked in one line: a frame stays bounded

export function find(text, needle, limit = MAX_HITS) {
  // Where needle (lower case) occurs in text, case-insensitively, as the search filter
  // matches: [start, end) pairs in text's own offsets, non-overlapping, at most limit.
  const hits = [];
  if (!needle) return hits;
  const lower = text.toLowerCase();
  if (lower.length === text.length) {
    for (let at = lower.indexOf(needle); at >= 0 && hits.length < limit;
      at = lower.indexOf(needle, at + needle.length)) {
      hits.push([at, at + needle.length]);
    }
    return hits;
  }
  // Lower-casing changed the length ("İ" becomes two code units): lower-case character by
  // character, remembering which character of text each code unit came from.
  let low = "";
  const starts = [];
  const ends = [];
  for (let i = 0; i < text.length;) {
    const ch = String.fromCodePoint(text.codePointAt(i));
    const part = ch.toLowerCase();
    for (let u = 0; u < part.length; u += 1) {
      starts.push(i);
      ends.push(i + ch.length);
    }
    low += part;
    i += ch.length;
  }
  for (let at = low.indexOf(needle); at >= 0 && hits.length < limit;
    at = low.indexOf(needle, at + needle.length)) {
    hits.push([starts[at], ends[at + needle.length - 1]]);
  }
  return hits;
}

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
    this.viewHits = []; // beside view: how many search matches each of those lines holds
    this.viewHead = 0; // view[viewHead:] are still in the ring
    this.hitTotal = 0; // the matches in view[viewHead:]
    this.current = null; // {index, j, ordinal}: the match Enter went to (j-th in its line)
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
      search.addEventListener("keydown", (e) => {
        if (e.key !== "Enter" || e.isComposing) return;
        e.preventDefault();
        this.step(e.shiftKey ? -1 : 1);
      });
      search.setAttribute("aria-keyshortcuts", "Enter Shift+Enter");
      search.title = "Enter: next match, Shift+Enter: previous";
      // Not a live region: while lines flow the count changes every frame.
      const matchId = `ll-matches-${Math.random().toString(36).slice(2)}`;
      this.matchLabel = el("span", { class: "ll-matches", id: matchId });
      search.setAttribute("aria-describedby", matchId);
      const followBox = el("input", { class: "ll-follow", type: "checkbox", checked: "" });
      followBox.addEventListener("change", () => {
        this.follow = followBox.checked;
        if (this.follow) this.scrollToEnd();
      });
      const followLabel = el("label", { class: "ll-follow-label" });
      followLabel.append(followBox, document.createTextNode(" follow"));
      this.followBox = followBox;
      bar.append(search, this.matchLabel, followLabel);
    }
    this.status = el("span", { class: "ll-status", role: "status", "aria-live": "polite" });
    bar.append(this.status);
    // role=log, but aria-live=off: a log region is polite by default, and announcing every
    // line as it arrives (up to 1,000 a second) would flood a screen reader, drowning the
    // rest of the page. The reader moves through the lines when they choose to.
    this.scroller = el("div", {
      class: "ll-scroller", role: "log", "aria-live": "off", "aria-label": label, tabindex: "0",
    });
    this.spacer = el("div", { class: "ll-spacer" });
    // A list whose items carry their true position (aria-posinset) among all the lines
    // kept (aria-setsize), as only a screenful of them is in the DOM.
    this.rows = el("div", { class: "ll-rows", role: "list", "aria-label": label });
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
    if (this.matches(line)) {
      const hits = this.filter.search ? find(line.text, this.filter.search).length : 0;
      this.view.push(index);
      this.viewHits.push(hits);
      this.hitTotal += hits;
    }
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
    return !f.search || find(line.text, f.search, 1).length > 0;
  }

  setFilter(change) {
    if ("search" in change) change.search = change.search.toLowerCase();
    Object.assign(this.filter, change);
    this.view = [];
    this.viewHits = [];
    this.viewHead = 0;
    this.hitTotal = 0;
    this.current = null;
    const search = this.filter.search;
    for (let i = this.ring.first; i < this.ring.next; i += 1) {
      const line = this.ring.get(i);
      if (this.matches(line)) {
        const hits = search ? find(line.text, search).length : 0;
        this.view.push(i);
        this.viewHits.push(hits);
        this.hitTotal += hits;
      }
    }
    this.clearRows();
    this.schedule();
  }

  // -- going from match to match ------------------------------------------------------------

  position(index) {
    // Where the line at absolute index is in view (binary search: view is ascending), or -1.
    let lo = this.viewHead;
    let hi = this.view.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.view[mid] < index) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.view.length && this.view[lo] === index ? lo : -1;
  }

  step(dir) {
    // The next (dir 1) or previous (dir -1) match, wrapping around: from the current one,
    // or, with none, from the first row in sight (down) or the last (up).
    this.trim();
    const total = this.view.length - this.viewHead;
    if (!this.filter.search || !this.hitTotal || !total) return;
    const s = this.scroller;
    let pos = this.current ? this.position(this.current.index) : -1;
    let j;
    if (pos >= 0) {
      j = this.current.j + dir;
    } else {
      const top = Math.floor(s.scrollTop / ROW_HEIGHT);
      const bottom = Math.ceil((s.scrollTop + s.clientHeight) / ROW_HEIGHT) - 1;
      pos = this.viewHead + Math.min(total - 1, Math.max(0, dir > 0 ? top : bottom));
      j = dir > 0 ? 0 : this.viewHits[pos] - 1;
    }
    // At most one lap of the view, which holds a match (hitTotal > 0).
    for (let n = 0; n <= total; n += 1) {
      if (j >= 0 && j < this.viewHits[pos]) break;
      pos += dir;
      if (pos >= this.view.length) pos = this.viewHead;
      if (pos < this.viewHead) pos = this.view.length - 1;
      j = dir > 0 ? 0 : this.viewHits[pos] - 1;
    }
    if (j < 0 || j >= this.viewHits[pos]) return;
    let ordinal = j + 1;
    for (let p = this.viewHead; p < pos; p += 1) ordinal += this.viewHits[p];
    const before = this.current;
    this.current = { index: this.view[pos], j, ordinal };
    this.reveal(pos, before);
  }

  reveal(pos, before) {
    // Scroll the view to the row at pos (centred, unless already in sight), redraw the rows
    // whose marks changed, then bring the current mark into sight sideways.
    this.follow = false;
    if (this.followBox) this.followBox.checked = false;
    for (const index of [before && before.index, this.current.index]) {
      const row = index == null ? null : this.shown.get(index);
      if (row) {
        row.remove();
        this.shown.delete(index);
      }
    }
    this.draw(); // the spacer's height is up to date before scrolling in it
    const s = this.scroller;
    const y = (pos - this.viewHead) * ROW_HEIGHT;
    if (y < s.scrollTop || y + ROW_HEIGHT > s.scrollTop + s.clientHeight) {
      s.scrollTop = y - (s.clientHeight - ROW_HEIGHT) / 2;
    }
    this.ourTop = s.scrollTop;
    this.draw();
    const mark = this.rows.querySelector("mark.ll-current");
    if (mark) mark.scrollIntoView({ block: "nearest", inline: "nearest" });
    this.ourTop = s.scrollTop;
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

  trim() {
    // Forget the view's entries for lines the ring has let go; compact now and then.
    while (this.viewHead < this.view.length && this.view[this.viewHead] < this.ring.first) {
      const hits = this.viewHits[this.viewHead];
      this.hitTotal -= hits;
      if (this.current) this.current.ordinal -= hits;
      this.viewHead += 1;
    }
    if (this.current && this.current.index < this.ring.first) this.current = null;
    if (this.viewHead > 4096 && this.viewHead > this.view.length / 2) {
      this.view = this.view.slice(this.viewHead);
      this.viewHits = this.viewHits.slice(this.viewHead);
      this.viewHead = 0;
    }
  }

  matchText() {
    if (!this.filter.search) return "";
    const n = this.hitTotal;
    const what = `${n} ${n === 1 ? "match" : "matches"}`;
    return this.current ? `${this.current.ordinal} of ${what}` : what;
  }

  draw() {
    this.dirty = false;
    this.trim();
    const total = this.view.length - this.viewHead;
    if (this.matchLabel) {
      const text = this.matchText();
      if (this.matchLabel.textContent !== text) this.matchLabel.textContent = text;
    }
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
    // In visual order in the DOM too (a screen reader reads the DOM): each row goes right
    // after the one above it, so following (rows added below, dropped above) moves none.
    let above = null;
    for (let k = from; k < to; k += 1) {
      const index = this.view[this.viewHead + k];
      let row = this.shown.get(index);
      if (!row) {
        row = this.row(this.ring.get(index), index);
        this.shown.set(index, row);
      }
      const slot = above ? above.nextSibling : this.rows.firstChild;
      if (row !== slot) this.rows.insertBefore(row, slot);
      above = row;
      if (row.llPos !== k) {
        row.llPos = k;
        row.style.transform = `translateY(${k * ROW_HEIGHT}px)`;
        row.setAttribute("aria-posinset", String(k + 1));
      }
      if (row.llSize !== total) {
        row.llSize = total;
        row.setAttribute("aria-setsize", String(total));
      }
    }
  }

  text(line, index) {
    // The line's text with its matches in <mark>: text nodes only, never markup.
    const span = el("span", { class: "ll-text" });
    const hits = this.filter.search ? find(line.text, this.filter.search) : [];
    if (!hits.length) {
      span.textContent = line.text;
      return span;
    }
    const current = this.current && this.current.index === index ? this.current.j : -1;
    let at = 0;
    hits.forEach(([start, end], j) => {
      if (start > at) span.append(document.createTextNode(line.text.slice(at, start)));
      const mark = document.createElement("mark");
      mark.textContent = line.text.slice(start, end);
      if (j === current) {
        mark.className = "ll-current";
        mark.setAttribute("aria-current", "true");
      }
      span.append(mark);
      at = end;
    });
    if (at < line.text.length) span.append(document.createTextNode(line.text.slice(at)));
    return span;
  }

  row(line, index) {
    const row = el("div", {
      class: line.marker ? "ll-row ll-marker" : `ll-row ll-${line.source}`, role: "listitem",
    });
    if (line.seq != null) row.dataset.seq = String(line.seq);
    row.append(el("span", { class: "ll-time" }, clock(line.time)));
    if (!line.marker) {
      const who = line.source === "app" ? "app" : "slipway";
      row.append(el("span", { class: "ll-who" }, `${who}[${line.process}]`));
    }
    row.append(this.text(line, index));
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
