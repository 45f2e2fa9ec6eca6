// The app page's add-on health, kept current while the tab is visible (docs/dashboard-live.md).
// The page renders the cells; this module asks its data-health-url every data-refresh
// seconds for the same cells rendered again (the server's read_health and render) and puts
// each in place. A hidden tab does not ask; it asks at once when it becomes visible again.
export class LiveHealth {
  constructor(root) {
    this.root = root;
    const d = root.dataset;
    if (!d.healthUrl) throw new Error("live-health: data-health-url is required");
    this.url = d.healthUrl;
    this.refresh = Number(d.refresh || 15) * 1000;
    this.onVisibility = () => {
      if (document.hidden) this.pause();
      else this.update();
    };
    document.addEventListener("visibilitychange", this.onVisibility);
    this.schedule();
  }

  pause() {
    clearTimeout(this.timer);
    this.root.dataset.live = "paused";
  }

  schedule() {
    clearTimeout(this.timer);
    if (this.destroyed) return;
    if (document.hidden) {
      this.pause();
      return;
    }
    this.root.dataset.live = "on";
    this.timer = setTimeout(() => this.update(), this.refresh);
  }

  async update() {
    clearTimeout(this.timer);
    if (this.destroyed) return;
    try {
      const response = await fetch(this.url, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (response.ok) {
        const body = await response.json();
        for (const cell of this.root.querySelectorAll("td.addon-health[data-addon]")) {
          const found = (body.addons || {})[cell.dataset.addon];
          // Markup the server rendered and escaped, as the page's own cells are.
          if (found && cell.innerHTML !== found.html) cell.innerHTML = found.html;
        }
        this.root.dataset.updated = String(Date.now());
      }
    } catch (err) {
      // The next round tries again; the cells keep what they showed.
    }
    this.schedule();
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisibility);
  }
}

export function mount(root) {
  if (!root.liveHealth) root.liveHealth = new LiveHealth(root);
  return root.liveHealth;
}

function mountAll() {
  for (const root of document.querySelectorAll("[data-live-health]")) mount(root);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
else mountAll();
