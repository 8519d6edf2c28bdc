"""The two reports' claims about their latent numbers, each given a measured verdict, logged to MLflow.

    python analysis/claims.py --run-id A --run-id B --run-id C               # e.g. three seeds of one arch
    python analysis/claims.py --run-id A --run-id B --run-id C --out claims/ # also keep the files here

Each claim (quoted in Chinese, translated) is tested on every generator (each trained with its own seed), then
judged on the generators of the architecture its report studied (mlp for the 2025 report, mlp-small for the 2023
one): holds on all, on none, or depends on the trained G. It also asks whether any latent index means the same
thing across generators of one architecture. Classes are predicted by ganlab's fmnist-cnn-v1 classifier. The
results go to a new run in the first run's experiment, tagged ganlab.kind=latent-claims and
ganlab.source_run_ids.
"""

import dataclasses

from tqdm import tqdm

from ganlab import cli, tracking
from ganlab.claim_verdicts import write_claims
from ganlab.claims import ClaimsSettings, Measurements, SourceRun, planned_count
from ganlab.cli import ArgumentParser, add_common_flags, add_config_arguments, explicit_fields, run_script, script_parser
from ganlab.errors import GanlabError
from ganlab.metrics.classifier import FEATURE_SPACE, load_classifier
from ganlab.devices import resolve_device


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--run-id", action="append", required=True, dest="run_ids", metavar="RUN_ID",
                        help="a training run whose generator to test; once per generator (3 or more seeds)")
    add_config_arguments(parser, ClaimsSettings)
    add_common_flags(parser, device=True, out="the files", progress=True)
    parser.add_argument("--experiment", help="log to this experiment (default: the first run's)")
    return parser


def main() -> int:
    parser = build_parser()
    arguments = parser.parse_args()
    settings = ClaimsSettings(**explicit_fields(arguments, ClaimsSettings))
    settings.validate()
    repeated = sorted({run_id for run_id in arguments.run_ids if arguments.run_ids.count(run_id) > 1})
    if repeated:
        raise GanlabError(f"--run-id {repeated[0]} is given twice; each generator counts once")
    cli.empty_folder(arguments.out)  # checked before minutes of work

    device = resolve_device(arguments.device)
    tracking_uri = tracking.resolve_tracking_uri(arguments.tracking_uri)
    client = tracking.connect(tracking_uri)
    runs = [tracking.get_run(client, run_id) for run_id in arguments.run_ids]
    generators = [tracking.load_generator(run_id, tracking_uri, device) for run_id in arguments.run_ids]
    for run_id, generator in zip(arguments.run_ids, generators):
        if planned_count(generator.latent_dim, settings.random_directions) == 0:
            raise GanlabError(f"run {run_id}'s generator has a {generator.latent_dim}-dim z; the reports' claims "
                              "name indices up to 99 of a 100-dim z")
    classifier = load_classifier(device)

    total = sum(planned_count(generator.latent_dim, settings.random_directions) for generator in generators)
    experiment_id = tracking.derived_experiment(client, arguments.experiment, runs[0])
    with tracking.derived_run(
            client, experiment_id, "latent-claims", "analysis/claims.py",
            {**dataclasses.asdict(settings), "source_run_ids": ",".join(arguments.run_ids),
             "feature_space": FEATURE_SPACE, "device": str(device)},
            run_name=f"latent-claims-{len(runs)}-generators",
            tags={**tracking.source_tags(runs[0]), "ganlab.source_run_ids": ",".join(arguments.run_ids)},
            out=arguments.out) as derived:
        with tqdm(total=total, desc="claims", unit="change", disable=arguments.no_progress) as progress:
            measurements = {SourceRun.of(run): Measurements(generator.eval(), classifier, device, settings,
                                                            progress.update)
                            for run, generator in zip(runs, generators)}
        derived.metrics = write_claims(derived.folder, measurements, settings)
        verdict_table = _verdict_table((derived.folder / "claims.md").read_text(encoding="utf-8"))
    run_id = derived.run_id

    artifact_dir = tracking.local_artifact_dir(client, run_id)
    findings = (artifact_dir / "claims.md") if artifact_dir else "claims.md in the run's artifacts"
    print(verdict_table)
    print(tracking.closing_lines(f"claims tested on {len(runs)} generators, logged as run {run_id}", experiment_id,
                                 run_id, tracking_uri, arguments.out, (f"verdicts and evidence: {findings}",)))
    return 0


def _verdict_table(markdown: str) -> str:
    """The verdicts table of claims.md, as printed."""
    section = markdown.split("## Verdicts", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


if __name__ == "__main__":
    run_script(main)
