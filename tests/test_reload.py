"""What a reload changes: the plan from the running config and the one just read."""

from __future__ import annotations

from typing import Any

from streamdet.config import Config, parse_config
from streamdet.reload import plan


def config(*cameras: dict[str, Any], **sections: Any) -> Config:
    return parse_config({"cameras": list(cameras), **sections})


def cam(name: str, seed: int = 0, **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": {"kind": "synthetic", "seed": seed}, **extra}


def test_cameras_are_matched_by_name_and_any_changed_key_restarts_one() -> None:
    running = config(cam("a"), cam("b"), cam("c"), cam("d"))
    new = config(cam("e"), cam("d", zones=[[(0, 0), (1, 0), (1, 1)]]), cam("a"), cam("c", seed=1))
    changes = plan(running, new)
    assert [c.name for c in changes.added] == ["e"]
    assert changes.removed == ["b"]
    assert [c.name for c in changes.restarted] == ["d", "c"]  # the new file's order
    assert changes.unchanged == ["a"]
    assert changes.restart_required == []


def test_a_disabled_camera_counts_as_absent() -> None:
    running = config(cam("a"), cam("b", enabled=False))
    changes = plan(running, config(cam("a", enabled=False), cam("b")))
    assert [c.name for c in changes.added] == ["b"]
    assert changes.removed == ["a"]
    assert not changes.restarted and not changes.unchanged


def test_other_sections_are_reported_as_needing_a_restart() -> None:
    running = config(cam("a"), server={"port": 8686})
    new = config(cam("a"), server={"port": 9000}, inference={"max_batch": 4})
    changes = plan(running, new)
    assert changes.restart_required == ["inference", "server"]
    assert changes.unchanged == ["a"]
    assert plan(running, running).restart_required == []
