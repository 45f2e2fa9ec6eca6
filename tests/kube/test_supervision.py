"""``slipway serve agent --runtime kubernetes`` stops (exit 1, a line naming the task) when a
watch or the leader election dies of a bug: a frozen view of the cluster, or a Lease nobody
renews while the replica still believes it leads, must not go on quietly."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import free_port
from tests.faults import slipway_with_fault
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import write_kubeconfig
from tests.kube.test_serve import kube_env


def agent_env(apiserver: ApiServer, tmp_path: Path) -> dict[str, str | None]:
    return {
        **kube_env("agent-supervised"),
        "KUBECONFIG": str(write_kubeconfig(apiserver, tmp_path / "kubeconfig")),
        "SLIPWAY_AGENT_RUNTIME": "kubernetes",
        "POD_IP": "127.0.0.1",
        "KUBERNETES_SERVICE_HOST": None,  # the kubeconfig, never a cluster this runs in
        "SLIPWAY_APPS": None,
    }


ARGS = ("serve", "agent", "--host=127.0.0.1")


async def test_an_agent_whose_cluster_watch_dies_exits_1_naming_it(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    died = await slipway_with_fault(
        "agent.kubernetes.watching:ResourceWatch.watch_once",
        *ARGS,
        f"--port={free_port()}",
        env=agent_env(apiserver, tmp_path),
        started="agent listening",
    )
    assert died.code == 1, died.stderr
    resources = ("deployments", "pods", "endpointslices")
    assert any(died.names(f"kube-watch-{r}") for r in resources), died.stderr


async def test_an_agent_whose_leader_election_dies_exits_1_naming_it(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    died = await slipway_with_fault(
        "agent.kubernetes.lease:Elector.step",
        *ARGS,
        f"--port={free_port()}",
        env=agent_env(apiserver, tmp_path),
    )
    assert died.code == 1, died.stderr
    assert died.names("kube-lease"), died.stderr
