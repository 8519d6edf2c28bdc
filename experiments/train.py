"""Train one of the reports' GANs on Fashion-MNIST, every step tracked in MLflow.

    python experiments/train.py --arch mlp                  # the first report's MLP GAN, 20 epochs
    python experiments/train.py --arch cnn --epochs 5       # the first report's CNN GAN
    python experiments/train.py --arch mlp-small            # the second report's small MLP GAN
    python experiments/train.py --arch cnn --print-models   # print(D), print(G) and parameter counts
    python experiments/train.py --resume RUN_ID             # continue an interrupted run
    python experiments/train.py --arch mlp --max-steps 50   # a smoke run
    python experiments/train.py --arch cnn --register-model fashion-gan   # also a registry version (docs/models.md)
    torchrun --nproc-per-node 2 experiments/train.py --arch cnn   # data-parallel on 2 GPUs (gloo on CPUs)

Open the runs with `make ui` (http://127.0.0.1:5000).
"""

import dataclasses

import ganlab.models
from ganlab import distributed, model_registry, tracking
from ganlab.cli import ArgumentParser, add_config_arguments, explicit_fields, run_script, script_parser
from ganlab.errors import GanlabError, TrainingInterrupted
from ganlab.train import RESUMABLE_OVERRIDES, TrainConfig, config_of_run, train


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    add_config_arguments(parser, TrainConfig)
    parser.add_argument("--resume", metavar="RUN_ID", help="continue this unfinished run from its last checkpoint")
    parser.add_argument("--print-models", action="store_true", help="print D, then G, with parameter counts; exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    given = explicit_fields(arguments, TrainConfig)

    if arguments.resume:
        not_allowed = sorted(set(given) - set(RESUMABLE_OVERRIDES))
        if not_allowed:
            flags = ", ".join("--" + name.replace("_", "-") for name in not_allowed)
            raise GanlabError(f"--resume takes every training setting from the run; drop {flags}")
        client = tracking.connect(tracking.resolve_tracking_uri(given.get("tracking_uri")))
        config = dataclasses.replace(config_of_run(client, arguments.resume), **given)
    else:
        config = TrainConfig(**given)
    config.validate()

    if arguments.print_models:
        generator, discriminator = ganlab.models.build_models(config.arch, config.latent_dim)
        print(ganlab.models.model_summary(generator, discriminator), end="")
        return 0

    try:
        result = train(config, resume_run_id=arguments.resume, show_progress=not arguments.no_progress)
    except TrainingInterrupted as interruption:
        if not distributed.ranks_from_environment().is_main:
            return 128 + interruption.signal_number
        print(f"stopped: checkpoint written, run {interruption.run_id} marked KILLED; "
              f"continue with: python experiments/train.py --resume {interruption.run_id}")
        return 128 + interruption.signal_number

    if not distributed.ranks_from_environment().is_main:
        return 0  # rank 0 reports for the whole torchrun job
    tracking_uri = tracking.resolve_tracking_uri(config.tracking_uri)
    losses = ", ".join(f"{name}={value:.3f}" for name, value in result.final_step_values.items())
    print(f"run {result.run_id} ({config.arch}, {result.precision}) finished in {result.wall_seconds:.1f} s: "
          f"{losses}\n"
          f"  artifacts: {result.artifact_uri}\n"
          f"  MLflow Model: runs:/{result.run_id}/{model_registry.MODEL_NAME} (serve it: docs/models.md)\n"
          + (f"  {result.registration.summary()}\n" if result.registration else "")
          + f"  {tracking.ui_hint(result.experiment_id, result.run_id, tracking_uri)}")
    return 0


if __name__ == "__main__":
    run_script(main)
