"""The installed ``streamdet`` command: exit codes, messages, never a traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import TextIO

from streamdet.alert.rules import Change, EventState
from streamdet.alert.store import EventStore
from streamdet.capture.synthetic import ScheduledAnomaly
from streamdet.pipeline_console import _event_line
from tests.support.cli import STREAMDET, run
from tests.support.configs import alias_bomb
from tests.support.media import make_scene_clip
from tests.support.servers import RtspServer
from tests.support.waiting import wait_for

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_help_is_quick_and_lists_commands() -> None:
    started = time.monotonic()
    result = run("--help")
    assert result.returncode == 0
    for command in ("check-config", "probe", "capture", "run", "train", "eval", "export", "demo"):
        assert command in result.stdout
    assert time.monotonic() - started < 10


def test_check_config_ok() -> None:
    result = run("check-config", str(CONFIGS / "demo.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(
        "OK — 3 camera(s): walkway-north (synthetic), walkway-south (synthetic), "
        "walkway-east (synthetic)"
    )


def test_check_config_errors_name_keys_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "cameras:\n"
        "  - name: a\n    source: {kind: synthetic}\n"
        "  - name: a\n    source: {kind: rtsp, url: 'rtsp://u:${PW}@h/x'}\n"
        "    analysis_fps: 1000\n"
        "  - name: c\n    source: {kind: file, path: missing.mp4}\n    colour: grey\n"
    )
    result = run("check-config", str(bad), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cameras[1].source.url: environment variable PW is not set" in result.stderr
    result = run("check-config", str(bad), env={"PATH": "/usr/bin:/bin", "PW": "x"})
    assert result.returncode == 2
    assert "cameras[1].analysis_fps: Input should be less than or equal to 120" in result.stderr
    assert "cameras[2].colour: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_duplicate_and_missing_file(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text(
        "cameras:\n"
        "  - {name: a, source: {kind: synthetic}}\n"
        "  - {name: a, source: {kind: synthetic}}\n"
    )
    result = run("check-config", str(dup))
    assert result.returncode == 2 and "cameras: duplicate camera name 'a'" in result.stderr
    missing = tmp_path / "missing.yaml"
    missing.write_text("cameras:\n  - {name: a, source: {kind: file, path: nope.mp4}}\n")
    result = run("check-config", str(missing))
    assert result.returncode == 2 and "cameras[0].source.path: file not found" in result.stderr
    result = run("check-config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_probe_file(clip: Path) -> None:
    result = run("probe", str(clip), "--frames", "10", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["codec"], info["width"], info["height"], info["frames"]) == ("h264", 640, 360, 10)
    assert info["declared_fps"] == 25


def test_probe_rtsp_reports_stream_and_hides_password(rtsp_server: RtspServer) -> None:
    url = rtsp_server.url("/cam", credentials="admin:pr0besecret")
    result = run("probe", url, "--frames", "50")
    assert result.returncode == 0, result.stderr
    assert "codec:           h264" in result.stdout
    assert "resolution:      640x360" in result.stdout
    measured = float(result.stdout.split("measured fps:")[1].split()[0])
    assert 20 < measured < 30  # a live 25 fps stream
    assert "pr0besecret" not in result.stdout + result.stderr


def test_probe_unreachable_is_a_clear_error() -> None:
    result = run("probe", "rtsp://user:pw@127.0.0.1:1/x", "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: cannot open rtsp://***@127.0.0.1:1/x")
    assert "Traceback" not in result.stderr and ":pw@" not in result.stderr


def test_demo_learns_then_detects_and_finishes_by_itself(tmp_path: Path) -> None:
    # an event of an earlier run, already in the store: kept, but not shown as this run's
    store = EventStore(tmp_path / "events" / "events.db")
    earlier = EventState("walkway-north", 1e9, 1e9 + 5, 9.0, 1e9 + 1, 3, (0, 0, 1, 1), 4.0)
    store.record(Change.ENDED, earlier, "earlier-run-event", "motionflow", [])
    store.close()
    result = run(
        "demo",
        "--duration",
        "26",  # 6 s of learning, then three cameras train at once (~10-15 s on 2 cores)
        "--learn-seconds",
        "6",
        "--port",
        "0",
        "--events",
        str(tmp_path / "events"),
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    for name in ("walkway-north", "walkway-south", "walkway-east"):
        assert name in result.stdout
    assert "learning" in result.stdout and "detecting" in result.stdout
    assert "/api/events" in result.stdout and "/metrics" in result.stdout
    summary = result.stdout.split("summary:")[1]
    assert summary.count(" scored, ") == 3
    assert "earlier-run-event" not in result.stdout
    assert "earlier runs' events are kept in the store too" in summary


def test_the_console_says_why_an_event_was_raised() -> None:
    event = {"camera": "gate", "start": 1e9, "end": 1e9 + 2.5, "peak_score": 31.0}
    event.update(threshold=12.0, id="e1", reason="wrong way")
    line = _event_line(event)
    assert " EVENT gate: wrong way, peak 31.00 (threshold 12.00), 2.5 s, id e1" in line
    # a model without reasons (motionflow): none said, and no "None"
    assert " EVENT gate: peak 31.00" in _event_line({**event, "reason": None, "end": None})
    assert "open" in _event_line({**event, "end": None})


def start_run(config: Path, out_file: TextIO, *args: str) -> subprocess.Popen[str]:
    """``streamdet run`` in the background, its output to ``out_file``, errors to a pipe."""
    return subprocess.Popen(
        [STREAMDET, "run", "--config", str(config), *args],
        stdout=out_file,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "cameras:\n  - {name: a, source: {kind: synthetic, width: 160, height: 120}}\n"
        f"models: {{dir: {tmp_path / 'models'}, learn_seconds: 600}}\n"
        "server: {port: 0}\n"
    )
    log = tmp_path / "out.txt"
    with log.open("w") as out_file:
        proc = start_run(config, out_file)
        try:
            # Running for real: the live table shows the camera learning in place.
            wait_for(
                lambda: "learning" in log.read_text() or proc.poll() is not None,
                60,
                "the live table",
            )
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log.read_text()
    assert proc.returncode == 0, err
    assert "summary:" in out.split("learning")[-1]  # it summarised after the signal
    assert "Traceback" not in err


def test_capture_with_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: 3\n")
    result = run("capture", "--config", str(bad), "--duration", "1")
    assert result.returncode == 2 and "cameras: Input should be a valid list" in result.stderr


AT_PASSWORD_URL = "rtsp://admin:Xq9@Leak7@127.0.0.1:1/x"  # the password is "Xq9@Leak7"


def test_passwords_holding_at_signs_are_hidden_by_check_config_and_probe(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"  # an rtsp source given an http URL: the error quotes the URL
    bad.write_text(
        "cameras:\n  - name: a\n    source: {kind: rtsp, url: 'http://admin:Xq9@Leak7@h:1/x'}\n"
    )
    checked = run("check-config", str(bad))
    assert checked.returncode == 2 and "got 'http://***@h:1/x'" in checked.stderr
    probed = run("probe", AT_PASSWORD_URL, "--timeout", "2")
    assert probed.returncode == 1
    assert "error: cannot open rtsp://***@127.0.0.1:1/x" in probed.stderr
    for result in (checked, probed):
        assert "Leak7" not in result.stdout + result.stderr


def test_query_string_secrets_are_hidden_by_probe() -> None:
    url = "rtsp://127.0.0.1:1/x?access_token=Leak7&apikey=Leak7&pw=Leak7&channel=1"
    result = run("probe", url, "--timeout", "2")
    assert result.returncode == 1
    shown = "rtsp://127.0.0.1:1/x?access_token=***&apikey=***&pw=***&channel=1"
    assert f"probing {shown} ..." in result.stderr
    assert "Leak7" not in result.stdout + result.stderr


def test_check_config_of_a_utf16_file_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "windows.yaml"
    config.write_bytes("cameras:\n  - {name: a, source: {kind: synthetic}}\n".encode("utf-16"))
    result = run("check-config", str(config))
    assert result.returncode == 2, result.stderr
    assert f"invalid configuration {config}:" in result.stderr
    assert "(file): the file is UTF-16" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_refuses_a_billion_laughs_at_once(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(9))  # 526 bytes, 387 million values once expanded
    started = time.monotonic()
    result = run("check-config", str(bomb), timeout=20)
    assert time.monotonic() - started < 10
    assert result.returncode == 2, result.stderr
    assert "invalid YAML: its aliases expand to more than 100000 values" in result.stderr


def test_check_config_calls_nan_and_inf_not_finite(tmp_path: Path) -> None:
    config = tmp_path / "nan.yaml"
    config.write_text(
        "cameras:\n  - name: a\n    source: {kind: synthetic, fps: .inf}\n    analysis_fps: .nan\n"
    )
    result = run("check-config", str(config))
    assert result.returncode == 2, result.stderr
    assert "cameras[0].source.fps: Input should be a finite number, not inf" in result.stderr
    assert "cameras[0].analysis_fps: Input should be a finite number, not nan" in result.stderr
    assert "less than" not in result.stderr


def test_check_config_and_run_refuse_a_server_host_that_does_not_resolve(tmp_path: Path) -> None:
    for host, problem in [
        ("nosuch.invalid", "server.host: cannot resolve 'nosuch.invalid'"),
        ("300.1.2.3", "server.host: cannot resolve '300.1.2.3'"),
        ("192.0.2.1", "server.host: cannot serve on '192.0.2.1': Cannot assign requested address"),
    ]:
        config = tmp_path / "host.yaml"
        config.write_text(
            "cameras: [{name: a, source: {kind: synthetic}}]\n"
            f"models: {{dir: {tmp_path / 'models'}}}\nalerts: {{dir: {tmp_path / 'events'}}}\n"
            f"server: {{host: '{host}', port: 0}}\n"
        )
        for args in (["check-config", str(config)], ["run", "--config", str(config)]):
            result = run(*args, timeout=30)
            assert result.returncode == 2, (args, result.stderr)
            assert problem in result.stderr, (args, result.stderr)
    assert not (tmp_path / "events").exists()  # refused before anything started


def test_check_config_and_run_refuse_what_run_would_crash_on(tmp_path: Path) -> None:
    from streamdet.preflight import machine_memory

    (tmp_path / "events").write_text("a file where alerts.dir wants a folder")
    memory = machine_memory() or 2**40
    cameras = int(memory / (4096 * 1920 * 1080 * 3) / 2) + 1  # 23.7 GiB each: over half
    config = tmp_path / "crash.yaml"
    config.write_text(
        "cameras:\n"
        + "".join(
            f"  - {{name: c{i}, source: {{kind: synthetic}},"
            " frame: {width: 1920, height: 1080, color: bgr}}\n"
            for i in range(cameras)
        )
        + "capture: {ring_size: 4096}\n"
        f"models: {{dir: {tmp_path / 'models'}}}\nalerts: {{dir: {tmp_path / 'events'}}}\n"
        "server: {port: 0}\n"
    )
    for args in (["check-config", str(config)], ["run", "--config", str(config)]):
        result = run(*args, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert f"alerts.dir: {tmp_path / 'events'} is a file, not a folder" in result.stderr
        assert "capture.ring_size: 4096 frames for each of" in result.stderr
        assert "Traceback" not in result.stderr


def test_run_exits_1_when_the_learned_model_could_not_be_saved(tmp_path: Path) -> None:
    models = tmp_path / "models"
    config = tmp_path / "run.yaml"
    config.write_text(
        "cameras:\n  - {name: a, source: {kind: synthetic, width: 160, height: 120},"
        " frame: {width: 160, height: 120}}\n"
        f"models: {{dir: {models}, kind: motion, learn_seconds: 4}}\n"
        "server: {port: 0}\n"
    )
    log = tmp_path / "out.txt"
    with log.open("w") as out_file:
        proc = start_run(config, out_file, "--duration", "15")
        try:
            wait_for(lambda: "learning" in log.read_text(), 30, "the camera learning")
            models.write_text("")  # models.dir can no longer be made
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log.read_text()
    assert proc.returncode == 1, err
    assert "learned model not saved" in out.split("summary:")[-1]  # said in the summary
    assert "learned model not saved" in err and "Traceback" not in err
    assert "scored" in out and " 0 scored" not in out  # it detected with the model in memory


def test_run_exits_0_by_itself_when_its_files_have_ended(tmp_path: Path) -> None:
    # 18 s of the scene at 20 fps: learned from the first 7 s, a cyclist at 11-14 s.
    video = make_scene_clip(
        tmp_path / "walkway.mp4",
        frames=360,
        width=256,
        height=192,
        fps=20,
        gop=20,
        seed=3,
        anomalies=(ScheduledAnomaly("fast", start_s=11, duration_s=3),),
    )
    config = tmp_path / "run.yaml"
    config.write_text(
        "cameras:\n  - {name: walk, source: {kind: file, path: walkway.mp4, loop: false},"
        " frame: {width: 256, height: 192}}\n"
        "models: {dir: models, kind: motion, learn_seconds: 7}\n"
        "alerts: {dir: events, sinks: [{kind: jsonl}], clips: {post_roll_s: 1}}\n"
        "server: {port: 0}\n"
    )
    assert video.exists()
    started = time.monotonic()
    result = run("run", "--config", str(config), timeout=90)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "every source has ended" in result.stderr and took < 60, took
    store = EventStore(tmp_path / "events" / "events.db")
    events = store.events()
    assert events and all(e["end"] is not None for e in events), result.stderr[-3000:]
    lines = [
        json.loads(x) for x in (tmp_path / "events" / "events.jsonl").read_text().split("\n") if x
    ]
    for event in events:
        ended = [x for x in lines if x["id"] == event["id"] and x["change"] == "ended"]
        assert len(ended) == 1 and ended[0]["clip"] == event["clip"], (ended, event)


def test_train_from_footage_and_from_the_live_camera_saves_the_threshold_it_prints(
    tmp_path: Path,
) -> None:
    video = make_scene_clip(tmp_path / "door.mp4", frames=200, width=320, height=180, seed=4)
    config = tmp_path / "train.yaml"
    config.write_text(
        "cameras:\n  - {name: door, source: {kind: file, path: door.mp4}, analysis_fps: 5}\n"
        "models: {dir: models, kind: framediff, max_train_seconds: 30}\n"
    )
    args = ("train", "--config", str(config), "--camera", "door", "--quiet", "--device", "cpu")
    from_file = run(
        *args, "--footage", str(video), "--model", "motion", "--out", str(tmp_path / "file")
    )
    live = run(*args, "--seconds", "6")  # the file as a camera, paced at 25 fps
    for result, kind, folder in (
        (from_file, "motion", tmp_path / "file"),
        (live, "framediff", tmp_path / "models" / "door"),  # models.dir/<camera>
    ):
        assert result.returncode == 0, result.stderr
        meta = json.loads((folder / "model.json").read_text())
        assert meta["kind"] == kind and meta["camera"] == "door" and "health" in meta
        threshold = meta["calibration"]["threshold"]
        assert f"[door] {kind} trained in" in result.stdout
        assert f"threshold {threshold:.3f} for 1 false event(s)/hour at 5 fps" in result.stdout
    assert json.loads((tmp_path / "file" / "model.json").read_text())["training"]["frames"] == 150
    missing = run(*args, "--footage", str(tmp_path / "nothing.mp4"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: training footage not found: {tmp_path}/nothing.mp4"
