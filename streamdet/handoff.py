"""Bounded hand-offs between stages: a named drop policy, every drop counted, a wake-up.

A ``Handoff`` is where one stage leaves small frozen records (never pixels) for the next. It
holds at most ``capacity`` of them; when it is full the ``DropPolicy`` decides what goes:
``DROP_OLDEST`` (live cameras: the newest result matters most), ``DROP_NEWEST`` (keep what
came first), or ``BLOCK`` (the writer waits up to ``block_s``, then drops the newest). Every
drop is counted by camera and reason, in the hand-off's own figures (``snapshot()``) and
through ``on_drop`` (the App wires it to ``streamdet_handoff_dropped_total``).

The reader never polls: ``put`` wakes it. A thread reader calls ``take(timeout)``; an asyncio
reader awaits ``get()``, woken through ``loop.call_soon_threadsafe`` from whichever thread
wrote (as aiortc's tracks do). ``Wakeup`` is that signal alone, for hand-offs that live
elsewhere (the event store's outbox wakes its dispatchers with one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

DropCounter = Callable[[str, str], None]  # (camera, reason)


class DropPolicy(enum.Enum):
    """What a full hand-off does with one more record."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    BLOCK = "block"


# The reasons a record is dropped (the ``reason`` label).
FULL = "full"  # no room (drop-oldest: the oldest record went; drop-newest: the new one)
TIMEOUT = "timeout"  # BLOCK: no room within ``block_s``
CLOSED = "closed"  # written after the reader had gone
DISCARDED = "discarded"  # taken out unread (its camera was removed)


class Wakeup:
    """A signal any thread can raise and one asyncio task (and any threads) can wait for."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._raised = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def set(self) -> None:
        """Wake the waiters (callable from any thread, and from the event loop)."""
        with self._condition:
            if self._raised:  # raised and not yet cleared: the waiters are woken already
                return
            self._raised = True
            self._condition.notify_all()
            loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(event.set)

    def clear(self) -> None:
        with self._condition:
            self._raised = False
            if self._event is not None:
                self._event.clear()

    def wait_sync(self, timeout: float | None) -> bool:
        """Block until raised (True) or ``timeout`` passes (False); for a thread reader."""
        with self._condition:
            return self._condition.wait_for(lambda: self._raised, timeout)

    async def wait(self, timeout: float | None = None) -> bool:
        """Await until raised (True) or ``timeout`` passes (False); for an asyncio reader."""
        loop = asyncio.get_running_loop()
        with self._condition:
            if self._loop is not loop or self._event is None:
                self._loop, self._event = loop, asyncio.Event()
            event = self._event
            if self._raised:
                event.set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True


@dataclass(frozen=True)
class HandoffSnapshot:
    """What a hand-off holds and has dropped, read by metrics and the web."""

    name: str
    policy: DropPolicy
    depth: int
    capacity: int
    dropped: dict[tuple[str, str], int]  # (camera, reason) -> records


class Handoff(Generic[T]):
    """A bounded, thread-safe FIFO from one stage to the next (see the module docstring)."""

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: DropPolicy,
        camera_of: Callable[[T], str],
        on_drop: DropCounter | None = None,
        block_s: float = 1.0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"hand-off {name!r}: capacity must be at least 1, got {capacity}")
        self.name, self.capacity, self.policy = name, capacity, policy
        self.block_s = block_s
        self._camera_of, self._on_drop = camera_of, on_drop
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # BLOCK writers wait on it
        self._dropped: collections.Counter[tuple[str, str]] = collections.Counter()
        self._closed = False
        self.wakeup = Wakeup()

    def put(self, item: T) -> bool:
        """Leave ``item`` for the reader; False if it (not an older one) was dropped."""
        dropped: T | None = None
        with self._lock:
            if self._closed:
                self._count(item, CLOSED)
                return False
            if len(self._items) >= self.capacity:
                if self.policy is DropPolicy.DROP_NEWEST:
                    self._count(item, FULL)
                    return False
                if self.policy is DropPolicy.BLOCK:
                    deadline = time.monotonic() + self.block_s
                    while len(self._items) >= self.capacity and not self._closed:
                        left = deadline - time.monotonic()
                        if left <= 0 or not self._room.wait(left):
                            break
                    if len(self._items) >= self.capacity or self._closed:
                        self._count(item, TIMEOUT if not self._closed else CLOSED)
                        return False
                else:
                    dropped = self._items.popleft()
                    self._count(dropped, FULL)
            self._items.append(item)
        self.wakeup.set()
        return True

    def _count(self, item: T, reason: str) -> None:
        """Count one drop (under the lock; ``on_drop`` must be quick: a metric's inc)."""
        camera = self._camera_of(item)
        self._dropped[camera, reason] += 1
        if self._on_drop is not None:
            self._on_drop(camera, reason)

    def take(self, timeout: float | None = 0.0) -> list[T]:
        """Every record waiting, oldest first; waits up to ``timeout`` for one (None: until
        one comes), for a thread reader."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not self.wakeup.wait_sync(left):
                break
            with self._lock:  # raised for records already taken: wait again
                if not self._items:
                    self.wakeup.clear()
        return self._take_all()

    async def get(self) -> list[T]:
        """Await at least one record, then take every record waiting (an asyncio reader)."""
        while True:
            items = self._take_all()
            if items:
                return items
            await self.wakeup.wait()

    def _take_all(self) -> list[T]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self.wakeup.clear()
            self._room.notify_all()
        return items

    def discard(self, keep: Callable[[T], bool]) -> int:
        """Take out, unread, every record ``keep`` refuses (counted); how many went."""
        with self._lock:
            kept = [i for i in self._items if keep(i)]
            gone = [i for i in self._items if not keep(i)]
            for item in gone:
                self._count(item, DISCARDED)
            self._items = collections.deque(kept)
            self._room.notify_all()
        return len(gone)

    def forget(self, camera: str) -> None:
        """Drop ``camera``'s figures (it was removed from the config)."""
        with self._lock:
            for key in [k for k in self._dropped if k[0] == camera]:
                del self._dropped[key]

    def close(self) -> None:
        """No reader any more: later records are dropped (``closed``); a blocked writer goes."""
        with self._lock:
            self._closed = True
            self._room.notify_all()
        self.wakeup.set()

    def reopen(self) -> None:
        with self._lock:
            self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def snapshot(self) -> HandoffSnapshot:
        with self._lock:
            return HandoffSnapshot(
                self.name, self.policy, len(self._items), self.capacity, dict(self._dropped)
            )
