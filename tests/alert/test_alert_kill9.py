"""``kill -9`` in the middle of an event: nothing stored is lost, and owed webhook deliveries
are made after the restart, each exactly once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.support.http import Receiver, ThreadedApp
from tests.support.waiting import wait_for

STREAMDET = str(Path(sys.executable).with_name("streamdet"))


def events_in(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            return [(r[0], r[1]) for r in con.execute("SELECT id, revision FROM events")]
    except sqlite3.OperationalError:  # the file exists a moment before its tables do
        return []


def owed(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT key FROM outbox WHERE sink = 'webhook'")]


def test_kill_9_mid_event_then_restart_delivers_what_was_owed(tmp_path: Path) -> None:
    hook = Receiver()
    with ThreadedApp(hook.app) as server:
        config = tmp_path / "run.yaml"
        config.write_text(
            json.dumps(
                {
                    "cameras": [
                        {
                            "name": "path",
                            "source": {
                                "kind": "synthetic",
                                "seed": 1,
                                "anomalies": [{"kind": "fast", "start_s": 16, "duration_s": 30}],
                            },
                        }
                    ],
                    "models": {"dir": "models", "kind": "motion", "learn_seconds": 8},
                    "alerts": {
                        "dir": "events",
                        "sinks": [
                            {
                                "kind": "webhook",
                                "url": f"http://127.0.0.1:{server.port}/hook",
                                "max_backoff_s": 1,
                            }
                        ],
                    },
                    "server": {"port": 0},
                }
            )
        )
        db = tmp_path / "events" / "events.db"
        first = subprocess.Popen(
            [STREAMDET, "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: bool(events_in(db)), 60, "an event to start")
            time.sleep(1.0)  # mid-event: the webhook (down) owes its revisions
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        stored = events_in(db)
        keys_owed = owed(db)
        assert stored and keys_owed  # recorded before any sink saw it, and still owed
        assert hook.received == []
        hook.up.set()
        second = subprocess.Popen(
            [STREAMDET, "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: set(keys_owed) <= {k for k, _ in hook.received},
                30,
                "the owed deliveries after the restart",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    counts = Counter(k for k, _ in hook.received)
    assert max(counts.values()) == 1, counts  # each revision once, although delivered late
    assert {eid for eid, _ in stored} <= {p["id"] for _, p in hook.received}


def run_config(tmp_path: Path, sinks: list[dict[str, object]]) -> Path:
    """A synthetic camera that learns for 8 s; a fast cyclist from 16 s for 30 s."""
    config = tmp_path / "run.yaml"
    camera = {
        "name": "path",
        "source": {
            "kind": "synthetic",
            "seed": 1,
            "anomalies": [{"kind": "fast", "start_s": 16, "duration_s": 30}],
        },
    }
    config.write_text(
        json.dumps(
            {
                "cameras": [camera],
                "models": {"dir": "models", "kind": "motion", "learn_seconds": 8},
                "alerts": {"dir": "events", "sinks": sinks},
                "server": {"port": 0},
            }
        )
    )
    return config


def start_run(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [STREAMDET, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def signal_mid_event(proc: subprocess.Popen[bytes], db: Path, signum: int) -> int:
    """Send ``signum`` 1 s into the run's first event (the cyclist still there); its exit code."""
    try:
        wait_for(lambda: bool(events_in(db)), 60, "an event to start")
        time.sleep(1.0)
        proc.send_signal(signum)
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def open_events(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT id FROM events WHERE end IS NULL")]


def jsonl_records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sigterm_mid_event_ends_it_and_delivers_the_end(tmp_path: Path) -> None:
    config = run_config(tmp_path, [{"kind": "jsonl"}])
    db = tmp_path / "events" / "events.db"
    assert signal_mid_event(start_run(config), db, signal.SIGTERM) == 0
    assert open_events(db) == []
    records = jsonl_records(tmp_path / "events" / "events.jsonl")
    (eid,) = {eid for eid, _ in events_in(db)}
    ended = [r for r in records if r["id"] == eid and r["change"] == "ended"]
    assert len(ended) == 1, records
    assert ended[0]["end"] is not None and ended[0]["snapshot"] is not None
    assert Path(str(ended[0]["snapshot"])).is_file()
    assert ended[0]["clip"] is not None and Path(str(ended[0]["clip"])).is_file()


def test_kill_9_mid_event_the_restart_ends_it_and_delivers_the_end(tmp_path: Path) -> None:
    config = run_config(tmp_path, [{"kind": "jsonl"}])
    db = tmp_path / "events" / "events.db"
    signal_mid_event(start_run(config), db, signal.SIGKILL)
    left_open = open_events(db)
    assert left_open  # killed before it could end it
    jsonl = tmp_path / "events" / "events.jsonl"
    second = start_run(config)
    try:
        wait_for(
            lambda: (
                {r["id"] for r in jsonl_records(jsonl) if r["change"] == "ended"} >= set(left_open)
            ),
            30,
            "the restart to end the events left open",
        )
        # The end is delivered at once (the dispatcher is woken by the store): give the camera
        # time for its first frames, without which the run rightly exits 1 ("no frames").
        time.sleep(1.5)
        second.send_signal(signal.SIGTERM)  # before the scene's cyclist comes again
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert open_events(db) == []
    with sqlite3.connect(db) as con:
        rows = dict(con.execute("SELECT id, end - peak_time FROM events").fetchall())
    assert all(rows[eid] == 0 for eid in left_open)  # the last time the store saw them
