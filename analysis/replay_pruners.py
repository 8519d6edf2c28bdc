"""Pick a pruner with evidence: replay an unpruned study's per-epoch curves through tune.py's pruners.

    python experiments/tune.py --pruner none --study-name NAME ...   # first, a study that prunes nothing
    python analysis/replay_pruners.py --study-name NAME              # then median vs patient vs hyperband on it
    python analysis/replay_pruners.py --study-name NAME --orders 200 --out replay/   # more orders; keep the files

Prints a table (epochs each pruner trains, trials it stops, whether the study's best trial survives, regret) and
logs it, with replay.csv and curves.png, as a run tagged ganlab.kind=pruner-replay next to the study's run.
"""

import argparse
import tempfile
from pathlib import Path

import optuna

from ganlab import pruner_replay, tracking
from ganlab.cli import ArgumentParser, run_script
from ganlab.errors import GanlabError
from ganlab.tuning import DEFAULT_STORAGE, OBJECTIVE_NAMES, open_storage


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study-name", required=True, help="an Optuna study run with --pruner none")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna storage URL (default: {DEFAULT_STORAGE})")
    parser.add_argument("--orders", type=int, default=100, help="trial orders to replay, the study's own first "
                                                                "(default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the shuffled orders (default: 0)")
    parser.add_argument("--out", type=Path, help="also keep the files in this new (or empty) folder")
    parser.add_argument("--tracking-uri", help="MLflow store (else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    arguments = parser.parse_args()
    if arguments.orders < 1:
        raise GanlabError(f"--orders must be at least 1, got {arguments.orders}")
    if arguments.out and arguments.out.exists() and (not arguments.out.is_dir() or any(arguments.out.iterdir())):
        raise GanlabError(f"--out {arguments.out} exists and is not an empty folder; nothing is overwritten")

    client = tracking.connect(tracking.resolve_tracking_uri(arguments.tracking_uri))
    storage = open_storage(arguments.storage)
    try:
        study = optuna.load_study(study_name=arguments.study_name, storage=storage)
    except KeyError as error:
        raise GanlabError(f"no study {arguments.study_name!r} in {arguments.storage}") from error
    if len(study.directions) > 1:
        raise GanlabError(f"study {arguments.study_name!r} has two objectives; Optuna prunes single-objective "
                          f"studies only")
    curves = pruner_replay.study_curves(study)
    objective = study.user_attrs.get("ganlab", {}).get("objective", "value")
    objective_name = OBJECTIVE_NAMES.get(objective, objective)
    parent_run_id = study.user_attrs.get("mlflow_parent_run_id")
    if parent_run_id is None:
        raise GanlabError(f"study {arguments.study_name!r} has no MLflow run; was it made by experiments/tune.py?")
    study_run = tracking.get_run(client, parent_run_id)

    run_id, experiment_id = tracking.start_derived_run(
        client, study_run, "pruner-replay", "analysis/replay_pruners.py",
        {"study_name": arguments.study_name, "orders": arguments.orders, "seed": arguments.seed,
         "trials": curves.shape[0], "epochs": curves.shape[1], "pruners": ",".join(pruner_replay.CANDIDATES)})
    try:
        outcomes = pruner_replay.replay(curves, arguments.orders, arguments.seed)
        with tempfile.TemporaryDirectory() as scratch:
            out_dir = arguments.out or Path(scratch)
            out_dir.mkdir(parents=True, exist_ok=True)
            table = pruner_replay.write_replay(curves, outcomes, arguments.orders, objective_name, out_dir)
            headline = {f"{name}_{outcome.pruner}": getattr(outcome, name) for outcome in outcomes
                        for name in ("epochs_share", "best_kept_share", "regret")}
            tracking.finish_derived_run(client, run_id, out_dir, headline)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise

    print(table, end="")
    print(f"replayed {curves.shape[0]} trials of study {arguments.study_name!r}; logged as run {run_id}\n"
          + (f"  files: {arguments.out}\n" if arguments.out else "")
          + f"  MLflow UI: `make ui`, then {tracking.run_url(experiment_id, run_id)}")
    return 0


if __name__ == "__main__":
    run_script(main)
