"""Pick a pruner with evidence: replay an unpruned study's per-epoch curves through tune.py's pruners.

    python experiments/tune.py --pruner none --study-name NAME ...   # first, a study that prunes nothing
    python analysis/replay_pruners.py --study-name NAME              # then median vs patient vs hyperband on it
    python analysis/replay_pruners.py --study-name NAME --orders 200 --out replay/   # more orders; keep the files

Prints a table (epochs each pruner trains, trials it stops, whether the study's best trial survives, regret) and
logs it, with replay.csv and curves.png, as a run tagged ganlab.kind=pruner-replay next to the study's run.
"""

import optuna

from ganlab import pruner_replay, tracking
from ganlab.cli import ArgumentParser, add_common_flags, empty_folder, run_script, script_parser
from ganlab.errors import GanlabError
from ganlab.tuning import DEFAULT_STORAGE, OBJECTIVE_NAMES, open_storage


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--study-name", required=True, help="an Optuna study run with --pruner none")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna storage URL (default: {DEFAULT_STORAGE})")
    parser.add_argument("--orders", type=int, default=100, help="trial orders to replay, the study's own first "
                                                                "(default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the shuffled orders (default: 0)")
    add_common_flags(parser, out="the files")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if arguments.orders < 1:
        raise GanlabError(f"--orders must be at least 1, got {arguments.orders}")
    empty_folder(arguments.out)

    tracking_uri = tracking.resolve_tracking_uri(arguments.tracking_uri)
    client = tracking.connect(tracking_uri)
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

    with tracking.derived_run(
            client, study_run.info.experiment_id, "pruner-replay", "analysis/replay_pruners.py",
            {"study_name": arguments.study_name, "orders": arguments.orders, "seed": arguments.seed,
             "trials": curves.shape[0], "epochs": curves.shape[1], "pruners": ",".join(pruner_replay.CANDIDATES)},
            run_name=f"pruner-replay-{study_run.info.run_name}", tags=tracking.source_tags(study_run),
            out=arguments.out) as derived:
        outcomes = pruner_replay.replay(curves, arguments.orders, arguments.seed)
        table = pruner_replay.write_replay(curves, outcomes, arguments.orders, objective_name, derived.folder)
        derived.metrics = {f"{name}_{outcome.pruner}": getattr(outcome, name) for outcome in outcomes
                           for name in ("epochs_share", "best_kept_share", "regret")}

    print(table, end="")
    print(tracking.closing_lines(
        f"replayed {curves.shape[0]} trials of study {arguments.study_name!r}; logged as run {derived.run_id}",
        derived.experiment_id, derived.run_id, tracking_uri, arguments.out))
    return 0


if __name__ == "__main__":
    run_script(main)
