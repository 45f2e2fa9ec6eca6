"""Workers by queue depth: where a worker's jobs wait, and how many workers that asks for. Pure.

Workers sleep with their app, so a job queued while the app sleeps would wait
for a web request. The agent watches each worker type's queue
(``queue_watch.py``, the I/O shell) and asks for workers while jobs wait or
run, whatever web does; ``decide`` is that choice, a function of one reading
and ``now``.

A source is one of the queue libraries' own key conventions, read from the
app's Redis (its ``REDIS_URL`` config var, or another it names), or a
Postgres query returning one number:

=========  ===============================  ===========================
kind       waiting jobs                     running jobs
=========  ===============================  ===========================
rq         ``LLEN rq:queue:NAME``           ``ZCARD rq:wip:NAME``
sidekiq    ``LLEN queue:NAME``              (not counted)
celery     ``LLEN NAME`` (``celery``)       ``HLEN unacked``
bull       ``LLEN bull:NAME:wait``          ``LLEN bull:NAME:active``
list       ``LLEN NAME``                    (not counted)
postgres   the query's number               (in the query)
=========  ===============================  ===========================

Running jobs count as work: a worker busy with a long job is never stopped
because its queue is empty. ``detect`` reads the usual Procfile lines
(``rq worker``, ``celery -A app worker``, ``sidekiq``), so a Heroku app gets
this without saying anything; a definition's ``queues`` says it explicitly.
"""

from __future__ import annotations

import enum
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ConfigError

#: A ceiling on workers one queue may ask for, whatever a definition says.
MAX_QUEUE_SCALE = 20
#: Waiting jobs per worker past this mean "one worker" (per_worker 0) already; bounded so a
#: definition's number is a number, not an overflow.
MAX_PER_WORKER = 1_000_000


class Kind(enum.StrEnum):
    RQ = "rq"
    SIDEKIQ = "sidekiq"
    CELERY = "celery"
    BULL = "bull"
    LIST = "list"
    POSTGRES = "postgres"


class Op(enum.StrEnum):
    LLEN = "llen"
    ZCARD = "zcard"
    HLEN = "hlen"


@dataclass(frozen=True, slots=True)
class Measure:
    """One Redis read: its number is waiting jobs, or running ones when ``busy``."""

    op: Op
    key: str
    busy: bool = False


#: Each library's default queue name.
_DEFAULT_NAMES = {
    Kind.RQ: "default",
    Kind.SIDEKIQ: "default",
    Kind.CELERY: "celery",
    Kind.BULL: "default",
}
_SOURCE_KEYS = frozenset({"kind", "names", "url_var", "query", "per_worker", "max_scale"})


@dataclass(frozen=True, slots=True)
class QueueSource:
    kind: Kind
    #: Queue names (RQ's and Sidekiq's ``default``, Celery's ``celery``); list keys for ``list``.
    names: tuple[str, ...] = ()
    #: The config var holding the server's URL (``REDIS_URL``, ``DATABASE_URL`` for postgres).
    url_var: str = "REDIS_URL"
    #: For ``postgres``: one statement returning one number (jobs waiting and running).
    query: str | None = None
    #: Waiting jobs one worker is given before another is asked for; 0: one worker at most.
    per_worker: int = 0
    #: Workers asked for at most (``per_worker`` > 0).
    max_scale: int = 1

    def measures(self) -> list[Measure]:
        """What to read from Redis for this source (none for ``postgres``)."""
        out: list[Measure] = []
        for name in self.names or (_DEFAULT_NAMES.get(self.kind, ""),):
            if self.kind is Kind.RQ:
                out += [
                    Measure(Op.LLEN, f"rq:queue:{name}"),
                    Measure(Op.ZCARD, f"rq:wip:{name}", busy=True),
                ]
            elif self.kind is Kind.SIDEKIQ:
                out.append(Measure(Op.LLEN, f"queue:{name}"))
            elif self.kind is Kind.CELERY:
                out.append(Measure(Op.LLEN, name))
            elif self.kind is Kind.BULL:
                out += [
                    Measure(Op.LLEN, f"bull:{name}:wait"),
                    Measure(Op.LLEN, f"bull:{name}:active", busy=True),
                ]
            elif self.kind is Kind.LIST:
                out.append(Measure(Op.LLEN, name))
        if self.kind is Kind.CELERY:
            out.append(Measure(Op.HLEN, "unacked", busy=True))
        return out

    def wire(self) -> dict[str, Any]:
        """The definition's JSON form (``parse_source`` reads it back)."""
        return {
            "kind": str(self.kind),
            "names": list(self.names),
            "url_var": self.url_var,
            "query": self.query,
            "per_worker": self.per_worker,
            "max_scale": self.max_scale,
        }


