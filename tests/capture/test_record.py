"""Detect and record streams per camera, with the real RTSP server on 127.0.0.1: a 320x240
detect stream is scored while a 640x480 record stream's packets (demuxed, not decoded) give the
event's clip and snapshot; a record stream that is down is reported, redacted, and retried while
detection goes on; a camera without one works as before. And the ``record`` key's checks."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from streamdet.alert.store import EventStore
from streamdet.capture.record import RecordStatus
from streamdet.capture.stage import CaptureStage
from streamdet.config import ClipsConfig, parse_config
from streamdet.errors import ConfigError
from streamdet.frames import FrameRef, ScoredFrame, SourceState
from tests.support.media import make_clip, read_frame_index
from tests.support.scripted import PEAK_FIRST, run_script, stages
from tests.support.servers import RtspServer, free_port
from tests.support.waiting import wait_for

FPS = 25
FRAMES = 250


@pytest.fixture(scope="module")
def two_streams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    """/sub: 320x240, /main: 640x480 (colour), the same numbered frames, served live."""
    media = tmp_path_factory.mktemp("media")
    sub = make_clip(media / "sub.mp4", frames=FRAMES, width=320, height=240, fps=FPS, gop=FPS)
    main = make_clip(
        media / "main.mp4", frames=FRAMES, width=640, height=480, fps=FPS, gop=FPS, tint=(170, 90)
    )
    with RtspServer({"/sub": str(sub), "/main": str(main)}) as server:
        yield server


def config(tmp_path: Path, camera: dict[str, Any]) -> Any:
    return parse_config(
        {
            "cameras": [{"name": "cam", **camera}],
            "capture": {"backoff": {"initial_s": 0.2, "max_s": 0.5}},
            "models": {"dir": str(tmp_path / "models"), "learn_in_place": False},
            "alerts": {
                "dir": str(tmp_path / "events"),
                "rules": {"min_duration_s": 0.3, "end_after_s": 0.3},
                "clips": {"pre_roll_s": 1, "post_roll_s": 0.2},
            },
        }
    )


@pytest.mark.rtsp
def test_clip_and_snapshot_come_from_the_record_stream_at_its_resolution(
    tmp_path: Path, two_streams: RtspServer
) -> None:
    camera = {
        "source": {"kind": "rtsp", "url": two_streams.url("/sub")},
        "record": two_streams.url("/main"),
    }
    scripted = stages(config(tmp_path, camera))
    peaks: list[int] = []

    def scored(ref: FrameRef, score: float) -> ScoredFrame:
        if score == max(PEAK_FIRST):
            pixels = scripted.capture.ring("cam").read(ref)
            assert pixels is not None
            peaks.append(read_frame_index(pixels))
        return ScoredFrame(ref, score, score, 4.0, np.zeros((6, 8), np.float32), time.time())

    scripted.capture.start()  # run_script's own start is then a no-op; it stops the stage
    buffer = scripted.capture.clips("cam")
    assert buffer is not None
    wait_for(lambda: buffer.newest() is not None, 15, "the record stream's first packets")
    run_script(scripted, "cam", PEAK_FIRST, scored, settle_s=1.0)
    status = scripted.capture.status()[0]
    assert status.resolution == (320, 240)  # the detect stream is what is decoded
    assert status.record is not None and status.record.resolution == (640, 480)
    assert status.record.packets > 0
    (event,) = EventStore(tmp_path / "events" / "events.db").events()
    snapshot = cv2.imread(event["snapshot"])
    assert snapshot is not None and snapshot.shape == (480, 640, 3)  # the record stream's size
    corner = snapshot[-40:, :40].reshape(-1, 3).mean(axis=0)
    assert corner[0] - corner[2] > 40, corner  # its colour: the detect clip is grey
    # The record stream's frame of the peak's moment: the two streams' frame numbers differ
    # by how far apart the server started them (a frame at most); without allowing for the
    # detect decoder's delay (frame threads) the record frame was 2 frames late here.
    gap = (read_frame_index(snapshot) - peaks[0]) % FRAMES
    assert min(gap, FRAMES - gap) <= 1, (read_frame_index(snapshot), peaks[0])
    assert event["clip"], event
    with av.open(event["clip"]) as clip:
        frames = [f.to_ndarray(format="bgr24") for f in clip.decode(video=0)]
    assert frames[0].shape == (480, 640, 3) and len(frames) >= FPS  # >= 1 s of the record stream
    numbers = [read_frame_index(f) for f in frames]
    assert {(b - a) % FRAMES for a, b in itertools.pairwise(numbers)} == {1}


@pytest.mark.rtsp
def test_record_stream_down_is_reported_redacted_and_retried_while_detection_goes_on(
    tmp_path: Path, two_streams: RtspServer
) -> None:
    port = free_port()  # nothing listens here yet: the record stream is down
    camera = {
        "source": {"kind": "rtsp", "url": two_streams.url("/sub")},
        "record": f"rtsp://admin:hunter2@127.0.0.1:{port}/main",
    }
    cfg = config(tmp_path, camera)
    stage = CaptureStage(cfg.cameras, cfg.capture, clips=cfg.alerts.clips)
    with stage:
        worker = stage.worker("cam")  # in this process, or a capture process's stand-in

        def record() -> RecordStatus | None:  # None until its first report, in a process
            return worker.record_status()

        wait_for(lambda: (r := record()) is not None and r.reconnects >= 2, 10, "two retries")
        frames = worker.stats.frames
        wait_for(lambda: worker.stats.frames >= frames + 25, 10, "detection going on")
        status = stage.status()[0]
        assert status.state is SourceState.RUNNING
        assert status.record is not None
        assert status.record.state in (SourceState.CONNECTING, SourceState.RECONNECTING)
        assert status.record.source == f"rtsp://***@127.0.0.1:{port}/main"
        assert status.record.errors and "cannot open" in status.record.errors[-1]
        assert not any("hunter2" in line for line in status.record.errors + status.errors)
        shown = status.record.as_json()  # what /api/cameras gives as the camera's "record"
        assert shown["state"] in ("connecting", "reconnecting") and shown["packets"] == 0
        assert "cannot open" in shown["last_error"] and "hunter2" not in str(shown)
        buffer = stage.clips("cam")
        assert buffer is not None and buffer.newest() is None  # no footage from the detect stream
        # The camera's main stream comes up: the retry finds it, its packets are kept.
        with RtspServer({"/main": two_streams.mounts["/main"]}, port=port):
            back = lambda: (r := record()) is not None and r.state is SourceState.RUNNING  # noqa: E731
            wait_for(back, 15, "the record stream back")
            wait_for(lambda: buffer.newest() is not None, 5, "record footage")
            now = time.time()
            footage = buffer.cut(now - 5, now)
            assert footage is not None
            assert (footage.fmt.width, footage.fmt.height) == (640, 480)
            assert not footage.fmt.detect_pts


@pytest.mark.rtsp
def test_without_a_record_source_footage_is_the_detect_streams(two_streams: RtspServer) -> None:
    source = {"kind": "rtsp", "url": two_streams.url("/sub")}
    cfg = parse_config({"cameras": [{"name": "cam", "source": source}]})
    stage = CaptureStage(cfg.cameras, cfg.capture, clips=ClipsConfig(pre_roll_s=1))
    with stage:
        assert stage.worker("cam").record_status() is None
        buffer = stage.clips("cam")
        assert buffer is not None
        wait_for(lambda: stage.worker("cam").stats.frames >= 30, 10, "30 frames")
        now = time.time()
        footage = buffer.cut(now - 2, now)
        assert not any(t.name.startswith("record:") for t in threading.enumerate())
        assert stage.status()[0].record is None
    assert footage is not None and footage.fmt.detect_pts
    assert (footage.fmt.width, footage.fmt.height) == (320, 240)


def test_record_key_takes_a_url_or_rtsp_keys_with_clear_redacted_errors() -> None:
    source = {"kind": "synthetic"}
    cfg = parse_config({"cameras": [{"name": "a", "source": source, "record": "rtsp://h/main"}]})
    assert cfg.cameras[0].record is not None and cfg.cameras[0].record.url == "rtsp://h/main"
    keys = {"url": "rtsp://h/main", "transport": "udp"}
    cfg = parse_config({"cameras": [{"name": "a", "source": source, "record": keys}]})
    assert cfg.cameras[0].record is not None and cfg.cameras[0].record.transport == "udp"
    assert parse_config({"cameras": [{"name": "a", "source": source}]}).cameras[0].record is None
    bad: list[tuple[Any, str]] = [
        ("http://admin:hunter2@h/x", "cameras[0].record.url: expected rtsp://"),
        (5, "cameras[0].record: expected an rtsp:// URL"),
        ({"url": "rtsp://h/x", "fps": 5}, "cameras[0].record.fps: unknown key"),
    ]
    for record, message in bad:
        with pytest.raises(ConfigError) as error:
            parse_config({"cameras": [{"name": "a", "source": source, "record": record}]})
        assert message in str(error.value) and "hunter2" not in str(error.value)
