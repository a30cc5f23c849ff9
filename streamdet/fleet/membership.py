"""Who is in the fleet: each worker's heartbeat in a KV bucket, read back on every beat.

A heartbeat is a small JSON under the worker's name: its capacity, its HTTP address and the
cameras it runs (with since when). The bucket's TTL (``max_age``) sweeps away the entries of
workers gone long ago; nats-server 2.9 has no per-key TTL and sends no watch notification when
an entry expires, so liveness is judged here instead: a member is live while its entry's
revision keeps changing, timed on *this* worker's monotonic clock (so clocks that disagree
between boxes do not matter). An entry seen for the first time is as old as its own
timestamp says (capped at the timeout), so a worker that starts does not count the dead.
After a stretch in which this worker itself could not read the bucket (NATS unreachable, or
the bucket electing a new leader after a node died), every member live before it gets a fresh
timeout: an outage that kept everyone from beating moves no camera.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue


@dataclass(frozen=True)
class Member:
    """One worker as its last heartbeat describes it."""

    name: str
    capacity: float
    running: dict[str, float] = field(default_factory=dict)  # camera -> since (unix time)
    url: str | None = None  # its HTTP server, for /api/fleet
    joined: float = 0.0  # unix time it joined
    sent: float = 0.0  # unix time of this heartbeat (the sender's clock)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "capacity": self.capacity,
                "running": self.running,
                "url": self.url,
                "joined": self.joined,
                "sent": self.sent,
            }
        ).encode()

    @classmethod
    def decode(cls, name: str, raw: bytes) -> Member | None:
        """None for an entry that is not a heartbeat (written by something else)."""
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(
                name,
                float(data["capacity"]),
                {str(k): float(v) for k, v in dict(data.get("running") or {}).items()},
                data.get("url"),
                float(data.get("joined", 0.0)),
                float(data.get("sent", 0.0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class Membership:
    """Writes this worker's heartbeat and tells which members are live."""

    def __init__(
        self, js: JetStreamContext, kv: KeyValue, bucket: str, name: str, timeout_s: float
    ) -> None:
        self.js, self.kv, self.bucket = js, kv, bucket
        self.name, self.timeout_s = name, timeout_s
        self._seen: dict[str, tuple[int, float]] = {}  # name -> (revision, monotonic seen)
        self._last_read: float | None = None  # monotonic time of the last whole reading
        self._live: set[str] = set()  # the members live at that reading

    async def _names(self) -> list[str]:
        """The bucket's keys, from one stream-info request: ``KeyValue.keys()`` would create
        a consumer on every beat (a cluster-wide operation, refused while the cluster has no
        meta leader, and it can return a partial list on a timeout: a member left out would
        lose its cameras)."""
        prefix = f"$KV.{self.bucket}."
        info = await self.js.stream_info(f"KV_{self.bucket}", subjects_filter=f"{prefix}>")
        return sorted(s.removeprefix(prefix) for s in (info.state.subjects or {}))

    async def beat(self, me: Member) -> None:
        await self.kv.put(self.name, me.encode())

    async def leave(self) -> None:
        """Delete this worker's heartbeat: the others move its cameras at their next beat."""
        await self.kv.delete(self.name)

    async def live(self) -> dict[str, Member]:
        """The members whose heartbeat changed within the timeout (this worker included)."""
        now, wall = time.monotonic(), time.time()
        if self._last_read is not None and now - self._last_read > self.timeout_s / 2:
            # This worker could not read for a while (NATS unreachable, or a bucket electing a
            # new leader after a node died): nobody could beat, so nobody is counted gone for
            # it; every member live at the last reading gets a fresh timeout from now.
            self._seen = {
                name: (revision, now if name in self._live else seen)
                for name, (revision, seen) in self._seen.items()
            }
        names = await self._names()
        members: dict[str, Member] = {}
        for name in names:
            try:
                entry = await self.kv.get(name)
            except KeyNotFoundError:  # deleted (left) between the listing and the read
                continue
            member = Member.decode(name, entry.value or b"")
            if member is None or entry.revision is None:
                continue
            seen = self._seen.get(name)
            if seen is None or seen[0] != entry.revision:
                age = 0.0 if seen is not None else min(max(wall - member.sent, 0.0), self.timeout_s)
                seen = (entry.revision, now - age)
                self._seen[name] = seen
            if now - seen[1] < self.timeout_s or name == self.name:
                members[name] = member
        for gone in set(self._seen) - set(names):
            del self._seen[gone]
        self._last_read, self._live = time.monotonic(), set(members)
        return members
