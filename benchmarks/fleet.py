"""Fleet failover on this machine: N ``streamdet run`` workers x M synthetic cameras over a
real 3-node nats-server cluster on 127.0.0.1, ``--kills`` times ``kill -9`` of a worker.

Each round kills a worker that runs cameras (in turn), times how long until every camera runs
on exactly one of the survivors again (the failover time, from the kill to the last orphan
started, as the workers' own ``/api/fleet`` reports it), counts the cameras that moved, then
starts the worker again and counts the cameras that move back to it (a join). Workers beat
every ``--heartbeat`` s and count a member gone after ``--timeout`` s.

Run from the repository root: ``python benchmarks/fleet.py [--workers 3] [--cameras 12]
[--kills 10]`` (about 3 min with the defaults). Progress goes to stderr; the last line of
stdout is one JSON object: failover min / median / max, cameras moved per kill and per join
(with the ceil(M/N)+1 bound of a join), the machine's load.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import log, machine_load
from benchmarks.fleet_workers import Worker, placed_once, stop_all
from benchmarks.nats_cluster import NatsCluster


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3, help="Workers (default 3).")
    parser.add_argument("--cameras", type=int, default=12, help="Cameras (default 12).")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 rounds (default 10).")
    parser.add_argument("--heartbeat", type=float, default=0.5, help="fleet.heartbeat_s.")
    parser.add_argument("--timeout", type=float, default=3.0, help="fleet.member_timeout_s.")
    return parser.parse_args(argv)


def settle(workers: list[Worker], cameras: int, timeout: float) -> tuple[dict[str, str], float]:
    """The placement once every camera runs on exactly one worker, and the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        placed = placed_once(workers, cameras)
        if placed is not None:
            return placed, time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"not settled within {timeout:.0f} s")


def rounds(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    failovers, killed_moves, join_moves = [], [], []
    with NatsCluster(root / "nats") as cluster:
        fleet = {"heartbeat_s": args.heartbeat, "member_timeout_s": args.timeout}
        workers = [
            Worker(root, f"w{i}", cluster.urls, args.cameras, **fleet)
            for i in range(1, args.workers + 1)
        ]
        try:
            for worker in workers:
                worker.start()
            placed, took = settle(workers, args.cameras, 120)
            time.sleep(2 * args.timeout)  # the start-up's moves are over
            placed, _ = settle(workers, args.cameras, 30)
            log("fleet", f"{args.workers} workers, {args.cameras} cameras placed in {took:.1f} s")
            for round_ in range(args.kills):
                victim = next(
                    w
                    for w in workers[round_ % len(workers) :] + workers
                    if w.name in placed.values()
                )
                orphans = sorted(c for c, w in placed.items() if w == victim.name)
                victim.kill9()
                survivors = [w for w in workers if w is not victim]
                after, failover = settle(survivors, args.cameras, 60)
                failovers.append(failover)
                killed_moves.append(sum(1 for c in placed if placed[c] != after[c]))
                victim.start()
                rejoined, _ = settle_with(workers, victim.name, args.cameras)
                join_moves.append(sum(1 for c in after if after[c] != rejoined[c]))
                placed = rejoined
                log(
                    "fleet",
                    f"kill {round_ + 1}: {victim.name} ({len(orphans)} cameras) failover"
                    f" {failover:.2f} s, moved {killed_moves[-1]}; rejoin moved {join_moves[-1]}",
                )
        finally:
            stop_all(workers)
    bound = math.ceil(args.cameras / args.workers) + 1
    return {
        "failover_s": {
            "min": min(failovers),
            "median": statistics.median(failovers),
            "max": max(failovers),
            "all": failovers,
        },
        "moved_per_kill": killed_moves,
        "moved_per_join": join_moves,
        "join_bound": bound,
        "joins_within_bound": all(m <= bound for m in join_moves),
        "failover_within_10s": max(failovers) <= 10.0,
    }


def settle_with(workers: list[Worker], name: str, cameras: int) -> tuple[dict[str, str], float]:
    """Settled with worker ``name`` running its share again."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        placed, _ = settle(workers, cameras, 60)
        if name in placed.values():
            time.sleep(0.5)  # a join can move cameras over two beats
            again, _ = settle(workers, cameras, 30)
            if again == placed:
                return placed, time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"{name} was given no camera within 60 s of its restart")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load = time.monotonic(), machine_load()
    with tempfile.TemporaryDirectory(prefix="streamdet-fleet-") as workdir:
        results = rounds(args, Path(workdir))
    summary = {
        "benchmark": "fleet",
        "settings": {
            "workers": args.workers,
            "cameras": args.cameras,
            "kills": args.kills,
            "heartbeat_s": args.heartbeat,
            "member_timeout_s": args.timeout,
        },
        **results,
        "machine": {**load, "loadavg_at_end": machine_load()["loadavg"]},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary), flush=True)
    return 0 if results["failover_within_10s"] and results["joins_within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
