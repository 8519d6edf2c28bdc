"""The generator as an MLflow Model: logged by a real training run, registered with `champion`, loaded by URI in
the scripts and by `mlflow.pyfunc` elsewhere, served over real HTTP, shown by the real MLflow UI in Chromium."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.models import Model
from safetensors import safe_open

from ganlab import model_registry, tracking
from ganlab.errors import GanlabError
from helpers import SMALL_STUDY, assert_one_line_error, chromium_driver, free_port, only_run, run_script, serving

MODEL_NAME = "fashion-gan"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt", ".bin"}


@pytest.fixture(scope="module")
def registered(tmp_path_factory, repo_root, data_dir):
    """One small finished mlp run with metrics, registered as fashion-gan (so its version 1 is the champion); its
    system metrics (on by default) sampled every second."""
    store_dir = tmp_path_factory.mktemp("registry")
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    result = run_script(
        [sys.executable, "experiments/train.py", "--no-progress", "--tracking-uri", store_uri, "--data-dir",
         str(data_dir), "--arch", "mlp", "--train-images", "640", "--max-steps", "20", "--eval-every", "1",
         "--eval-samples", "500", "--register-model", MODEL_NAME],
        cwd=repo_root, timeout=600,
        env={**os.environ, "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"})
    assert result.returncode == 0, result.stderr
    client = MlflowClient(store_uri)
    run_id = only_run(client).info.run_id
    return store_dir, store_uri, client, run_id, result.stdout


def latents(count: int, seed: int = 7) -> np.ndarray:
    return torch.randn(count, 100, generator=torch.Generator().manual_seed(seed)).numpy()


def torch_images(store_uri: str, run_id: str, latent_batch: np.ndarray) -> np.ndarray:
    """What the run's generator makes of the latents, rebuilt by ganlab from the run's model/ files."""
    with torch.no_grad():
        return tracking.load_generator(run_id, store_uri)(torch.from_numpy(latent_batch)).numpy()


def test_a_finished_run_logs_its_generator_as_an_mlflow_model_with_signature_metrics_and_datasets(registered):
    store_dir, store_uri, client, run_id, stdout = registered
    run = client.get_run(run_id)
    (output,) = run.outputs.model_outputs
    assert output.step == 2  # the last epoch
    model = client.get_logged_model(output.model_id)
    assert model.name == "generator" and model.status.name == "READY" and model.source_run_id == run_id
    assert model.tags["ganlab.format"] == "ganlab-generator-v1" and model.tags["eval.samples"] == "500"
    assert model.tags["eval.feature_space"] == "fmnist-cnn-v1"
    model_metrics = {metric.key: metric for metric in model.metrics}
    assert model_metrics["fid"].value == pytest.approx(run.data.metrics["fid"]) and model_metrics["fid"].step == 2
    assert model_metrics["fid"].dataset_name == "fashion-mnist-test-10k"
    # Attaching the metrics to the model does not add points to the run's own curves.
    assert [metric.step for metric in client.get_metric_history(run_id, "fid")] == [1, 2]

    model_dir = Path(model.artifact_location)
    assert model_dir.is_relative_to(store_dir / "artifacts") and "models" in model_dir.parts
    mlmodel = Model.load(str(model_dir))
    (latent_spec,), (image_spec,) = mlmodel.signature.inputs.inputs, mlmodel.signature.outputs.inputs
    assert (latent_spec.type, latent_spec.shape) == (np.dtype("float32"), (-1, 100))
    assert (image_spec.type, image_spec.shape) == (np.dtype("float32"), (-1, 1, 28, 28))
    pyfunc = mlmodel.flavors["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in pyfunc
    assert mlmodel.saved_input_example_info["type"] == "ndarray"
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements and len(requirements) == 4
    assert (model_dir / "code" / "ganlab" / "models" / "mlp.py").is_file()
    assert f"runs:/{run_id}/generator" in stdout and "registered as models:/fashion-gan/1" in stdout

    inputs = {dataset_input.dataset.name: dataset_input for dataset_input in run.inputs.dataset_inputs}
    assert set(inputs) == {"fashion-mnist-train-first-640", "fashion-mnist-test-10k"}
    train_set = inputs["fashion-mnist-train-first-640"]
    assert train_set.dataset.digest == "f4a8712d7a061bf5bd6d2ca38dc4d50a"  # the images file's MD5
    assert json.loads(train_set.dataset.profile)["shape"] == [640, 28, 28]
    assert json.loads(train_set.dataset.source)["uri"].endswith("FashionMNIST/raw/train-images-idx3-ubyte")
    assert [tag.value for tag in train_set.tags] == ["training"]
    assert json.loads(inputs["fashion-mnist-test-10k"].dataset.profile)["images"] == 10_000
    assert "system/cpu_utilization_percentage" in run.data.metrics  # --system-metrics is on by default


def test_no_file_under_any_model_directory_is_a_pickle(registered):
    """Every file of the logged model and of the run's model/ folder is safetensors (parsed) or UTF-8 text."""
    store_dir, store_uri, client, run_id, _ = registered
    model_dirs = [*(store_dir / "artifacts").glob("models/m-*"), tracking.local_artifact_dir(client, run_id) / "model"]
    files = [path for folder in model_dirs for path in folder.rglob("*") if path.is_file()]
    assert len(model_dirs) == 2 and len(files) > 10
    for path in files:
        assert path.suffix not in PICKLE_SUFFIXES, path
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as weights:
                assert list(weights.keys()), path
        else:
            path.read_bytes().decode("utf-8")  # not a binary format (pickle streams start with b"\x80")


