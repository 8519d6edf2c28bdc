"""The latent explorer as a person uses it: analysis/explore.py started on a real tiny run with a real latent study,
the page driven in headless Chromium, the saved exploration read back from MLflow, bad requests refused."""

import csv
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from mlflow import MlflowClient

from helpers import SMALL_STUDY, artifact_paths, assert_one_line_error, chromium_driver, run_script, run_train

from ganlab import explorer, explorer_server
from ganlab.latent import base_latents

URL_LINE = re.compile(r"at (http://127\.0\.0\.1:\d+/)")
END, HOME = "\ue010", "\ue011"  # WebDriver's key codes (selenium's Keys.END, Keys.HOME): a range input's ends


@pytest.fixture(scope="module")
def studied_run(tmp_path_factory, repo_root, data_dir):
    """A tiny trained mlp run and a tiny latent study of it, in a fresh store."""
    store_uri = f"sqlite:///{tmp_path_factory.mktemp('explorer')}/mlflow.db"
    trained = run_train(repo_root, store_uri, data_dir, "--arch", "mlp", "--train-images", "640", "--max-steps", "20",
                        "--eval-every", "0")
    assert trained.returncode == 0, trained.stderr
    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
    (run,) = client.search_runs([experiment_id])
    study = run_script([sys.executable, "analysis/latent_effects.py", "--run-id", run.info.run_id,
                        "--tracking-uri", store_uri, *SMALL_STUDY], cwd=repo_root, timeout=600)
    assert study.returncode == 0, study.stderr
    (study_run,) = client.search_runs([experiment_id], "tags.`ganlab.kind` = 'latent-analysis'")
    return store_uri, run.info.run_id, study_run.info.run_id


@pytest.fixture(scope="module")
def server(studied_run, repo_root):
    """analysis/explore.py as a user starts it; yields (url, process). The last test stops it with Ctrl-C."""
    store_uri, run_id, _ = studied_run
    process = subprocess.Popen([sys.executable, "analysis/explore.py", "--run-id", run_id, "--tracking-uri", store_uri],
                               cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_line = process.stdout.readline()  # printed once the server listens
    match = URL_LINE.search(first_line)
    assert match, (first_line, process.stderr.read() if process.poll() is not None else "")
    yield match.group(1), process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    driver = chromium_driver()
    yield driver
    driver.quit()


def study_effect(client: MlflowClient, study_run_id: str, family: str, index: int, mode: str, amount: float) -> dict:
    """One row of the study's effects.csv, as logged."""
    text = client.download_artifacts(study_run_id, "effects.csv")
    with open(text) as handle:
        return next(row for row in csv.DictReader(handle) if (row["family"], int(row["index"]), row["mode"],
                                                              float(row["amount"])) == (family, index, mode, amount))


def wait_rendered(driver, image_id: str, more_than: int) -> int:
    """Wait until the <img> has shown more than `more_than` answers and has no request in flight."""
    image = driver.find_element("id", image_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        renders = int(image.get_attribute("data-renders"))
        if renders > more_than and image.get_attribute("data-pending") == "0":
            return renders
        time.sleep(0.05)
    raise AssertionError(f"#{image_id} did not render: {driver.find_element('id', 'render-status').text}")


def shown_pixels(driver, image_id: str) -> np.ndarray:
    """The grey values of the image as the browser decoded and shows it."""
    values = driver.execute_script("""
        const image = document.getElementById(arguments[0]);
        const canvas = document.createElement("canvas");
        [canvas.width, canvas.height] = [image.naturalWidth, image.naturalHeight];
        const context = canvas.getContext("2d");
        context.drawImage(image, 0, 0);
        const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
        return [canvas.width, canvas.height, Array.from(rgba.filter((_, index) => index % 4 === 0))];""", image_id)
    width, height, grey = values
    return np.array(grey, dtype=np.float64).reshape(height, width)


def post(url: str, path: str, body: bytes | str, content_type: str = "application/json"):
    """(status, content type, body) of a POST; HTTP errors are answers here, not exceptions."""
    data = body.encode() if isinstance(body, str) else body
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data, {"Content-Type": content_type}),
                                    timeout=60) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_the_page_loads_offline_and_a_slider_move_changes_the_images(server, browser, tmp_path):
    url, _ = server
    browser.get(url)
    first = wait_rendered(browser, "grid", 0)
    before = shown_pixels(browser, "grid")
    assert before.shape == (32, 242)  # one row of 8 images of 28 pixels, 2-pixel padding
    slider = browser.find_element("css selector", '[data-key="dim 10"] input[type=range]')
    slider.send_keys(END)  # the keyboard's way to drag to the end: +10
    wait_rendered(browser, "grid", first)
    after = shown_pixels(browser, "grid")
    assert np.abs(after - before).mean() > 0.5, "moving z[10] to +10 left the images unchanged"
    assert browser.find_element("css selector", '[data-key="dim 10"] input.amount').get_attribute("value") == "10"
    assert "images from the server's G in" in browser.find_element("id", "render-status").text
    # Nothing came from elsewhere, and nothing failed.
    origins = browser.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
    assert origins and all(name.startswith(url) or name.startswith("blob:") for name in origins), origins
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
    assert browser.save_screenshot(str(tmp_path / "explorer.png"))
    assert (tmp_path / "explorer.png").stat().st_size > 10_000


