"""The three architectures print exactly as the reports printed them (whitespace aside)."""

import re
import sys

import pytest
import torch

from ganlab.models import ARCHITECTURES, build_models, count_parameters
from ganlab.errors import GanlabError
from helpers import run_script

# Transcribed from ../shared/seeds: report 1 §5.1 (mlp), §5.3 (cnn); report 2 §二 (mlp-small). Both print D first.
REPORT_PRINTOUTS = {
    "mlp": """
Discriminator(
  (model): Sequential(
    (0): Flatten(start_dim=1, end_dim=-1)
    (1): Linear(in_features=784, out_features=512, bias=True)
    (2): LeakyReLU(negative_slope=0.2, inplace=True)
    (3): Linear(in_features=512, out_features=256, bias=True)
    (4): LeakyReLU(negative_slope=0.2, inplace=True)
    (5): Linear(in_features=256, out_features=1, bias=True)
    (6): Sigmoid()
  )
)
Generator(
  (model): Sequential(
    (0): Linear(in_features=100, out_features=256, bias=True)
    (1): LeakyReLU(negative_slope=0.2, inplace=True)
    (2): BatchNorm1d(256, eps=0.8, momentum=0.1, affine=True, track_running_stats=True)
    (3): Linear(in_features=256, out_features=512, bias=True)
    (4): LeakyReLU(negative_slope=0.2, inplace=True)
    (5): BatchNorm1d(512, eps=0.8, momentum=0.1, affine=True, track_running_stats=True)
    (6): Linear(in_features=512, out_features=784, bias=True)
    (7): Tanh()
  )
)""",
    "mlp-small": """
Discriminator(
  (fc1): Linear(in_features=784, out_features=128, bias=True)
  (nonlin1): LeakyReLU(negative_slope=0.2)
  (fc2): Linear(in_features=128, out_features=1, bias=True)
)
Generator(
  (fc1): Linear(in_features=100, out_features=128, bias=True)
  (nonlin1): LeakyReLU(negative_slope=0.2)
  (fc2): Linear(in_features=128, out_features=784, bias=True)
)""",
    "cnn": """
Discriminator(
  (model): Sequential(
    (0): Conv2d(1, 64, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))
    (1): LeakyReLU(negative_slope=0.2, inplace=True)
    (2): Conv2d(64, 128, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))
    (3): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (4): LeakyReLU(negative_slope=0.2, inplace=True)
    (5): Conv2d(128, 256, kernel_size=(4, 4), stride=(1, 1))
    (6): BatchNorm2d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (7): LeakyReLU(negative_slope=0.2, inplace=True)
    (8): Conv2d(256, 1, kernel_size=(4, 4), stride=(1, 1))
    (9): Sigmoid()
  )
)
Generator(
  (linear): Sequential(
    (0): Linear(in_features=100, out_features=6272, bias=True)
  )
  (model): Sequential(
    (0): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (1): Upsample(scale_factor=2.0, mode='nearest')
    (2): Conv2d(128, 128, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (3): BatchNorm2d(128, eps=0.8, momentum=0.1, affine=True, track_running_stats=True)
    (4): LeakyReLU(negative_slope=0.2, inplace=True)
    (5): Upsample(scale_factor=2.0, mode='nearest')
    (6): Conv2d(128, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (7): BatchNorm2d(64, eps=0.8, momentum=0.1, affine=True, track_running_stats=True)
    (8): LeakyReLU(negative_slope=0.2, inplace=True)
    (9): Conv2d(64, 1, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (10): Tanh()
  )
)""",
}


def normalised(printout: str) -> str:
    """Whitespace aside, and without the `bias=True` field that torch >= 2.10 added to BatchNorm's repr
    after the reports were written (every other field, layer and order must match character for character)."""
    printout = re.sub(r"(BatchNorm[12]d\([^)]*?), bias=True", r"\1", printout)
    return "".join(printout.split())


@pytest.mark.parametrize("arch", sorted(REPORT_PRINTOUTS))
def test_printout_matches_the_report(arch):
    generator, discriminator = build_models(arch)
    assert normalised(f"{discriminator}\n{generator}") == normalised(REPORT_PRINTOUTS[arch])


def test_every_registered_architecture_has_a_report_printout():
    assert set(ARCHITECTURES) == set(REPORT_PRINTOUTS)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_shapes_and_output_ranges(arch):
    torch.manual_seed(0)
    generator, discriminator = build_models(arch)
    images = generator(torch.randn(5, 100))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    probabilities = discriminator(images)
    assert probabilities.shape == (5, 1)
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_parameter_counts_of_the_reference_mlp():
    generator, discriminator = build_models("mlp")
    # 100·256+256 + 2·256 + 256·512+512 + 2·512 + 512·784+784 ; 784·512+512 + 512·256+256 + 256+1
    assert count_parameters(generator) == 561_168
    assert count_parameters(discriminator) == 533_505


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(GanlabError, match="unknown architecture 'gan3d'.*mlp, mlp-small, cnn"):
        build_models("gan3d")


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_print_models_flag_prints_the_report_structure(arch, repo_root):
    result = run_script([sys.executable, "experiments/train.py", "--arch", arch, "--print-models"],
                        cwd=repo_root, timeout=120)
    assert result.returncode == 0, result.stderr
    body, counts = result.stdout.split("discriminator parameters:")
    assert normalised(body) == normalised(REPORT_PRINTOUTS[arch])
    assert "generator parameters:" in counts
