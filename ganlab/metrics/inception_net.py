"""Inception-v3 as FID uses it: the 2015-12-05 TensorFlow graph (Szegedy et al. 2016, "Rethinking the Inception
Architecture") whose 2048-d pool features define FID (Heusel et al. 2017), written out layer for layer.

It is the graph NVlabs' stylegan3 FID tool runs as TorchScript and pytorch-fid rebuilds as FIDInceptionA/C/E, with
TensorFlow's quirks kept: batch norms without a scale (mean, var, beta, eps 1e-3), average pools that leave the padding
out of the mean, and a max pool in the last block's pool branch. Module and tensor names follow that TorchScript
(`layers.mixed_4.tower_1.conv_2.weight`), so its weights load key for key (see inception_setup.py).
"""

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional

FEATURE_DIM = 2048
INPUT_SIZE = 299


class ConvLayer(nn.Module):
    """Convolution without bias, frozen batch norm without scale, ReLU: TensorFlow's conv block."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        kernel_height, kernel_width = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        # Buffers, not parameters: the network is a fixed ruler, never trained.
        self.register_buffer("weight", torch.zeros(out_channels, in_channels, kernel_height, kernel_width))
        self.register_buffer("beta", torch.zeros(out_channels))
        self.register_buffer("mean", torch.zeros(out_channels))
        self.register_buffer("var", torch.ones(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding)
        return functional.relu(functional.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def average_pool() -> nn.AvgPool2d:
    """3×3, stride 1, padded, averaging only the pixels inside the image (TensorFlow's SAME average pool)."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def chain(**layers: nn.Module) -> nn.Sequential:
    """A named Sequential (`tower.conv`, `tower.conv_1`, …) matching the TorchScript's names."""
    return nn.Sequential(OrderedDict(layers))


class InceptionA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | pool→1×1 (pytorch-fid's FIDInceptionA)."""

    def __init__(self, in_channels: int, pool_channels: int):
        super().__init__()
        self.conv = ConvLayer(in_channels, 64, 1)
        self.tower = chain(conv=ConvLayer(in_channels, 48, 1), conv_1=ConvLayer(48, 64, 5, padding=2))
        self.tower_1 = chain(conv=ConvLayer(in_channels, 64, 1), conv_1=ConvLayer(64, 96, 3, padding=1),
                             conv_2=ConvLayer(96, 96, 3, padding=1))
        self.tower_2 = chain(pool=average_pool(), conv=ConvLayer(in_channels, pool_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(nn.Module):
    """35→17 reduction: 3×3 stride 2 | 1×1→3×3→3×3 stride 2 | max pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = ConvLayer(in_channels, 384, 3, stride=2)
        self.tower = chain(conv=ConvLayer(in_channels, 64, 1), conv_1=ConvLayer(64, 96, 3, padding=1),
                           conv_2=ConvLayer(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class InceptionC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (pytorch-fid's FIDInceptionC)."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.conv = ConvLayer(in_channels, 192, 1)
        self.tower = chain(conv=ConvLayer(in_channels, c7, 1), conv_1=ConvLayer(c7, c7, (1, 7), padding=(0, 3)),
                           conv_2=ConvLayer(c7, 192, (7, 1), padding=(3, 0)))
        self.tower_1 = chain(conv=ConvLayer(in_channels, c7, 1), conv_1=ConvLayer(c7, c7, (7, 1), padding=(3, 0)),
                             conv_2=ConvLayer(c7, c7, (1, 7), padding=(0, 3)),
                             conv_3=ConvLayer(c7, c7, (7, 1), padding=(3, 0)),
                             conv_4=ConvLayer(c7, 192, (1, 7), padding=(0, 3)))
        self.tower_2 = chain(pool=average_pool(), conv=ConvLayer(in_channels, 192, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(nn.Module):
    """17→8 reduction: 1×1→3×3 stride 2 | 1×1→1×7→7×1→3×3 stride 2 | max pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.tower = chain(conv=ConvLayer(in_channels, 192, 1), conv_1=ConvLayer(192, 320, 3, stride=2))
        self.tower_1 = chain(conv=ConvLayer(in_channels, 192, 1), conv_1=ConvLayer(192, 192, (1, 7), padding=(0, 3)),
                             conv_2=ConvLayer(192, 192, (7, 1), padding=(3, 0)),
                             conv_3=ConvLayer(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class InceptionE(nn.Module):
    """8×8 block with split 1×3 / 3×1 branches; the pool branch averages in mixed_9 and takes the max in mixed_10
    (a quirk of the TensorFlow graph, kept by pytorch-fid's FIDInceptionE_1 / FIDInceptionE_2)."""

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        self.conv = ConvLayer(in_channels, 320, 1)
        self.tower_conv = ConvLayer(in_channels, 384, 1)
        self.tower_mixed_conv = ConvLayer(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvLayer(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvLayer(in_channels, 448, 1)
        self.tower_1_conv_1 = ConvLayer(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvLayer(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvLayer(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = average_pool() if pool == "average" else nn.MaxPool2d(3, stride=1, padding=1)
        self.tower_2_conv = ConvLayer(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tower = self.tower_conv(x)
        tower_1 = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(tower), self.tower_mixed_conv_1(tower),
                          self.tower_1_mixed_conv(tower_1), self.tower_1_mixed_conv_1(tower_1),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


class InceptionV3Features(nn.Module):
    """Images [N, 3, 299, 299] in TensorFlow's input range (−1 … 0.9921875) → pool features [N, 2048]."""

    def __init__(self):
        super().__init__()
        self.layers = chain(
            conv=ConvLayer(3, 32, 3, stride=2), conv_1=ConvLayer(32, 32, 3), conv_2=ConvLayer(32, 64, 3, padding=1),
            pool0=nn.MaxPool2d(3, stride=2), conv_3=ConvLayer(64, 80, 1), conv_4=ConvLayer(80, 192, 3),
            pool1=nn.MaxPool2d(3, stride=2),
            mixed=InceptionA(192, 32), mixed_1=InceptionA(256, 64), mixed_2=InceptionA(288, 64),
            mixed_3=InceptionB(288),
            mixed_4=InceptionC(768, 128), mixed_5=InceptionC(768, 160), mixed_6=InceptionC(768, 160),
            mixed_7=InceptionC(768, 192),
            mixed_8=InceptionD(768),
            mixed_9=InceptionE(1280, "average"), mixed_10=InceptionE(2048, "max"),
            pool2=nn.AvgPool2d(8, stride=8))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).reshape(-1, FEATURE_DIM)
