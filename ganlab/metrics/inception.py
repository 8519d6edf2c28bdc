"""Standard FID with Inception-v3 features, for users who have the standard weights file.

ganlab cannot download Inception weights, so its own feature space (fmnist-cnn-v1) is the default. With the
torch-fidelity weights file (pt_inception-2015-12-05-6726825d.pth) and the torch-fidelity package,
`experiments/evaluate.py --features inception --inception-weights PATH` gives the FID that papers report
(grayscale repeated to RGB, resized to 299×299 by torchmetrics). It is slow on a CPU: use a GPU.
"""

from pathlib import Path

import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

from ganlab.errors import GanlabError

FEATURE_SPACE = "inception-v3-pool3"
BATCH = 200


def check_inception_available(weights_path: Path | None) -> Path:
    """The weights file, or a one-line error that says what is missing."""
    if weights_path is None:
        raise GanlabError("--features inception needs --inception-weights PATH (the torch-fidelity file "
                          "pt_inception-2015-12-05-6726825d.pth); ganlab cannot download it")
    if not Path(weights_path).is_file():
        raise GanlabError(f"no Inception weights file at {weights_path}; download pt_inception-2015-12-05-6726825d.pth "
                          "where you have internet and pass its path")
    if not _TORCH_FIDELITY_AVAILABLE:
        raise GanlabError("--features inception needs the torch-fidelity package: pip install torch-fidelity")
    return Path(weights_path)


@torch.no_grad()
def inception_fid(real_images: torch.Tensor, fake_images: torch.Tensor, weights_path: Path,
                  device: torch.device | str) -> float:
    """FID between two sets of images in [-1, 1], [N, 1, 28, 28], in Inception-v3's pool3 space."""
    metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights_path)).to(device)
    for images, is_real in ((real_images, True), (fake_images, False)):
        for start in range(0, len(images), BATCH):
            batch = ((images[start:start + BATCH] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            metric.update(batch.repeat(1, 3, 1, 1).to(device), real=is_real)
    return float(metric.compute())
