"""Capture from files, the synthetic scene and an MJPEG camera on a real HTTP server."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from streamdet.capture.clips import Recorder
from streamdet.capture.sources import (
    FrameMeta,
    StreamInfo,
    SyntheticVideoSource,
    VideoSource,
    make_source,
    resolve_decoder_threads,
    rtsp_open_args,
)
from streamdet.capture.stage import CaptureStage
from streamdet.capture.synthetic import SyntheticScene
from streamdet.config import CameraConfig, CaptureConfig, FileSource, SyntheticSource
from streamdet.frames import SourceState
from tests.support.capture import indices_in_ring, make_config, stage_for, steps
from tests.support.http import ThreadedApp
from tests.support.media import make_clip, make_scene_clip
from tests.support.servers import jpeg_frames
from tests.support.waiting import wait_for

SMALL = {"width": 160, "height": 96}


def file_camera(path: Path, **source: object) -> dict[str, object]:
    return {"name": "file", "source": {"kind": "file", "path": str(path), **source}, "frame": SMALL}


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(
        tmp_path_factory.mktemp("clips") / "short.mp4", frames=60, width=320, height=192
    )


def test_file_frames_in_order_then_stops(short_clip: Path) -> None:
    stage = stage_for([file_camera(short_clip, loop=False, realtime=False)], ring_size=128)
    with stage:
        worker = stage.worker("file")
        wait_for(lambda: worker.state is SourceState.STOPPED, 10, "end of file")
    ring = stage.ring("file")
    assert indices_in_ring(ring) == list(range(60))
    refs, _ = ring.window(60)
    assert [r.pts_s for r in refs] == pytest.approx([i / 25 for i in range(60)])
    assert worker.stats.reconnects == 0 and not worker.stats.errors


def test_file_loops_with_increasing_time(short_clip: Path) -> None:
    stage = stage_for([file_camera(short_clip, loop=True, realtime=False)], ring_size=256)
    with stage:
        ring = stage.ring("file")
        wait_for(lambda: ring.frames_written >= 150, 10, "two loops")
        indices = indices_in_ring(ring)
        refs, _ = ring.window(min(ring.frames_written, 255))
    assert steps(indices, 60) == {1} and 0 in indices[1:]
    pts = [r.pts_s for r in refs]
    assert all(b > a for a, b in itertools.pairwise(pts)), "time must keep increasing"


def test_file_realtime_pacing_and_analysis_rate(short_clip: Path) -> None:
    camera = file_camera(short_clip, loop=True, realtime=True)
    camera["analysis_fps"] = 5
    stage = stage_for([camera])
    with stage:
        worker = stage.worker("file")
        time.sleep(2.0)
        frames, analysable = worker.stats.frames, worker.stats.analysable
    assert 40 <= frames <= 60, frames  # 25 fps for 2 s
    assert analysable == pytest.approx(frames / 5, abs=2)


def test_broken_file_is_reported_and_retried_while_others_run(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    cameras = [
        {"name": "broken", "source": {"kind": "file", "path": str(broken)}, "frame": SMALL},
        {"name": "synthetic", "source": {"kind": "synthetic", "realtime": True}, "frame": SMALL},
    ]
    stage = stage_for(cameras, backoff={"initial_s": 0.05, "max_s": 0.2})
    with stage:
        bad, good = stage.worker("broken"), stage.worker("synthetic")
        wait_for(lambda: bad.stats.connect_failures >= 3, 10, "retries of the broken file")
        assert bad.state is SourceState.RECONNECTING
        assert "cannot open" in bad.stats.errors[-1]
        before = good.stats.frames
        time.sleep(1.0)
        assert good.stats.frames - before >= 20  # 25 fps real time, untouched
        assert good.state is SourceState.RUNNING


def test_gives_up_after_max_attempts(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    cameras = [{"name": "broken", "source": {"kind": "file", "path": str(broken)}, "frame": SMALL}]
    stage = stage_for(cameras, backoff={"initial_s": 0.01, "max_s": 0.02, "max_attempts": 3})
    with stage:
        worker = stage.worker("broken")
        wait_for(lambda: worker.state is SourceState.FAILED, 10, "FAILED")
    assert worker.stats.connect_failures == 3
    assert worker.state is SourceState.FAILED  # stop() keeps the final state


def test_synthetic_frames_in_order_match_the_scene() -> None:
    cameras = [
        {
            "name": "syn",
            "source": {"kind": "synthetic", "seed": 7, "realtime": False},
            "frame": {"width": 320, "height": 240, "color": "bgr"},
        }
    ]
    stage = stage_for(cameras, ring_size=64)
    with stage:
        ring = stage.ring("syn")
        wait_for(lambda: ring.frames_written >= 100, 10, "100 synthetic frames")
        refs, frames = ring.window(32)
    scene = SyntheticScene(seed=7)
    expected = np.empty((240, 320, 3), np.uint8)
    for ref, frame in zip(refs, frames, strict=True):
        assert ref.pts_s == pytest.approx(ref.seq / 25)
        scene.render(ref.seq, expected)
        assert np.array_equal(frame, expected), f"frame {ref.seq} differs from the scene"
    assert [r.seq for r in refs] == list(range(refs[0].seq, refs[0].seq + 32))


def test_synthetic_grey_conversion_is_luma() -> None:
    cameras = [
        {
            "name": "syn",
            "source": {"kind": "synthetic", "realtime": False},
            "frame": {"width": 160, "height": 120},
        }
    ]
    stage = stage_for(cameras)
    with stage:
        ring = stage.ring("syn")
        wait_for(lambda: ring.frames_written >= 5, 10, "frames")
        ref = ring.latest()
        assert ref is not None
        grey = ring.read(ref)
    assert grey is not None and grey.shape == (120, 160) and grey.std() > 5


# ------------------------------------------------------------------------- MJPEG over HTTP
def mjpeg_app(
    jpegs: list[bytes], fps: float = 25.0, first_goes_silent_after: int | None = None
) -> web.Application:
    """multipart/x-mixed-replace JPEGs at ``fps``, looping, at /video.mjpg. With
    ``first_goes_silent_after``, the first connection keeps its socket open but sends nothing
    after that many frames (a hung camera); later connections stream normally."""
    connections = itertools.count()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"}
        )
        await response.prepare(request)
        silent_after = first_goes_silent_after if next(connections) == 0 else None
        index = 0
        while True:
            if index == silent_after:
                await asyncio.sleep(3600)
            jpeg = jpegs[index % len(jpegs)]
            head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            try:
                await response.write(head.encode() + jpeg + b"\r\n")
            except (ConnectionResetError, RuntimeError):
                break
            index += 1
            await asyncio.sleep(1 / fps)
        return response

    app = web.Application()
    app.router.add_get("/video.mjpg", stream)
    return app


@pytest.fixture
def mjpeg_server() -> Iterator[ThreadedApp]:
    scene = SyntheticScene(width=320, height=192)
    frames = []
    for n in range(50):
        frame = np.empty((192, 320, 3), np.uint8)
        scene.render(n, frame)
        for bit in range(16):  # the same counter code as the test clips, in the top band
            value = 235 if (n >> (15 - bit)) & 1 else 16
            frame[:24, bit * 20 : (bit + 1) * 20] = value
        frames.append(frame)
    with ThreadedApp(mjpeg_app(jpeg_frames(frames))) as server:
        yield server


def test_mjpeg_http_frames_arrive_in_order(mjpeg_server: ThreadedApp) -> None:
    url = f"http://user:pw@127.0.0.1:{mjpeg_server.port}/video.mjpg"
    cameras = [{"name": "mjpeg", "source": {"kind": "mjpeg", "url": url}, "frame": SMALL}]
    stage = stage_for(cameras, ring_size=64)
    with stage:
        ring = stage.ring("mjpeg")
        wait_for(lambda: ring.frames_written >= 40, 15, "40 MJPEG frames")
        indices = indices_in_ring(ring)
        status = stage.status()[0]
    assert status.codec == "mjpeg" and status.source.startswith("http://***@127.0.0.1")
    assert steps(indices, 50) == {1}, indices


def test_mjpeg_camera_gone_silent_is_bounded_by_the_read_timeout() -> None:
    # The watchdog's stall limit is set far above the read timeout, so only the read bound
    # (FFmpeg's socket timeout, half of read_timeout_s) can free the capture thread in time.
    jpegs = jpeg_frames([np.full((96, 160, 3), 40 * (n % 5), np.uint8) for n in range(5)])
    with ThreadedApp(mjpeg_app(jpegs, first_goes_silent_after=20)) as server:
        url = f"http://127.0.0.1:{server.port}/video.mjpg"
        source = {"kind": "mjpeg", "url": url, "read_timeout_s": 2}
        stage = stage_for(
            [{"name": "mjpeg", "source": source, "frame": SMALL}],
            min_stall_s=30.0,
            max_stall_s=30.0,
            backoff={"initial_s": 0.1, "max_s": 0.5},
        )
        with stage:
            worker = stage.worker("mjpeg")
            wait_for(lambda: worker.stats.frames >= 20, 10, "the first 20 frames")
            took = wait_for(lambda: worker.stats.frames >= 45, 6, "frames from a new connection")
            assert worker.stats.stalls == 0  # freed by the read bound, not by the watchdog
            assert worker.stats.reconnects >= 1
            assert any("timed out" in e.lower() for e in worker.stats.errors), worker.stats.errors
    print(f"silent camera dropped and reconnected within {took:.2f} s")


class FlakySource:
    """A real synthetic source that raises an unexpected error after ``fail_at`` frames."""

    def __init__(self, inner: SyntheticVideoSource, fail_at: int) -> None:
        self.inner, self.fail_at, self.description = inner, fail_at, inner.description
        self.count = 0

    def open(self) -> StreamInfo:
        return self.inner.open()

    def read_into(self, out: np.ndarray) -> FrameMeta:
        self.count += 1
        if self.count > self.fail_at:
            raise ZeroDivisionError("a bug in some library")
        return self.inner.read_into(out)

    def close(self) -> None:
        self.inner.close()

    def record_to(self, recorder: Recorder | None) -> None:
        self.inner.record_to(recorder)


def test_unexpected_errors_are_contained_and_retried() -> None:
    config = make_config(
        [{"name": "flaky", "source": {"kind": "synthetic", "realtime": False}, "frame": SMALL}],
        backoff={"initial_s": 0.01, "max_s": 0.05},
    )
    opened: list[int] = []

    def factory(camera: CameraConfig) -> VideoSource:
        opened.append(1)
        if len(opened) == 2:
            raise RuntimeError("factory hiccup")
        assert isinstance(camera.source, SyntheticSource)
        return FlakySource(SyntheticVideoSource(camera.source), fail_at=20)

    stage = CaptureStage(config.cameras, config.capture, source_factory=factory)
    with stage:
        worker = stage.worker("flaky")
        wait_for(lambda: worker.stats.frames >= 60, 10, "frames across several failures")
        assert worker.is_alive()
    errors = list(worker.stats.errors)
    assert any("ZeroDivisionError" in e for e in errors)
    assert any("factory hiccup" in e for e in errors)
    assert worker.stats.reconnects >= 3


def test_capture_threads_run_at_the_configured_niceness() -> None:
    config = make_config(
        [{"name": "cam", "source": {"kind": "synthetic", "realtime": False}, "frame": SMALL}],
        nice=3,
        processes=0,  # it reads the thread itself: in this process
    )
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    stage = CaptureStage(config.cameras, config.capture)
    with stage:
        worker = stage.worker("cam")
        wait_for(lambda: worker.stats.frames > 0, 10, "frames")
        thread = worker._thread
        assert thread is not None and thread.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == min(base + 3, 19)
    # the caller's own priority is untouched
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


def _decode_all(path: Path, fast_decode: bool, decoder_threads: int = 0) -> np.ndarray:
    source = make_source(
        FileSource(path=path, loop=False), fast_decode=fast_decode, decoder_threads=decoder_threads
    )
    info = source.open()
    if decoder_threads:
        assert source._stream.codec_context.thread_count == decoder_threads  # type: ignore[attr-defined]
    frames = []
    try:
        while True:
            out = np.empty((info.height, info.width), np.uint8)
            if source.read_into(out) is None:
                return np.stack(frames)
            frames.append(out)
    finally:
        source.close()


def test_fast_decode_skips_deblocking_yet_keeps_every_frame_close(tmp_path: Path) -> None:
    # the synthetic scene at a high CRF: coarse blocks that the deblocking filter smooths
    clip = make_scene_clip(tmp_path / "scene.mp4", frames=30, width=320, height=192, crf=38)
    plain, fast = _decode_all(clip, False), _decode_all(clip, True)
    assert plain.shape == fast.shape == (30, 192, 320)
    diff = np.abs(plain.astype(np.int16) - fast.astype(np.int16))
    assert diff[1:].max() > 0  # the filter was skipped (the first frame may match exactly)
    assert diff.mean() < 3.0  # but the picture is the same picture (1.8 here)
    assert FileSource(path=clip).kind == "file" and CaptureConfig().fast_decode  # on by default


def test_decoder_threads_auto_is_one_per_camera_once_cameras_fill_the_cores() -> None:
    assert resolve_decoder_threads("auto", cameras=24, cores=2) == 1
    assert resolve_decoder_threads("auto", cameras=2, cores=2) == 1
    assert resolve_decoder_threads("auto", cameras=1, cores=2) == 0  # FFmpeg's choice
    assert resolve_decoder_threads("auto", cameras=7, cores=8) == 0
    assert resolve_decoder_threads(0, cameras=24, cores=2) == 0
    assert resolve_decoder_threads(3, cameras=1, cores=2) == 3
    assert CaptureConfig().decoder_threads == "auto"


def test_rtsp_reads_over_tcp_are_bounded_by_ffmpeg_not_a_python_callback() -> None:
    # PyAV's read bound is a callback that takes the GIL at every socket wait; over TCP FFmpeg's
    # own socket timeout (microseconds, half the read timeout: it waits about twice) replaces it.
    # That it still bounds a read: test_rtsp_frozen_server_is_detected_and_reconnected.
    tcp = rtsp_open_args("tcp", open_s=3.0, read_s=4.0)
    assert tcp["timeout"] == (3.0, None)
    assert tcp["options"]["timeout"] == "2000000"
    assert tcp["options"]["rtsp_transport"] == "tcp"
    udp = rtsp_open_args("udp", open_s=3.0, read_s=4.0)  # FFmpeg's UDP wait is a fixed 10 s
    assert udp["timeout"] == (3.0, 2.0)
    assert "timeout" not in udp["options"] and udp["options"]["rtsp_transport"] == "udp"


def test_one_decoder_thread_decodes_the_same_frames(tmp_path: Path) -> None:
    clip = make_scene_clip(tmp_path / "scene.mp4", frames=30, width=320, height=192)
    threaded, single = _decode_all(clip, True, 0), _decode_all(clip, True, 1)
    assert single.shape == (30, 192, 320)
    assert np.array_equal(threaded, single)  # H.264 decoding does not depend on threads


def test_stage_gives_each_camera_the_resolved_decoder_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=5)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)

    def threads_of(cameras: int, setting: int | str) -> set[int]:
        config = make_config(
            [
                {"name": f"c{i}", "source": {"kind": "file", "path": str(clip)}}
                for i in range(cameras)
            ],
            decoder_threads=setting,
            processes=0,  # it reads the workers' source factories: in this process
        )
        stage = CaptureStage(config.cameras, config.capture)
        sources = [stage.worker(c.name)._factory(c) for c in config.cameras]
        return {s.decoder_threads for s in sources}  # type: ignore[attr-defined]

    assert threads_of(2, "auto") == {1}
    assert threads_of(1, "auto") == {0}
    assert threads_of(2, 0) == {0}
    assert threads_of(1, 4) == {4}


def test_raw_h264_file_is_paced_at_its_frame_rate_and_loops_without_errors(
    tmp_path: Path,
) -> None:
    # A raw H.264 stream (no container) carries no timestamps, and cannot be seeked.
    raw = make_clip(tmp_path / "camera.h264", frames=20, width=320, height=192)
    stage = stage_for([file_camera(raw, loop=True, realtime=True)], ring_size=128)
    with stage:
        worker = stage.worker("file")
        time.sleep(2.0)
        frames = worker.stats.frames
        refs, _ = stage.ring("file").window(min(frames, 127))
    assert 40 <= frames <= 60, frames  # 25 fps for 2 s: paced, not decoded as fast as it goes
    pts = [r.pts_s or 0.0 for r in refs]
    assert refs[0].pts_s is not None and all(b > a for a, b in itertools.pairwise(pts))
    assert pts[-1] - pts[0] == pytest.approx((len(pts) - 1) / 25)
    # Each of its 2-3 loops starts again without an error or a reconnect.
    assert worker.stats.reconnects == 0 and not worker.stats.errors, list(worker.stats.errors)