def test_pyfunc_loads_the_champion_without_ganlab_installed_and_matches_torch_exactly(registered, repo_root, tmp_path):
    """Another project's view: a fresh process loads models:/fashion-gan@champion; the ganlab code it runs is the
    copy inside the model, not an installed ganlab."""
    _, store_uri, _, run_id, _ = registered
    latent_batch = latents(5)
    np.save(tmp_path / "latents.npy", latent_batch)
    script = ("import sys, mlflow, numpy as np\n"
              "mlflow.set_tracking_uri(sys.argv[1])\n"
              f"model = mlflow.pyfunc.load_model('{CHAMPION_URI}')\n"
              "np.save('images.npy', model.predict(np.load('latents.npy')))\n"
              "import ganlab; print(ganlab.__file__)\n")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script, store_uri], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("code/ganlab/__init__.py") and str(repo_root) not in result.stdout
    images = np.load(tmp_path / "images.npy")
    assert images.shape == (5, 1, 28, 28) and images.dtype == np.float32
    np.testing.assert_array_equal(images, torch_images(store_uri, run_id, latent_batch))


def test_champion_moves_only_to_a_lower_fid_under_the_same_protocol(registered):
    """A registry seeded with a champion that is better, worse, or measured another way, then the run registered."""
    _, _, client, run_id, _ = registered
    model = model_registry.logged_generator(client, run_id)
    fid = next(metric.value for metric in model.metrics if metric.key == "fid")
    protocol = {key: value for key, value in model.tags.items() if key.startswith("eval.")}

    def seeded_registry(name: str, champion_fid: float, champion_protocol: dict[str, str]) -> None:
        client.create_registered_model(name)
        version = client.create_model_version(name, source=model.artifact_location, run_id=run_id,
                                              tags={**champion_protocol, "fid": repr(champion_fid)})
        client.set_registered_model_alias(name, "champion", version.version)

    seeded_registry("better-champion", fid - 1, protocol)
    seeded_registry("worse-champion", fid + 1, protocol)
    seeded_registry("other-protocol", fid + 50, {**protocol, "eval.samples": "10000"})
    kept = model_registry.register_generator(client, run_id, "better-champion")
    moved = model_registry.register_generator(client, run_id, "worse-champion")
    other = model_registry.register_generator(client, run_id, "other-protocol")
    assert (kept.version, kept.champion_version) == ("2", "1") and "is not below" in kept.reason
    assert (moved.version, moved.champion_version) == ("2", "2") and f"< {fid + 1:.3f}" in moved.reason
    assert (other.version, other.champion_version) == ("2", "1") and "another protocol" in other.reason
    assert str(client.get_model_version_by_alias("worse-champion", "champion").version) == "2"
    assert client.get_model_version("worse-champion", "2").tags["eval.samples"] == "500"
    # Registering the same run again reuses its version instead of adding one.
    assert model_registry.register_generator(client, run_id, "worse-champion").version == "2"
    assert len(client.search_model_versions("name = 'worse-champion'")) == 2


def test_latent_effects_and_evaluate_take_the_champion_by_model_uri(registered, repo_root, data_dir):
    _, store_uri, client, run_id, _ = registered
    study = run_script([sys.executable, "analysis/latent_effects.py", "--model-uri", CHAMPION_URI,
                        "--tracking-uri", store_uri, *SMALL_STUDY], cwd=repo_root, timeout=600)
    assert study.returncode == 0, study.stderr
    assert f"latent study of {CHAMPION_URI} (run {run_id})" in study.stdout
    (analysis,) = client.search_runs([client.get_run(run_id).info.experiment_id],
                                     "tags.`ganlab.kind` = 'latent-analysis'")
    assert analysis.data.tags["ganlab.source_run_id"] == run_id
    assert analysis.data.params["source_model_uri"] == CHAMPION_URI

    evaluation = run_script([sys.executable, "experiments/evaluate.py", "--model-uri", f"models:/{MODEL_NAME}/1",
                             "--tracking-uri", store_uri, "--data-dir", str(data_dir), "--samples", "200",
                             "--json"], cwd=repo_root, timeout=300)
    assert evaluation.returncode == 0, evaluation.stderr
    report = json.loads(evaluation.stdout)
    assert report["run_id"] == run_id and report["protocol"]["eval.samples"] == "200"


