"""Noticing quickly that a network camera is back, between reconnect attempts.

Opening a stream is expensive for both sides (RTSP's DESCRIBE/SETUP/PLAY, FFmpeg's probe, a
decoder), so opens back off exponentially while a camera stays away. But the backoff grows
during the outage itself: after a 3-5 s outage the next open was up to 4 s away and the first
frame came 2.2-5.7 s after the camera was back (issue 13). A TCP connect costs one SYN and is
answered at once (refused by a closed port, accepted by an open one), so between opens the
worker asks the camera's port every ~0.25 s and opens at once when a port that refused starts
accepting. A port that accepts from the start of the wait is not asked again in that wait: the
camera is up but its open failed for another reason (401, 404, a hung server), and only the
backoff decides when to try again. Files, webcams and synthetic scenes have no port to ask.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import urllib.parse

from streamdet.config import MjpegSource, RtspSource, SourceConfig

PROBE_INTERVAL_S = 0.25
# Each interval is scaled by 1 +/- this: cameras that went down together (a switch rebooting)
# do not probe, nor open, in lockstep.
PROBE_JITTER = 0.2
# Refused and accepted are answered within a round trip; a host that is off the network drops
# the SYN instead, and the probe gives up after this.
PROBE_TIMEOUT_S = 0.2
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}

Address = tuple[str, int]


def tcp_endpoint(source: SourceConfig) -> Address | None:
    """``(host, port)`` a network camera's stream is opened on, or None when there is no
    TCP port to ask (files, webcams, synthetic scenes, a URL this cannot parse). RTSP's control
    connection is TCP even when the media comes over UDP."""
    if not isinstance(source, RtspSource | MjpegSource):
        return None
    parts = urllib.parse.urlsplit(source.url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number: the open will say so
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port


def port_accepts(address: tuple[object, ...], family: int, timeout: float) -> bool:
    """Whether a TCP connect to ``address`` (a resolved socket address) succeeds in
    ``timeout`` seconds. The connection is closed at once: nothing is sent."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:  # refused, unreachable, timed out
            return False
    return True


class ReturnProbe:
    """Waits out a reconnect delay, cut short when the camera's closed port accepts again."""

    def __init__(
        self,
        endpoint: Address,
        stop: threading.Event,
        rng: random.Random | None = None,
        interval_s: float = PROBE_INTERVAL_S,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint
        self._stop = stop
        self._random = rng or random.Random()
        self._interval = interval_s
        self._timeout = timeout_s

    def wait(self, delay: float) -> bool:
        """Sleep up to ``delay`` seconds (less when stop is set). True when the port refused
        during this wait and then accepted: the camera is back, open now."""
        deadline = time.monotonic() + delay
        target = self._resolve()
        if target is None:
            self._stop.wait(delay)
            return False
        family, address = target
        refused = False
        while not self._stop.is_set():
            started = time.monotonic()
            if started >= deadline:
                return False
            if port_accepts(address, family, min(self._timeout, deadline - started)):
                if refused:
                    return True
                break  # up already: leave it alone until the backoff is over
            refused = True
            pause = self._interval * (1.0 + PROBE_JITTER * (2.0 * self._random.random() - 1.0))
            self._stop.wait(max(0.0, min(started + pause, deadline) - time.monotonic()))
        self._stop.wait(max(0.0, deadline - time.monotonic()))
        return False

    def _resolve(self) -> tuple[int, tuple[object, ...]] | None:
        """The first address of the camera's host, looked up once per wait rather than once
        per probe (no DNS query every quarter second); None when the name does not resolve."""
        host, port = self.endpoint
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return None
        family, _, _, _, address = infos[0]
        return family, address
