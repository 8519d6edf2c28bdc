"""Fréchet distance between Gaussians fitted to real and generated features (Heusel et al. 2017, "GANs Trained
by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"), computed by torchmetrics.

In ganlab's own feature space (see classifier.py), not Inception's: comparable only within that space. FID is
biased upwards at small N, so ganlab uses 10k samples by default.
"""

from ganlab.metrics._torchmetrics import PrecomputedFeatures
from ganlab.metrics.features import FeatureSet
from ganlab.metrics.registry import register_metric


@register_metric
def fid(real: FeatureSet, fake: FeatureSet) -> dict[str, float]:
    from torchmetrics.image.fid import FrechetInceptionDistance  # here: importing torchmetrics takes 2 s

    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.features.shape[1]))
    metric.update(real.features.double(), real=True)
    metric.update(fake.features.double(), real=False)
    return {"fid": float(metric.compute())}
