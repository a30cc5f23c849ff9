"""Config loading: every shipped config is valid, and every kind of mistake is named by key."""

from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from streamdet.config import Config, RtspSource, load_config, parse_config
from streamdet.demo import demo_config
from streamdet.errors import ConfigError
from streamdet.yamlfile import load_yaml
from tests.support.configs import alias_bomb
from tests.support.media import make_clip

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def problems_of(data: object, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


def minimal(**camera: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "cam", "source": {"kind": "synthetic"}}
    base.update(camera)
    return {"cameras": [base]}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path, tmp_path: Path) -> None:
    # Run each config as written, from a copy whose referenced files exist.
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    data = yaml.safe_load(path.read_text())
    for camera in data["cameras"]:
        if camera["source"]["kind"] == "file":
            make_clip(tmp_path / camera["source"]["path"], frames=10, width=256, height=144)
    env = {"FRONT_DOOR_PASSWORD": "s3cret"}
    config = load_config(copy, env=env)
    assert len(config.cameras) == len(data["cameras"])


def test_demo_yaml_is_the_builtin_default() -> None:
    # models.dir is resolved against the config file's folder; everything else must match.
    # models.dir and alerts.dir are resolved against the config file's folder.
    exclude = {"models": {"dir"}, "alerts": {"dir"}}
    loaded = load_config(CONFIGS / "demo.yaml").model_dump(exclude=exclude)
    assert loaded == demo_config().model_dump(exclude=exclude)


def test_example_has_one_camera_of_each_common_kind() -> None:
    config = load_config(
        CONFIGS / "example.yaml", env={"FRONT_DOOR_PASSWORD": "x"}, check_paths=False
    )
    assert {c.source.kind for c in config.cameras} == {"rtsp", "file", "webcam"}


def test_defaults_fill_everything() -> None:
    config = parse_config(minimal())
    assert config.capture.ring_size == 64
    assert config.cameras[0].frame.shape == (240, 320)
    assert config.cameras[0].analysis_fps == 5


def test_env_substitution_keeps_secret_out_of_file() -> None:
    data = minimal(source={"kind": "rtsp", "url": "rtsp://u:${CAM_PW}@10.0.0.1/s"})
    config = parse_config(data, env={"CAM_PW": "p%40ss:w%2Frd"})
    source = config.cameras[0].source
    assert isinstance(source, RtspSource)
    assert source.url == "rtsp://u:p%40ss:w%2Frd@10.0.0.1/s"
    # raw, FFmpeg could not open it: refused, saying how to write it, not what it is
    with pytest.raises(ConfigError, match="%40") as refused:
        parse_config(data, env={"CAM_PW": "p@ss:w/rd"})
    assert "p@ss" not in str(refused.value)


def test_literal_dollar_is_escaped() -> None:
    data = minimal(source={"kind": "rtsp", "url": "rtsp://h/a$${x}"})
    source = parse_config(data, env={}).cameras[0].source
    assert isinstance(source, RtspSource) and source.url == "rtsp://h/a${x}"


