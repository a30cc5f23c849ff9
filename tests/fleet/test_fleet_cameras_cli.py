"""``streamdet fleet-cameras``, as an operator runs it against a real nats-server: it writes a
checked list (``${VAR}`` kept for the workers), shows it with credentials redacted, refuses a bad
list naming the key without touching the entry, and says why it cannot help a fleet whose list
is in the config file or a NATS that does not answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml

from tests.support.cli import run
from tests.support.nats import NatsCluster
from tests.support.servers import free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", nodes=1) as started:
        yield started


def worker_config(tmp_path: Path, servers: list[str], cameras: str = "kv") -> Path:
    path = tmp_path / "worker.yaml"
    data: dict[str, Any] = {
        "cameras": [{"name": "seed", "source": {"kind": "synthetic"}}],
        "fleet": {"enabled": True, "servers": servers, "cameras": cameras},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def entry(servers: list[str]) -> tuple[int, Any]:
    async def get() -> tuple[int, Any]:
        nc = await nats.connect(servers)
        try:
            kv = await nc.jetstream().key_value("streamdet-config")
            got = await kv.get("cameras")
            return int(got.revision or 0), json.loads(got.value or b"")
        finally:
            await nc.close()

    return asyncio.run(get())


def test_the_list_is_written_checked_and_shown_redacted(
    server: NatsCluster, tmp_path: Path
) -> None:
    config = worker_config(tmp_path, server.urls)
    shown = run("fleet-cameras", "--config", str(config), timeout=30)
    assert shown.returncode == 1 and "no camera list" in shown.stderr, shown.stderr

    good = tmp_path / "cameras.yaml"
    url = "rtsp://admin:${DOOR_PW}@10.0.0.5/stream1"
    good.write_text(
        yaml.safe_dump(
            {
                "cameras": [
                    {"name": "door", "source": {"kind": "rtsp", "url": url}},
                    {
                        "name": "yard",
                        "source": {"kind": "rtsp", "url": "rtsp://u:secret@10.0.0.6/"},
                    },
                ]
            }
        )
    )
    written = run("fleet-cameras", "--config", str(config), "--set", str(good), timeout=30)
    assert written.returncode == 0, written.stderr
    assert "2 camera(s)" in written.stdout
    revision, stored = entry(server.urls)
    assert [c["name"] for c in stored] == ["door", "yard"]
    assert stored[0]["source"]["url"] == url, "the variable is kept for each worker to fill"

    shown = run("fleet-cameras", "--config", str(config), timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert f"revision {revision}" in shown.stdout
    assert "door" in shown.stdout and "yard" in shown.stdout
    assert "secret" not in shown.stdout, "credentials are redacted"

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{"name": "x", "source": {"kind": "rtsp"}}]))
    refused = run("fleet-cameras", "--config", str(config), "--set", str(bad), timeout=30)
    assert refused.returncode == 1
    assert "cameras[0].source.url: Field required" in refused.stderr, refused.stderr
    assert entry(server.urls)[0] == revision, "a refused list leaves the entry as it was"


def test_it_says_why_it_cannot_help(server: NatsCluster, tmp_path: Path) -> None:
    in_file = worker_config(tmp_path, server.urls, cameras="config")
    done = run("fleet-cameras", "--config", str(in_file), timeout=30)
    assert done.returncode == 2 and "fleet.cameras: kv" in done.stderr, done.stderr

    nobody = worker_config(tmp_path, [f"nats://user:pw@127.0.0.1:{free_port()}"])
    done = run("fleet-cameras", "--config", str(nobody), timeout=30)
    assert done.returncode == 1 and "cannot reach NATS" in done.stderr, done.stderr
    assert "pw@" not in done.stderr and "Traceback" not in done.stderr
