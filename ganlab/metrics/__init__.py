"""Sample quality in ganlab's own Fashion-MNIST feature space: FID, KID, precision/recall, density/coverage,
the class histogram and a classifier score, all from one feature extraction per image set.

Every number travels with its protocol (`protocol()`): the feature space, the sample count and the reference set.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganlab import data
from ganlab.metrics import class_histogram, classifier_score, fid, kid, precision_recall  # noqa: F401 (registers)
from ganlab.metrics.class_histogram import class_histogram_of
from ganlab.metrics.classifier import FEATURE_SPACE, WEIGHTS_SHA256, FashionClassifier, load_classifier
from ganlab.metrics.features import REFERENCE_SET, FeatureSet, extract, generate, reference_features
from ganlab.metrics.registry import METRICS

DEFAULT_SAMPLES = 10_000
HEADLINE_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "class_entropy")


@dataclass
class Evaluation:
    """The numbers of one evaluation, the class histogram, and the protocol that makes them comparable."""

    metrics: dict[str, float]
    class_shares: list[float]
    protocol: dict[str, str]


def protocol(num_samples: int) -> dict[str, str]:
    """What a number needs beside it to mean something (logged as params/tags next to every metric)."""
    return {"eval.feature_space": FEATURE_SPACE, "eval.classifier_sha256": str(WEIGHTS_SHA256),
            "eval.samples": str(num_samples), "eval.reference": REFERENCE_SET}


def compute_metrics(real: FeatureSet, fake: FeatureSet) -> dict[str, float]:
    """Every registered metric of fake against real features."""
    values: dict[str, float] = {}
    for metric in METRICS.values():
        values.update(metric(real, fake))
    return values


class Evaluator:
    """Holds the classifier and the reference features, so evaluating every few epochs costs only the samples."""

    def __init__(self, data_dir: Path, device: torch.device | str):
        self.device = device
        self.data_dir = data_dir
        self.classifier: FashionClassifier = load_classifier(device)
        self.reference = reference_features(self.classifier, data_dir, device)

    def evaluate_images(self, images: torch.Tensor) -> Evaluation:
        """Metrics of a set of images in [-1, 1] against the reference set."""
        fake = extract(self.classifier, images, self.device)
        return Evaluation(compute_metrics(self.reference, fake), class_histogram_of(fake).tolist(),
                          protocol(len(images)))

    def evaluate_real_training_images(self, num_samples: int = DEFAULT_SAMPLES, seed: int = 0) -> Evaluation:
        """Metrics of real training images (a seeded random subset): the floor a perfect generator would reach."""
        train_images, _ = data.load_images(self.data_dir, train=True)
        chosen = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))[:num_samples]
        return self.evaluate_images(data.to_training_tensor(train_images[chosen], "cpu"))

    def evaluate_generator(self, generator: nn.Module, latent_dim: int, num_samples: int = DEFAULT_SAMPLES,
                           seed: int = 0) -> Evaluation:
        """Metrics of `num_samples` images from G (eval mode, latents seeded by `seed`)."""
        return self.evaluate_images(generate(generator, num_samples, latent_dim, seed, self.device))
