"""The reports' latent study of a tracked generator, reproduced exactly and then measured, logged to MLflow.

    python analysis/latent_effects.py --run-id RUN_ID                        # dims 10,20,37,53,67; offsets ±2…±10
    python analysis/latent_effects.py --run-id RUN_ID --preset report-2025   # the first report's figures, exactly
    python analysis/latent_effects.py --run-id RUN_ID --preset report-2023   # the second report's figures, exactly
    python analysis/latent_effects.py --run-id RUN_ID --set 1=0,10,100 --set 70=-10,10,100 --set 99=-50,-10,10
    python analysis/latent_effects.py --run-id RUN_ID --z-file z.npy         # your own latent batch [N, 100]
    python analysis/latent_effects.py --run-id RUN_ID --out latent-study/    # also keep the files here

Dims are 0-based indices: a report's "2nd, 71st, 100th number" are dims 1, 70, 99. Flags given beside --preset
override it. Classes are predicted by ganlab's fmnist-cnn-v1 classifier. The results go to a new run in the source
run's experiment, tagged ganlab.kind=latent-analysis, ganlab.source_run_id and ganlab.preset.
"""

import argparse
import dataclasses
import tempfile
from pathlib import Path

from tqdm import tqdm

from ganlab import tracking
from ganlab.cli import ArgumentParser, add_config_arguments, explicit_fields, run_script
from ganlab.claims import SourceRun
from ganlab.errors import GanlabError
from ganlab.latent_study import LatentStudyConfig, planned_effect_count, run_study
from ganlab.metrics.classifier import FEATURE_SPACE, load_classifier
from ganlab.devices import resolve_device


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-id", required=True, help="the training run whose generator to study")
    add_config_arguments(parser, LatentStudyConfig)
    parser.add_argument("--out", type=Path, help="also keep the files in this new (or empty) folder")
    parser.add_argument("--device", default="auto", help="cpu, cuda, … (default: auto)")
    parser.add_argument("--tracking-uri", help="MLflow store (else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--experiment", help="log to this experiment (default: the source run's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    arguments = parser.parse_args()
    given = explicit_fields(arguments, LatentStudyConfig)
    if "z_seed" in given and "z_file" in given:
        raise GanlabError("give --z-seed or --z-file, not both")
    config = LatentStudyConfig.from_flags(given)
    if arguments.out and arguments.out.exists() and (not arguments.out.is_dir() or any(arguments.out.iterdir())):
        raise GanlabError(f"--out {arguments.out} exists and is not an empty folder; nothing is overwritten")

    device = resolve_device(arguments.device)
    tracking_uri = tracking.resolve_tracking_uri(arguments.tracking_uri)
    client = tracking.connect(tracking_uri)
    source_run = tracking.get_run(client, arguments.run_id)
    generator = tracking.load_generator(arguments.run_id, tracking_uri, device)
    total = planned_effect_count(config, generator.latent_dim)  # also checks every setting before a run exists
    classifier = load_classifier(device)

    run_id, experiment_id = tracking.start_derived_run(
        client, source_run, "latent-analysis", "analysis/latent_effects.py",
        {**dataclasses.asdict(config), "source_run_id": arguments.run_id, "feature_space": FEATURE_SPACE,
         "device": str(device)}, arguments.experiment, tags={"ganlab.preset": config.preset or "none"})
    try:
        with tempfile.TemporaryDirectory() as scratch:
            out_dir = arguments.out or Path(scratch)
            out_dir.mkdir(parents=True, exist_ok=True)
            with tqdm(total=total, desc="latent effects", unit="effect", disable=arguments.no_progress) as progress:
                headline = run_study(config, generator, classifier, device, out_dir, SourceRun.of(source_run),
                                     progress.update)
            tracking.finish_derived_run(client, run_id, out_dir, headline)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise

    artifact_dir = tracking.local_artifact_dir(client, run_id)
    findings = (artifact_dir / "summary.md") if artifact_dir else "summary.md in the run's artifacts"
    print(f"latent study of run {arguments.run_id} logged as run {run_id} ({total} measured effects)\n"
          f"  findings: {findings}\n"
          + (f"  files: {arguments.out}\n" if arguments.out else "")
          + f"  MLflow UI: `make ui`, then {tracking.run_url(experiment_id, run_id)}")
    return 0


if __name__ == "__main__":
    run_script(main)
