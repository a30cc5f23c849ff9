"""The durable event store: SQLite in WAL mode, written before any sink sees an event.

Two tables: ``events`` (one row per event, updated as it grows and when it ends; ``kind`` is
``anomaly`` or ``health``, a camera condition named in ``condition``) and ``outbox``
(one row per delivery a sink still owes: the event's JSON as it was, and an idempotency key so a
receiver can drop duplicates; an end is *held* until its clip is written, so that it names the
clip). An event of an object-level model also keeps its unusual objects' feature rows
(``features``, an ``.npy`` blob, never unpickled), so that an operator can mark it normal
(``feedback``) and the camera learn it. Each write is its own transaction with
``synchronous=FULL``: once ``record`` returns, a ``kill -9`` loses nothing, and pending
deliveries are resumed at start-up.

The store keeps each sink's count of owed deliveries in memory (``owed()``: counted once at
open, then kept by the writes), so that a metrics scrape runs no query; and it calls its
``notify`` hooks after every write that leaves a delivery due (a dispatcher wakes, it does not
poll).
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamdet.alert.rules import Change, EventState

EVENT_ID = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, camera TEXT NOT NULL, start REAL NOT NULL, end REAL,
    peak_score REAL NOT NULL, peak_time REAL NOT NULL, region TEXT NOT NULL,
    threshold REAL NOT NULL, model TEXT NOT NULL, revision INTEGER NOT NULL,
    snapshot TEXT, clip TEXT, reason TEXT, objects TEXT, features BLOB, feedback TEXT,
    kind TEXT NOT NULL DEFAULT 'anomaly', condition TEXT
);
CREATE INDEX IF NOT EXISTS events_camera_start ON events (camera, start);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, key TEXT NOT NULL,
    payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL,
    last_error TEXT, held INTEGER NOT NULL DEFAULT 0, UNIQUE (sink, key)
);
"""


@dataclass(frozen=True)
class Delivery:
    id: int
    sink: str
    key: str  # idempotency key: event id + revision
    payload: dict[str, Any]
    attempts: int
    next_try: float


