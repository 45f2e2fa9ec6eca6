"""The CNB build Job: a valid Kubernetes manifest that runs creator the way the platform needs."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from control.builds.cnb import (
    Outcome,
    build_job,
    cache_hit_from_log,
    digest_from_log,
    digest_from_report,
    order_toml,
    outcome,
    process_command,
    release_ref,
    started,
)
from control.builds.errors import BuildError
from control.builds.settings import CNBSettings

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"
DIGEST = "sha256:" + "ab" * 32
# Kubernetes versions whose schemas the Job must satisfy: oldest and newest we claim.
VERSIONS = ("1.28.0", "1.33.0")


def _job(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "git_url": "https://github.com/octo/demo.git",
        "commit": SHA,
        "settings": CNBSettings(registry="registry.example.test:5000"),
    }
    kwargs.update(overrides)
    return build_job("demo", "a1b2c3", **kwargs)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_build_job_is_a_valid_strict_kubernetes_manifest(version: str) -> None:
    kubernetes_validate.validate(_job(), version, strict=True)
    with_everything = _job(
        settings=CNBSettings(run_image="paketobuildpacks/run-jammy-base"),
        buildpacks=("paketo-buildpacks/python@2.1.0", "paketo-buildpacks/procfile"),
    )
    kubernetes_validate.validate(with_everything, version, strict=True)


def test_creator_runs_from_the_builder_image_with_app_cache_image_and_the_app_image_last() -> None:
    job = _job()
    pod = job["spec"]["template"]["spec"]
    creator = pod["containers"][0]

    assert creator["image"] == "paketobuildpacks/builder-jammy-base"
    assert creator["command"] == ["/cnb/lifecycle/creator"]
    assert "-app=/workspace" in creator["args"]
    assert "-cache-image=registry.example.test:5000/demo:build-cache" in creator["args"]
    assert creator["args"][-1] == "registry.example.test:5000/demo:a1b2c3"
    assert not any(arg.startswith("-run-image") for arg in creator["args"])
    assert not any(arg.startswith("-order") for arg in creator["args"])
    assert {"name": "DOCKER_CONFIG", "value": "/docker-config"} in creator["env"]
    assert creator["terminationMessagePath"] == "/layers/report.toml"
    assert "-report=/layers/report.toml" in creator["args"]


def test_registry_credentials_come_from_the_secret_mounted_as_docker_config() -> None:
    pod = _job(settings=CNBSettings(registry_secret="regcred"))["spec"]["template"]["spec"]

    volume = next(v for v in pod["volumes"] if v["name"] == "docker-config")
    assert volume["secret"] == {
        "secretName": "regcred",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "docker-config")
    assert mount == {"name": "docker-config", "mountPath": "/docker-config", "readOnly": True}


class TestTheInClusterRegistry:
    """The chart's in-cluster registry: pushed to by its Service name over plain HTTP,
    with no credentials; pulled by the nodes as localhost:5000 through the node proxy."""

    SETTINGS = CNBSettings(
        registry="slipway-registry.slipway.svc:5000",
        pull_registry="localhost:5000",
        insecure_registry=True,
        registry_secret=None,
    )

    def test_creator_may_use_plain_http_to_the_push_registry_s_host_only(self) -> None:
        creator = _job(settings=self.SETTINGS)["spec"]["template"]["spec"]["containers"][0]
        assert {
            "name": "CNB_INSECURE_REGISTRIES",
            "value": "slipway-registry.slipway.svc:5000",
        } in (creator["env"])
        # creator (platform API 0.12) exits on a flag it does not define: the variable it is.
        assert not any(a.startswith("-insecure-registry") for a in creator["args"])
        assert creator["args"][-1] == "slipway-registry.slipway.svc:5000/demo:a1b2c3"
        assert "-cache-image=slipway-registry.slipway.svc:5000/demo:build-cache" in creator["args"]

    def test_a_registry_with_a_path_is_insecure_for_its_host_alone(self) -> None:
        settings = CNBSettings(registry="registry.internal:5000/team", insecure_registry=True)
        creator = _job(settings=settings)["spec"]["template"]["spec"]["containers"][0]
        insecure = [e["value"] for e in creator["env"] if e["name"] == "CNB_INSECURE_REGISTRIES"]
        assert insecure == ["registry.internal:5000"]

    def test_a_tls_registry_is_never_spoken_to_in_plain_http(self) -> None:
        creator = _job()["spec"]["template"]["spec"]["containers"][0]
        assert "CNB_INSECURE_REGISTRIES" not in {e["name"] for e in creator["env"]}

    def test_without_a_registry_secret_nothing_is_mounted_as_docker_config(self) -> None:
        """A Secret that does not exist would hold the pod in CreateContainerConfigError."""
        pod = _job(settings=self.SETTINGS)["spec"]["template"]["spec"]
        creator = pod["containers"][0]
        assert [v["name"] for v in pod["volumes"]] == ["workspace", "layers"]
        assert [m["name"] for m in creator["volumeMounts"]] == ["workspace", "layers"]
        assert "DOCKER_CONFIG" not in {e["name"] for e in creator["env"]}
        for version in VERSIONS:
            kubernetes_validate.validate(_job(settings=self.SETTINGS), version, strict=True)

    def test_the_release_runs_the_same_digest_under_the_pull_registry_s_name(self) -> None:
        assert release_ref(self.SETTINGS, "demo", DIGEST) == f"localhost:5000/demo@{DIGEST}"
        plain = CNBSettings(registry="ghcr.io/acme")
        assert release_ref(plain, "demo", DIGEST) == f"ghcr.io/acme/demo@{DIGEST}"


def test_an_init_container_fetches_the_commit_with_git_into_the_shared_workspace() -> None:
    pod = _job()["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]

    assert fetch["image"] == "alpine/git:2.45.2"
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["SOURCE_URL"] == "https://github.com/octo/demo.git"
    assert env["SOURCE_COMMIT"] == SHA
    # The URL and commit reach git as variables, never spliced into the script.
    assert SHA not in fetch["command"][2]
    assert 'git fetch -q --depth 1 -- "$SOURCE_URL" "$SOURCE_COMMIT"' in fetch["command"][2]
    assert env["GIT_ALLOW_PROTOCOL"] == "file:git:http:https:ssh"
    assert {"name": "workspace", "mountPath": "/workspace"} in fetch["volumeMounts"]


def test_an_app_tokens_source_is_fetched_over_https_and_ssh_only() -> None:
    fetch = _job(tenant=True)["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["GIT_ALLOW_PROTOCOL"] == "https:ssh"


def test_a_tenants_fetch_gets_the_pinned_configuration() -> None:
    git_env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.followRedirects"}
    fetch = _job(tenant=True, git_env=git_env)["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env.items() >= git_env.items()


def test_a_run_image_and_per_app_buildpacks_are_passed_to_creator() -> None:
    job = _job(
        settings=CNBSettings(run_image="paketobuildpacks/run-jammy-base"),
        buildpacks=("paketo-buildpacks/python@2.1.0", "paketo-buildpacks/procfile"),
    )
    pod = job["spec"]["template"]["spec"]

    assert "-run-image=paketobuildpacks/run-jammy-base" in pod["containers"][0]["args"]
    assert "-order=/layers/order.toml" in pod["containers"][0]["args"]
    env = {e["name"]: e["value"] for e in pod["initContainers"][0]["env"]}
    assert env["ORDER_TOML"] == order_toml(
        ["paketo-buildpacks/python@2.1.0", "paketo-buildpacks/procfile"]
    )


def test_the_order_file_lists_the_buildpacks_as_one_group_in_order() -> None:
    assert order_toml(["paketo-buildpacks/python@2.1.0", "paketo-buildpacks/procfile"]) == (
        "[[order]]\n\n"
        '[[order.group]]\nid = "paketo-buildpacks/python"\nversion = "2.1.0"\n\n'
        '[[order.group]]\nid = "paketo-buildpacks/procfile"\n'
    )


def test_the_job_fails_once_is_bounded_in_time_and_labelled_for_its_app_and_build() -> None:
    job = _job(settings=CNBSettings(namespace="builds", active_deadline=600))

    assert job["metadata"]["name"] == "build-demo-a1b2c3"
    assert job["metadata"]["namespace"] == "builds"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["slipway.dev/app"] == "demo"
    assert labels["slipway.dev/build"] == "a1b2c3"
    assert labels["slipway.dev/source"] == "build"  # the logs service files its output so


def test_a_long_app_name_still_gives_a_job_name_within_the_label_limit() -> None:
    job = build_job(
        "a" * 63, "b" * 20, git_url="https://x.test/r.git", commit=SHA, settings=CNBSettings()
    )
    assert len(job["metadata"]["name"]) <= 63
    kubernetes_validate.validate(job, VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"commit": "main; rm -rf /"}, "is not a hexadecimal sha"),
        ({"buildpacks": ("paketo buildpacks",)}, "is not an id or id@version"),
    ],
)
def test_bad_commits_and_buildpack_references_are_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(BuildError, match=message):
        _job(**kwargs)


def test_bad_app_names_and_build_ids_are_refused() -> None:
    settings = CNBSettings()
    with pytest.raises(BuildError, match="app name 'Demo'"):
        build_job("Demo", "a1", git_url="u", commit=SHA, settings=settings)
    with pytest.raises(BuildError, match="build id 'A_1'"):
        build_job("demo", "A_1", git_url="u", commit=SHA, settings=settings)


def test_the_digest_is_read_from_creators_report() -> None:
    report = (
        "[image]\n"
        'tags = ["registry.example.test:5000/demo:a1b2c3"]\n'
        f'digest = "{DIGEST}"\n'
        "manifest-size = 1083\n\n"
        '[build]\n[[build.bom]]\nname = "dependencies"\n'
    )
    assert digest_from_report(report) == DIGEST


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ("[image\n", "not TOML"),
        ('[image]\ntags = ["x"]\n', "has no image digest"),
        ('[image]\ndigest = "md5:00"\n', "has no image digest"),
    ],
)
def test_a_report_without_a_digest_is_an_error(report: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        digest_from_report(report)


def test_the_digest_is_read_from_creators_log_output() -> None:
    lines = [
        "===> EXPORTING",
        "Adding layer 'paketo-buildpacks/cpython:cpython'",
        "Saving registry.example.test:5000/demo:a1b2c3...",
        "*** Images (sha256:" + "cd" * 32 + "):",
        "      registry.example.test:5000/demo:a1b2c3",
        f"*** Digest: {DIGEST}",
    ]
    assert digest_from_log(lines) == DIGEST


def test_log_output_without_an_export_is_an_error() -> None:
    with pytest.raises(BuildError, match="no '\\*\\*\\* Digest:' line"):
        digest_from_log(["===> DETECTING", "ERROR: No buildpack groups passed detection."])


def test_a_procfile_type_runs_as_its_cnb_launcher_process() -> None:
    assert process_command("web") == ["/cnb/process/web"]
    assert process_command("release_task") == ["/cnb/process/release_task"]


@pytest.mark.parametrize("name", ["", "../../bin/sh", "web worker"])
def test_a_process_type_that_is_not_a_procfile_name_has_no_command(name: str) -> None:
    with pytest.raises(BuildError, match="is not a Procfile name"):
        process_command(name)


def test_the_fetch_container_refuses_a_source_without_a_procfile_and_sends_it_back() -> None:
    fetch = _job()["spec"]["template"]["spec"]["initContainers"][0]
    script = fetch["command"][2]
    assert "if [ ! -f Procfile ]" in script
    assert "cp Procfile /dev/termination-log" in script
    assert fetch["terminationMessagePath"] == "/dev/termination-log"
    assert fetch["terminationMessagePolicy"] == "File"


def _pod(phase: str, fetch: dict[str, Any], creator: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "build-demo-a1b2c3-x7k2p"},
        "status": {
            "phase": phase,
            "initContainerStatuses": [{"name": "fetch-source", "image": "alpine/git"} | fetch],
            "containerStatuses": [{"name": "creator", "image": "paketo"} | creator],
        },
    }


def _state(**state: Any) -> dict[str, Any]:
    return {"state": state}


RUNNING = _state(running={})
WAITING = _state(waiting={"reason": "PodInitializing"})
FETCHED = _state(terminated={"exitCode": 0, "message": "web: gunicorn app:app\n"})


def _job_with(kind: str, reason: str, message: str = "m") -> dict[str, Any]:
    condition = {"type": kind, "status": "True", "reason": reason, "message": message}
    return {"status": {"conditions": [condition]}}


def test_a_build_in_progress_has_no_outcome_and_its_started_containers_have_logs() -> None:
    pod = _pod("Pending", FETCHED, RUNNING)
    assert outcome(None, None) is None
    assert outcome({"status": {}}, _pod("Pending", RUNNING, WAITING)) is None
    assert outcome(None, pod) is None
    assert started(pod, "fetch-source")
    assert started(pod, "creator")
    assert not started(_pod("Pending", RUNNING, WAITING), "creator")


def test_creator_s_clean_exit_carries_the_report_and_the_fetched_procfile() -> None:
    done = _state(terminated={"exitCode": 0, "message": "[image]\n"})
    assert outcome(None, _pod("Succeeded", FETCHED, done)) == Outcome(
        report="[image]\n", procfile="web: gunicorn app:app\n"
    )


def test_a_failed_container_says_which_and_its_exit_status() -> None:
    fetch_failed = _state(terminated={"exitCode": 128, "reason": "Error"})
    assert outcome(None, _pod("Failed", fetch_failed, WAITING)) == Outcome(
        failure="fetching the source failed (exit status 128, Error)"
    )
    oom = _state(terminated={"exitCode": 137, "reason": "OOMKilled"})
    assert outcome(None, _pod("Failed", FETCHED, oom)) == Outcome(
        failure="creator failed (exit status 137, OOMKilled)"
    )


def test_an_image_that_cannot_be_pulled_fails_now_and_leaves_the_job_to_delete() -> None:
    pull = _state(waiting={"reason": "ImagePullBackOff", "message": "not found"})
    end = outcome(None, _pod("Pending", FETCHED, pull))
    assert end == Outcome(
        failure="creator cannot start: ImagePullBackOff for paketo: not found", finished=False
    )


def test_the_job_s_conditions_wait_for_the_pod_unless_the_deadline_passed() -> None:
    running = _pod("Running", FETCHED, RUNNING)
    # The pod's own end is on its way by the other watch: wait for it.
    assert outcome(_job_with("Failed", "BackoffLimitExceeded"), running) is None
    assert outcome(_job_with("Complete", ""), running) is None
    deadline = outcome(_job_with("Failed", "DeadlineExceeded", "too long"), running)
    assert deadline == Outcome(
        failure="the build Job failed: DeadlineExceeded: too long", by_job=True
    )
    gone = outcome(_job_with("Complete", ""), None)
    assert gone is not None
    assert gone.by_job
    assert gone.failure == "the build Job completed but its pod's status is gone"


def test_cache_reuse_is_read_from_creator_s_log() -> None:
    assert cache_hit_from_log(["Reusing cache layer 'paketo-buildpacks/pip-install:cache'"])
    assert cache_hit_from_log(['Restoring data for "paketo-buildpacks/cpython:cpython" from cache'])
    assert not cache_hit_from_log(["Adding cache layer 'paketo-buildpacks/pip-install:cache'"])
