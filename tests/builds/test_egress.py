"""Where a tenant's source may lead, as pure rules: inward ranges, the allow-list, git's pins."""

from __future__ import annotations

import ipaddress

import pytest

from control.builds.egress import (
    Allowed,
    Destination,
    Egress,
    InwardSource,
    destination_of,
    inward,
    parse_allow,
    refuse,
)


@pytest.mark.parametrize(
    ("address", "what"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.169.254", "link-local, the cloud metadata endpoint among it"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("239.1.2.3", "multicast"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("fc00::1", "private (unique local)"),
        ("fd12:3456::1", "private (unique local)"),
        ("ff02::1", "multicast"),
        # IPv4 addresses in IPv6 clothes are what they carry.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local, the cloud metadata endpoint among it"),
        ("64:ff9b::a00:1", "private"),
        ("2002:7f00:1::", "loopback"),
    ],
)
def test_inward_ranges(address: str, what: str) -> None:
    assert inward(ipaddress.ip_address(address)) == what


@pytest.mark.parametrize(
    "address", ["140.82.112.3", "100.128.0.1", "172.32.0.1", "2606:4700::1", "::ffff:8.8.8.8"]
)
def test_addresses_on_the_internet_are_not_inward(address: str) -> None:
    assert inward(ipaddress.ip_address(address)) is None
    assert Egress().permits(ipaddress.ip_address(address), 443)


def test_the_allow_list_takes_networks_with_or_without_a_port() -> None:
    assert parse_allow("10.0.0.0/8, 127.0.0.1:8443 [fd00::/8],[::1]:9000") == (
        Allowed(ipaddress.ip_network("10.0.0.0/8")),
        Allowed(ipaddress.ip_network("127.0.0.1/32"), 8443),
        Allowed(ipaddress.ip_network("fd00::/8")),
        Allowed(ipaddress.ip_network("::1/128"), 9000),
    )
    assert parse_allow("") == ()


@pytest.mark.parametrize("text", ["git.internal", "10.0.0.0/33", "127.0.0.1:0", "[::1]:x"])
def test_an_allow_list_entry_that_is_no_network_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SLIPWAY_SOURCES_ALLOW"):
        parse_allow(text)


def test_an_allowed_port_allows_that_port_only() -> None:
    egress = Egress(allow=parse_allow("127.0.0.1:8443, 10.1.0.0/16"))
    loopback, private = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")
    assert egress.permits(loopback, 8443)
    assert not egress.permits(loopback, 8444)
    assert egress.permits(ipaddress.ip_address("::ffff:127.0.0.1"), 8443)
    assert egress.permits(private, 22)
    assert not egress.permits(ipaddress.ip_address("10.2.0.1"), 22)
    assert Egress(allow_private=True).permits(loopback, 1)


def test_the_settings_come_from_the_environment() -> None:
    assert Egress.from_env({}) == Egress()
    assert Egress.from_env(
        {"SLIPWAY_SOURCES_ALLOW_PRIVATE": "true", "SLIPWAY_SOURCES_ALLOW": "10.0.0.0/8"}
    ) == Egress(allow_private=True, allow=parse_allow("10.0.0.0/8"))
    with pytest.raises(ValueError, match="SLIPWAY_SOURCES_ALLOW_PRIVATE must be true or false"):
        Egress.from_env({"SLIPWAY_SOURCES_ALLOW_PRIVATE": "1"})


def test_a_refusal_names_the_address_and_the_setting_that_allows_it() -> None:
    with pytest.raises(InwardSource) as raised:
        refuse([ipaddress.ip_address("203.0.113.5"), ipaddress.ip_address("::1")], 443, Egress())
    assert str(raised.value) == (
        "source URL resolves to ::1, which is inside the platform's network (loopback); an "
        "operator can allow it with SLIPWAY_SOURCES_ALLOW=[::1]:443 "
        "(or SLIPWAY_SOURCES_ALLOW_PRIVATE=true)"
    )


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("https://github.com/o/r.git", ("https", "github.com", 443)),
        ("https://u:p@git.test:8443/r.git?x=1", ("https", "git.test", 8443)),
        ("https://[::1]:9/r.git", ("https", "[::1]", 9)),
        ("ssh://git@git.test/r.git", ("ssh", "git.test", 22)),
        ("ssh://git@git.test:2222/r.git", ("ssh", "git.test", 2222)),
        ("git@github.com:o/r.git", ("ssh", "github.com", 22)),
        ("http://10.0.0.1/r.git", ("http", "10.0.0.1", 80)),
        ("/srv/repo", None),
        ("file:///srv/repo", None),
    ],
)
def test_the_destination_of_a_url(url: str, where: tuple[str, str, int] | None) -> None:
    assert destination_of(url) == where


def test_git_is_pinned_to_the_checked_addresses_and_follows_no_redirect() -> None:
    addresses = (ipaddress.ip_address("203.0.113.5"), ipaddress.ip_address("2001:db8::5"))
    env = Destination("https", "git.test", 443, addresses).git_config()
    assert env == {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "http.followRedirects",
        "GIT_CONFIG_VALUE_0": "false",
        "GIT_CONFIG_KEY_1": "http.curloptResolve",
        "GIT_CONFIG_VALUE_1": "git.test:443:203.0.113.5,[2001:db8::5]",
    }
    # ssh resolves for itself (checked just before); a literal address needs no pin.
    for scheme, host in (("ssh", "git.test"), ("https", "203.0.113.5")):
        env = Destination(scheme, host, 443, addresses[:1]).git_config()
        assert env["GIT_CONFIG_COUNT"] == "1"
