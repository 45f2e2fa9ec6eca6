"""The ``dyno`` source (R14/R15 and runtime-metrics lines) is the platform's: only the
agent's monitor writes it in process; a shipper or a pod that claims it gets an app line."""

from __future__ import annotations

from logs.mapping import Target, resolve, target_from_tag
from logs.model import Source, WireLine, heroku_format


def test_a_tag_claiming_the_dyno_source_names_an_app_process() -> None:
    """Attack: an app ships `Error R14` lines tagged slipway.shop.dyno to fake a platform
    warning (or to bury a real one); they stay the app's own, the claim counted."""
    assert target_from_tag("slipway.shop.dyno") == Target(
        "shop", Source.APP, "dyno", claimed=Source.DYNO
    )


def test_a_pod_labelled_with_the_dyno_source_stays_an_app_line() -> None:
    """Attack: a tenant pod labelled slipway.dev/source=dyno (no platform pod is)."""
    record = {
        "log": "Error R15 (Memory quota vastly exceeded)",
        "kubernetes": {
            "pod_name": "shop-web-5d8f-abcde",
            "labels": {"slipway.dev/app": "shop", "slipway.dev/source": "dyno"},
        },
    }
    target = resolve("kube.x", record, {})
    assert target is not None
    assert (target.source, target.claimed) == (Source.APP, Source.DYNO)


def test_dyno_lines_read_as_herokus_platform_lines() -> None:
    line: WireLine = {
        "app": "shop",
        "seq": 1,
        "time": 0.0,
        "source": "dyno",
        "process": "web.1",
        "text": "Error R14 (Memory quota exceeded)",
    }
    assert heroku_format(line) == (
        "1970-01-01T00:00:00.000000+00:00 slipway[web.1]: Error R14 (Memory quota exceeded)"
    )
