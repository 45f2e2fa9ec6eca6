"""Leader election with a coordination.k8s.io Lease: a pure decision and a thin Elector.

The decision reads the Lease as last seen and ``now`` (wall-clock seconds,
since replicas on different nodes must compare times written by each other)
and says what to do. The Elector does it with the Lease's resourceVersion, so
two replicas racing for an expired Lease cannot both win: the apiserver
answers 409 to the slower one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from kubernetes_asyncio import client

from agent.kubernetes.errors import Conflict, KubeError, NotFound, checked, translated
from agent.kubernetes.settings import KubeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str | None
    duration: float
    acquired: float | None
    renewed: float | None
    transitions: int = 0


class Verdict(StrEnum):
    ACQUIRE = "acquire"
    RENEW = "renew"
    FOLLOW = "follow"


def decide(
    record: LeaseRecord | None, *, me: str, now: float, duration: float
) -> tuple[Verdict, LeaseRecord | None]:
    """What replica ``me`` does with the Lease at ``now``, and the record to write."""
    if record is None:
        return Verdict.ACQUIRE, LeaseRecord(me, duration, now, now, 0)
    if record.holder == me:
        return Verdict.RENEW, replace(record, renewed=now, duration=duration)
    expired = (
        record.holder is None or record.renewed is None or now >= record.renewed + record.duration
    )
    if expired:
        return Verdict.ACQUIRE, LeaseRecord(me, duration, now, now, record.transitions + 1)
    return Verdict.FOLLOW, None


def leads(record: LeaseRecord | None, *, me: str, now: float) -> bool:
    """Whether ``me`` may act as leader at ``now``: it holds a Lease it renewed in time.

    A leader cut off from the apiserver stops leading once its own renewal is
    older than the duration, the same instant a follower may take over.
    """
    return (
        record is not None
        and record.holder == me
        and record.renewed is not None
        and now < record.renewed + record.duration
    )


# MicroTime on the wire: RFC 3339 with microseconds, always UTC.
def _format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(raw: Any) -> float | None:
    if not raw:
        return None
    text = str(raw).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def record_of(lease: dict[str, Any]) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        duration=float(spec.get("leaseDurationSeconds") or 0),
        acquired=_parse_time(spec.get("acquireTime")),
        renewed=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


#: Seconds at least between two rounds, however often the Elector is poked.
POKE_GAP = 0.1

#: Annotation of the Lease: the holder's API URL, where followers forward what only it may do.
LEADER_URL_ANNOTATION = "slipway.dev/leader-url"


def leader_url_of(lease: dict[str, Any]) -> str | None:
    """The URL the Lease's holder advertises; None when released, absent or not http(s)."""
    if not (lease.get("spec") or {}).get("holderIdentity"):
        return None
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    url = annotations.get(LEADER_URL_ANNOTATION)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    return url.rstrip("/")


