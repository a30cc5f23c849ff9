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
    """Three synthetic walkway cameras; each has anomalies scheduled after a normal stretch.

    North keeps the default model (``motionflow``: what moves unusually fast or big, anywhere).
    A walker at normal speed against the flow or on the grass is invisible to it by design, so
    south and east use ``flow``, which learns per place the speed and direction of normal
    movement (``benchmarks/demo_scene.py`` measures both kinds on all three cameras).
    """
    schedules = {
        "walkway-north": (None, SyntheticAnomaly(kind="fast", start_s=40, duration_s=6)),
        "walkway-south": ("flow", SyntheticAnomaly(kind="wrong_way", start_s=50, duration_s=8)),
        "walkway-east": ("flow", SyntheticAnomaly(kind="forbidden_area", start_s=45, duration_s=8)),
    }
    cameras = [
        CameraConfig(
            name=name,
            source=SyntheticSource(seed=seed, anomalies=[anomaly]),
            analysis_fps=5,
            model=model,
        )
        for seed, (name, (model, anomaly)) in enumerate(schedules.items(), start=1)
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
