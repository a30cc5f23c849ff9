"""The return probe against real sockets on 127.0.0.1: closed, opening, open, stopped."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from streamdet.capture.returnprobe import ReturnProbe, tcp_endpoint
from streamdet.config import RtspSource, parse_config
from tests.support.servers import accepting_socket


def source(spec: dict[str, object]) -> object:
    camera = {"name": "cam", "source": spec}
    return parse_config({"cameras": [camera]}, check_paths=False).cameras[0].source


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"kind": "rtsp", "url": "rtsp://10.0.0.7/stream1"}, ("10.0.0.7", 554)),
        (
            {"kind": "rtsp", "url": "rtsp://u:p%40w@cam.lan:8554/s", "transport": "udp"},
            ("cam.lan", 8554),
        ),
        ({"kind": "rtsp", "url": "rtsps://[fd00::7]/s"}, ("fd00::7", 322)),
        ({"kind": "mjpeg", "url": "http://cam.lan/video.mjpg"}, ("cam.lan", 80)),
        ({"kind": "mjpeg", "url": "https://cam.lan:8443/video.mjpg"}, ("cam.lan", 8443)),
        ({"kind": "file", "path": "clip.mp4"}, None),
        ({"kind": "webcam"}, None),
        ({"kind": "synthetic"}, None),
    ],
)
def test_tcp_endpoint_of_each_source_kind(spec: dict[str, object], expected: object) -> None:
    assert tcp_endpoint(source(spec)) == expected  # type: ignore[arg-type]


def test_a_url_whose_port_is_no_number_has_no_endpoint() -> None:
    """The config refuses it; built without the config's checks, it is no endpoint either."""
    assert tcp_endpoint(RtspSource.model_construct(url="rtsp://cam.lan:port/s")) is None


def probe_for(server: socket.socket, stop: threading.Event | None = None) -> ReturnProbe:
    return ReturnProbe(("127.0.0.1", server.getsockname()[1]), stop or threading.Event())


def test_a_port_that_opens_during_the_wait_ends_it_within_a_probe_interval() -> None:
    with accepting_socket(listening=False) as (server, accepted):
        threading.Timer(0.6, server.listen).start()
        started = time.monotonic()
        assert probe_for(server).wait(5.0) is True
        took = time.monotonic() - started
        # The port opened at 0.6 s; probes come every 0.25 s +/- 20 % (0.3 s at most).
        assert 0.6 <= took <= 0.6 + 0.3 + 0.2, took
        time.sleep(0.1)
        assert len(accepted) == 1


def test_a_port_closed_all_along_waits_out_the_delay() -> None:
    with accepting_socket(listening=False) as (server, _):
        started = time.monotonic()
        assert probe_for(server).wait(0.8) is False
        assert 0.8 <= time.monotonic() - started <= 1.0


def test_a_port_open_from_the_start_is_asked_once_and_the_delay_kept() -> None:
    # Up but failing to open (a 401, a hung server): only the backoff decides, and the camera
    # is not sent a connection every quarter second.
    with accepting_socket() as (server, accepted):
        started = time.monotonic()
        assert probe_for(server).wait(1.0) is False
        assert 1.0 <= time.monotonic() - started <= 1.2
        time.sleep(0.1)
        assert len(accepted) == 1


def test_stop_ends_the_wait_at_once() -> None:
    with accepting_socket(listening=False) as (server, _):
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        assert probe_for(server, stop).wait(10.0) is False
        assert time.monotonic() - started <= 0.6


def test_an_unresolvable_host_falls_back_to_the_plain_delay() -> None:
    started = time.monotonic()
    assert ReturnProbe(("no-such-host.invalid", 554), threading.Event()).wait(0.3) is False
    assert 0.3 <= time.monotonic() - started <= 2.0
