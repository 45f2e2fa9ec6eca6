"""``POST /webhooks`` (mounted at ``/github``): GitHub deliveries in, review-app plans out.

The order of checks is the point: the signature first (nothing unsigned is
parsed), then the headers and the event, then the delivery id (a retry is
acknowledged and dropped). A delivery that passes is claimed in the state
store and answered 202 at once: GitHub waits 10 s at most, and reading
app.json, building and releasing take longer. What the plan then comes to is
made visible elsewhere (``deliveries``): the app's recorded status, its log
stream, and a commit status on GitHub. Only a state store that cannot record
the delivery is answered 503, saying to redeliver.
Mount it with ``parent.add_subapp("/github", webhook_app(...))``. The secret and the
runner are read from a ``WebhookSlot`` at each delivery: the control plane fills it from
the environment at start, or when a repository is connected from the dashboard; an empty
slot answers 404.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from control.errors import ControlError
from control.review.errors import PayloadError, SignatureError
from control.review.github import Event, Ignored, parse_event, verify_signature
from control.review.plan import Plan

log = logging.getLogger(__name__)

# GitHub caps webhook payloads at 25 MB; anything larger is not GitHub.
MAX_BODY = 25 * 1024 * 1024
#: Characters of an X-GitHub-Delivery (a 36-character GUID) the store keeps.
DELIVERY_ID_LIMIT = 100


class Deliveries(Protocol):
    """Whatever claims a delivery and runs its plan in the background."""

    async def accept(self, delivery: str, event_name: str, event: Event) -> Plan | None:
        """The plan as the event decides it, or None when the delivery was handled before."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    secret: bytes
    """The webhook's shared secret, as set in the repository's webhook settings."""
    branch: str | None = None
    """The branch whose pushes deploy staging; None: the repository's default branch."""


@dataclass(slots=True)
class WebhookSlot:
    """The connected pipeline's secret and runner; empty until a repository is connected."""

    config: WebhookConfig | None = None
    deliveries: Deliveries | None = None


_SLOT = web.AppKey("slot", WebhookSlot)
_COUNTER = web.AppKey("deliveries_total", Counter)


def webhook_app(
    config: WebhookConfig, *, deliveries: Deliveries, registry: CollectorRegistry
) -> web.Application:
    """The webhook for one fixed pipeline."""
    return slot_webhook_app(WebhookSlot(config, deliveries), registry=registry)


def slot_webhook_app(slot: WebhookSlot, *, registry: CollectorRegistry) -> web.Application:
    """The webhook for whatever pipeline ``slot`` holds when a delivery arrives."""
    app = web.Application(client_max_size=MAX_BODY)
    app[_SLOT] = slot
    app[_COUNTER] = Counter(
        "slipway_github_deliveries",
        "GitHub webhook deliveries by event and outcome.",
        ["event", "outcome"],
        registry=registry,
    )
    app.router.add_post("/webhooks", _handle)
    return app


async def _handle(request: web.Request) -> web.Response:
    app = request.app
    config, deliveries = app[_SLOT].config, app[_SLOT].deliveries
    counter = app[_COUNTER]
    event_name = request.headers.get("X-GitHub-Event", "")
    if config is None or deliveries is None:
        counter.labels(_label(event_name), "not_connected").inc()
        return _answer(
            404,
            "rejected",
            "no repository is connected: connect one on the dashboard's Review apps page "
            "(or set SLIPWAY_GITHUB_WEBHOOK_SECRET and SLIPWAY_REVIEW_*)",
        )
    delivery = request.headers.get("X-GitHub-Delivery", "")
    body = await request.read()
    try:
        verify_signature(config.secret, body, request.headers.get("X-Hub-Signature-256"))
    except SignatureError as exc:
        counter.labels(_label(event_name), "bad_signature").inc()
        log.warning("webhook signature rejected", extra={"delivery": delivery, "reason": str(exc)})
        return _answer(401, "rejected", str(exc))
    if not event_name or not delivery:
        counter.labels(_label(event_name), "malformed").inc()
        return _answer(400, "rejected", "X-GitHub-Event and X-GitHub-Delivery are required")
    if len(delivery) > DELIVERY_ID_LIMIT:
        counter.labels(_label(event_name), "malformed").inc()
        return _answer(400, "rejected", f"X-GitHub-Delivery is over {DELIVERY_ID_LIMIT} characters")
    try:
        payload = json.loads(body)
        event = parse_event(event_name, payload, branch=config.branch)
    except (ValueError, PayloadError) as exc:
        counter.labels(_label(event_name), "malformed").inc()
        return _answer(400, "rejected", f"payload: {exc}")
    if isinstance(event, Ignored):
        counter.labels(_label(event_name), "ignored").inc()
        return _answer(202, "ignored", event.reason)
    try:
        plan = await deliveries.accept(delivery, event_name, event)
    except ControlError as exc:
        counter.labels(event_name, "unavailable").inc()
        log.error("webhook not recorded", extra={"delivery": delivery, "error": str(exc)})
        return _answer(
            503,
            "unavailable",
            "the control plane could not record this delivery; redeliver it from the "
            "webhook's Recent Deliveries on GitHub once the control plane is healthy",
        )
    if plan is None:
        counter.labels(event_name, "duplicate").inc()
        return _answer(202, "duplicate", f"delivery {delivery} was already handled")
    counter.labels(event_name, "accepted").inc()
    log.info("webhook accepted", extra={"delivery": delivery, "plan": plan.summary})
    return web.json_response(
        {"status": "accepted", "delivery": delivery, "summary": plan.summary}, status=202
    )


def _label(event: str) -> str:
    # Unknown header values must not become unbounded label sets.
    return event if event in ("pull_request", "push", "ping") else "other"


def _answer(status: int, outcome: str, reason: str) -> web.Response:
    return web.json_response({"status": outcome, "reason": reason}, status=status)
