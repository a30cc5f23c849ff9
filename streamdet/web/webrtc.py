"""Live view over WebRTC (aiortc): the newest frame with the heatmap, paced per viewer.

``POST /api/cameras/{name}/webrtc`` with ``{"sdp": ..., "type": "offer", "overlay": true}``
answers with the server's SDP (candidates included: no trickle). Each viewer gets one peer
connection and one ``NewestFrameTrack``: aiortc's sender pulls a frame, encodes it, and only
then pulls the next, and ``recv()`` waits for the viewer's pacing tick and then takes the newest
frame from the camera's ring. Nothing is queued for a viewer, so a slow one cannot grow memory
or latency. A viewer that leaves (connection failed or closed) frees its peer connection; the
rest are closed when the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction

import aioice.ice
import numpy as np
from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from streamdet.config import WebRtcConfig
from streamdet.web.keys import INFERENCE
from streamdet.web.liveview import camera_ring, newest_image

logger = logging.getLogger(__name__)

CLOCK_RATE = 90_000  # RTP video clock
CONNECT_DEADLINE_S = 30.0  # a peer still not connected by then is closed

NewestImage = Callable[[int], tuple[int, np.ndarray] | None]


class NewestFrameTrack(VideoStreamTrack):
    """A video track that sends the newest image at ``fps``, never a queued one.

    ``newest(after_seq)`` returns ``(seq, pixels)`` when there is a frame newer than ``after_seq``.
    Until the camera has a frame, and when it has nothing new, the last image is sent again.
    """

    def __init__(
        self, camera: str, newest: NewestImage, fps: float, shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.camera = camera
        self._newest = newest
        self._interval = 1.0 / fps
        self._first: float | None = None
        self._tick = 0
        self._image = np.zeros((*shape[:2], 3), np.uint8)
        self.seq = -1  # the camera frame sent last
        self.frames_sent = 0
        self.camera_frames_skipped = 0  # frames the camera made that this viewer never saw

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._first is None:
            self._first = now
        else:
            self._tick += 1
            due = self._first + self._tick * self._interval
            if due > now:
                await asyncio.sleep(due - now)
            else:  # the encoder or the network fell behind: skip ticks, never catch up in a burst
                self._tick = int((now - self._first) / self._interval)
        if (newest := self._newest(self.seq)) is not None:
            seq, self._image = newest
            if self.seq >= 0:
                self.camera_frames_skipped += max(0, seq - self.seq - 1)
            self.seq = seq
        fmt = "gray" if self._image.ndim == 2 else "bgr24"
        frame = VideoFrame.from_ndarray(self._image, format=fmt)
        frame.pts = round(self._tick * self._interval * CLOCK_RATE)
        frame.time_base = Fraction(1, CLOCK_RATE)
        self.frames_sent += 1
        return frame


class HostAddresses:
    """Which addresses aioice offers as ICE host candidates.

    aioice (0.13) lists them with its module function ``get_host_addresses`` and leaves 127.0.0.1
    out, with no option to change that (a filter callable was only proposed, aiortc/aioice#57).
    A browser on this machine with only loopback could then never connect, so while a server is
    up the function is replaced: the configured list, or aioice's own plus 127.0.0.1.
    Process-wide by nature, hence counted: the last server to stop puts the original back.
    """

    def __init__(self) -> None:
        self._users = 0
        self._addresses: list[str] | None = None
        self._original = aioice.ice.get_host_addresses

    def acquire(self, addresses: list[str] | None) -> None:
        if self._users == 0:
            aioice.ice.get_host_addresses = self.lookup
        self._users += 1
        self._addresses = addresses

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            aioice.ice.get_host_addresses = self._original

    def lookup(self, use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if self._addresses is None:
            found = self._original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
            return [*found, "127.0.0.1"] if use_ipv4 else found
        return [a for a in self._addresses if (":" in a and use_ipv6) or ("." in a and use_ipv4)]


HOST_ADDRESSES = HostAddresses()


class WebRtcViewers:
    """Every viewer's peer connection, to answer offers and close them all on shutdown."""

    def __init__(self, config: WebRtcConfig) -> None:
        self.config = config
        self.peers: dict[RTCPeerConnection, NewestFrameTrack] = {}
        self._deadlines: dict[RTCPeerConnection, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._started = False

    def ice_servers(self) -> list[RTCIceServer]:
        return [
            RTCIceServer(
                urls=s.urls,
                username=s.username,
                credential=None if s.credential is None else s.credential.get_secret_value(),
            )
            for s in self.config.ice_servers
        ]

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: start with the server, close every peer when it stops."""
        self.start()
        yield
        await self.stop()

    def start(self) -> None:
        if not self._started:
            HOST_ADDRESSES.acquire(self.config.host_addresses)
            self._started = True

    async def stop(self) -> None:
        """Close every peer connection (idempotent)."""
        await asyncio.gather(*(self._close(pc) for pc in list(self.peers)), *self._closing)
        if self._started:
            HOST_ADDRESSES.release()
            self._started = False

    async def answer(
        self, offer: RTCSessionDescription, track: NewestFrameTrack
    ) -> RTCSessionDescription:
        """A new peer sending ``track``; returns its answer (after gathering candidates)."""
        if len(self.peers) >= self.config.max_viewers:
            raise web.HTTPServiceUnavailable(
                text=f"{self.config.max_viewers} WebRTC viewers already: use MJPEG or try later"
            )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers()))
        self.peers[pc] = track
        loop = asyncio.get_running_loop()
        self._deadlines[pc] = loop.call_later(CONNECT_DEADLINE_S, self._expire, pc)

        @pc.on("connectionstatechange")
        async def _changed() -> None:
            logger.debug("%s: viewer connection %s", track.camera, pc.connectionState)
            if pc.connectionState == "connected" and (deadline := self._deadlines.pop(pc, None)):
                deadline.cancel()
            elif pc.connectionState in ("failed", "closed"):
                await self._close(pc)

        try:
            pc.addTrack(track)
            await pc.setRemoteDescription(offer)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # a malformed or unsupported offer
            await self._close(pc)
            raise web.HTTPBadRequest(text=f"cannot answer this offer: {exc}") from exc
        logger.info("%s: WebRTC viewer connecting (%d viewers)", track.camera, len(self.peers))
        return pc.localDescription

    def _expire(self, pc: RTCPeerConnection) -> None:
        self._deadlines.pop(pc, None)
        if pc.connectionState != "connected":
            task = asyncio.ensure_future(self._close(pc))
            self._closing.add(task)  # keep a reference until it is done
            task.add_done_callback(self._closing.discard)

    async def _close(self, pc: RTCPeerConnection) -> None:
        track = self.peers.pop(pc, None)
        if (deadline := self._deadlines.pop(pc, None)) is not None:
            deadline.cancel()
        if track is not None:
            track.stop()
            logger.info(
                "%s: WebRTC viewer gone after %d frames (%d viewers left)",
                track.camera,
                track.frames_sent,
                len(self.peers),
            )
        await pc.close()


async def offer(request: web.Request) -> web.Response:
    """``POST /api/cameras/{name}/webrtc``: an SDP offer in, the answer out."""
    ring, viewers = camera_ring(request), request.app[VIEWERS]
    try:
        body = await request.json()
        description = RTCSessionDescription(sdp=str(body["sdp"]), type=str(body["type"]))
        show_overlay = bool(body.get("overlay", True))
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text='expected JSON {"sdp": ..., "type": "offer"}') from None
    if description.type != "offer":
        raise web.HTTPBadRequest(text=f"expected an offer, got {description.type!r}")
    inference = request.app[INFERENCE]
    track = NewestFrameTrack(
        ring.camera,
        lambda after: newest_image(ring, inference, show_overlay, after),
        viewers.config.fps,
        ring.shape,
    )
    answer = await viewers.answer(description, track)
    return web.json_response({"sdp": answer.sdp, "type": answer.type})


async def settings(request: web.Request) -> web.Response:
    """``GET /api/webrtc``: what the page needs to connect (the ICE servers, the frame rate)."""
    viewers = request.app[VIEWERS]
    servers = [
        {"urls": s.urls, "username": s.username, "credential": s.credential}
        for s in viewers.ice_servers()
    ]
    return web.json_response(
        {"fps": viewers.config.fps, "iceServers": servers, "viewers": len(viewers.peers)}
    )


VIEWERS: web.AppKey[WebRtcViewers] = web.AppKey("webrtc_viewers", WebRtcViewers)


def add_routes(app: web.Application, config: WebRtcConfig) -> WebRtcViewers:
    """Serve the WebRTC live view on ``app``; the viewers start and stop with it."""
    viewers = WebRtcViewers(config)
    app[VIEWERS] = viewers
    app.cleanup_ctx.append(viewers.lifecycle)
    app.router.add_post("/api/cameras/{name}/webrtc", offer)
    app.router.add_get("/api/webrtc", settings)
    return viewers
