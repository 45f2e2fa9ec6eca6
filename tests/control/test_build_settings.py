"""Builds and review apps as SLIPWAY_* variables configure them."""

from __future__ import annotations

import pytest

from control.builds.egress import Egress, parse_allow
from control.builds.settings import CNBSettings
from control.settings import (
    BuildServerSettings,
    ReviewSettings,
    build_settings_from_env,
    review_settings_from_env,
)


def test_builds_need_a_root_and_read_durations_like_every_flag() -> None:
    assert build_settings_from_env({}) is None
    assert build_settings_from_env(
        {
            "SLIPWAY_BUILD_ROOT": "/var/slipway/builds",
            "SLIPWAY_BUILD_CONCURRENCY": "4",
            "SLIPWAY_BUILD_TIMEOUT": "20m",
            "SLIPWAY_LOGS_URL": "http://logs:8082",
        }
    ) == BuildServerSettings(
        root="/var/slipway/builds", concurrency=4, timeout=1200.0, logs_url="http://logs:8082"
    )


def test_tenants_sources_reach_inward_only_where_the_operator_allows() -> None:
    env = {"SLIPWAY_BUILD_ROOT": "/b"}
    settings = build_settings_from_env(env)
    assert settings is not None
    assert settings.egress == Egress()
    settings = build_settings_from_env(
        {**env, "SLIPWAY_SOURCES_ALLOW": "10.9.0.0/16, [fd00::1]:22"}
    )
    assert settings is not None
    assert settings.egress == Egress(allow=parse_allow("10.9.0.0/16 [fd00::1]:22"))
    with pytest.raises(ValueError, match="no network"):
        build_settings_from_env({**env, "SLIPWAY_SOURCES_ALLOW": "git.internal"})


@pytest.mark.parametrize(
    "env",
    [{}, {"SLIPWAY_GITHUB_WEBHOOK_SECRET": "s"}, {"SLIPWAY_REVIEW_DOMAIN": "review.example.com"}],
)
def test_review_apps_need_both_a_secret_and_a_domain(env: dict[str, str]) -> None:
    assert review_settings_from_env(env) is None


def test_review_apps_default_their_pipeline_and_staging_app() -> None:
    env = {"SLIPWAY_GITHUB_WEBHOOK_SECRET": "s", "SLIPWAY_REVIEW_DOMAIN": "review.example.com"}
    assert review_settings_from_env(env) == ReviewSettings(
        webhook_secret="s", pipeline="review", domain="review.example.com",
        staging_app="review-staging", stale_after_days=5.0,
    )  # fmt: skip
    env |= {
        "SLIPWAY_REVIEW_PIPELINE": "shop",
        "SLIPWAY_REVIEW_STAGING_APP": "shop-main",
        "SLIPWAY_REVIEW_STALE_DAYS": "2.5",
    }
    settings = review_settings_from_env(env)
    assert settings is not None
    assert (settings.pipeline, settings.staging_app, settings.stale_after_days) == (
        "shop", "shop-main", 2.5,
    )  # fmt: skip


def test_the_kubernetes_builder_reads_its_cnb_settings_and_needs_no_build_root() -> None:
    settings = build_settings_from_env(
        {
            "SLIPWAY_BUILDER": "kubernetes",
            "SLIPWAY_BUILD_TIMEOUT": "10m",
            "SLIPWAY_CNB_NAMESPACE": "slipway-builds",
            "SLIPWAY_CNB_BUILDER_IMAGE": "paketobuildpacks/builder-jammy-full",
            "SLIPWAY_CNB_REGISTRY": "ghcr.io/acme",
            "SLIPWAY_CNB_REGISTRY_SECRET": "ghcr",
            "SLIPWAY_CNB_RUN_IMAGE": "paketobuildpacks/run-jammy-full",
            "SLIPWAY_CNB_GIT_IMAGE": "alpine/git:2.47.1",
            "SLIPWAY_CNB_SERVICE_ACCOUNT": "builder",
        }
    )
    assert settings is not None
    assert (settings.root, settings.timeout) == (None, 600.0)
    assert settings.cnb == CNBSettings(
        namespace="slipway-builds",
        builder_image="paketobuildpacks/builder-jammy-full",
        registry="ghcr.io/acme",
        registry_secret="ghcr",
        run_image="paketobuildpacks/run-jammy-full",
        git_image="alpine/git:2.47.1",
        service_account="builder",
        active_deadline=600,
    )
    defaults = build_settings_from_env({"SLIPWAY_BUILDER": "kubernetes"})
    assert defaults is not None
    assert defaults.cnb == CNBSettings(active_deadline=900)
    local = build_settings_from_env({"SLIPWAY_BUILD_ROOT": "/b"})
    assert local is not None
    assert local.cnb is None


def test_the_in_cluster_registry_is_pushed_over_http_pulled_by_another_name_without_secret() -> (
    None
):
    settings = build_settings_from_env(
        {
            "SLIPWAY_BUILDER": "kubernetes",
            "SLIPWAY_CNB_REGISTRY": "slipway-registry.slipway.svc:5000",
            "SLIPWAY_CNB_PULL_REGISTRY": "localhost:5000",
            "SLIPWAY_CNB_INSECURE_REGISTRY": "true",
            "SLIPWAY_CNB_REGISTRY_SECRET": "",
        }
    )
    assert settings is not None
    assert settings.cnb is not None
    assert settings.cnb.registry == "slipway-registry.slipway.svc:5000"
    assert settings.cnb.pull_registry == "localhost:5000"
    assert settings.cnb.insecure_registry is True
    assert settings.cnb.registry_secret is None
    with pytest.raises(ValueError, match="SLIPWAY_CNB_INSECURE_REGISTRY must be true or false"):
        build_settings_from_env(
            {"SLIPWAY_BUILDER": "kubernetes", "SLIPWAY_CNB_INSECURE_REGISTRY": "yes"}
        )


def test_an_unknown_builder_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="SLIPWAY_BUILDER must be local or kubernetes"):
        build_settings_from_env({"SLIPWAY_BUILDER": "docker"})