def test_the_measured_effect_sits_beside_its_slider(server, browser, studied_run):
    store_uri, _, study_run_id = studied_run
    url, _ = server
    browser.get(url)
    wait_rendered(browser, "grid", 0)
    browser.find_element("css selector", '[data-key="dim 10"] input[type=range]').send_keys(END)
    effect = browser.find_element("css selector", '[data-key="dim 10"] .effect')
    assert effect.text.startswith("at this value: +10 (64 samples)"), effect.text
    measured = study_effect(MlflowClient(store_uri), study_run_id, "dim", 10, "offset", 10.0)
    shown_flip = float(effect.find_element("css selector", ".flip").text.rstrip("%"))
    assert abs(shown_flip - 100 * float(measured["flip_rate"])) <= 0.5 + 1e-9
    shifts = {name.removeprefix("shift."): float(value) for name, value in measured.items()
              if name.startswith("shift.")}
    largest = max(shifts, key=lambda name: abs(shifts[name]))
    assert effect.find_element("css selector", ".shift b").text == f"P({largest})"
    assert "random directions" in effect.text and "of 100 dims" in effect.text
    # A set value the study measured, by one click.
    browser.find_element("xpath", '//div[@data-key="dim 10"]//button[text()="= 100"]').click()
    assert effect.text.startswith("at this value: = 100"), effect.text
    assert f"latent study run {study_run_id}" in browser.find_element("id", "protocol").text


def test_save_logs_an_exploration_run_with_the_latent_batch(server, browser, studied_run):
    store_uri, run_id, study_run_id = studied_run
    url, _ = server
    browser.get(url)
    first = wait_rendered(browser, "grid", 0)
    browser.find_element("xpath", '//div[@data-key="dim 20"]//button[text()="= 100"]').click()
    browser.find_element("css selector", '[data-key="sefa 0"] input[type=range]').send_keys(HOME)  # −10
    wait_rendered(browser, "grid", first)
    browser.find_element("id", "save").click()
    status = browser.find_element("id", "save-status")
    deadline = time.monotonic() + 60
    while not status.get_attribute("data-run-id") and time.monotonic() < deadline:
        time.sleep(0.1)
    saved_id = status.get_attribute("data-run-id")
    assert saved_id, status.text

    client = MlflowClient(store_uri)
    saved = client.get_run(saved_id)
    assert saved.info.status == "FINISHED"
    assert saved.data.tags["ganlab.kind"] == "exploration" and saved.data.tags["ganlab.source_run_id"] == run_id
    assert saved.data.params["moves"] == "dim 20 = 100; sefa 0 −10"
    assert artifact_paths(client, saved_id) == {"latents.npy", "base_latents.npy", "grid.png", "interpolation.png",
                                                "settings.json"}
    latents = np.load(client.download_artifacts(saved_id, "latents.npy"), allow_pickle=False)
    base = np.load(client.download_artifacts(saved_id, "base_latents.npy"), allow_pickle=False)
    np.testing.assert_array_equal(base, base_latents(8, 100, 0).numpy())
    assert latents.shape == (8, 100) and (latents[:, 20] == 100).all()
    with open(client.download_artifacts(study_run_id, "directions.csv")) as handle:
        sefa_0 = next(np.array(row[2:], dtype=np.float64) for row in csv.reader(handle) if row[:2] == ["sefa", "0"])
    others = np.arange(100) != 20
    np.testing.assert_allclose(latents[:, others] - base[:, others],
                               np.tile(-10 * sefa_0[others] / np.linalg.norm(sefa_0), (8, 1)), atol=1e-4)
    with open(client.download_artifacts(saved_id, "settings.json")) as handle:
        settings = json.load(handle)
    assert settings["interpolation"] == {"from": 0, "to": 1, "steps": 8}
    assert settings["moves"] == [{"family": "dim", "index": 20, "mode": "set", "amount": 100.0},
                                 {"family": "sefa", "index": 0, "mode": "offset", "amount": -10.0}]
    np.testing.assert_allclose(settings["directions"]["sefa 0"], sefa_0 / np.linalg.norm(sefa_0), atol=1e-6)


