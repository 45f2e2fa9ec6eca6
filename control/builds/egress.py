"""Where a tenant's source URL may lead: off the platform's network, never inward.

The control plane fetches what an app token names (``git fetch https://...``)
from its own network position, where loopback holds the agent API, the logs
service, Postgres, Redis and the search instances, the cluster's private
ranges hold the platform's pods, and 169.254.169.254 hands out the node's
cloud credentials. So a tenant's source is refused when its host is, or
resolves to, an address in any of ``INWARD`` (loopback, link-local, private,
CGNAT, unspecified, multicast, reserved), unless the operator allows it
(``SLIPWAY_SOURCES_ALLOW_PRIVATE``, ``SLIPWAY_SOURCES_ALLOW``).

The addresses are checked as resolved, and git is held to them: the fetch
pins the name to the addresses checked (``http.curloptResolve``), so a DNS
answer that changes between the check and the connection (rebinding) is
never used, and follows no redirect (``http.followRedirects=false``), whose
target nobody checked. ssh resolves the name itself: its address is checked
just before, not pinned.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from control.builds.errors import SourceError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Ranges inside the platform's network (or nobody's), with what each is.
INWARD: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), what)
    for cidr, what in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local, the cloud metadata endpoint among it"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("100::/64", "discard"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
#: Seconds for resolving a source's host: DNS that slow fails the fetch anyway.
RESOLVE_TIMEOUT = 5.0
#: The settings that let an operator fetch from inside (named in every refusal).
ALLOW_PRIVATE_VAR = "SLIPWAY_SOURCES_ALLOW_PRIVATE"
ALLOW_VAR = "SLIPWAY_SOURCES_ALLOW"

_DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418, "ssh": 22, "git+ssh": 22, "ssh+git": 22}
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.DOTALL)
# What inet_aton takes for an IPv4 address (127.1, 0x7f.1, 2130706433, 017700000001):
# curl and git read such a host as that address too.
_NUMERIC = re.compile(r"^[0-9A-Fa-fXx.]+$")


class InwardSource(SourceError):
    """The source's host is, or resolves to, an address inside the platform's network."""


@dataclass(frozen=True, slots=True)
class Allowed:
    """One entry of ``SLIPWAY_SOURCES_ALLOW``: a network, and a port or any."""

    network: Network
    port: int | None = None

    def covers(self, address: Address, port: int) -> bool:
        return address in self.network and self.port in (None, port)


@dataclass(frozen=True, slots=True)
class Egress:
    """What a tenant's source may reach besides the internet: the operator's exceptions."""

    allow_private: bool = False
    """Every inward address (``SLIPWAY_SOURCES_ALLOW_PRIVATE=true``): an install whose git
    server sits on its private network, and nothing else there worth protecting."""
    allow: tuple[Allowed, ...] = ()
    """These networks (and ports) only (``SLIPWAY_SOURCES_ALLOW``): the internal git server."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Egress:
        flag = (environ.get(ALLOW_PRIVATE_VAR) or "false").lower()
        if flag not in ("true", "false"):
            raise ValueError(f"{ALLOW_PRIVATE_VAR} must be true or false, not {flag!r}")
        return cls(allow_private=flag == "true", allow=parse_allow(environ.get(ALLOW_VAR) or ""))

    def permits(self, address: Address, port: int) -> bool:
        if self.allow_private or inward(address) is None:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(entry.covers(address, port) for entry in self.allow)


def parse_allow(text: str) -> tuple[Allowed, ...]:
    """``10.0.0.0/8, 127.0.0.1:8443, [fd00::/8], [::1]:8443`` -> the entries; ValueError."""
    entries = []
    for item in text.replace(",", " ").split():
        network, port = item, None
        if item.startswith("["):
            network, _, tail = item[1:].partition("]")
            if tail:
                port = _port(item, tail.removeprefix(":"))
        elif item.count(":") == 1:
            network, _, tail = item.partition(":")
            port = _port(item, tail)
        try:
            entries.append(Allowed(ipaddress.ip_network(network, strict=False), port))
        except ValueError:
            raise ValueError(
                f"{ALLOW_VAR}: {item!r} is no network (10.0.0.0/8, 127.0.0.1:8443, [fd00::/8])"
            ) from None
    return tuple(entries)


