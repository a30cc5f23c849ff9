"""``benchmarks/faults.py``: its fastest part end to end (a few malformed configs through the
real ``streamdet`` commands, one JSON line out), and the judges every part relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import fault_configs, fault_secrets, faults
from streamdet.log import redact_url

ROOT = Path(__file__).resolve().parents[1]


def test_configs_part_prints_one_json_with_its_targets(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "faults.py"), "--only", "configs",
         "--config-cases", "4", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["pass"] is True
    assert summary["targets"] == {
        "configs_exit_2_named_no_traceback": {"figure": "4/4", "pass": True}
    }
    assert summary["configs"]["cases"] == 4 and summary["configs"]["failures"] == {}
    assert "] 4/4 " in done.stderr  # progress on stderr


def test_the_suite_has_over_50_distinct_malformed_configs(tmp_path: Path) -> None:
    cases = fault_configs.cases(tmp_path)
    assert len(cases) >= 50
    assert len({c.name for c in cases}) == len(cases)
    assert all(c.path.exists() or c.name == "config-missing" for c in cases)


def test_the_config_judge_flags_each_way_of_failing() -> None:
    key = "cameras[0].analysis_fps"
    good = f"error: invalid configuration c.yaml:\n  {key}: Input should be greater than 0\n"
    assert fault_configs.judge("run", 2, "", good, key) == []
    assert fault_configs.judge("run", 1, "", good, key) == ["run: exit code 1, not 2"]
    assert "does not name" in fault_configs.judge("run", 2, "", "error: bad\n", key)[0]
    traceback = good + "Traceback (most recent call last):\n"
    assert fault_configs.judge("run", 2, "", traceback, key) == ["run: printed a traceback"]
    leaked = good + f"  url: rtsp://a:{fault_configs.SECRET}@h\n"
    assert fault_configs.judge("run", 2, "", leaked, key) == ["run: echoed the password"]


def test_the_secret_scan_sees_raw_decoded_and_partial_passwords() -> None:
    url = f"rtsp://admin:{fault_secrets.ENCODED_PASSWORD}@h/x?access_token=Tk9Lq2Wd7Zx"
    assert fault_secrets.occurrences(url) >= 2
    assert fault_secrets.occurrences("user Wc2Rf@Hn6Ju:Ye9Kb/Pz3Mv") >= 1  # decoded
    assert fault_secrets.occurrences("rtsp://admin:Kx7Pq@Lm3Zr@h") >= 1  # a cut-off part
    assert fault_secrets.occurrences(redact_url(url)) == 0
    raw = f"rtsp://admin:{fault_secrets.RAW_PASSWORD}@h/x?pw=Pw6Hy4Jr2Fc&apikey=Ak3Pv8Nm1Qs"
    assert fault_secrets.occurrences(redact_url(raw)) == 0


def test_targets_fail_on_a_missed_figure_or_a_part_that_did_not_run() -> None:
    restarts = {
        "cycles": 20, "recovered": 20, "first_frame_median_s": 0.8, "first_frame_max_s": 2.3,
    }  # fmt: skip
    found = faults.targets({"restarts": restarts, "soak": {"error": "RuntimeError: x"}})
    assert found["restarts_recovered"] == {"figure": "20/20", "pass": True}
    assert found["restarts_first_frame_le_2s"]["pass"] is False  # the max is over 2 s
    assert found["soak_rss_growth_lt_5pct_over_30min"] == {
        "figure": "RuntimeError: x",
        "pass": False,
    }
    short = faults.targets({"soak": {"growth_pct": 1.0, "minutes": 2.0}})
    assert short["soak_rss_growth_lt_5pct_over_30min"]["pass"] is None  # too short to judge
    assert "secrets_zero" not in found  # not run: no target claimed
