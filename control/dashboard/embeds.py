"""The mount points of the live modules (control/dashboard/static/live-*.js), as
docs/dashboard-live.md describes them: the page gives URLs, the modules do the rest."""

from __future__ import annotations

from control.dashboard.html import ROOT, Html, h


def logs_embed(stream_url: str, label: str, *, attrs: dict[str, str] | None = None) -> Html:
    """live-logs.js's mount point (docs/dashboard-live.md); the page loads the module
    (``page(modules=["live-logs"])``)."""
    extra = "".join(h(' data-{}="{}"', k, v) for k, v in (attrs or {}).items())
    return h(
        '<section id="live-logs" data-live-logs data-stream-url="{}" data-label="{}"{}></section>',
        stream_url,
        label,
        Html(extra),
    )


def charts_embed(app: str) -> Html:
    """live-charts.js's mount point: the last hour, refreshed every 10 s
    (``page(modules=["live-charts"])``)."""
    return h(
        '<section id="live-charts" '
        'data-live-charts data-metrics-url="{}" data-events-url="{}" data-span="3600" '
        'data-refresh="10" data-label="{}"></section>',
        f"{ROOT}/apps/{app}/metrics/requests",
        f"{ROOT}/apps/{app}/events",
        app,
    )
