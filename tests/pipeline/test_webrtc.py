"""The WebRTC live view: real aiortc peers against a running pipeline on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import tracemalloc
from pathlib import Path

import aiohttp
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from streamdet.capture.ring import FrameRing
from streamdet.web.liveview import newest_image
from streamdet.web.webrtc import VIEWERS, NewestFrameTrack, WebRtcViewers
from tests.support.pipeline import Running, pipeline_config
from tests.support.waiting import wait_for


class Viewer:
    """A WebRTC client peer, as a browser would be: receive-only video, no STUN."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self.pc.on("track", self.track.set_result)

    async def connect(self, url: str, overlay: bool = True) -> MediaStreamTrack:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"sdp": self.pc.localDescription.sdp, "type": "offer", "overlay": overlay}
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json=offer) as response,
        ):
            assert response.status == 200, await response.text()
            answer = await response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(**answer))
        return await asyncio.wait_for(self.track, 10)

    async def frames(self, count: int) -> list[VideoFrame]:
        track = await self.track
        return [await asyncio.wait_for(track.recv(), 10) for _ in range(count)]  # type: ignore[misc]


def viewers_of(run: Running) -> WebRtcViewers:
    assert run.app.http is not None
    return run.app.http[VIEWERS]


def test_webrtc_two_viewers_at_once_one_leaves_and_is_freed(tmp_path: Path) -> None:
    with Running(pipeline_config(tmp_path / "models")) as run:
        url = f"{run.app.url}/api/cameras/cam-0/webrtc"
        server = viewers_of(run)

        async def scenario() -> None:
            first, second = Viewer(), Viewer()
            await asyncio.gather(first.connect(url), second.connect(url, overlay=False))
            for frames in await asyncio.gather(first.frames(5), second.frames(5)):
                assert (frames[-1].width, frames[-1].height) == (160, 120)
            both = set(server.peers)
            assert len(both) == 2
            await first.pc.close()  # the viewer leaves: its server-side peer is closed and freed
            await asyncio.to_thread(wait_for, lambda: len(server.peers) == 1, 10, "one left")
            (gone,) = both - set(server.peers)
            assert gone.connectionState == "closed"
            (track,) = server.peers.values()
            sent, started = track.frames_sent, time.monotonic()
            await asyncio.sleep(2)  # the viewer reads nothing: the server still sends at its pace
            paced = server.config.fps * (time.monotonic() - started)
            assert track.frames_sent - sent <= paced + 2, (track.frames_sent - sent, paced)
            assert track.camera_frames_skipped > 0  # camera 25 fps, viewer 10 fps: newest only
            started = time.monotonic()
            frames = await second.frames(10)  # the other viewer carries on
            assert frames[-1].width == 160
            assert time.monotonic() - started < 5
            await second.pc.close()

        asyncio.run(scenario())
        wait_for(lambda: not server.peers, 10, "every peer freed")


def test_webrtc_peers_are_closed_when_the_server_stops(tmp_path: Path) -> None:
    async def scenario(url: str, stop: threading.Event) -> str:
        viewer = Viewer()
        await viewer.connect(url)
        await viewer.frames(2)
        stop.set()
        while viewer.pc.connectionState not in ("closed", "failed"):
            await asyncio.sleep(0.05)
        return viewer.pc.connectionState

    stop = threading.Event()
    with Running(pipeline_config(tmp_path / "models")) as run:
        server = viewers_of(run)
        url = f"{run.app.url}/api/cameras/cam-1/webrtc"
        result: list[str] = []
        client = threading.Thread(target=lambda: result.append(asyncio.run(scenario(url, stop))))
        client.start()
        assert stop.wait(20), "no frames"
        peers = list(server.peers)
        assert len(peers) == 1
    assert not server.peers and peers[0].connectionState == "closed"
    client.join(15)
    assert result == ["closed"]  # the server said goodbye (DTLS close), no 30 s ICE timeout


