"""Bad input to every script, as one table: one line on stderr, a non-zero exit, nothing already written lost.

Each case is a real subprocess against a real SQLite store holding a finished training run and a tuning study;
damaged files, a read-only store and a full disk are real too (a truncated file, a read-only and a 2 MB tmpfs).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ganlab import checkpoint
from helpers import assert_one_line_error, only_run, run_script, run_train

RUN = "<training run>"  # placeholders, replaced by the fixture's ids
STUDY_RUN = "<tuning parent run>"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


UNREACHABLE = f"http://127.0.0.1:{closed_port()}"

# (script, arguments, what the one line must say). Exit status 2 unless the case says otherwise.
CASES = [
    # Wrong types.
    ("experiments/train.py", ["--epochs", "many"], "invalid int value: 'many'"),
    ("experiments/tune.py", ["--trials", "2.5"], "invalid int value: '2.5'"),
    ("experiments/evaluate.py", ["--run-id", RUN, "--samples", "lots"], "invalid int value: 'lots'"),
    ("experiments/benchmark.py", ["--steps", "1e3"], "invalid int value: '1e3'"),
    ("experiments/compare_settings.py", ["--arm", "reports", "--seeds", "three"], "invalid int value: 'three'"),
    ("analysis/latent_effects.py", ["--run-id", RUN, "--stats-samples", "x"], "invalid int value: 'x'"),
    ("analysis/compare_runs.py", ["--run-ids", RUN, "--smoothing", "wide"], "invalid int value: 'wide'"),
    ("analysis/replay_pruners.py", ["--study-name", "s", "--orders", "all"], "invalid int value: 'all'"),
    # Out of range.
    ("experiments/train.py", ["--lr-g", "-1"], "--lr-g must be positive"),
    ("experiments/train.py", ["--beta2", "1"], "--beta2 must be in [0, 1)"),
    ("experiments/train.py", ["--precision", "fp8"], "invalid choice: 'fp8'"),
    ("experiments/tune.py", ["--epochs-per-trial", "0"], "--epochs-per-trial must be positive"),
    ("experiments/tune.py", ["--steps-per-trial", "-5"], "--steps-per-trial must be positive"),
    ("experiments/evaluate.py", ["--run-id", RUN, "--samples", "1"], "--samples must be at least 2"),
    ("experiments/benchmark.py", ["--repeats", "0"], "--repeats must be positive"),
    ("experiments/compare_settings.py", ["--arm", "reports", "--seeds", "1"], "--seeds must be at least 2"),
    ("analysis/compare_runs.py", ["--run-ids", RUN, "--smoothing", "0"], "--smoothing must be at least 1"),
    ("analysis/replay_pruners.py", ["--study-name", "s", "--orders", "0"], "--orders must be at least 1"),
    # Unknown and wrong-kind run ids.
    ("experiments/train.py", ["--resume", "0123456789abcdef"], "no run '0123456789abcdef'"),
    ("experiments/train.py", ["--resume", STUDY_RUN], "is not a ganlab training run"),
    ("experiments/evaluate.py", ["--run-id", "0123456789abcdef"], "no run '0123456789abcdef'"),
    ("experiments/evaluate.py", ["--run-id", STUDY_RUN], "has no readable generator"),
    ("analysis/latent_effects.py", ["--run-id", "0123456789abcdef"], "no run '0123456789abcdef'"),
    ("analysis/latent_effects.py", ["--run-id", STUDY_RUN], "has no readable generator"),
    ("analysis/compare_runs.py", ["--run-ids", STUDY_RUN], "is not a ganlab training run"),
    ("analysis/replay_pruners.py", ["--study-name", "no-such-study"], "no study 'no-such-study'"),
    ("experiments/compare_settings.py", ["--arm", "best:no-such-study"], "no study 'no-such-study'"),
    # An unreachable tracking server.
    ("experiments/train.py", ["--tracking-uri", UNREACHABLE, "--max-steps", "2"], "unreachable"),
    ("experiments/tune.py", ["--tracking-uri", UNREACHABLE], "unreachable"),
    ("experiments/evaluate.py", ["--tracking-uri", UNREACHABLE, "--run-id", RUN], "unreachable"),
    ("experiments/benchmark.py", ["--tracking-uri", UNREACHABLE, "--steps", "2", "--repeats", "1",
                                  "--eval-samples", "0"], "unreachable"),
    ("analysis/latent_effects.py", ["--tracking-uri", UNREACHABLE, "--run-id", RUN], "unreachable"),
    ("analysis/compare_runs.py", ["--tracking-uri", UNREACHABLE, "--run-ids", RUN], "unreachable"),
    ("analysis/report.py", ["--tracking-uri", UNREACHABLE, "--out", "never.html"], "unreachable"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory, repo_root, data_dir):
    """A store with a finished small training run and a one-trial tuning study (its parent run)."""
    store_dir = tmp_path_factory.mktemp("bad-input")
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    trained = run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--train-images", "640", "--epochs",
                        "2", "--eval-every", "0")
    assert trained.returncode == 0, trained.stderr
    tuned = run_script([sys.executable, "experiments/tune.py", "--tracking-uri", store_uri, "--storage",
                        f"sqlite:///{store_dir}/optuna.db", "--data-dir", str(data_dir), "--arch", "mlp-small",
                        "--trials", "1", "--epochs-per-trial", "1", "--train-images", "640", "--eval-samples",
                        "300", "--confirm-seeds", "1", "--study-name", "s", "--no-progress"],
                       cwd=repo_root, timeout=600)
    assert tuned.returncode == 0, tuned.stderr
    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
    (training_run,) = [run for run in client.search_runs([experiment_id], "tags.`ganlab.kind` = 'train'")
                       if "ganlab.role" not in run.data.tags]
    (study_run,) = client.search_runs([experiment_id], "tags.`ganlab.kind` = 'tune'")
    return store_dir, store_uri, training_run.info.run_id, study_run.info.run_id


def script_command(script: str, arguments: list[str], store_dir: Path, store_uri: str, data_dir: Path) -> list[str]:
    command = [sys.executable, script, *arguments]
    if "--tracking-uri" not in arguments:
        command += ["--tracking-uri", store_uri]
    if script in ("experiments/tune.py", "analysis/replay_pruners.py", "experiments/compare_settings.py"):
        command += ["--storage", f"sqlite:///{store_dir}/optuna.db"]
    if script not in ("analysis/compare_runs.py", "analysis/replay_pruners.py", "analysis/report.py",
                      "analysis/latent_effects.py"):
        command += ["--data-dir", str(data_dir)]
    return command


@pytest.mark.parametrize("script, arguments, fragment", CASES,
                         ids=[f"{script.split('/')[1]}:{' '.join(arguments).replace(UNREACHABLE, 'UNREACHABLE')[:40]}"
                              for script, arguments, _ in CASES])  # the same ids in every xdist worker
def test_bad_input_is_one_line_and_a_nonzero_exit(repo_root, data_dir, store, script, arguments, fragment):
    store_dir, store_uri, run_id, study_run_id = store
    arguments = [run_id if argument == RUN else study_run_id if argument == STUDY_RUN else argument
                 for argument in arguments]
    result = run_script(script_command(script, arguments, store_dir, store_uri, data_dir), cwd=repo_root,
                        timeout=300)
    assert_one_line_error(result, fragment)


def copy_store_with_unfinished_run(store, repo_root, data_dir, tmp_path):
    """A fresh store holding one KILLED run with a checkpoint (a run that --resume would continue)."""
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--train-images", "640", "--epochs", "2",
                       "--eval-every", "0")
    assert result.returncode == 0, result.stderr
    client = MlflowClient(store_uri)
    run = only_run(client)
    client.set_terminated(run.info.run_id, "KILLED")
    return store_uri, client, run.info.run_id, tmp_path / "artifacts" / run.info.run_id / "artifacts"


@pytest.mark.parametrize("damage, fragment", [
    ("truncate the checkpoint's tensors", "does not match its sha256"),
    ("truncate the checkpoint's manifest", "cannot read checkpoint manifest"),
    ("truncate the model's weights", "has no readable generator"),
])
def test_damaged_files_are_one_line_errors_and_stay_as_they_were(repo_root, data_dir, store, tmp_path, damage,
                                                                  fragment):
    store_uri, client, run_id, artifacts = copy_store_with_unfinished_run(store, repo_root, data_dir, tmp_path)
    manifest = artifacts / "checkpoint" / "checkpoint.json"
    target = {"truncate the checkpoint's tensors": artifacts / "checkpoint" / checkpoint.checkpoint_files(
                  artifacts / "checkpoint")[0].name,
              "truncate the checkpoint's manifest": manifest,
              "truncate the model's weights": artifacts / "model" / "generator.safetensors"}[damage]
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    damaged = target.read_bytes()
    if "model" in damage:
        command = [sys.executable, "experiments/evaluate.py", "--run-id", run_id, "--samples", "10"]
    else:
        command = [sys.executable, "experiments/train.py", "--resume", run_id]
    result = run_script([*command, "--tracking-uri", store_uri, "--data-dir", str(data_dir)], cwd=repo_root,
                        timeout=300)
    assert_one_line_error(result, fragment)
    assert target.read_bytes() == damaged  # nothing rewrote or removed the evidence
    assert client.get_run(run_id).info.status == "KILLED"


def mount_tmpfs(mount_point: Path, size: str) -> None:
    """A small tmpfs (a small disk) at `mount_point`; the test is skipped where this user cannot mount."""
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a tmpfs")


@pytest.fixture
def mounts(tmp_path):
    """Mount points under tmp_path, unmounted after the test."""
    yield tmp_path
    for mount_point in tmp_path.iterdir():
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_read_only_store_is_a_one_line_error(repo_root, data_dir, mounts):
    store_dir = mounts / "read-only"
    mount_tmpfs(store_dir, "32m")
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    assert run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--train-images", "640", "--max-steps",
                     "3", "--eval-every", "0").returncode == 0
    before = (store_dir / "mlflow.db").read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(store_dir)], check=True)
    result = run_train(repo_root, store_uri, data_dir, "--arch", "mlp-small", "--max-steps", "3")
    assert_one_line_error(result, "tracking store")
    assert (store_dir / "mlflow.db").read_bytes() == before


def test_a_full_disk_is_a_one_line_error_and_keeps_what_was_written(repo_root, data_dir, mounts):
    """The store fits on a 6 MB disk, the mlp's first checkpoint (~13 MB) does not."""
    store_dir = mounts / "full"
    mount_tmpfs(store_dir, "6m")
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    result = run_train(repo_root, store_uri, data_dir, "--arch", "mlp", "--train-images", "640", "--epochs", "2",
                       "--eval-every", "0")
    assert_one_line_error(result, "cannot write the checkpoint", "No space left on device")
    client = MlflowClient(store_uri)
    run = only_run(client)
    assert run.info.status == "FAILED"
    assert [metric.step for metric in client.get_metric_history(run.info.run_id, "loss_g")] == list(range(1, 11))
    assert not list((store_dir / "artifacts").rglob("*.tmp"))  # the partial file was removed
