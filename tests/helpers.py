"""Helpers shared by the tests that run ganlab's scripts as real subprocesses against a real MLflow store."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file

# A latent study small enough for tests: few samples for the statistics, few random and factor directions, and the
# reports' claims left to the tests that check them (they classify ~750 more changed batches).
SMALL_STUDY = ["--stats-samples", "64", "--random-directions", "4", "--factor-directions", "2", "--no-claims",
               "--no-progress"]


def train_command(store_uri: str, data_dir: Path, *arguments: str) -> list[str]:
    return [sys.executable, "experiments/train.py", "--no-progress", "--tracking-uri", store_uri,
            "--data-dir", str(data_dir), *arguments]


def run_train(repo_root: Path, store_uri: str, data_dir: Path, *arguments: str, timeout: int = 300):
    return subprocess.run(train_command(store_uri, data_dir, *arguments), cwd=repo_root, capture_output=True,
                          text=True, timeout=timeout)


def only_run(client: MlflowClient, experiment: str = "fashion-mnist-gan"):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([experiment_id])
    return run


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def step_history(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, name))


def final_weights(client: MlflowClient, run_id: str, download_dir: Path) -> dict[str, torch.Tensor]:
    model_dir = Path(client.download_artifacts(run_id, "model", str(download_dir)))
    return {**{f"G.{k}": v for k, v in load_file(str(model_dir / "generator.safetensors")).items()},
            **{f"D.{k}": v for k, v in load_file(str(model_dir / "discriminator.safetensors")).items()}}


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def wait_for_checkpoint(store_dir: Path, process: subprocess.Popen, epoch: int, timeout: float = 120) -> None:
    """Poll the run's checkpoint manifest until it records `epoch` finished epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for manifest in store_dir.glob("artifacts/*/artifacts/checkpoint/checkpoint.json"):
            try:
                if json.loads(manifest.read_text())["state"]["epoch"] >= epoch:
                    return
            except (OSError, json.JSONDecodeError, KeyError):
                pass
        assert process.poll() is None, f"training ended before epoch {epoch}: {process.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint for epoch {epoch} within {timeout} s")


def require_inception_weights() -> Path:
    """The folder `make inception` set up; skipped where it is missing, unless GANLAB_REQUIRE_INCEPTION=1 (set by
    .ci/run, whose `make test` sets it up first), where that fails."""
    from ganlab.metrics import inception

    folder = inception.inception_dir()
    if not ((folder / inception.WEIGHTS_FILE).is_file() and (folder / inception.SOURCE_FILE).is_file()):
        message = f"Inception weights not set up in {folder}: run `make inception`"
        if os.environ.get("GANLAB_REQUIRE_INCEPTION") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return folder
