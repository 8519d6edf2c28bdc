"""The architecture registry: `--arch` names → (Generator, Discriminator) classes.

A new architecture is one new module with a Generator and a Discriminator, plus one line here.
"""

from torch import nn

from ganlab.errors import GanlabError
from ganlab.models import cnn, mlp, mlp_small

ARCHITECTURES = {
    "mlp": mlp,  # first report, appendix A
    "mlp-small": mlp_small,  # second report: hidden 128, no BatchNorm
    "cnn": cnn,  # first report, appendix B
}

IMAGE_SHAPE = (1, 28, 28)  # Fashion-MNIST


def build_models(arch: str, latent_dim: int = 100) -> tuple[nn.Module, nn.Module]:
    """A fresh (generator, discriminator) pair, initialised from the global torch RNG."""
    return build_generator(arch, latent_dim), _module(arch).Discriminator(IMAGE_SHAPE)


def build_generator(arch: str, latent_dim: int = 100) -> nn.Module:
    """Only the generator: all that sampling and the latent analysis need."""
    return _module(arch).Generator(latent_dim, IMAGE_SHAPE)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters, as printed next to each model."""
    return sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)


def model_summary(generator: nn.Module, discriminator: nn.Module) -> str:
    """print(D) then print(G), the order both reports printed them in, with parameter counts."""
    return (
        f"{discriminator}\n{generator}\n"
        f"discriminator parameters: {count_parameters(discriminator):,}\n"
        f"generator parameters: {count_parameters(generator):,}\n"
    )


def _module(arch: str):
    if arch not in ARCHITECTURES:
        raise GanlabError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]
