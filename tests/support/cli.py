"""The ``streamdet`` command of this tree, run as a user runs it (a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

STREAMDET = str(Path(sys.executable).with_name("streamdet"))


def run(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``streamdet *args``, its output captured; bounded by ``timeout``."""
    if env is not None:  # a bare environment still runs this tree's package (tests/conftest.py)
        env = {"PYTHONPATH": os.environ["PYTHONPATH"], **env}
    return subprocess.run(
        [STREAMDET, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
