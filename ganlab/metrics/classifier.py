"""The yardstick: a small Fashion-MNIST CNN whose penultimate layer is ganlab's feature space.

Standard FID needs Inception-v3 weights that cannot be downloaded here, and Inception features say
little about 28×28 grayscale clothes anyway. As the FID authors advise for such data, ganlab measures
in the feature space of a classifier trained on the data itself (Bińkowski et al. 2018 did the same
with a LeNet on MNIST). Numbers are comparable only within one feature space, so the space has a
versioned name, FEATURE_SPACE, that is logged beside every number.

The weights ship in the package (weights/fmnist-cnn-v1.safetensors) and are checked against their
sha256 on load, so every user measures with the same ruler; `experiments/train_evaluator.py` made them.
"""

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ganlab.errors import GanlabError

FEATURE_SPACE = "fmnist-cnn-v1"
FEATURE_DIM = 128
WEIGHTS_PATH = Path(__file__).parent / "weights" / f"{FEATURE_SPACE}.safetensors"
WEIGHTS_SHA256 = "545bf35e8ef4784fdfc83bf5cdf5af3a5a25c19dce3a17d668475056fc431aec"  # test accuracy 0.9305


class FashionClassifier(nn.Module):
    """Two conv blocks (32 and 64 channels) and a 128-unit layer whose output is the feature vector.

    Small on purpose: evaluating 10k samples must take seconds on a 2-core CPU.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.features = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, FEATURE_DIM),
                                      nn.BatchNorm1d(FEATURE_DIM), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(FEATURE_DIM, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits for images in [-1, 1]."""
        return self.head(self.embed(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The penultimate activations: the feature space every metric works in."""
        return self.features(self.conv(images))

    def embed_and_classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits from one forward pass."""
        features = self.embed(images)
        return features, self.head(features)


def load_classifier(device: torch.device | str = "cpu", weights_path: Path = WEIGHTS_PATH) -> FashionClassifier:
    """The shipped yardstick in eval mode, after checking its sha256 (no pickle involved)."""
    if not weights_path.exists():
        raise GanlabError(f"the metrics classifier {weights_path} is missing; reinstall ganlab or run "
                          "`python experiments/train_evaluator.py`")
    actual_sha256 = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    if weights_path == WEIGHTS_PATH and actual_sha256 != WEIGHTS_SHA256:
        raise GanlabError(f"{weights_path} has sha256 {actual_sha256}, not the published {WEIGHTS_SHA256}: "
                          "numbers measured with it would not be comparable; reinstall ganlab")
    classifier = FashionClassifier()
    classifier.load_state_dict(load_file(str(weights_path)))
    # Channels-last convolutions were several times faster on the CPU; real and generated features both use them.
    return classifier.to(device, memory_format=torch.channels_last).eval()


def train_classifier(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
                     test_labels: torch.Tensor, *, epochs: int = 10, batch_size: int = 128, learning_rate: float = 2e-3,
                     seed: int = 0, progress=None) -> tuple[FashionClassifier, float]:
    """Train the yardstick deterministically (fixed seeds, deterministic kernels); return it and its test accuracy.

    Images are float in [-1, 1]. A random horizontal flip is the only augmentation: clothes are
    left-right symmetric, so it adds data without changing any class.
    """
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    order_rng = torch.Generator().manual_seed(seed)
    classifier = FashionClassifier()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps_per_epoch = len(train_images) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate,
                                                   total_steps=epochs * steps_per_epoch)
    for epoch in range(epochs):
        classifier.train()
        order = torch.randperm(len(train_images), generator=order_rng)
        flips = torch.rand(len(train_images), generator=order_rng) < 0.5
        for step in range(steps_per_epoch):
            batch = order[step * batch_size:(step + 1) * batch_size]
            images = torch.where(flips[batch, None, None, None], train_images[batch].flip(-1), train_images[batch])
            loss = nn.functional.cross_entropy(classifier(images), train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if progress is not None:
                progress.update()
        if progress is not None:
            progress.set_postfix(epoch=epoch + 1, test_accuracy=f"{accuracy(classifier, test_images, test_labels):.4f}")
    return classifier.eval(), accuracy(classifier, test_images, test_labels)


@torch.no_grad()
def accuracy(classifier: FashionClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of images whose arg-max class is the label, in eval mode."""
    was_training = classifier.training
    classifier.eval()
    correct = sum((classifier(images[start:start + batch_size]).argmax(1) == labels[start:start + batch_size]).sum().item()
                  for start in range(0, len(images), batch_size))
    classifier.train(was_training)
    return correct / len(images)
