"""analysis/compare_runs.py and analysis/report.py on real tiny runs; the report opened in headless Chromium."""

import csv
import json
import re
import sys

import pytest
from mlflow import MlflowClient

from helpers import SMALL_STUDY, artifact_paths, assert_one_line_error, chromium_driver, run_script, run_train

COMPARISON_FILES = {"losses.png", "d_outputs.png", "fid.png", "last_samples.png", "table.csv", "table.md"}


def run_lab_script(repo_root, script: str, *arguments: str):
    return run_script([sys.executable, script, *arguments], cwd=repo_root, timeout=600)


@pytest.fixture(scope="module")
def lab_store(tmp_path_factory, repo_root, data_dir):
    """A store holding what the report needs, tiny: mlp and mlp-small runs with metrics, a latent study."""
    store_dir = tmp_path_factory.mktemp("lab")
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    for arch, epochs in (("mlp-small", "2"), ("mlp", "1")):
        result = run_train(repo_root, store_uri, data_dir, "--arch", arch, "--train-images", "1280", "--epochs", epochs,
                           "--eval-every", "1", "--eval-samples", "500")
        assert result.returncode == 0, result.stderr
    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
    run_ids = {run.info.run_name: run.info.run_id for run in client.search_runs([experiment_id])}
    study = run_lab_script(repo_root, "analysis/latent_effects.py", "--run-id", run_ids["mlp-s0"], "--tracking-uri",
                           store_uri, *SMALL_STUDY)
    assert study.returncode == 0, study.stderr
    return store_uri, run_ids


