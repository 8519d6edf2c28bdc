"""experiments/train.py end to end, as real subprocesses on the real data and a real SQLite MLflow store."""

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from ganlab import devices, tracking
from ganlab.train import TrainConfig
from helpers import (artifact_paths, assert_one_line_error, final_weights, only_run, run_train, step_history,
                     train_command, wait_for_checkpoint)

# A small but real configuration: 1280 images at batch 64 is 20 steps an epoch.
SMALL_RUN = ["--arch", "mlp", "--train-images", "1280", "--batch-size", "64", "--seed", "3", "--eval-every", "0"]
SMALL_RUN_EPOCHS = 15
SMALL_RUN_STEPS = 20 * SMALL_RUN_EPOCHS


@pytest.fixture(scope="module")
def uninterrupted_small_run(tmp_path_factory, repo_root, data_dir):
    """The small configuration trained without interruption: the reference for the resume tests."""
    store_dir = tmp_path_factory.mktemp("uninterrupted")
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    result = run_train(repo_root, store_uri, data_dir, *SMALL_RUN, "--epochs", str(SMALL_RUN_EPOCHS))
    assert result.returncode == 0, result.stderr
    client = MlflowClient(store_uri)
    run = only_run(client)
    return client, run.info.run_id, final_weights(client, run.info.run_id, store_dir / "download")


