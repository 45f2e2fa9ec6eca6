"""The search add-on under ``slipway up``: one osmem-server per add-on, run by the agent.

osmem-server (from the osmem-server wheel) speaks the Elasticsearch/OpenSearch
REST API that searchkick, elasticsearch-py and the OpenSearch clients use, and
holds everything in memory: the ``search:dev`` plan is for review apps and
development, and keeps NOTHING across a restart of the instance (or of
``slipway up``); the app reindexes. It runs as an agent app like a dedicated
Redis (``instances.py``), on a loopback port no config var names. It has no
authentication, so the app's URL points at a proxy of this control plane
(``search_proxy.py``) that requires the add-on's own Basic credentials, as
Bonsai's and SearchBox's URLs carry theirs: ``http://USER:PASSWORD@127.0.0.1:PORT``.
"""

from __future__ import annotations

import logging
import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from osmem_server import OsmemError, resolve_binary  # type: ignore[import-untyped]

from control.addons import Provisioned
from control.addons.instances import READY_TIMEOUT, AgentInstances, server_definition
from control.addons.plans import SEARCH_PLANS, SearchPlan
from control.addons.search_proxy import SearchProxies
from control.errors import AddonError, Unprocessable

if TYPE_CHECKING:
    from control.agent_target import AgentLink

log = logging.getLogger(__name__)

#: What the creation says (Heroku's provision_message), so nobody learns it from data loss.
MESSAGE = (
    "search:dev is an in-memory server: it keeps NOTHING across restarts (reindex after "
    "one); its URL carries its credentials and it listens on this machine's loopback only"
)


def osmem_binary() -> str:
    """The osmem-server the wheel bundles (``OSMEM_SERVER_BIN`` overrides it)."""
    try:
        return str(resolve_binary())
    except OsmemError as exc:
        raise AddonError(f"the search add-on cannot find osmem-server: {exc}") from None


def search_command(binary: str) -> str:
    """The line the agent runs (pure): loopback only (the proxy is its only front door).

    ``-no-stdin-watch``: the agent gives its processes no stdin, which osmem-server
    would otherwise take as its parent gone and exit.
    """
    return f"exec {shlex.quote(binary)} -addr 127.0.0.1:$PORT -no-stdin-watch"


def definition(binary: str) -> dict[str, Any]:
    """The agent app definition of one search instance (pure)."""
    return server_definition(search_command(binary))


class SearchAddons:
    service = "search"

    def __init__(
        self,
        link: AgentLink,
        *,
        binary: str | None = None,
        plans: Mapping[str, SearchPlan] = SEARCH_PLANS,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self._instances = AgentInstances(link, kind="search", ready_timeout=ready_timeout)
        self._binary = binary
        self._plans = dict(plans)
        self._proxies = SearchProxies()

    @property
    def plans(self) -> Mapping[str, object]:
        return self._plans

    def _definition(self) -> dict[str, Any]:
        binary = self._binary or osmem_binary()
        if not Path(binary).is_file():
            raise AddonError(f"osmem-server not found at {binary}; reinstall osmem-server")
        return definition(binary)

    async def create(self, plan: str) -> Provisioned:
        if plan not in self._plans:
            raise Unprocessable(
                f"no search plan {plan!r} (plans: {', '.join(self._plans)})",
                id="plan_not_found",
            )
        app, host, port = await self._instances.start(self._definition())
        # token_urlsafe: nothing a URL's userinfo would need to escape.
        password = secrets.token_urlsafe(24)
        try:
            front = await self._proxies.start(
                app, user=app, password=password, upstream=f"http://{host}:{port}",
                host=host, port=0,
            )  # fmt: skip
        except OSError as exc:
            await self._instances.stop(app)
            raise AddonError(f"creating search {app} failed: no port for its proxy") from exc
        log.info("search add-on created", extra={"resource": app, "plan": plan, "port": front})
        return Provisioned(
            resource=app, url=f"http://{app}:{password}@{host}:{front}", message=MESSAGE
        )

    async def destroy(self, resource: str) -> None:
        await self._proxies.stop(resource)
        await self._instances.stop(resource)
        log.info("search add-on destroyed", extra={"resource": resource})

    async def ensure(self, resource: str, *, url: str, plan: str) -> None:
        """Start the instance again if the agent lost it (empty, since it kept nothing) and
        its proxy on the URL's port, so the app's URL keeps working.

        Raises AddonError when the URL has no credentials or its port is taken.
        """
        if plan not in self._plans:
            raise AddonError(f"search add-on {resource} has plan {plan!r}, not offered here")
        parts = urlsplit(url)
        if not (parts.username and parts.password and parts.hostname and parts.port):
            raise AddonError(
                f"search add-on {resource} has a URL without credentials (made before they "
                "were required): destroy and create it again"
            )
        host, port = await self._instances.revive(resource, self._definition())
        try:
            await self._proxies.start(
                resource, user=parts.username, password=parts.password,
                upstream=f"http://{host}:{port}", host=parts.hostname, port=parts.port,
            )  # fmt: skip
        except OSError as exc:
            raise AddonError(
                f"search {resource} cannot listen on {parts.hostname}:{parts.port} again "
                f"({exc.strerror}); destroy and create the add-on again"
            ) from exc

    async def close(self) -> None:
        """Stop every proxy (the control plane is stopping; the instances are the agent's)."""
        await self._proxies.close()
