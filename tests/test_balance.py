"""experiments/compare_settings.py at tiny size: arms × seeds as real runs, reused on a rerun, and the statistics."""

import json
import math
import sys

import optuna
import pytest
import torch
from mlflow import MlflowClient

from ganlab import balance, devices
from ganlab.errors import GanlabError
from ganlab.train import TrainConfig
from ganlab.tuning import TuneConfig, run_study
from helpers import assert_one_line_error, run_script


def test_the_welch_interval_and_the_t_interval_are_the_textbook_ones():
    mean, std, low, high = balance.interval([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, 1.0) and (low, high) == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-4)
    difference, low, high = balance.welch_difference([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
    assert difference == 9.0 and low > 0 and high < 18  # clearly beyond the noise
    _, low, high = balance.welch_difference([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert low < 0 < high  # within the noise
    assert balance.trend([0.3, 0.2, 0.1]) == pytest.approx(-0.1) and math.isnan(balance.trend([0.1]))


def test_reports_against_a_studys_best_with_two_seeds_each(repo_root, data_dir, tmp_path):
    store_uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    run_study(TuneConfig(arch="mlp-small", trials=2, epochs_per_trial=1, train_images=640, eval_samples=300,
                         pruner="none", confirm_seeds=1, storage=storage, tracking_uri=store_uri,
                         data_dir=str(data_dir), study_name="tiny"), show_progress=False)
    out = tmp_path / "comparison"

    def comparison(arms: list[str], store: str) -> list[str]:
        return [sys.executable, "experiments/compare_settings.py", "--arch", "mlp-small",
                *[argument for arm in arms for argument in ("--arm", arm)], "--storage", storage, "--seeds", "2",
                "--epochs", "2", "--eval-samples", "300", "--train-images", "640", "--out", str(out),
                "--tracking-uri", store, "--data-dir", str(data_dir), "--no-progress"]

    command = comparison(["reports", "best:tiny@bf16"], store_uri)
    first = run_script(command, cwd=repo_root, timeout=900)
    assert first.returncode == 0, first.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [arm["arm"] for arm in summary["arms"]] == ["reports", "best-tiny-bf16"] and summary["seeds"] == [0, 1]
    assert summary["baseline"] == "reports" and summary["arms"][1]["params"]["precision"] == "bf16"
    client = MlflowClient(store_uri)
    for arm in summary["arms"]:
        fids = [client.get_run(run_id).data.metrics["fid"] for run_id in arm["run_ids"]]
        assert arm["metrics"]["fid"]["values"] == fids and arm["metrics"]["fid"]["mean"] == pytest.approx(sum(fids) / 2)
        assert arm["metrics"]["images_per_second"]["values"] == [
            client.get_run(run_id).data.metrics["images_per_second"] for run_id in arm["run_ids"]]
        assert [len(curve) for curve in arm["curves"]["fid"]] == [2, 2]
    assert {client.get_run(run_id).data.params["precision"] for run_id in summary["arms"][1]["run_ids"]} == {"bf16"}
    assert {client.get_run(run_id).data.params["precision"] for run_id in summary["arms"][0]["run_ids"]} == {"auto"}
    assert "vs_baseline" in summary["arms"][1]["metrics"]["fid"] and "vs_baseline" not in summary["arms"][0]["metrics"]["fid"]
    assert {"runs.csv", "table.md", "answer.md", "fid_by_epoch.png", "epoch_loss_d_by_epoch.png"} <= \
        {p.name for p in out.iterdir()}
    answer = (out / "answer.md").read_text()  # the README quotes such a file: its numbers are the summary's
    tuned_fid = summary["arms"][1]["metrics"]["fid"]
    assert f"**best-tiny-bf16**: FID {tuned_fid['mean']:.3g} ± {tuned_fid['std']:.2g} vs reports" in answer
    assert f"({summary['answer']['best-tiny-bf16']['fid_ratio_to_baseline']:.2f}×)" in answer
    assert "best-tiny-bf16: FID" in first.stdout and "× that of reports;" in first.stdout

    # The same command again trains nothing: the four runs are reused.
    experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
    trained = len(client.search_runs([experiment_id], "tags.`ganlab.comparison` = 'balance' and tags.`ganlab.kind` = 'train'"))
    again = run_script(command, cwd=repo_root, timeout=900)
    assert again.returncode == 0, again.stderr
    assert len(client.search_runs([experiment_id], "tags.`ganlab.comparison` = 'balance' and tags.`ganlab.kind` = 'train'")) == trained == 4
    assert json.loads((out / "summary.json").read_text())["arms"][1]["run_ids"] == summary["arms"][1]["run_ids"]
    machine = devices.machine_description(torch.device("cpu"))
    assert summary["settings"] == {"arch": "mlp-small", "epochs": 2, "eval_samples": 300, "train_images": 640,
                                   "precision": "auto"}
    assert [arm["machines"] for arm in summary["arms"]] == [[machine, machine]] * 2

    # On a fresh machine (an empty store) one more arm, one trial of the study, trains only that arm; the others come
    # from summary.json.
    fresh_store = f"sqlite:///{tmp_path}/fresh-machine.db"
    grown = run_script(comparison(["reports", "best:tiny@bf16", "trial:tiny:1"], fresh_store), cwd=repo_root,
                       timeout=900)
    assert grown.returncode == 0, grown.stderr
    fresh_client = MlflowClient(fresh_store)
    fresh_runs = fresh_client.search_runs([fresh_client.get_experiment_by_name("fashion-mnist-gan").experiment_id],
                                          "tags.`ganlab.kind` = 'train'")
    assert sorted(run.data.tags["ganlab.arm"] for run in fresh_runs) == ["trial-tiny-1", "trial-tiny-1"]
    grown_summary = json.loads((out / "summary.json").read_text())
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert grown_summary["arms"][2]["params"] == study.trials[1].params
    with pytest.raises(GanlabError, match="no complete trial 7"):
        balance.parse_arm("trial:tiny:7", storage)
    for before, after in zip(summary["arms"], grown_summary["arms"][:2]):
        assert after["recorded"] and after["metrics"]["fid"]["values"] == before["metrics"]["fid"]["values"]
        assert after["run_ids"] == before["run_ids"] and after["curves"] == before["curves"]
    assert not grown_summary["arms"][2]["recorded"]
    assert sorted(grown_summary["arms"][2]["run_ids"]) == sorted(run.info.run_id for run in fresh_runs)
    assert (out / "runs.csv").read_text().count(machine) == 6
    assert balance.recorded_arms(out, TrainConfig(arch="mlp-small", epochs=3, eval_samples=300, train_images=640),
                                 [0, 1]) == {}  # other settings: a new measurement, nothing taken over

    # Arms of different machines: each says where it trained, and throughput is compared only on one machine.
    grown_summary["arms"][2]["machines"] = ["Another CPU, 2 cores"] * 2
    answer = balance.answer_markdown(grown_summary)
    assert answer.splitlines()[0].endswith(f"; {machine}, {summary['arms'][0]['dates'][0]}, unless an arm says "
                                           "otherwise:")
    assert answer.count("images/s (") == 1 and answer.count("Trained on") == 1
    assert f"Trained on Another CPU, 2 cores, {grown_summary['arms'][2]['dates'][0]}, so its images/s are not " \
           "compared." in answer
    assert "Trained on more than one machine" in balance.table_markdown(grown_summary)


@pytest.mark.parametrize("arguments, fragment", [
    (["--arm", "tuned"], "unknown --arm 'tuned'"),
    (["--arm", "best:nowhere"], "no study 'nowhere'"),
    (["--arm", "trial:nowhere:3"], "no study 'nowhere'"),
    (["--arm", "trial:tiny"], "a trial is trial:STUDY_NAME:NUMBER"),
    (["--arm", "reports", "--seeds", "1"], "--seeds must be at least 2"),
    (["--arm", "reports", "--arm", "reports"], "the same --arm twice"),
    (["--arm", "reports@fp16"], "unknown precision 'fp16' in --arm 'reports@fp16'"),
])
def test_bad_comparisons_are_one_line_errors(repo_root, data_dir, tmp_path, arguments, fragment):
    command = [sys.executable, "experiments/compare_settings.py", "--storage", f"sqlite:///{tmp_path}/optuna.db",
               "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--data-dir", str(data_dir), *arguments]
    assert_one_line_error(run_script(command, cwd=repo_root, timeout=120), fragment)
