"""Kill ganlab with SIGKILL at random moments, resume each time, and check that nothing was lost or doubled.

    python tests/fault_injection.py --kills 50                 # training: 50 kills, then the comparison
    python tests/fault_injection.py --kills 3 --tune           # also a two-worker study with one worker killed
    python tests/fault_injection.py --kills 50 --json          # one JSON object on stdout

Training: an uninterrupted reference run, then the same settings killed `--kills` times, each time at a moment drawn
from four kinds — a random instant (mostly inside a block of steps), just after a block of step values went to the
writer (`flush`), between a checkpoint's tensors and its manifest (`checkpoint`), while samples are measured
(`evaluation`) — and resumed with `--resume`. After every kill the checkpoint must load; at the end the killed run
must be the experiment's only run, FINISHED, with the reference's final weights exactly (CPU) and every per-step
metric exactly once, equal to the reference's.

Tuning (`--tune`): two workers on one SQLite Optuna storage and one MLflow store; one is SIGKILLed in the middle of a
trial and started again. Optuna's heartbeat (GANLAB_OPTUNA_HEARTBEAT_S, shortened here) fails the dead trial and
retries it; at the end the study must have its trials complete, each with exactly one FINISHED MLflow run, and no
trial run may be left RUNNING.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from ganlab import checkpoint  # noqa: E402
from ganlab.data import resolve_data_dir  # noqa: E402
from ganlab.tuning import open_storage  # noqa: E402

KILL_KINDS = ("random", "flush", "checkpoint", "evaluation")
STEP_METRICS = ("loss_g", "loss_d", "d_real", "d_fake")


def train_command(store_uri: str, data_dir: Path, arguments: list[str]) -> list[str]:
    return [sys.executable, "experiments/train.py", "--no-progress", "--tracking-uri", store_uri, "--data-dir",
            str(data_dir), *arguments]


def the_run(client: MlflowClient):
    """The experiment's runs (the test expects exactly one)."""
    experiment = client.get_experiment_by_name("fashion-mnist-gan")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def final_weights(client: MlflowClient, run_id: str, scratch: Path) -> dict[str, torch.Tensor]:
    model_dir = Path(client.download_artifacts(run_id, "model", str(scratch)))
    return {f"{name}.{key}": value for name in ("generator", "discriminator")
            for key, value in load_file(str(model_dir / f"{name}.safetensors")).items()}


def run_killed(store_dir: Path, data_dir: Path, arguments: list[str], kills: int, rng: random.Random,
               reference_seconds: float) -> dict:
    """Train `arguments`, SIGKILLing it `kills` times (resuming after each), until it finishes."""
    store_uri = f"sqlite:///{store_dir}/mlflow.db"
    client = MlflowClient(store_uri)
    kinds_done: dict[str, int] = {kind: 0 for kind in KILL_KINDS}
    unreadable_checkpoints = 0
    attempts = 0
    while True:
        runs = the_run(client)
        command = train_command(store_uri, data_dir, ["--resume", runs[0].info.run_id] if runs else arguments)
        environment = dict(os.environ)
        kind = rng.choice(KILL_KINDS) if kinds_done_total(kinds_done) < kills else None
        if kind not in (None, "random"):
            environment["GANLAB_FAULT"] = f"{kind}:{rng.randint(1, 3)}"
        attempts += 1
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        if kind == "random":
            deadline = time.monotonic() + rng.uniform(1.0, max(2.0, reference_seconds))
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=3600)
        if process.returncode == -signal.SIGKILL:
            kinds_done[kind or "random"] += 1
            for run in the_run(client):
                directory = store_dir / "artifacts" / run.info.run_id / "artifacts" / "checkpoint"
                try:
                    checkpoint.load_checkpoint(directory)
                except Exception:  # noqa: BLE001 - counted, and the check fails below
                    unreadable_checkpoints += 1
            continue
        if process.returncode != 0:
            raise SystemExit(f"training ended with exit {process.returncode}: {stderr.strip()[-500:]}")
        # Finished (a point asked for may not have come in what was left of the run: fewer kills then).
        return {"kills": kinds_done, "attempts": attempts, "unreadable_checkpoints": unreadable_checkpoints}


def kinds_done_total(kinds_done: dict[str, int]) -> int:
    return sum(kinds_done.values())


