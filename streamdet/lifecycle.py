"""Start parts in order, stop them in reverse, and attempt every stop even when one fails.

As aiohttp's cleanup contexts do: ``Lifecycle.start`` runs a part's start and remembers its
stop; ``Lifecycle.stop`` runs the remembered stops newest first. A stop that raises is logged
and collected, the others still run, and the errors are raised together afterwards as one
``StopErrors`` (an ``ExceptionGroup``). ``stop_all`` is the same for a list of steps that were
not started through a ``Lifecycle`` (the sinks an alert stage closes, a camera's stages at a
reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable

from streamdet.errors import StreamdetError

logger = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object] | object]


class StopErrors(ExceptionGroup[Exception], StreamdetError):
    """One or more stops failed (each was logged); every other stop was still attempted.
    ``steps`` names the steps that failed, in the order of ``exceptions``."""

    steps: list[str]


async def _call(step: Step) -> None:
    result = step()
    if inspect.isawaitable(result):
        await result


async def stop_all(steps: list[tuple[str, Step]], what: str = "stopping") -> None:
    """Run every step in the order given, even when one raises; then raise ``StopErrors``
    with each error (each is logged at once, naming its step)."""
    errors: list[Exception] = []
    failed: list[str] = []
    for name, step in steps:
        try:
            await _call(step)
        except Exception as exc:  # collected: the steps after it must still run
            logger.exception("%s: %s failed", what, name)
            exc.add_note(f"while stopping {name}")
            errors.append(exc)
            failed.append(name)
    if errors:
        group = StopErrors(f"{what}: {len(errors)} step(s) failed ({', '.join(failed)})", errors)
        group.steps = failed
        raise group


class Lifecycle:
    """The parts started so far and how to stop each; ``stop`` is idempotent."""

    def __init__(self, what: str = "stopping") -> None:
        self.what = what
        self._stops: list[tuple[str, Step]] = []

    @property
    def started(self) -> list[str]:
        return [name for name, _ in self._stops]

    async def start(self, name: str, start: Step, stop: Step) -> None:
        """Start a part; once it has started, ``stop`` will stop it. A start that raises
        stops the parts started before it (in reverse) and raises its error."""
        try:
            await _call(start)
        except Exception:
            logger.error("%s failed to start: stopping what had started", name)
            with contextlib.suppress(StopErrors):  # logged; the start's error is raised
                await self.stop()
            raise
        self._stops.append((name, stop))

    async def stop(self) -> None:
        """Stop every started part, newest first, each attempted (see ``stop_all``)."""
        stops, self._stops = self._stops[::-1], []
        await stop_all(stops, self.what)


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` in reverse order of starting and wait for them to finish."""
    for task in reversed(tasks):
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