def test_compare_runs_overlays_the_runs_and_logs_a_comparison_run(repo_root, lab_store, tmp_path):
    store_uri, run_ids = lab_store
    result = run_lab_script(repo_root, "analysis/compare_runs.py", "--run-ids", f"{run_ids['mlp-s0']},{run_ids['mlp-small-s0']}",
                            "--tracking-uri", store_uri, "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert {path.name for path in (tmp_path / "out").iterdir()} == COMPARISON_FILES
    with (tmp_path / "out" / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == ["mlp-s0", "mlp-small-s0"]
    assert all(float(row["fid"]) > 0 and row["eval.feature_space"] == "fmnist-cnn-v1" for row in rows)
    assert "| mlp-s0 |" in result.stdout and "fmnist-cnn-v1 feature space" in result.stdout

    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
    (comparison,) = client.search_runs([experiment_id], "tags.`ganlab.kind` = 'comparison'")
    assert comparison.info.status == "FINISHED"
    assert comparison.data.tags["ganlab.compared_runs"] == f"{run_ids['mlp-s0']},{run_ids['mlp-small-s0']}"
    assert artifact_paths(client, comparison.info.run_id) == COMPARISON_FILES


@pytest.mark.parametrize("arguments, fragment", [
    (["--experiment", "no-such-experiment"], "no MLflow experiment named 'no-such-experiment'"),
    (["--run-ids", "0123456789abcdef0123456789abcdef"], "0123456789abcdef0123456789abcdef"),
    (["--experiment", "x", "--smoothing", "0"], "--smoothing"),
])
def test_compare_runs_bad_input_is_a_one_line_error(repo_root, lab_store, arguments, fragment):
    store_uri, _ = lab_store
    assert_one_line_error(run_lab_script(repo_root, "analysis/compare_runs.py", "--tracking-uri", store_uri, *arguments),
                          fragment)


def test_compare_runs_refuses_a_run_that_is_not_training(repo_root, lab_store):
    store_uri, _ = lab_store
    client = MlflowClient(store_uri)
    experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
    (study,) = client.search_runs([experiment_id], "tags.`ganlab.kind` = 'latent-analysis'")
    result = run_lab_script(repo_root, "analysis/compare_runs.py", "--tracking-uri", store_uri, "--run-ids",
                            study.info.run_id)
    assert_one_line_error(result, "is not a ganlab training run")


def test_report_opens_in_chromium_with_every_image_decoded(repo_root, lab_store, tmp_path):
    store_uri, run_ids = lab_store
    report_path = tmp_path / "report.html"
    result = run_lab_script(repo_root, "analysis/report.py", "--experiment", "fashion-mnist-gan", "--tracking-uri",
                            store_uri, "--out", str(report_path))
    assert result.returncode == 0, result.stderr
    assert str(report_path) in result.stdout
    page = report_path.read_text()
    assert "http://" not in page.replace("http://127.0.0.1:5000", "") and "src=\"file:" not in page  # self-contained
    assert "BatchNorm1d(256, eps=0.8" in page and "fmnist-cnn-v1" in page
    for heading in ("1. The models: print(D) and print(G)", "2. Training", "3. Samples", "4. Eight images",
                    "5. The latent study", "The reports&#x27; claims, measured across generators",
                    "6. MLP vs CNN vs tuned CNN"):
        assert heading in page, heading
    assert page.index("Discriminator(") < page.index("Generator(")  # print(D) first, as the reports
    assert "D and G losses apart" in page
    # Every figure names the run it came from, or the committed file under results/ it was read from.
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, flags=re.S)
    assert len(captions) >= 15
    unsourced = [caption for caption in captions
                 if not (any(run_id[:8] in caption for run_id in run_ids.values()) or "latent" in caption.lower()
                         or "run " in caption or re.search(r"results/\S+\.png", caption))]
    assert not unsourced, unsourced

    driver = chromium_driver()
    try:
        driver.get(report_path.as_uri())
        sizes = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            Promise.all(Array.from(document.images).map(image => image.decode()
                .then(() => [image.naturalWidth, image.naturalHeight]).catch(() => [0, 0]))).then(done);""")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert errors == []
    assert len(sizes) >= 15 and all(width > 0 and height > 0 for width, height in sizes), sizes
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000


def test_report_never_overwrites_silently_and_names_a_missing_experiment(repo_root, lab_store, tmp_path):
    store_uri, _ = lab_store
    existing = tmp_path / "report.html"
    existing.write_text("my notes")
    result = run_lab_script(repo_root, "analysis/report.py", "--tracking-uri", store_uri, "--out", str(existing))
    assert_one_line_error(result, "--overwrite")
    assert existing.read_text() == "my notes"
    result = run_lab_script(repo_root, "analysis/report.py", "--tracking-uri", store_uri, "--experiment", "nope",
                            "--out", str(tmp_path / "new.html"))
    assert_one_line_error(result, "no MLflow experiment named 'nope'")
    assert not (tmp_path / "new.html").exists()


def test_make_report_trains_only_what_is_missing(repo_root, data_dir, tmp_path):
    from ganlab import lab, tracking

    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = tracking.connect(store_uri)
    tiny = {"train_arguments": ("--train-images", "640", "--eval-samples", "200", "--data-dir", str(data_dir),
                                "--no-progress"),
            "study_arguments": tuple(SMALL_STUDY)}
    first = lab.complete_lab(client, store_uri, "lab", {"mlp": 1, "mlp-small": 2, "cnn": 1}, **tiny)
    assert [command.split()[1] for command in first] == ["experiments/train.py"] * 3 + ["analysis/latent_effects.py"]
    assert [command.split()[3] for command in first[:3]] == ["mlp", "mlp-small", "cnn"]
    runs = lab.find_lab_runs(client, "lab")
    assert list(runs.by_arch) == ["mlp", "mlp-small", "cnn"]
    assert runs.latent.data.tags["ganlab.source_run_id"] == runs.by_arch["mlp"].info.run_id
    assert runs.latent.info.run_name == "latent-analysis-mlp-s0"
    # Short runs are evaluated every epoch, so the report's "FID by epoch" is a curve, not a dot.
    fid_history = client.get_metric_history(runs.by_arch["mlp-small"].info.run_id, "fid")
    assert sorted(metric.step for metric in fid_history) == [1, 2]
    assert lab.complete_lab(client, store_uri, "lab", {"mlp": 1, "mlp-small": 2, "cnn": 1}, **tiny) == []


def test_the_report_shows_the_cnn_study_its_tuned_run_came_from_and_the_pruner_replay(tmp_path):
    """A newer study of another arch (e.g. the pruner-evidence study on mlp-small) must not replace the cnn's."""
    from ganlab.report import HtmlReport, _tuning_section, find_lab_runs

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("fashion-mnist-gan")

    def finished_run(name: str, **tags: str) -> str:
        run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        client.set_terminated(run_id, "FINISHED")
        return run_id

    cnn_study = finished_run("study-cnn-a", **{"ganlab.kind": "tune", "ganlab.arch": "cnn", "optuna.study_name": "a"})
    finished_run("study-cnn-b", **{"ganlab.kind": "tune", "ganlab.arch": "cnn", "optuna.study_name": "b"})
    cnn_tuned = finished_run("cnn-tuned-s0", **{"ganlab.kind": "train", "ganlab.arch": "cnn", "ganlab.tuned_from": "a"})
    finished_run("study-small", **{"ganlab.kind": "tune", "ganlab.arch": "mlp-small", "optuna.study_name": "small"})
    finished_run("mlp-small-tuned-s0", **{"ganlab.kind": "train", "ganlab.arch": "mlp-small",
                                          "ganlab.tuned_from": "small"})
    replay = finished_run("pruner-replay-study-small", **{"ganlab.kind": "pruner-replay"})
    client.log_text(replay, "| pruner | epochs trained |\n|---|---|\n| median | 61% |\n", "replay.md")

    lab = find_lab_runs(client, "fashion-mnist-gan", required=False)
    assert (lab.tuned.info.run_id, lab.study.info.run_id, lab.pruner_replay.info.run_id) == \
        (cnn_tuned, cnn_study, replay)
    report = HtmlReport(client)
    _tuning_section(report, lab)
    page = "".join(report.parts)
    assert "Which pruner" in page and "<td>median</td>" in page and "<td>61%</td>" in page


def test_the_report_shows_the_committed_inception_table_or_says_how_to_make_it(tmp_path):
    from ganlab.report import HtmlReport, _literature_section

    results_dir = tmp_path / "results" / "inception-fid"
    missing = HtmlReport(None)
    _literature_section(missing, results_dir)
    assert "9. Beside the literature" in missing.parts[0]
    assert "make inception" in missing.parts[1] and "analysis/inception_table.py" in missing.parts[1]

    results_dir.mkdir(parents=True)
    (results_dir / "table.md").write_text("# Title the report replaces\n\n| model | FID Inception |\n| --- | --- |\n"
                                          "| Lucic et al. 2018: WGAN | 21.5 |\n")
    shown = HtmlReport(None)
    _literature_section(shown, results_dir)
    page = "".join(shown.parts)
    assert "<td>Lucic et al. 2018: WGAN</td><td>21.5</td>" in page and "Title the report replaces" not in page
    assert "results/inception-fid/table.md" in page


def test_the_report_shows_the_claims_of_the_newest_claims_run_else_the_committed_results(tmp_path, monkeypatch):
    from ganlab import report as report_module

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("fashion-mnist-gan")

    def claims_section() -> str:
        report = report_module.HtmlReport(client)
        report_module._claims_section(report, report_module.find_lab_runs(client, "fashion-mnist-gan", required=False))
        return "".join(report.parts)

    committed = tmp_path / "committed"
    committed.mkdir()
    monkeypatch.setattr(report_module, "COMMITTED_CLAIMS", committed)
    assert "python analysis/claims.py --run-id A" in claims_section()  # nothing anywhere: the command
    (committed / "claims.md").write_text("| claim | verdict |\n|---|---|\n| 2nd-number-long-sleeves | **depends** |\n")
    page = claims_section()
    assert "<td>2nd-number-long-sleeves</td>" in page and "committed results in results/latent-claims/" in page

    run_id = client.create_run(experiment_id, run_name="latent-claims-3-generators",
                               tags={"ganlab.kind": "latent-claims"}).info.run_id
    client.log_text(run_id, "| claim | verdict |\n|---|---|\n| 71st-number-t-shirts | **does not hold** |\n",
                    "claims.md")
    client.set_terminated(run_id, "FINISHED")
    page = claims_section()
    assert "<td>71st-number-t-shirts</td>" in page and "2nd-number-long-sleeves" not in page
    assert f"claims.md of run latent-claims-3-generators ({run_id[:8]})" in page


def test_the_committed_claims_results_give_every_claim_a_verdict():
    from ganlab.claim_verdicts import DEPENDS, DOES_NOT_HOLD, HOLDS
    from ganlab.claims import CLAIMS
    from ganlab.report import COMMITTED_CLAIMS

    verdicts = json.loads((COMMITTED_CLAIMS / "verdicts.json").read_text(encoding="utf-8"))
    assert [entry["claim"] for entry in verdicts] == [claim.key for claim in CLAIMS]
    assert all(entry["verdict"] in (HOLDS, DOES_NOT_HOLD, DEPENDS) and len(entry["judged_on"]) >= 3
               for entry in verdicts)
    claims_md = (COMMITTED_CLAIMS / "claims.md").read_text(encoding="utf-8")
    assert all(claim.original in claims_md for claim in CLAIMS)


def test_the_reports_empty_chapters_show_committed_results_or_say_what_fills_them(tmp_path):
    from ganlab.report import HtmlReport, LabRuns, _gpu_section, _speed_section, _tuning_section

    lab = LabRuns(by_arch={}, tuned=None, study=None, latent=None, benchmarks=[])
    empty = HtmlReport(None)
    _tuning_section(empty, lab, tmp_path / "cnn-balance")
    _speed_section(empty, lab, tmp_path / "speed")
    _gpu_section(empty, tmp_path / "gpu-campaign")
    page = "".join(empty.parts)
    assert "cnn-balance/run.sh" in page and "4.5 hours" in page
    assert "python experiments/benchmark.py" in page and "needs a machine with a CUDA GPU" in page

    study_dir, comparison_dir = tmp_path / "cnn-balance" / "cnn-balance-lr", tmp_path / "cnn-balance" / "comparison"
    study_dir.mkdir(parents=True)
    comparison_dir.mkdir()
    (study_dir / "study.json").write_text(json.dumps({
        "study_name": "cnn-balance-lr", "trials_by_state": {"COMPLETE": 23, "PRUNED": 1, "FAIL": 0},
        "trial_seconds_total": 61200, "first_start": "2026-12-01 00:00", "last_complete": "2026-12-01 17:00",
        "machines": {"AMD EPYC, 2 cores": 14, "Intel Xeon, 2 cores": 10}, "precision_resolved": "fp32"}))
    (comparison_dir / "table.md").write_text("| arm | fid |\n| --- | --- |\n| reports | 9.1 ± 0.3 |\n")
    (comparison_dir / "answer.md").write_text("- **best-cnn-bf16-lr**: FID 5.1 ± 0.4 vs reports 9.1 ± 0.3 (0.56×)\n")
    (comparison_dir / "summary.json").write_text(json.dumps({"date": "2026-12-02", "machine": "AMD EPYC, 2 cores"}))
    (tmp_path / "speed").mkdir()
    (tmp_path / "speed" / "table.md").write_text("| arch | precision |\n| --- | --- |\n| cnn | fp32 |\n")
    shown = HtmlReport(None)
    _tuning_section(shown, lab, tmp_path / "cnn-balance")
    _speed_section(shown, lab, tmp_path / "speed")
    page = "".join(shown.parts)
    assert "Committed study cnn-balance-lr" in page and "23 complete, 1 pruned" in page and "17.0 h" in page
    assert "AMD EPYC, 2 cores (14 trials) and Intel Xeon, 2 cores (10 trials)" in page
    assert "2026-12-02" in page and "<td>9.1 ± 0.3</td>" in page
    assert "<strong>best-cnn-bf16-lr</strong>: FID 5.1 ± 0.4 vs reports 9.1 ± 0.3 (0.56×)" in page
    assert "<td>cnn</td><td>fp32</td>" in page and "not from this report" in page
