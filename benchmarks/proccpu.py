"""CPU of a set of processes, all their threads, from /proc: user and kernel time, context switches.

The pipeline benchmark reads it for the main process plus its capture processes (which
``time.process_time()`` does not see), to report the kernel share of the CPU and the context
switches per second: what the GIL hand-offs among many capture threads cost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcCpu:
    """Totals over every thread of some processes at one moment."""

    user_s: float
    system_s: float
    switches: int  # voluntary + involuntary context switches

    @staticmethod
    def now(pids: list[int]) -> ProcCpu:
        tick = os.sysconf("SC_CLK_TCK")
        user = system = switches = 0
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                user, system = user + int(stat[11]), system + int(stat[12])
                for task in Path(f"/proc/{pid}/task").iterdir():
                    for line in (task / "status").read_text().splitlines():
                        if "ctxt_switches:" in line:
                            switches += int(line.split()[1])
            except (OSError, IndexError, ValueError):
                continue  # a process or thread that ended meanwhile
        return ProcCpu(user / tick, system / tick, switches)

    def since(self, start: ProcCpu, seconds: float) -> dict[str, float]:
        user, system = self.user_s - start.user_s, self.system_s - start.system_s
        busy = user + system
        return {
            "all_processes_cpu_cores": busy / seconds,
            "kernel_share": system / busy if busy else 0.0,
            "context_switches_per_s": (self.switches - start.switches) / seconds,
        }
