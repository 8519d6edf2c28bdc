"""ganlab: a reproducible GAN study on Fashion-MNIST, tracked in MLflow and tuned with Optuna."""

__version__ = "0.1.0"
