"""Optuna studies on real data with the real Optuna storage (SQLite, and PostgreSQL shared by two workers) and a real
MLflow store: the parent run, one nested child per trial, the plots, resume and pruning."""

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient
from optuna.trial import TrialState

from ganlab import devices
from ganlab.errors import GanlabError
from ganlab.cli import ArgumentParser, add_config_arguments, config_flags, explicit_fields
from ganlab.tuning import TuneConfig, close_dead_trial_runs, open_storage, run_study
from helpers import artifact_paths, assert_one_line_error, run_script

# A tiny but real study: 640 images at batch 64 is 10 steps an epoch; FID from 500 samples.
TINY = ["--arch", "mlp-small", "--epochs-per-trial", "2", "--train-images", "640", "--eval-samples", "500",
        "--no-progress"]
PLOTS = {"optimization_history.png", "parallel_coordinate.png", "slice.png", "contour.png",
         "intermediate_values.png", "param_importances.png"}


def run_tune(repo_root, data_dir, store_uri, storage, *arguments: str, wait: bool = True):
    command = [sys.executable, "experiments/tune.py", "--tracking-uri", store_uri, "--storage", storage,
               "--data-dir", str(data_dir), *TINY, *arguments]
    if not wait:
        return subprocess.Popen(command, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return run_script(command, cwd=repo_root, timeout=600)


def study_runs(client: MlflowClient, study_name: str):
    """(parent runs, trial runs by trial number, confirmation runs) of one study in the default experiment."""
    experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
    runs = client.search_runs([experiment_id], f"tags.`optuna.study_name` = '{study_name}'")
    parents = [run for run in runs if run.data.tags["ganlab.kind"] == "tune"]
    trials: dict[int, list] = {}
    for run in runs:
        if run.data.tags.get("ganlab.role") == "trial":
            trials.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run)
    confirms = [run for run in runs if run.data.tags.get("ganlab.role") == "confirm"]
    return parents, trials, confirms


def test_tiny_study_logs_parent_children_and_plots_and_resumes(repo_root, data_dir, tmp_path):
    store_uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    first = run_tune(repo_root, data_dir, store_uri, storage, "--trials", "2", "--pruner", "none",
                     "--confirm-seeds", "2", "--study-name", "tiny")
    assert first.returncode == 0, first.stderr
    assert "study 'tiny': 2 finished trials" in first.stdout and "over seeds [0, 1]: fid" in first.stdout

    client = MlflowClient(store_uri)
    (parent,), trials, confirms = study_runs(client, "tiny")
    assert parent.info.status == "FINISHED" and sorted(trials) == [0, 1] and len(confirms) == 1
    assert json.loads(parent.data.params["search_space"])["lr_g"] == ["log_float", 1e-5, 1e-3]
    assert parent.data.params["sampler"] == "TPESampler" and parent.data.params["pruner"] == "NopPruner"
    assert {"trials.csv", "best.json", "search_space.json"} | PLOTS <= artifact_paths(client, parent.info.run_id)
    for number, (trial_run,) in trials.items():
        assert trial_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert trial_run.data.tags["optuna.trial_state"] == "COMPLETE"
        assert [metric.step for metric in client.get_metric_history(trial_run.info.run_id, "fid")] == [1, 2]
        assert float(trial_run.data.params["lr_g"]) == pytest.approx(
            optuna.load_study(study_name="tiny", storage=storage).trials[number].params["lr_g"])
    best = json.loads(Path(client.download_artifacts(parent.info.run_id, "best.json", str(tmp_path))).read_text())
    assert best["confirmation"]["seeds"] == [0, 1] and len(best["confirmation"]["values"]) == 2

    # The same command again trains nothing: the study has its trials, the best its confirmation.
    repeated = run_tune(repo_root, data_dir, store_uri, storage, "--trials", "2", "--pruner", "none",
                        "--confirm-seeds", "2", "--study-name", "tiny")
    assert repeated.returncode == 0, repeated.stderr
    _, trials_repeated, confirms_repeated = study_runs(client, "tiny")
    assert len(confirms_repeated) == 1 and sorted(trials_repeated) == [0, 1]
    assert first.stdout.splitlines()[-3:-1] == repeated.stdout.splitlines()[-3:-1]  # best trial and confirmation

    # The same study name resumes: one more trial to reach 3, the same parent run.
    again = run_tune(repo_root, data_dir, store_uri, storage, "--trials", "3", "--pruner", "none",
                     "--confirm-seeds", "1", "--study-name", "tiny")
    assert again.returncode == 0, again.stderr
    (parent_again,), trials, _ = study_runs(client, "tiny")
    assert parent_again.info.run_id == parent.info.run_id and sorted(trials) == [0, 1, 2]
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 3

    # Its storage carried to a fresh machine (an empty MLflow store): the study goes on under a new parent run there,
    # which names the first one and which the study remembers from then on.
    fresh_store = f"sqlite:///{tmp_path}/fresh-machine.db"
    moved = run_tune(repo_root, data_dir, fresh_store, storage, "--trials", "4", "--pruner", "none",
                     "--confirm-seeds", "1", "--study-name", "tiny")
    assert moved.returncode == 0, moved.stderr
    (fresh_parent,), fresh_trials, _ = study_runs(MlflowClient(fresh_store), "tiny")
    assert fresh_parent.data.tags["ganlab.earlier_parent_run"] == parent.info.run_id and sorted(fresh_trials) == [3]
    assert fresh_trials[3][0].data.tags["mlflow.parentRunId"] == fresh_parent.info.run_id
    assert optuna.load_study(study_name="tiny", storage=storage).user_attrs["mlflow_parent_run_id"] == \
        fresh_parent.info.run_id
    assert "study 'tiny': 4 finished trials" in moved.stdout
    assert optuna.load_study(study_name="tiny", storage=storage).trials[3].user_attrs["ganlab.machine"] == \
        devices.machine_description(torch.device("cpu"))

    # A resumed study must be the same task.
    changed = run_tune(repo_root, data_dir, store_uri, storage, "--trials", "4", "--study-name", "tiny",
                       "--epochs-per-trial", "3")
    assert_one_line_error(changed, "was started with --epochs-per-trial 2")


