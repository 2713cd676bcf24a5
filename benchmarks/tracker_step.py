"""Benchmark: CPU time of one tracker step (matching + lifecycle, no networks) vs number of people.

Feeds pre-generated synthetic detections (``posestream.tracker.synthetic``: people walking, HE, SIE
and TIE given as inputs) to ``posestream.tracker.step.step`` and times each call. Also times the
state's ``to_bytes`` / ``from_bytes`` (what a worker pays per frame to keep the state in
Redis) and records the serialised size. Prints a Markdown table and, unless
``--no-record``, writes it as the "Tracker step" section of benchmarks/RESULTS.md
(replacing an earlier version of that section, keeping every other section).

The target from the TemporalNet issue: under 1 ms per step with 10 people.

    .venv/bin/python benchmarks/tracker_step.py
    .venv/bin/python benchmarks/tracker_step.py --people 10 --frames 300 --no-record
"""

from __future__ import annotations

import os

# One tracker step is a small piece of a worker's frame; measure it on one core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import RESULTS, record_section  # noqa: E402
from posestream.tracker.config import TrackerConfig  # noqa: E402
from posestream.tracker.state import TrackerState  # noqa: E402
from posestream.tracker.step import step  # noqa: E402
from posestream.tracker.synthetic import SimPerson, simulate  # noqa: E402

TARGET_US = 1000.0

# (label, preset, HE dimension, detection fields)
SETUPS = [
    ("he+tie, E=128", "he+tie", 128, ("he", "sie", "tie")),
    ("he+tie, E=3072 (seed 000's HE size)", "he+tie", 3072, ("he", "sie", "tie")),
    ("oks, no HE", "oks", 0, ()),
]


def scene(n: int, seed: int) -> list[SimPerson]:
    """n people of varied size spread over a 1920x1080 frame, walking slowly."""
    rng = np.random.default_rng(seed)
    return [
        SimPerson(
            pid=i,
            start=(float(rng.uniform(100, 1820)), float(rng.uniform(150, 930))),
            velocity=(float(rng.uniform(-2, 2)), float(rng.uniform(-1, 1))),
            height=float(rng.uniform(120, 320)),
        )
        for i in range(n)
    ]


class Setting:
    """One (setup, number of people) cell: its detections and the running tracker state."""

    def __init__(
        self, n: int, preset: str, dim: int, fields: tuple[str, ...], frames: int, warmup: int
    ) -> None:
        self.n = n
        self.cfg = TrackerConfig(preset=preset)
        sim = simulate(scene(n, seed=n), warmup + frames, embedding_dim=max(dim, 1), fields=fields, seed=n)
        self.dets = [f.detections for f in sim]
        self.state = TrackerState.initial()
        for d in self.dets[:warmup]:
            self.state, _ = step(self.state, d, self.cfg)
        self.cursor = warmup
        self.step_us: list[list[float]] = []  # one list per round
        self.ser_us: list[float] = []
        self.de_us: list[float] = []
        self.size = 0

    def run(self, steps: int) -> None:
        times = []
        for d in self.dets[self.cursor : self.cursor + steps]:
            t0 = time.perf_counter_ns()
            self.state, _ = step(self.state, d, self.cfg)
            t1 = time.perf_counter_ns()
            data = self.state.to_bytes()
            t2 = time.perf_counter_ns()
            TrackerState.from_bytes(data)
            t3 = time.perf_counter_ns()
            times.append((t1 - t0) / 1e3)
            self.ser_us.append((t2 - t1) / 1e3)
            self.de_us.append((t3 - t2) / 1e3)
            self.size = max(self.size, len(data))
        self.cursor += steps
        self.step_us.append(times)
        assert len(self.state.tracks) == self.n, "every person should be tracked in this scene"

    def summary(self) -> dict[str, float]:
        us = np.concatenate(self.step_us)
        return {
            "median": float(np.median(us)),
            "best": float(min(np.median(r) for r in self.step_us)),
            "p95": float(np.percentile(us, 95)),
            "to_bytes": float(np.median(self.ser_us)),
            "from_bytes": float(np.median(self.de_us)),
            "bytes": self.size,
        }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores visible; Python {platform.python_version()}, numpy {np.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    parser.add_argument("--frames", type=int, default=1000, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds the timed steps are split into"
    )
    parser.add_argument("--no-record", action="store_true", help=f"print only, do not update {RESULTS.name}")
    args = parser.parse_args(argv)

    # Rounds interleave the settings, so that load from other processes on a shared
    # machine spreads over all of them instead of spoiling one row.
    settings = [
        (label, Setting(n, preset, dim, fields, args.frames, args.warmup))
        for label, preset, dim, fields in SETUPS
        for n in args.people
    ]
    per_round = max(1, args.frames // args.rounds)
    for _ in range(args.rounds):
        for _, setting in settings:
            setting.run(per_round)
    rows = []
    for label, setting in settings:
        r = setting.summary()
        rows.append((label, setting.n, r))
        print(
            f"{label:<38} {setting.n:>3} people: step median {r['median']:8.1f} us  best round {r['best']:8.1f} us  "
            f"p95 {r['p95']:8.1f} us  to_bytes {r['to_bytes']:7.1f} us  from_bytes {r['from_bytes']:7.1f} us  "
            f"state {r['bytes']:>9,} B",
            flush=True,
        )

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    lines = [
        "## Tracker step (`benchmarks/tracker_step.py`)",
        "",
        f"{datetime.date.today().isoformat()}; {machine()}; one thread; {per_round * args.rounds} timed steps "
        f"per row in {args.rounds} interleaved rounds after {args.warmup} warm-up steps; synthetic detections "
        "(people walking, HE/SIE/TIE given as inputs, so no network time). `step` = association + lifecycle; "
        "`best round` = the lowest of the rounds' medians (least disturbed by other processes); "
        "`to_bytes`/`from_bytes` = what a worker adds per frame to keep the state in a store (medians). "
        f"Times in microseconds. Load average while measuring: {load}.",
        "",
        "| setup | people | step median | best round | step p95 | to_bytes | from_bytes | state bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, n, r in rows:
        lines.append(
            f"| {label} | {n} | {r['median']:.0f} | {r['best']:.0f} | {r['p95']:.0f} | {r['to_bytes']:.0f} | "
            f"{r['from_bytes']:.0f} | {r['bytes']:,} |"
        )
    ten = [r for label, n, r in rows if n == 10 and label.startswith("he+tie, E=128")]
    if ten:
        verdict = "met" if ten[0]["median"] < TARGET_US else "NOT met"
        lines += ["", f"Target (< {TARGET_US:.0f} us per step with 10 people, he+tie): {verdict} "
                      f"({ten[0]['median']:.0f} us median)."]  # fmt: skip
    section = "\n".join(lines)
    print()
    print(section)
    if not args.no_record:
        record_section("tracker_step", section)
        print(f"\nrecorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
