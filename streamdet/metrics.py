"""Every Prometheus metric streamdet exports, declared once against an injected registry.

Hot-path figures (analysed frames, drops, hand-off drops, batch sizes, latencies) are counters
and histograms updated as they happen. Figures the stages already keep (decoded frames,
reconnects, source and model states, queue depths, last scores, deliveries owed) are read at
scrape time by a custom collector from each stage's read-only ``snapshot()``, so the capture
threads pay nothing for them and a scrape runs no SQLite query on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamdet.frames import ModelState, SourceState
from streamdet.handoff import FULL, DropCounter
from streamdet.snapshots import AlertSnapshot, InferenceSnapshot

InferenceView = Callable[[], InferenceSnapshot | None]
AlertView = Callable[[], AlertSnapshot | None]


class CameraFigures(Protocol):
    """What the collector reads of one camera's capture status (``CameraStatus``)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> SourceState: ...
    @property
    def frames(self) -> int: ...
    @property
    def analysable(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def stalls(self) -> int: ...
    @property
    def overwrites(self) -> int: ...
    @property
    def fps(self) -> float: ...


class FootageSize(Protocol):
    @property
    def nbytes(self) -> int: ...


class CaptureView(Protocol):
    """What the collector reads of the capture stage (it imports nothing of capture)."""

    def status(self) -> Sequence[CameraFigures]: ...

    def clips(self, camera: str) -> FootageSize | None: ...


LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class PipelineMetrics:
    """Counters and histograms updated by the stages."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.frames_analysed = Counter(
            "streamdet_frames_analysed", "Frames scored by a model.", ["camera"], registry=registry
        )
        self.frames_dropped = Counter(
            "streamdet_frames_dropped",
            "Frames not scored, by stage and reason.",
            ["camera", "stage", "reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "streamdet_inference_batch_size",
            "Cameras scored together in one batch.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "streamdet_inference_seconds",
            "Time to score one batch.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.latency_seconds = Histogram(
            "streamdet_capture_to_score_seconds",
            "End-to-end latency from decoding a frame to its score.",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.objects_learned = Counter(
            "streamdet_objects_learned",
            "Objects a camera's model learned as normal while detecting: on line (frames far"
            " from any event) or taught (an operator marked an event normal).",
            ["camera", "how"],
            registry=registry,
        )
        self.handoff_dropped = Counter(
            "streamdet_handoff_dropped",
            "Records a bounded hand-off between two stages dropped, by camera, hand-off (the"
            " stage label) and reason (full, timeout, closed, discarded).",
            ["camera", "stage", "reason"],
            registry=registry,
        )

    def drop_counter(self, handoff: str) -> DropCounter:
        """What a hand-off named ``handoff`` calls for each drop. The scored frames' hand-off
        also counts a drop for lack of room as ``streamdet_frames_dropped{stage="inference",
        reason="output_full"}``, the name it had before hand-offs had their own counter."""

        def count(camera: str, reason: str) -> None:
            self.handoff_dropped.labels(camera, handoff, reason).inc()
            if handoff == "scored_frames" and reason == FULL:
                self.frames_dropped.labels(camera, "inference", "output_full").inc()

        return count

    def forget(self, camera: str) -> None:
        """Remove every series labelled with ``camera`` (it was removed from the config); the
        collector's figures go by themselves with the stages' cameras."""
        for metric in (
            self.frames_analysed,
            self.frames_dropped,
            self.latency_seconds,
            self.handoff_dropped,
        ):
            metric.remove_by_labels({"camera": camera})

    def watch(
        self,
        capture: CaptureView,
        inference: InferenceView,
        alerts: AlertView = lambda: None,
    ) -> None:
        """Expose the stages' own figures at scrape time, read from their snapshots."""
        self.registry.register(_StageCollector(capture, inference, alerts))


class _StageCollector(Collector):
    def __init__(self, capture: CaptureView, inference: InferenceView, alerts: AlertView) -> None:
        self.capture = capture
        self.inference = inference
        self.alerts = alerts

    def collect(self) -> Iterator[Metric]:
        yield from self._capture_metrics()
        snapshot = self.inference()
        if snapshot is not None:
            yield from _inference_metrics(snapshot)
        alerts = self.alerts()
        if alerts is not None:
            yield from _alert_metrics(alerts)

    def _capture_metrics(self) -> Iterator[Metric]:
        decoded = CounterMetricFamily(
            "streamdet_frames_decoded", "Frames decoded into the ring.", labels=["camera"]
        )
        analysable = CounterMetricFamily(
            "streamdet_frames_analysable",
            "Decoded frames offered for scoring by the analysis rate limit.",
            labels=["camera"],
        )
        reconnects = CounterMetricFamily(
            "streamdet_reconnects", "Reconnect attempts.", labels=["camera"]
        )
        stalls = CounterMetricFamily("streamdet_stalls", "Stalls detected.", labels=["camera"])
        overwrites = CounterMetricFamily(
            "streamdet_ring_overwrites", "Frames pushed out of the ring.", labels=["camera"]
        )
        up = GaugeMetricFamily("streamdet_camera_up", "1 when frames arrive.", labels=["camera"])
        fps = GaugeMetricFamily("streamdet_camera_fps", "Decoded frames/s.", labels=["camera"])
        state = GaugeMetricFamily(
            "streamdet_source_state",
            "1 for the source's current state.",
            labels=["camera", "state"],
        )
        footage = GaugeMetricFamily(
            "streamdet_clip_buffer_bytes",
            "Recent footage kept in memory for event clips.",
            labels=["camera"],
        )
        for s in self.capture.status():
            buffer = self.capture.clips(s.name)
            if buffer is not None:
                footage.add_metric([s.name], buffer.nbytes)
            decoded.add_metric([s.name], s.frames)
            analysable.add_metric([s.name], s.analysable)
            reconnects.add_metric([s.name], s.reconnects)
            stalls.add_metric([s.name], s.stalls)
            overwrites.add_metric([s.name], s.overwrites)
            up.add_metric([s.name], float(s.state is SourceState.RUNNING))
            fps.add_metric([s.name], s.fps)
            for option in SourceState:
                state.add_metric([s.name, option.value], float(s.state is option))
        yield from (decoded, analysable, reconnects, stalls, overwrites, up, fps, state, footage)


def _alert_metrics(alerts: AlertSnapshot) -> Iterator[Metric]:
    events = CounterMetricFamily("streamdet_events", "Events started.", labels=["camera"])
    for camera, count in alerts.events_started.items():
        events.add_metric([camera], count)
    delivered = CounterMetricFamily(
        "streamdet_sink_deliveries", "Deliveries a sink completed.", labels=["sink"]
    )
    failures = CounterMetricFamily(
        "streamdet_sink_failures", "Deliveries that failed (and are retried).", labels=["sink"]
    )
    outbox = GaugeMetricFamily(
        "streamdet_outbox_depth", "Deliveries a sink still owes.", labels=["sink"]
    )
    for sink in alerts.sinks:
        delivered.add_metric([sink.name], sink.delivered)
        failures.add_metric([sink.name], sink.failures)
        outbox.add_metric([sink.name], sink.owed)
    clips = CounterMetricFamily("streamdet_clips", "Event clips written.")
    clips.add_metric([], alerts.clips_written)
    clip_failures = CounterMetricFamily(
        "streamdet_clip_failures", "Event clips that could not be written."
    )
    clip_failures.add_metric([], alerts.clip_failures)
    yield from (events, delivered, failures, outbox, clips, clip_failures)
    yield from _health_metrics(alerts)


def _inference_metrics(stage: InferenceSnapshot) -> Iterator[Metric]:
    score = GaugeMetricFamily(
        "streamdet_anomaly_score", "Newest smoothed anomaly score.", labels=["camera"]
    )
    threshold = GaugeMetricFamily(
        "streamdet_anomaly_threshold", "Calibrated threshold.", labels=["camera"]
    )
    model_state = GaugeMetricFamily(
        "streamdet_model_state", "1 for the model's current state.", labels=["camera", "state"]
    )
    superseded = CounterMetricFamily(
        "streamdet_frames_superseded",
        "Analysable frames replaced by a newer one before scoring.",
        labels=["camera"],
    )
    depth = GaugeMetricFamily(
        "streamdet_queue_depth", "Items waiting in a hand-off.", labels=["queue"]
    )
    for camera in stage.cameras:
        if camera.latest is not None:
            score.add_metric([camera.camera], camera.latest.smoothed)
        if camera.threshold is not None:
            threshold.add_metric([camera.camera], camera.threshold)
        for option in ModelState:
            model_state.add_metric([camera.camera, option.value], float(camera.state is option))
        superseded.add_metric([camera.camera], camera.superseded)
    depth.add_metric(["batcher"], stage.pending)
    depth.add_metric(["scored_frames"], stage.scored.depth if stage.scored is not None else 0)
    yield from (score, threshold, model_state, superseded, depth)


def _health_metrics(alerts: AlertSnapshot) -> Iterator[Metric]:
    """Per camera whose health is checked: 1 for each open condition; health events started."""
    state = GaugeMetricFamily(
        "streamdet_camera_health",
        "1 while the camera-health condition is open (covered, blurred, moved, frozen).",
        labels=["camera", "condition"],
    )
    events = CounterMetricFamily(
        "streamdet_health_events",
        "Camera-health events started.",
        labels=["camera", "condition"],
    )
    for camera in sorted(alerts.health):
        for condition, is_open in alerts.health[camera].items():
            state.add_metric([camera, condition], float(is_open))
            events.add_metric([camera, condition], alerts.health_events.get((camera, condition), 0))
    yield from (state, events)
