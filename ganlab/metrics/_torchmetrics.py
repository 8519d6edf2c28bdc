"""Glue for torchmetrics: feed it features that ganlab's classifier already extracted.

torchmetrics' FID, KID and Inception Score accept any feature module. All of ganlab's metrics share
one extraction pass, so the module handed to torchmetrics is the identity on those features.
Its random subsets and permutations are drawn under a fixed seed, so the same inputs give the same number.
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class PrecomputedFeatures(nn.Module):
    """The identity, with the `num_features` attribute torchmetrics reads from custom feature modules."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """torchmetrics draws subsets from the global RNG: fix it inside, leave the caller's stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def quietly(metric_class, **options):
    """A torchmetrics metric, without its warning that KID and IS keep every feature (10k × 128 is 10 MB)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Metric `.*` will save all extracted features")
        return metric_class(**options)