def test_step_budget_study_starts_from_the_reports_settings_and_exports_its_results(data_dir, tmp_path):
    """A budget in steps (15 = 1.5 epochs of 10 steps), the reports' settings as trial 0, the objective named, and
    the study written to a results folder as files a reader can check."""
    storage, results = f"sqlite:///{tmp_path}/optuna.db", tmp_path / "results" / "budget"
    config = TuneConfig(arch="mlp-small", trials=2, steps_per_trial=15, train_images=640, eval_samples=500,
                        pruner="none", confirm_seeds=1, storage=storage, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                        data_dir=str(data_dir), study_name="budget", results_dir=str(results))
    result = run_study(config, show_progress=False)
    study = optuna.load_study(study_name="budget", storage=storage)
    assert study.metric_names == ["FID"]
    assert study.trials[0].params == {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999}
    assert study.trials[0].user_attrs["ganlab.baseline"] == "reports"
    assert study.trials[1].params != study.trials[0].params
    client = MlflowClient(config.tracking_uri)
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.params["max_steps"] == "15" and run.data.params["epochs"] == "2"
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "loss_g")] == list(range(1, 16))
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "fid")] == [1, 2]

    exported = json.loads((results / "trials.json").read_text())
    assert [trial["number"] for trial in exported] == [0, 1]
    assert exported[0]["params"]["lr_g"] == 2e-4 and set(exported[0]["intermediate_values"]) == {"1", "2"}
    assert exported[1]["values"] == [pytest.approx(study.trials[1].value)] and exported[1]["seconds"] > 0
    summary = json.loads((results / "study.json").read_text())
    assert summary["settings"]["steps_per_trial"] == 15 and summary["trials_by_state"]["COMPLETE"] == 2
    assert summary["trial_seconds_total"] > 0 and summary["metric_names"] == ["FID"]
    assert summary["machines"] == {devices.machine_description(torch.device("cpu")): 2}
    assert {"trials.csv", "best.json", "optimization_history.png"} <= {path.name for path in results.iterdir()}
    assert {"trials.json", "study.json"} <= artifact_paths(client, result.parent_run_id)

    # Resumed twice, one trial each time: each resume proposes new points, not the first ones again.
    for trials in (3, 4):
        run_study(dataclasses.replace(config, trials=trials), show_progress=False)
    resumed = optuna.load_study(study_name="budget", storage=storage)
    proposed = [tuple(trial.params.values()) for trial in resumed.trials]
    assert len(proposed) == 4 and len(set(proposed)) == 4, proposed
    best_tags = client.get_run(result.parent_run_id).data.tags  # the best may change on a resume: tags, not params
    assert float(best_tags["best.lr_g"]) == pytest.approx(resumed.best_trial.params["lr_g"])

    # A resumed study must have the same budget.
    changed = dataclasses.replace(config, steps_per_trial=20, trials=5)
    with pytest.raises(GanlabError, match="was started with --steps-per-trial 15"):
        run_study(changed, show_progress=False)
    # ... and the same number format: the study records the one its trials trained in.
    recorded = resumed.user_attrs["ganlab"]["precision"]
    assert recorded == devices.resolve_precision("auto", torch.device("cpu"))
    other = "fp32" if recorded == "bf16" else "bf16"
    with pytest.raises(GanlabError, match=f"trains its trials in {recorded}.*--precision {recorded}"):
        run_study(dataclasses.replace(config, precision=other, trials=5), show_progress=False)


