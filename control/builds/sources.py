"""What a build's source URL may name, as pure rules: kinds of URL and what git may do with them.

git takes far more than a URL where a URL goes: ``--upload-pack=CMD`` (an
option: runs CMD), ``ext::CMD`` (a remote helper: runs CMD), ``file://`` and
plain paths (reads this machine's disk, other apps' sources among it). So a
source URL is sorted before git sees it:

- refused for everybody: anything git could take for an option (a leading
  ``-``, in the URL or in its host or user), remote helpers
  (``transport::address``), control characters, schemes git does not fetch;
- ``REMOTE``: ``https://``, ``ssh://`` and scp-like ``user@host:path``, what an
  app token may name;
- ``CLEARTEXT`` (``http://``, ``git://``) and ``LOCAL`` (a path, ``file://``):
  an admin's only (``slipway up``'s builds of a directory, tests, mirrors).

And git is told the same at run time: ``--`` before the URL, and only the
transports the source's namer may use (``GIT_ALLOW_PROTOCOL``), so a URL that
slipped past the rules still cannot reach a transport it was not given.
"""

from __future__ import annotations

import enum
import re
from urllib.parse import unquote, urlsplit

from control.builds.errors import SourceError

#: A commit to build, by its sha (abbreviated to 7 digits at least, as git shows them).
COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
#: git's transports for a source an app token named (GIT_ALLOW_PROTOCOL).
REMOTE_PROTOCOLS = "https:ssh"
#: ...and for an admin's: every transport that only fetches, never ext:: (runs a
#: command) nor fd::.
ADMIN_PROTOCOLS = "file:git:http:https:ssh"


class Kind(enum.StrEnum):
    #: https://, ssh://, user@host:path: off this machine, over an authenticated transport.
    REMOTE = "remote"
    #: http://, git://: off this machine, but unauthenticated and unencrypted.
    CLEARTEXT = "cleartext"
    #: A path or file:// URL: this machine's disk.
    LOCAL = "local"


_SCHEMES = {
    "https": Kind.REMOTE,
    "ssh": Kind.REMOTE,
    "git+ssh": Kind.REMOTE,
    "ssh+git": Kind.REMOTE,
    "http": Kind.CLEARTEXT,
    "git": Kind.CLEARTEXT,
    "file": Kind.LOCAL,
}
# git's remote-helper syntax (transport.c): a scheme-like word, then "::".
_HELPER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.\-]*::")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.DOTALL)
# A DNS name or an IPv4 address (never starting with "-": ssh would take it for an
# option), or a bracketed IPv6 address.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_]([A-Za-z0-9_.\-]*[A-Za-z0-9_])?)$")
_USER = re.compile(r"^[A-Za-z0-9_.~%!$&'()*+,;=:\-]*$")
_PORT = re.compile(r"^[0-9]{0,5}$")
#: The suffixes that make a source a tarball rather than a git repository.
TARBALL_SUFFIXES = (".tar", ".tgz", ".tar.gz")

ACCEPTED = "https://host/repo.git, ssh://host/repo.git or user@host:repo.git"
#: The builds table's source_url column holds this many characters (control/store/schema.py).
MAX_URL = 1000


def classify(url: str) -> Kind:
    """The kind of ``url``, or SourceError (with what is accepted) for what nobody may name."""
    if not url:
        raise SourceError(f"the source URL is empty: give a git URL ({ACCEPTED})")
    if len(url) > MAX_URL:
        raise SourceError(f"the source URL is {len(url)} characters long; at most {MAX_URL}")
    if url.startswith("-"):
        raise SourceError(
            f"source URL {url!r} starts with '-', which git takes for an option: "
            f"give a git URL ({ACCEPTED})"
        )
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise SourceError("the source URL contains control characters")
    if _HELPER.match(url):
        raise SourceError(
            f"source URL {url!r} names a git remote helper ('transport::'), which runs "
            f"programs on this machine: give a git URL ({ACCEPTED})"
        )
    found = _SCHEME.match(url)
    if found is not None:
        return _classify_scheme(url, found["scheme"].lower(), found["rest"])
    head = url.split("/", 1)[0]
    if ":" in head:
        # git's scp-like syntax: [user@]host:path, whenever a ':' comes before any '/'.
        authority = head.split(":", 1)[0]
        _check_authority(url, authority)
        return Kind.REMOTE
    return Kind.LOCAL


