"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased MMD² with a cubic
polynomial kernel, mean ± std over random subsets (torchmetrics' defaults: 100 subsets of 1000).

Unbiased at any N, so it is the honest companion of FID when samples are few.
"""

from ganlab.metrics._torchmetrics import PrecomputedFeatures, quietly, seeded
from ganlab.metrics.features import FeatureSet
from ganlab.metrics.registry import register_metric

SUBSETS = 100
SUBSET_SIZE = 1000


@register_metric
def kid(real: FeatureSet, fake: FeatureSet) -> dict[str, float]:
    from torchmetrics.image.kid import KernelInceptionDistance  # here: importing torchmetrics takes 2 s

    subset_size = min(SUBSET_SIZE, len(real), len(fake))
    metric = quietly(KernelInceptionDistance, feature=PrecomputedFeatures(real.features.shape[1]), subsets=SUBSETS,
                     subset_size=subset_size)
    metric.update(real.features.double(), real=True)
    metric.update(fake.features.double(), real=False)
    with seeded():
        kid_mean, kid_std = metric.compute()
    return {"kid": float(kid_mean), "kid_std": float(kid_std)}
