// A build's page, kept current until the build is done (docs/dashboard.md, "Deploy a branch").
// The page renders the status, end and release; while the status is "pending" this module
// asks data-state-url every few seconds for them rendered again (the server's own cells)
// and puts them in place, then stops. It gives up after MAX_MS (a build's longest run is
// far shorter), leaving the page as it last was: a reload shows the rest.
const EVERY_MS = 2000;
const MAX_MS = 2 * 60 * 60 * 1000;

export class LiveBuild {
  constructor(root) {
    this.root = root;
    this.url = root.dataset.stateUrl;
    if (!this.url) throw new Error("live-build: data-state-url is required");
    this.status = document.getElementById("build-status");
    this.started = Date.now();
    if (this.status && this.status.dataset.state === "pending") this.schedule();
    else root.dataset.live = "done";
  }

  schedule() {
    clearTimeout(this.timer);
    if (this.destroyed) return;
    if (Date.now() - this.started > MAX_MS) {
      this.root.dataset.live = "gave-up";
      return;
    }
    this.root.dataset.live = "on";
    this.timer = setTimeout(() => this.update(), EVERY_MS);
  }

  async update() {
    if (this.destroyed) return;
    try {
      const response = await fetch(this.url, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (response.ok) {
        const body = await response.json();
        // Markup the server rendered and escaped, as the page's own cells are.
        for (const [id, html] of [["build-finished", body.finished_html], ["build-release", body.release_html]]) {
          const cell = document.getElementById(id);
          if (cell && typeof html === "string" && cell.innerHTML !== html) cell.innerHTML = html;
        }
        if (this.status && typeof body.status === "string") {
          this.status.dataset.state = body.status;
          this.status.textContent = body.status;
        }
        if (body.status !== "pending") {
          this.root.dataset.live = "done";
          return;
        }
      }
    } catch (err) {
      // The next round tries again; the page keeps what it showed.
    }
    this.schedule();
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.timer);
  }
}

export function mount(root) {
  if (!root.liveBuild) root.liveBuild = new LiveBuild(root);
  return root.liveBuild;
}

function mountAll() {
  for (const root of document.querySelectorAll("[data-live-build]")) mount(root);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
else mountAll();
