"""A sink's dispatcher is woken by the store when a delivery is due; its only timer is the
retry back-off. Real store (SQLite), real JSONL file, a real webhook port with nobody on it."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from streamdet.alert.rules import Change, EventState
from streamdet.alert.sinks import Dispatcher, JsonlSink, WebhookSink
from streamdet.alert.store import EventStore


def record(store: EventStore, sinks: list[str], start: float) -> None:
    event = EventState("door", start, None, 5.0, start, 1, (0.1, 0.1, 0.2, 0.2), 4.0)
    store.record(Change.STARTED, event, None, "motion v1", sinks)


def test_an_idle_dispatcher_does_not_query_and_a_stored_event_wakes_it(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    dispatcher = Dispatcher(JsonlSink("file", tmp_path / "events.jsonl"), store)
    queries: list[str] = []

    async def scenario() -> float:
        store._db.set_trace_callback(queries.append)
        task = asyncio.create_task(dispatcher.run())
        while not any("next_try" in q for q in queries):  # its first look: nothing owed
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)
        queries.clear()
        await asyncio.sleep(0.8)  # idle: a 0.2 s poll would query 4 times here
        idle = list(queries)
        store._db.set_trace_callback(None)
        queries[:] = idle
        began = time.monotonic()
        await asyncio.to_thread(record, store, ["file"], 1.0)  # as the alert stage writes
        while dispatcher.delivered == 0:
            await asyncio.sleep(0.002)
        took = time.monotonic() - began
        task.cancel()
        return took

    took = asyncio.run(scenario())
    assert queries == [], queries
    assert took < 0.15, f"delivered {took:.3f} s after it was stored"
    assert store.owed() == {"file": 0}
    assert (tmp_path / "events.jsonl").read_text().count("\n") == 1


def test_a_failing_sink_is_retried_on_its_back_off_timer_alone(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = EventStore(tmp_path / "events.db")
    sink = WebhookSink("hook", f"http://127.0.0.1:{port}/hook", timeout_s=0.5)
    dispatcher = Dispatcher(sink, store, max_backoff_s=0.2)
    record(store, ["hook"], 1.0)

    async def scenario() -> None:
        task = asyncio.create_task(dispatcher.run())
        await asyncio.sleep(1.5)  # no write wakes it: only the back-off timer
        task.cancel()
        await sink.close()

    asyncio.run(scenario())
    assert dispatcher.failures >= 4, dispatcher.failures  # 0.5 s, then 0.2 s capped
    assert store.owed() == {"hook": 1} and store.pending("hook") == 1


def test_the_owed_counts_kept_in_memory_match_the_outbox(tmp_path: Path) -> None:
    """What a scrape shows (``owed()``, no query) against COUNT(*) after each kind of write."""
    store = EventStore(tmp_path / "events.db")

    def same() -> None:
        assert store.owed() == {s: store.pending(s) for s in ("a", "b")}

    record(store, ["a", "b"], 1.0)
    record(store, ["a"], 2.0)
    same()
    event = EventState("door", 3.0, 4.0, 5.0, 3.0, 1, (0.1, 0.1, 0.2, 0.2), 4.0)
    store.record(Change.ENDED, event, None, "motion v1", ["a", "b"], held=True)
    same()
    for delivery in store.due("a", time.time()):
        store.delivered(delivery)
        store.delivered(delivery)  # twice (a retry that raced): counted once
    same()
    assert store.release() == 2
    same()
    store.close()
    reopened = EventStore(tmp_path / "events.db")
    assert reopened.owed() == {"a": 1, "b": 2}  # counted from the file at open
    reopened.close_open(["a", "b"])
    assert reopened.owed() == {"a": 3, "b": 4} == {s: reopened.pending(s) for s in ("a", "b")}
