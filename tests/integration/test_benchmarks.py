"""The benchmark scripts keep working: each runs briefly and prints its JSON."""

import json
import subprocess
import sys

import pytest

from devstack import ROOT


def run_benchmark(module: str, *arguments: str, timeout_s: float) -> dict:
    """What `python -m benchmarks.<module> <arguments>` printed, parsed."""
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return json.loads(completed.stdout)


def test_plumbing_overhead_prints_ratios_against_its_baseline() -> None:
    result = run_benchmark("plumbing_overhead", "--requests", "200", timeout_s=120)
    assert result["requests_per_server"] == 200
    for side in ("baseline", "service"):
        assert 0 < result[side]["p50_ms"] <= result[side]["p95_ms"]
    assert result["ratio_p50"] == round(
        result["service"]["p50_ms"] / result["baseline"]["p50_ms"], 3
    )


def test_training_throughput_prints_ratios_against_its_baseline() -> None:
    result = run_benchmark(
        "training_throughput",
        *("--images", "48", "--size", "32", "--batch", "16", "--skip-bootstrap"),
        timeout_s=300,
    )
    assert result["images"] == 48
    assert result["baseline_in_memory_images_per_s"] > 0
    # The ratio is of the unrounded rates; the printed rates are rounded to 0.1 image/s.
    assert result["ratio_pipeline_cached_to_baseline"] == pytest.approx(
        result["pipeline_cached_images_per_s"] / result["baseline_in_memory_images_per_s"],
        rel=1e-3,
        abs=1e-3,
    )


def test_assistant_text_prints_redaction_before_and_after_and_health_while_redacting() -> None:
    result = run_benchmark("assistant_text", "--spaces", "200", "--history", "300", timeout_s=300)
    assert result["redaction"].keys() >= {"question_patient_spaces", "question_and_history_turn"}
    for case in result["redaction"].values():
        assert case["before_ms"] > 0 and case["after_ms"] > 0
        # From the unrounded times, so only roughly the ratio of the printed ones.
        assert case["speedup"] == pytest.approx(case["before_ms"] / case["after_ms"], rel=0.2)
    # The reported inputs: the old patterns try every split of the spaces, the new ones one.
    assert result["redaction"]["question_and_history_turn"]["speedup"] > 10
    served = result["health_during_question_and_history"]
    for side in ("before", "after"):
        assert served[side]["health_checks"] >= 1
        assert served[side]["request_ms"] > 0
    assert served["health_alone_p50_ms"] > 0


def test_inference_memory_reports_peaks_above_idle_and_the_targets() -> None:
    result = run_benchmark(
        "inference_memory", "--side", "2400", "--concurrency", "2", timeout_s=600
    )
    assert (result["side"], result["pixels"], result["concurrency"]) == (2400, 2400**2, 2)
    assert result["idle_mib"] > 0
    assert set(result["runs"]) == {"png_1", "jpeg_1", "png_2", "jpeg_2"}
    for name, run in result["runs"].items():
        assert run["statuses"] == {"200": run["requests"]}, name
        assert run["peak_mib"] >= result["idle_mib"] > 0, name
        assert run["peak_above_idle_mib"] == pytest.approx(
            run["peak_mib"] - result["idle_mib"], abs=0.2
        )
    for fmt in ("png", "jpeg"):
        target = result["targets"][fmt]
        assert target["single_at_most_mib"] == 300
        assert isinstance(target["single_pass"], bool)
        assert isinstance(target["concurrent_pass"], bool)


def test_assessability_meets_its_targets_on_a_fixed_subset() -> None:
    result = run_benchmark("assessability", "--per-kind", "20", "--seed", "0", timeout_s=300)
    assert result["per_kind"] == 20
    assert result["false_refusal_rate"] <= result["false_refusal_target"] == 0.02
    assert set(result["miss_rate"]) == {
        "blank_glass", "dusty_glass", "blurred_tissue", "pen_strokes", "random_noise",
        "flat_colour", "colour_gradient", "screenshot", "grey_tissue", "inverted_tissue",
        "dab_ihc", "natural_scene", "over_exposed", "under_exposed",
    }  # fmt: skip
    assert all(rate <= result["miss_target"] == 0.05 for rate in result["miss_rate"].values())
    assert result["within_targets"] is True
    assert result["ms_per_image"] > 0 and result["preprocess_ms_per_image"] > 0


def test_slides_prints_upload_ratio_memory_difference_and_tile_latencies() -> None:
    result = run_benchmark(
        "slides",
        *("--upload-side", "4000", "--small-side", "1000", "--big-side", "6000"),
        *("--tiles", "20", "--clients", "4"),
        timeout_s=300,
    )
    upload = result["upload"]
    assert upload["bytes"] > 0 and upload["disk_write_fsync_mib_s"] > 0
    assert upload["ratio"] == pytest.approx(
        upload["service_upload_mib_s"] / upload["disk_write_fsync_mib_s"], abs=0.01
    )
    memory = result["memory"]
    assert (memory["small_side"], memory["big_side"]) == (1000, 6000)
    assert memory["peak_after_big_mib"] >= memory["peak_after_small_mib"] > 0
    assert memory["difference_mib"] == pytest.approx(
        memory["peak_after_big_mib"] - memory["peak_after_small_mib"], abs=0.11
    )
    tiles = result["tiles"]
    assert (tiles["clients"], tiles["tiles"]) == (4, 20)
    assert 0 < tiles["cold_median_ms"] <= tiles["cold_p95_ms"]
    assert 0 < tiles["cached_median_ms"] <= tiles["cached_p95_ms"]
    assert tiles["cached_p95_to_health_p95"] == pytest.approx(
        tiles["cached_p95_ms"] / tiles["health_p95_ms"], abs=0.01
    )
    # Every tile was produced once from the file and once from the cache, inside the service.
    assert tiles["service_cold_p95_ms_at_most"] > 0
    assert tiles["service_cached_p95_ms_at_most"] > 0
    assert set(result["pass"]) == {"upload", "memory", "tiles_cold", "tiles_cached"}


