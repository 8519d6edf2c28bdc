"""torchrun data parallelism on two CPU processes (gloo): the same run as one process, tracked once, resumable."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from helpers import final_weights, only_run, run_train, step_history, train_command, wait_for_checkpoint

# mlp-small has no BatchNorm, so two ranks of 32 images take the steps of one process of 64: the same images,
# latents and averaged gradients, equal up to float summation order. (With BatchNorm each rank normalises its
# own 32.) Adam amplifies that rounding where gradients are tiny (3.5e-5 after 20 steps, against up to 4e-3 of
# movement), so the comparison with one process is one epoch long with a tolerance of 1e-4. That holds in fp32:
# bf16 autocast (what `--precision auto` picks on an AMX CPU) rounds each rank's half-batch products to 8 bits of
# mantissa, which no tolerance tied to summation order covers, so these runs pin fp32.
SMALL_RUN = ["--arch", "mlp-small", "--train-images", "1280", "--batch-size", "64", "--seed", "5",
             "--eval-every", "0", "--precision", "fp32"]
LONG_RUN_EPOCHS = 15  # 300 steps: long enough to interrupt mid-run


def torchrun_command(store_uri: str, data_dir, *arguments: str) -> list[str]:
    """train.py under torchrun with two local CPU processes."""
    command = train_command(store_uri, data_dir, *arguments)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *command[1:]]


def run_torchrun(repo_root, store_uri: str, data_dir, *arguments: str):
    return subprocess.run(torchrun_command(store_uri, data_dir, *arguments), cwd=repo_root, capture_output=True,
                          text=True, timeout=300)


def trained(store_dir: Path, result):
    """(client, run id, final weights) of the only run in the store of a finished training command."""
    assert result.returncode == 0, result.stderr
    client = MlflowClient(f"sqlite:///{store_dir}/mlflow.db")
    run_id = only_run(client).info.run_id
    return client, run_id, final_weights(client, run_id, store_dir / "download")


def test_two_processes_train_one_run_equal_to_one_process(repo_root, data_dir, tmp_path):
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_process = trained(one_dir, run_train(repo_root, f"sqlite:///{one_dir}/mlflow.db", data_dir, *SMALL_RUN,
                                             "--epochs", "1"))
    torchrun_result = run_torchrun(repo_root, f"sqlite:///{two_dir}/mlflow.db", data_dir, *SMALL_RUN, "--epochs", "1")
    client, run_id, weights = trained(two_dir, torchrun_result)
    assert torchrun_result.stdout.count("finished in") == 1  # rank 0 alone reports

    run = only_run(client)  # rank 1 created no run
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    one_client, one_run_id, one_weights = one_process
    assert weights.keys() == one_weights.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, one_weights[name], rtol=0, atol=1e-4, msg=name)
    # Rank 0 logs the mean over the ranks: the whole batch's numbers, step for step.
    for name in ("loss_g", "loss_d", "d_real", "d_fake"):
        logged, expected = step_history(client, run_id, name), step_history(one_client, one_run_id, name)
        assert [step for step, _ in logged] == [step for step, _ in expected] == list(range(1, 21))
        assert [value for _, value in logged] == pytest.approx([value for _, value in expected], abs=1e-4)


def test_sigterm_to_torchrun_checkpoints_and_resumes_to_the_same_weights(repo_root, data_dir, tmp_path):
    long_run = [*SMALL_RUN, "--epochs", str(LONG_RUN_EPOCHS)]
    reference_dir, store_dir = tmp_path / "reference", tmp_path / "interrupted"
    _, _, reference_weights = trained(reference_dir, run_torchrun(
        repo_root, f"sqlite:///{reference_dir}/mlflow.db", data_dir, *long_run))

    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    process = subprocess.Popen(torchrun_command(store_uri, data_dir, *long_run), cwd=repo_root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(store_dir, process, epoch=2)
    process.send_signal(signal.SIGTERM)  # torchrun passes it to both ranks
    process.communicate(timeout=120)
    assert process.returncode != 0
    client = MlflowClient(store_uri)
    run_id = only_run(client).info.run_id
    assert client.get_run(run_id).info.status == "KILLED"

    client, resumed_run_id, weights = trained(store_dir, run_torchrun(repo_root, store_uri, data_dir,
                                                                      "--resume", run_id))
    assert resumed_run_id == run_id and client.get_run(run_id).info.status == "FINISHED"
    for name, tensor in weights.items():
        assert torch.equal(tensor, reference_weights[name]), name
    assert [step for step, _ in step_history(client, run_id, "loss_g")] == list(range(1, 20 * LONG_RUN_EPOCHS + 1))
