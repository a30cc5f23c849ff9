"""What ``streamdet run`` and the demo show on the terminal while the pipeline runs.

A live table per camera (capture figures, model state, smoothed score and threshold) and the
newest threshold crossings under it; a summary when the run ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time

from streamdet.app import App
from streamdet.console import LiveTable, ModelColumns
from streamdet.frames import ModelState, ScoredFrame


class PipelineConsole:
    def __init__(self, app: App, title: str, interval_s: float = 1.0) -> None:
        self.app = app
        self.title = title
        self.table = LiveTable(interval_s=interval_s)
        self.crossings: dict[str, list[str]] = collections.defaultdict(list)
        self._notes: collections.deque[str] = collections.deque(maxlen=6)
        self._above: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def on_score(self, frame: ScoredFrame) -> None:
        """Called on the inference thread for every scored frame: note upward crossings."""
        camera = frame.ref.camera
        above = frame.above
        if above and not self._above.get(camera, False):
            stream_t = "" if frame.ref.pts_s is None else f" at stream time {frame.ref.pts_s:.1f} s"
            note = (
                f"{time.strftime('%H:%M:%S')} ANOMALY {camera}: score {frame.smoothed:.2f} > "
                f"threshold {frame.threshold:.2f}{stream_t}"
            )
            with self._lock:
                self._notes.append(note)
                self.crossings[camera].append(note)
        self._above[camera] = above

    def models(self) -> dict[str, ModelColumns]:
        columns = {}
        for status in self.app.inference.status():
            state = status.state.value
            if status.state is ModelState.LEARNING:
                state = f"learning {status.learn_progress:.0%}"
            latest = self.app.inference.latest.get(status.camera)
            columns[status.camera] = ModelColumns(
                state, None if latest is None else latest.smoothed, status.threshold
            )
        return columns

    async def _refresh(self, duration_s: float | None) -> None:
        while True:
            await asyncio.sleep(self.table.interval_s)
            elapsed = time.monotonic() - self._started
            total = f"/{duration_s:.0f}" if duration_s is not None else ""
            where = f"  {self.app.url}/api/cameras  {self.app.url}/metrics" if self.app.url else ""
            with self._lock:
                footer = ["", *self._notes] if self._notes else []
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
            await self.app.run(duration_s)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.summary()

    def summary(self) -> None:
        print("\nsummary:")
        analysed = self.app.inference.analysed
        for s in self.app.capture.status():
            crossings = self.crossings.get(s.name, [])
            print(
                f"  {s.name}: {s.frames} frames decoded, {analysed.get(s.name, 0)} scored, "
                f"{len(crossings)} anomaly crossing(s)"
            )
            for note in crossings:
                print(f"    {note}")

    def exit_code(self) -> int:
        return 0 if all(s.frames for s in self.app.capture.status()) else 1
