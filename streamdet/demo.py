"""The built-in default: synthetic cameras with scheduled anomalies, so no camera is needed.

``configs/demo.yaml`` is the same configuration written out as a file (a test keeps them equal).
"""

from __future__ import annotations

from pathlib import Path

from streamdet.config import (
    CameraConfig,
    Config,
    SyntheticAnomaly,
    SyntheticSource,
)


def demo_config() -> Config:
    """Three synthetic walkway cameras; each has an anomaly scheduled after a normal stretch.

    Every camera uses the default model (``objects``), which learns what kinds of things
    happen where and says why an event is not one of them: the cyclist is fast, the walker
    against the flow goes the wrong way, the walker on the grass is at an unusual place. The
    anomalies come after the 30 s of learning plus the time three cameras take to train at
    once on a small CPU, with room to spare: at 48 s the first one came as the cameras finished
    training and was missed in one run of two (``benchmarks/demo_scene.py`` measures each
    camera's scores).
    """
    schedules = {
        "walkway-north": SyntheticAnomaly(kind="fast", start_s=58, duration_s=6),
        "walkway-south": SyntheticAnomaly(kind="wrong_way", start_s=68, duration_s=8),
        "walkway-east": SyntheticAnomaly(kind="forbidden_area", start_s=62, duration_s=8),
    }
    cameras = [
        CameraConfig(
            name=name, source=SyntheticSource(seed=seed, anomalies=[anomaly]), analysis_fps=5
        )
        for seed, (name, anomaly) in enumerate(schedules.items(), start=1)
    ]
    return Config(cameras=cameras)


def demo_run_config(
    config: Config, models_dir: Path, events_dir: Path, learn_seconds: float, port: int
) -> Config:
    """The demo's run settings: learn in place for ``learn_seconds`` into ``models_dir``;
    events, snapshots and the JSONL file go to ``events_dir``."""
    models = config.models.model_copy(
        update={"dir": models_dir, "learn_seconds": learn_seconds, "learn_in_place": True}
    )
    alerts = config.alerts.model_copy(update={"dir": events_dir})
    server = config.server.model_copy(update={"port": port})
    # The live table shows every state change; INFO lines would only break its redraw.
    logging = config.logging.model_copy(update={"level": "WARNING"})
    return config.model_copy(
        update={"models": models, "alerts": alerts, "server": server, "logging": logging}
    )
