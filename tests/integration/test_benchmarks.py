"""The benchmark scripts keep working: each runs briefly and prints its JSON."""

import json
import subprocess
import sys

import pytest

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


def test_training_throughput_prints_ratios_against_its_baseline() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.training_throughput",
            "--images",
            "48",
            "--size",
            "32",
            "--batch",
            "16",
            "--skip-bootstrap",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(completed.stdout)
    assert result["images"] == 48
    assert result["baseline_in_memory_images_per_s"] > 0
    # The ratio is of the unrounded rates; the printed rates are rounded to 0.1 image/s.
    assert result["ratio_pipeline_cached_to_baseline"] == pytest.approx(
        result["pipeline_cached_images_per_s"] / result["baseline_in_memory_images_per_s"],
        rel=1e-3,
        abs=1e-3,
    )
