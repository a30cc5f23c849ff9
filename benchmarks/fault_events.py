"""Event faults for the fault suite: a real ``streamdet run`` of a synthetic camera whose scene
stages anomalies (a fast cyclist), with its event store
(``events.db``) and ``events.jsonl`` read from disk.

* ``webhook_outage``: the webhook receiver's port is closed from the start, through two events,
  and opens again afterwards; every delivery the jsonl sink recorded must reach the receiver
  exactly once (losses and duplicates counted by idempotency key).
* ``hard_stop``: ``kill -9`` (or SIGTERM) of streamdet 1 s into an open event; for kill -9 a
  restart must end what was left open. Events left open are counted in ``events.db``.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import Streamdet, Webhook, log, wait_until

LEARN_S = 8  # the camera learns the scene's normal traffic this long, then detects


def scene_document(anomalies: list[dict[str, Any]], sinks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cameras": [
            {"name": "path", "source": {"kind": "synthetic", "seed": 1, "anomalies": anomalies}}
        ],
        "models": {"dir": "models", "kind": "motion", "learn_seconds": LEARN_S},
        "alerts": {"dir": "events", "sinks": sinks},
        "server": {"webrtc": {"enabled": False}},
    }


def event_rows(db: Path, where: str = "") -> list[str]:
    """Event ids in ``db`` (matching ``where``); [] until the store has its tables."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            return [r[0] for r in con.execute(f"SELECT id FROM events {where}")]
    except sqlite3.OperationalError:  # the file exists a moment before its tables do
        return []


def open_events(db: Path) -> list[str]:
    return event_rows(db, "WHERE end IS NULL")


def jsonl_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def webhook_outage(workdir: Path, down_s: float = 45.0) -> dict[str, Any]:
    """Receiver down for the first ``down_s`` (two events happen meanwhile), then up."""
    anomalies = [
        {"kind": "fast", "start_s": 16, "duration_s": 6},
        {"kind": "fast", "start_s": 30, "duration_s": 6},
    ]
    jsonl = workdir / "events" / "events.jsonl"
    with Webhook() as hook:
        webhook = {"kind": "webhook", "url": hook.url, "max_backoff_s": 2}
        sinks: list[dict[str, Any]] = [{"kind": "jsonl"}, webhook]
        with Streamdet(workdir, scene_document(anomalies, sinks)):
            time.sleep(down_s)
            owed = {r["idempotency_key"] for r in jsonl_records(jsonl)}
            log("webhook", f"receiver down {down_s:.0f} s: {len(owed)} deliveries owed; up again")
            hook.up()
            took = wait_until(
                lambda: (
                    {r["idempotency_key"] for r in jsonl_records(jsonl)}
                    <= {k for k, _ in hook.received}
                ),
                60,
                poll=0.2,
            )
            time.sleep(3.0)  # time for a duplicate to arrive, if one would
        expected = {r["idempotency_key"] for r in jsonl_records(jsonl)}
        counts = Counter(k for k, _ in hook.received)
    events = {r["id"] for r in jsonl_records(jsonl)}
    result = {
        "down_s": down_s,
        "events": len(events),
        "deliveries_owed_at_recovery": len(owed),
        "deliveries_expected": len(expected),
        "deliveries_received": sum(counts.values()),
        "lost": len(expected - set(counts)),
        "duplicates": sum(c - 1 for c in counts.values()),
        "unexpected": len(set(counts) - expected),
        "caught_up_s": took,
    }
    log("webhook", f"{result}")
    return result


def hard_stop(workdir: Path, signum: int) -> dict[str, Any]:
    """``signum`` 1 s into the first event; with SIGKILL, then a restart that must end it."""
    db = workdir / "events" / "events.db"
    anomalies = [{"kind": "fast", "start_s": 16, "duration_s": 30}]
    run = Streamdet(workdir, scene_document(anomalies, [{"kind": "jsonl"}]))
    run.start()
    try:
        started = wait_until(lambda: bool(event_rows(db)), 90, poll=0.2)
        if started is None:
            raise RuntimeError("no event started within 90 s")
        time.sleep(1.0)  # mid-event: the cyclist is still there
        code = run.signal(signum)
    finally:
        run.stop()
    left_open = open_events(db)
    result: dict[str, Any] = {
        "signal": signal.Signals(signum).name,
        "exit_code": code,
        "open_after_stop": len(left_open),
    }
    if signum == signal.SIGKILL:
        with run:  # the restart
            ended = wait_until(lambda: not open_events(db), 30, poll=0.2)
            result["restart_ended_them_s"] = ended
        result["open_after_restart"] = len(open_events(db))
    result["events"] = len(event_rows(db))
    log("kill", f"{result}")
    return result