def test_webrtc_slow_viewer_gets_the_newest_frame_and_nothing_piles_up() -> None:
    ring = FrameRing("cam", 8, (120, 160))
    stop = threading.Event()

    def camera() -> None:  # 200 frames/s, far faster than the viewer takes them
        value = 0
        while not stop.is_set():
            ring.writable()[:] = value % 256
            ring.commit(time.time(), None, False)
            value += 1
            time.sleep(0.005)

    async def slow_viewer() -> tuple[list[int], list[int], int]:
        track = NewestFrameTrack(
            "cam", lambda after: newest_image(ring, None, after), 20, ring.shape
        )
        sent, newest = [], []
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(30):
            frame = await track.recv()
            sent.append(track.seq)
            latest = ring.latest()
            newest.append(-1 if latest is None else latest.seq)
            assert frame.width == 160
            await asyncio.sleep(0.1)  # a slow viewer: takes a frame every 0.1 s + the tick
        grown = tracemalloc.get_traced_memory()[0] - baseline
        tracemalloc.stop()
        return sent, newest, grown

    writer = threading.Thread(target=camera, daemon=True)
    writer.start()
    try:
        wait_for(lambda: ring.latest() is not None, 5, "a frame")
        sent, newest, grown = asyncio.run(slow_viewer())
    finally:
        stop.set()
        writer.join(5)
    # Each frame sent was the newest in the ring (within the few ms the viewer took to look).
    lag = [n - s for s, n in zip(sent, newest, strict=True)]
    assert max(lag) <= 3, lag
    assert all(b - a > 5 for a, b in itertools.pairwise(sent)), sent  # frames skipped, not queued
    assert grown < 1_000_000, grown  # one frame is 57 kB as BGR; 30 queued would be 1.7 MB


async def offer_sdp(kind: str = "video") -> str:
    """A real aiortc client's offer: receive-only ``kind``, or a data channel only."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if kind == "data":
        pc.createDataChannel("chat")
    else:
        pc.addTransceiver(kind, direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


def test_webrtc_bad_offers_answer_400_naming_the_problem(tmp_path: Path) -> None:
    async def post(url: str, body: bytes) -> tuple[int, dict[str, str]]:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer,
        ):
            return answer.status, await answer.json(content_type=None)

    async def scenario(url: str) -> list[tuple[str, int, dict[str, str]]]:
        video, audio, data = await offer_sdp(), await offer_sdp("audio"), await offer_sdp("data")

        def offer(sdp: object, **more: object) -> bytes:
            return json.dumps({"sdp": sdp, "type": "offer", **more}).encode()

        bodies = {
            "JSON nested too deeply": b"[" * 30000 + b"]" * 30000,
            "larger than 64 KiB": offer("v=0\r\n" + "a=x\r\n" * 20000),
            "expected JSON": b"\xff\xfe garbage",
            "expected a JSON object": b'["sdp"]',
            "type: expected 'offer', got 'answer'": json.dumps(
                {"sdp": video, "type": "answer"}
            ).encode(),
            "sdp: expected the offer's SDP as a string, got dict": offer({"a": 1}),
            "overlay: expected true or false": offer(video, overlay="yes"),
            "sdp: not a session description": offer("garbage"),
            "sdp: the offer has no video": offer("v=0\r\n"),
            "sdp: the offer has no video (": offer(audio),
            "sdp: the offer has no video (m=video": offer(data),
            "sdp: its video is sendonly": offer(video.replace("a=recvonly", "a=sendonly")),
            "sdp: its m=video has no direction": offer(video.replace("a=recvonly\r\n", "")),
        }
        return [(expected, *await post(url, body)) for expected, body in bodies.items()]

    with Running(pipeline_config(tmp_path / "models")) as run:
        url = f"{run.app.url}/api/cameras/cam-0/webrtc"
        results = asyncio.run(scenario(url))
        assert not viewers_of(run).peers  # nothing was left open by the refused offers

        async def good() -> None:  # and a good offer is still answered
            viewer = Viewer()
            await viewer.connect(url)
            await viewer.frames(1)
            await viewer.pc.close()
            # Let both ends finish closing before this loop ends (no task left pending).
            await asyncio.to_thread(wait_for, lambda: not viewers_of(run).peers, 10, "freed")

        asyncio.run(good())
    for expected, status, answer in results:
        assert status == 400, (expected, status, answer)
        assert answer["error"] == "bad request", answer
        assert expected in answer["detail"], (expected, answer)


def test_webrtc_track_ends_when_its_camera_is_removed_by_a_reload() -> None:
    ring = FrameRing("cam", 4, (120, 160))
    ring.writable()[:] = 7
    ring.commit(time.time(), None, False)
    track = NewestFrameTrack("cam", lambda after: newest_image(ring, None, after), 20, ring.shape)

    async def watch() -> None:
        assert (await track.recv()).width == 160
        ring.close()  # what the capture stage does to a removed camera's ring
        with pytest.raises(MediaStreamError):
            await track.recv()

    asyncio.run(watch())
    assert track.readyState == "ended"  # the peer's sender stops; the page asks anew
