"""`python -m bench.credits` in miniature, so it cannot rot. Timings are not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import credits


def test_the_credits_benchmark_runs_and_writes_its_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "credits.json"
    assert credits.main(["--calls=10", f"--results={results}"]) == 0
    out = capsys.readouterr().out
    assert "credit over off, p50:" in out
    data = json.loads(results.read_text())
    assert set(data["cases"]) == {"off", "credit", "debit"}
    assert all(case["calls"] == 10 for case in data["cases"].values())
    # Warm-up and timed calls of the credit and debit cases each left one ledger entry,
    # after one purchase per user.
    users = data["options"]["users"]
    assert data["ledger_rows"] == users + 2 * (10 + credits.WARM_UP)
