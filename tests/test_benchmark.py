"""experiments/benchmark.py at a small size: it runs both loops, prints the JSON and logs the run (no timing asserts)."""

import json
import math
import sys

import pytest
from mlflow import MlflowClient

from helpers import assert_one_line_error, run_script


def run_benchmark(repo_root, data_dir, *arguments: str):
    return run_script([sys.executable, "experiments/benchmark.py", "--no-progress", "--data-dir", str(data_dir), *arguments],
                      cwd=repo_root, timeout=600)


def test_small_benchmark_prints_json_and_logs_a_benchmark_run(repo_root, data_dir, tmp_path):
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_benchmark(repo_root, data_dir, "--steps", "30", "--repeats", "1", "--eval-samples", "500", "--device", "cpu",
                           "--precision", "fp32", "--json", "--tracking-uri", store_uri)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for name in ("ganlab_images_per_s", "reference_images_per_s", "ganlab_untracked_images_per_s", "eval_seconds"):
        assert math.isfinite(report[name]) and report[name] > 0, name
    assert report["speedup"] == pytest.approx(report["ganlab_images_per_s"] / report["reference_images_per_s"])
    assert report["tracking_overhead"] > -1 and report["device"].startswith("cpu")

    client = MlflowClient(store_uri)
    run = client.get_run(report["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["ganlab.kind"] == "benchmark"
    assert run.data.params["steps"] == "30" and run.data.params["arch"] == "mlp"
    assert report["precision_resolved"] == "fp32" and run.data.params["precision_resolved"] == "fp32"
    assert run.data.metrics["speedup"] == pytest.approx(report["speedup"])
    # The timed training runs went to a throwaway store, not into the user's experiments.
    assert client.get_experiment_by_name("fashion-mnist-gan") is None


def test_the_system_metrics_benchmark_times_the_tracked_loop_with_and_without_the_monitor(repo_root, data_dir,
                                                                                         tmp_path):
    result = run_benchmark(repo_root, data_dir, "--system-metrics", "--steps", "10", "--repeats", "1", "--device", "cpu",
                           "--json", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ganlab_images_per_s"] > 0 and report["system_metrics_images_per_s"] > 0
    (ratio,) = json.loads(report["system_metrics_overhead_rounds"])
    assert report["system_metrics_overhead"] == pytest.approx(ratio, abs=1e-4) and ratio > -1
    assert "reference_images_per_s" not in report  # only the two tracked loops ran


def test_bad_benchmark_settings_are_one_line_errors(repo_root, data_dir, tmp_path):
    result = run_benchmark(repo_root, data_dir, "--steps", "0", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert_one_line_error(result, "--steps")