def test_missing_env_var_names_key_and_variable() -> None:
    data = minimal(source={"kind": "rtsp", "url": "rtsp://u:${NOPE}@h/s"})
    assert problems_of(data, env={}) == [
        "cameras[0].source.url: environment variable NOPE is not set"
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (minimal(colour="grey"), "cameras[0].colour: unknown key"),
        (minimal(analysis_fps="fast"), "cameras[0].analysis_fps: Input should be a valid number"),
        (minimal(analysis_fps=0), "cameras[0].analysis_fps: Input should be greater than 0"),
        (
            minimal(analysis_fps=float("nan")),
            "cameras[0].analysis_fps: Input should be a finite number, not nan",
        ),
        (
            minimal(source={"kind": "synthetic", "fps": float("inf")}),
            "cameras[0].source.fps: Input should be a finite number, not inf",
        ),
        (
            {"capture": {"ring_size": float("-inf")}, **minimal()},
            "capture.ring_size: Input should be a finite number, not -inf",
        ),
        (
            minimal(zones=[[(0, 0), (1, float("nan")), (1, 1)]]),
            "cameras[0].zones[0][1][1]: Input should be a finite number, not nan",
        ),
        (minimal(frame={"width": 99999}), "cameras[0].frame.width: Input should be less than"),
        (minimal(source={"kind": "tape"}), "cameras[0].source: unknown source kind"),
        (minimal(source={"url": "rtsp://h/x"}), "cameras[0].source: missing 'kind'"),
        (
            {**minimal(), "alerts": {"sinks": [{"kind": "jsonl"}, {"kind": "email"}]}},
            "alerts.sinks[1]: unknown sink kind; expected one of jsonl, webhook, mqtt",
        ),
        (
            {**minimal(), "alerts": {"sinks": [{"url": "http://h/x"}]}},
            "alerts.sinks[0]: missing 'kind'; expected one of jsonl, webhook, mqtt",
        ),
        (
            minimal(source={"kind": "rtsp", "url": "http://h/x"}),
            "cameras[0].source.url: expected rtsp://",
        ),
        (minimal(source={"kind": "rtsp"}), "cameras[0].source.url: Field required"),
        (
            minimal(source={"kind": "synthetic", "fps": -1}),
            "cameras[0].source.fps: Input should be greater",
        ),
        (minimal(name="bad name!"), "cameras[0].name: String should match pattern"),
        ({"cameras": []}, "cameras: List should have at least 1 item"),
        ({"cameras": [{"name": "a"}]}, "cameras[0].source: Field required"),
        (
            {"capture": {"ring_size": 1}, **minimal()},
            "capture.ring_size: Input should be greater than",
        ),
        (
            {"capture": {"backoff": {"initial_s": 5, "max_s": 1}}, **minimal()},
            "capture.backoff: max_s (1.0) must be >= initial_s",
        ),
        (
            {"capture": {"decoder_threads": "many"}, **minimal()},
            "capture.decoder_threads: expected 'auto' or a whole number from 0 to 64, got 'many'",
        ),
        (
            {"capture": {"processes": -1}, **minimal()},
            "capture.processes: expected 'auto' or a whole number from 0 to 256, got -1",
        ),
        ({"cameras": "x"}, "cameras: Input should be a valid list"),
        ({**minimal(), "extra": 1}, "extra: unknown key"),
    ],
)
def test_bad_values_name_the_key(data: object, expected: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_duplicate_camera_names() -> None:
    cam = {"name": "same", "source": {"kind": "synthetic"}}
    assert problems_of({"cameras": [cam, cam]}) == ["cameras: duplicate camera name 'same'"]


def test_missing_file_is_reported_with_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "cameras:\n  - name: a\n    source: {kind: synthetic}\n"
        "  - name: b\n    source: {kind: file, path: nothere.mp4}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.problems == [
        f"cameras[1].source.path: file not found: {tmp_path / 'nothere.mp4'}"
    ]


def test_all_problems_reported_at_once() -> None:
    data = {"cameras": [{"name": "a", "source": {"kind": "synthetic"}, "x": 1, "analysis_fps": -2}]}
    assert len(problems_of(data)) == 2


def test_invalid_yaml_and_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "invalid YAML" in info.value.problems[0]
    assert info.value.problems[0].startswith("line ")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read" in info.value.problems[0]
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)


def test_password_not_echoed_in_url_errors() -> None:
    data = minimal(source={"kind": "rtsp", "url": "http://user:hunter2@h/x"})
    problems = problems_of(data)
    assert not any("hunter2" in p for p in problems)
    assert isinstance(parse_config(minimal()), Config)