def _port(item: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{ALLOW_VAR}: {item!r} has no valid port")
    return int(text)


def inward(address: Address) -> str | None:
    """What inward range ``address`` is in (an IPv6 form of an IPv4 address as that
    address), or None for an address on the internet."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return inward(embedded)
    for network, what in INWARD:
        if address in network:
            return what
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class Destination:
    """A source's host and port, and the addresses checked for it (to pin git to)."""

    scheme: str
    host: str
    port: int
    addresses: tuple[Address, ...]

    def git_config(self) -> dict[str, str]:
        """Environment giving git this fetch's configuration (``GIT_CONFIG_COUNT``): no
        redirect, and for a name over HTTP the checked addresses and no others."""
        pairs = [("http.followRedirects", "false")]
        if self.scheme in ("http", "https") and _literal(self.host) is None:
            pinned = ",".join(
                f"[{a}]" if isinstance(a, ipaddress.IPv6Address) else str(a) for a in self.addresses
            )
            names = dict.fromkeys((self.host, self.host.rstrip(".")))
            pairs += [("http.curloptResolve", f"{name}:{self.port}:{pinned}") for name in names]
        env = {"GIT_CONFIG_COUNT": str(len(pairs))}
        for index, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env


def destination_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL off this machine, ``url`` having passed ``classify``;
    None for a path."""
    found = _SCHEME.match(url)
    if found is not None:
        scheme = found["scheme"].lower()
        if scheme not in _DEFAULT_PORTS:
            return None
        authority = re.split(r"[/?#]", found["rest"], maxsplit=1)[0].rpartition("@")[2]
        if authority.startswith("["):
            host, _, tail = authority.partition("]")
            host, port = host + "]", tail.removeprefix(":")
        else:
            host, _, port = authority.partition(":")
        return scheme, host, int(port) if port else _DEFAULT_PORTS[scheme]
    head = url.split("/", 1)[0]
    if ":" not in head:
        return None
    # scp-like [user@]host:path: ssh on its port.
    return "ssh", head.split(":", 1)[0].rpartition("@")[2], 22


def _literal(host: str) -> Address | None:
    """The address ``host`` spells, in any form git or curl would read as one."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    if _NUMERIC.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


async def _resolve(host: str, port: int) -> tuple[Address, ...]:
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        # curl answers these itself, without asking DNS (RFC 6761).
        return (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
    literal = _literal(host)
    if literal is not None:
        return (literal,)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise SourceError(f"cannot resolve the source's host {host!r}: {exc}") from None
    found: dict[Address, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        found[ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])] = None
    if not found:
        raise SourceError(f"cannot resolve the source's host {host!r}")
    return tuple(found)


async def check_destination(url: str, egress: Egress) -> Destination | None:
    """The destination of ``url`` (a tenant's, past ``classify``) with its addresses, each
    permitted by ``egress``; InwardSource naming the first that is not, SourceError when the
    host does not resolve; None for a path (no host to reach)."""
    where = destination_of(url)
    if where is None:
        return None
    scheme, host, port = where
    addresses = await _resolve(host, port)
    refuse(addresses, port, egress)
    return Destination(scheme, host, port, addresses)


async def fetch_config(url: str, egress: Egress) -> dict[str, str]:
    """git's environment for fetching a tenant's ``url`` (``Destination.git_config``), once
    its host is checked as resolved; InwardSource or SourceError, as ``check_destination``."""
    destination = await check_destination(url, egress)
    return destination.git_config() if destination is not None else {}


def refuse(addresses: Iterable[Address], port: int, egress: Egress) -> None:
    """InwardSource for the first of ``addresses`` that ``egress`` does not permit."""
    for address in addresses:
        if not egress.permits(address, port):
            shown = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else address
            raise InwardSource(
                f"source URL resolves to {address}, which is inside the platform's network "
                f"({inward(address)}); an operator can allow it with "
                f"{ALLOW_VAR}={shown}:{port} (or {ALLOW_PRIVATE_VAR}=true)"
            )
