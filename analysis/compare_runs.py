"""Compare tracked training runs: overlaid curves, last sample grids side by side, a table of params and metrics.

    python analysis/compare_runs.py --experiment fashion-mnist-gan      # every finished training run in it
    python analysis/compare_runs.py --run-ids ID1,ID2,ID3                # these runs
    python analysis/compare_runs.py --model-uris models:/fashion-gan/1,models:/fashion-gan@champion   # their runs
    python analysis/compare_runs.py --experiment fashion-mnist-gan --out comparison/   # also keep the files

The figures and tables (losses.png, d_outputs.png, fid.png, last_samples.png, table.md, table.csv) are logged
as a new run tagged ganlab.kind=comparison. Quality numbers are in ganlab's fmnist-cnn-v1 feature space.
"""

import argparse
import tempfile
from pathlib import Path

from tqdm import tqdm

from ganlab import comparison, model_registry, tracking
from ganlab.cli import ArgumentParser, run_script
from ganlab.errors import GanlabError


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", help="compare every finished training run of this MLflow experiment")
    source.add_argument("--run-ids", help="compare these training runs (comma-separated ids)")
    source.add_argument("--model-uris", help="compare the training runs of these MLflow Models (comma-separated "
                                             f"{model_registry.MODEL_URI_FORMS})")
    parser.add_argument("--smoothing", type=int, default=100, help="moving-average window of the step curves (default: 100)")
    parser.add_argument("--out", type=Path, help="also keep the files in this new (or empty) folder")
    parser.add_argument("--tracking-uri", help="MLflow store (else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    arguments = parser.parse_args()
    if arguments.smoothing < 1:
        raise GanlabError(f"--smoothing must be at least 1, got {arguments.smoothing}")
    if arguments.out and arguments.out.exists() and (not arguments.out.is_dir() or any(arguments.out.iterdir())):
        raise GanlabError(f"--out {arguments.out} exists and is not an empty folder; nothing is overwritten")
    listed = arguments.run_ids if arguments.run_ids is not None else arguments.model_uris
    run_ids = [entry.strip() for entry in listed.split(",") if entry.strip()] if listed is not None else None
    if listed is not None and not run_ids:
        raise GanlabError(f"--{'run-ids' if arguments.run_ids is not None else 'model-uris'} is empty")

    client = tracking.connect(tracking.resolve_tracking_uri(arguments.tracking_uri))
    if arguments.model_uris:
        run_ids = [model_registry.source_run_id(client, model_uri) for model_uri in run_ids]
    runs = comparison.training_runs(client, arguments.experiment, run_ids)
    histories = [comparison.read_history(client, run)
                 for run in tqdm(runs, desc="reading runs", unit="run", disable=arguments.no_progress)]

    experiment_id = runs[0].info.experiment_id
    with tracking.store_errors("creating the comparison run"):
        comparison_run = client.create_run(experiment_id, run_name=f"comparison-{len(runs)}-runs", tags={
            "ganlab.kind": "comparison", "ganlab.compared_runs": ",".join(run.info.run_id for run in runs),
            "mlflow.source.name": "analysis/compare_runs.py"})
    try:
        with tempfile.TemporaryDirectory() as scratch:
            out_dir = arguments.out or Path(scratch)
            out_dir.mkdir(parents=True, exist_ok=True)
            comparison.write_comparison(histories, out_dir, arguments.smoothing)
            table = (out_dir / "table.md").read_text()
            with tracking.store_errors("logging the comparison"):
                client.log_batch(comparison_run.info.run_id, params=[
                    tracking.mlflow_param("run_names", ",".join(history.name for history in histories)),
                    tracking.mlflow_param("smoothing", arguments.smoothing)])
            tracking.finish_derived_run(client, comparison_run.info.run_id, out_dir, {"runs_compared": float(len(runs))})
    except BaseException:
        client.set_terminated(comparison_run.info.run_id, "FAILED")
        raise

    print(table, end="")
    print(f"compared {len(runs)} runs; logged as run {comparison_run.info.run_id}\n"
          + (f"  files: {arguments.out}\n" if arguments.out else "")
          + f"  MLflow UI: `make ui`, then {tracking.run_url(experiment_id, comparison_run.info.run_id)}")
    return 0


if __name__ == "__main__":
    run_script(main)
