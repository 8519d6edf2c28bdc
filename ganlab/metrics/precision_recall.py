"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
Generative Models"), k = 3, and density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics
for Generative Models"), k = 5, as in the papers and the `prdc` package's README.

Precision: share of generated samples inside the k-NN balls of the real ones (fidelity). Recall: share of real
samples inside the k-NN balls of the generated ones (diversity). Density counts how many real balls hold each
generated sample (robust to real outliers); coverage is the share of real balls that hold a generated sample.
All four come from the three pairwise distance matrices, computed once with torch (the `prdc` package computes
them anew per k with scikit-learn, and a test checks these numbers against it).
"""

import torch

from ganlab.metrics.features import FeatureSet
from ganlab.metrics.registry import register_metric

PRECISION_RECALL_K = 3
DENSITY_COVERAGE_K = 5
ROWS_PER_CHUNK = 2048  # bounds the memory of one distance block


def kth_neighbour_distances(features: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """For each k: distance from each point to its k-th nearest other point of the same set (one pass for all k)."""
    largest_k = max(ks)
    nearest = []
    for start in range(0, len(features), ROWS_PER_CHUNK):
        distances = torch.cdist(features[start:start + ROWS_PER_CHUNK], features)
        nearest.append(distances.topk(largest_k + 1, dim=1, largest=False).values)  # column 0: the point itself
    nearest_distances = torch.cat(nearest)
    return {k: nearest_distances[:, k] for k in ks}


def prdc(real_features: torch.Tensor, fake_features: torch.Tensor, precision_recall_k: int = PRECISION_RECALL_K,
         density_coverage_k: int = DENSITY_COVERAGE_K) -> dict[str, float]:
    """Precision, recall (k=3) and density, coverage (k=5) of fake against real features."""
    real_features, fake_features = real_features.double(), fake_features.double()
    real_radii = kth_neighbour_distances(real_features, (precision_recall_k, density_coverage_k))
    fake_radii = kth_neighbour_distances(fake_features, (precision_recall_k,))[precision_recall_k]
    precise_fakes, density_hits = 0, 0
    recalled_reals = torch.zeros(len(real_features), dtype=torch.bool)
    covered_reals = torch.zeros(len(real_features), dtype=torch.bool)
    for start in range(0, len(fake_features), ROWS_PER_CHUNK):
        distances = torch.cdist(fake_features[start:start + ROWS_PER_CHUNK], real_features)  # [fake, real]
        precise_fakes += int((distances < real_radii[precision_recall_k][None, :]).any(dim=1).sum())
        inside_density_balls = distances < real_radii[density_coverage_k][None, :]
        density_hits += int(inside_density_balls.sum())
        covered_reals |= inside_density_balls.any(dim=0)
        recalled_reals |= (distances < fake_radii[start:start + ROWS_PER_CHUNK, None]).any(dim=0)
    return {
        "precision": precise_fakes / len(fake_features),
        "recall": float(recalled_reals.double().mean()),
        "density": density_hits / (density_coverage_k * len(fake_features)),
        "coverage": float(covered_reals.double().mean()),
    }


@register_metric
def precision_recall_density_coverage(real: FeatureSet, fake: FeatureSet) -> dict[str, float]:
    return prdc(real.features, fake.features)
