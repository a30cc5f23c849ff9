"""Logging set-up, per-camera log adapters, and credential redaction.

Credentials must never reach a log line, a metric label, an event or the API. ``redact`` is applied
to everything we format ourselves, and ``RedactingFilter`` is installed on the root handler as a
second line of defence for messages that come from libraries (FFmpeg errors quote the URL).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

# Every URL in a piece of text: a scheme, then everything up to the next whitespace. Passwords
# may hold any other character ('@', ':', '/', '#'), so the URL cannot be cut any shorter.
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
# key=value style secrets in query strings (e.g. ?password=...&token=...).
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|auth|key|secret)=)[^&\s;#]+", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """``url`` with its userinfo as ``***``.

    A password may hold '@', ':', '/' or '#', so the userinfo is taken to end at the *last* '@':
    such a password is hidden whole. A path with an '@' in it is hidden along with it: showing
    too little is the safe mistake.
    """
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if sep and at >= 0:
        url = f"{scheme}://***@{rest[at + 1 :]}"
    return _QUERY_SECRET.sub(r"\g<key>***", url)


def redact(text: str) -> str:
    """Replace the credentials of every URL found in ``text`` by ``***`` (see ``redact_url``)."""
    return _URL.sub(lambda match: redact_url(match[0]), text)


class RedactingFilter(logging.Filter):
    """Redact the fully formatted message of every record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Format the traceback now so that it can be redacted too.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class CameraLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with ``[camera]`` so that each line names its camera."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{self.extra['camera'] if self.extra else '?'}] {msg}", kwargs


def camera_logger(name: str, camera: str) -> CameraLogger:
    """A logger for module ``name`` whose lines name ``camera``."""
    return CameraLogger(logging.getLogger(name), {"camera": camera})


def setup_logging(level: str = "INFO", stream: Any = None) -> None:
    """Configure the root logger once: one stream handler with redaction."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_streamdet", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RedactingFilter())
    handler._streamdet = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # libav is chatty at INFO (SEI, reordering notices); its errors still reach us as exceptions.
    logging.getLogger("libav").setLevel(logging.ERROR)
