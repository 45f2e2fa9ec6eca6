"""Server-wide Postgres series: every ``pg_settings`` row, and the bgwriter's counters.

Both are read as postgres_exporter reads them, so the dashboards built on it
find them: settings with its name mangling and unit conversion, and
``pg_stat_bgwriter_*`` in the two spellings it has used (the old names without
``_total`` that dashboard 9628 reads, the new ones with it that its own mixin,
14114, reads). PostgreSQL 17 moved the checkpoint counters to
``pg_stat_checkpointer``; the query is chosen by version, and one row type
covers both.
"""

from __future__ import annotations

from typing import NamedTuple

from exporters.samples import Family, Sample, counter, gauge

# postgres_exporter's settings collector: every numeric and boolean setting.
SETTINGS_QUERY = """
SELECT name, setting, coalesce(unit, ''), vartype FROM pg_settings
WHERE vartype IN ('bool', 'integer', 'real')
"""

# Both read the same 15 columns, so one row type covers every version. PostgreSQL 17
# moved the checkpoint counters to pg_stat_checkpointer and dropped buffers_backend
# and buffers_backend_fsync; those two are then what pg_stat_io counts for every
# process that is neither the background writer nor the checkpointer (relations, in
# blocks: a buffer is a block). Timestamps as Unix seconds, as postgres_exporter has them.
BGWRITER_QUERY = """
SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time,
       buffers_checkpoint, buffers_clean, maxwritten_clean, buffers_backend,
       buffers_backend_fsync, buffers_alloc, extract(epoch FROM stats_reset)::float8,
       NULL::bigint, NULL::bigint, NULL::bigint, NULL::float8
FROM pg_stat_bgwriter
"""
BGWRITER_QUERY_17 = """
SELECT c.num_timed, c.num_requested, c.write_time, c.sync_time,
       c.buffers_written, b.buffers_clean, b.maxwritten_clean, io.writes,
       io.fsyncs, b.buffers_alloc, extract(epoch FROM b.stats_reset)::float8,
       c.restartpoints_timed, c.restartpoints_req, c.restartpoints_done,
       extract(epoch FROM c.stats_reset)::float8
FROM pg_stat_bgwriter b, pg_stat_checkpointer c,
     (SELECT coalesce(sum(writes), 0) AS writes, coalesce(sum(fsyncs), 0) AS fsyncs
      FROM pg_stat_io
      WHERE backend_type NOT IN ('background writer', 'checkpointer')
        AND object = 'relation') io
"""
#: server_version_num of the release that split pg_stat_checkpointer out of pg_stat_bgwriter.
CHECKPOINTER_SINCE = 170000


def bgwriter_query(version_num: int) -> str:
    return BGWRITER_QUERY_17 if version_num >= CHECKPOINTER_SINCE else BGWRITER_QUERY


class SettingRow(NamedTuple):
    name: str
    setting: str
    unit: str
    vartype: str


class BgwriterRow(NamedTuple):
    """pg_stat_bgwriter's columns (before 17: its own; from 17: see BGWRITER_QUERY_17)."""

    checkpoints_timed: int | None
    checkpoints_req: int | None
    checkpoint_write_time: float | None
    checkpoint_sync_time: float | None
    buffers_checkpoint: int | None
    buffers_clean: int | None
    maxwritten_clean: int | None
    buffers_backend: int | None
    buffers_backend_fsync: int | None
    buffers_alloc: int | None
    stats_reset: float | None
    restartpoints_timed: int | None
    restartpoints_req: int | None
    restartpoints_done: int | None
    checkpointer_stats_reset: float | None


