"""experiments/evaluate.py as a real subprocess against a real tracked run."""

import json
import os
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ganlab.metrics import inception
from helpers import assert_one_line_error, only_run, require_inception_weights, run_script, run_train


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, repo_root, data_dir):
    store_dir = tmp_path_factory.mktemp("evaluate")
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    result = run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--train-images", "1280",
                       "--epochs", "2", "--eval-every", "0")
    assert result.returncode == 0, result.stderr
    return store_uri, only_run(MlflowClient(store_uri)).info.run_id


def run_evaluate(repo_root, data_dir, *arguments: str):
    return run_script([sys.executable, "experiments/evaluate.py", "--data-dir", str(data_dir), *arguments],
                      cwd=repo_root, timeout=300)


def test_evaluate_prints_json_and_writes_metrics_and_protocol_to_the_run(repo_root, data_dir, tracked_run):
    store_uri, run_id = tracked_run
    result = run_evaluate(repo_root, data_dir, "--run-id", run_id, "--tracking-uri", store_uri, "--samples", "1000",
                          "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["run_id"] == run_id and report["protocol"]["eval.samples"] == "1000"
    assert report["protocol"]["eval.feature_space"] == "fmnist-cnn-v1"
    assert len(report["class_shares"]) == 10 and sum(report["class_shares"]) == pytest.approx(1)

    client = MlflowClient(store_uri)
    run = client.get_run(run_id)
    for name in ("fid", "kid", "precision", "recall", "density", "coverage", "class_entropy"):
        (metric,) = client.get_metric_history(run_id, name)
        assert metric.step == 2 and metric.value == pytest.approx(report["metrics"][name])
    assert run.data.tags["eval.feature_space"] == "fmnist-cnn-v1"
    assert "eval/evaluate.json" in {info.path for info in client.list_artifacts(run_id, "eval")}


def test_real_floor_needs_no_run(repo_root, data_dir):
    result = run_evaluate(repo_root, data_dir, "--real-floor", "--samples", "2000", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["fid"] < 3


def test_unknown_run_and_run_without_generator_are_one_line_errors(repo_root, data_dir, tracked_run):
    store_uri, run_id = tracked_run
    client = MlflowClient(store_uri)
    empty_run = client.create_run(only_run(client).info.experiment_id, tags={"ganlab.kind": "train"}).info.run_id
    unknown = run_evaluate(repo_root, data_dir, "--run-id", "feedface", "--tracking-uri", store_uri)
    assert_one_line_error(unknown, "no run 'feedface'")
    no_generator = run_evaluate(repo_root, data_dir, "--run-id", empty_run, "--tracking-uri", store_uri)
    assert_one_line_error(no_generator, "has no readable generator")


def test_inception_features_log_fid_inception_with_its_protocol_beside_the_yardstick(repo_root, data_dir, tracked_run):
    require_inception_weights()
    store_uri, run_id = tracked_run
    result = run_evaluate(repo_root, data_dir, "--run-id", run_id, "--tracking-uri", store_uri, "--features",
                          "inception", "--samples", "12", "--reference-images", "12", "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["protocol"] == inception.protocol(12, "fashion-mnist-test-first-12")
    assert report["metrics"]["fid_inception"] > 0 and set(report["metrics"]) == {
        "fid_inception", "kid_inception", "kid_inception_std"}

    client = MlflowClient(store_uri)
    tags = client.get_run(run_id).data.tags
    for name in ("fid_inception", "kid_inception"):
        (metric,) = client.get_metric_history(run_id, name)
        assert metric.step == 2 and metric.value == pytest.approx(report["metrics"][name])
    assert {name: tags[name] for name in report["protocol"]} == report["protocol"]
    assert tags.get("eval.feature_space") in (None, "fmnist-cnn-v1")  # the yardstick's protocol is not overwritten
    assert "eval/inception.json" in {info.path for info in client.list_artifacts(run_id, "eval")}
    (cached,) = Path(os.environ["GANLAB_CACHE_DIR"]).glob("inception-v3-*-fashion-mnist-test-first-12.safetensors")
    assert inception.WEIGHTS_SHA256[:16] in cached.name


def test_inception_features_without_the_weights_or_with_a_bad_reference_size_are_one_line_errors(
        repo_root, data_dir, tmp_path):
    missing = run_script([sys.executable, "experiments/evaluate.py", "--data-dir", str(data_dir), "--real-floor",
                          "--features", "inception"], cwd=repo_root, timeout=300,
                         env={**os.environ, "GANLAB_INCEPTION_DIR": str(tmp_path)})
    assert_one_line_error(missing, "not set up", "make inception")
    too_many = run_evaluate(repo_root, data_dir, "--real-floor", "--features", "inception",
                            "--reference-images", "20000")
    assert_one_line_error(too_many, "--reference-images must be between 2 and 10000")