class EventStore:
    """Thread-safe (one connection, one lock); every method is one short transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {r["name"] for r in self._db.execute("PRAGMA table_info(events)")}
            # stores written before events had reasons, objects' features, feedback
            added = {"reason": "TEXT", "objects": "TEXT", "features": "BLOB", "feedback": "TEXT"}
            for column, kind in added.items():
                if column not in columns:
                    self._db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
            if "kind" not in columns:  # stores written before health events: all anomalies
                self._db.execute(
                    "ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'anomaly'"
                )
                self._db.execute("ALTER TABLE events ADD COLUMN condition TEXT")
            outbox = {r["name"] for r in self._db.execute("PRAGMA table_info(outbox)")}
            if "held" not in outbox:  # stores written before deliveries could wait for a clip
                self._db.execute("ALTER TABLE outbox ADD COLUMN held INTEGER NOT NULL DEFAULT 0")
            rows = self._db.execute("SELECT sink, COUNT(*) FROM outbox GROUP BY sink")
            self._owed: dict[str, int] = {r[0]: int(r[1]) for r in rows}
        # called (from the writing thread) after each write that may leave a delivery due
        self.notify: list[Callable[[], None]] = []

    def owed(self) -> dict[str, int]:
        """Each sink's deliveries still in the outbox (held ones too), from memory."""
        with self._lock:
            return dict(self._owed)

    def _notify(self) -> None:
        for hook in self.notify:
            hook()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(
        self,
        change: Change,
        event: EventState,
        event_id: str | None,
        model: str,
        sinks: list[str],
        *,
        held: bool = False,
    ) -> dict[str, Any]:
        """Store a start/update/end and queue it for every sink, atomically. Returns its JSON.
        ``held``: the deliveries wait for ``release`` (an end waits for its clip)."""
        event_id = event_id or uuid.uuid4().hex
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT revision FROM events WHERE id = ?", (event_id,)
                ).fetchone()
                revision = 0 if row is None else int(row["revision"]) + 1
                self._db.execute(
                    "INSERT INTO events (id, camera, start, end, peak_score, peak_time, region,"
                    " threshold, model, revision, reason, objects, kind, condition)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET end = excluded.end,"
                    " peak_score = excluded.peak_score, peak_time = excluded.peak_time,"
                    " region = excluded.region, revision = excluded.revision,"
                    " reason = excluded.reason, objects = excluded.objects",
                    (
                        event_id,
                        event.camera,
                        event.start,
                        event.end,
                        event.peak_score,
                        event.peak_time,
                        json.dumps(event.region),
                        event.threshold,
                        model,
                        revision,
                        event.reason,
                        json.dumps([o.as_dict() for o in event.objects]),
                        event.kind,
                        event.condition,
                    ),
                )
                payload = {**self._get(event_id), "change": change.value}
                queued = self._queue(payload, sinks, held)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._owe(queued)
        if not held:
            self._notify()
        return payload

    def _queue(self, payload: dict[str, Any], sinks: list[str], held: bool) -> list[str]:
        """Owe ``payload`` to every sink (in the caller's transaction); the sinks it is new to."""
        key = f"{payload['id']}-{payload['revision']}"
        queued = []
        for sink in sinks:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO outbox (sink, key, payload, next_try, held)"
                " VALUES (?, ?, ?, ?, ?)",
                (sink, key, json.dumps(payload), time.time(), int(held)),
            )
            if cursor.rowcount > 0:
                queued.append(sink)
        return queued

    def _owe(self, sinks: list[str], by: int = 1) -> None:
        """Count what a committed write queued (+) or delivered (-), under the lock."""
        for sink in sinks:
            self._owed[sink] = self._owed.get(sink, 0) + by

    def release(self, event_id: str | None = None) -> int:
        """Let the held deliveries of ``event_id`` (None: of every event) go, naming the files
        the event has by now. Returns how many were released."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                query, args = "SELECT id, payload FROM outbox WHERE held = 1", list[Any]()
                if event_id is not None:
                    query, args = query + " AND key LIKE ?", [f"{event_id}-%"]
                rows = self._db.execute(query, args).fetchall()
                for row in rows:
                    payload = json.loads(row["payload"])
                    files = self._db.execute(
                        "SELECT snapshot, clip FROM events WHERE id = ?", (payload["id"],)
                    ).fetchone()
                    if files is not None:  # always: events are never deleted
                        payload["snapshot"], payload["clip"] = files["snapshot"], files["clip"]
                    self._db.execute(
                        "UPDATE outbox SET held = 0, payload = ?, next_try = ? WHERE id = ?",
                        (json.dumps(payload), time.time(), row["id"]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if rows:
            self._notify()
        return len(rows)

    def close_open(self, sinks: list[str]) -> list[dict[str, Any]]:
        """End the events an earlier run left open (killed before it could end them): each at
        its peak time, the last time the store knows it was seen, and queued for every sink as
        ended. Returns their JSON."""
        closed, queued = [], []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute("SELECT id FROM events WHERE end IS NULL").fetchall()
                for row in rows:
                    self._db.execute(
                        "UPDATE events SET end = peak_time, revision = revision + 1 WHERE id = ?",
                        (row["id"],),
                    )
                    payload = {**self._get(row["id"]), "change": Change.ENDED.value}
                    queued += self._queue(payload, sinks, held=False)
                    closed.append(payload)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._owe(queued)
        if closed:
            self._notify()
        return closed

    def set_files(self, event_id: str, snapshot: str | None, clip: str | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE events SET snapshot = COALESCE(?, snapshot), clip = COALESCE(?, clip)"
                " WHERE id = ?",
                (snapshot, clip, event_id),
            )

    def set_features(self, event_id: str, rows: np.ndarray) -> None:
        """Keep the feature rows (n, D) of the event's unusual objects (see ``features``)."""
        blob = io.BytesIO()
        np.save(blob, np.asarray(rows, np.float32), allow_pickle=False)
        with self._lock:
            self._db.execute(
                "UPDATE events SET features = ? WHERE id = ?", (blob.getvalue(), event_id)
            )

    def features(self, event_id: str) -> np.ndarray | None:
        """The event's objects' feature rows (n, D), or None (no such event, or one recorded
        without them: another model kind, a store from before them, a run killed while it was
        open)."""
        if not EVENT_ID.match(event_id):
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT features FROM events WHERE id = ?", (event_id,)
            ).fetchone()
        if row is None or row["features"] is None:
            return None
        rows = np.load(io.BytesIO(row["features"]), allow_pickle=False)
        return rows if rows.ndim == 2 and len(rows) else None

    def set_feedback(self, event_id: str, feedback: str) -> None:
        """What an operator said of the event ("normal")."""
        with self._lock:
            self._db.execute("UPDATE events SET feedback = ? WHERE id = ?", (feedback, event_id))

    def get(self, event_id: str) -> dict[str, Any] | None:
        if not EVENT_ID.match(event_id):
            return None
        with self._lock:
            try:
                return self._get(event_id)
            except KeyError:
                return None

    def _get(self, event_id: str) -> dict[str, Any]:
        row = self._db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise KeyError(event_id)
        return _event_json(row)

    def events(
        self,
        camera: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        offset: int = 0,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, filtered by camera, start time and kind (anomaly or health)."""
        query, args = "SELECT * FROM events WHERE 1=1", list[Any]()
        if camera is not None:
            query, args = query + " AND camera = ?", [*args, camera]
        if kind is not None:
            query, args = query + " AND kind = ?", [*args, kind]
        if since is not None:
            query, args = query + " AND start >= ?", [*args, since]
        if until is not None:
            query, args = query + " AND start < ?", [*args, until]
        query += " ORDER BY start DESC, id LIMIT ? OFFSET ?"
        with self._lock:
            rows = self._db.execute(query, [*args, limit, offset]).fetchall()
        return [_event_json(r) for r in rows]

    def due(self, sink: str, now: float, limit: int = 20) -> list[Delivery]:
        """The sink's oldest owed deliveries, in order, up to the first one not due yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM outbox WHERE sink = ? AND held = 0 ORDER BY id LIMIT ?",
                (sink, limit),
            ).fetchall()
        due = []
        for r in rows:
            if r["next_try"] > now:
                break  # keep order: nothing overtakes a delivery that waits for its retry
            due.append(
                Delivery(
                    r["id"],
                    r["sink"],
                    r["key"],
                    json.loads(r["payload"]),
                    r["attempts"],
                    r["next_try"],
                )
            )
        return due

    def delivered(self, delivery: Delivery) -> None:
        with self._lock:
            cursor = self._db.execute("DELETE FROM outbox WHERE id = ?", (delivery.id,))
            if cursor.rowcount > 0:
                self._owe([delivery.sink], -1)

    def next_due(self, sink: str) -> float | None:
        """When the sink's oldest owed delivery (not held) may be tried; None: nothing owed."""
        with self._lock:
            row = self._db.execute(
                "SELECT next_try FROM outbox WHERE sink = ? AND held = 0 ORDER BY id LIMIT 1",
                (sink,),
            ).fetchone()
        return None if row is None else float(row[0])

    def retry_later(self, delivery: Delivery, next_try: float, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ?"
                " WHERE id = ?",
                (next_try, error[:500], delivery.id),
            )

    def pending(self, sink: str | None = None) -> int:
        with self._lock:
            if sink is None:
                row = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)
                ).fetchone()
        return int(row[0])


def _event_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "camera": row["camera"],
        "start": row["start"],
        "end": row["end"],
        "peak_score": row["peak_score"],
        "peak_time": row["peak_time"],
        "region": json.loads(row["region"]),
        "threshold": row["threshold"],
        "model": row["model"],
        "revision": row["revision"],
        "snapshot": row["snapshot"],
        "clip": row["clip"],
        "reason": row["reason"],
        "objects": json.loads(row["objects"]) if row["objects"] else [],
        "kind": row["kind"],
        "condition": row["condition"],
        "teachable": row["features"] is not None,  # it can be marked normal
        "feedback": row["feedback"],  # "normal" once an operator said so, else null
    }
