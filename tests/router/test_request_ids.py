"""Request ids: 32 hex digits as Heroku's, without a syscall, distinct across forked workers."""

from __future__ import annotations

import multiprocessing
import re

from router.exchange import new_request_id


def _child(queue: multiprocessing.Queue[str]) -> None:
    queue.put(new_request_id())


def test_an_id_is_32_hex_digits_and_ids_do_not_repeat() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_forked_workers_draw_different_ids() -> None:
    """--workers N forks: each worker must not replay its siblings' ids."""
    new_request_id()  # the parent's generator is in use before the fork, as in the router
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    children = [context.Process(target=_child, args=(queue,)) for _ in range(3)]
    for child in children:
        child.start()
    drawn = {queue.get(timeout=10) for _ in children}
    for child in children:
        child.join(10)
    assert len(drawn | {new_request_id()}) == 4