@pytest.mark.parametrize(
    ("password", "advice"),
    [("Xq9@Leak7", "%40"), ("Xq9/Leak7", "%2F"), ("Xq9#Leak7", "%23")],
)
def test_a_raw_at_slash_or_hash_in_a_password_is_refused_with_how_to_write_it(
    password: str, advice: str
) -> None:
    """FFmpeg cannot open such a URL (the camera would reconnect for ever): say so up front,
    naming the key and the escape, never the password."""
    for kind in ("rtsp", "mjpeg"):
        scheme = "rtsp" if kind == "rtsp" else "http"
        url = f"{scheme}://admin:{password}@127.0.0.1:8554/x"
        problems = problems_of(minimal(source={"kind": kind, "url": url}))
        assert any("source" in p and "url" in p and advice in p for p in problems), problems
        assert not any("Leak7" in p or "Xq9" in p for p in problems)
    escaped = password.replace("@", "%40").replace("/", "%2F").replace("#", "%23")
    assert isinstance(
        parse_config(minimal(source={"kind": "rtsp", "url": f"rtsp://a:{escaped}@h:554/x"})),
        Config,
    )


def test_every_field_is_documented() -> None:
    import typing

    from pydantic import BaseModel

    missing: list[str] = []

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            if not field.description and name != "kind":
                missing.append(path + name)
            args = typing.get_args(field.annotation) or (field.annotation,)
            for arg in (a for t in args for a in (typing.get_args(t) or (t,))):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg, f"{path}{name}.")

    walk(Config, "")
    assert not missing


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("cameras: []\n".encode("utf-16"), "(file): the file is UTF-16"),
        ("cameras: []\n".encode("utf-16-be"), "(file): not UTF-8 text: byte 0x00 at line 1"),
        (b"cameras:\n  - name: caf\xe9\n", "(file): not UTF-8 text: byte 0xe9 at line 2"),
        (
            b"cameras: [" + bytes(range(256)),
            "(file): not UTF-8 text: byte 0x00 at line 1 (offset 10)",
        ),
    ],
    ids=["utf-16-bom", "utf-16-be", "latin-1", "binary"],
)
def test_config_that_is_not_utf8_is_named(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert info.value.problems[0].startswith(problem), info.value.problems
    assert info.value.problems[0].endswith("save it as UTF-8")


def test_config_with_a_utf8_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfcameras:\n  - {name: a, source: {kind: synthetic}}\n")
    assert load_config(path).cameras[0].name == "a"


def test_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    # 5 levels, 0.6 million values (before the fix: 5 s and 14 MB, then "unknown key"); the full
    # 9 levels (387 million values) are tried by test_cli.py, in a process with a time limit.
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(5))
    started = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 and peak < 5_000_000, (elapsed, peak)
    (problem,) = info.value.problems
    assert problem.startswith("line ") and problem.endswith(
        "invalid YAML: its aliases expand to more than 100000 values"
    ), problem


def test_aliases_within_the_bound_still_work() -> None:
    text = "base: &cam {kind: synthetic, width: 160}\ncameras:\n  - {name: a, source: *cam}\n"
    assert load_yaml(text)["cameras"][0]["source"] == {"kind": "synthetic", "width": 160}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [1, *a]\n", "an alias refers to a node it is part of"),
        ("a: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than 64 levels"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64 levels"),
    ],
    ids=["recursive", "deep", "deeper-than-python-recursion"],
)
def test_self_referring_and_deep_yaml_is_refused(text: str, problem: str) -> None:
    with pytest.raises(yaml.YAMLError, match=problem):
        load_yaml(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "cameras:\n  - {name: a, source: {kind: synthetic}}\n"
            "cameras:\n  - {name: b, source: {kind: synthetic}}\n",
            "line 3, column 1: invalid YAML: duplicate key 'cameras' (first at line 1)",
        ),
        (
            "cameras:\n  - name: a\n    source: {kind: synthetic}\n    name: b\n",
            "line 4, column 5: invalid YAML: duplicate key 'name' (first at line 2)",
        ),
        (
            "cameras:\n  - {name: a, source: {kind: synthetic, seed: 1, seed: 2}}\n",
            "line 2, column 50: invalid YAML: duplicate key 'seed' (first at line 2)",
        ),
    ],
    ids=["top-level", "block", "flow"],
)
def test_duplicate_keys_are_refused_with_their_lines(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [problem]


def test_merge_keys_may_be_overridden() -> None:
    text = "base: &b {kind: synthetic, seed: 1}\nsource: {<<: *b, seed: 2}\n"
    assert load_yaml(text)["source"] == {"kind": "synthetic", "seed": 2}
