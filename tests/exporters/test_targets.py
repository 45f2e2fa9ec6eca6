"""The targets file: what it accepts, and a clear error for everything it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.errors import TargetsFileError
from exporters.targets import Kind, Limits, Scope, load_targets, parse_targets

SECRET = "s3cr3t-pw-never-shown"


def parse(text: str, kind: Kind = Kind.POSTGRES, **environ: str) -> list:  # type: ignore[type-arg]
    files = {"/run/pw": SECRET + "\n", "/run/dsn": f"host=127.0.0.1 password={SECRET}\n"}

    def read_file(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return files[path]

    return parse_targets(text, kind=kind, source="t.toml", environ=environ, read_file=read_file)


class TestAcceptedFiles:
    def test_a_server_and_its_database_targets_parse_with_labels_and_limits(self) -> None:
        targets = parse(
            """
            [[targets]]
            name = "shared-1"
            dsn_env = "PG1"
            password_file = "/run/pw"
            labels = { cluster = "a" }

            [[targets]]
            name = "blue-db"
            server = "shared-1"
            database = "addon_blue"
            labels = { app = "blue", plan = "hobby" }
            limits = { size_bytes = 1_000_000, connections = 20 }
            """,
            PG1="host=127.0.0.1 dbname=postgres",
        )
        server, blue = targets
        assert (server.name, server.dsn, server.password) == (
            "shared-1",
            "host=127.0.0.1 dbname=postgres",
            SECRET,
        )
        assert server.labels == (("cluster", "a"),)
        assert (blue.server, blue.database, blue.dsn) == ("shared-1", "addon_blue", None)
        assert blue.labels == (("app", "blue"), ("plan", "hobby"))
        assert blue.limits == Limits(size_bytes=1_000_000, connections=20)

    def test_a_dsn_file_is_read_without_its_trailing_newline(self) -> None:
        (target,) = parse('[[targets]]\nname = "a"\ndsn_file = "/run/dsn"\nscope = "database"')
        assert target.dsn == f"host=127.0.0.1 password={SECRET}"
        assert target.scope is Scope.DATABASE

    def test_an_empty_file_means_no_targets_yet(self) -> None:
        assert parse("") == []

    def test_secrets_stay_out_of_the_repr(self) -> None:
        (target,) = parse(
            '[[targets]]\nname = "a"\ndsn_file = "/run/dsn"\npassword_file = "/run/pw"'
        )
        assert SECRET not in repr(target)

    def test_load_targets_reads_the_file_from_disk(self, tmp_path: Path) -> None:
        path = tmp_path / "targets.toml"
        path.write_text('[[targets]]\nname = "r"\ndsn = "redis://127.0.0.1:1/0"\n')
        (target,) = load_targets(path, kind=Kind.REDIS)
        assert target.dsn == "redis://127.0.0.1:1/0"

    def test_load_targets_names_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(TargetsFileError, match=r"missing\.toml: cannot read"):
            load_targets(tmp_path / "missing.toml", kind=Kind.REDIS)


BAD = [
    ("not toml at all [", "not valid TOML"),
    ("other = 1", "unknown top-level keys"),
    ("targets = 3", "array of tables"),
    ('[[targets]]\ndsn = "x"', "'name' must be"),
    ('[[targets]]\nname = "bad name!"\ndsn = "x"', "'name' must be"),
    ('[[targets]]\nname = "a"\ndsn = "x"\n[[targets]]\nname = "a"\ndsn = "y"', "used twice"),
    ('[[targets]]\nname = "a"', "exactly one of 'dsn', 'dsn_env' or 'dsn_file'"),
    ('[[targets]]\nname = "a"\ndsn = "x"\ndsn_env = "Y"', "exactly one of"),
    ('[[targets]]\nname = "a"\ndsn_env = "NOPE"', "variable 'NOPE' is not set"),
    ('[[targets]]\nname = "a"\ndsn_file = "/nope"', "cannot read the DSN file '/nope'"),
    ('[[targets]]\nname = "a"\ndsn = ""', "'dsn' must be a non-empty string"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nport = 1', "unknown keys ['port']"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nlabels = { target = "x" }', "set by the exporter"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nlabels = { "1bad" = "x" }', "not a valid Prometheus"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nlabels = { app = 1 }', "must be a string"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nlabels = "app"', "'labels' must be a table"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nlimits = { size_bytes = -1 }', "positive number"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nlimits = { connections = 2.5 }', "whole number"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nlimits = { disk = 1 }', "unknown limits"),
    ('[[targets]]\nname = "a"\ndsn = "x"\nscope = "all"', "'scope' must be"),
    (
        '[[targets]]\nname = "a"\ndsn = "x"\npassword_env = "A"\npassword_file = "/run/pw"',
        "at most one of",
    ),
    ('[[targets]]\nname = "d"\nserver = "nope"\ndatabase = "x"', "not a target in this file"),
    ('[[targets]]\nname = "d"\nserver = "s"', "needs both 'server' and 'database'"),
    (
        '[[targets]]\nname = "s"\ndsn = "x"\n[[targets]]\nname = "d"\nserver = "s"\n'
        'database = "x"\ndsn = "y"',
        "takes no dsn",
    ),
    (
        '[[targets]]\nname = "s"\ndsn = "x"\n[[targets]]\nname = "d"\nserver = "s"\ndatabase = "x"'
        '\n[[targets]]\nname = "e"\nserver = "d"\ndatabase = "y"',
        "itself a database target",
    ),
    (
        '[[targets]]\nname = "s"\ndsn = "x"\n[[targets]]\nname = "d"\nserver = "s"\ndatabase = "x"'
        '\n[[targets]]\nname = "e"\nserver = "s"\ndatabase = "x"',
        "both claim database 'x'",
    ),
]


class TestRejectedFiles:
    @pytest.mark.parametrize(("text", "message"), BAD)
    def test_each_mistake_is_named_with_the_file(self, text: str, message: str) -> None:
        with pytest.raises(TargetsFileError) as info:
            parse(text)
        assert "t.toml" in str(info.value)
        assert message in str(info.value)

    def test_a_redis_target_must_be_a_redis_url_and_the_error_does_not_echo_it(self) -> None:
        with pytest.raises(TargetsFileError, match="redis://, rediss:// or unix://") as info:
            parse(f'[[targets]]\nname = "r"\ndsn = "http://u:{SECRET}@h"', kind=Kind.REDIS)
        assert SECRET not in str(info.value)

    def test_redis_targets_take_no_server_or_database(self) -> None:
        with pytest.raises(TargetsFileError, match=r"unknown keys \['database', 'server'\]"):
            parse('[[targets]]\nname = "r"\nserver = "a"\ndatabase = "b"', kind=Kind.REDIS)
