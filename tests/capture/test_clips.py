"""Event clip footage: the buffer's trimming and holds (pure), and clips written from real
sources - copied H.264 packets from a file and from the RTSP server, JPEG frames re-encoded -
then decoded back."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamdet.alert.clip import write_clip
from streamdet.capture.clips import ClipBuffer
from streamdet.capture.stage import CaptureStage
from streamdet.config import ClipsConfig, Config
from streamdet.footage import Chunk, ClipFormat, Footage
from tests.support.capture import make_config, rtsp_camera, steps
from tests.support.media import CLIP_FRAMES, read_frame_index
from tests.support.servers import RtspServer
from tests.support.waiting import wait_for

PACKETS = ClipFormat("packets", "h264", 640, 360, Fraction(1, 90000))


def fill(buffer: ClipBuffer, seconds: float, fps: int = 10, gop: int = 10, t0: float = 0.0) -> None:
    """Chunks at ``fps`` with a keyframe every ``gop`` chunks; 100 bytes each."""
    for i in range(round(seconds * fps)):
        buffer.add(Chunk(t0 + i / fps, i % gop == 0, bytes(100), i * 9000, i * 9000))


def test_buffer_keeps_what_is_needed_from_a_keyframe() -> None:
    buffer = ClipBuffer(keep_s=2.0, max_clip_s=60, max_bytes=10**9)
    buffer.add(Chunk(0.0, True, b"x"))  # before any format: ignored
    buffer.begin(PACKETS)
    fill(buffer, 10)  # keyframes at 0, 1, ..., 9 s; newest chunk at 9.9 s
    footage = buffer.cut(0.0, 100.0)
    assert footage is not None
    # 9.9 - 2 = 7.9: the GOP starting at 7 s is still needed, the ones before are gone.
    assert footage.chunks[0].wall == pytest.approx(7.0) and footage.chunks[0].key
    assert buffer.nbytes == 30 * 100
    # A cut starts at the last keyframe at or before its start and stops at its end.
    cut = buffer.cut(8.5, 9.25)
    assert cut is not None
    assert cut.chunks[0].wall == pytest.approx(8.0)
    assert cut.chunks[-1].wall == pytest.approx(9.2)
    assert cut.fmt == PACKETS


def test_a_hold_keeps_older_footage_up_to_the_longest_clip() -> None:
    buffer = ClipBuffer(keep_s=2.0, max_clip_s=5.0, max_bytes=10**9)
    buffer.begin(PACKETS)
    fill(buffer, 3)
    token = buffer.hold(1.0)
    fill(buffer, 4, t0=3.0)  # newest at 6.9
    footage = buffer.cut(1.0, 7.0)
    assert footage is not None and footage.chunks[0].wall == pytest.approx(1.0)
    fill(buffer, 6, t0=7.0)  # newest at 12.9: 12.9 - 2 - 5 = 5.9 caps how far back a hold reaches
    held = buffer.cut(0.0, 20.0)
    assert held is not None and held.chunks[0].wall == pytest.approx(5.0)
    buffer.release(token)
    fill(buffer, 1, t0=13.0)
    released = buffer.cut(0.0, 20.0)
    assert released is not None and released.chunks[0].wall == pytest.approx(11.0)


def test_the_byte_cap_drops_whole_gops_and_cuts_stay_in_one_segment() -> None:
    buffer = ClipBuffer(keep_s=100.0, max_clip_s=60, max_bytes=2500)
    buffer.begin(PACKETS)
    fill(buffer, 5)
    assert buffer.nbytes <= 2500 + 10 * 100  # at most one GOP over, never a partial GOP
    footage = buffer.cut(0.0, 100.0)
    assert footage is not None and footage.chunks[0].key
    # A reconnect: the new segment's first chunks come before its first keyframe.
    buffer.begin(PACKETS)
    buffer.add(Chunk(6.0, False, bytes(10), 0, 0))
    buffer.add(Chunk(6.1, True, bytes(10), 9000, 9000))
    buffer.add(Chunk(6.2, False, bytes(10), 18000, 18000))
    across = buffer.cut(3.0, 7.0)
    assert across is not None
    assert [c.wall for c in across.chunks] == [6.1, 6.2]  # newest segment, from its keyframe
    assert buffer.newest() == 6.2


def test_a_clip_copies_h264_packets_from_a_file_at_its_resolution(
    tmp_path: Path, clip: Path
) -> None:
    config = make_config(
        [
            {
                "name": "cam",
                "source": {"kind": "file", "path": str(clip), "loop": True, "realtime": True},
                "frame": {"width": 256, "height": 144},
            }
        ]
    )
    footage = capture_then_cut(config, frames=75, seconds=1.5)
    assert footage.fmt.kind == "packets" and footage.fmt.codec == "h264"
    path = write_clip(footage, tmp_path / "clip.mp4")
    indices, size = decode_indices(path)
    assert size == (360, 640)
    assert indices[0] % 25 == 0  # starts at a keyframe (the test clip has one every 25 frames)
    assert len(indices) == len(footage.chunks) and steps(indices, CLIP_FRAMES) == {1}


def test_jpeg_footage_is_encoded_to_h264(tmp_path: Path) -> None:
    grey = np.zeros((120, 161, 3), np.uint8)  # odd width: cropped to even for 4:2:0
    chunks = []
    for i in range(20):
        grey[:] = i * 10
        _, data = cv2.imencode(".jpg", grey)
        chunks.append(Chunk(100.0 + i * 0.2, True, data.tobytes()))
    path = write_clip(Footage(ClipFormat("jpeg", "mjpeg", 161, 120), chunks), tmp_path / "j.mp4")
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 20
    assert (frames[0].width, frames[0].height) == (160, 120)
    assert frames[-1].time == pytest.approx(19 * 0.2, abs=0.01)
    assert [round(float(f.to_ndarray(format="gray").mean()) / 10) for f in frames] == list(
        range(20)
    )
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.rtsp
def test_rtsp_clip_copies_the_cameras_packets(tmp_path: Path, rtsp_server: RtspServer) -> None:
    config = make_config([rtsp_camera("cam", rtsp_server.url("/cam"))])
    footage = capture_then_cut(config, frames=100, seconds=2.5)
    assert footage.fmt.kind == "packets"
    indices, size = decode_indices(write_clip(footage, tmp_path / "rtsp.mp4"))
    assert size == (360, 640)  # the camera's resolution, not the model's 256x144
    assert len(indices) >= 50 and steps(indices, CLIP_FRAMES) == {1}, indices


def capture_then_cut(config: Config, frames: int, seconds: float) -> Footage:
    """Run camera "cam" until it has decoded ``frames``, then cut its last ``seconds``."""
    stage = CaptureStage(
        config.cameras, config.capture, watchdog_interval_s=0.1, clips=ClipsConfig(pre_roll_s=1)
    )
    with stage:
        buffer = stage.clips("cam")
        assert buffer is not None
        wait_for(lambda: stage.worker("cam").stats.frames >= frames, 20, f"{frames} frames")
        now = time.time()
        footage = buffer.cut(now - seconds, now)
    assert footage is not None
    return footage


def decode_indices(path: Path) -> tuple[list[int], tuple[int, int]]:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    return [read_frame_index(f) for f in frames], frames[0].shape
