"""The fault and soak harness (``benchmarks/reliability.py``) in its CI size: its rows must pass.

Each test runs one piece as ``--short`` does (one kill -9 round per fault, a few thousand
frames of memory soak) against real subprocesses: a gateway, blob workers and a private
``redis-server`` started and stopped by PID. The probe table and the ordered-stream soak
are covered by ``tests/service/test_stream_faults.py``; the full-length runs are the
benchmark's own (``python benchmarks/reliability.py``), recorded in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import reliability

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def _pass_column(line: str) -> str:
    return line.rstrip(" |").rsplit("|", 1)[-1].strip()


@pytest.mark.parametrize(
    "fault",
    [
        "gateway",
        "redis-no-persistence",
        pytest.param("worker", marks=pytest.mark.slow),
        pytest.param("redis-aof", marks=pytest.mark.slow),
    ],
)
def test_one_kill_round_loses_no_accepted_frame(fault: str) -> None:
    row = reliability.fault_loop(fault, seconds=0)  # one round (up to 3 until a kill falls mid-flight)
    n = row["rounds"]
    line = reliability.fault_lines([row], 0)[-1]
    assert row["hits"] >= 1 and not row["errors"], row  # a kill fell while the upload and the stream ran
    assert row["upload_lost"] == 0 and row["uploads_in_order"] == n and row["uploads_done"] == n, row
    assert row["recovered"] == n, row  # a new stream was served with no other process restarted
    assert row["streams_in_order"] == n, row  # no seq or frame index repeated or out of order
    if fault == "redis-no-persistence":
        # README (Guarantees): the stream's session goes with Redis (4404 on resume); the upload re-runs.
        assert row["sessions_lost"] >= 1, row
    else:
        assert row["stream_lost"] == 0 and row["streams_complete"] == n and row["sessions_lost"] == 0, row
    assert row["pass"] and _pass_column(line) == "yes", line


@pytest.mark.slow
def test_memory_soak_short_is_flat() -> None:
    m = reliability.memory_soak(frames=2000, streams=4, workers=2, sample_s=1.0, results_maxlen=100)
    assert m["answered"] == m["sent"] == 2000 and m["bad_closes"] == 0, m
    assert {"gateway", "worker 0", "worker 1", "redis used_memory"} <= set(m["series"]), m
    rows = [line for line in reliability.memory_lines(m) if line.startswith("| ") and "MiB" not in line]
    assert len(rows) == 4 and all(_pass_column(r) == "yes" for r in rows), rows
    assert m["pass"], m


def test_flatness_says_growth_is_not_flat() -> None:
    assert reliability.flatness([100, 120, 130, 130, 131, 130, 131, 130, 130])["flat"]
    leak = reliability.flatness([100, 110, 120, 130, 140, 150, 160, 170, 180])
    assert not leak["flat"] and leak["ratio"] > 1.1, leak


def test_an_unknown_part_is_a_usage_error() -> None:
    r = subprocess.run([sys.executable, "benchmarks/reliability.py", "--only", "nope", "--no-record"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "--only takes" in r.stderr, r.stderr
