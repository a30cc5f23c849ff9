"""Tiny RTSP server for streamdet's integration tests and benchmarks (GStreamer RTSP server,
127.0.0.1 only).

Run it with Debian's interpreter, the only one that can ``import gi``::

    /usr/bin/python3 benchmarks/rtsp_server.py --port 8554 \
        --mount /cam=clip.mp4 --mount /pat=pattern

``--mount /path=SOURCE`` serves ``rtsp://127.0.0.1:PORT/path``.  SOURCE ``pattern`` is a live
x264-encoded videotestsrc; anything else is an H.264 MP4, re-muxed without re-encoding and
looped forever.  A file behaves like a live camera: a feeder pipeline plays it in real time
from startup and every client joins the running stream at its next keyframe, so clients share
one stream and nobody's PLAY seeks it.  ``--port 0`` picks a free port.  Prints
``READY <port>`` once listening; exits 0 on SIGTERM/SIGINT, 1 on a pipeline error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable

import gi  # type: ignore[import-not-found]  # system python only, no stubs

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]  # noqa: E402

# SPS/PPS go in front of every IDR so late joiners can start decoding.  h264parse does it per
# access unit; rtph264pay's config-interval would do it per IDR *slice*, which breaks the
# multi-slice frames x264's zerolatency tune produces (decoders see each slice as a frame).
PATTERN = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps}"
    " ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )"
)
FEEDER = (
    "filesrc name=file ! qtdemux ! h264parse config-interval=-1"
    " ! video/x-h264,stream-format=byte-stream,alignment=au"
    " ! appsink name=sink sync=true emit-signals=true"
)
# Buffers arrive un-stamped; do-timestamp restamps them with this pipeline's running time.
RELAY = (
    "( appsrc name=src is-live=true format=time do-timestamp=true"
    " leaky-type=downstream max-buffers=100 ! rtph264pay name=pay0 pt=96 )"
)


class FileFeeder:
    """Plays one MP4 in a gapless real-time loop and fans its access units out to clients."""

    def __init__(self, location: str, on_error: Callable[[str], None]) -> None:
        self.location = location
        self.pipeline = Gst.parse_launch(FEEDER)
        self.pipeline.get_by_name("file").set_property("location", location)
        self._sink = self.pipeline.get_by_name("sink")
        self._sink.connect("new-sample", self._on_sample)
        self._clients: dict[Gst.Element, bool] = {}  # appsrc -> has it had a keyframe yet
        self._lock = threading.Lock()  # new-sample runs in the streaming thread
        self._on_error = on_error
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)

    def start(self) -> None:
        """Preroll (fails fast on a bad file), then play from 0 as a looping segment."""
        self.pipeline.set_state(Gst.State.PAUSED)
        if self.pipeline.get_state(10 * Gst.SECOND)[0] != Gst.StateChangeReturn.SUCCESS:
            error = self.pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
            why = error.parse_error()[0].message if error else "not an H.264 MP4?"
            raise RuntimeError(f"cannot play {self.location}: {why}")
        self._seek(Gst.SeekFlags.FLUSH)
        self.pipeline.set_state(Gst.State.PLAYING)

    def _seek(self, flags: Gst.SeekFlags) -> None:
        # SEGMENT makes qtdemux post SEGMENT_DONE instead of EOS; answering with a
        # non-flushing seek loops without a gap and keeps running time increasing.
        flags |= Gst.SeekFlags.SEGMENT
        self.pipeline.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1)

    def _on_message(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        if msg.type == Gst.MessageType.SEGMENT_DONE:
            self._seek(Gst.SeekFlags.NONE)
        elif msg.type == Gst.MessageType.ERROR:
            self._on_error(str(msg.parse_error()[0].message))

    def on_media_configure(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        """Hook a new (shared) media's appsrc up to the feed."""
        src = media.get_element().get_by_name("src")
        src.set_property("caps", self._sink.get_static_pad("sink").get_current_caps())
        with self._lock:
            self._clients[src] = False
        media.connect("unprepared", lambda _media: self._drop(src))

    def _drop(self, src: Gst.Element) -> None:
        with self._lock:
            self._clients.pop(src, None)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        buf = sink.emit("pull-sample").get_buffer()
        keyframe = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        with self._lock:
            for src, started in self._clients.items():
                if not (started or keyframe):
                    continue  # a decoder cannot start on a delta frame
                out = buf.copy()  # shallow: shares the memory, own timestamps
                out.pts = out.dts = Gst.CLOCK_TIME_NONE  # no B-frames assumed, so PTS == DTS
                # Started only once a keyframe got in: appsrc refuses data until its media runs.
                if src.emit("push-buffer", out) == Gst.FlowReturn.OK:
                    self._clients[src] = True
        return Gst.FlowReturn.OK


def _mount(spec: str) -> tuple[str, str]:
    """Split ``/path=source``."""
    path, sep, source = spec.partition("=")
    if not (sep and path.startswith("/") and source):
        raise argparse.ArgumentTypeError(f"expected /PATH=FILE or /PATH=pattern, got {spec!r}")
    return path, source


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port, 0 = any free one")
    parser.add_argument(
        "--mount", action="append", required=True, type=_mount, metavar="/PATH=FILE|pattern"
    )
    parser.add_argument("--width", type=int, default=640, help="pattern width")
    parser.add_argument("--height", type=int, default=360, help="pattern height")
    parser.add_argument("--fps", type=int, default=25, help="pattern frame rate")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Gst.init(None)
    loop, status = GLib.MainLoop(), [0]

    def fail(message: str) -> None:
        print(f"rtsp_server: {message}", file=sys.stderr, flush=True)
        status[0] = 1
        loop.quit()

    server = GstRtspServer.RTSPServer(address="127.0.0.1", service=str(args.port))
    feeders: list[FileFeeder] = []
    for path, source in args.mount:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_shared(True)  # one pipeline per mount, however many clients read it
        if source == "pattern":
            factory.set_launch(PATTERN.format(w=args.width, h=args.height, fps=args.fps))
        else:
            feeders.append(FileFeeder(source, fail))
            factory.set_launch(RELAY)
            factory.connect("media-configure", feeders[-1].on_media_configure)
        server.get_mount_points().add_factory(path, factory)
    try:
        for feeder in feeders:
            feeder.start()
    except RuntimeError as exc:
        fail(str(exc))
        return 1
    if server.attach(None) == 0:
        fail(f"cannot listen on 127.0.0.1:{args.port}")
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    for feeder in feeders:
        feeder.pipeline.set_state(Gst.State.NULL)
    return status[0]


if __name__ == "__main__":
    sys.exit(main())
