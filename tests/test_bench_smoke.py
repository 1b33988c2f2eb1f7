"""`python -m bench` in miniature, so the benchmark cannot rot. Timings are not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

EXPECTED_KEYS = {
    "options",
    "machine",
    "startup_s",
    "overhead",
    "burst",
    "memory",
    "cache",
    "capped_burst",
    "baseline",
    "storage",
    "targets",
    "duration_s",
    "studio",
    "faults",
}


def test_a_tiny_benchmark_runs_and_writes_its_results(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--levels=1,3",
            "--burst=3",
            "--latency=0.1",
            "--result-kb=64",
            "--min-jobs=2",
            "--cache-hits=6",
            "--cache-users=2",
            "--baseline-jobs=2",
            "--storage-users=2",
            "--job-timeout=15",
            "--studio-presses=1",
            "--studio-megapixels=0.5",
            "--faults-megapixels=30",
            "--flood=50",
            f"--results={results}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Overhead per job" in completed.stdout
    assert "Targets:" in completed.stdout
    data = json.loads(results.read_text())
    assert data.keys() >= EXPECTED_KEYS
    assert set(data["overhead"]) == {"1", "3"}
    for level in data["overhead"].values():
        assert {"p50_ms", "p95_ms", "p99_ms", "jobs", "failed", "stages_ms"} <= level.keys()
    assert {"wall_s", "floor_s", "ratio"} <= data["burst"].keys()
    assert {"idle_mb", "peak_mb", "copies_per_job"} <= data["memory"].keys()
    assert data["cache"]["hits"] == 6
    assert data["baseline"]["measured_jobs"] == 2
    assert {"main", "capped"} <= data["startup_s"].keys()
    studio = data["studio"]
    for row in studio["press_to_result"].values():
        assert row["failed"] == 0, studio
    assert {"1 MiB sticker", "0.5 MP crop", "0.5 MP white"} <= studio["press_to_result"].keys()
    assert studio["under_load"]["failed"] == 0
    assert studio["loop_lag"]["ticks"] > 0
    assert "Studio: button press -> result" in completed.stdout
    assert {row["target"] for row in data["targets"]} >= {
        "cache hit median",
        "SQLite - memory overhead p50 @2 users",
    }
    assert data["storage"]["sqlite"]["failed"] == 0
    assert data["storage"]["memory"]["jobs"] == data["storage"]["sqlite"]["jobs"] >= 2
