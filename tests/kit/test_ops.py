from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from kit.ops import ops_app


async def test_ops_endpoints_answer_and_readyz_says_why_not() -> None:
    registry = CollectorRegistry()
    Counter("slipway_test_things", "things", registry=registry).inc(3)
    reason: list[str | None] = ["warming up"]
    app = ops_app(registry=registry, ready=lambda: reason[0])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/healthz")).status == 200
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert "warming up" in await resp.text()
        reason[0] = None
        assert (await client.get("/readyz")).status == 200
        text = await (await client.get("/metrics")).text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["slipway_test_things"].samples[0].value == 3
