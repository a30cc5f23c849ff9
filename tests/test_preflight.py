"""Checks of a config against this machine: folders that cannot be written, rings that cannot
fit in memory, a server host that does not resolve (the last in test_cli.py)."""

from __future__ import annotations

from pathlib import Path

from streamdet.config import Config, parse_config
from streamdet.preflight import GIB, folder_problem, machine_memory, problems, ring_problems


def config_of(tmp_path: Path, **more: object) -> Config:
    return parse_config(
        {
            "cameras": [{"name": "a", "source": {"kind": "synthetic"}}],
            "models": {"dir": str(tmp_path / "models")},
            "alerts": {"dir": str(tmp_path / "events")},
            **more,
        }
    )


def test_a_fresh_config_has_no_problems_and_creates_nothing(tmp_path: Path) -> None:
    assert problems(config_of(tmp_path, server={"port": 0})) == []
    assert sorted(tmp_path.iterdir()) == []  # the folders are made by run, not by the check


def test_folders_that_are_files_or_cannot_be_written(tmp_path: Path) -> None:
    file = tmp_path / "events"
    file.write_text("")
    assert folder_problem("alerts.dir", file) == f"alerts.dir: {file} is a file, not a folder"
    assert folder_problem("models.dir", file / "m") == (
        f"models.dir: {file / 'm'} is under {file}, which is a file, not a folder"
    )
    # Not even root may make files in /proc.
    problem = folder_problem("models.dir", Path("/proc/streamdet-models"))
    assert problem is not None and problem.startswith("models.dir: cannot write in /proc: ")
    assert folder_problem("alerts.dir", tmp_path / "new" / "deeper") is None


def test_models_dir_needs_writing_only_when_cameras_learn_in_place(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("")
    learning = config_of(tmp_path)
    assert [p.split(":")[0] for p in problems(learning, pipeline=False)] == []
    assert [p.split(":")[0] for p in problems(learning)] == ["models.dir"]
    fixed = config_of(tmp_path, models={"dir": str(tmp_path / "models"), "learn_in_place": False})
    assert problems(fixed) == []


def test_rings_must_fit_in_half_the_memory(tmp_path: Path) -> None:
    # The config: 4096 frames of 1080p colour, 23.7 GiB.
    big = {"ring_size": 4096}
    frame = {"width": 1920, "height": 1080, "color": "bgr"}
    cameras = [{"name": "a", "source": {"kind": "synthetic"}, "frame": frame}]
    config = config_of(tmp_path, capture=big, cameras=cameras)
    assert ring_problems(config, 8 * GIB) == [
        "capture.ring_size: 4096 frames for each of 1 camera(s) would take 23.7 GiB, more than"
        " half of this machine's 8.0 GiB (cameras[0].frame is 1920x1080 bgr: 23.73 GiB);"
        " lower capture.ring_size or the cameras' frame size"
    ]
    assert ring_problems(config, 48 * GIB) == []
    assert ring_problems(config, None) == []  # unknown memory: nothing to say
    memory = machine_memory()
    assert memory is not None and memory > GIB
    assert ring_problems(config_of(tmp_path), memory) == []  # 64 grey 320x240 frames: 4.9 MB
