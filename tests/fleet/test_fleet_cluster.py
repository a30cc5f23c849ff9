"""Fleet mode for real: a 3-node nats-server cluster on 127.0.0.1 and ``streamdet run``
worker processes sharing 12 synthetic cameras.

One scenario, in order (each step needs the fleet the one before left): every camera on
exactly one worker, each learned and its checkpoint in the object store; a 4th worker joins
(at most ceil(12/4)+1 cameras move); ``kill -9`` of a worker (its cameras run elsewhere within
10 s, with the same checkpoint, detecting at once); one NATS node killed (the fleet goes on: a
worker that comes back is given cameras again); the event stream has every event revision of
every worker's store once (no loss, no duplicate).
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fleet import Worker, placed_once, running, stop_all
from tests.support.nats import NatsCluster, stream_messages
from tests.support.waiting import wait_for

CAMERAS = 12
FAILOVER_S = 10.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as started:
        yield started


def models(worker: Worker) -> dict[str, str | None]:
    view = worker.fleet() or {"cameras": {}}
    return {name: c["model"] for name, c in view["cameras"].items() if name in view["running"]}


def all_learned(workers: list[Worker]) -> dict[str, str] | None:
    """camera -> checkpoint digest once every camera runs once and has published one."""
    if placed_once(workers, CAMERAS) is None:
        return None
    digests: dict[str, str] = {}
    for worker in workers:
        for name, digest in models(worker).items():
            if digest is None:
                return None
            digests[name] = digest
    return digests if len(digests) == CAMERAS else None


def test_a_fleet_shares_cameras_and_survives_a_dead_worker_and_a_dead_nats_node(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    workers = [Worker(tmp_path, f"w{i}", cluster.urls, CAMERAS) for i in (1, 2, 3)]
    try:
        for worker in workers:
            worker.start()
        # every camera on exactly one worker, each learned and its checkpoint published
        wait_for(lambda: all_learned(workers) is not None, 90, "12 learned, once each", 0.25)
        before = placed_once(workers, CAMERAS)
        assert before is not None and set(before.values()) == {"w1", "w2", "w3"}

        # a 4th worker joins: at most ceil(12/4)+1 cameras move, all to it
        fourth = Worker(tmp_path, "w4", cluster.urls, CAMERAS)
        workers.append(fourth)
        fourth.start()
        wait_for(lambda: _has(workers, "w4"), 60, "w4 runs cameras", 0.25)
        wait_for(lambda: all_learned(workers) is not None, 30, "settled with w4", 0.25)
        after = placed_once(workers, CAMERAS)
        assert after is not None
        moved = [c for c in before if before[c] != after[c]]
        assert moved and len(moved) <= math.ceil(CAMERAS / 4) + 1, moved
        assert all(after[c] == "w4" for c in moved)

        # kill -9 of a worker: its cameras run on the others within 10 s, same checkpoint
        digests = all_learned(workers)
        assert digests is not None
        victim = workers[0]
        orphans = sorted(c for c, w in after.items() if w == victim.name)
        assert orphans
        victim.kill9()
        killed = time.monotonic()
        survivors = [w for w in workers if w is not victim]
        took = wait_for(
            lambda: placed_once(survivors, CAMERAS) is not None, FAILOVER_S, "failover", poll=0.2
        )
        print(f"failover of {len(orphans)} camera(s) took {took:.2f} s")
        assert time.monotonic() - killed <= FAILOVER_S + 0.5
        moved_to = placed_once(survivors, CAMERAS)
        assert moved_to is not None
        for name in orphans:
            owner = next(w for w in survivors if w.name == moved_to[name])
            camera = owner.fleet()["cameras"][name]  # type: ignore[index]
            assert camera["started_with"] == digests[name], "the moved camera's own checkpoint"
            status = {c["name"]: c for c in owner.get("/api/cameras")["cameras"]}[name]
            assert status["model"]["state"] == "detecting", status["model"]  # no learning

        # one NATS node killed: the fleet goes on; the dead worker comes back and gets cameras
        cluster.kill(0)
        time.sleep(3)
        assert placed_once(survivors, CAMERAS) is not None
        victim.start()
        wait_for(lambda: _has(workers, victim.name), 30, "the restarted worker runs cameras")
        wait_for(lambda: placed_once(workers, CAMERAS) is not None, 30, "settled again")
        # each worker's /api/fleet says which camera runs where (from the heartbeats: a beat
        # or two behind the workers' own lists), since when, and sees every member beat. The
        # placement is read again on every poll: "settled" can be seen between two moves of a
        # rejoin, and a beat can take seconds while a dead node's streams elect new leaders.
        wait_for(lambda: _agrees_now(survivors[0], workers), 15, "/api/fleet agrees", 0.2)
        view = survivors[0].fleet()
        assert view is not None and len(view["members"]) == 4
        assert all(m["heartbeat_age_s"] < 3.0 for m in view["members"]), view["members"]
        assert all(c["since"] > 0 for c in view["cameras"].values())
        samples = _metrics(survivors[0])
        assert samples[("streamdet_fleet_members", ())] == 4
        me = view["worker"]
        mine = samples[("streamdet_fleet_cameras", (("scope", "worker"), ("worker", me)))]
        assert mine == len(view["running"])
        assert samples[("streamdet_fleet_cameras", (("scope", "fleet"), ("worker", me)))] == 12
        assert samples[("streamdet_fleet_assignment_changes_total", (("worker", me),))] >= 8

        # the event stream: every revision of every store's events, once
        wait_for(lambda: all(w.events_db()[1] == 0 for w in workers), 30, "outboxes empty")
        expected = set().union(*(w.events_db()[0] for w in workers))
        found = stream_messages(cluster.urls[1:])
        assert all(body["idempotency_key"] == key for key, _, body in found)
        keys = [key for key, _, _ in found]
        assert expected, "some events were recorded (the synthetic cyclists)"
        assert len(keys) == len(set(keys)), "no duplicate"
        assert expected <= set(keys), f"lost: {sorted(expected - set(keys))[:5]}"
    finally:
        stop_all(workers)
        for worker in workers:
            print(f"--- {worker.name}\n{worker.log()[-1500:]}")


def _agrees_now(worker: Worker, workers: list[Worker]) -> bool:
    """The worker's /api/fleet says what the workers' own lists say, each camera once."""
    where = placed_once(workers, CAMERAS)
    return where is not None and _agrees(worker, where)


def _agrees(worker: Worker, where: dict[str, str]) -> bool:
    view = worker.fleet()
    return view is not None and all(
        camera["worker"] == where[name] for name, camera in view["cameras"].items()
    )


def _metrics(worker: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's /metrics samples: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _has(workers: list[Worker], name: str) -> bool:
    return any(name in owners for owners in running(workers).values())
