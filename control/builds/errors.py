"""The builders' errors.

BuildError
├── SourceError        the source could not be fetched (bad URL, unknown commit, bad tarball)
├── ProcfileError      the Procfile is missing or malformed; carries the line number
├── DetectError        no supported stack, or its toolchain is not installed
└── BuildFailed        a build step failed; carries the last lines of output
    └── BuildTimeout   the build ran past its timeout and was killed
"""

from __future__ import annotations


class BuildError(Exception):
    """Base of every error a builder raises on purpose."""


class SourceError(BuildError):
    pass


class ProcfileError(BuildError):
    def __init__(self, message: str, *, line: int | None = None) -> None:
        where = f"Procfile line {line}: " if line is not None else "Procfile: "
        super().__init__(where + message)
        self.line = line


class DetectError(BuildError):
    pass


class BuildFailed(BuildError):
    def __init__(self, message: str, *, tail: tuple[str, ...] = ()) -> None:
        text = message if not tail else message + "\n" + "\n".join(tail)
        super().__init__(text)
        self.message = message
        self.tail = tail


class BuildTimeout(BuildFailed):
    pass
