"""Capture from a real RTSP server (GStreamer's, on 127.0.0.1): order, restarts, freezes, isolation.

Select with ``pytest -k rtsp``.
"""

from __future__ import annotations

import io
import logging
import time

import pytest

from streamdet.capture.worker import CameraWorker
from streamdet.console import LiveTable
from streamdet.frames import SourceState
from streamdet.log import setup_logging
from tests.support.capture import indices_in_ring, rtsp_camera, stage_for, steps
from tests.support.media import CLIP_FRAMES
from tests.support.servers import RtspServer, silent_tcp_server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.rtsp


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_frames_arrive_in_order(rtsp_server: RtspServer, transport: str) -> None:
    stage = stage_for(
        [rtsp_camera("cam", rtsp_server.url("/cam"), transport=transport)], ring_size=128
    )
    with stage:
        ring = stage.ring("cam")
        wait_for(lambda: ring.frames_written >= 60, 20, "60 frames over RTSP")
        indices = indices_in_ring(ring)
        status = stage.status()[0]
        assert status.state is SourceState.RUNNING
    assert stage.status()[0].state is SourceState.STOPPED
    assert status.codec == "h264" and status.resolution == (640, 360)
    assert len(indices) >= 60
    assert steps(indices, CLIP_FRAMES) == {1}, indices
    refs, _ = ring.window(min(ring.frames_written, ring.size - 1))
    assert [r.seq for r in refs] == list(range(refs[0].seq, refs[0].seq + len(refs)))
    walls = [r.wall_time for r in refs]
    assert walls == sorted(walls)


def test_rtsp_server_killed_then_restarted_resumes_by_itself(rtsp_server: RtspServer) -> None:
    stage = stage_for(
        [rtsp_camera("cam", rtsp_server.url("/cam"))],
        backoff={"initial_s": 0.2, "max_s": 1.0},
    )
    with stage:
        worker = stage.worker("cam")
        wait_for(lambda: worker.stats.frames >= 25, 20, "first frames")
        rtsp_server.kill()
        wait_for(lambda: worker.state is not SourceState.RUNNING, 10, "the loss to be noticed")
        time.sleep(1.5)  # a few failed reconnect attempts while the camera is gone
        assert worker.stats.connect_failures >= 1
        before = worker.stats.frames
        rtsp_server.start()
        took = wait_for(lambda: worker.stats.frames >= before + 25, 20, "capture to resume")
        assert worker.state is SourceState.RUNNING
        assert worker.stats.reconnects >= 2
    print(f"resumed {took:.2f} s after the server came back")


def test_rtsp_camera_back_after_4_s_gives_a_frame_within_2_s(rtsp_server: RtspServer) -> None:
    """Issue 13: with the default backoff the delay has grown to 2.8-4 s by the end of a 4 s
    outage, and the first frame came 3.2-4.3 s after the server was back. Why 2 s holds now:
    the server listens when ``start()`` returns; the worker's probe asks the port every
    0.25 s +/- 20 % (loopback refuses or accepts in microseconds), so it opens within 0.3 s;
    /pattern's encoder starts with a keyframe for the new session, and open to first frame
    (RTSP handshake, FFmpeg's 0.5 s analysis) took 0.66-0.77 s here: about 1.1 s in all,
    0.9 s of slack for a loaded machine. (/cam would add up to a GOP, 1 s, that no client can
    avoid: the server's file feeder is already playing and a client joins at its next
    keyframe.) Two outages: the old backoff's jitter could get one just under 2 s, never two.
    """
    stage = stage_for([rtsp_camera("cam", rtsp_server.url("/pattern"))])  # default backoff
    with stage:
        worker = stage.worker("cam")
        wait_for(lambda: worker.stats.frames >= 10, 20, "first frames")
        for _ in range(2):
            back, opens = outage(worker, rtsp_server, 4.0)
            print(f"first frame {back:.2f} s after the server was back ({opens} failed opens)")
            # The opens themselves still back off (0.5, 0.5, 1, 2 s ...): a handful in 4 s,
            # not one per probe (16).
            assert 2 <= opens <= 6, opens
            time.sleep(0.5)


def outage(worker: CameraWorker, server: RtspServer, down_s: float) -> tuple[float, int]:
    """Kill ``server``, restart it ``down_s`` later on the same port; return the seconds from
    its being back (listening) to the worker's next frame, and the opens that failed between.
    Fails when that frame takes over 2 s."""
    server.kill()
    killed = time.monotonic()
    wait_for(lambda: worker.state is not SourceState.RUNNING, 5, "the loss to be noticed")
    failures = worker.stats.connect_failures
    time.sleep(max(0.0, down_s - (time.monotonic() - killed)))
    before = worker.stats.frames
    server.start()
    back = wait_for(lambda: worker.stats.frames > before, 2.0, "a frame", poll=0.01)
    return back, worker.stats.connect_failures - failures


