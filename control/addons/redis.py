"""Redis add-ons on a shared server: one ACL user per tenant, fenced to a key prefix.

Only by explicit choice (``redis:shared``): the default Redis plan is an
instance of its own (``dedicated.py``), because what this fence denies is
what ordinary queue libraries do. RQ (``rq:queue:*``, ``rq:job:*``), Sidekiq
(``queue:*``, ``retry``), Celery (``celery``, ``unacked``) and Bull
(``bull:*``) name their own keys, and most run Lua scripts: on a shared
plan their first command fails with ``NoPermissionError``. A shared plan
suits an app that names its keys itself (a cache with a key prefix).

The user ``slipway_ab12cd`` may touch keys ``slipway_ab12cd:*`` and pub/sub
channels ``slipway_ab12cd:*`` only, and may run only the commands of an
allow-list (``ALLOWED``): the data-type commands, which name their keys and so
are confined by the key pattern, pub/sub on its own channels, transactions and
a few connection commands. Everything else is denied, in particular every
command that acts on the server rather than on named keys:

- listing or wiping (KEYS, SCAN, RANDOMKEY, DBSIZE, FLUSHALL, FLUSHDB, SWAPDB);
- introspection of other tenants (INFO, CLIENT LIST/TRACKING, PUBSUB CHANNELS/
  NUMSUB, MEMORY STATS, SLOWLOG, LATENCY, MONITOR, ACL LOG);
- scripting (EVAL*, SCRIPT *, FCALL*, FUNCTION *): functions and the script
  cache are server-wide, so one tenant could replace another's library or
  flush its scripts, and one endless script blocks every tenant (BUSY) until
  an admin kills it. Apps that need Lua take a dedicated plan (the default);
- leaving database 0 (SELECT other than 0, MOVE, COPY ... DB), where destroy
  would not find the keys, and reaching other hosts (MIGRATE).

What ACLs cannot give on a shared server is a memory or client cap per user:
plans that need one get a dedicated instance (docs/control.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from control.addons import Provisioned
from control.addons.plans import REDIS_PLANS, RedisPlan
from control.errors import AddonError, Unprocessable

log = logging.getLogger(__name__)

#: The tenant's commands, in order (later rules win in Redis ACLs). An allow-list:
#: a command Redis adds later to none of these categories stays denied.
ALLOWED = (
    "-@all",
    # Data types: every one of these names its keys, which the key pattern confines.
    "+@string",
    "+@list",
    "+@hash",
    "+@set",
    "+@sortedset",
    "+@stream",
    "+@bitmap",
    "+@hyperloglog",
    "+@geo",
    "+@keyspace",
    # SUBSCRIBE/PUBLISH are confined by the channel pattern; PUBSUB lists everyone's.
    "+@pubsub",
    "-pubsub",
    "+@transaction",
    # What the categories above also hold that acts on the server or leaves database 0.
    "-@admin",
    "-@dangerous",
    "-@scripting",
    "-scan",
    "-randomkey",
    "-dbsize",
    "-move",
    "-copy",
    # Connection commands client libraries send (redis-py, ioredis, Jedis, Lettuce).
    "+auth",
    "+hello",
    "+ping",
    "+echo",
    "+quit",
    "+reset",
    "+command",
    "+select|0",
    "+client|setname",
    "+client|getname",
    "+client|id",
    "+client|info",
    "+client|reply",
    # The app's own username, i.e. its key prefix (docs/control.md).
    "+acl|whoami",
)
#: Keys deleted per round trip on destroy; bounded so one destroy cannot block Redis.
_UNLINK_BATCH = 500


def acl_rules(password: str, prefix: str) -> list[str]:
    """The ACL SETUSER rules for one tenant (pure; the tests read them too)."""
    return [
        "reset",
        "on",
        f">{password}",
        f"~{prefix}*",
        f"&{prefix}*",
        *ALLOWED,
    ]


class RedisAddons:
    service = "redis"

    def __init__(
        self,
        *,
        admin_url: str,
        public_host: str,
        public_port: int,
        prefix: str = "slipway_",
        plans: Mapping[str, RedisPlan] = REDIS_PLANS,
    ) -> None:
        self._admin_url = admin_url
        self._public_host = public_host
        self._public_port = public_port
        self._prefix = prefix
        self._plans = dict(plans)

    @property
    def plans(self) -> Mapping[str, RedisPlan]:
        return self._plans

    def _admin(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self._admin_url, socket_timeout=10)

    async def create(self, plan: str) -> Provisioned:
        if plan not in self._plans:
            raise Unprocessable(
                f"no redis plan {plan!r} (plans: {', '.join(sorted(self._plans))})",
                id="plan_not_found",
            )
        user = f"{self._prefix}{secrets.token_hex(6)}"
        password = secrets.token_urlsafe(24)
        client = self._admin()
        try:
            # execute_command keeps the rules in order (redis-py's acl_setuser reorders them).
            await client.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", user, *acl_rules(password, f"{user}:")
            )
            await self._save(client)
        except RedisError as exc:
            raise AddonError(f"creating redis add-on {user} failed: {type(exc).__name__}") from exc
        finally:
            await client.aclose()
        log.info("redis add-on created", extra={"resource": user, "plan": plan})
        url = f"redis://{user}:{password}@{self._public_host}:{self._public_port}/0"
        return Provisioned(resource=user, url=url)

    async def ensure(self, resource: str, *, url: str, plan: str) -> None:
        """Set the user again from the registry: a Redis restarted without an aclfile lost it."""
        password = urlsplit(url).password
        if not password:
            raise AddonError(f"redis add-on {resource} has no password in its URL")
        client = self._admin()
        try:
            await client.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", resource, *acl_rules(password, f"{resource}:")
            )
            await self._save(client)
        except RedisError as exc:
            raise AddonError(
                f"restoring redis add-on {resource} failed: {type(exc).__name__}"
            ) from exc
        finally:
            await client.aclose()

    async def destroy(self, resource: str) -> None:
        client = self._admin()
        try:
            # Deleting the user also closes its connections (Redis >= 6.2).
            await client.acl_deluser(resource)
            await self._save(client)
            cursor = 0
            while True:
                cursor, keys = await client.scan(cursor, match=f"{resource}:*", count=_UNLINK_BATCH)
                if keys:
                    await client.unlink(*keys)
                if cursor == 0:
                    break
        except RedisError as exc:
            raise AddonError(
                f"destroying redis add-on {resource} failed: {type(exc).__name__}"
            ) from exc
        finally:
            await client.aclose()
        log.info("redis add-on destroyed", extra={"resource": resource})

    async def _save(self, client: aioredis.Redis) -> None:
        """Persist the ACL when the server has an aclfile; without one, ACLs live in memory."""
        try:
            await client.acl_save()
        except ResponseError as exc:
            if "ACL file" not in str(exc):
                raise