def test_short_run_tracks_params_metrics_and_every_artifact(repo_root, data_dir, tmp_path):
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    scratch = tmp_path / "scratch"  # the run's temporary folder: staged files must not outlive the run
    scratch.mkdir()
    # 6400 images = 100 steps an epoch; --max-steps 150 stops half-way through the second epoch.
    result = run_train(repo_root, store_uri, data_dir, "--arch", "mlp", "--train-images", "6400", "--max-steps", "150",
                       "--eval-every", "1", "--eval-samples", "1000", env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr
    assert not list(scratch.iterdir())

    client = MlflowClient(store_uri)
    run = only_run(client)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "mlp-s0"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location.startswith(str(tmp_path / "artifacts"))

    # Params: every flag, the parameter counts, versions, device and the dataset's checksums.
    params = run.data.params
    for name in TrainConfig.__dataclass_fields__:
        assert name in params, name
    assert params["lr_g"] == "0.0002" and params["batch_size"] == "64" and params["max_steps"] == "150"
    assert params["generator_parameters"] == "561168" and params["discriminator_parameters"] == "533505"
    assert params["torch_version"] == torch.__version__ and params["device_resolved"] == "cpu"
    assert params["machine"] == devices.machine_description(torch.device("cpu"))
    assert params["dataset_md5.train-images-idx3-ubyte"] == "f4a8712d7a061bf5bd6d2ca38dc4d50a"
    assert run.data.tags["ganlab.kind"] == "train" and run.data.tags["ganlab.arch"] == "mlp"

    # Per-step metrics at steps 1..150, per-epoch metrics at epochs 1 and 2.
    for name in ("loss_g", "loss_d", "d_real", "d_fake"):
        history = step_history(client, run_id, name)
        assert [step for step, _ in history] == list(range(1, 151)), name
    for name in ("d_real", "d_fake"):
        assert all(0 < value < 1 for _, value in step_history(client, run_id, name)), name
    for name in ("epoch_loss_g", "epoch_loss_d", "epoch_d_real", "epoch_d_fake", "epoch_d_gap", "epoch_seconds",
                 "images_per_second"):
        assert [step for step, _ in step_history(client, run_id, name)] == [1, 2], name
    first_epoch_mean = sum(value for _, value in step_history(client, run_id, "loss_g")[:100]) / 100
    assert step_history(client, run_id, "epoch_loss_g")[0][1] == pytest.approx(first_epoch_mean, rel=1e-5)

    # Quality metrics every epoch (--eval-every 1), with their protocol beside them.
    for name in ("fid", "kid", "precision", "recall", "density", "coverage", "class_entropy"):
        assert [step for step, _ in step_history(client, run_id, name)] == [1, 2], name
    assert run.data.tags["eval.feature_space"] == "fmnist-cnn-v1" and run.data.tags["eval.samples"] == "1000"
    assert run.data.tags["eval.reference"] == "fashion-mnist-test-10k"

    artifacts = artifact_paths(client, run_id)
    assert {"plots/class_histogram.png", "eval/final.json"} <= artifacts
    assert {"model/summary.txt", "model/generator.safetensors", "model/discriminator.safetensors",
            "model/config.json", "samples/epoch_001.png", "samples/epoch_002.png", "plots/losses.png",
            "plots/losses_d_g.png", "plots/d_outputs.png", "config/train_config.json",
            "checkpoint/checkpoint.json"} <= artifacts
    step_slider_images = [path for path in artifacts if path.startswith("images/samples+step+")]
    assert {path.split("+")[2] for path in step_slider_images} == {"1", "2"}
    summary = Path(client.download_artifacts(run_id, "model/summary.txt", str(tmp_path / "dl"))).read_text()
    assert "BatchNorm1d(256, eps=0.8" in summary and "generator parameters: 561,168" in summary
    assert summary.startswith("Discriminator(") and summary.index("Discriminator(") < summary.index("Generator(")

    # The summary line says where everything is; the generator loads back with no pickle.
    assert run_id in result.stdout and "workflowType=machine_learning" in result.stdout
    generator = tracking.load_generator(run_id, store_uri)
    assert not generator.training
    with torch.no_grad():
        images = generator(torch.randn(8, 100))
    assert images.shape == (8, 1, 28, 28)


def test_resume_after_sigkill_matches_uninterrupted_run(repo_root, data_dir, tmp_path, uninterrupted_small_run):
    reference_client, reference_run_id, reference_weights = uninterrupted_small_run
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    process = subprocess.Popen(train_command(store_uri, data_dir, *SMALL_RUN, "--epochs", str(SMALL_RUN_EPOCHS)),
                               cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_checkpoint(tmp_path, process, epoch=3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    client = MlflowClient(store_uri)
    run_id = only_run(client).info.run_id
    assert client.get_run(run_id).info.status == "RUNNING"  # SIGKILL leaves no chance to mark it
    resumed = run_train(repo_root, store_uri, data_dir, "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr

    assert only_run(client).info.status == "FINISHED"
    weights = final_weights(client, run_id, tmp_path / "download")
    assert weights.keys() == reference_weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(tensor, reference_weights[name]), name
    # Steps logged before the kill are not logged twice, and the history equals the uninterrupted one.
    assert step_history(client, run_id, "loss_g") == step_history(reference_client, reference_run_id, "loss_g")
    assert len(step_history(client, run_id, "epoch_loss_d")) == SMALL_RUN_EPOCHS


def test_ctrl_c_writes_checkpoint_marks_killed_and_resumes_to_same_weights(repo_root, data_dir, tmp_path,
                                                                           uninterrupted_small_run):
    _, _, reference_weights = uninterrupted_small_run
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    process = subprocess.Popen(train_command(store_uri, data_dir, *SMALL_RUN, "--epochs", str(SMALL_RUN_EPOCHS)),
                               cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(tmp_path, process, epoch=2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stdout and "Traceback" not in stderr

    client = MlflowClient(store_uri)
    run_id = only_run(client).info.run_id
    assert client.get_run(run_id).info.status == "KILLED"
    resumed = run_train(repo_root, store_uri, data_dir, "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    weights = final_weights(client, run_id, tmp_path / "download")
    for name, tensor in weights.items():
        assert torch.equal(tensor, reference_weights[name]), name
    assert [step for step, _ in step_history(client, run_id, "loss_g")] == list(range(1, SMALL_RUN_STEPS + 1))


def test_resume_refuses_a_finished_run_and_changed_settings(repo_root, data_dir, uninterrupted_small_run):
    client, run_id, _ = uninterrupted_small_run
    finished = run_train(repo_root, client.tracking_uri, data_dir, "--resume", run_id)
    assert_one_line_error(finished, "already finished")
    changed = run_train(repo_root, client.tracking_uri, data_dir, "--resume", run_id, "--epochs", "3")
    assert_one_line_error(changed, "drop --epochs")
    unknown = run_train(repo_root, client.tracking_uri, data_dir, "--resume", "0123456789abcdef")
    assert_one_line_error(unknown, "no run '0123456789abcdef'")


@pytest.mark.parametrize("arguments, fragment", [
    (["--arch", "gan3d"], "invalid choice: 'gan3d'"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--epochs", "-2"], "--epochs must be positive"),
    (["--lr-d", "0"], "--lr-d must be positive"),
    (["--beta1", "1.5"], "--beta1 must be in [0, 1)"),
    (["--max-steps", "x"], "invalid int value: 'x'"),
])
def test_bad_settings_are_one_line_errors(repo_root, data_dir, tmp_path, arguments, fragment):
    result = run_train(repo_root, f"sqlite:///{tmp_path}/mlflow.db", data_dir, *arguments)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started


def test_unreadable_data_is_a_one_line_error(repo_root, tmp_path):
    raw_dir = tmp_path / "data" / "FashionMNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw_dir / name).write_bytes(b"not an IDX file")
    result = run_train(repo_root, f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "data", "--max-steps", "5")
    assert_one_line_error(result, "train-images-idx3-ubyte")
    assert (raw_dir / "train-images-idx3-ubyte").read_bytes() == b"not an IDX file"  # never overwritten


def test_unwritable_store_is_a_one_line_error(repo_root, data_dir, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    result = run_train(repo_root, f"sqlite:///{blocker}/mlflow.db", data_dir, "--max-steps", "5")
    assert_one_line_error(result, "tracking store")


def test_unreachable_tracking_server_is_a_one_line_error(repo_root, data_dir):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_train(repo_root, f"http://127.0.0.1:{port}", data_dir, "--max-steps", "5", timeout=60)
    assert_one_line_error(result, "unreachable")
