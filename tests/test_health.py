"""A run that stops learning says so, and no run stays RUNNING for ever: real runs that really diverge or saturate,
a real SIGKILL, real subprocesses on the real data and a real SQLite MLflow store."""

import json
import os
import signal
import subprocess
import time

from mlflow import MlflowClient

from ganlab import checkpoint, health
from ganlab.train import TrainConfig, train
from helpers import (assert_one_line_error, only_run, run_script, run_train, step_history, train_command,
                     wait_for_checkpoint)

# 1280 images at batch 64: 20 steps an epoch.
TWENTY_STEP_EPOCHS = ["--train-images", "1280", "--eval-every", "0"]


def checkpoint_dir(store_dir, run_id):
    return store_dir / "artifacts" / run_id / "artifacts" / "checkpoint"


def test_absurd_learning_rates_saturate_d_and_end_the_run_failed_with_exit_3(repo_root, data_dir, tmp_path):
    """The issue's case: lr 1e6 pins D(x) = D(G(z)) = 1 from the first steps; after 100 such steps the run stops."""
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--lr-g", "1e6", "--lr-d", "1e6",
                       "--max-steps", "150", *TWENTY_STEP_EPOCHS)
    assert result.returncode == 3, result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: run ") and "\n" not in line and "saturated at step" in line
    assert "no gradient reaches G" in line and "Traceback" not in result.stderr

    client = MlflowClient(store_uri)
    run = only_run(client)
    failure_step = int(run.data.tags["ganlab.failure_step"])
    assert run.info.status == "FAILED" and run.data.tags["ganlab.failure"] == "saturated"
    assert 100 < failure_step <= 140  # pinned from the first steps on, so 100 steps later
    # The last checkpoint was written before the failure step, and no step at or after it was logged.
    assert checkpoint.saved_global_step(checkpoint_dir(tmp_path, run.info.run_id)) < failure_step
    assert max(step for step, _ in step_history(client, run.info.run_id, "loss_d")) < failure_step
    assert f"resume with --resume {run.info.run_id}" in line

    resumed = run_train(repo_root, store_uri, data_dir, "--resume", run.info.run_id)
    assert resumed.returncode in (0, 3), resumed.stderr  # it may saturate again: same settings, same seed
    steps = [step for step, _ in step_history(client, run.info.run_id, "loss_d")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > failure_step - 1  # went on, each step once


def test_non_finite_weights_end_the_run_at_once_and_the_good_checkpoint_is_kept(repo_root, data_dir, tmp_path):
    """G's weights turn NaN at the start of epoch 3 (GANLAB_FAULT): the first step's values are NaN, the run fails
    at step 41, and the checkpoint of step 40 is neither overwritten nor lost; a resume finishes the run."""
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    arguments = ["--arch", "mlp-small", "--epochs", "4", *TWENTY_STEP_EPOCHS]
    result = run_script(train_command(store_uri, data_dir, *arguments), cwd=repo_root, timeout=300,
                        env={**os.environ, "GANLAB_FAULT": "nan_weights:3"})
    assert result.returncode == 3, result.stderr
    assert "diverged at step 41" in result.stderr and "last good checkpoint (step 40) is kept" in result.stderr

    client = MlflowClient(store_uri)
    run = only_run(client)
    assert run.info.status == "FAILED"
    assert (run.data.tags["ganlab.failure"], run.data.tags["ganlab.failure_step"]) == ("diverged", "41")
    saved = checkpoint.load_checkpoint(checkpoint_dir(tmp_path, run.info.run_id))
    assert saved["global_step"] == 40 and all(
        not value.isnan().any() for name, value in saved.items() if name.startswith("generator."))
    assert [step for step, _ in step_history(client, run.info.run_id, "loss_g")] == list(range(1, 41))

    resumed = run_train(repo_root, store_uri, data_dir, "--resume", run.info.run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert only_run(client).info.status == "FINISHED"
    assert [step for step, _ in step_history(client, run.info.run_id, "loss_g")] == list(range(1, 81))


def test_a_d_that_merely_wins_is_not_a_failure():
    """The reports' CNN GAN late in training: D(x) ≈ 0.99, D(G(z)) ≈ 0.005, D loss ≈ 0.01 — a result, not a failure."""
    monitor = health.HealthMonitor()
    monitor.check(1, [[5.3, 0.01, 0.995, 0.005]] * 1000)
    monitor.check(1001, [[25.0, 0.0005, 0.9999, 1e-9]] * 500)  # winning hard, still passing gradients
    assert monitor.failure is None
    monitor.check(1501, [[100.0, 0.0, 1.0, 0.0]] * 99)  # pinned, but not yet for a whole block
    assert monitor.failure is None
    monitor.check(1600, [[100.0, 0.0, 1.0, 0.0]])
    assert monitor.failure.kind == "saturated" and monitor.failure.step == 1600


def test_the_reports_cnn_settings_train_without_a_health_failure(data_dir, tmp_path):
    """The reports' CNN GAN (lr 2e-4, betas 0.5/0.999) through more than a whole block of steps: no failure.
    (Batch 16 on 320 images keeps it to seconds on a CPU; the health check sees every step's values.)"""
    config = TrainConfig(arch="cnn", batch_size=16, train_images=320, epochs=6, max_steps=105, eval_every=0,
                         data_dir=str(data_dir), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    result = train(config, show_progress=False)
    run = MlflowClient(config.tracking_uri).get_run(result.run_id)
    assert result.status == "FINISHED" and run.info.status == "FINISHED" and "ganlab.failure" not in run.data.tags
    assert len(step_history(MlflowClient(config.tracking_uri), result.run_id, "d_fake")) == 105


def test_a_sigkilled_run_is_marked_lost_by_the_next_training_and_still_resumes(repo_root, data_dir, tmp_path):
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    process = subprocess.Popen(train_command(store_uri, data_dir, "--arch", "mlp-small", "--epochs", "30",
                                             *TWENTY_STEP_EPOCHS), cwd=repo_root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_checkpoint(tmp_path, process, epoch=2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    client = MlflowClient(store_uri)
    (killed,) = client.search_runs([client.get_experiment_by_name("fashion-mnist-gan").experiment_id])
    assert killed.info.status == "RUNNING" and float(killed.data.tags["ganlab.heartbeat"]) <= time.time()

    # Within GANLAB_STALE_AFTER_S of its last heartbeat it counts as alive; after it, the next run closes it.
    another = ["--arch", "mlp-small", "--max-steps", "5", *TWENTY_STEP_EPOCHS, "--run-name", "another"]
    assert run_train(repo_root, store_uri, data_dir, *another).returncode == 0
    assert client.get_run(killed.info.run_id).info.status == "RUNNING"
    time.sleep(2)
    environment = {**os.environ, "GANLAB_STALE_AFTER_S": "1"}
    another_run = run_script(train_command(store_uri, data_dir, *another), cwd=repo_root, timeout=300,
                             env=environment)
    assert another_run.returncode == 0, another_run.stderr
    lost = client.get_run(killed.info.run_id)
    assert lost.info.status == "KILLED" and lost.data.tags["ganlab.stop_reason"] == "lost"

    resumed = run_train(repo_root, store_uri, data_dir, "--resume", killed.info.run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"
    assert len(step_history(client, killed.info.run_id, "epoch_loss_d")) == 30


def test_a_bad_stale_setting_is_a_one_line_error(repo_root, data_dir, tmp_path):
    result = run_script(train_command(f"sqlite:///{tmp_path}/mlflow.db", data_dir, "--max-steps", "2"),
                        cwd=repo_root, timeout=120,
                        env={**os.environ, "GANLAB_STALE_AFTER_S": "ten minutes"})
    assert_one_line_error(result, "GANLAB_STALE_AFTER_S must be a number of seconds")


def test_checkpoint_manifest_keeps_the_state_counters_readable(tmp_path):
    """The manifest names the slot, its sha256 and the state's JSON values (what tests and tools read)."""
    checkpoint.save_checkpoint(tmp_path, {"epoch": 2, "global_step": 40, "step_in_epoch": 0})
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert manifest["format"] == "ganlab-checkpoint-v2" and manifest["state"]["global_step"] == 40
    assert checkpoint.saved_global_step(tmp_path) == 40 and checkpoint.saved_global_step(tmp_path / "none") is None
