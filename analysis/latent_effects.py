"""The reports' latent study of a tracked generator, reproduced exactly and then measured, logged to MLflow.

    python analysis/latent_effects.py --run-id RUN_ID                        # dims 10,20,37,53,67; offsets ±2…±10
    python analysis/latent_effects.py --run-id RUN_ID --preset report-2025   # the first report's figures, exactly
    python analysis/latent_effects.py --run-id RUN_ID --preset report-2023   # the second report's figures, exactly
    python analysis/latent_effects.py --run-id RUN_ID --set 1=0,10,100 --set 70=-10,10,100 --set 99=-50,-10,10
    python analysis/latent_effects.py --run-id RUN_ID --z-file z.npy         # your own latent batch [N, 100]
    python analysis/latent_effects.py --run-id RUN_ID --out latent-study/    # also keep the files here
    python analysis/latent_effects.py --model-uri models:/fashion-gan@champion   # a registered generator

Dims are 0-based indices: a report's "2nd, 71st, 100th number" are dims 1, 70, 99. Flags given beside --preset
override it. Classes are predicted by ganlab's fmnist-cnn-v1 classifier. The results go to a new run in the source
run's experiment, tagged ganlab.kind=latent-analysis, ganlab.source_run_id and ganlab.preset.
"""

import dataclasses

from tqdm import tqdm

from ganlab import cli, model_registry, tracking
from ganlab.cli import ArgumentParser, add_common_flags, add_config_arguments, explicit_fields, run_script, script_parser
from ganlab.claims import SourceRun
from ganlab.errors import GanlabError
from ganlab.latent_study import LatentStudyConfig, planned_effect_count, run_study
from ganlab.metrics.classifier import FEATURE_SPACE, load_classifier
from ganlab.devices import resolve_device


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    model_registry.add_generator_flags(parser, "to study", "the study is linked to the run that trained it")
    add_config_arguments(parser, LatentStudyConfig)
    add_common_flags(parser, device=True, out="the files", progress=True)
    parser.add_argument("--experiment", help="log to this experiment (default: the source run's)")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    given = explicit_fields(arguments, LatentStudyConfig)
    if "z_seed" in given and "z_file" in given:
        raise GanlabError("give --z-seed or --z-file, not both")
    config = LatentStudyConfig.from_flags(given)
    cli.empty_folder(arguments.out)  # checked before minutes of work

    device = resolve_device(arguments.device)
    tracking_uri = tracking.resolve_tracking_uri(arguments.tracking_uri)
    client = tracking.connect(tracking_uri)
    loaded = model_registry.open_generator(client, arguments.run_id, arguments.model_uri, device)
    source_run, generator = tracking.get_run(client, loaded.run_id), loaded.generator
    total = planned_effect_count(config, generator.latent_dim)  # also checks every setting before a run exists
    classifier = load_classifier(device)

    experiment_id = tracking.derived_experiment(client, arguments.experiment, source_run)
    with tracking.derived_run(
            client, experiment_id, "latent-analysis", "analysis/latent_effects.py",
            {**dataclasses.asdict(config), "source_run_id": loaded.run_id, "feature_space": FEATURE_SPACE,
             "device": str(device), **({"source_model_uri": arguments.model_uri} if arguments.model_uri else {})},
            run_name=f"latent-analysis-{source_run.info.run_name}", tags={**tracking.source_tags(source_run),
                                              "ganlab.preset": config.preset or "none"},
            out=arguments.out) as derived:
        with tqdm(total=total, desc="latent effects", unit="effect", disable=arguments.no_progress) as progress:
            derived.metrics = run_study(config, generator, classifier, device, derived.folder,
                                        SourceRun.of(source_run), progress.update)

    artifact_dir = tracking.local_artifact_dir(client, derived.run_id)
    findings = (artifact_dir / "summary.md") if artifact_dir else "summary.md in the run's artifacts"
    subject = f"{arguments.model_uri} (run {loaded.run_id})" if arguments.model_uri else f"run {loaded.run_id}"
    print(tracking.closing_lines(f"latent study of {subject} logged as run {derived.run_id} ({total} measured effects)",
                                 experiment_id, derived.run_id, tracking_uri, arguments.out, (f"findings: {findings}",)))
    return 0


if __name__ == "__main__":
    run_script(main)
