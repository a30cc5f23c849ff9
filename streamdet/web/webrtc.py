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
import json
import logging
import time
from collections.abc import AsyncIterator
from fractions import Fraction

import aioice.ice
import aiortc.sdp
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
from streamdet.web.errors import bad_request, unavailable
from streamdet.web.liveview import (
    CameraGone,
    NewestImage,
    camera_ring,
    newest_image,
    newest_score,
)

logger = logging.getLogger(__name__)

CLOCK_RATE = 90_000  # RTP video clock
CONNECT_DEADLINE_S = 30.0  # a peer still not connected by then is closed


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
        try:
            newest = self._newest(self.seq)
        except CameraGone:  # removed by a reload: the track ends, the page asks anew
            self.stop()
            raise MediaStreamError from None
        if newest is not None:
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
            limit = self.config.max_viewers
            raise unavailable(f"{limit} WebRTC viewers already: use MJPEG or try later")
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
        except Exception as exc:  # an offer read_offer let through that aiortc still refuses
            await self._close(pc)
            why = str(exc) or type(exc).__name__
            raise bad_request(f"sdp: cannot answer this offer: {why}") from exc
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


MAX_OFFER_BYTES = 64 * 1024  # a browser's offer is 3-10 kB
RECEIVING = ("recvonly", "sendrecv")  # what the viewer's side of the video must say


async def read_offer(request: web.Request) -> tuple[RTCSessionDescription, bool]:
    """The offer and the overlay flag of a ``POST .../webrtc`` body; a 400 naming the problem
    else (aiortc's own errors, such as "None is not in list", say nothing to a client)."""
    raw = await request.read()
    if len(raw) > MAX_OFFER_BYTES:
        raise bad_request(f"body: larger than {MAX_OFFER_BYTES // 1024} KiB")
    try:
        body = json.loads(raw)
    except RecursionError:  # json's parser recurses once per level of nesting
        raise bad_request("body: JSON nested too deeply") from None
    except ValueError:  # also not UTF-8
        raise bad_request('body: expected JSON {"sdp": ..., "type": "offer"}') from None
    if not isinstance(body, dict):
        raise bad_request(f'body: expected a JSON object {{"sdp": ...}}, got {type(body).__name__}')
    sdp, kind, overlay = body.get("sdp"), body.get("type"), body.get("overlay", True)
    if kind != "offer":
        raise bad_request(f"type: expected 'offer', got {kind!r}")
    if not isinstance(sdp, str):
        raise bad_request(f"sdp: expected the offer's SDP as a string, got {type(sdp).__name__}")
    if not isinstance(overlay, bool):
        raise bad_request(f"overlay: expected true or false, got {overlay!r}")
    if (problem := offer_problem(sdp)) is not None:
        raise bad_request(f"sdp: {problem}")
    return RTCSessionDescription(sdp=sdp, type="offer"), overlay


def offer_problem(sdp: str) -> str | None:
    """Why ``sdp`` is not an offer this server can send its video to, or None."""
    if not sdp.startswith("v=0"):
        return "not a session description (one starts with v=0)"
    try:
        session = aiortc.sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # the parser asserts and indexes its way through hostile input
        return f"cannot parse it: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
    if not any(media.kind == "video" for media in session.media):
        return "the offer has no video (m=video, e.g. a receive-only video transceiver)"
    for media in session.media:
        if media.direction is None:
            return f"its m={media.kind} has no direction (a=recvonly, a=sendrecv, ...)"
        if media.kind == "video" and media.direction not in RECEIVING:
            return f"its video is {media.direction}: the viewer must receive (a=recvonly)"
    return None


async def offer(request: web.Request) -> web.Response:
    """``POST /api/cameras/{name}/webrtc``: an SDP offer in, the answer out."""
    ring, viewers = camera_ring(request), request.app[VIEWERS]
    description, show_overlay = await read_offer(request)
    score = newest_score(request) if show_overlay else None
    track = NewestFrameTrack(
        ring.camera,
        lambda after: newest_image(ring, score, after),
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
