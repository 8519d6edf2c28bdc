"""The small MLP GAN of the second report: one hidden layer of 128, no BatchNorm.

Its printout names the layers fc1/nonlin1/fc2 and shows no output activation: the Sigmoid and
Tanh are applied in forward(), so they are here too.
"""

from math import prod

import torch
from torch import nn


class Generator(nn.Module):
    """Latent vector → 128 hidden units → image, Tanh applied in forward()."""

    def __init__(self, latent_dim: int = 100, output_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.latent_dim = latent_dim
        self.output_shape = output_shape
        self.fc1 = nn.Linear(latent_dim, 128)
        self.nonlin1 = nn.LeakyReLU(0.2)
        self.fc2 = nn.Linear(128, prod(output_shape))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        flat_images = torch.tanh(self.fc2(self.nonlin1(self.fc1(latents))))
        return flat_images.view(flat_images.size(0), *self.output_shape)


class Discriminator(nn.Module):
    """Image → 128 hidden units → probability that it is real, Sigmoid applied in forward()."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.fc1 = nn.Linear(prod(input_shape), 128)
        self.nonlin1 = nn.LeakyReLU(0.2)
        self.fc2 = nn.Linear(128, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        flat_images = images.flatten(start_dim=1)
        # The probability in fp32 even under bf16 autocast: near 1, bf16 resolves only steps of 0.004.
        return torch.sigmoid(self.fc2(self.nonlin1(self.fc1(flat_images))).float())
