"""Redis: parse ``INFO`` and map it to samples, purely.

One ``INFO server clients memory stats replication keyspace commandstats``
round trip gives everything (``--no-command-stats`` leaves the last section out:
redis_exporter exports the per-command series by default, and dashboard 763
draws two panels from them).
Redis 7 reports ``maxclients`` and ``maxmemory`` in INFO itself, so the exporter
needs no ``CONFIG GET``: its ACL user needs only ``+info +ping +client|setname``
(see docs/exporters.md). Names follow oliver006 redis_exporter, so dashboard 763
works unchanged.
"""

from __future__ import annotations

from exporters.errors import ErrorKind, PollError
from exporters.samples import Family, Labels, Outcome, Sample, ScrapeNames, counter, gauge
from exporters.targets import Target

SECTIONS = ("server", "clients", "memory", "stats", "replication", "keyspace")
#: The per-command section: one pair of series per command the server has run.
COMMAND_SECTION = "commandstats"

#: redis_exporter's series about its own scrape, ``err`` labelled as it does.
SCRAPE_NAMES = ScrapeNames(
    duration="redis_exporter_last_scrape_duration_seconds",
    scrapes="redis_exporter_scrapes_total",
    error="redis_exporter_last_scrape_error",
    error_label="err",
)

#: INFO field -> (exported name); gauges.
GAUGES = {
    "uptime_in_seconds": "redis_uptime_in_seconds",
    "connected_clients": "redis_connected_clients",
    "blocked_clients": "redis_blocked_clients",
    "maxclients": "redis_max_clients",
    "used_memory": "redis_memory_used_bytes",
    "used_memory_rss": "redis_memory_used_rss_bytes",
    "maxmemory": "redis_memory_max_bytes",
    "mem_fragmentation_ratio": "redis_mem_fragmentation_ratio",
    "connected_slaves": "redis_connected_slaves",
}
#: INFO field -> exported counter sample name (with redis_exporter's ``_total``).
COUNTERS = {
    "rejected_connections": "redis_rejected_connections_total",
    "total_commands_processed": "redis_commands_processed_total",
    "total_net_input_bytes": "redis_net_input_bytes_total",
    "total_net_output_bytes": "redis_net_output_bytes_total",
    "keyspace_hits": "redis_keyspace_hits_total",
    "keyspace_misses": "redis_keyspace_misses_total",
    "evicted_keys": "redis_evicted_keys_total",
    "expired_keys": "redis_expired_keys_total",
    "total_connections_received": "redis_connections_received_total",
}

FAMILIES: dict[str, Family] = {
    "redis_up": gauge("Whether the last poll of this target succeeded (1) or not (0)."),
    "redis_instance_info": gauge("Information about the Redis instance"),
    "redis_db_keys": gauge("Total number of keys by DB"),
    "redis_db_keys_expiring": gauge("Total number of expiring keys by DB"),
    "redis_master_link_up": gauge("Master link status on Redis slave"),
    "redis_commands_total": counter("Total number of calls per command"),
    "redis_commands_duration_seconds_total": counter(
        "Total amount of time in seconds spent per command"
    ),
    **{name: gauge(f"INFO {field}") for field, name in GAUGES.items()},
    **{name: counter(f"INFO {field}") for field, name in COUNTERS.items()},
    "slipway_redis_memory_used_ratio": gauge(
        "used_memory over maxmemory, or over the plan's memory when maxmemory is not set."
    ),
    "slipway_redis_clients_used_ratio": gauge(
        "connected_clients over maxclients, or over the plan's connections when set."
    ),
    "slipway_redis_hit_ratio": gauge(
        "keyspace_hits / (keyspace_hits + keyspace_misses) since start."
    ),
}


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` text to a flat field -> value mapping; raises PollError(protocol) on junk."""
    fields: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key:
            raise PollError(ErrorKind.PROTOCOL)
        fields[key] = value
    if "redis_version" not in fields and "uptime_in_seconds" not in fields:
        raise PollError(ErrorKind.PROTOCOL)
    return fields


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _keyspace(value: str) -> dict[str, float]:
    """``keys=3,expires=1,avg_ttl=0`` -> numbers."""
    out: dict[str, float] = {}
    for part in value.split(","):
        key, _, number = part.partition("=")
        parsed = _number(number)
        if parsed is not None:
            out[key] = parsed
    return out


def _command_stats(fields: dict[str, str]) -> list[Sample]:
    samples: list[Sample] = []
    for key, value in fields.items():
        if not key.startswith("cmdstat_"):
            continue
        stats = _keyspace(value)
        labels: Labels = (("cmd", key.removeprefix("cmdstat_")),)
        if "calls" in stats and "usec" in stats:
            samples.append(Sample("redis_commands_total", labels, stats["calls"]))
            samples.append(
                Sample("redis_commands_duration_seconds_total", labels, stats["usec"] / 1e6)
            )
    return samples


def outcome(target: Target, fields: dict[str, str]) -> Outcome:
    """The samples of one Redis target from its parsed INFO."""
    samples = [Sample("redis_up", (), 1.0)]

    def add(name: str, value: float | None, labels: Labels = ()) -> None:
        if value is not None:
            samples.append(Sample(name, labels, value))

    for field, name in GAUGES.items():
        add(name, _number(fields.get(field)))
    for field, name in COUNTERS.items():
        add(name, _number(fields.get(field)))
    add(
        "redis_instance_info",
        1.0,
        (
            ("maxmemory_policy", fields.get("maxmemory_policy", "")),
            ("redis_mode", fields.get("redis_mode", "")),
            ("redis_version", fields.get("redis_version", "")),
            ("role", fields.get("role", "")),
        ),
    )
    dbs = {
        key: _keyspace(value)
        for key, value in fields.items()
        if key.startswith("db") and key[2:].isdigit()
    }
    # An empty server lists no db in INFO keyspace; db0 at 0 keeps the panels drawn.
    dbs.setdefault("db0", {"keys": 0.0, "expires": 0.0})
    for db, stats in sorted(dbs.items()):
        add("redis_db_keys", stats.get("keys"), (("db", db),))
        add("redis_db_keys_expiring", stats.get("expires"), (("db", db),))
    if "master_link_status" in fields:
        add(
            "redis_master_link_up",
            1.0 if fields["master_link_status"] == "up" else 0.0,
            (
                ("master_host", fields.get("master_host", "")),
                ("master_port", fields.get("master_port", "")),
            ),
        )
    samples.extend(_command_stats(fields))

    used = _number(fields.get("used_memory"))
    maxmemory = _number(fields.get("maxmemory")) or target.limits.memory_bytes
    if used is not None and maxmemory:
        add("slipway_redis_memory_used_ratio", used / maxmemory)
    clients = _number(fields.get("connected_clients"))
    max_clients = target.limits.connections or _number(fields.get("maxclients"))
    if clients is not None and max_clients:
        add("slipway_redis_clients_used_ratio", clients / max_clients)
    hits, misses = _number(fields.get("keyspace_hits")), _number(fields.get("keyspace_misses"))
    if hits is not None and misses is not None and hits + misses > 0:
        add("slipway_redis_hit_ratio", hits / (hits + misses))
    return Outcome(samples)
