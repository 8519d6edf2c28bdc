"""Measure a tracked generator's sample quality and write the numbers to its MLflow run.

    python experiments/evaluate.py --run-id RUN_ID                   # 10k samples, FID, KID, precision, …
    python experiments/evaluate.py --run-id RUN_ID --json            # one JSON object on stdout
    python experiments/evaluate.py --run-id RUN_ID --samples 2000    # quicker, noisier
    python experiments/evaluate.py --model-uri models:/fashion-gan@champion   # a registered generator
    python experiments/evaluate.py --real-floor                      # 10k real training images: the floor

All numbers are in ganlab's own Fashion-MNIST feature space (fmnist-cnn-v1), against the 10k test images;
they are comparable only with numbers from the same feature space.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ganlab import data, metrics, model_registry, tracking
from ganlab.metrics import inception
from ganlab.metrics.features import generate
from ganlab.cli import ArgumentParser, run_script
from ganlab.errors import GanlabError
from ganlab.train import resolve_device


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="the training run whose generator to measure")
    source.add_argument("--model-uri", help=f"the generator of this MLflow Model ({model_registry.MODEL_URI_FORMS}); "
                                            "the numbers go to the run that trained it")
    source.add_argument("--real-floor", action="store_true",
                        help="measure real training images instead of samples: the best a generator can hope for")
    parser.add_argument("--samples", type=int, default=metrics.DEFAULT_SAMPLES, help="generated samples (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample latents (default: 0)")
    parser.add_argument("--features", choices=["fmnist", "inception"], default="fmnist",
                        help="fmnist: ganlab's classifier (fmnist-cnn-v1, every metric); inception: standard FID only")
    parser.add_argument("--inception-weights", type=Path, help="torch-fidelity's pt_inception-2015-12-05 file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--data-dir", help="Fashion-MNIST root (else $GANLAB_DATA_DIR, else data/)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, … (default: auto)")
    parser.add_argument("--tracking-uri", help="MLflow store (else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--experiment", help="accepted for symmetry with the other scripts; the run names its own")
    arguments = parser.parse_args()
    if arguments.samples < 2:
        raise GanlabError(f"--samples must be at least 2, got {arguments.samples}")

    device = resolve_device(arguments.device)
    data_dir = data.resolve_data_dir(arguments.data_dir)
    if not arguments.real_floor:
        # --model-uri: measure its generator and log the numbers to the training run it came from.
        client = tracking.connect(tracking.resolve_tracking_uri(arguments.tracking_uri))
        loaded = model_registry.open_generator(client, arguments.run_id, arguments.model_uri, device)
        arguments.run_id, generator = loaded.run_id, loaded.generator
    if arguments.features == "inception":
        return standard_fid(arguments, device, data_dir, None if arguments.real_floor else generator)
    if arguments.real_floor:
        start = time.perf_counter()
        evaluation = metrics.Evaluator(data_dir, device).evaluate_real_training_images(arguments.samples, arguments.seed)
        where = "not logged (no run)"
    else:
        start = time.perf_counter()
        evaluation = metrics.Evaluator(data_dir, device).evaluate_generator(
            generator, generator.latent_dim, arguments.samples, arguments.seed)
        # Logged at the run's last epoch, so the numbers line up with those logged while training.
        tracking.log_evaluation(client, arguments.run_id, evaluation,
                                step=tracking.last_logged_step(client, arguments.run_id, "epoch_loss_g"))
        where = f"logged to run {arguments.run_id} (metrics, protocol tags, eval/evaluate.json)"
    seconds = time.perf_counter() - start

    if arguments.json:
        print(json.dumps({"run_id": arguments.run_id, "model_uri": arguments.model_uri,
                          **dataclasses.asdict(evaluation), "seconds": seconds}))
    else:
        rows = "\n".join(f"  {name:<22} {value:.4f}" for name, value in evaluation.metrics.items())
        subject = ("real training images" if arguments.real_floor
                   else f"samples of {arguments.model_uri} (run {arguments.run_id})" if arguments.model_uri
                   else f"samples of run {arguments.run_id}")
        print(f"{arguments.samples} {subject} in the {metrics.FEATURE_SPACE} feature space against "
              f"{evaluation.protocol['eval.reference']} ({seconds:.1f} s):\n{rows}\n  {where}")
    return 0


def standard_fid(arguments: argparse.Namespace, device, data_dir: Path, generator) -> int:
    """FID in Inception-v3 space (needs the weights file), logged as `fid_inception`."""
    weights_path = inception.check_inception_available(arguments.inception_weights)
    data.prepare_fashion_mnist(data_dir)
    test_images, _ = data.load_images(data_dir, train=False)
    if arguments.real_floor:
        train_images, _ = data.load_images(data_dir, train=True)
        fake_images = data.to_training_tensor(train_images[: arguments.samples], "cpu")
    else:
        fake_images = generate(generator, arguments.samples, generator.latent_dim, arguments.seed, device).cpu()
    fid_inception = inception.inception_fid(data.to_training_tensor(test_images, "cpu"), fake_images, weights_path, device)
    if not arguments.real_floor:
        client = tracking.connect(tracking.resolve_tracking_uri(arguments.tracking_uri))
        step = tracking.last_logged_step(client, arguments.run_id, "epoch_loss_g")
        client.log_metric(arguments.run_id, "fid_inception", fid_inception, step=step)
        client.set_tag(arguments.run_id, "eval.inception_samples", str(arguments.samples))
    print(json.dumps({"fid_inception": fid_inception, "feature_space": inception.FEATURE_SPACE,
                      "samples": arguments.samples}) if arguments.json
          else f"FID {fid_inception:.3f} in {inception.FEATURE_SPACE} space ({arguments.samples} samples vs 10k test)")
    return 0


if __name__ == "__main__":
    run_script(main)
