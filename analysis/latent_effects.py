"""The reports' latent study of a tracked generator, reproduced exactly and then measured, logged to MLflow.

    python analysis/latent_effects.py --run-id RUN_ID                        # dims 10,20,37,53,67; offsets ±2…±10
    python analysis/latent_effects.py --run-id RUN_ID --dims 2,71,99 --values=-10,10,100   # "=" before a minus
    python analysis/latent_effects.py --run-id RUN_ID --z-file z.npy         # your own latent batch [N, 100]
    python analysis/latent_effects.py --run-id RUN_ID --out latent-study/    # also keep the files here
    python analysis/latent_effects.py --model-uri models:/fashion-gan@champion   # a registered generator

Dims are 0-based. Classes are predicted by ganlab's fmnist-cnn-v1 classifier. The results go to a new run in the
source run's experiment, tagged ganlab.kind=latent-analysis and ganlab.source_run_id.
"""

import argparse
import dataclasses
import tempfile
from pathlib import Path

from tqdm import tqdm

from ganlab import model_registry, tracking
from ganlab.cli import ArgumentParser, add_config_arguments, explicit_fields, run_script
from ganlab.errors import GanlabError
from ganlab.latent_study import LatentStudyConfig, planned_effect_count, run_study
from ganlab.metrics.classifier import FEATURE_SPACE, load_classifier
from ganlab.train import resolve_device


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="the training run whose generator to study")
    source.add_argument("--model-uri", help=f"the generator of this MLflow Model ({model_registry.MODEL_URI_FORMS}); "
                                            "the study is linked to the run that trained it")
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
    config = LatentStudyConfig(**given)
    if arguments.out and arguments.out.exists() and (not arguments.out.is_dir() or any(arguments.out.iterdir())):
        raise GanlabError(f"--out {arguments.out} exists and is not an empty folder; nothing is overwritten")

    device = resolve_device(arguments.device)
    tracking_uri = tracking.resolve_tracking_uri(arguments.tracking_uri)
    client = tracking.connect(tracking_uri)
    loaded = model_registry.open_generator(client, arguments.run_id, arguments.model_uri, device)
    source_run_id, generator = loaded.run_id, loaded.generator
    source_run = tracking.get_run(client, source_run_id)
    total = planned_effect_count(config, generator.latent_dim)  # also checks every setting before a run exists
    classifier = load_classifier(device)

    run_id, experiment_id = tracking.start_derived_run(
        client, source_run, "latent-analysis", "analysis/latent_effects.py",
        {**dataclasses.asdict(config), "source_run_id": source_run_id, "feature_space": FEATURE_SPACE,
         "device": str(device), **({"source_model_uri": arguments.model_uri} if arguments.model_uri else {})},
        arguments.experiment)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            out_dir = arguments.out or Path(scratch)
            out_dir.mkdir(parents=True, exist_ok=True)
            with tqdm(total=total, desc="latent effects", unit="effect", disable=arguments.no_progress) as progress:
                headline = run_study(config, generator, classifier, device, out_dir, source_run_id,
                                     progress.update)
            tracking.finish_derived_run(client, run_id, out_dir, headline)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise

    artifact_dir = tracking.local_artifact_dir(client, run_id)
    findings = (artifact_dir / "summary.md") if artifact_dir else "summary.md in the run's artifacts"
    subject = f"{arguments.model_uri} (run {source_run_id})" if arguments.model_uri else f"run {source_run_id}"
    print(f"latent study of {subject} logged as run {run_id} ({total} measured effects)\n"
          f"  findings: {findings}\n"
          + (f"  files: {arguments.out}\n" if arguments.out else "")
          + f"  MLflow UI: `make ui`, then {tracking.run_url(experiment_id, run_id)}")
    return 0


if __name__ == "__main__":
    run_script(main)
