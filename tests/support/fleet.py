"""Fleet workers for the tests: ``streamdet run`` processes in fleet mode
(``benchmarks/fleet_workers.py``, shared with the benchmark)."""

from benchmarks.fleet_workers import Worker, camera, placed_once, running, stop_all

__all__ = ["Worker", "camera", "placed_once", "running", "stop_all"]
