"""Connecting a repository from the review-app board: admins only, one per control plane.

The form takes the repository's URL, the branch that deploys staging, and a webhook
secret generated here (stored as given: GitHub signs deliveries with it); the pipeline's
name and review domain default from the URL and the apps' domain. Connecting asks the
repository for the branch first (422 when it cannot be read or has no such branch), then
stores the pipeline, creates the staging app and deploys the branch's head to it through
the review apps' own runner, as a push would (``ControlPlane.connect``). The board then
shows what to paste into GitHub. Where the environment configures a pipeline, it wins and
there is no form.
"""

from __future__ import annotations

from aiohttp import web

from control.dashboard.html import ROOT, form, h, page
from control.dashboard.web import DASHBOARD, flash_of, see_other, session_of
from control.errors import Forbidden, NotFound
from control.review.pipelines import checked, new_secret

_NOT_CONNECTED = (
    "no repository is connected: an admin connects one on this page, or set "
    "SLIPWAY_GITHUB_WEBHOOK_SECRET, SLIPWAY_REVIEW_PIPELINE, SLIPWAY_REVIEW_DOMAIN and "
    "SLIPWAY_REVIEW_STAGING_APP where the control plane runs"
)


def _field(form_: object, name: str) -> str:
    assert hasattr(form_, "get")
    value = form_.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _default_domain(request: web.Request) -> str:
    apps = request.app[DASHBOARD].control.app_domain
    return f"review.{apps}" if apps else ""


async def connect_page(request: web.Request) -> web.StreamResponse:
    """The board before any repository is connected: the form to admins, 404 to others."""
    dash = request.app[DASHBOARD]
    session = session_of(request)
    if dash.connect is None or not session.user.admin:
        raise NotFound(_NOT_CONNECTED, id="review_not_configured")
    fields = h(
        '<label for="c-url">Repository URL</label>'
        '<input id="c-url" name="repo_url" required placeholder="https://github.com/org/repo.git">'
        '<label for="c-branch">Branch (its pushes deploy staging)</label>'
        '<input id="c-branch" name="branch" required value="main">'
        '<label for="c-name">Pipeline name (default: the repository\'s)</label>'
        '<input id="c-name" name="name">'
        '<label for="c-domain">Review apps\' domain (pr-N.DOMAIN)</label>'
        '<input id="c-domain" name="domain" required value="{}">'
        '<label for="c-secret">Webhook secret (generated; paste it into GitHub)</label>'
        '<input id="c-secret" name="secret" required value="{}">',
        _default_domain(request),
        new_secret(),
    )
    body = h(
        '<h1>Review apps</h1><section id="connect"><h2>Connect a repository</h2>'
        "<p>Connecting creates the staging app, deploys the branch's head to it, and builds "
        "an app for each pull request once GitHub's webhook is set.</p>{}</section>",
        form(f"{ROOT}/review/connect", session.csrf, fields, label="Connect repository"),
    )
    return page("Review apps", body, user=session.user.name, csrf=session.csrf,
                flash=flash_of(request))  # fmt: skip


async def connect(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    user = session_of(request).user
    if not user.admin:
        raise Forbidden("only an admin connects a repository", id="forbidden")
    if dash.connect is None:
        raise NotFound(
            "repositories are not connected here: the environment's pipeline is set "
            "(SLIPWAY_GITHUB_*, SLIPWAY_REVIEW_*), or there is no builder",
            id="review_not_configured",
        )
    posted = await request.post()
    stored = checked(
        repo_url=_field(posted, "repo_url"),
        branch=_field(posted, "branch"),
        secret=_field(posted, "secret"),
        name=_field(posted, "name"),
        domain=_field(posted, "domain").lower(),
        created_by=user.principal().actor,
    )
    await dash.connect(stored, user.principal().actor)
    raise see_other(
        request,
        f"{ROOT}/review",
        f"Connected {stored.repo_url}: deploying {stored.branch} to {stored.staging_app}; "
        "now add the webhook below in GitHub",
    )


def register(app: web.Application) -> None:
    app.router.add_post("/review/connect", connect)
