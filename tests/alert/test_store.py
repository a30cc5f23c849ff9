"""The event store: atomic record + outbox, survives kill -9, queries and id validation."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

from streamdet.alert.rules import Change, EventState
from streamdet.alert.store import EventStore


def event(
    camera: str = "cam", start: float = 100.0, end: float | None = None, peak: float = 5.0
) -> EventState:
    return EventState(camera, start, end, peak, start + 1, 7, (0.1, 0.2, 0.3, 0.4), 4.0)


def test_record_updates_one_row_and_queues_each_revision_per_sink(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    started = store.record(Change.STARTED, event(), None, "motion v1", ["webhook", "jsonl"])
    eid = started["id"]
    store.record(Change.UPDATED, event(peak=6.0), eid, "motion v1", ["webhook", "jsonl"])
    ended = store.record(Change.ENDED, event(end=110.0, peak=6.0), eid, "motion v1", ["webhook"])
    assert ended["revision"] == 2 and ended["end"] == 110.0 and ended["change"] == "ended"
    assert store.get(eid) == {k: v for k, v in ended.items() if k != "change"}
    due = store.due("webhook", now=1e12)
    assert [d.key for d in due] == [f"{eid}-0", f"{eid}-1", f"{eid}-2"]
    assert [d.payload["change"] for d in due] == ["started", "updated", "ended"]
    store.delivered(due[0])
    store.retry_later(due[1], next_try=1e12 + 10, error="HTTP 500")
    # The failed one waits for its retry, and nothing overtakes it.
    assert store.due("webhook", now=1e12) == []
    assert [d.key for d in store.due("webhook", now=1e12 + 10)] == [f"{eid}-1", f"{eid}-2"]
    assert store.pending("webhook") == 2 and store.pending("jsonl") == 2


def test_queries_filter_and_page(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    for i in range(5):
        store.record(Change.STARTED, event("a" if i % 2 else "b", start=float(i)), None, "m", [])
    assert [e["start"] for e in store.events()] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert [e["start"] for e in store.events(camera="a")] == [3.0, 1.0]
    assert [e["start"] for e in store.events(since=1.0, until=3.0)] == [2.0, 1.0]
    assert [e["start"] for e in store.events(limit=2, offset=2)] == [2.0, 1.0]


def test_ids_are_validated(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    assert store.get("../../etc/passwd") is None
    assert store.get("0" * 32) is None


def test_a_recorded_event_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    code = textwrap.dedent(f"""
        import os, signal
        from streamdet.alert.rules import Change, EventState
        from streamdet.alert.store import EventStore
        from pathlib import Path
        store = EventStore(Path({str(db)!r}))
        for i in range(20):
            store.record(Change.STARTED, EventState("cam", float(i), None, 5.0, i + 1.0, 1,
                         (0, 0, 1, 1), 4.0), None, "m", ["webhook"])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert result.returncode == -9
    store = EventStore(db)
    assert len(store.events(limit=100)) == 20
    assert store.pending("webhook") == 20


def test_a_held_end_waits_for_release_and_then_names_the_files(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    eid = store.record(Change.STARTED, event(), None, "m", ["hook"])["id"]
    store.record(Change.ENDED, event(end=110.0), eid, "m", ["hook"], held=True)
    later = store.record(Change.STARTED, event("other", start=120.0), None, "m", ["hook"])
    # The held end neither goes out nor holds up what came after it.
    assert [d.key for d in store.due("hook", now=1e12)] == [f"{eid}-0", f"{later['id']}-0"]
    assert store.pending("hook") == 3
    store.set_files(eid, "snap.jpg", "clip.mp4")
    assert store.release(eid) == 1
    (end,) = [d for d in store.due("hook", now=1e12) if d.key == f"{eid}-1"]
    assert end.payload["change"] == "ended"
    assert (end.payload["snapshot"], end.payload["clip"]) == ("snap.jpg", "clip.mp4")
    assert store.release() == 0


def test_health_events_are_their_own_kind_and_a_store_from_before_them_is_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    # a store as streamdet wrote it before health events: no kind or condition columns
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE events (id TEXT PRIMARY KEY, camera TEXT NOT NULL, start REAL NOT NULL,"
        " end REAL, peak_score REAL NOT NULL, peak_time REAL NOT NULL, region TEXT NOT NULL,"
        " threshold REAL NOT NULL, model TEXT NOT NULL, revision INTEGER NOT NULL,"
        " snapshot TEXT, clip TEXT, reason TEXT, objects TEXT);"
        "INSERT INTO events VALUES ('" + "a" * 32 + "', 'cam', 1.0, 2.0, 5.0, 1.5,"
        " '[0, 0, 1, 1]', 4.0, 'motion v1', 1, NULL, NULL, NULL, NULL);"
    )
    old.close()
    store = EventStore(path)
    assert store.get("a" * 32) is not None and store.get("a" * 32)["kind"] == "anomaly"
    covered = replace(event(start=3.0), kind="health", condition="covered", reason="dark")
    started = store.record(Change.STARTED, covered, None, "motion v1", ["jsonl"])
    assert (started["kind"], started["condition"], started["reason"]) == (
        "health",
        "covered",
        "dark",
    )
    assert [e["start"] for e in store.events(kind="health")] == [3.0]
    assert [e["start"] for e in store.events(kind="anomaly")] == [1.0]
    assert store.due("jsonl", now=1e12)[0].payload["condition"] == "covered"
