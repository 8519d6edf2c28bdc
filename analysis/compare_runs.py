"""Compare tracked training runs: overlaid curves, last sample grids side by side, a table of params and metrics.

    python analysis/compare_runs.py --experiment fashion-mnist-gan      # every finished training run in it
    python analysis/compare_runs.py --run-ids ID1,ID2,ID3                # these runs
    python analysis/compare_runs.py --model-uris models:/fashion-gan/1,models:/fashion-gan@champion   # their runs
    python analysis/compare_runs.py --experiment fashion-mnist-gan --out comparison/   # also keep the files

The figures and tables (losses.png, d_outputs.png, fid.png, last_samples.png, table.md, table.csv) are logged
as a new run tagged ganlab.kind=comparison. Quality numbers are in ganlab's fmnist-cnn-v1 feature space.
"""

from tqdm import tqdm

from ganlab import cli, comparison, model_registry, tracking
from ganlab.cli import ArgumentParser, add_common_flags, run_script, script_parser
from ganlab.errors import GanlabError


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", help="compare every finished training run of this MLflow experiment")
    source.add_argument("--run-ids", help="compare these training runs (comma-separated ids)")
    source.add_argument("--model-uris", help="compare the training runs of these MLflow Models (comma-separated "
                                             f"{model_registry.MODEL_URI_FORMS})")
    parser.add_argument("--smoothing", type=int, default=100, help="moving-average window of the step curves (default: 100)")
    add_common_flags(parser, out="the files", progress=True)
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if arguments.smoothing < 1:
        raise GanlabError(f"--smoothing must be at least 1, got {arguments.smoothing}")
    cli.empty_folder(arguments.out)
    listed = arguments.run_ids if arguments.run_ids is not None else arguments.model_uris
    run_ids = [entry.strip() for entry in listed.split(",") if entry.strip()] if listed is not None else None
    if listed is not None and not run_ids:
        raise GanlabError(f"--{'run-ids' if arguments.run_ids is not None else 'model-uris'} is empty")

    tracking_uri = tracking.resolve_tracking_uri(arguments.tracking_uri)
    client = tracking.connect(tracking_uri)
    if arguments.model_uris:
        run_ids = [model_registry.source_run_id(client, model_uri) for model_uri in run_ids]
    runs = comparison.training_runs(client, arguments.experiment, run_ids)
    histories = [comparison.read_history(client, run)
                 for run in tqdm(runs, desc="reading runs", unit="run", disable=arguments.no_progress)]

    experiment_id = runs[0].info.experiment_id
    with tracking.derived_run(
            client, experiment_id, "comparison", "analysis/compare_runs.py",
            {"run_names": ",".join(history.name for history in histories), "smoothing": arguments.smoothing},
            run_name=f"comparison-{len(runs)}-runs",
            tags={"ganlab.compared_runs": ",".join(run.info.run_id for run in runs)},
            out=arguments.out) as derived:
        comparison.write_comparison(histories, derived.folder, arguments.smoothing)
        table = (derived.folder / "table.md").read_text()
        derived.metrics = {"runs_compared": float(len(runs))}

    print(table, end="")
    print(tracking.closing_lines(f"compared {len(runs)} runs; logged as run {derived.run_id}", experiment_id,
                                 derived.run_id, tracking_uri, arguments.out))
    return 0


if __name__ == "__main__":
    run_script(main)
