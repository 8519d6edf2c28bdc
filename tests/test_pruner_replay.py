"""The pruner replay: curves with a known answer through Optuna's real pruners, and the script on a real Optuna
SQLite storage and MLflow store."""

import sys

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from ganlab import pruner_replay
from ganlab.tuning import TuneConfig, make_pruner
from helpers import artifact_paths, assert_one_line_error, run_script

EPOCHS = 5


def steady_curves(trials: int = 12) -> np.ndarray:
    """Trial i sits at FID 10·(i+1) from its first epoch on, minus a little progress: early epochs rank exactly
    as the last one."""
    return np.array([[10.0 * (index + 1) - epoch for epoch in range(EPOCHS)] for index in range(trials)])


def late_bloomer_curves(trials: int = 12) -> np.ndarray:
    """The steady curves, except that the trial that ends best is the worst until its last epoch."""
    curves = steady_curves(trials)
    curves[0, :-1] = 1000.0
    curves[0, -1] = 1.0
    return curves


def test_nothing_is_pruned_without_a_pruner():
    trained = pruner_replay.epochs_trained(steady_curves(), optuna.pruners.NopPruner())
    assert trained.tolist() == [EPOCHS] * 12


def test_median_stops_the_bad_trials_of_steady_curves_and_keeps_the_best():
    curves = steady_curves()
    order = np.arange(len(curves))[::-1]  # worst first: each later trial is better than the median so far
    assert pruner_replay.epochs_trained(curves[order], make_pruner(TuneConfig(epochs_per_trial=EPOCHS))).tolist() \
        == [EPOCHS] * 12
    median = {outcome.pruner: outcome for outcome in pruner_replay.replay(curves, orders=20, seed=0)}["median"]
    assert median.best_kept_share == 1.0 and median.regret == 0.0
    assert median.trials_pruned > 2 and median.epochs_share < 0.8
    assert pruner_replay.early_rank_agreement(curves) == pytest.approx([1.0] * (EPOCHS - 1))
    assert pruner_replay.choose(pruner_replay.replay(curves, orders=20, seed=0)).epochs_share < 0.8


def test_a_late_bloomer_is_lost_by_pruning_and_the_rule_says_so():
    outcomes = pruner_replay.replay(late_bloomer_curves(), orders=20, seed=0)
    median = next(outcome for outcome in outcomes if outcome.pruner == "median")
    assert median.best_kept_share < pruner_replay.KEEP_BEST_SHARE and median.regret > 0
    patient = next(outcome for outcome in outcomes if outcome.pruner == "patient")
    assert patient.best_kept_share == 1.0 and patient.epochs_share == 1.0  # the curve never got worse: no prune
    assert pruner_replay.choose(outcomes) is None  # the only pruner that keeps the best saves nothing


def make_study(tmp_path, curves: np.ndarray, prune_one: bool = False) -> tuple[str, str]:
    """A real Optuna SQLite study with these per-epoch curves, linked to a real MLflow parent run, as tune.py
    leaves it. Returns (storage URL, tracking URI)."""
    storage, tracking_uri = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri)
    parent = client.create_run(client.create_experiment("fashion-mnist-gan"), run_name="study-replayed",
                               tags={"ganlab.kind": "tune"})
    study = optuna.create_study(storage=storage, study_name="replayed")
    study.set_user_attr("ganlab", {"objective": "fid"})
    study.set_user_attr("mlflow_parent_run_id", parent.info.run_id)
    for index, curve in enumerate(curves):
        trial = study.ask()
        for epoch, value in enumerate(curve, start=1):
            trial.report(float(value), epoch)
        if prune_one and index == 3:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, float(curve[-1]))
    return storage, tracking_uri


def run_replay(repo_root, storage, tracking_uri, *arguments):
    return run_script([sys.executable, "analysis/replay_pruners.py", "--storage", storage, "--tracking-uri",
                       tracking_uri, *arguments], cwd=repo_root, timeout=300)


def test_the_script_prints_and_logs_the_replay_of_a_stored_study(repo_root, tmp_path):
    storage, tracking_uri = make_study(tmp_path, steady_curves())
    result = run_replay(repo_root, storage, tracking_uri, "--study-name", "replayed", "--orders", "10")
    assert result.returncode == 0, result.stderr
    assert "| median |" in result.stdout and "| hyperband |" in result.stdout and "| patient |" in result.stdout
    assert "Choice rule" in result.stdout and "logged as run" in result.stdout

    client = MlflowClient(tracking_uri)
    (replay_run,) = client.search_runs([client.get_experiment_by_name("fashion-mnist-gan").experiment_id],
                                       "tags.`ganlab.kind` = 'pruner-replay'")
    assert replay_run.info.status == "FINISHED" and replay_run.info.run_name == "pruner-replay-study-replayed"
    assert {"replay.md", "replay.csv", "curves.png"} <= artifact_paths(client, replay_run.info.run_id)
    assert replay_run.data.metrics["best_kept_share_median"] == 1.0
    assert replay_run.data.params["trials"] == "12" and replay_run.data.params["epochs"] == str(EPOCHS)


@pytest.mark.parametrize("study_name, prune_one, fragment", [
    ("replayed", True, "replay needs a study run with --pruner none"),
    ("missing", False, "no study 'missing'"),
])
def test_studies_that_cannot_be_replayed_are_one_line_errors(repo_root, tmp_path, study_name, prune_one, fragment):
    storage, tracking_uri = make_study(tmp_path, steady_curves(), prune_one=prune_one)
    assert_one_line_error(run_replay(repo_root, storage, tracking_uri, "--study-name", study_name), fragment)
