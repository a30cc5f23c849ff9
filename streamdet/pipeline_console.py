"""What ``streamdet run`` and the demo show on the terminal while the pipeline runs.

A live table per camera (capture figures, model state, smoothed score and threshold) and the
newest events of this run under it, read from the event store; a summary when the run ends.
Events of earlier runs stay in the store (and ``/api/events``) but are not shown as this run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from streamdet.app import App
from streamdet.console import LiveTable, ModelColumns
from streamdet.frames import ModelState


def _event_line(event: dict[str, Any]) -> str:
    start = time.strftime("%H:%M:%S", time.localtime(event["start"]))
    state = "open" if event["end"] is None else f"{event['end'] - event['start']:.1f} s"
    why = f"{event['reason']}, " if event.get("reason") else ""  # the model's (objects)
    return (
        f"{start} EVENT {event['camera']}: {why}peak {event['peak_score']:.2f} "
        f"(threshold {event['threshold']:.2f}), {state}, id {event['id']}"
    )


class PipelineConsole:
    def __init__(self, app: App, title: str, interval_s: float = 1.0) -> None:
        self.app = app
        self.title = title
        self.table = LiveTable(interval_s=interval_s)
        self._started = time.monotonic()
        self._since = time.time()  # events start at their first frame's wall time

    def models(self) -> dict[str, ModelColumns]:
        columns = {}
        for status in self.app.inference.snapshot().cameras:
            state = status.state.value
            if status.state is ModelState.LEARNING:
                state = f"learning {status.learn_progress:.0%}"
            elif status.state is ModelState.DETECTING and status.note:
                state = "detecting (short)"  # footage: a conservative threshold
            latest = status.latest
            columns[status.camera] = ModelColumns(
                state, None if latest is None else latest.smoothed, status.threshold
            )
        return columns

    def events(self, limit: int = 6, earlier: bool = False) -> list[dict[str, Any]]:
        """This run's newest events (``earlier``: those of earlier runs instead)."""
        store = self.app.alerts.store
        if store is None:
            return []
        if earlier:
            return store.events(until=self._since, limit=limit)
        return store.events(since=self._since, limit=limit)

    async def _refresh(self, duration_s: float | None) -> None:
        while True:
            await asyncio.sleep(self.table.interval_s)
            elapsed = time.monotonic() - self._started
            total = f"/{duration_s:.0f}" if duration_s is not None else ""
            where = f"  {self.app.url}/api/events  {self.app.url}/metrics" if self.app.url else ""
            events = await asyncio.to_thread(self.events)
            footer = ["", *(_event_line(e) for e in reversed(events))] if events else []
            self.table.show(
                self.app.capture.status(),
                f"{self.title} — {elapsed:.0f}{total} s{where}",
                self.models(),
                footer,
            )

    async def run(self, duration_s: float | None) -> None:
        print(f"{self.title}: {len(self.app.config.cameras)} camera(s); Ctrl-C stops", flush=True)
        task = asyncio.create_task(self._refresh(duration_s))
        try:
            await self.app.start()
            await self.app.wait(duration_s)
            self.summary()  # while the store is still open
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.app.stop()

    def summary(self) -> None:
        print("\nsummary:")
        analysed = self.app.inference.analysed
        events = self.events(limit=500)
        for s in self.app.capture.status():
            mine = [e for e in events if e["camera"] == s.name]
            print(
                f"  {s.name}: {s.frames} frames decoded, {analysed.get(s.name, 0)} scored, "
                f"{len(mine)} event(s)"
            )
            for event in reversed(mine):
                print(f"    {_event_line(event)}")
            detector = self.app.inference.detectors.get(s.name)
            if detector is not None and detector.error:
                print(f"    model: {detector.error}")
        if self.events(limit=1, earlier=True):
            where = f" ({self.app.url}/api/events while running)" if self.app.url else ""
            print(f"  earlier runs' events are kept in the store too{where}")

    def exit_code(self) -> int:
        """1 when a camera had no frames, or learned a model that could not be saved."""
        unsaved = any(d.unsaved for d in self.app.inference.detectors.values())
        return 0 if all(s.frames for s in self.app.capture.status()) and not unsaved else 1