def test_runtimes_prints_each_runtime_beside_tensorflow() -> None:
    result = run_benchmark("runtimes", "--no-service", "--seconds", "1", timeout_s=300)
    assert result["model"] == "demo-synthetic-1"
    assert set(result["in_process"]) == {"tensorflow", "litert", "onnxruntime"}
    assert result["auto_chooses"] in result["in_process"]
    for figures in result["in_process"].values():
        assert figures["single_image_median_ms"] > 0 and figures["batch32_images_per_s"] > 0
        assert figures["max_abs_diff_p_malignant"] <= 1e-4
        assert figures["max_abs_diff_ood_score"] <= 1e-4
    assert result["in_process"]["tensorflow"]["batch32_ratio_vs_tensorflow"] == 1.0


def test_inference_service_prints_each_path_beside_the_raw_model() -> None:
    result = run_benchmark(
        "inference_service", "--seconds", "0.3", "--patches-per-request", "8", timeout_s=600
    )
    assert result["model"] == "demo-synthetic-1" and result["input_size"] == [128, 128, 3]
    raw = result["raw"]
    assert raw["runtime"] in ("tensorflow", "litert", "onnxruntime")
    assert raw["batch32_images_per_s"] > 0 and raw["explain_batch32_images_per_s"] > 0
    levels = [
        "service_1_client",
        "service_16_clients",
        "service_16_clients_heatmap",
        "service_32_clients",
        "npy_batch_4_clients_quality_checked",
        "npy_batch_4_clients_quality_skipped",
        "http_ceiling_32_clients_health",
    ]
    for name in levels:
        assert result[name]["failures"] == 0 and result[name]["images_per_s"] > 0, name
        assert result[name]["service_cpu_ms_per_image"] > 0, name
    targets = result["targets"]
    batch = targets["npy_batch_to_raw_batch32"]
    assert batch["target"] == 0.7
    assert batch["ratio"] == round(
        result["npy_batch_4_clients_quality_skipped"]["images_per_s"] / raw["batch32_images_per_s"],
        3,
    )
    assert batch["met"] == (batch["ratio"] >= 0.7)
    assert targets["heatmap_to_plain_16_clients"]["target"] == 0.7
    assert set(result["cpu_bound"]) <= set(targets)


def test_data_service_prints_ratios_per_size_plans_and_the_rollups_store_cost() -> None:
    result = run_benchmark(
        "data_service", "--sizes", "500,1000,1500", "--repeat", "2", "--explain", timeout_s=300
    )
    queries = set(result["rows_500_ms"]) - {"fill_seconds"}
    assert {"stats_all_rows", "list_first_page", "review_queue_of_a_second_reviewer"} <= queries
    for total in (1000, 1500):
        ratios = result[f"ratio_{total}_to_500"]
        assert set(ratios) == queries
        for name, ratio in ratios.items():
            assert ratio == round(result[f"rows_{total}_ms"][name] / result["rows_500_ms"][name], 2)
    assert result["ratio_stats_all_rows_largest_to_second"] > 0
    # The plans are at the largest size only, and each read along an index or a table.
    plans = result["rows_1500_ms"]["plans"]
    assert "plans" not in result["rows_500_ms"]
    assert any("Index Only Scan" in line for line in plans["list_first_page"])
    assert any("prediction_day_counts" in line for line in plans["stats_all_rows"])
    assert all(any("Execution Time" in line for line in lines) for lines in plans.values())
    store = result["store"]
    assert store["store_with_rollups_ms"] > 0 and store["store_without_rollups_ms"] > 0


def test_slide_analysis_prints_worker_rates_memory_and_mask_time() -> None:
    result = run_benchmark("slide_analysis", "--quick", timeout_s=600)
    assert result["quick"] is True and result["cpu_count"] >= 1
    assert result.keys() >= {"raw", "one_worker", "two_workers", "memory", "mask", "slides"}
    raw = result["raw"]
    assert raw["runtime"] in ("tensorflow", "litert", "onnxruntime")
    assert raw["tiles"] > 0 and raw["batch32_images_per_s"] > 0
    one, two = result["one_worker"], result["two_workers"]
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["tiles"] == raw["tiles"] and two["tiles"] == 2 * raw["tiles"]
    assert one["tiles_per_s"] > 0 and two["tiles_per_s"] > 0
    assert one["ratio_to_raw"] == pytest.approx(
        one["tiles_per_s"] / raw["batch32_images_per_s"], abs=0.01
    )
    assert two["ratio_to_one_worker"] == pytest.approx(
        two["tiles_per_s"] / one["tiles_per_s"], abs=0.01
    )
    assert (one["target"], two["target"]) == (0.7, 1.6) and two["note"]
    memory = result["memory"]
    assert memory["peak_after_small_mib"] > 0 and memory["peak_after_big_mib"] > 0
    assert memory["big_tiles"] > 0
    assert memory["difference_mib"] == pytest.approx(
        memory["peak_after_big_mib"] - memory["peak_after_small_mib"], abs=0.11
    )
    mask = result["mask"]
    assert mask["seconds_median"] > 0 and mask["mask_width"] > 0 and mask["mask_height"] > 0
    assert 0 < mask["tissue_tiles"] <= mask["grid_tiles"]
    assert isinstance(mask["met"], bool) and isinstance(memory["met"], bool)
