"""Credentials are redacted wherever streamdet prints a URL."""

from __future__ import annotations

import io
import logging

import pytest

from streamdet.log import camera_logger, redact, setup_logging


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("rtsp://admin:pa55@10.1.2.3:554/s", "rtsp://***@10.1.2.3:554/s"),
        ("rtsp://admin@host/s", "rtsp://***@host/s"),
        ("http://u:p%40ss@cam/video.mjpg", "http://***@cam/video.mjpg"),
        (
            "open rtsp://a:b@h/x failed; retry rtsp://c:d@i/y",
            "open rtsp://***@h/x failed; retry rtsp://***@i/y",
        ),
        ("http://cam/video?user=a&password=zz&x=1", "http://cam/video?user=***&password=***&x=***"),
        # Every query value is hidden unless its key is a harmless stream selector.
        (
            "rtsp://h/x?access_token=T0k&apikey=K3y&pw=Pw0&channel=1&SubType=0",
            "rtsp://h/x?access_token=***&apikey=***&pw=***&channel=1&SubType=0",
        ),
        ("rtsp://h/x?T0k3n", "rtsp://h/x?***"),  # a bare item is a value without a key
        ("rtsp://h/x?profile=2;sig=abc#token=t", "rtsp://h/x?profile=2;sig=***#token=***"),
        ("open rtsp://u:p@h/x?pw=Pw0: refused", "open rtsp://***@h/x?pw=*** refused"),
        # An '@' in a query value could also be the end of a password holding '?': hide it all.
        ("rtsp://h/x?apikey=Xq9@Leak7", "rtsp://***"),
        ("rtsp://u:Xq9?Leak7@h/x", "rtsp://***"),
        ("rtsp://host/no-credentials", "rtsp://host/no-credentials"),
        # Passwords holding the characters that end a URL's parts elsewhere: hidden whole.
        ("rtsp://admin:Xq9@Leak7@127.0.0.1:18555/x", "rtsp://***@127.0.0.1:18555/x"),
        ("rtsp://admin:Xq9:Leak7@127.0.0.1/x", "rtsp://***@127.0.0.1/x"),
        ("rtsp://admin:Xq9/Leak7@127.0.0.1/x", "rtsp://***@127.0.0.1/x"),
        ("rtsp://admin:Xq9#Leak7@127.0.0.1/x", "rtsp://***@127.0.0.1/x"),
        ("rtsp://admin:Xq9%40Leak7@127.0.0.1/x", "rtsp://***@127.0.0.1/x"),
        ("rtsp://a@b@c:d@@h/x", "rtsp://***@h/x"),
        ("cannot open 'rtsp://u:Xq9@Leak7@h/x': 401", "cannot open 'rtsp://***@h/x': 401"),
        ("plain text", "plain text"),
    ],
)
def test_redact(raw: str, clean: str) -> None:
    assert redact(raw) == clean


def test_log_lines_never_carry_passwords() -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)
    log = camera_logger("streamdet.test", "door")
    log.warning("cannot open %s", "rtsp://admin:topsecret@10.0.0.9/s")
    try:
        raise OSError("Connection refused: rtsp://admin:topsecret@10.0.0.9/s")
    except OSError:
        logging.getLogger("other.library").exception("failed")
    text = stream.getvalue()
    assert "topsecret" not in text
    assert "[door] cannot open rtsp://***@10.0.0.9/s" in text
    assert "Connection refused: rtsp://***@10.0.0.9/s" in text