@pytest.mark.parametrize("path, body, status, fragment", [
    ("api/render", '{"moves": [{"family": "dim", "index": 100, "amount": 1}]}', 400, "index 100 is out of range 0…99"),
    ("api/render", '{"moves": [{"family": "dim", "index": 3, "amount": 1001}]}', 400, "beyond ±1000"),
    ("api/render", '{"moves": [{"family": "dim", "index": 3, "amount": NaN}]}', 400, "finite number"),
    ("api/render", '{"moves": [{"family": "dim", "index": 3, "amount": 1', 400, "malformed JSON"),
    ("api/render", '{"samples": 65}', 400, "samples 65 is out of range 1…64"),
    ("api/render", '{"moves": [{"family": "stylegan", "index": 0, "amount": 1}]}', 400, "unknown direction family"),
    ("api/render", '{"moves": [{"family": "sefa", "index": 2, "amount": 1}]}', 400, "2 sefa directions"),
    ("api/render", '{"moves": [{"family": "sefa", "index": 0, "mode": "set", "amount": 1}]}', 400, "mode must be"),
    ("api/render", '{"base": "file"}', 400, "--z-file"),
    ("api/render", '[1, 2]', 400, "JSON object"),
    ("api/render", "{" * 50_000, 400, "malformed JSON"),
    ("api/render", " " * 70_000, 413, "Too Large"),
    ("api/interpolate", '{"from": 0, "to": 8}', 400, "to 8 is out of range 0…7"),
    ("api/interpolate", '{"from": 0, "to": 1, "steps": 1000}', 400, "steps 1000 is out of range 2…32"),
    ("api/save", '{"moves": [{"family": "dim", "index": -1, "amount": 1}]}', 400, "index -1 is out of range"),
    ("api/nothing", "{}", 404, "Not Found"),
])
def test_bad_requests_get_a_4xx_with_a_message(server, studied_run, path, body, status, fragment):
    url, _ = server
    answer_status, content_type, answer = post(url, path, body)
    assert (answer_status, content_type) == (status, "application/json"), answer
    assert fragment in json.loads(answer)["error"]
    if path == "api/save":
        client = MlflowClient(studied_run[0])
        experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
        assert all(run.info.status == "FINISHED" for run in client.search_runs(
            [experiment_id], "tags.`ganlab.kind` = 'exploration'"))  # a refused save opens no run


def test_the_page_and_its_answers_load_nothing_from_elsewhere(server):
    url, _ = server
    for path in ("", "static/explorer.js", "static/explorer.css"):
        with urllib.request.urlopen(url + path, timeout=30) as answer:
            text = answer.read().decode()
            assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path
    status, content_type, png = post(url, "api/render", '{"base": 7, "samples": 3}')
    assert (status, content_type) == (200, "image/png") and png.startswith(b"\x89PNG")


def test_without_a_study_the_page_says_how_to_make_one_and_computes_the_directions(studied_run, browser, tmp_path):
    """In-process: the same generator logged to a run that has no latent study, opened on a --z-file; GANSpace arrives
    in the background, and the benchmark times moves against the real server."""
    store_uri, run_id, _ = studied_run
    client = MlflowClient(store_uri)
    source_run = client.get_run(run_id)
    bare_id = client.create_run(source_run.info.experiment_id, run_name="no-study",
                                tags={"ganlab.kind": "train", "ganlab.arch": "mlp"}).info.run_id
    client.log_artifacts(bare_id, client.download_artifacts(run_id, "model", str(tmp_path)), "model")
    client.set_terminated(bare_id, "FINISHED")

    z_file = tmp_path / "z.npy"
    np.save(z_file, base_latents(5, 100, 123).numpy())

    source = explorer.load_source(run_id=bare_id, tracking_uri=store_uri, device="cpu")
    session = explorer.Explorer(source, explorer.ExplorerConfig(factor_directions=3, z_file=str(z_file)), "cpu")
    assert session.study is None
    assert session.study_line == f"no latent study yet: python analysis/latent_effects.py --run-id {bare_id}"
    with explorer_server.serving(explorer_server.create_app(session), "127.0.0.1", 0) as http_server:
        url = explorer_server.server_url(http_server)
        browser.get(url)
        wait_rendered(browser, "grid", 0)
        assert shown_pixels(browser, "grid").shape == (32, 5 * 30 + 2)  # the file's 5 latents
        assert session.study_line in browser.find_element("id", "study-line").text
        assert session.study_line in browser.find_element("css selector", '[data-key="dim 10"] .effect').text
        assert session.directions_ready.wait(timeout=120)
        deadline = time.monotonic() + 30  # the page asks again every 3 s
        while len(browser.find_elements("css selector", '[data-key^="ganspace "]')) < 3:
            assert time.monotonic() < deadline, browser.find_element("id", "ganspace-note").text
            time.sleep(0.2)
        assert len(browser.find_elements("css selector", '[data-key^="sefa "]')) == 3

        timing = explorer_server.measure_latency(session, url, moves=3, dim=10)
    assert 0 < timing["forward_ms"] < timing["move_ms"] and timing["samples"] == 8


def test_the_script_refuses_a_dim_out_of_range_in_one_line(studied_run, repo_root):
    store_uri, run_id, _ = studied_run
    result = run_script([sys.executable, "analysis/explore.py", "--run-id", run_id, "--tracking-uri", store_uri,
                         "--dims", "3,100"], cwd=repo_root, timeout=300)
    assert_one_line_error(result, "latent dim 100 is out of range")


def test_ctrl_c_stops_the_explorer_cleanly(server):
    url, process = server
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "explorer stopped" in stdout and "Traceback" not in stderr
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)
