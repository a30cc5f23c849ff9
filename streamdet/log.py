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
# Query (and fragment) parameters whose values are harmless to show: the stream selectors IP
# cameras take. Every other value may be a secret (access_token, apikey, pw, sig, ...).
SAFE_QUERY_KEYS = frozenset(
    {
        "channel", "ch", "chn", "subtype", "stream", "streamtype", "profile", "resolution",
        "width", "height", "fps", "framerate", "codec", "videocodec", "compression", "quality",
        "bitrate", "transport", "unicast", "camera", "cam", "video", "audio", "format",
    }
)  # fmt: skip
_PARAMETER = re.compile(r"(?P<sep>[?&;#])(?P<key>[^?&;#=]*)(?P<value>=[^&;#]*)?")


def redact_url(url: str) -> str:
    """``url`` with its userinfo, and every query value whose key is not in
    ``SAFE_QUERY_KEYS``, as ``***``.

    A password may hold '@', ':', '/' or '#', so the userinfo is taken to end at the *last* '@':
    such a password is hidden whole. A path with an '@' in it is hidden along with it: showing
    too little is the safe mistake. When that '@' may as well sit in a query value
    (``?key=a@b``), nothing after the scheme is shown.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@")
    if at >= 0 and "?" in rest[:at]:  # '?' in a password, or '@' in a query? Unknowable
        return f"{scheme}://***"
    if at >= 0:
        rest = "***@" + rest[at + 1 :]
    query = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    return f"{scheme}://{rest[:query]}" + _PARAMETER.sub(_redact_parameter, rest[query:])


def _redact_parameter(match: re.Match[str]) -> str:
    """One ``?key=value``: kept if the key is harmless, else the value hidden (a bare
    ``?item`` is a value without a key: hidden too)."""
    sep, key, value = match["sep"], match["key"], match["value"]
    if key.lower() in SAFE_QUERY_KEYS or not (key or value):
        return match[0]
    return f"{sep}{key}=***" if value is not None else f"{sep}***"


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
