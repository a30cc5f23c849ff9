"""The ``fleet`` section and the ``nats`` sink: off by default, bad values named by key,
credentials in NATS URLs never shown; the fleet's camera list as kept in KV."""

from __future__ import annotations

import pytest

from streamdet.config import CameraConfig, parse_config
from streamdet.errors import ConfigError
from streamdet.fleet.cameras import encode_cameras, parse_cameras


def problems(**sections: object) -> list[str]:
    data = {"cameras": [{"name": "cam", "source": {"kind": "synthetic"}}], **sections}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_off_by_default() -> None:
    config = parse_config({"cameras": [{"name": "cam", "source": {"kind": "synthetic"}}]})
    assert config.fleet.enabled is False
    assert config.fleet.servers == ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize(
    ("fleet", "expected"),
    [
        ({"servers": ["http://h:4222"]}, "fleet.servers: expected nats://"),
        ({"servers": []}, "fleet.servers: List should have at least 1 item"),
        ({"capacity": 0}, "fleet.capacity: Input should be greater than 0"),
        ({"heartbeat_s": 0.01}, "fleet.heartbeat_s: Input should be greater than or equal"),
        ({"worker": "a b"}, "fleet.worker: String should match pattern"),
        ({"cameras": "etcd"}, "fleet.cameras: Input should be 'config' or 'kv'"),
        ({"replicas": 7}, "fleet.replicas: Input should be less than or equal to 5"),
        (
            {"heartbeat_s": 2, "member_timeout_s": 3},
            "fleet: member_timeout_s (3) must be at least twice heartbeat_s (2)",
        ),
        ({"bogus": 1}, "fleet.bogus: unknown key"),
    ],
)
def test_bad_fleet_values_are_named(fleet: dict[str, object], expected: str) -> None:
    found = problems(fleet=fleet)
    assert any(expected in p for p in found), found


def test_credentials_in_a_bad_nats_url_are_not_shown() -> None:
    found = problems(fleet={"servers": ["nats://user:hunter2@host:x/"]})
    assert found and not any("hunter2" in p for p in found), found


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ({"subject": "a.*.b"}, "alerts.sinks[0].subject: expected a NATS subject"),
        ({"stream": "a.b"}, "alerts.sinks[0].stream: String should match pattern"),
        ({"servers": ["tcp://h"]}, "alerts.sinks[0].servers: expected nats://"),
    ],
)
def test_bad_nats_sink_values_are_named(sink: dict[str, object], expected: str) -> None:
    found = problems(alerts={"sinks": [{"kind": "nats", **sink}]})
    assert any(expected in p for p in found), found


def test_the_kv_camera_list_round_trips_and_names_its_problems() -> None:
    cameras = [CameraConfig.model_validate({"name": "a", "source": {"kind": "synthetic"}})]
    assert parse_cameras(encode_cameras(cameras)) == cameras
    with pytest.raises(ValueError, match=r"cameras\[0\]\.source\.url: Field required"):
        parse_cameras(b'[{"name": "a", "source": {"kind": "rtsp"}}]')
    with pytest.raises(ValueError, match="duplicate camera name"):
        parse_cameras(
            b"- {name: a, source: {kind: synthetic}}\n- {name: a, source: {kind: synthetic}}"
        )
    with pytest.raises(ValueError, match=r"http://\*\*\*@h/x") as bad:
        parse_cameras(b'[{"name": "a", "source": {"kind": "rtsp", "url": "http://u:pw@h/x"}}]')
    assert "pw" not in str(bad.value)
