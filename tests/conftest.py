"""Shared fixtures: test clips made with PyAV, and a real RTSP server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.media import CLIP_FRAMES, make_clip
from tests.support.servers import RtspServer

# The `streamdet` commands the tests start must run this tree's package, not whichever tree
# the venv's editable install points at (a git worktree shares the venv of the main checkout).
ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x360 H.264 clip whose frame index is readable from its pixels."""
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4", frames=CLIP_FRAMES)


@pytest.fixture
def rtsp_server(clip: Path) -> Iterator[RtspServer]:
    """A running GStreamer RTSP server: /cam serves ``clip`` in a loop, /pattern a test pattern."""
    server = RtspServer({"/cam": str(clip), "/pattern": "pattern"})
    server.start()
    try:
        yield server
    finally:
        server.stop()
