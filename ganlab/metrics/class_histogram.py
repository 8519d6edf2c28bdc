"""Mode coverage: the classifier's class histogram of the generated samples, its entropy and KL to uniform.

Fashion-MNIST's test set is exactly uniform over its 10 classes, so a generator that drops or favours a class
shows it here plainly: entropy below ln 10 ≈ 2.303 nats, KL to uniform above 0.
"""

import math

import torch

from ganlab.metrics.features import FeatureSet
from ganlab.metrics.registry import register_metric


def class_histogram_of(features: FeatureSet) -> torch.Tensor:
    """Share of samples predicted as each class (arg-max of the logits)."""
    counts = torch.bincount(features.logits.argmax(dim=1), minlength=features.logits.shape[1]).double()
    return counts / counts.sum()


@register_metric
def class_histogram(real: FeatureSet, fake: FeatureSet) -> dict[str, float]:
    shares = class_histogram_of(fake)
    present = shares[shares > 0]
    entropy = float(-(present * present.log()).sum()) + 0.0  # + 0.0 turns -0.0 (one class only) into 0.0
    return {"class_entropy": entropy, "class_kl_uniform": math.log(len(shares)) - entropy}
