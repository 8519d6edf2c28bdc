"""tests/fault_injection.py at CI size: a few SIGKILLs of a training run and of one of two tuning workers; writers
side by side on one store, and two workers racing to create its experiment."""

import json
import subprocess
import sys

from mlflow import MlflowClient

from ganlab import tracking
from helpers import train_command


def test_killed_training_and_tuning_lose_and_double_nothing(repo_root, data_dir):
    result = subprocess.run([sys.executable, "tests/fault_injection.py", "--kills", "3", "--train-images", "640",
                             "--epochs", "6", "--tune", "--json"], cwd=repo_root, capture_output=True, text=True,
                            timeout=1500)
    assert result.stdout, result.stderr
    outcome = json.loads(result.stdout)
    training, tuning = outcome["training"], outcome["tuning"]
    assert sum(training["kills"].values()) >= 1, training  # at least one kill landed before the run ended
    assert training["runs"] == 1 and training["status"] == "FINISHED"
    assert training["weights_identical"] and training["steps_exactly_once"] and training["step_values_equal"]
    assert training["unreadable_checkpoints"] == 0
    assert tuning["trials_complete"] >= 4 and tuning["each_complete_trial_one_finished_run"]
    assert tuning["trial_runs_left_running"] == 0 and tuning["trial_numbers_unique"]
    assert outcome["passed"] and result.returncode == 0


def test_two_trainings_and_a_tuning_worker_write_one_sqlite_store_at_once(repo_root, data_dir, tmp_path):
    """Writers side by side on the default kind of store: no "database is locked", every run complete."""
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(store_uri).search_experiments()  # the schema, created once (MLflow's own migration is not concurrent)
    small = ["--arch", "mlp-small", "--train-images", "640", "--eval-samples", "300"]
    trainings = [subprocess.Popen(train_command(store_uri, data_dir, *small, "--epochs", "6", "--eval-every", "2",
                                                "--seed", str(seed)), cwd=repo_root, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    tuning = subprocess.Popen([sys.executable, "experiments/tune.py", "--tracking-uri", store_uri, "--storage",
                               f"sqlite:///{tmp_path}/optuna.db", "--data-dir", str(data_dir), *small,
                               "--epochs-per-trial", "2", "--trials", "2", "--confirm-seeds", "1", "--no-progress"],
                              cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for process in (*trainings, tuning):
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr
        assert "locked" not in stderr
    client = MlflowClient(store_uri)
    runs = client.search_runs([client.get_experiment_by_name("fashion-mnist-gan").experiment_id])
    assert len(runs) == 5 and {run.info.status for run in runs} == {"FINISHED"}  # 2 trainings, a parent, 2 trials
    for run in runs:
        if run.data.tags["ganlab.kind"] == "train":
            steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "loss_g")]
            assert steps == list(range(1, len(steps) + 1)) and len(steps) in (20, 60)


class CreatedByAnotherWorkerMeanwhile(MlflowClient):
    """A client whose first lookup of an experiment misses it, while another worker creates it in the same store:
    the race of two workers started at once, made certain."""

    def get_experiment_by_name(self, name):
        if not getattr(self, "raced", False):
            self.raced = True
            MlflowClient(self.tracking_uri).create_experiment(name)
            return None
        return super().get_experiment_by_name(name)


def test_a_worker_that_loses_the_race_to_create_the_experiment_uses_the_winners(tmp_path):
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = tracking.get_or_create_experiment(CreatedByAnotherWorkerMeanwhile(store_uri), "shared")
    assert experiment_id == MlflowClient(store_uri).get_experiment_by_name("shared").experiment_id
