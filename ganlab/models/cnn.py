"""The CNN GAN of the first report (appendix B): upsample+conv generator, strided-conv discriminator.

This is the model whose discriminator won in the report (D loss ≈ 0, G loss rising); ganlab keeps it
layer for layer so that the imbalance can be reproduced and then tuned away.
"""

import torch
from torch import nn


class Generator(nn.Module):
    """Latent vector → 128×7×7 → two ×2 upsample+conv blocks → 1×28×28 Tanh image."""

    def __init__(self, latent_dim: int = 100, output_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.latent_dim = latent_dim
        self.output_shape = output_shape
        self.init_size = output_shape[1] // 4
        self.linear = nn.Sequential(nn.Linear(latent_dim, 128 * self.init_size * self.init_size))
        self.model = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 128, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(128, 0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(64, 0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, output_shape[0], kernel_size=3, stride=1, padding=1),
            nn.Tanh(),
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        features = self.linear(latents)
        features = features.view(features.size(0), 128, self.init_size, self.init_size)
        return self.model(features)


class Discriminator(nn.Module):
    """1×28×28 image → 64×14×14 → 128×7×7 → 256×4×4 → one probability."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(input_shape[0], 64, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, 128, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(128, 256, kernel_size=4, stride=1, padding=0),
            nn.BatchNorm2d(256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(256, 1, kernel_size=4, stride=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # The probability in fp32 even under bf16 autocast: near 1, bf16 resolves only steps of 0.004.
        logits = self.model[:-1](images)
        return self.model[-1](logits.float()).view(images.size(0), -1)