@pytest.mark.parametrize("model_uri, fragment", [
    ("models:/no-such-model@champion", "no registered model named 'no-such-model'"),
    ("models:/fashion-gan@nope", "model 'fashion-gan' has no alias 'nope'"),
    ("models:/fashion-gan/99", "model 'fashion-gan' has no version 99"),
    ("models:/m-0123abcd", "m-0123abcd"),
    ("s3://bucket/generator", "is not a model URI"),
    ("models:/fashion-gan", "is not understood"),
])
def test_a_bad_model_uri_is_named_in_one_clear_error(registered, model_uri, fragment):
    _, _, client, _, _ = registered
    with pytest.raises(GanlabError) as raised:
        model_registry.open_generator(client, model_uri=model_uri)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_a_bad_model_uri_is_a_one_line_error_in_the_scripts(registered, repo_root, data_dir):
    _, store_uri, _, _, _ = registered
    result = run_script([sys.executable, "analysis/compare_runs.py", "--model-uris",
                         f"{CHAMPION_URI},models:/fashion-gan@nope", "--tracking-uri", store_uri],
                        cwd=repo_root, timeout=300)
    assert_one_line_error(result, "model 'fashion-gan' has no alias 'nope'")


def test_a_registry_name_that_would_break_a_model_uri_is_refused_before_training():
    from ganlab.train import TrainConfig
    from ganlab.tuning import TuneConfig

    for name in ("fashion/gan", "fashion@gan", "", "-gan"):
        with pytest.raises(GanlabError, match="--register-model"):
            TrainConfig(register_model=name).validate()
    with pytest.raises(GanlabError, match="add --retrain-best"):
        TuneConfig(register_model="fashion-gan").validate()


@pytest.fixture(scope="module")
def generator_server(registered, repo_root, tmp_path_factory):
    """`make serve MODEL=models:/fashion-gan@champion` on a free loopback port, for the whole module."""
    _, store_uri, _, _, _ = registered
    port = free_port()
    venv = Path(sys.executable).parent.parent
    # -o: take the venv as installed (CI's `make test` has just installed it); only the serve recipe runs.
    command = ["make", "--no-print-directory", "-o", f"{venv}/bin/.installed", "serve", f"VENV={venv}",
               f"MODEL={CHAMPION_URI}", f"STORE={store_uri}", f"SERVE_PORT={port}"]
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with serving(command, f"http://127.0.0.1:{port}/ping", log_path, cwd=repo_root):
        yield f"http://127.0.0.1:{port}/invocations"


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_served_generator_answers_a_batch_of_latents_with_the_torch_images(registered, generator_server):
    _, store_uri, _, run_id, _ = registered
    latent_batch = latents(3)
    status, answer = post(generator_server, json.dumps({"inputs": latent_batch.tolist()}).encode())
    assert status == 200, answer
    images = np.array(answer["predictions"], dtype=np.float32)
    assert images.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(images, torch_images(store_uri, run_id, latent_batch), atol=1e-6)


@pytest.mark.parametrize("body, fragment", [
    (json.dumps({"inputs": [[0.5] * 99]}).encode(), "does not match expected shape (-1, 100)"),  # wrong shape
    (json.dumps({"inputs": [["a"] * 100]}).encode(), "could not convert string to float"),  # wrong dtype
    (b"", "valid JSON"),  # empty body
])
def test_the_served_generator_refuses_bad_input_with_a_400(generator_server, body, fragment):
    status, answer = post(generator_server, body)
    assert status == 400 and fragment in answer["message"], answer


def test_the_mlflow_ui_shows_the_registered_model_its_signature_and_champion(registered, tmp_path):
    """The real `mlflow server` over the test store; the version page in headless Chromium, schema unfolded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, store_uri, _, _, _ = registered
    driver = chromium_driver()
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", store_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    screenshot = tmp_path / "model-version.png"
    try:
        with serving(command, f"http://127.0.0.1:{port}/health", tmp_path / "ui.log"):
            driver.get(f"http://127.0.0.1:{port}/#/models/{MODEL_NAME}/versions/1")
            for label in ("Inputs (1)", "Outputs (1)"):  # the schema's two folds
                WebDriverWait(driver, 120).until(
                    lambda page: page.find_element(By.XPATH, f"//*[normalize-space(text())='{label}']")).click()
            WebDriverWait(driver, 60).until(lambda page: "[-1,1,28,28]" in page.find_element(By.TAG_NAME, "body").text)
            text = driver.find_element(By.TAG_NAME, "body").text
            assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert "Registered Models" in text and MODEL_NAME in text and "Version 1" in text and "champion" in text
    assert "Tensor (dtype: float32, shape: [-1,100])" in text and "Tensor (dtype: float32, shape: [-1,1,28,28])" in text
    assert "fmnist-cnn-v1" in text  # the protocol tags beside the FID
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000
