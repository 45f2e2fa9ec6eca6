"""Leader election: the pure decision, and two electors handing over through a real Lease."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from agent.kubernetes.errors import NotLeader
from agent.kubernetes.lease import Elector, LeaseRecord, Verdict, decide, leads, record_of
from agent.kubernetes.runtime import KubernetesRuntime
from agent.kubernetes.settings import KubeSettings
from tests.kube.apiserver import ApiServer
from tests.kube.conftest import NAMESPACE
from tests.kube.test_runtime import SPEC, settings

T0 = 1_700_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


# -- the decision ---------------------------------------------------------------------------------


def test_no_lease_is_acquired() -> None:
    verdict, record = decide(None, me="a", now=T0, duration=15)
    assert verdict is Verdict.ACQUIRE
    assert record == LeaseRecord("a", 15, T0, T0, 0)


def test_the_holder_renews_its_own_lease() -> None:
    held = LeaseRecord("a", 15, T0, T0, 2)
    verdict, record = decide(held, me="a", now=T0 + 5, duration=15)
    assert verdict is Verdict.RENEW
    assert record == LeaseRecord("a", 15, T0, T0 + 5, 2)


def test_a_live_lease_of_another_replica_is_followed() -> None:
    held = LeaseRecord("a", 15, T0, T0, 0)
    assert decide(held, me="b", now=T0 + 14.9, duration=15) == (Verdict.FOLLOW, None)


def test_an_expired_or_released_lease_is_taken_over_and_counted_as_a_transition() -> None:
    held = LeaseRecord("a", 15, T0, T0, 4)
    verdict, record = decide(held, me="b", now=T0 + 15, duration=15)
    assert verdict is Verdict.ACQUIRE
    assert record == LeaseRecord("b", 15, T0 + 15, T0 + 15, 5)
    released = LeaseRecord(None, 15, T0, None, 4)
    assert decide(released, me="b", now=T0 + 1, duration=15)[0] is Verdict.ACQUIRE


def test_a_leader_stops_leading_when_its_renewal_is_as_old_as_the_duration() -> None:
    held = LeaseRecord("a", 15, T0, T0, 0)
    assert leads(held, me="a", now=T0 + 14.9)
    assert not leads(held, me="a", now=T0 + 15)
    assert not leads(held, me="b", now=T0)
    assert not leads(None, me="a", now=T0)


def test_lease_times_are_read_from_the_wire_form_and_garbage_reads_as_absent() -> None:
    record = record_of(
        {
            "spec": {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "renewTime": "2023-11-14T22:13:20.000000Z",
                "acquireTime": "not a time",
            }
        }
    )
    assert record.renewed == T0
    assert record.acquired is None


# -- electors against the apiserver ---------------------------------------------------------------


def elector(
    api: client.ApiClient, name: str, clock: Clock, on_change: Callable[[bool], None] | None = None
) -> Elector:
    settings = KubeSettings(namespace=NAMESPACE, identity=name, lease_duration=15)
    return Elector(api, settings=settings, clock=clock, on_change=on_change)


async def test_two_electors_agree_on_one_leader_and_hand_over_when_it_stops_renewing(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    clock = Clock()
    changes: list[bool] = []
    a, b = elector(api, "agent-a", clock, changes.append), elector(api, "agent-b", clock)
    assert await a.step() is Verdict.ACQUIRE
    assert await b.step() is Verdict.FOLLOW
    assert a.is_leader()
    assert not b.is_leader()
    clock.now += 10
    assert await a.step() is Verdict.RENEW
    clock.now += 10  # 10 s after a's renewal: still a's
    assert await b.step() is Verdict.FOLLOW
    clock.now += 5.1  # a went quiet: 15.1 s since its renewal
    assert not a.is_leader()  # a knows it on its own, without reaching the apiserver
    assert await b.step() is Verdict.ACQUIRE
    assert b.is_leader()
    lease = apiserver.get("leases", NAMESPACE, "slipway-agent")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "agent-b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert await a.step() is Verdict.FOLLOW
    assert changes == [True, False]


async def test_a_released_lease_is_taken_at_once(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    clock = Clock()
    a, b = elector(api, "agent-a", clock), elector(api, "agent-b", clock)
    await a.step()
    await a.release()
    assert not a.is_leader()
    assert await b.step() is Verdict.ACQUIRE
    assert b.is_leader()


async def test_racing_electors_never_both_lead_the_slower_write_gets_a_conflict(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    clock = Clock()
    electors = [elector(api, f"agent-{n}", clock) for n in range(4)]
    await electors[0].step()
    clock.now += 60  # expired: everyone races for it
    await asyncio.gather(*(e.step() for e in electors[1:]))
    leaders = [e.settings.identity for e in electors if e.is_leader()]
    assert len(leaders) == 1
    lease = apiserver.get("leases", NAMESPACE, "slipway-agent")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == leaders[0]


async def test_a_stale_lease_write_is_refused_by_the_apiserver_with_409(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    clock = Clock()
    await elector(api, "agent-a", clock).step()
    coordination = client.CoordinationV1Api(api)
    body = {"metadata": {"name": "slipway-agent", "resourceVersion": "1"}, "spec": {}}
    with pytest.raises(client.ApiException) as caught:
        await coordination.replace_namespaced_lease("slipway-agent", NAMESPACE, body)
    assert caught.value.status == 409


async def test_only_the_leader_scales_and_the_new_leader_can_after_a_hand_over(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    clock = Clock()
    a, b = elector(api, "agent-a", clock), elector(api, "agent-b", clock)
    run_a = KubernetesRuntime(
        api, settings=settings(), registry=CollectorRegistry(), is_leader=a.is_leader
    )
    run_b = KubernetesRuntime(
        api, settings=settings(), registry=CollectorRegistry(), is_leader=b.is_leader
    )
    await run_a.apply(SPEC)
    await a.step()
    await b.step()
    await run_a.scale("blog", "web", 1)
    with pytest.raises(NotLeader):
        await run_b.scale("blog", "web", 0)
    await a.release()
    await b.step()
    with pytest.raises(NotLeader):
        await run_a.scale("blog", "web", 0)
    await run_b.scale("blog", "web", 0)
    dep = apiserver.get("deployments", NAMESPACE, "blog-web")
    assert dep is not None
    assert dep["spec"]["replicas"] == 0


async def test_a_leader_cut_off_from_the_apiserver_stops_leading_once_its_lease_runs_out(
    api: client.ApiClient, apiserver: ApiServer
) -> None:
    clock = Clock()
    a = elector(api, "agent-a", clock)
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)
        clock.now += seconds
        if len(naps) == 1:
            apiserver.outage = True  # the apiserver goes away after the first renewal
        if len(naps) == 5:
            raise asyncio.CancelledError  # end of the test's run

    with pytest.raises(asyncio.CancelledError):
        await a.run(sleep=nap)
    assert naps == [5.0] * 5
    # Renewed at T0; four failed rounds later (T0 + 20 s) the 15 s Lease has run out.
    assert not a.is_leader()
    apiserver.outage = False
    assert await a.step() is Verdict.RENEW  # still the holder on record, so it renews
    assert a.is_leader()
