"""The metric registry: each metric is a function (real FeatureSet, fake FeatureSet) → {name: value}."""

from collections.abc import Callable

from ganlab.metrics.features import FeatureSet

MetricFunction = Callable[[FeatureSet, FeatureSet], dict[str, float]]
METRICS: dict[str, MetricFunction] = {}


def register_metric(function: MetricFunction) -> MetricFunction:
    """Make a metric available by its function's name (a new metric is one file plus this decorator)."""
    METRICS[function.__name__] = function
    return function
