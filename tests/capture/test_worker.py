"""Pure pieces of supervision: backoff delays, the analysis rate limit, stall bounds."""

from __future__ import annotations

import itertools

import pytest

from streamdet.capture.ring import FrameRing
from streamdet.capture.worker import CameraWorker, _RateLimiter
from tests.support.capture import make_config


def worker(**capture: object) -> CameraWorker:
    config = make_config([{"name": "c", "source": {"kind": "synthetic"}}], **capture)
    ring = FrameRing("c", 4, config.cameras[0].frame.shape)
    return CameraWorker(config.cameras[0], config.capture, ring)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    w = worker(backoff={"initial_s": 0.5, "max_s": 4.0, "jitter": 0.3})
    for failures, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0), (60, 4.0)]:
        delays = [w._backoff_delay(failures) for _ in range(200)]
        assert all(nominal * 0.7 <= d <= nominal for d in delays), (failures, min(delays))
        assert max(delays) - min(delays) > nominal * 0.1  # jitter spreads reconnect storms


def test_backoff_without_jitter_is_exact() -> None:
    w = worker(backoff={"initial_s": 1, "max_s": 8, "jitter": 0})
    assert [w._backoff_delay(f) for f in range(1, 6)] == [1, 2, 4, 8, 8]


def test_rate_limiter_passes_analysis_fps_of_a_faster_stream() -> None:
    limiter = _RateLimiter(5.0)
    passed = [n for n in range(250) if limiter.allow(n / 25)]  # 10 s of a 25 fps stream
    assert len(passed) == 50
    assert set(b - a for a, b in itertools.pairwise(passed)) == {5}


def test_rate_limiter_slower_stream_passes_everything() -> None:
    limiter = _RateLimiter(5.0)
    assert all(limiter.allow(n / 2) for n in range(20))


def test_rate_limiter_restarts_when_time_goes_back() -> None:
    limiter = _RateLimiter(5.0)
    assert limiter.allow(100.0)
    assert limiter.allow(0.0)  # a reconnect restarted the stream clock
    assert not limiter.allow(0.04)


def test_rate_limiter_does_not_burst_after_a_gap() -> None:
    limiter = _RateLimiter(5.0)
    limiter.allow(0.0)
    assert limiter.allow(10.0)
    assert not limiter.allow(10.04)


@pytest.mark.parametrize(("fps", "expected"), [(25.0, 2.0), (5.0, 5.0), (0.5, 15.0), (None, 2.0)])
def test_stall_bound_follows_frame_rate_within_limits(fps: float | None, expected: float) -> None:
    from streamdet.capture.sources import StreamInfo

    w = worker(stall_intervals=25, min_stall_s=2, max_stall_s=15)
    if fps is not None:
        w.stats.stream = StreamInfo("h264", 640, 360, fps, True)
    assert w.stall_after_s() == pytest.approx(expected)