class PruneAfterFirstEpoch(optuna.pruners.BasePruner):
    """Prunes every trial once it has reported one epoch: makes pruning certain, to test how it is recorded."""

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None and trial.last_step >= 1


def test_pruned_trials_are_pruned_in_optuna_and_in_mlflow(data_dir, tmp_path):
    store_uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    config = TuneConfig(arch="mlp-small", trials=2, epochs_per_trial=3, train_images=640, eval_samples=500,
                        storage=storage, tracking_uri=store_uri, data_dir=str(data_dir), study_name="pruned")
    result = run_study(config, show_progress=False, pruner=PruneAfterFirstEpoch())
    assert result.finished_trials == 2 and result.best == []
    study = optuna.load_study(study_name="pruned", storage=storage)
    assert [trial.state for trial in study.trials] == [TrialState.PRUNED] * 2
    client = MlflowClient(store_uri)
    _, trials, _ = study_runs(client, "pruned")
    for (trial_run,) in trials.values():
        assert trial_run.info.status == "KILLED" and trial_run.data.tags["optuna.trial_state"] == "PRUNED"
        assert trial_run.data.tags["ganlab.stopped_early"].startswith("pruned by PruneAfterFirstEpoch")
        assert [metric.step for metric in client.get_metric_history(trial_run.info.run_id, "fid")] == [1]


def test_both_objectives_give_a_pareto_front_and_the_best_is_retrained_and_registered(data_dir, tmp_path):
    config = TuneConfig(arch="mlp-small", trials=2, epochs_per_trial=1, train_images=640, eval_samples=500,
                        objective="both", retrain_best=True, epochs=2, storage=f"sqlite:///{tmp_path}/optuna.db",
                        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", data_dir=str(data_dir),
                        register_model="tuned-gan")
    result = run_study(config, show_progress=False)
    assert 1 <= len(result.best) <= 2 and all(len(best["values"]) == 2 for best in result.best)
    client = MlflowClient(config.tracking_uri)
    assert "pareto_front.png" in artifact_paths(client, result.parent_run_id)
    retrained = client.get_run(result.retrained_run_id)
    assert retrained.info.status == "FINISHED" and retrained.info.run_name == "mlp-small-tuned-s0"
    assert retrained.data.tags["ganlab.tuned_from"] == "mlp-small-both" and "mlflow.parentRunId" not in retrained.data.tags
    assert retrained.data.params["epochs"] == "2" and "model/generator.safetensors" in artifact_paths(
        client, result.retrained_run_id)
    registration = result.registration  # --register-model: its first version with an FID is the champion
    assert (registration.version, registration.champion_version) == ("1", "1") and registration.fid > 0
    assert client.get_model_version("tuned-gan", "1").run_id == result.retrained_run_id

    # Asking again reuses the retrained run; an interrupted retrain is resumed, not started over.
    assert run_study(config, show_progress=False).retrained_run_id == result.retrained_run_id
    client.set_terminated(result.retrained_run_id, "KILLED")
    assert run_study(config, show_progress=False).retrained_run_id == result.retrained_run_id
    assert client.get_run(result.retrained_run_id).info.status == "FINISHED"
    assert len(client.search_runs([retrained.info.experiment_id], "tags.`ganlab.tuned_from` = 'mlp-small-both'")) == 1
    assert len(client.search_model_versions("name = 'tuned-gan'")) == 1  # the reused retrain, registered once


