"""Train the metrics classifier (the yardstick of FID, KID, precision/recall, …) and save it as safetensors.

    python experiments/train_evaluator.py                        # writes ganlab/metrics/weights/fmnist-cnn-v1.safetensors
    python experiments/train_evaluator.py --out /tmp/ruler.safetensors --epochs 2

ganlab ships the weights this made, pinned by sha256 in ganlab/metrics/classifier.py; run it only to
check that they can be reproduced or to build a new feature space (give it a new name then).
"""

import hashlib
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from ganlab import data
from ganlab.cli import DATA_DIR_HELP, ArgumentParser, run_script, script_parser
from ganlab.errors import GanlabError
from ganlab.metrics.classifier import WEIGHTS_PATH, train_classifier

MIN_TEST_ACCURACY = 0.92


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training set (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, batch order and flips (default: 0)")
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH, help=f"where to write (default: {WEIGHTS_PATH})")
    parser.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if arguments.out.exists() and not arguments.force:
        raise GanlabError(f"{arguments.out} exists; pass --force to overwrite it")

    root = data.resolve_data_dir(arguments.data_dir)
    data.prepare_fashion_mnist(root)
    train_images, train_labels = data.load_images(root, train=True)
    test_images, test_labels = data.load_images(root, train=False)
    train_images, test_images = data.to_training_tensor(train_images, "cpu"), data.to_training_tensor(test_images, "cpu")

    start = time.perf_counter()
    with tqdm(total=arguments.epochs * (len(train_images) // 128), unit="step") as progress:
        classifier, test_accuracy = train_classifier(train_images, train_labels, test_images, test_labels,
                                                     epochs=arguments.epochs, seed=arguments.seed, progress=progress)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in classifier.state_dict().items()}, str(arguments.out),
              metadata={"test_accuracy": f"{test_accuracy:.4f}", "epochs": str(arguments.epochs),
                        "seed": str(arguments.seed), "torch_version": torch.__version__})
    sha256 = hashlib.sha256(arguments.out.read_bytes()).hexdigest()
    print(f"test accuracy {test_accuracy:.4f} after {arguments.epochs} epochs in {time.perf_counter() - start:.0f} s; "
          f"wrote {arguments.out} ({arguments.out.stat().st_size / 1e6:.1f} MB, sha256 {sha256})")
    if test_accuracy < MIN_TEST_ACCURACY:
        raise GanlabError(f"test accuracy {test_accuracy:.4f} is below {MIN_TEST_ACCURACY}: not fit to be the yardstick")
    return 0


if __name__ == "__main__":
    run_script(main)
