"""One masking function for every URL slipway shows: userinfo and secret query values."""

from __future__ import annotations

import io
import logging

import pytest

from kit.logfmt import configure, format_fields
from kit.redact import mask_data, mask_path, mask_text, mask_url


class TestAUrlsCredentials:
    @pytest.mark.parametrize(
        ("url", "masked"),
        [
            ("https://user:secret@example.com/r.git", "https://***@example.com/r.git"),
            ("https://ghp_tokenonly@github.com/o/r.git", "https://***@github.com/o/r.git"),
            ("ssh://git:pw@host:2222/r.git", "ssh://***@host:2222/r.git"),
            ("postgres://app:pw@db:5432/app", "postgres://***@db:5432/app"),
            ("https://u:p%40ss@h@example.com/x", "https://***@example.com/x"),
        ],
    )
    def test_the_whole_userinfo_is_masked(self, url: str, masked: str) -> None:
        assert mask_url(url) == masked

    @pytest.mark.parametrize(
        ("url", "masked"),
        [
            ("https://h/r.git?access_token=abc", "https://h/r.git?access_token=***"),
            ("https://h/r?token=abc&ref=main", "https://h/r?token=***&ref=main"),
            ("https://h/r?ref=main;password=abc", "https://h/r?ref=main;password=***"),
            ("https://h/r?key=abc#top", "https://h/r?key=***#top"),
            ("https://h/r?sig=abc&se=2030", "https://h/r?sig=***&se=2030"),
            (
                "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Signature=f00&X-Amz-Date=1",
                "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1",
            ),
        ],
    )
    def test_query_values_named_like_secrets_are_masked(self, url: str, masked: str) -> None:
        assert mask_url(url) == masked

    @pytest.mark.parametrize(
        "url",
        [
            "https://github.com/o/r.git",
            "https://h/r?ref=main&depth=1",
            "git@github.com:o/r.git",
            "/srv/apps/shop",
            "https://registry.npmjs.org/@scope/pkg",
        ],
    )
    def test_a_url_without_credentials_is_unchanged(self, url: str) -> None:
        assert mask_url(url) == url


class TestRequestTargets:
    """What the router logs: a path and its query, as the client sent them."""

    @pytest.mark.parametrize(
        ("target", "masked"),
        [
            ("/x?access_token=abc&page=2", "/x?access_token=***&page=2"),
            ("/cb?code=abc&state=xyz", "/cb?code=***&state=xyz"),
            ("/x?API_KEY=abc;apikey=def", "/x?API_KEY=***;apikey=***"),
            ("/x?%74oken=abc&page=2", "/x?%74oken=***&page=2"),
            ("/f?X-Amz-Signature=abc&X-Amz-Date=1", "/f?X-Amz-Signature=***&X-Amz-Date=1"),
            ("/a?token=", "/a?token="),  # nothing to hide
            ("http://u:pw@h/x?password=abc", "http://***@h/x?password=***"),
        ],
    )
    def test_secret_query_values_are_masked_and_the_rest_kept(
        self, target: str, masked: str
    ) -> None:
        assert mask_path(target) == masked

    @pytest.mark.parametrize(
        "target",
        ["/", "/users/42", "/search?q=shoes&page=2", "/x?country_code=US&promo_code=ABC", "*"],
    )
    def test_a_target_without_credentials_is_returned_as_it_is(self, target: str) -> None:
        assert mask_path(target) == target


class TestFreeText:
    def test_every_url_in_a_git_error_is_masked(self) -> None:
        text = (
            "fatal: unable to access 'https://u:secret@127.0.0.1:9/r.git?access_token=abc/': "
            "Failed to connect; see https://t0k3n@mirror.example/r.git"
        )
        masked = mask_text(text)
        for secret in ("secret", "abc", "t0k3n"):
            assert secret not in masked
        assert masked == (
            # git appends the "/" to the query: it goes with the value it cannot tell apart.
            "fatal: unable to access 'https://***@127.0.0.1:9/r.git?access_token=***': "
            "Failed to connect; see https://***@mirror.example/r.git"
        )

    def test_text_without_urls_is_returned_as_it_is(self) -> None:
        text = "remote: Invalid username or password. key=value"
        assert mask_text(text) is text


class TestLogLines:
    def test_a_field_carrying_a_url_with_credentials_is_masked(self) -> None:
        line = format_fields({"source": "https://u:hunter2@h/r.git?token=abc", "app": "shop"})
        assert line == 'source="https://***@h/r.git?token=***" app=shop'

    def test_an_exception_naming_a_url_is_masked_in_the_error_field(self) -> None:
        stream = io.StringIO()
        configure("INFO", stream)
        try:
            raise RuntimeError("cannot fetch https://u:hunter2@h/r.git")
        except RuntimeError:
            logging.getLogger("slipway.test").exception("build crashed")
        assert "hunter2" not in stream.getvalue()
        assert "https://***@h/r.git" in stream.getvalue()


class TestStructuredData:
    def test_every_string_in_nested_data_is_masked_and_the_rest_kept(self) -> None:
        detail = {
            "source": "https://u:pw@h/r.git",
            "hosts": ["https://h/x?token=abc", "plain"],
            "version": 3,
            "nested": {"url": "redis://:pw@127.0.0.1:6379/0", "ok": True},
        }
        assert mask_data(detail) == {
            "source": "https://***@h/r.git",
            "hosts": ["https://h/x?token=***", "plain"],
            "version": 3,
            "nested": {"url": "redis://***@127.0.0.1:6379/0", "ok": True},
        }
