"""Config vars, releases, rollback, formation and dynos over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.control.conftest import Api

PROCFILE = {"web": "python -m http.server $PORT", "worker": "python worker.py"}


@pytest.fixture
async def shop(api: Api, tmp_path: Path) -> str:
    await api.call("POST", "/apps", json={"name": "shop"})
    status, body, _ = await api.call(
        "POST", "/apps/shop/releases", json={"artifact": str(tmp_path), "procfile": PROCFILE}
    )
    assert status == 201, body
    return "shop"


class TestConfigVars:
    async def test_patch_sets_and_null_unsets_as_heroku_does(self, api: Api, shop: str) -> None:
        status, config, headers = await api.call(
            "PATCH", "/apps/shop/config-vars", json={"A": "1", "B": "2"}
        )
        assert (status, config, headers["Release-Version"]) == (200, {"A": "1", "B": "2"}, "3")
        status, config, _ = await api.call("PATCH", "/apps/shop/config-vars", json={"A": None})
        assert (status, config) == (200, {"B": "2"})
        assert (await api.call("GET", "/apps/shop/config-vars"))[1] == {"B": "2"}

    async def test_every_config_change_is_a_release_with_a_snapshot(
        self, api: Api, shop: str
    ) -> None:
        await api.call("PATCH", "/apps/shop/config-vars", json={"A": "1"})
        await api.call("PATCH", "/apps/shop/config-vars", json={"A": None, "B": "2"})
        _, releases, _ = await api.call("GET", "/apps/shop/releases")
        assert [(r["version"], r["description"], r["config_var_names"]) for r in releases] == [
            (1, "Initial release", []),
            (2, f"Deploy {api.targets_dir.parent}", []),
            (3, "Set A config vars", ["A"]),
            (4, "Set B config vars; Remove A config vars", ["B"]),
        ]
        assert api.target.deployments[-1].env == {"B": "2"}

    async def test_releases_do_not_show_config_values(self, api: Api, shop: str) -> None:
        await api.call("PATCH", "/apps/shop/config-vars", json={"SECRET": "hunter2"})
        _, releases, _ = await api.call("GET", "/apps/shop/releases")
        assert "hunter2" not in str(releases)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"1BAD": "x"}, "config var name '1BAD' is invalid"),
            ({"A-B": "x"}, "config var name 'A-B' is invalid"),
            ({"A": 1}, "the value of A must be a string or null"),
            ({}, "send an object of NAME -> value"),
        ],
    )
    async def test_bad_config_is_refused_with_the_reason(
        self, api: Api, shop: str, body: dict[str, object], message: str
    ) -> None:
        status, error, _ = await api.call("PATCH", "/apps/shop/config-vars", json=body)
        assert status == 422
        assert message in error["message"]

    async def test_config_past_32_kib_is_refused_and_nothing_is_released(
        self, api: Api, shop: str
    ) -> None:
        await api.call("PATCH", "/apps/shop/config-vars", json={"A": "x" * 20000})
        status, error, _ = await api.call(
            "PATCH", "/apps/shop/config-vars", json={"B": "y" * 20000}
        )
        assert (status, error["id"]) == (422, "config_too_large")
        assert "the limit is 32768" in error["message"]
        _, releases, _ = await api.call("GET", "/apps/shop/releases")
        assert len(releases) == 3


class TestDeploysAndRollback:
    async def test_a_deploy_becomes_the_current_release(self, api: Api, shop: str) -> None:
        _, release, _ = await api.call("GET", "/apps/shop/releases/v2")
        assert (release["status"], release["current"], release["procfile"]) == (
            "succeeded",
            True,
            PROCFILE,
        )
        deployed = api.target.deployments[-1]
        assert (deployed.version, dict(deployed.processes)) == (2, PROCFILE)

    async def test_rollback_is_a_new_release_from_an_old_ones_artifact_and_config(
        self, api: Api, shop: str, tmp_path: Path
    ) -> None:
        await api.call("PATCH", "/apps/shop/config-vars", json={"COLOR": "blue"})  # v3
        newer = tmp_path / "newer"
        newer.mkdir()
        await api.call(
            "POST", "/apps/shop/releases", json={"artifact": str(newer), "procfile": {"web": "x"}}
        )  # v4
        await api.call("PATCH", "/apps/shop/config-vars", json={"COLOR": "red"})  # v5
        status, release, _ = await api.call("POST", "/apps/shop/releases", json={"release": 3})
        assert (status, release["version"], release["description"]) == (201, 6, "Rollback to v3")
        deployed = api.target.deployments[-1]
        assert (deployed.artifact, dict(deployed.env)) == (str(tmp_path), {"COLOR": "blue"})
        assert (await api.call("GET", "/apps/shop/config-vars"))[1] == {"COLOR": "blue"}
        _, app, _ = await api.call("GET", "/apps/shop")
        assert app["current_release"] == 6

    async def test_a_failing_release_command_stops_the_release(
        self, api: Api, shop: str, tmp_path: Path
    ) -> None:
        procfile = {**PROCFILE, "release": "echo migrating; exit 3"}
        status, error, _ = await api.call(
            "POST", "/apps/shop/releases", json={"artifact": str(tmp_path), "procfile": procfile}
        )
        assert status == 422
        assert error["id"] == "release_failed"
        assert error["message"] == "the release command of v3 failed; v2 keeps running"
        assert "migrating" in error["output"]
        assert "exited with code 3" in error["output"]
        _, app, _ = await api.call("GET", "/apps/shop")
        assert app["current_release"] == 2
        assert [d.version for d in api.target.deployments] == [2]
        _, release, _ = await api.call("GET", "/apps/shop/releases/3")
        assert (release["status"], release["current"]) == ("failed", False)

    async def test_a_config_change_whose_release_fails_changes_nothing(
        self, api: Api, tmp_path: Path
    ) -> None:
        await api.call("POST", "/apps", json={"name": "shop"})
        procfile = {"web": "x", "release": 'test "$FAIL" != yes'}
        await api.call(
            "POST", "/apps/shop/releases", json={"artifact": str(tmp_path), "procfile": procfile}
        )
        status, error, _ = await api.call("PATCH", "/apps/shop/config-vars", json={"FAIL": "yes"})
        assert (status, error["id"]) == (422, "release_failed")
        assert (await api.call("GET", "/apps/shop/config-vars"))[1] == {}

    async def test_the_release_command_sees_the_new_config(
        self, api: Api, shop: str, tmp_path: Path
    ) -> None:
        await api.call("PATCH", "/apps/shop/config-vars", json={"GREETING": "hello"})
        procfile = {**PROCFILE, "release": 'echo "release saw $GREETING"'}
        status, release, _ = await api.call(
            "POST", "/apps/shop/releases", json={"artifact": str(tmp_path), "procfile": procfile}
        )
        assert status == 201
        assert release["output"].strip() == "release saw hello"

    async def test_rolling_back_to_a_failed_release_is_refused(
        self, api: Api, shop: str, tmp_path: Path
    ) -> None:
        await api.call(
            "POST",
            "/apps/shop/releases",
            json={"artifact": str(tmp_path), "procfile": {"web": "x", "release": "false"}},
        )
        status, error, _ = await api.call("POST", "/apps/shop/releases", json={"release": 3})
        assert (status, error["id"]) == (422, "release_not_succeeded")

    async def test_rolling_back_to_a_missing_release_is_not_found(
        self, api: Api, shop: str
    ) -> None:
        status, error, _ = await api.call("POST", "/apps/shop/releases", json={"release": 99})
        assert (status, error["message"]) == (404, "shop has no release v99")

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"release": "v2"}, "release must be a release version number"),
            ({"release": 0}, "release must be a release version number"),
            ({"procfile": {"web": "x"}}, "artifact must be a string of 1-1000 characters"),
            ({"artifact": "/x"}, "procfile must be a non-empty object"),
            ({"artifact": "/x", "procfile": {"Web": "x"}}, "process type 'Web' is invalid"),
            ({"artifact": "/x", "procfile": {"web": " "}}, "must be a non-empty string"),
        ],
    )
    async def test_a_bad_release_request_is_refused_with_the_reason(
        self, api: Api, shop: str, body: dict[str, object], message: str
    ) -> None:
        status, error, _ = await api.call("POST", "/apps/shop/releases", json=body)
        assert status == 422
        assert message in error["message"]

    async def test_a_bad_version_in_the_path_is_a_bad_request(self, api: Api, shop: str) -> None:
        status, error, _ = await api.call("GET", "/apps/shop/releases/latest")
        assert (status, error["id"]) == (400, "bad_request")


class TestFormation:
    async def test_a_deploy_makes_web_one_and_other_types_zero(self, api: Api, shop: str) -> None:
        _, formation, _ = await api.call("GET", "/apps/shop/formation")
        assert [
            (f["type"], f["quantity"], f["idle_after"], f["never_sleep"]) for f in formation
        ] == [
            ("web", 1, 300.0, False),
            ("worker", 0, 300.0, False),
        ]

    async def test_scaling_updates_the_formation_and_the_runtime(self, api: Api, shop: str) -> None:
        status, formation, _ = await api.call(
            "PATCH",
            "/apps/shop/formation",
            json={"updates": [{"type": "web", "quantity": 2}, {"type": "worker", "quantity": 1}]},
        )
        assert status == 200
        assert [(f["type"], f["quantity"]) for f in formation] == [("web", 2), ("worker", 1)]
        assert [(app, f.type, f.quantity) for app, f in api.target.scaled] == [
            ("shop", "web", 2),
            ("shop", "worker", 1),
        ]

    async def test_the_idle_policy_is_set_per_process_type(self, api: Api, shop: str) -> None:
        status, web, _ = await api.call(
            "PATCH",
            "/apps/shop/formation/web",
            json={"idle_after": 60, "min_scale": 1, "max_scale": 4, "never_sleep": True},
        )
        assert status == 200
        assert (web["idle_after"], web["min_scale"], web["max_scale"], web["never_sleep"]) == (
            60.0,
            1,
            4,
            True,
        )

    async def test_a_size_is_set_per_process_type_and_reaches_the_target(
        self, api: Api, shop: str
    ) -> None:
        _, formation, _ = await api.call("GET", "/apps/shop/formation")
        assert [f["size"] for f in formation] == ["standard-1x", "standard-1x"]
        status, web, _ = await api.call(
            "PATCH", "/apps/shop/formation/web", json={"size": "Performance-M"}
        )
        assert (status, web["size"]) == (200, "performance-m")
        status, _, _ = await api.call(
            "PATCH", "/apps/shop/formation/worker", json={"size": "768MB,2cpu"}
        )
        _, formation, _ = await api.call("GET", "/apps/shop/formation")
        assert [(f["type"], f["size"]) for f in formation] == [
            ("web", "performance-m"),
            ("worker", "768mb,2cpu"),
        ]
        assert [(f.type, f.size) for _, f in api.target.scaled] == [
            ("web", "performance-m"),
            ("worker", "768mb,2cpu"),
        ]

    async def test_a_redeploy_keeps_the_formation_and_drops_removed_types(
        self, api: Api, shop: str, tmp_path: Path
    ) -> None:
        await api.call("PATCH", "/apps/shop/formation/web", json={"quantity": 3})
        await api.call(
            "POST",
            "/apps/shop/releases",
            json={"artifact": str(tmp_path), "procfile": {"web": "x"}},
        )
        _, formation, _ = await api.call("GET", "/apps/shop/formation")
        assert [(f["type"], f["quantity"]) for f in formation] == [("web", 3)]

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"quantity": -1}, "quantity must be an integer from 0 to 100"),
            ({"quantity": 101}, "quantity must be an integer from 0 to 100"),
            ({"quantity": "2"}, "quantity must be an integer from 0 to 100"),
            ({"quantity": True}, "quantity must be an integer from 0 to 100"),
            ({"idle_after": 0}, "idle_after must be a number of seconds"),
            ({"min_scale": 3, "max_scale": 2}, "min_scale must not exceed max_scale"),
            ({"quantity": 5, "max_scale": 2}, "quantity 5 exceeds max_scale 2"),
            ({"never_sleep": "yes"}, "never_sleep must be true or false"),
            ({"size": "large"}, "size 'large' is unknown: use one of eco, basic, standard-1x"),
            ({"size": "10MB"}, "memory must be 64MB to 65536MB"),
            ({"size": "1GB,100cpu"}, "cpu must be 0.1 to 32 cores"),
            ({"size": 512}, "size must be a string"),
            ({"size": None}, "size must be a string: one of eco"),
            ({"sizes": "eco"}, "unknown fields: sizes"),
        ],
    )
    async def test_a_bad_formation_is_refused_with_the_reason(
        self, api: Api, shop: str, body: dict[str, object], message: str
    ) -> None:
        status, error, _ = await api.call("PATCH", "/apps/shop/formation/web", json=body)
        assert status == 422
        assert message in error["message"]
        assert api.target.scaled == []

    async def test_scaling_an_unknown_process_type_is_not_found(self, api: Api, shop: str) -> None:
        status, error, _ = await api.call(
            "PATCH", "/apps/shop/formation/clock", json={"quantity": 1}
        )
        assert (status, error["id"]) == (404, "process_not_found")

    async def test_a_batch_needs_updates(self, api: Api, shop: str) -> None:
        status, error, _ = await api.call("PATCH", "/apps/shop/formation", json={"updates": []})
        assert status == 422
        assert "non-empty list" in error["message"]


class TestDynos:
    async def test_dynos_report_the_runtimes_view(self, api: Api, shop: str) -> None:
        status, dynos, _ = await api.call("GET", "/apps/shop/dynos")
        assert status == 200
        assert [(d["name"], d["state"], d["release"]["version"]) for d in dynos] == [
            ("web.1", "up", 2)
        ]

    async def test_restart_all_or_one_type(self, api: Api, shop: str) -> None:
        assert (await api.call("DELETE", "/apps/shop/dynos"))[0] == 202
        assert (await api.call("DELETE", "/apps/shop/dynos/web"))[0] == 202
        assert api.target.restarts == [("shop", None), ("shop", "web")]

    async def test_restarting_an_unknown_type_is_not_found(self, api: Api, shop: str) -> None:
        status, error, _ = await api.call("DELETE", "/apps/shop/dynos/clock")
        assert (status, error["id"]) == (404, "process_not_found")
        assert api.target.restarts == []

    async def test_deleting_an_app_stops_its_processes(self, api: Api, shop: str) -> None:
        await api.call("DELETE", "/apps/shop")
        assert api.target.forgotten == ["shop"]

    async def test_renaming_an_app_moves_its_processes_to_the_new_name(
        self, api: Api, shop: str
    ) -> None:
        await api.call("PATCH", "/apps/shop", json={"name": "store"})
        assert api.target.forgotten == ["shop"]
        assert api.target.deployments[-1].app == "store"