#: pg_stat_bgwriter column -> help.
BGWRITER_HELP = {
    "checkpoints_timed": "Scheduled checkpoints performed.",
    "checkpoints_req": "Requested checkpoints performed.",
    "checkpoint_write_time": "Milliseconds checkpoints spent writing files to disk.",
    "checkpoint_sync_time": "Milliseconds checkpoints spent synchronizing files to disk.",
    "buffers_checkpoint": "Buffers written during checkpoints.",
    "buffers_clean": "Buffers written by the background writer.",
    "maxwritten_clean": "Cleaning scans stopped for writing too many buffers.",
    "buffers_backend": "Buffers written directly by a backend (17+: pg_stat_io writes of relations "
    "by processes other than the background writer and the checkpointer).",
    "buffers_backend_fsync": "Fsync calls a backend had to execute itself (17+: from pg_stat_io).",
    "buffers_alloc": "Buffers allocated.",
    "stats_reset": "Unix time at which these statistics were last reset.",
}
#: pg_stat_checkpointer (17+) name -> (BgwriterRow field, help).
CHECKPOINTER = {
    "num_timed": ("checkpoints_timed", "Scheduled checkpoints performed."),
    "num_requested": ("checkpoints_req", "Requested checkpoints performed."),
    "restartpoints_timed": ("restartpoints_timed", "Scheduled restartpoints."),
    "restartpoints_req": ("restartpoints_req", "Requested restartpoints."),
    "restartpoints_done": ("restartpoints_done", "Restartpoints performed."),
    "write_time": ("checkpoint_write_time", "Milliseconds spent writing files to disk."),
    "sync_time": ("checkpoint_sync_time", "Milliseconds spent synchronizing files to disk."),
    "buffers_written": ("buffers_checkpoint", "Buffers written by the checkpointer."),
    "stats_reset": ("checkpointer_stats_reset", "Unix time of the last statistics reset."),
}

BGWRITER_FAMILIES: dict[str, Family] = {
    # postgres_exporter's old spelling (its query-map era) and its new one, side by side
    **{
        f"pg_stat_bgwriter_{column}{suffix}": counter(text)
        for column, text in BGWRITER_HELP.items()
        for suffix in ("", "_total")
    },
    **{
        f"pg_stat_checkpointer_{name}_total": counter(text)
        for name, (_, text) in CHECKPOINTER.items()
    },
}


#: pg_settings unit -> (postgres_exporter's name suffix, factor to that base unit).
SETTING_UNITS: dict[str, tuple[str, float]] = {
    "ms": ("seconds", 1e-3),
    "s": ("seconds", 1.0),
    "min": ("seconds", 60.0),
    "h": ("seconds", 3600.0),
    "d": ("seconds", 86400.0),
    "B": ("bytes", 1.0),
    **{f"{n}kB": ("bytes", n * 1024.0) for n in (1, 2, 4, 8, 16, 32, 64)},
    "kB": ("bytes", 1024.0),
    "MB": ("bytes", 2.0**20),
    "16MB": ("bytes", 2.0**24),
    "32MB": ("bytes", 2.0**25),
    "64MB": ("bytes", 2.0**26),
    "GB": ("bytes", 2.0**30),
    "TB": ("bytes", 2.0**40),
}


class Setting(NamedTuple):
    name: str
    value: float
    family: Family


def setting(row: SettingRow) -> Setting | None:
    """postgres_exporter's reading of one pg_settings row, or None if it would skip it.

    The name is ``pg_settings_`` plus the setting with ``.`` and ``-`` made ``_``
    (extension settings such as ``pg_stat_statements.max``), plus ``_seconds`` or
    ``_bytes`` when the unit converts; ``-1`` (disabled) keeps the suffix and stays -1.
    """
    name = "pg_settings_" + row.name.replace(".", "_").replace("-", "_")
    help_text = f"Server Parameter: {row.name}"
    if row.vartype == "bool":
        return Setting(name, 1.0 if row.setting == "on" else 0.0, gauge(help_text))
    try:
        value = float(row.setting)
    except ValueError:
        return None
    if row.unit:
        unit = SETTING_UNITS.get(row.unit)
        if unit is None:
            return None
        suffix, factor = unit
        name = f"{name}_{suffix}"
        help_text = f"{help_text} [Units converted to {suffix}.]"
        if value != -1:
            value *= factor
    return Setting(name, value, gauge(help_text))


def bgwriter_samples(row: BgwriterRow, version_num: int) -> list[Sample]:
    """Both spellings of every bgwriter column; from 17 the checkpointer's own names too."""
    samples = []
    for column in BGWRITER_HELP:
        value = float(getattr(row, column) or 0)  # NULL is 0, as postgres_exporter has it
        samples.append(Sample(f"pg_stat_bgwriter_{column}", (), value))
        samples.append(Sample(f"pg_stat_bgwriter_{column}_total", (), value))
    if version_num >= CHECKPOINTER_SINCE:
        for name, (field_name, _) in CHECKPOINTER.items():
            value = float(getattr(row, field_name) or 0)
            samples.append(Sample(f"pg_stat_checkpointer_{name}_total", (), value))
    return samples
