"""``POST /webhooks`` (mounted at ``/github``): GitHub deliveries in, review-app plans out.

The order of checks is the point: the signature first (nothing unsigned is
parsed), then the delivery id (a retry is acknowledged and dropped), then the
event. Everything that is not a failure answers 202: GitHub only needs to
know the delivery arrived, and applying the plan (builds) takes minutes.
Mount it with ``parent.add_subapp("/github", webhook_app(...))``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from control.review.appjson import ReviewConfig, parse_app_json
from control.review.errors import AppJsonError, PayloadError, ReviewError, SignatureError
from control.review.github import (
    DeliveryStore,
    Event,
    Ignored,
    PullRequestAction,
    PullRequestEvent,
    parse_event,
    verify_signature,
)
from control.review.plan import Action, Pipeline, Plan, plan_event
from control.review.source import AppJsonReader

log = logging.getLogger(__name__)

# GitHub caps webhook payloads at 25 MB; anything larger is not GitHub.
MAX_BODY = 25 * 1024 * 1024


class ReviewApps(Protocol):
    """Whatever carries plans out (the control plane's API)."""

    async def apply(self, plan: Plan) -> None: ...


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    secret: bytes
    """The webhook's shared secret, as set in the repository's webhook settings."""
    pipeline: Pipeline


_CONFIG = web.AppKey("config", WebhookConfig)
_DELIVERIES = web.AppKey("deliveries", DeliveryStore)
_REVIEW_APPS = web.AppKey("review_apps", ReviewApps)
_APP_JSON = web.AppKey("app_json", AppJsonReader)
_COUNTER = web.AppKey("deliveries_total", Counter)


def webhook_app(
    config: WebhookConfig,
    *,
    deliveries: DeliveryStore,
    review_apps: ReviewApps,
    app_json: AppJsonReader,
    registry: CollectorRegistry,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[_CONFIG] = config
    app[_DELIVERIES] = deliveries
    app[_REVIEW_APPS] = review_apps
    app[_APP_JSON] = app_json
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
    config = app[_CONFIG]
    counter = app[_COUNTER]
    event_name = request.headers.get("X-GitHub-Event", "")
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
    try:
        payload = json.loads(body)
        event = parse_event(event_name, payload)
    except (ValueError, PayloadError) as exc:
        counter.labels(_label(event_name), "malformed").inc()
        return _answer(400, "rejected", f"payload: {exc}")
    if isinstance(event, Ignored):
        counter.labels(_label(event_name), "ignored").inc()
        return _answer(202, "ignored", event.reason)
    deliveries = app[_DELIVERIES]
    if not deliveries.claim(delivery):
        counter.labels(event_name, "duplicate").inc()
        return _answer(202, "duplicate", f"delivery {delivery} was already handled")
    try:
        plan = await _plan(app, event, config.pipeline)
        await app[_REVIEW_APPS].apply(plan)
    except AppJsonError as exc:
        # The branch's app.json is wrong: redelivering will not fix it, a push will.
        counter.labels(event_name, "invalid_app_json").inc()
        return _answer(422, "rejected", str(exc))
    except BaseException:
        deliveries.release(delivery)
        counter.labels(event_name, "failed").inc()
        raise
    counter.labels(event_name, "accepted").inc()
    log.info("webhook accepted", extra={"delivery": delivery, "plan": plan.summary})
    return web.json_response(
        {
            "status": "accepted",
            "summary": plan.summary,
            "actions": [_action_json(action) for action in plan.actions],
        },
        status=202,
    )


async def _plan(app: web.Application, event: Event, pipeline: Pipeline) -> Plan:
    config: ReviewConfig | None = None
    if isinstance(event, PullRequestEvent):
        # app.json matters when creating, updating (env of a new add-on) and before destroying.
        try:
            text = await app[_APP_JSON].read(event.repository.clone_url, event.head_sha)
        except ReviewError:
            if event.action is not PullRequestAction.CLOSED:
                raise
            text = None  # a deleted branch must not keep its review app alive
        config = parse_app_json(text) if text is not None else None
        return plan_event(event, pipeline, config)
    return plan_event(event, pipeline)


def _action_json(action: Action) -> dict[str, object]:
    fields = {str(k): _plain(v) for k, v in asdict(action).items()}
    return {"type": type(action).__name__, **fields}


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _label(event: str) -> str:
    # Unknown header values must not become unbounded label sets.
    return event if event in ("pull_request", "push", "ping") else "other"


def _answer(status: int, outcome: str, reason: str) -> web.Response:
    return web.json_response({"status": outcome, "reason": reason}, status=status)
