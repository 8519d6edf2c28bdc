"""The reference MLP GAN of the first report (appendix A): G 100→256→512→784, D 784→512→256→1."""

from math import prod

import torch
from torch import nn


class Generator(nn.Module):
    """Latent vector → image through two LeakyReLU + BatchNorm1d(eps=0.8) blocks and a Tanh."""

    def __init__(self, latent_dim: int = 100, output_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.latent_dim = latent_dim
        self.output_shape = output_shape
        # BatchNorm1d(n, 0.8) passes 0.8 as eps, as the report (and PyTorch-GAN) did.
        self.model = nn.Sequential(
            nn.Linear(latent_dim, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.BatchNorm1d(256, 0.8),
            nn.Linear(256, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.BatchNorm1d(512, 0.8),
            nn.Linear(512, prod(output_shape)),
            nn.Tanh(),
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        flat_images = self.model(latents)
        return flat_images.view(flat_images.size(0), *self.output_shape)


class Discriminator(nn.Module):
    """Image → probability that it is real."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(prod(input_shape), 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
            nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # The probability in fp32 even under bf16 autocast: near 1, bf16 resolves only steps of 0.004.
        logits = self.model[:-1](images)
        return self.model[-1](logits.float())
