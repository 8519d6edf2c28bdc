"""Tune a GAN's learning rates and betas with Optuna; every trial is a nested MLflow run under the study's run.

    python experiments/tune.py                                   # cnn, 20 trials of 3 epochs, minimize FID
    python experiments/tune.py --objective both                  # FID and D imbalance: the Pareto front
    python experiments/tune.py --remedies                        # also label smoothing, instance noise, D interval
    python experiments/tune.py --study-name cnn-fid --trials 30  # resume the study up to 30 finished trials
    python experiments/tune.py --retrain-best --epochs 20        # then train the best params as a full run
    python experiments/tune.py --retrain-best --register-model fashion-gan   # … and register it (docs/models.md)
    python experiments/tune.py --storage postgresql://ganlab@db-host/optuna --worker 1   # join a shared study
    python experiments/tune.py --pruner none --study-name NAME   # full curves; then analysis/replay_pruners.py

FID is measured in ganlab's own Fashion-MNIST feature space (fmnist-cnn-v1), not Inception.
Compare the trials in the MLflow UI (`make ui`): open the study's run and select its child runs.
"""


from ganlab.cli import ArgumentParser, add_config_arguments, explicit_fields, run_script, script_parser
from ganlab.errors import TrainingInterrupted
from ganlab.tuning import TuneConfig, run_study
from ganlab import tracking


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    add_config_arguments(parser, TuneConfig)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    config = TuneConfig(**explicit_fields(arguments, TuneConfig))
    try:
        result = run_study(config, show_progress=not arguments.no_progress)
    except TrainingInterrupted as interruption:
        print(f"stopped: the running trial is marked failed in Optuna and KILLED in MLflow; rerun the same command "
              f"to resume the study {config.name!r}")
        return 128 + interruption.signal_number

    print(f"study {result.study_name!r}: {result.finished_trials} finished trials in {config.storage}")
    for best in result.best:
        params = ", ".join(f"{name}={value:.4g}" for name, value in best["params"].items())
        print(f"  best trial {best['number']}: values {[round(value, 4) for value in best['values']]} ({params})")
    if result.confirmation:
        confirmation = result.confirmation
        print(f"  over seeds {confirmation['seeds']}: {confirmation['objective']} "
              f"{confirmation['mean']:.3f} ± {confirmation['std']:.3f}")
    if result.retrained_run_id:
        print(f"  retrained: run {result.retrained_run_id}")
    if result.registration:
        print(f"  {result.registration.summary()}")
    print(f"  {tracking.ui_hint(result.experiment_id, result.parent_run_id, tracking.resolve_tracking_uri(config.tracking_uri))}")
    return 0


if __name__ == "__main__":
    run_script(main)
