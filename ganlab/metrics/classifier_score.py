"""The Inception Score (Salimans et al. 2016) computed with ganlab's classifier: exp E[KL(p(y|x) ‖ p(y))].

High when each sample is confidently one class and all classes appear; at most 10 on Fashion-MNIST.
torchmetrics applies the softmax itself, so it gets the logits (normalize=False).
"""

from ganlab.metrics._torchmetrics import PrecomputedFeatures, quietly, seeded
from ganlab.metrics.features import FeatureSet
from ganlab.metrics.registry import register_metric


@register_metric
def classifier_score(real: FeatureSet, fake: FeatureSet) -> dict[str, float]:
    from torchmetrics.image.inception import InceptionScore  # here: importing torchmetrics takes 2 s

    metric = quietly(InceptionScore, feature=PrecomputedFeatures(fake.logits.shape[1]), splits=10, normalize=False)
    metric.update(fake.logits.double())
    with seeded():
        score_mean, score_std = metric.compute()
    return {"classifier_score": float(score_mean), "classifier_score_std": float(score_std)}