def test_runs_of_trials_whose_worker_died_are_closed(tmp_path):
    """A SIGKILLed worker leaves its trial RUNNING in both systems; once Optuna marks the trial FAIL (heartbeat), the
    next worker of the study ends its MLflow run FAILED too, and leaves live trials alone."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("fashion-mnist-gan")
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/optuna.db"), study_name="died")
    dead_trial, live_trial = study.ask(), study.ask()
    study.tell(dead_trial, state=TrialState.FAIL)
    parent = client.create_run(experiment_id, run_name="study-died")
    runs = [client.create_run(experiment_id, tags={"mlflow.parentRunId": parent.info.run_id, "ganlab.role": "trial",
                                                   "optuna.trial_number": str(trial.number)})
            for trial in (dead_trial, live_trial)]

    assert close_dead_trial_runs(client, experiment_id, study, parent.info.run_id) == 1
    dead_run, live_run = (client.get_run(run.info.run_id) for run in runs)
    assert dead_run.info.status == "FAILED" and dead_run.data.tags["optuna.trial_state"] == "FAIL"
    assert live_run.info.status == "RUNNING" and "optuna.trial_state" not in live_run.data.tags


# Two processes that log the same new dataset into one experiment at the same instant: MLflow looks the dataset up,
# then inserts it, so one of them hit the store's unique key (4 of 4 tries without the retry in run_context.record).
RECORD_AT = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient
from ganlab import data, run_context
store_uri, experiment_id, data_dir, start_at = sys.argv[1:]
client = MlflowClient(store_uri)
run_id = client.create_run(experiment_id).info.run_id
time.sleep(max(0.0, float(start_at) - 0.05 - time.time()))  # asleep until just before the instant, then spin to it
while time.time() < float(start_at):
    pass
run_context.record(client, run_id, Path(data_dir), data.RAW_MD5, 640, system_metrics=False)
print(run_id)
"""


def test_two_workers_logging_the_same_new_dataset_at_once_both_record_it(repo_root, data_dir, tmp_path):
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = MlflowClient(store_uri).create_experiment("race")
    start_at = str(time.time() + 20)  # both have imported mlflow and made their run by then
    workers = [subprocess.Popen([sys.executable, "-c", RECORD_AT, store_uri, experiment_id, str(data_dir), start_at],
                                cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    run_ids = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
        run_ids.append(stdout.strip())
    client = MlflowClient(store_uri)
    for run_id in run_ids:
        contexts = sorted(tag.value for dataset_input in client.get_run(run_id).inputs.dataset_inputs
                          for tag in dataset_input.tags)
        assert contexts == ["evaluation", "training"]


def test_two_workers_share_one_postgres_study_and_record_every_trial_once(repo_root, data_dir, tmp_path,
                                                                          postgres_url):
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    # Workers on many machines share an MLflow server; here they share one SQLite file, whose schema is created
    # once up front (two processes migrating a new SQLite store at the same instant collide in MLflow itself).
    MlflowClient(store_uri).search_experiments()
    workers = [run_tune(repo_root, data_dir, store_uri, postgres_url, "--trials", "4", "--study-name", "shared",
                        "--confirm-seeds", "1", "--worker", str(index), wait=False) for index in (0, 1)]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    numbers = [trial.number for trial in study.trials]
    assert len(numbers) == len(set(numbers)) >= 4
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in study.trials)
    parents, trials, _ = study_runs(MlflowClient(store_uri), "shared")
    assert len(parents) == 1
    assert sorted(trials) == sorted(numbers)
    for trial in study.trials:
        (trial_run,) = trials[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == trial_run.info.run_id


@pytest.mark.parametrize("arguments, fragment", [
    (["--trials", "0"], "--trials must be positive"),
    (["--objective", "speed"], "invalid choice: 'speed'"),
    (["--storage", "postgresql://nobody@127.0.0.1:9/none"], "cannot open Optuna storage"),
])
def test_bad_settings_are_one_line_errors(repo_root, data_dir, tmp_path, arguments, fragment):
    command = [sys.executable, "experiments/tune.py", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
               "--storage", f"sqlite:///{tmp_path}/optuna.db", "--data-dir", str(data_dir), *arguments]
    assert_one_line_error(run_script(command, cwd=repo_root, timeout=120), fragment)


def test_config_flags_give_back_the_same_config():
    config = TuneConfig(arch="mlp-small", trials=4, enqueue_reports=False, study_name="x", worker=1,
                        train_images=640, steps_per_trial=15, remedies=True, tracking_uri="sqlite:///a.db")
    parser = ArgumentParser()
    add_config_arguments(parser, TuneConfig)
    assert TuneConfig(**explicit_fields(parser.parse_args(config_flags(config)), TuneConfig)) == config


def test_jobs_run_trials_in_helper_workers_of_the_same_study(repo_root, data_dir, tmp_path):
    store_uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    result = run_tune(repo_root, data_dir, store_uri, storage, "--trials", "4", "--pruner", "none",
                      "--confirm-seeds", "1", "--study-name", "parallel", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="parallel", storage=storage)
    finished = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    assert len(finished) >= 4  # each worker stops at 4 finished; one running trial may finish past it
    assert {trial.user_attrs["ganlab.worker"] for trial in finished} == {0, 1}
    assert len({tuple(trial.params.values()) for trial in finished}) == len(finished)
    (parent,), trials, _ = study_runs(MlflowClient(store_uri), "parallel")
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for runs in trials.values() for run in runs)
    assert f"{len(finished)} finished trials" in result.stdout  # the summary waited for the helper's trials