def parse_source(raw: object, where: str) -> QueueSource:
    """A definition's ``queues.<type>`` entry; ConfigError names what is wrong."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = set(raw) - _SOURCE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        kind = Kind(str(raw.get("kind")))
    except ValueError:
        raise ConfigError(
            f"{where}: kind must be one of {', '.join(k.value for k in Kind)}"
        ) from None
    names = raw.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{where}: names must be a list of non-empty strings")
    if kind is Kind.LIST and not names:
        raise ConfigError(f"{where}: a list source names its keys")
    default_var = "DATABASE_URL" if kind is Kind.POSTGRES else "REDIS_URL"
    url_var = raw.get("url_var", default_var)
    if not isinstance(url_var, str) or not url_var:
        raise ConfigError(f"{where}: url_var must name a config var")
    query = raw.get("query")
    if kind is Kind.POSTGRES and (not isinstance(query, str) or not query.strip()):
        raise ConfigError(f"{where}: a postgres source needs a query returning one number")
    if kind is not Kind.POSTGRES and query is not None:
        raise ConfigError(f"{where}: only a postgres source takes a query")
    counts = {key: raw.get(key, default) for key, default in (("per_worker", 0), ("max_scale", 1))}
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: {key} must be a whole number >= 0")
    if counts["per_worker"] > MAX_PER_WORKER:
        raise ConfigError(f"{where}: per_worker must be at most {MAX_PER_WORKER}")
    if not 1 <= counts["max_scale"] <= MAX_QUEUE_SCALE:
        raise ConfigError(f"{where}: max_scale must be in [1, {MAX_QUEUE_SCALE}]")
    return QueueSource(
        kind=kind,
        names=tuple(names),
        url_var=url_var,
        query=query,
        per_worker=counts["per_worker"],
        max_scale=counts["max_scale"],
    )


# -- detection from a Procfile command ---------------------------------------------------

#: ``rq worker`` options that take a value (rq 1.x-3.x), so it is not read as a queue name.
_RQ_VALUED = frozenset({
    "-u", "--url", "-c", "--config", "-n", "--name", "-w", "--worker-class", "-j",
    "--job-class", "-q", "--queue-class", "--connection-class", "-P", "--path",
    "--results-ttl", "--worker-ttl", "--job-monitoring-interval", "-l", "--logging_level",
    "--log-format", "--date-format", "--exception-handler", "--max-jobs", "--max-idle-time",
    "-S", "--serializer", "--pid", "--dequeue-strategy", "--maintenance-interval",
    "--sentry-dsn", "--sentry-ca-certs",
})  # fmt: skip


def _var(token: str) -> str | None:
    """``$REDIS_URL`` or ``${REDIS_URL}`` -> ``REDIS_URL``."""
    if token.startswith("${") and token.endswith("}"):
        return token[2:-1] or None
    if token.startswith("$") and token[1:].replace("_", "a").isalnum():
        return token[1:]
    return None


def detect(command: str, env: Mapping[str, str]) -> QueueSource | None:
    """The queue a Procfile command works from, when it is a usual worker line; else None."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, word in enumerate(words):
        tail = words[i + 1 :]
        base = word.rsplit("/", 1)[-1]
        if base == "rq" and tail[:1] == ["worker"]:
            return _rq(tail[1:], env)
        if base == "celery" and "worker" in tail:
            return _celery(tail)
        if base == "sidekiq":
            return _sidekiq(tail)
    return None


def _rq(args: list[str], env: Mapping[str, str]) -> QueueSource:
    names: list[str] = []
    url_var = "RQ_REDIS_URL" if "RQ_REDIS_URL" in env else "REDIS_URL"
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            option, eq, value = arg.partition("=")
            if option in _RQ_VALUED:
                if not eq:
                    value = args[i + 1] if i + 1 < len(args) else ""
                    i += 1
                if option in ("-u", "--url"):
                    url_var = _var(value) or url_var
        else:
            names.append(arg)
        i += 1
    return QueueSource(Kind.RQ, names=tuple(names), url_var=url_var)


def _celery(args: list[str]) -> QueueSource:
    names: list[str] = []
    for i, arg in enumerate(args):
        value = None
        if arg in ("-Q", "--queues") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--queues="):
            value = arg.partition("=")[2]
        elif arg.startswith("-Q") and len(arg) > 2:
            value = arg[2:]
        if value:
            names += [n for n in value.split(",") if n]
    return QueueSource(Kind.CELERY, names=tuple(names))


def _sidekiq(args: list[str]) -> QueueSource:
    names: list[str] = []
    for i, arg in enumerate(args):
        if arg in ("-q", "--queue") and i + 1 < len(args):
            names.append(args[i + 1].split(",")[0])  # "name,weight"
    return QueueSource(Kind.SIDEKIQ, names=tuple(names))


# -- the decision -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Depth:
    """One reading of a source."""

    waiting: int
    running: int = 0

    @property
    def work(self) -> int:
        return self.waiting + self.running


@dataclass(frozen=True, slots=True)
class QueueState:
    """What the watcher asked for last, and when it last saw work."""

    replicas: int = 0
    last_work: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    #: Why, for the log line; empty when nothing changed.
    reason: str
    state: QueueState = field(default_factory=QueueState)

    @property
    def changed(self) -> bool:
        return bool(self.reason)


def decide(
    source: QueueSource,
    depth: Depth | None,
    state: QueueState,
    *,
    idle_after: float,
    now: float,
) -> Decision:
    """Workers this queue asks for now (pure).

    Work (waiting or running jobs) asks for one worker, or one per ``per_worker``
    waiting jobs up to ``max_scale``, and never fewer than asked before while work
    remains (the runtime stops the newest worker first, which may hold a job).
    With no work for ``idle_after``, nothing is asked for: the worker sleeps with
    its app again. An unreadable source (``depth`` None) changes nothing.
    """
    if depth is None:
        return Decision(state.replicas, "", state)
    if depth.work > 0:
        wanted = 1
        if source.per_worker > 0:
            wanted = max(1, min(source.max_scale, math.ceil(depth.waiting / source.per_worker)))
        replicas = max(state.replicas, wanted)
        new = QueueState(replicas, now)
        if replicas == state.replicas:
            return Decision(replicas, "", new)
        reason = "jobs queued" if state.replicas == 0 else "queue deeper than its workers"
        return Decision(replicas, reason, new)
    if state.replicas == 0:
        return Decision(0, "", state)
    last = state.last_work if state.last_work is not None else now
    if now - last >= idle_after:
        return Decision(0, "queue empty and workers idle", QueueState(0, last))
    return Decision(state.replicas, "", QueueState(state.replicas, last))
