"""Where an app's code comes from, and the app page's "Deploy a branch" section.

An app's source is known when the connected pipeline deploys it (its staging app: the
repository and branch connected, control/review/) or when a build of it named a git
repository (the newest such build: its URL, and the branch it was deployed from if one
was named). An upload, a tarball, or a URL whose credentials were masked at rest
(kit.redact) is no source to build again from: the section then says how to deploy with
the CLI instead. The handlers are in deploy.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from control.builds.errors import SourceError
from control.builds.sources import COMMIT, classify, is_tarball
from control.dashboard.html import ROOT, Html, form, h
from control.dashboard.web import Dashboard
from control.models import App, Build
from control.review.pipelines import StoredPipelines
from kit.redact import MASK

#: Builds looked through for the newest one from a git repository.
LOOKED_AT = 20
#: The branch offered when nothing says which: git's default.
DEFAULT_BRANCH = "main"


@dataclass(frozen=True, slots=True)
class DeploySource:
    #: The git repository's URL (or, an admin's, a path on this machine).
    url: str
    #: The branch the form offers: the pipeline's, else the last deployed one's.
    branch: str
    #: Where it was learnt: "pipeline" or "build".
    via: str


def rebuildable(build: Build) -> bool:
    """Whether ``build`` came from a git repository this control plane can fetch again."""
    url = build.source_url
    if url.startswith("upload:") or is_tarball(url) or MASK in url:
        return False
    if build.source_version is None or not COMMIT.match(build.source_version):
        return False
    try:
        classify(url)
    except SourceError:
        return False
    return True


async def known_source(dash: Dashboard, app: App) -> DeploySource | None:
    """``app``'s source (the module docstring says which), or None."""
    pipeline_branch = None
    if dash.review is not None and dash.review.settings.staging_app == app.name:
        pipeline_branch = dash.review.settings.branch
    async with dash.control.store.tx(write=False) as tx:
        recent = await tx.list_builds(app, limit=LOOKED_AT)
    last = next((b for b in reversed(recent) if rebuildable(b)), None)
    if pipeline_branch is not None:
        stored = await StoredPipelines(dash.control.store).get()
        if stored is not None and stored.staging_app == app.name:
            return DeploySource(stored.repo_url, pipeline_branch, "pipeline")
        if last is not None:  # the environment's pipeline: its pushes' builds say where
            return DeploySource(last.source_url, pipeline_branch, "pipeline")
    if last is None:
        return None
    return DeploySource(last.source_url, last.source_ref or DEFAULT_BRANCH, "build")


def deploy_section(
    app: str,
    csrf: str,
    source: DeploySource | None,
    *,
    builder: bool,
    branch: str | None = None,
    error: str | None = None,
) -> Html:
    """The section: the form (``branch`` and ``error``: what was posted and why it was
    refused), or the CLI line when there is no known source or no builder here."""
    cli = h(
        "<p>Deploy from a checkout: <code>slipway builds:create --git URL --ref BRANCH -a {}"
        "</code> (or <code>slipway builds:create DIR -a {}</code>).</p>",
        app,
        app,
    )
    alert = h('<p class="error" role="alert" id="deploy-error">{}</p>', error) if error else ""
    if not builder:
        body = h('{}<p class="empty">This control plane has no builder.</p>{}', alert, cli)
    elif source is None:
        body = h(
            '{}<p class="empty">No known source: the app was not built from a git repository '
            "yet.</p>{}",
            alert,
            cli,
        )
    else:
        fields = h(
            '<label for="deploy-branch">Branch</label><input id="deploy-branch" name="branch" '
            'required maxlength="255" value="{}" autocomplete="off" spellcheck="false"'
            "{}>",
            branch if branch is not None else source.branch,
            Html(' aria-invalid="true" aria-describedby="deploy-error"') if error else "",
        )
        body = h(
            "<p>From <code>{}</code>{}. You confirm the commit before it builds; its output "
            "streams on the build's page.</p>{}{}",
            source.url,
            " (the connected pipeline's)" if source.via == "pipeline" else "",
            alert,
            form(f"{ROOT}/apps/{app}/deploy", csrf, fields, label="Deploy branch…", cls="inline"),
        )
    return h('<section id="deploy"><h2>Deploy a branch</h2>{}</section>', body)
