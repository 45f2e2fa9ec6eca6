"""Where one-offs do not run in this process (an agent elsewhere, Kubernetes Jobs, no agent),
a terminal is refused at once with a 409 that says what to do, never a hanging socket."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from control.agent_target import AgentClient, AgentTarget
from control.detached import DetachedTarget
from control.releasing import ReleaseTarget
from tests.control.conftest import ADMIN_TOKEN, running_api
from tests.control.test_run_tty import terminal
from tests.helpers import TIMEOUT


@pytest.mark.parametrize("kind", ["agent elsewhere", "no agent"])
async def test_a_terminal_needs_the_embedded_runtime(kind: str, tmp_path: Path) -> None:
    client = AgentClient("http://127.0.0.1:1")
    target: ReleaseTarget = (
        AgentTarget(client, release_timeout=30)
        if kind == "agent elsewhere"
        else DetachedTarget(release_timeout=30)
    )
    db = f"sqlite+aiosqlite:///{tmp_path}/state.db"
    try:
        async with running_api(db, tmp_path, target=target) as api:
            assert (await api.call("POST", "/apps", json={"name": "kube"}))[0] == 201
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            timeout = aiohttp.ClientTimeout(total=TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{api.base}/apps/kube/dynos/tty", headers=auth)
            assert refused.value.status == 409
            # The same GET without the upgrade says why (what the CLI prints).
            status, error, _ = await api.call("GET", "/apps/kube/dynos/tty")
            assert (status, error["id"]) == (409, "tty_unsupported")
            assert "embedded runtime" in error["message"]
            assert "--no-tty" in error["message"]
    finally:
        await client.close()


async def test_the_cli_falls_back_to_output_only_unless_asked_for_a_terminal(
    tmp_path: Path,
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/state.db"
    async with running_api(db, tmp_path, target=DetachedTarget(release_timeout=30)) as api:
        assert (await api.call("POST", "/apps", json={"name": "plain"}))[0] == 201
        release = {"artifact": str(tmp_path), "procfile": {"web": "x"}}
        assert (await api.call("POST", "/apps/plain/releases", json=release))[0] == 201
        async with terminal(api.base, "plain", "sh", "-c", "'echo hi; tty; exit 6'") as term:
            assert await term.exit_code() == 6  # stdin is a terminal: tried, then output only
            await term.expect(r"running without one")
            await term.expect(r"hi\r\nnot a tty")
        async with terminal(api.base, "plain", "--tty", "sh") as term:
            assert await term.exit_code() == 1  # asked for one: told why not
            await term.expect(r"Error: an interactive run needs the embedded runtime")
