"""What a config reload changes: the running config against the one just read, as pure code.

Cameras are matched by name, and only enabled ones run: a camera that is new (or newly
enabled) is added, one that is gone (or disabled) is removed, one whose settings differ in any
key is restarted (stopped, then started as new), and the rest are left running untouched. The
other top-level sections (``capture``, ``models``, ``inference``, ``alerts``, ``server``,
``logging``) are built into stages that run for the whole process: a change there is reported
as needing a restart and is not applied. ``App.reload`` applies the plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streamdet.config import CameraConfig, Config


@dataclass(frozen=True)
class ReloadPlan:
    """The cameras to start, stop and restart, in config order."""

    added: list[CameraConfig]
    removed: list[str]
    restarted: list[CameraConfig]
    unchanged: list[str]
    restart_required: list[str]  # top-level sections whose change only a restart applies


def plan(running: Config, new: Config) -> ReloadPlan:
    """Compare the running config with ``new`` (both valid)."""
    before = {c.name: c for c in running.cameras if c.enabled}
    after = {c.name: c for c in new.cameras if c.enabled}
    sections = [key for key in Config.model_fields if key != "cameras"]
    return ReloadPlan(
        added=[c for name, c in after.items() if name not in before],
        removed=[name for name in before if name not in after],
        restarted=[c for name, c in after.items() if name in before and c != before[name]],
        unchanged=[name for name, c in after.items() if before.get(name) == c],
        restart_required=[key for key in sections if getattr(running, key) != getattr(new, key)],
    )


@dataclass
class ReloadResult:
    """What a reload did, for the API's answer and the log."""

    added: list[str]
    removed: list[str]
    restarted: list[str]
    unchanged: list[str]
    restart_required: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # camera: why it could not (re)start

    @classmethod
    def of(cls, changes: ReloadPlan, failed: dict[str, str]) -> ReloadResult:
        return cls(
            added=[c.name for c in changes.added],
            removed=list(changes.removed),
            restarted=[c.name for c in changes.restarted],
            unchanged=list(changes.unchanged),
            restart_required=list(changes.restart_required),
            failed=dict(failed),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the log."""
        parts = [
            f"{what} {', '.join(names) if names else 'none'}"
            for what, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("restarted", self.restarted),
                ("unchanged", self.unchanged),
            )
        ]
        return "cameras " + "; ".join(parts)