def test_rtsp_frozen_server_is_detected_and_reconnected(rtsp_server: RtspServer) -> None:
    stage = stage_for(
        [rtsp_camera("cam", rtsp_server.url("/cam"))],
        min_stall_s=1.0,
        max_stall_s=2.0,
        backoff={"initial_s": 0.2, "max_s": 1.0},
    )
    with stage:
        worker = stage.worker("cam")
        wait_for(lambda: worker.stats.frames >= 25, 20, "first frames")
        rtsp_server.freeze()
        frozen_at = time.monotonic()
        # Bound: the 2 s stall limit (+ watchdog tick and scheduling slack).
        took = wait_for(lambda: worker.state is not SourceState.RUNNING, 4.0, "stall detection")
        assert worker.stats.stalls >= 1 or any(
            "timed out" in e.lower() for e in worker.stats.errors
        )
        # The blocked read is bounded by the read timeout too: the thread must be free again.
        wait_for(lambda: worker.stats.connect_failures >= 1, 10, "a reconnect attempt")
        rtsp_server.thaw()
        before = worker.stats.frames
        resumed = wait_for(lambda: worker.stats.frames >= before + 25, 20, "capture to resume")
        assert worker.state is SourceState.RUNNING
    print(
        f"stall noticed after {took:.2f} s; resumed {resumed:.2f} s after thaw "
        f"({time.monotonic() - frozen_at:.1f} s in all)"
    )


def test_rtsp_unanswered_url_leaves_other_cameras_at_full_rate(rtsp_server: RtspServer) -> None:
    with silent_tcp_server() as silent_port:
        cameras = [
            rtsp_camera("good-1", rtsp_server.url("/cam")),
            rtsp_camera("hangs", f"rtsp://127.0.0.1:{silent_port}/never"),
            rtsp_camera("refused", f"rtsp://127.0.0.1:{free_closed_port()}/nothing"),
            rtsp_camera("good-2", rtsp_server.url("/pattern")),
        ]
        stage = stage_for(cameras, backoff={"initial_s": 0.1, "max_s": 0.5})
        with stage:
            good = [stage.worker("good-1"), stage.worker("good-2")]
            wait_for(lambda: all(w.stats.frames >= 10 for w in good), 20, "good cameras")
            start = [w.stats.frames for w in good]
            time.sleep(4.0)
            rates = [(w.stats.frames - s) / 4.0 for w, s in zip(good, start, strict=True)]
            hangs, refused = stage.worker("hangs"), stage.worker("refused")
            assert hangs.state in (SourceState.CONNECTING, SourceState.RECONNECTING)
            assert refused.state is SourceState.RECONNECTING
            assert refused.stats.connect_failures >= 3
            assert hangs.stats.frames == refused.stats.frames == 0
            # FFmpeg reports an open cut short by the timeout as "Invalid data found": the
            # error says what happened instead, and a refused connection is not called a timeout
            assert "timed out: no complete answer within" in hangs.stats.errors[0]
            assert "Invalid data" not in hangs.stats.errors[0]
            assert "refused" in refused.stats.errors[0].lower()
            assert "timed out" not in refused.stats.errors[0]
    # Both streams are 25 fps live: full rate means real time despite the two dead cameras.
    assert all(rate >= 22 for rate in rates), rates


def free_closed_port() -> int:
    from tests.support.servers import free_port

    return free_port()  # nothing listens there once the probe socket is closed


def test_rtsp_password_never_appears_in_logs_status_or_table(rtsp_server: RtspServer) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)
    secret = "Sup3rS3cret"
    cameras = [
        rtsp_camera("ok", rtsp_server.url("/cam", credentials=f"admin:{secret}")),
        rtsp_camera("bad", f"rtsp://admin:{secret}@127.0.0.1:{free_closed_port()}/x"),
    ]
    stage = stage_for(cameras, backoff={"initial_s": 0.1, "max_s": 0.2})
    with stage:
        wait_for(lambda: stage.worker("ok").stats.frames >= 10, 20, "frames")
        wait_for(lambda: stage.worker("bad").stats.connect_failures >= 2, 10, "failures")
        statuses = stage.status()
    table = io.StringIO()
    LiveTable(table).show(statuses, "t")
    logging.getLogger().handlers.clear()
    texts = [stream.getvalue(), table.getvalue(), repr(statuses)]
    assert "rtsp://***@127.0.0.1" in repr(statuses)
    assert any("bad" in t and "***" in t for t in texts)
    for text in texts:
        assert secret not in text