def check_training(kills: int, train_images: int, epochs: int, seed: int, data_dir: Path) -> dict:
    """The reference run, the killed run, and their comparison."""
    arguments = ["--arch", "mlp-small", "--train-images", str(train_images), "--epochs", str(epochs),
                 "--eval-every", "2", "--eval-samples", "300", "--seed", "3"]
    with tempfile.TemporaryDirectory(prefix="ganlab-faults-") as scratch:
        scratch = Path(scratch)
        reference_store, killed_store = scratch / "reference", scratch / "killed"
        start = time.monotonic()
        subprocess.run(train_command(f"sqlite:///{reference_store}/mlflow.db", data_dir, arguments), cwd=REPO_ROOT,
                       check=True, capture_output=True, timeout=3600)
        reference_seconds = time.monotonic() - start
        outcome = run_killed(killed_store, data_dir, arguments, kills, random.Random(seed), reference_seconds)

        reference_client = MlflowClient(f"sqlite:///{reference_store}/mlflow.db")
        killed_client = MlflowClient(f"sqlite:///{killed_store}/mlflow.db")
        (reference_run,) = the_run(reference_client)
        runs = the_run(killed_client)
        run = runs[0]
        reference_weights = final_weights(reference_client, reference_run.info.run_id, scratch / "reference-model")
        weights = final_weights(killed_client, run.info.run_id, scratch / "killed-model")
        steps_exactly_once = steps_equal = True
        for name in STEP_METRICS:
            history = sorted((metric.step, metric.value) for metric in killed_client.get_metric_history(
                run.info.run_id, name))
            reference = sorted((metric.step, metric.value) for metric in reference_client.get_metric_history(
                reference_run.info.run_id, name))
            steps_exactly_once &= [step for step, _ in history] == list(range(1, len(reference) + 1))
            steps_equal &= history == reference
        return {**outcome, "runs": len(runs), "status": run.info.status,
                "weights_identical": weights.keys() == reference_weights.keys() and all(
                    torch.equal(weights[name], reference_weights[name]) for name in weights),
                "steps_exactly_once": steps_exactly_once, "step_values_equal": steps_equal,
                "steps": len(reference)}


def check_tuning(data_dir: Path, trials: int = 4) -> dict:
    """Two workers, one killed mid-trial and restarted: every trial once, none left RUNNING."""
    with tempfile.TemporaryDirectory(prefix="ganlab-faults-tune-") as scratch:
        store_uri, storage = f"sqlite:///{scratch}/mlflow.db", f"sqlite:///{scratch}/optuna.db"
        MlflowClient(store_uri).search_experiments()  # create the store's schema once, before the workers race
        environment = {**os.environ, "GANLAB_OPTUNA_HEARTBEAT_S": "2"}

        def worker(index: int) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "experiments/tune.py", "--tracking-uri", store_uri, "--storage",
                                     storage, "--data-dir", str(data_dir), "--arch", "mlp-small", "--epochs-per-trial",
                                     "3", "--train-images", "640", "--eval-samples", "300", "--trials", str(trials),
                                     "--study-name", "faults", "--confirm-seeds", "1", "--pruner", "none",
                                     "--worker", str(index), "--no-progress"],
                                    cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)

        workers = [worker(0), worker(1)]
        client = MlflowClient(store_uri)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # kill worker 1 once a trial of its own is under way
            running = [run for run in client.search_runs(
                [client.get_experiment_by_name("fashion-mnist-gan").experiment_id],
                "attributes.status = 'RUNNING' and tags.`ganlab.role` = 'trial'")] \
                if client.get_experiment_by_name("fashion-mnist-gan") else []
            if len(running) >= 2 or (running and workers[0].poll() is not None):
                break
            time.sleep(0.2)
        workers[1].send_signal(signal.SIGKILL)
        workers[1].wait(timeout=60)
        time.sleep(8)  # past the shortened heartbeat's grace period
        workers[1] = worker(1)
        for process in workers:
            _, stderr = process.communicate(timeout=1800)
            if process.returncode != 0:
                raise SystemExit(f"a tuning worker ended with exit {process.returncode}: {stderr.strip()[-500:]}")

        study = optuna.load_study(study_name="faults", storage=open_storage(storage))
        experiment_id = client.get_experiment_by_name("fashion-mnist-gan").experiment_id
        trial_runs = client.search_runs([experiment_id], "tags.`ganlab.role` = 'trial'")
        runs_by_trial: dict[int, list] = {}
        for run in trial_runs:
            runs_by_trial.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run)
        complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
        return {
            "trials_complete": len(complete),
            "trials_failed": sum(trial.state == optuna.trial.TrialState.FAIL for trial in study.trials),
            "each_complete_trial_one_finished_run": all(
                [run.info.status for run in runs_by_trial.get(trial.number, [])] == ["FINISHED"] for trial in complete),
            "trial_runs_left_running": sum(run.info.status == "RUNNING" for run in trial_runs),
            "trial_numbers_unique": len({trial.number for trial in study.trials}) == len(study.trials),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs of the training run (default: 50)")
    parser.add_argument("--train-images", type=int, default=1280, help="training images (default: 1280)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the run (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the choice of kill moments (default: 0)")
    parser.add_argument("--tune", action="store_true", help="also the two-worker study with a killed worker")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    arguments = parser.parse_args()
    if arguments.kills < 0:
        parser.error("--kills must be 0 or positive")
    data_dir = resolve_data_dir(None).resolve()
    start = time.monotonic()
    results = {"training": check_training(arguments.kills, arguments.train_images, arguments.epochs,
                                          arguments.seed, data_dir)}
    if arguments.tune:
        results["tuning"] = check_tuning(data_dir)
    results["seconds"] = round(time.monotonic() - start, 1)
    training = results["training"]
    passed = (training["runs"] == 1 and training["status"] == "FINISHED" and training["weights_identical"]
              and training["steps_exactly_once"] and training["step_values_equal"]
              and training["unreadable_checkpoints"] == 0)
    if arguments.tune:
        tuning = results["tuning"]
        passed &= (tuning["trials_complete"] >= 4 and tuning["each_complete_trial_one_finished_run"]
                   and tuning["trial_runs_left_running"] == 0 and tuning["trial_numbers_unique"])
    results["passed"] = passed
    print(json.dumps(results) if arguments.json else json.dumps(results, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