def lease_body(
    name: str,
    record: LeaseRecord,
    resource_version: str | None,
    *,
    advertise: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    # Replaced as a whole (PUT): a released Lease carries no URL, so nobody forwards to it.
    metadata["annotations"] = (
        {LEADER_URL_ANNOTATION: advertise} if advertise and record.holder else {}
    )
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        # The API takes whole seconds; round up so we never promise less than asked.
        "leaseDurationSeconds": max(1, int(-(-record.duration // 1))),
        "leaseTransitions": record.transitions,
    }
    if record.acquired is not None:
        spec["acquireTime"] = _format_time(record.acquired)
    if record.renewed is not None:
        spec["renewTime"] = _format_time(record.renewed)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


class Elector:
    """One replica's side of the election; ``is_leader()`` is what the runtime consults."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        settings: KubeSettings,
        clock: Callable[[], float],
        on_change: Callable[[bool], None] | None = None,
        advertise: str | None = None,
    ) -> None:
        # Any: we speak the wire form (dicts, raw responses), not the client's models.
        self._api: Any = client.CoordinationV1Api(api)
        self.settings = settings
        self.clock = clock
        self._on_change = on_change
        self._mine: LeaseRecord | None = None
        self._was_leader = False
        #: This replica's API URL, written into the Lease while it leads.
        self.advertise = advertise
        #: The leader's API URL as last read from the Lease (ours while we lead).
        self.leader_url: str | None = None
        self._poked = asyncio.Event()

    @property
    def namespace(self) -> str:
        return self.settings.lease_namespace or self.settings.namespace

    @property
    def me(self) -> str:
        return self.settings.identity

    @property
    def _request_timeout(self) -> float:
        """Seconds one Lease request may take: a hung apiserver connection must not stall
        the rounds (or a shutdown's release) for ever."""
        return max(1.0, self.settings.renew_interval)

    def is_leader(self) -> bool:
        return leads(self._mine, me=self.me, now=self.clock())

    def _note(self) -> None:
        now_leader = self.is_leader()
        if now_leader != self._was_leader:
            self._was_leader = now_leader
            log.info(
                "leadership changed",
                extra={
                    "identity": self.me,
                    "leader": now_leader,
                    "lease": self.settings.lease_name,
                },
            )
            if self._on_change is not None:
                self._on_change(now_leader)

    async def _read(self) -> dict[str, Any]:
        """The Lease as the apiserver has it now (NotFound when there is none)."""
        with translated("read lease"):
            resp = await self._api.read_namespaced_lease(
                self.settings.lease_name,
                self.namespace,
                _preload_content=False,
                _request_timeout=self._request_timeout,
            )
            lease: dict[str, Any] = await (await checked(resp, "read lease")).json()
            return lease

    async def step(self) -> Verdict:
        """One round: read the Lease, decide, write. Returns what was done."""
        s = self.settings
        now = self.clock()
        current: dict[str, Any] | None
        try:
            current = await self._read()
        except NotFound:
            current = None
        record = record_of(current) if current is not None else None
        verdict, new = decide(record, me=self.me, now=now, duration=s.lease_duration)
        self.leader_url = leader_url_of(current) if current is not None else None
        if new is None:
            self._mine = None
        else:
            try:
                if current is None:
                    with translated("create lease"):
                        await self._api.create_namespaced_lease(
                            self.namespace,
                            lease_body(s.lease_name, new, None, advertise=self.advertise),
                            _request_timeout=self._request_timeout,
                        )
                else:
                    rv = (current.get("metadata") or {}).get("resourceVersion")
                    with translated("replace lease"):
                        await self._api.replace_namespaced_lease(
                            s.lease_name,
                            self.namespace,
                            lease_body(s.lease_name, new, rv, advertise=self.advertise),
                            _request_timeout=self._request_timeout,
                        )
                self._mine = new
                self.leader_url = self.advertise
            except Conflict:
                # Another replica wrote first: it leads; we try again next round.
                verdict, self._mine, self.leader_url = Verdict.FOLLOW, None, None
        self._note()
        return verdict

    async def release(self) -> None:
        """Hand the Lease over at once (on shutdown) instead of making others wait it out."""
        if not self.is_leader() or self._mine is None:
            return
        s = self.settings
        released = replace(self._mine, holder=None, renewed=None)
        try:
            current = await self._read()
            rv = (current.get("metadata") or {}).get("resourceVersion")
            with translated("release lease"):
                await self._api.replace_namespaced_lease(
                    s.lease_name,
                    self.namespace,
                    lease_body(s.lease_name, released, rv),
                    _request_timeout=self._request_timeout,
                )
        except KubeError as exc:
            log.warning("lease release failed", extra={"error": str(exc)})
        self._mine = None
        self.leader_url = None
        self._note()

    def poke(self) -> None:
        """Run the next round now, not at the next renewal: the leader we forward to is gone."""
        self._poked.set()

    async def _nap(self, seconds: float) -> None:
        # A poke cuts the nap short, but rounds stay POKE_GAP apart whatever the callers do.
        await asyncio.sleep(min(POKE_GAP, seconds))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._poked.wait(), max(0.0, seconds - POKE_GAP))
        self._poked.clear()

    async def run(self, sleep: Callable[[float], Any] | None = None) -> None:
        """Step forever; an unreachable apiserver only costs leadership once the Lease runs out."""
        while True:
            try:
                await self.step()
            except KubeError as exc:
                log.warning("lease round failed", extra={"error": str(exc)})
                self._note()
            await (sleep or self._nap)(self.settings.renew_interval)
