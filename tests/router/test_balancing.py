"""Round robin holds under steady keep-alive load: an endpoint added to a route (a scale-up)
gets its share, though the first one always has an idle pooled connection to offer."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest

from router.routes import AppRoute, Endpoint
from tests.router.conftest import AppProcess, RunningRouter, start_app, start_router


@pytest.fixture
def second() -> AsyncIterator[AppProcess]:
    process = start_app("second")
    yield process
    process.proc.terminate()
    process.proc.wait(10)


async def test_a_new_endpoint_gets_its_share_of_sequential_keep_alive_requests(
    app: AppProcess, second: AppProcess
) -> None:
    first = AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint,))
    r: RunningRouter = await start_router([first])
    try:
        async with aiohttp.ClientSession() as http:

            async def served_by() -> str:
                async with http.get(r.url + "/", headers={"Host": "hello.test"}) as resp:
                    assert resp.status == 200
                    return (await resp.text()).split()[2]

            for _ in range(5):  # warms the pool of the only endpoint
                assert await served_by() == "app"
            added = Endpoint("127.0.0.1", second.port, "web.2")
            r.route(AppRoute("hello", hosts=("hello.test",), endpoints=(app.endpoint, added)))
            counts = Counter([await served_by() for _ in range(20)])
    finally:
        await r.router.stop(grace=0.5)
    assert counts == {"app": 10, "second": 10}
