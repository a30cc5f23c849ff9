"""The fleet's camera list. In the KV bucket: seeded from the first worker's file, and a
camera added to or removed from the entry reaches the running workers without a restart; a
bad entry is refused (by key) and the last good list kept. In the config file: a reload gives
the worker the file's new list."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support.fleet import Worker, camera, placed_once, running, stop_all
from tests.support.nats import NatsCluster
from tests.support.waiting import wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as started:
        yield started


def put_list(servers: list[str], cameras: Any) -> None:
    async def put() -> None:
        nc = await nats.connect(servers)
        try:
            kv = await nc.jetstream().key_value("streamdet-config")
            await kv.put("cameras", json.dumps(cameras).encode())
        finally:
            await nc.close()

    asyncio.run(put())


def both(worker: Worker) -> bool:
    view = worker.fleet()
    return view is not None and len(view["members"]) == 2


def test_cameras_added_and_removed_in_kv_reach_the_fleet(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    workers = [Worker(tmp_path, f"w{i}", cluster.urls, 3, list_in="kv") for i in (1, 2)]
    try:
        for worker in workers:
            worker.start()
        wait_for(lambda: placed_once(workers, 3) is not None, 60, "3 cameras once", 0.25)
        wait_for(lambda: all(both(w) for w in workers), 30, "both workers members", 0.25)
        wait_for(lambda: placed_once(workers, 3) is not None, 10, "settled", 0.25)

        put_list(cluster.urls, [camera(i) for i in range(4)])  # cam03 added
        wait_for(lambda: placed_once(workers, 4) is not None, 20, "cam03 runs", 0.25)

        put_list(cluster.urls, [camera(i) for i in (1, 2, 3)])  # cam00 removed
        wait_for(lambda: "cam00" not in running(workers), 20, "cam00 stopped", 0.25)
        assert placed_once(workers, 3) is not None

        put_list(cluster.urls, [{"name": "bad", "source": {"kind": "rtsp"}}])
        wait_for(
            lambda: "cameras[0].source.url: Field required" in workers[0].log(),
            20,
            "the bad list refused by key",
            0.25,
        )
        time.sleep(2)  # four beats
        assert sorted(running(workers)) == ["cam01", "cam02", "cam03"], "the last list kept"
        assert placed_once(workers, 3) is not None
    finally:
        stop_all(workers)


def test_a_reload_gives_the_worker_the_files_new_list(cluster: NatsCluster, tmp_path: Path) -> None:
    worker = Worker(tmp_path, "w1", cluster.urls, 2)
    try:
        worker.start()
        wait_for(lambda: placed_once([worker], 2) is not None, 60, "2 cameras", 0.25)
        worker.rewrite(3)
        status, answer = worker.post("/api/reload")
        assert status == 200, answer
        assert answer["added"] == ["cam02"] and answer["unchanged"] == ["cam00", "cam01"]
        wait_for(lambda: placed_once([worker], 3) is not None, 10, "cam02 runs", 0.25)
        worker.rewrite(1)
        assert worker.post("/api/reload")[1]["removed"] == ["cam01", "cam02"]
        wait_for(lambda: placed_once([worker], 1) is not None, 10, "only cam00", 0.25)
    finally:
        stop_all([worker])
