"""One fleet worker: on every heartbeat, who is live, which cameras are mine, start and stop.

Each beat (``fleet.heartbeat_s``): upload the checkpoints of my cameras that changed, write my
heartbeat (with the cameras I run), read the camera list (from the KV entry, when it lives
there), read the live members, place every camera by rendezvous hashing, then stop the cameras
that are no longer mine and start the ones that are — each through the App (``CameraControl``),
its checkpoint fetched first. A camera is started only once no other live worker reports
running it, so that a camera that moves between two live workers never runs on both: the old
owner stops it at its own next beat. A worker that dies stops beating; after
``member_timeout_s`` the others count it gone and its cameras start on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError

from streamdet.config import CameraConfig, FleetConfig
from streamdet.fleet.assign import assign, moved
from streamdet.fleet.cameras import encode_cameras, parse_cameras
from streamdet.fleet.connect import CAMERAS_KEY, Buckets, FleetError, open_buckets
from streamdet.fleet.membership import Member, Membership
from streamdet.fleet.models import ModelStore

logger = logging.getLogger(__name__)

JOIN_RETRY_S = 2.0  # between attempts to reach NATS at start
START_RETRY_S = 10.0  # a camera that could not start here is tried again this much later


class CameraControl(Protocol):
    """What the worker asks of the App."""

    async def start_fleet_camera(self, camera: CameraConfig) -> str | None:
        """Start ``camera`` here; the reason it could not, else None."""

    async def stop_fleet_camera(self, name: str) -> None: ...


@dataclass(frozen=True)
class Running:
    config: CameraConfig
    since: float  # unix time
    model: str | None  # the checkpoint's digest it started with (None: it learns)


def default_name() -> str:
    """The host name, as a KV key may spell it."""
    name = "".join(c if c.isalnum() or c in "_-" else "-" for c in socket.gethostname())
    return name.strip("-")[:64] or "worker"


class FleetWorker:
    """Joins the fleet and runs this worker's share of the cameras."""

    def __init__(
        self,
        config: FleetConfig,
        cameras: list[CameraConfig],
        models_dir: Path,
        control: CameraControl,
        url: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.config = config
        self.name = config.worker or default_name()
        self.cameras = [c for c in cameras if c.enabled]  # the fleet's list
        self._models_dir, self._control, self._url = models_dir, control, url
        self.running: dict[str, Running] = {}
        self.members: dict[str, Member] = {}
        self.placement: dict[str, str] = {}
        self.changes = 0  # cameras whose worker changed, as this worker saw it
        self.joined = time.time()
        self._buckets: Buckets | None = None
        self._membership: Membership | None = None
        self._models: ModelStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._list_revision: int | None = None
        self._failed: dict[str, float] = {}  # camera -> monotonic time its start failed

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start joining: the loop connects (retrying while no NATS server answers: the
        pipeline runs meanwhile, with no camera), then beats."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="fleet:worker")

    async def _join(self) -> None:
        buckets = await open_buckets(self.config, self.name)
        self._buckets = buckets
        self._membership = Membership(
            buckets.js,
            buckets.members,
            f"{self.config.prefix}-members",
            self.name,
            self.config.member_timeout_s,
        )
        self._models = ModelStore(buckets.models, self._models_dir)
        logger.info(
            "fleet: worker %s joining (capacity %g, %d camera(s) in the fleet's list)",
            self.name,
            self.config.capacity,
            len(self.cameras),
        )

    async def stop(self) -> None:
        """Stop beating and leave (the others take my cameras at once); the App stops the
        cameras with the pipeline."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        buckets, self._buckets = self._buckets, None
        if buckets is None:
            return
        try:
            await self._publish_models()  # what was saved since the last beat
            if self._membership is not None:
                await asyncio.wait_for(self._membership.leave(), self.config.heartbeat_s * 3)
        except (NatsError, TimeoutError, OSError) as exc:
            logger.warning("fleet: could not leave cleanly (%r): the others time me out", exc)
        finally:
            await buckets.nc.close()
        logger.info("fleet: worker %s left", self.name)

    def set_cameras(self, cameras: list[CameraConfig]) -> None:
        """A new camera list (a reload of the config file): applied at the next beat."""
        self.cameras = [c for c in cameras if c.enabled]

    # ------------------------------------------------------------------ the beat
    async def _loop(self) -> None:
        while self._buckets is None:
            try:
                await self._join()
            except FleetError as exc:
                logger.error("fleet: %s; trying again in %.0f s", exc, JOIN_RETRY_S)
                await asyncio.sleep(JOIN_RETRY_S)
        seeded = self.config.cameras != "kv"
        while True:
            started = time.monotonic()
            try:
                if not seeded:
                    await self._seed_camera_list()
                    seeded = True
                await self._beat()
            except (NatsError, TimeoutError, OSError, FleetError) as exc:
                # NATS unreachable for now: keep running what runs; the client reconnects
                logger.warning("fleet: heartbeat failed (%s); trying again", exc or repr(exc))
            except Exception:  # the stage boundary: the fleet loop must not die
                logger.exception("fleet: heartbeat crashed; trying again")
            spent = time.monotonic() - started
            await asyncio.sleep(max(0.05, self.config.heartbeat_s - spent))

    async def _beat(self) -> None:
        assert self._membership is not None  # started
        await self._publish_models()
        await self._membership.beat(self._me())
        if self.config.cameras == "kv":
            await self._read_camera_list()
        self.members = await self._membership.live()
        weights = {m.name: m.capacity for m in self.members.values()}
        placement = assign([c.name for c in self.cameras], weights)
        self.changes += len(moved(self.placement, placement))
        self.placement = placement
        wanted = {c.name: c for c in self.cameras if placement.get(c.name) == self.name}
        for name, running in list(self.running.items()):
            if wanted.get(name) != running.config:  # moved away, removed or changed
                await self._stop(name)
        elsewhere = {
            camera
            for member in self.members.values()
            if member.name != self.name
            for camera in member.running
        }
        now = time.monotonic()
        for name, camera in wanted.items():
            if name in self.running or name in elsewhere:
                continue
            if now - self._failed.get(name, -START_RETRY_S) >= START_RETRY_S:
                await self._start(camera)

    async def _start(self, camera: CameraConfig) -> None:
        assert self._models is not None
        try:
            digest = await self._models.fetch(camera.name)
        except (NatsError, TimeoutError, OSError) as exc:
            logger.warning("[%s] fleet: checkpoint not fetched (%r); later", camera.name, exc)
            return
        problem = await self._control.start_fleet_camera(camera)
        if problem is not None:
            logger.error(
                "[%s] fleet: could not start (%s); again in %.0f s",
                camera.name,
                problem,
                START_RETRY_S,
            )
            self._failed[camera.name] = time.monotonic()
            return
        self._failed.pop(camera.name, None)
        self.running[camera.name] = Running(camera, time.time(), digest)
        logger.info(
            "[%s] fleet: runs here now (checkpoint %s)",
            camera.name,
            digest[:12] if digest else "none: it learns",
        )

    async def _stop(self, name: str) -> None:
        await self._control.stop_fleet_camera(name)  # saves what it learned on line
        self.running.pop(name, None)
        if self._models is not None:
            # before the heartbeat that no longer lists it: the next owner starts it only
            # after that one, and fetches this upload
            try:
                await self._models.publish(name)
            except (NatsError, TimeoutError, OSError) as exc:
                logger.warning("[%s] fleet: last checkpoint not published (%r)", name, exc)
            self._models.forget(name)
        logger.info("[%s] fleet: stopped here (runs elsewhere or left the list)", name)

    async def _publish_models(self) -> None:
        if self._models is None:
            return
        for name in list(self.running):
            await self._models.publish(name)

    def _me(self) -> Member:
        now = time.time()
        running = {name: r.since for name, r in self.running.items()}
        return Member(self.name, self.config.capacity, running, self._url(), self.joined, now)

    # ------------------------------------------------------------------ the camera list
    async def _seed_camera_list(self) -> None:
        """Write this file's cameras as the fleet's list unless one is there (only the
        first worker's is kept: ``create`` fails when the key exists)."""
        assert self._buckets is not None
        with contextlib.suppress(KeyNotFoundError):
            await self._read_camera_list()
            return
        try:
            await self._buckets.config.create(CAMERAS_KEY, encode_cameras(self.cameras))
            logger.info("fleet: camera list seeded with this file's %d", len(self.cameras))
        except NatsError:  # another worker seeded it first
            await self._read_camera_list()

    async def _read_camera_list(self) -> None:
        """The KV entry's list, when it changed; a bad one is logged and the last kept.
        Raises KeyNotFoundError when there is none."""
        assert self._buckets is not None
        entry = await self._buckets.config.get(CAMERAS_KEY)
        if entry.revision == self._list_revision:
            return
        self._list_revision = entry.revision
        try:
            self.cameras = parse_cameras(entry.value or b"")
        except ValueError as exc:
            logger.error(
                "fleet: the camera list (%s-config %s, revision %s) is refused, the last one"
                " kept: %s",
                self.config.prefix,
                CAMERAS_KEY,
                entry.revision,
                exc,
            )
            return
        logger.info("fleet: camera list revision %s: %d", entry.revision, len(self.cameras))

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> dict[str, Any]:
        """What /api/fleet shows: the members, where each camera runs and since when."""
        now = time.time()
        runs_on = {
            camera: (member.name, since)
            for member in self.members.values()
            for camera, since in member.running.items()
        }
        cameras = {}
        for camera in self.cameras:
            worker, since = runs_on.get(camera.name, (None, None))
            mine = self.running.get(camera.name)
            cameras[camera.name] = {
                "assigned": self.placement.get(camera.name),
                "worker": worker,
                "since": since,
                # the checkpoint version: it started with, and it has now (both None: learning)
                "started_with": mine.model if mine is not None else None,
                "model": self._models.digests.get(camera.name) if mine and self._models else None,
            }
        members = [
            {
                "name": m.name,
                "capacity": m.capacity,
                "url": m.url,
                "joined": m.joined,
                "heartbeat_age_s": round(max(0.0, now - m.sent), 3),
                "cameras": sorted(m.running),
            }
            for m in sorted(self.members.values(), key=lambda m: m.name)
        ]
        return {
            "worker": self.name,
            "members": members,
            "running": sorted(self.running),
            "cameras": cameras,
            "assignment_changes": self.changes,
        }
