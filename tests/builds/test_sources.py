"""What a source URL may name: kinds of URL, and what nobody may name (pure rules)."""

from __future__ import annotations

import pytest

from control.builds.errors import SourceError
from control.builds.sources import Kind, check_git_source, classify, protocols

SHA = "0123456789abcdef0123456789abcdef01234567"


class TestKindsOfUrl:
    @pytest.mark.parametrize(
        ("url", "kind"),
        [
            ("https://github.com/o/r.git", Kind.REMOTE),
            ("https://user:pw@git.example:8443/o/r.git", Kind.REMOTE),
            ("ssh://git@github.com/o/r.git", Kind.REMOTE),
            ("git+ssh://git@[::1]:22/o/r.git", Kind.REMOTE),
            ("git@github.com:o/r.git", Kind.REMOTE),
            ("github.com:o/r.git", Kind.REMOTE),
            ("HTTPS://GitHub.com/o/r.git", Kind.REMOTE),
            ("http://git.example/r.git", Kind.CLEARTEXT),
            ("git://git.example/r.git", Kind.CLEARTEXT),
            ("/srv/repos/shop", Kind.LOCAL),
            ("../x", Kind.LOCAL),
            ("x.git", Kind.LOCAL),
            ("file:///etc", Kind.LOCAL),
            ("file://localhost/srv/app.tar.gz", Kind.LOCAL),
        ],
    )
    def test_each_url_is_remote_cleartext_or_local(self, url: str, kind: Kind) -> None:
        assert classify(url) is kind


class TestWhatNobodyMayName:
    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("--upload-pack=:;id>pwned.txt;", "git takes for an option"),
            ("-c core.sshCommand=touch /tmp/x", "git takes for an option"),
            ("ext::sh -c touch% /tmp/pwned", "remote helper"),
            ("fd::17", "remote helper"),
            ("foo::https://x/r.git", "remote helper"),
            ("ssh://-oProxyCommand=touch%20x/r.git", "invalid user or host"),
            ("ssh://-oProxyCommand=x@host/r.git", "invalid user or host"),
            ("git@-oProxyCommand=touch:r.git", "invalid user or host"),
            ("https:///r.git", "invalid user or host"),
            ("https://host:99999999/r.git", "invalid port"),
            ("file://other-host/etc", "must name this machine"),
            ("gopher://host/r.git", "not one git fetches from"),
            ("https://host/r.git\n--upload-pack=x", "control characters"),
            ("", "empty"),
            ("https://host/" + "r" * 1000 + ".git", "at most 1000"),
        ],
    )
    def test_options_helpers_and_odd_urls_are_refused_with_the_reason(
        self, url: str, reason: str
    ) -> None:
        with pytest.raises(SourceError, match=reason):
            classify(url)


class TestWhoMayFetchWhat:
    @pytest.mark.parametrize("url", ["/etc", "file:///etc", "../x", "http://h/r.git"])
    def test_a_tenant_may_not_build_from_this_machine_or_cleartext(self, url: str) -> None:
        with pytest.raises(SourceError, match="only an admin may build"):
            check_git_source(url, SHA, tenant=True)

    def test_an_admin_may_build_from_a_path(self) -> None:
        assert check_git_source("/srv/repos/shop", SHA, tenant=False) is Kind.LOCAL

    @pytest.mark.parametrize("commit", ["--foo", "main", "-c", "HEAD~1", "abc"])
    def test_a_commit_is_a_sha_never_a_ref_or_an_option(self, commit: str) -> None:
        with pytest.raises(SourceError, match="is not a hexadecimal sha"):
            check_git_source("https://h/r.git", commit, tenant=False)

    def test_git_gets_only_https_and_ssh_for_a_tenant(self) -> None:
        assert protocols(tenant=True) == "https:ssh"
        assert "ext" not in protocols(tenant=False).split(":")
        assert "fd" not in protocols(tenant=False).split(":")
