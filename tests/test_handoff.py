"""The bounded hand-off between stages: each drop policy, every drop counted by camera and
reason, and a reader that is woken (a thread and an asyncio task), never polling."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from streamdet.handoff import CLOSED, DISCARDED, FULL, TIMEOUT, DropPolicy, Handoff, Wakeup

Item = tuple[str, int]  # (camera, number)


def handoff(policy: DropPolicy, capacity: int = 3, block_s: float = 0.05) -> Handoff[Item]:
    return Handoff("test", capacity, policy, lambda item: item[0], block_s=block_s)


def test_drop_oldest_keeps_the_newest_and_counts_each_dropped_camera() -> None:
    counted: Counter[tuple[str, str]] = Counter()
    h: Handoff[Item] = Handoff(
        "test",
        3,
        DropPolicy.DROP_OLDEST,
        lambda i: i[0],
        on_drop=lambda c, r: counted.update([(c, r)]),
    )
    for item in [("a", 0), ("b", 1), ("a", 2), ("b", 3), ("b", 4)]:
        assert h.put(item)
    assert h.take() == [("a", 2), ("b", 3), ("b", 4)]
    # the dropped ones are the oldest two: a's 0 and b's 1, each under its own camera
    assert counted == {("a", FULL): 1, ("b", FULL): 1}
    assert h.snapshot().dropped == {("a", FULL): 1, ("b", FULL): 1}
    assert h.snapshot().depth == 0


def test_drop_newest_keeps_what_came_first() -> None:
    h = handoff(DropPolicy.DROP_NEWEST)
    results = [h.put(("a", i)) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert h.take() == [("a", 0), ("a", 1), ("a", 2)]
    assert h.snapshot().dropped == {("a", FULL): 2}


def test_block_waits_for_room_then_times_out_counted() -> None:
    h = handoff(DropPolicy.BLOCK, capacity=1, block_s=2.0)
    assert h.put(("a", 0))
    threading.Timer(0.05, h.take).start()  # a reader makes room
    started = time.monotonic()
    assert h.put(("a", 1))  # waited for it
    assert 0.03 < time.monotonic() - started < 1.5
    h.block_s = 0.05
    assert not h.put(("a", 2))  # nobody reads: dropped after block_s
    assert h.snapshot().dropped == {("a", TIMEOUT): 1}
    assert h.take() == [("a", 1)]


def test_closed_and_discarded_records_are_counted() -> None:
    h = handoff(DropPolicy.DROP_OLDEST, capacity=8)
    for item in [("a", 0), ("b", 1), ("a", 2)]:
        h.put(item)
    assert h.discard(lambda item: item[0] != "a") == 2
    h.close()
    assert not h.put(("b", 3))
    assert h.take() == [("b", 1)]
    assert h.snapshot().dropped == {("a", DISCARDED): 2, ("b", CLOSED): 1}
    h.forget("a")
    assert h.snapshot().dropped == {("b", CLOSED): 1}


def test_a_thread_reader_is_woken_at_once() -> None:
    h = handoff(DropPolicy.DROP_OLDEST)
    threading.Timer(0.05, h.put, [("a", 0)]).start()
    started = time.monotonic()
    assert h.take(timeout=5.0) == [("a", 0)]
    assert time.monotonic() - started < 1.0  # woken by the put, not the timeout


def test_an_asyncio_reader_is_woken_by_a_writer_thread_within_milliseconds() -> None:
    h = handoff(DropPolicy.DROP_OLDEST, capacity=64)
    latencies: list[float] = []

    async def reader() -> None:
        while len(latencies) < 20:
            for _, sent_ns in await h.get():
                latencies.append((time.perf_counter_ns() - sent_ns) / 1e9)

    def writer() -> None:
        for _ in range(20):
            time.sleep(0.02)
            h.put(("a", time.perf_counter_ns()))

    async def scenario() -> None:
        thread = threading.Thread(target=writer)
        thread.start()
        await asyncio.wait_for(reader(), 5)
        thread.join()

    asyncio.run(scenario())
    latencies.sort()
    # a 0.1 s poll would make the median ~0.05 s; a wake-up takes well under 10 ms
    assert latencies[len(latencies) // 2] < 0.01, latencies


def test_a_wakeup_raised_before_the_wait_is_not_lost() -> None:
    wakeup = Wakeup()
    wakeup.set()

    async def wait() -> bool:
        return await wakeup.wait(timeout=1.0)

    assert asyncio.run(wait())
    wakeup.clear()
    assert not wakeup.wait_sync(0.01)


def test_a_hand_off_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="capacity"):
        handoff(DropPolicy.DROP_OLDEST, capacity=0)