def _classify_scheme(url: str, scheme: str, rest: str) -> Kind:
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise SourceError(
            f"source URL scheme {scheme!r} is not one git fetches from: give {ACCEPTED}"
        )
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if kind is Kind.LOCAL:
        if authority not in ("", "localhost"):
            raise SourceError(f"file:// URL {url!r} must name this machine (file:///path)")
        return kind
    _, port = _split_port(_check_authority(url, authority))
    if not _PORT.match(port):
        raise SourceError(f"source URL {url!r} has an invalid port")
    return kind


def _check_authority(url: str, authority: str) -> str:
    """``[user@]host[:port]`` checked; returns ``host[:port]``."""
    user, at, host_port = authority.rpartition("@")
    host, _ = _split_port(host_port)
    if (at and (user.startswith("-") or not _USER.match(user))) or not _HOST.match(host):
        raise SourceError(
            f"source URL {url!r} has an invalid user or host (neither may start with '-'): "
            f"give a git URL ({ACCEPTED})"
        )
    return host_port


def _split_port(host_port: str) -> tuple[str, str]:
    if host_port.startswith("["):
        host, _, tail = host_port.partition("]")
        return host + "]", tail.removeprefix(":")
    host, _, port = host_port.partition(":")
    return host, port


def is_tarball(url: str) -> bool:
    return url.endswith(TARBALL_SUFFIXES)


def check_commit(commit: str) -> str:
    """``commit`` if it is a sha: never a branch name git could take for an option."""
    if not COMMIT.match(commit):
        raise SourceError(f"commit {commit!r} is not a hexadecimal sha (7-64 digits)")
    return commit


def check_git_source(url: str, commit: str, *, tenant: bool) -> Kind:
    """A git source as a builder takes it: SourceError unless its namer may fetch it.

    The control plane's API checks the same before it answers; the builders check
    again, so no other way in (a CLI, a review app) can skip it.
    """
    kind = classify(url)
    if kind is not Kind.REMOTE and tenant:
        raise SourceError(
            f"only an admin may build from {url!r} ({kind.value}): give a git URL ({ACCEPTED})"
        )
    check_commit(commit)
    return kind


def protocols(*, tenant: bool) -> str:
    """GIT_ALLOW_PROTOCOL for fetching a source an app token (tenant) or an admin named."""
    return REMOTE_PROTOCOLS if tenant else ADMIN_PROTOCOLS


def local_repository(url: str) -> str | None:
    """The path a LOCAL source names (a path, or ``file://[localhost]/path``); None for a
    URL off this machine. ``url`` has passed ``check_git_source``."""
    if classify(url) is not Kind.LOCAL:
        return None
    if url.lower().startswith("file://"):
        return unquote(urlsplit(url).path)
    return url


#: The longest branch name taken (git's own limit is the filesystem's: 255 per component).
MAX_BRANCH = 255


def check_branch(name: str) -> str:
    """``name`` if git would take it as a branch (``git check-ref-format --branch``): no
    ``..``, ``@{``, ``//``, space, control character or any of ``~^:?*[\\``, no leading
    ``-`` or ``/``, no component starting with ``.`` or ending with ``.lock``, no trailing
    ``/`` or ``.``; SourceError saying which rule it broke."""
    problem = _branch_problem(name)
    if problem is not None:
        raise SourceError(f"{name!r} is not a branch name: {problem}")
    return name


def _branch_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_BRANCH:
        return f"it is longer than {MAX_BRANCH} characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "it holds a control character"
    if " " in name:
        return "it holds a space"
    if bad := sorted({c for c in name if c in "~^:?*[\\"}):
        return f"it holds {' '.join(bad)}"
    if name.startswith("-"):
        return "it starts with '-'"
    if ".." in name:
        return "it holds '..'"
    if "@{" in name or name == "@":
        return "it holds '@{' or is '@'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "it starts or ends with '/', or holds '//'"
    if name.endswith("."):
        return "it ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return "a part of it starts with '.'"
        if part.endswith(".lock"):
            return "a part of it ends with '.lock'"
    return None
