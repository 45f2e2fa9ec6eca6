"""Deploying a branch from an app's page: the branch is checked and resolved to its commit,
confirmed, then built through ``Builds.create``, the API's builds:create path.

The first POST (``branch``) checks the name (git check-ref-format's rules) and asks the
app's known source (deploying.py) which commit the branch is at, with the checks
``Builds.create`` makes of a source (``Builds.branch_head``: a collaborator's URL must be
one an app token may name, its host not inward), and shows that commit to confirm. A
refusal is the app page again, the message in the section, answering its 4xx. The
second POST (``confirm``) resolves the branch again (the head it builds is the head now)
and calls ``Builds.create`` as the signed-in user (tenant unless admin), recording the
branch with the commit; the build's audit entry reads "deployed BRANCH (commit SHA)"
in the activity. Then the build's page, whose output streams live (live_views.py).
"""

from __future__ import annotations

from aiohttp import web

from control.building import BuildsUnavailable
from control.builds.errors import SourceError
from control.builds.sources import check_branch
from control.dashboard.app_page import app_path, render_app_page, visible_app
from control.dashboard.deploying import known_source
from control.dashboard.html import csrf_field, h, page
from control.dashboard.web import DASHBOARD, see_other, session_of
from control.errors import ApiError, BadRequest, Conflict
from control.models import App


async def post_deploy(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    session = session_of(request)
    principal = session.user.principal()
    app = await visible_app(request)
    posted = await request.post()
    raw = posted.get("branch", "")
    branch = raw.strip() if isinstance(raw, str) else ""
    try:
        url, sha = await _resolve(request, app, branch, tenant=not principal.token.admin)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        return await render_app_page(
            request, app, branch=branch, deploy_error=str(exc), status=exc.status
        )
    if posted.get("confirm") != "yes":
        return _confirm_page(request, app, url, branch, sha)
    builds = dash.builds
    assert builds is not None  # _resolve refused otherwise
    build = await builds.create(
        app.name,
        {"url": url, "version": sha},
        actor=principal.actor,
        tenant=not principal.token.admin,
        ref=branch,
    )
    raise see_other(
        request,
        app_path(app.name, f"/builds/{build.id}"),
        f"Deploying {branch} (commit {sha[:7]}) to {app.name}",
    )


async def _resolve(request: web.Request, app: App, branch: str, *, tenant: bool) -> tuple[str, str]:
    """(the source's URL, the commit ``branch`` is at), or the 4xx saying why not."""
    dash = request.app[DASHBOARD]
    if dash.builds is None:
        raise BuildsUnavailable(
            "this control plane has no builder "
            "(set SLIPWAY_BUILD_ROOT, or SLIPWAY_BUILDER=kubernetes)"
        )
    try:
        check_branch(branch)
    except SourceError as exc:
        raise BadRequest(str(exc), id="invalid_ref") from None
    source = await known_source(dash, app)
    if source is None:
        raise Conflict(
            f"{app.name} has no known source to deploy from: deploy it with "
            f"`slipway builds:create --git URL --ref BRANCH -a {app.name}` first",
            id="no_source",
        )
    return source.url, await dash.builds.branch_head(source.url, branch, tenant=tenant)


def _confirm_page(request: web.Request, app: App, url: str, branch: str, sha: str) -> web.Response:
    session = session_of(request)
    body = h(
        '<nav class="crumbs"><a href="{}">{}</a></nav><h1>Deploy {} to {}?</h1>'
        '<dl class="build"><dt>Source</dt><dd><code>{}</code></dd><dt>Branch</dt>'
        '<dd><code>{}</code></dd><dt>Commit</dt><dd><code id="deploy-commit">{}</code></dd></dl>'
        "<p>A build of the branch's head starts; when it succeeds, it is released to {}. "
        "Its output streams on the next page.</p>"
        '<form method="post" action="{}" class="confirm">{}'
        '<input type="hidden" name="branch" value="{}"><input type="hidden" name="confirm" '
        'value="yes"><button type="submit">Deploy {}</button> <a href="{}">Cancel</a></form>',
        app_path(app.name),
        app.name,
        branch,
        app.name,
        url,
        branch,
        sha,
        app.name,
        app_path(app.name, "/deploy"),
        csrf_field(session.csrf),
        branch,
        branch,
        app_path(app.name, "#deploy"),
    )
    return page(f"Deploy {branch}", body, user=session.user.name, csrf=session.csrf)


def register(app: web.Application) -> None:
    app.router.add_post("/apps/{app}/deploy", post_deploy)
