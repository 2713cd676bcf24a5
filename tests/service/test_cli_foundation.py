"""The foundation's acceptance flow: `posestream synth` then `posestream eval` of gt against itself."""

import json
import subprocess
import sys


def test_synth_then_eval_ground_truth_against_itself(tmp_path):
    out = tmp_path / "s"
    run = [sys.executable, "-m", "posestream.service.cli"]
    subprocess.run([*run, "synth", "--out", str(out), "--seed", "1", "--frames", "30", "--people", "5", "-q"],
                   check=True, capture_output=True)  # fmt: skip
    assert len((out / "gt.jsonl").read_text().splitlines()) == 30
    res = subprocess.run([*run, "eval", "--gt", str(out / "gt.jsonl"), "--pred", str(out / "gt.jsonl"), "--json"],
                         check=True, capture_output=True, text=True)  # fmt: skip
    result = json.loads(res.stdout)
    assert result["AP"] == 1.0 and result["MOTA"] == 1.0 and result["IDF1"] == 1.0
    assert result["num_switches"] == 0


def test_cli_errors_exit_2_with_message(tmp_path):
    res = subprocess.run([sys.executable, "-m", "posestream.service.cli", "synth", "--out", str(tmp_path), "--frames", "0"],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2 and "frames" in res.stderr and "Traceback" not in res.stderr
