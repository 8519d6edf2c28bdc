"""ganlab on a CUDA GPU: training, resume, evaluation, the latent study and tuning, each as the user's own script.

Every test here is marked `gpu` and skipped without CUDA; `pytest -m gpu` (or experiments/gpu_check.py, which runs
them with the benchmarks) runs them where there is one. On the CPU in CI they are collected and skipped."""

import json
import signal
import subprocess
import sys

import pytest
import torch
from mlflow import MlflowClient

from helpers import SMALL_STUDY, final_weights, only_run, run_script, run_train, train_command, wait_for_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SMALL_RUN = ["--arch", "mlp-small", "--train-images", "1280", "--epochs", "6", "--eval-every", "0", "--seed", "3"]


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory, repo_root, data_dir):
    """A short mlp-small run on the GPU, evaluated once."""
    store_uri = f"sqlite:///{tmp_path_factory.mktemp('cuda-run')}/mlflow.db"
    result = run_train(repo_root, store_uri, data_dir, "--device", "cuda", "--arch", "mlp-small", "--train-images",
                       "6400", "--epochs", "2", "--eval-samples", "2000")
    assert result.returncode == 0, result.stderr
    return store_uri, only_run(MlflowClient(store_uri))


def test_a_cuda_run_trains_on_the_gpu_and_logs_like_a_cpu_run(cuda_run):
    store_uri, run = cuda_run
    assert run.info.status == "FINISHED" and run.data.params["device_resolved"].startswith("cuda")
    assert torch.cuda.get_device_name() in run.data.params["machine"]
    client = MlflowClient(store_uri)
    assert len(client.get_metric_history(run.info.run_id, "loss_g")) == 200  # 2 epochs of 100 steps, every step
    assert 0 < run.data.metrics["fid"] < 1000


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_interrupted_cuda_run_resumes_to_the_uninterrupted_weights(repo_root, data_dir, tmp_path, precision):
    arguments = [*SMALL_RUN, "--device", "cuda", "--precision", precision]
    reference_store = f"sqlite:///{tmp_path}/reference/mlflow.db"
    assert run_train(repo_root, reference_store, data_dir, *arguments).returncode == 0
    reference_client = MlflowClient(reference_store)

    store_dir = tmp_path / "interrupted"
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    process = subprocess.Popen(train_command(store_uri, data_dir, *arguments), cwd=repo_root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_checkpoint(store_dir, process, epoch=2)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    client = MlflowClient(store_uri)
    run_id = only_run(client).info.run_id
    resumed = run_train(repo_root, store_uri, data_dir, "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr

    weights = final_weights(client, run_id, tmp_path / "download")
    reference = final_weights(reference_client, only_run(reference_client).info.run_id, tmp_path / "reference-dl")
    for name, tensor in weights.items():  # cuBLAS may pick other kernels after a restart: equal to float tolerance
        torch.testing.assert_close(tensor, reference[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_cuda_checkpoint_resumes_on_the_cpu(repo_root, data_dir, tmp_path):
    store_dir = tmp_path / "store"
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    process = subprocess.Popen(train_command(store_uri, data_dir, *SMALL_RUN, "--device", "cuda"), cwd=repo_root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_checkpoint(store_dir, process, epoch=2)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    client = MlflowClient(store_uri)
    run_id = only_run(client).info.run_id
    resumed = run_train(repo_root, store_uri, data_dir, "--resume", run_id, "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr
    assert client.get_run(run_id).info.status == "FINISHED"


def test_evaluation_on_the_gpu_agrees_with_the_cpu(repo_root, data_dir, cuda_run):
    store_uri, run = cuda_run
    reports = {}
    for device in ("cuda", "cpu"):
        result = run_script([sys.executable, "experiments/evaluate.py", "--run-id", run.info.run_id, "--tracking-uri",
                             store_uri, "--data-dir", str(data_dir), "--samples", "2000", "--device", device, "--json",
                             "--no-progress"], cwd=repo_root)
        assert result.returncode == 0, result.stderr
        reports[device] = json.loads(result.stdout)["metrics"]
    assert reports["cuda"]["fid"] == pytest.approx(reports["cpu"]["fid"], rel=1e-3)
    assert reports["cuda"]["precision"] == pytest.approx(reports["cpu"]["precision"], abs=0.01)


def test_the_latent_study_runs_on_the_gpu(repo_root, cuda_run, tmp_path):
    store_uri, run = cuda_run
    result = run_script([sys.executable, "analysis/latent_effects.py", "--run-id", run.info.run_id, "--tracking-uri",
                         store_uri, "--device", "cuda", "--out", str(tmp_path / "study"), *SMALL_STUDY], cwd=repo_root)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "study" / "effects.csv").is_file() and (tmp_path / "study" / "perturbation_grid.png").is_file()


def test_a_tiny_study_tunes_on_the_gpu(repo_root, data_dir, tmp_path):
    result = run_script([sys.executable, "experiments/tune.py", "--device", "cuda", "--arch", "mlp-small", "--trials",
                         "2", "--epochs-per-trial", "2", "--train-images", "1280", "--eval-samples", "500",
                         "--confirm-seeds", "1", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage",
                         f"sqlite:///{tmp_path}/optuna.db", "--data-dir", str(data_dir), "--no-progress"],
                        cwd=repo_root, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "2 finished trials" in result.stdout


def test_the_cnn_trains_in_bf16_on_the_gpu(repo_root, data_dir, tmp_path):
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_train(repo_root, store_uri, data_dir, "--device", "cuda", "--arch", "cnn", "--precision", "bf16",
                       "--train-images", "6400", "--epochs", "1", "--eval-samples", "2000")
    assert result.returncode == 0, result.stderr
    run = only_run(MlflowClient(store_uri))
    assert run.data.params["precision_resolved"] == "bf16" and run.data.metrics["fid"] > 0


def test_the_cuda_graph_trains_the_same_steps_as_eager_steps(repo_root, data_dir, tmp_path):
    """100 steps replayed as one captured graph each, against the same 100 steps run eagerly."""
    histories = {}
    for flag in ("--cuda-graph", "--no-cuda-graph"):
        store_uri = f"sqlite:///{tmp_path}/{flag.strip('-')}/mlflow.db"
        result = run_train(repo_root, store_uri, data_dir, "--device", "cuda", "--arch", "mlp-small",
                           "--train-images", "6400", "--epochs", "1", "--eval-every", "0", "--seed", "7",
                           "--instance-noise", "0.05", flag)
        assert result.returncode == 0, result.stderr
        assert "no CUDA graph" not in result.stderr
        client = MlflowClient(store_uri)
        run_id = only_run(client).info.run_id
        histories[flag] = torch.tensor([[metric.value for metric in sorted(
            client.get_metric_history(run_id, name), key=lambda metric: metric.step)] for name in ("loss_g", "loss_d")])
    assert histories["--cuda-graph"].shape == (2, 100)
    torch.testing.assert_close(histories["--cuda-graph"], histories["--no-cuda-graph"], rtol=1e-3, atol=1e-4)


def test_a_run_the_graph_cannot_take_steps_eagerly_and_says_so(repo_root, data_dir, tmp_path):
    result = run_train(repo_root, f"sqlite:///{tmp_path}/mlflow.db", data_dir, "--device", "cuda", "--arch",
                       "mlp-small", "--train-images", "1280", "--epochs", "1", "--eval-every", "0",
                       "--d-update-every", "2")
    assert result.returncode == 0, result.stderr
    assert "note: no CUDA graph (D is updated every 2 steps" in result.stderr
