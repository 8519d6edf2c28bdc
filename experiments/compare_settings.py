"""Train the reports' settings and the best of each tuning study with several seeds, and compare them honestly.

    python experiments/compare_settings.py --arm reports --arm best:cnn-bf16-lr \
        --storage sqlite:///results/cnn-balance/optuna.db --seeds 3 --epochs 3 --out results/cnn-balance/comparison
    python experiments/compare_settings.py --arm reports --arm trial:cnn-bf16-both:18 \
        --storage sqlite:///results/cnn-balance/optuna.db --epochs 3 --name pareto
    python experiments/compare_settings.py --arch mlp-small --arm reports --arm best:mlp-small-fid --epochs 2
    python experiments/compare_settings.py --arm reports@fp32 --arm reports@bf16 --epochs 2 --name precision

Each arm × seed is an ordinary tracked training run (tags ganlab.comparison and ganlab.arm); rerunning the same
command reuses finished runs and resumes interrupted ones, so the comparison can run in pieces. An arm that --out's
summary.json already holds with the same settings and seeds is taken from there, so on a fresh machine (no local
runs) adding an arm trains only that arm. The folder gets runs.csv (with the machine each run trained on),
summary.json (mean, std, 95% intervals, differences from the first arm with their Welch intervals), table.md,
answer.md and the FID and D-loss curves by epoch; the same files are logged as a run tagged ganlab.kind=comparison.
Quality numbers are in ganlab's fmnist-cnn-v1 feature space.
"""

from pathlib import Path

from ganlab import balance, tracking
from ganlab.cli import DATA_DIR_HELP, ArgumentParser, run_script, script_parser
from ganlab.errors import GanlabError
from ganlab.train import TrainConfig
from ganlab.tuning import DEFAULT_STORAGE


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--arm", action="append", required=True,
                        help=f"{balance.ARM_FORMS} (repeat for each arm; the first is the baseline the others are "
                             f"compared with)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna storage of the studies (default: "
                                                                    f"{DEFAULT_STORAGE})")
    parser.add_argument("--arch", default="cnn", help="architecture (default: cnn)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm: 0 … N−1 (default: 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every run (default: 3)")
    parser.add_argument("--eval-samples", type=int, default=10_000, help="samples per evaluation (default: 10000)")
    parser.add_argument("--name", default="balance", help="the comparison's name, in run names and tags "
                                                          "(default: balance)")
    parser.add_argument("--out", type=Path, help="write the result files here (a new or empty folder, or one this "
                                                 "script wrote before) (default: only to the MLflow run)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="number format of every run (default: auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, … (default: auto)")
    parser.add_argument("--train-images", type=int, help="train on the first N images only, for smoke tests "
                                                         "(default: all)")
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--experiment", default="fashion-mnist-gan", help="MLflow experiment (default: "
                                                                          "fashion-mnist-gan)")
    parser.add_argument("--tracking-uri", help="MLflow store (else $MLFLOW_TRACKING_URI, else "
                                               "sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if arguments.seeds < 2:
        raise GanlabError(f"--seeds must be at least 2 (a spread needs two), got {arguments.seeds}")
    if arguments.out and arguments.out.exists() and any(arguments.out.iterdir()) \
            and not (arguments.out / "summary.json").exists():
        raise GanlabError(f"--out {arguments.out} holds files this script did not write; nothing is overwritten")
    arms = [balance.parse_arm(spec, arguments.storage) for spec in arguments.arm]
    if len({arm.name for arm in arms}) != len(arms):
        raise GanlabError("the same --arm twice")
    base = TrainConfig(arch=arguments.arch, epochs=arguments.epochs, eval_every=1,
                       eval_samples=arguments.eval_samples, precision=arguments.precision, device=arguments.device,
                       train_images=arguments.train_images, data_dir=arguments.data_dir,
                       experiment=arguments.experiment, tracking_uri=arguments.tracking_uri)
    base.validate()

    seeds = list(range(arguments.seeds))
    recorded = balance.recorded_arms(arguments.out, base, seeds)
    results = balance.run_arms(arms, base, seeds, arguments.name, show_progress=not arguments.no_progress,
                               recorded=recorded)
    summary = balance.summarize(results, seeds, base)
    run_id, experiment_id, table = balance.log_comparison(summary, base, arguments.name, arguments.out)
    print(table, end="")
    for arm, answer in summary["answer"].items():
        print(f"{arm}: FID {answer['fid_ratio_to_baseline']:.2f}× that of {summary['baseline']}; "
              f"D loss still falling over the last epochs: {answer['d_loss_still_falling']}")
    print(tracking.closing_lines(f"compared {len(arms)} arms × {len(seeds)} seeds; logged as run {run_id}",
                                 experiment_id, run_id, tracking.resolve_tracking_uri(arguments.tracking_uri),
                                 arguments.out))
    return 0


if __name__ == "__main__":
    run_script(main)
