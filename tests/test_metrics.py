"""The yardstick and the metrics: sanity orderings on the real data, and agreement with reference implementations."""

import math

import numpy as np
import prdc as prdc_reference
import pytest
import torch

from ganlab import data, metrics
from ganlab.errors import GanlabError
from ganlab.metrics import classifier as classifier_module
from ganlab.metrics.class_histogram import class_histogram_of
from ganlab.metrics.features import FeatureSet, extract, reference_features
from ganlab.metrics.fid import fid
from ganlab.metrics.precision_recall import prdc

SAMPLES = 5000  # enough for stable orderings, small enough for a quick suite


@pytest.fixture(scope="module")
def evaluator(data_dir):
    return metrics.Evaluator(data_dir, "cpu")


@pytest.fixture(scope="module")
def real_images(data_dir):
    train_images, train_labels = data.load_images(data_dir, train=True)
    return data.to_training_tensor(train_images, "cpu"), train_labels


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    blurred = torch.nn.functional.conv2d(images, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return torch.nn.functional.conv2d(blurred, kernel.view(1, 1, -1, 1), padding=(radius, 0))


def test_shipped_classifier_is_pinned_and_reaches_92_percent(data_dir):
    classifier = metrics.load_classifier("cpu")
    assert classifier_module.WEIGHTS_PATH.stat().st_size <= 5_000_000
    test_images, test_labels = data.load_images(data_dir, train=False)
    accuracy = classifier_module.accuracy(classifier, data.to_training_tensor(test_images, "cpu"), test_labels)
    assert accuracy >= 0.92


def test_a_classifier_file_with_another_sha256_is_refused(tmp_path, monkeypatch):
    tampered = tmp_path / "fmnist-cnn-v1.safetensors"
    tampered.write_bytes(classifier_module.WEIGHTS_PATH.read_bytes()[:-1] + b" ")
    monkeypatch.setattr(classifier_module, "WEIGHTS_PATH", tampered)
    with pytest.raises(GanlabError, match="sha256"):
        classifier_module.load_classifier("cpu", weights_path=tampered)


def test_real_train_images_are_near_the_floor_and_noise_is_far_worse(evaluator, real_images):
    images, _ = real_images
    real_vs_real = evaluator.evaluate_images(images[:SAMPLES]).metrics
    uniform_noise = evaluator.evaluate_images(torch.rand(SAMPLES, 1, 28, 28) * 2 - 1).metrics
    assert real_vs_real["fid"] < 2.0
    assert uniform_noise["fid"] > 50 * real_vs_real["fid"]
    assert abs(real_vs_real["kid"]) < 0.01 < uniform_noise["kid"]
    assert real_vs_real["precision"] > 0.6 and real_vs_real["recall"] > 0.6 and real_vs_real["coverage"] > 0.6
    # Precision is the one number noise can fool a little (outlying real points have wide k-NN balls), which is why
    # density and coverage exist; all four are far below the real images'.
    assert uniform_noise["precision"] < 0.25 * real_vs_real["precision"]
    assert uniform_noise["recall"] < 0.05 and uniform_noise["density"] < 0.1 and uniform_noise["coverage"] < 0.05
    assert real_vs_real["class_entropy"] > 0.99 * math.log(10)


def test_fid_grows_monotonically_with_blur_and_with_noise(evaluator, real_images):
    images = real_images[0][:SAMPLES]

    def fid_of(changed: torch.Tensor) -> float:  # FID alone: the other metrics (PRDC's neighbours) cost 10× more
        return fid(evaluator.reference, extract(evaluator.classifier, changed, "cpu"))["fid"]

    blur_fids = [fid_of(gaussian_blur(images, sigma)) for sigma in (0.5, 1.0, 1.5, 2.5)]
    noise_rng = torch.Generator().manual_seed(0)
    noise_fids = [fid_of((images + scale * torch.randn(images.shape, generator=noise_rng)).clamp(-1, 1))
                  for scale in (0.1, 0.2, 0.4, 0.8)]
    assert blur_fids == sorted(blur_fids) and blur_fids[0] < blur_fids[-1] / 5, blur_fids
    assert noise_fids == sorted(noise_fids) and noise_fids[0] < noise_fids[-1] / 5, noise_fids


def test_one_class_only_has_low_recall_and_coverage_and_one_spike(evaluator, real_images):
    images, labels = real_images
    trousers_only = images[labels == 1][:SAMPLES]
    evaluation = evaluator.evaluate_images(trousers_only)
    assert evaluation.metrics["recall"] < 0.2 and evaluation.metrics["coverage"] < 0.2
    assert evaluation.class_shares[1] > 0.95 and max(evaluation.class_shares[:1] + evaluation.class_shares[2:]) < 0.05
    assert evaluation.metrics["class_entropy"] < 0.3 and evaluation.metrics["class_kl_uniform"] > 2.0


def test_every_number_carries_its_protocol(evaluator, real_images):
    evaluation = evaluator.evaluate_images(real_images[0][:1000])
    assert evaluation.protocol == {"eval.feature_space": "fmnist-cnn-v1",
                                   "eval.classifier_sha256": classifier_module.WEIGHTS_SHA256,
                                   "eval.samples": "1000", "eval.reference": "fashion-mnist-test-10k"}
    assert set(metrics.HEADLINE_METRICS) <= set(evaluation.metrics)


def test_same_generator_and_seed_give_identical_numbers(evaluator):
    torch.manual_seed(0)
    from ganlab.models import build_generator

    generator = build_generator("mlp")
    first = evaluator.evaluate_generator(generator, 100, num_samples=2000, seed=7)
    second = evaluator.evaluate_generator(generator, 100, num_samples=2000, seed=7)
    assert first.metrics == second.metrics


def test_reference_features_are_cached_and_reused(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(tmp_path))
    classifier = metrics.load_classifier("cpu")
    first = reference_features(classifier, data_dir, "cpu")
    (cache_file,) = tmp_path.glob("fmnist-cnn-v1-*-fashion-mnist-test-10k.safetensors")
    assert classifier_module.WEIGHTS_SHA256[:16] in cache_file.name
    modified = cache_file.stat().st_mtime_ns
    second = reference_features(classifier, data_dir, "cpu")
    assert cache_file.stat().st_mtime_ns == modified
    assert torch.equal(first.features, second.features) and first.features.shape == (10000, 128)


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_prdc_matches_the_reference_package(shift, capsys):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 16)).astype(np.float32)
    fake = (rng.normal(size=(500, 16)) * 1.2 + shift).astype(np.float32)
    ours = prdc(torch.from_numpy(real), torch.from_numpy(fake))
    reference_k3 = prdc_reference.compute_prdc(real, fake, nearest_k=3)
    reference_k5 = prdc_reference.compute_prdc(real, fake, nearest_k=5)
    assert ours["precision"] == pytest.approx(reference_k3["precision"], abs=1e-12)
    assert ours["recall"] == pytest.approx(reference_k3["recall"], abs=1e-12)
    assert ours["density"] == pytest.approx(reference_k5["density"], abs=1e-12)
    assert ours["coverage"] == pytest.approx(reference_k5["coverage"], abs=1e-12)


def test_class_histogram_of_predictions():
    logits = torch.zeros(4, 10)
    logits[[0, 1, 2, 3], [3, 3, 5, 9]] = 1.0
    assert class_histogram_of(FeatureSet(torch.zeros(4, 128), logits)).tolist() == [0, 0, 0, .5, 0, .25, 0, 0, 0, .25]
