"""The benchmark scripts keep working: each runs briefly and prints its JSON."""

import json
import subprocess
import sys

from devstack import ROOT


def test_plumbing_overhead_prints_ratios_against_its_baseline() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.plumbing_overhead", "--requests", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(completed.stdout)
    assert result["requests_per_server"] == 200
    for side in ("baseline", "service"):
        assert 0 < result[side]["p50_ms"] <= result[side]["p95_ms"]
    assert result["ratio_p50"] == round(
        result["service"]["p50_ms"] / result["baseline"]["p50_ms"], 3
    )
