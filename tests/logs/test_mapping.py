"""Which app and process a record belongs to: kubernetes metadata first, then the tag."""

from __future__ import annotations

from typing import Any

import pytest

from logs.mapping import Target, resolve, target_from_tag, text_of
from logs.model import Source


class TestTags:
    @pytest.mark.parametrize(
        ("tag", "target"),
        [
            ("slipway.shop.web.1", Target("shop", Source.APP, "web.1")),
            ("slipway.shop.worker", Target("shop", Source.APP, "worker")),
        ],
    )
    def test_slipway_tags_name_app_and_process(self, tag: str, target: Target) -> None:
        assert target_from_tag(tag) == target

    @pytest.mark.parametrize("source", [Source.ROUTER, Source.BUILD, Source.RELEASE])
    def test_a_tag_claiming_a_platform_source_names_an_app_process_instead(
        self, source: Source
    ) -> None:
        """Attack: a shipper tags its lines slipway.shop.router to pass them off as the
        platform's; they stay app lines of process `router`, with the claim kept for a count."""
        target = target_from_tag(f"slipway.shop.{source.value}")
        assert target == Target("shop", Source.APP, source.value, claimed=source)

    @pytest.mark.parametrize(
        "tag",
        ["kube.var.log.containers.x", "slipway.shop", "slipway.Bad_App.web.1", "slipway..web"],
    )
    def test_other_tags_name_nothing(self, tag: str) -> None:
        assert target_from_tag(tag) is None


class TestKubernetesMetadata:
    def record(self, **labels: str) -> dict[str, Any]:
        return {"log": "x", "kubernetes": {"pod_name": "shop-web-5d8f-abcde", "labels": labels}}

    def test_labels_name_the_app_and_the_pod_suffix_names_the_dyno(self) -> None:
        record = self.record(**{"slipway.dev/app": "shop", "slipway.dev/process": "web"})
        assert resolve("kube.x", record, {}) == Target("shop", Source.APP, "web.abcde")

    def test_a_build_pod_is_a_build_source(self) -> None:
        record = self.record(**{"slipway.dev/app": "shop", "slipway.dev/source": "build"})
        assert resolve("kube.x", record, {}) == Target("shop", Source.BUILD, "build")

    def test_a_build_job_s_pod_is_that_build_s_process(self) -> None:
        labels = {"slipway.dev/app": "shop", "slipway.dev/source": "build"}
        record = self.record(**labels, **{"slipway.dev/build": "9f2c4e1a"})
        assert resolve("kube.x", record, {}) == Target("shop", Source.BUILD, "build.9f2c4e1a")

    def test_a_pod_labelled_as_the_router_stays_an_app_line(self) -> None:
        """Attack: a record whose metadata says slipway.dev/source=router; no platform pod is
        labelled so, so it is the app's own line."""
        record = self.record(**{"slipway.dev/app": "shop", "slipway.dev/source": "router"})
        target = resolve("kube.x", record, {})
        assert target is not None
        assert (target.source, target.claimed) == (Source.APP, Source.ROUTER)

    def test_a_release_phase_pod_is_a_release_source(self) -> None:
        """The platform labels its release Jobs' pods (agent/kubernetes/manifests.py)."""
        record = self.record(**{"slipway.dev/app": "shop", "slipway.dev/source": "release"})
        assert resolve("kube.x", record, {}) == Target("shop", Source.RELEASE, "release")

    def test_a_pod_without_the_app_label_falls_back_to_the_tag(self) -> None:
        assert resolve("slipway.blog.web.1", self.record(), {}) == Target(
            "blog", Source.APP, "web.1"
        )

    def test_an_invalid_app_label_names_nothing(self) -> None:
        assert resolve("kube.x", self.record(**{"slipway.dev/app": "../etc"}), {}) is None


class TestText:
    def test_the_log_key_without_its_newline(self) -> None:
        assert text_of({"log": "hello\n", "stream": "stdout"}) == "hello"

    def test_message_and_msg_keys_work_too(self) -> None:
        assert text_of({"message": "m"}) == "m"
        assert text_of({"msg": b"bytes \xff"}) == "bytes \ufffd"

    def test_a_structured_record_becomes_json_without_kubernetes_metadata(self) -> None:
        assert text_of({"b": 1, "a": "x", "kubernetes": {}}) == '{"a": "x", "b": 1}'
