"""Measure a tracked generator's sample quality and write the numbers to its MLflow run.

    python experiments/evaluate.py --run-id RUN_ID                   # 10k samples, FID, KID, precision, …
    python experiments/evaluate.py --run-id RUN_ID --json            # one JSON object on stdout
    python experiments/evaluate.py --run-id RUN_ID --samples 2000    # quicker, noisier
    python experiments/evaluate.py --model-uri models:/fashion-gan@champion   # a registered generator
    python experiments/evaluate.py --real-floor                      # 10k real training images: the floor
    python experiments/evaluate.py --run-id RUN_ID --features inception   # standard FID/KID (after `make inception`)

By default the numbers are in ganlab's own Fashion-MNIST feature space (fmnist-cnn-v1), against the 10k test images;
they are comparable only with numbers from the same feature space. `--features inception` gives the standard
Inception FID and KID that papers report, logged as fid_inception / kid_inception with their protocol as
eval.inception.* tags; it is slow on a CPU (about 20 minutes per 10k images; the test images' features are cached).
"""

import dataclasses
import json
import time

from ganlab import data, metrics, model_registry, tracking
from ganlab.cli import ArgumentParser, add_common_flags, run_script, script_parser
from ganlab.errors import GanlabError
from ganlab.devices import resolve_device
from ganlab.metrics import inception


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    source = model_registry.add_generator_flags(parser, "to measure", "the numbers go to the run that trained it")
    source.add_argument("--real-floor", action="store_true",
                        help="measure real training images instead of samples: the best a generator can hope for")
    parser.add_argument("--samples", type=int, default=metrics.DEFAULT_SAMPLES, help="generated samples (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample latents (default: 0)")
    parser.add_argument("--features", choices=["fmnist", "inception"], default="fmnist",
                        help="fmnist: ganlab's classifier (fmnist-cnn-v1, every metric); inception: standard FID "
                             "and KID in Inception-v3 space (default: fmnist)")
    parser.add_argument("--reference-images", type=int, default=inception.REFERENCE_IMAGES,
                        help="with --features inception: the first N test images as the reference (default: all "
                             "10000; fewer is quicker and biases FID upwards)")
    add_common_flags(parser, device=True, data_dir=True, json_output=True, progress=True)
    parser.add_argument("--experiment", help="accepted for symmetry with the other scripts; the run names its own")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if arguments.samples < 2:
        raise GanlabError(f"--samples must be at least 2, got {arguments.samples}")

    device = resolve_device(arguments.device)
    data_dir = data.resolve_data_dir(arguments.data_dir)
    generator = None
    if not arguments.real_floor:  # the run first: a wrong id must not wait for the reference features
        client = tracking.connect(tracking.resolve_tracking_uri(arguments.tracking_uri))
        # --model-uri: measure its generator and log the numbers to the training run it came from.
        loaded = model_registry.open_generator(client, arguments.run_id, arguments.model_uri, device)
        arguments.run_id, generator = loaded.run_id, loaded.generator
    start = time.perf_counter()
    if arguments.features == "inception":
        evaluator = inception.InceptionEvaluator(data_dir, device, arguments.reference_images,
                                                 progress=not arguments.no_progress)
        feature_space, reference_tag = inception.FEATURE_SPACE, "eval.inception.reference"
        artifact_file = "eval/inception.json"
    else:
        evaluator = metrics.Evaluator(data_dir, device)
        feature_space, reference_tag, artifact_file = metrics.FEATURE_SPACE, "eval.reference", "eval/evaluate.json"
    if generator is None:
        evaluation = evaluator.evaluate_real_training_images(arguments.samples, arguments.seed)
        where = "not logged (no run)"
    else:
        evaluation = evaluator.evaluate_generator(generator, generator.latent_dim, arguments.samples, arguments.seed)
        # Logged at the run's last epoch, so the numbers line up with those logged while training.
        tracking.log_evaluation(client, arguments.run_id, evaluation,
                                step=tracking.last_logged_step(client, arguments.run_id, "epoch_loss_g"),
                                artifact_file=artifact_file)
        where = f"logged to run {arguments.run_id} (metrics, protocol tags, {artifact_file})"
    seconds = time.perf_counter() - start

    if arguments.json:
        print(json.dumps({"run_id": arguments.run_id, "model_uri": arguments.model_uri,
                          **dataclasses.asdict(evaluation), "seconds": seconds}))
    else:
        rows = "\n".join(f"  {name:<22} {value:.4f}" for name, value in evaluation.metrics.items())
        subject = ("real training images" if arguments.real_floor
                   else f"samples of {arguments.model_uri} (run {arguments.run_id})" if arguments.model_uri
                   else f"samples of run {arguments.run_id}")
        print(f"{arguments.samples} {subject} in the {feature_space} feature space against "
              f"{evaluation.protocol[reference_tag]} ({seconds:.1f} s):\n{rows}\n  {where}")
    return 0


if __name__ == "__main__":
    run_script(main)
