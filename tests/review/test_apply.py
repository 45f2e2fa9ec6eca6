"""ControlReviewApps: plans carried out on a real control plane, builder and add-on servers.

The release target records deployments (processes are the e2e test's
business); builds are real, of apps that install nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from control.building import Builds
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.settings import BuildSettings
from control.review.appjson import parse_app_json
from control.review.apply import ControlReviewApps
from control.review.github import Ignored, parse_event
from control.review.plan import Pipeline, plan_event
from control.service import Control
from control.store.db import Store
from tests.builds.apps import RecordingSink, commit, python_app
from tests.control.conftest import shared_provisioners
from tests.control.targets import RecordingTarget
from tests.review.payloads import pull_request, push

PIPELINE = Pipeline(name="shop", domain="review.test", staging_app="shop-staging")
#: Bound on a plan with one build of an app that installs nothing.
SETTLE = 30.0


@dataclass
class Setup:
    control: Control
    review: ControlReviewApps
    target: RecordingTarget
    sink: RecordingSink
    repo: Path

    async def run(self, payload: dict[str, object], app_json: str | None, event: str = "") -> None:
        parsed = parse_event(event or "pull_request", payload)
        assert not isinstance(parsed, Ignored)
        config = parse_app_json(app_json) if app_json is not None else None
        await self.review.apply(plan_event(parsed, PIPELINE, config))
        await asyncio.wait_for(self.review.idle(), SETTLE)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    sink = RecordingSink()
    target = RecordingTarget()
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/state.db")
    control = Control(
        store=store,
        target=target,
        provisioners=shared_provisioners(),
    )
    await control.start()
    builder = LocalBuilder(
        BuildSettings(root=tmp_path / "builds", pip_args=("--no-index",), timeout=SETTLE),
        sink=sink,
        metrics=BuildMetrics(CollectorRegistry()),
    )
    builds = Builds(control, builder=builder, sink=sink)
    review = ControlReviewApps(control, builds, sink=sink)
    try:
        yield Setup(control, review, target, sink, tmp_path / "repo")
    finally:
        await review.close()
        await builds.close()
        async with store.tx(write=False) as tx:
            leftovers = await tx.all_addons()
        for addon in leftovers:
            await control.provisioners[addon.service].destroy(addon.resource)
        await store.close()


APP_JSON = """{
  "env": {"SECRET_KEY": {"generator": "secret"}, "MODE": "prod"},
  "environments": {"review": {
    "env": {"MODE": "review"},
    "addons": [{"plan": "redis:shared", "as": "CACHE"}],
    "scripts": {"postdeploy": "echo seeded with $MODE"}
  }}
}"""


class TestCreatingAndUpdating:
    async def test_opening_makes_the_app_with_its_env_addons_domain_and_postdeploy(
        self, setup: Setup
    ) -> None:
        sha = commit(setup.repo, python_app(deps=False))
        await setup.run(
            pull_request("opened", 3, head_sha=sha, clone_url=str(setup.repo)), APP_JSON
        )
        config = await setup.control.config("shop-pr-3")
        assert config["MODE"] == "review"
        assert len(config["SECRET_KEY"]) == 64
        assert config["CACHE_URL"].startswith("redis://")
        domains = await setup.control.list_domains("shop-pr-3")
        assert [d.hostname for d in domains] == ["pr-3.review.test"]
        assert ("shop-pr-3", "release", "postdeploy", "seeded with review") in [
            line[:4] for line in setup.sink.lines
        ]
        deployed = setup.target.deployments[-1]
        assert (deployed.app, deployed.hosts) == ("shop-pr-3", ["pr-3.review.test"])
        assert [(f.type, f.idle_after) for f in deployed.formation] == [
            ("web", 300.0), ("worker", 300.0),
        ]  # fmt: skip

    async def test_a_push_keeps_the_config_someone_changed_and_does_not_seed_again(
        self, setup: Setup
    ) -> None:
        first = commit(setup.repo, python_app(deps=False))
        opened = pull_request("opened", 3, head_sha=first, clone_url=str(setup.repo))
        await setup.run(opened, APP_JSON)
        secret = (await setup.control.config("shop-pr-3"))["SECRET_KEY"]
        await setup.control.update_config("shop-pr-3", {"MODE": "by hand"}, actor="me")
        second = commit(setup.repo, {"app.py": "print('v2')\n"}, "v2")
        pushed = pull_request("synchronize", 3, head_sha=second, clone_url=str(setup.repo))
        await setup.run(pushed, APP_JSON)
        config = await setup.control.config("shop-pr-3")
        assert (config["MODE"], config["SECRET_KEY"]) == ("by hand", secret)
        seeds = [line for line in setup.sink.lines if line[2] == "postdeploy"]
        assert len(seeds) == 1
        assert len(await setup.control.list_addons("shop-pr-3")) == 1

    async def test_a_failed_build_stops_the_plan_before_release_and_postdeploy(
        self, setup: Setup
    ) -> None:
        sha = commit(setup.repo, {"README": "no Procfile\n"})
        await setup.run(
            pull_request("opened", 4, head_sha=sha, clone_url=str(setup.repo)), APP_JSON
        )
        app = await setup.control.get_app("shop-pr-4")
        assert app.current_release is not None
        assert (await setup.control.get_release("shop-pr-4", app.current_release)).artifact is None
        assert [line for line in setup.sink.lines if line[2] == "postdeploy"] == []
        assert setup.target.deployments == []

    async def test_one_app_s_plans_run_in_the_order_they_came(self, setup: Setup) -> None:
        first = commit(setup.repo, python_app(deps=False))
        second = commit(setup.repo, {"app.py": "print('v2')\n"}, "v2")
        url = str(setup.repo)
        for action, sha in (("opened", first), ("synchronize", second)):
            event = parse_event(
                "pull_request", pull_request(action, 5, head_sha=sha, clone_url=url)
            )
            await setup.review.apply(plan_event(event, PIPELINE, None))  # type: ignore[arg-type]
        await asyncio.wait_for(setup.review.idle(), SETTLE)
        builds = await setup.review.builds.list("shop-pr-5")
        assert [b.commit for b in builds] == [first, second]
        app = await setup.control.get_app("shop-pr-5")
        assert app.current_release == builds[1].release


class TestDestroyingAndStaging:
    async def test_closing_runs_predestroy_then_removes_app_and_addons(self, setup: Setup) -> None:
        sha = commit(setup.repo, python_app(deps=False))
        url = str(setup.repo)
        app_json = '{"addons": ["postgres"], "scripts": {"pr-predestroy": "echo bye"}}'
        await setup.run(pull_request("opened", 6, head_sha=sha, clone_url=url), app_json)
        assert len(await setup.control.list_addons("shop-pr-6")) == 1
        await setup.run(pull_request("closed", 6, head_sha=sha, clone_url=url), app_json)
        assert await setup.control.list_apps(after=None, limit=10) == []
        assert ("shop-pr-6", "release", "pr-predestroy", "bye") in [
            line[:4] for line in setup.sink.lines
        ]
        # A second close (GitHub redelivers, or the app was stale): nothing left, no error.
        await setup.run(pull_request("closed", 6, head_sha=sha, clone_url=url), app_json)

    async def test_a_push_to_the_default_branch_deploys_the_staging_app(self, setup: Setup) -> None:
        await setup.control.create_app("shop-staging", actor="me")
        sha = commit(setup.repo, python_app(deps=False))
        await setup.run(push(after=sha, clone_url=str(setup.repo)), None, event="push")
        builds = await setup.review.builds.list("shop-staging")
        assert [(b.commit, b.status.value) for b in builds] == [(sha, "succeeded")]
        assert setup.target.deployments[-1].app == "shop-staging"
