"""A bottleneck of dilated residual blocks, for a receptive field that spans large holes.

Meant as `UnetGenerator(bottleneck=...)`: at the innermost level (1/32 of the input with 5
downsamplings) four blocks with dilations 1, 2, 4, 8 see about 30 cells each way, i.e. the
whole of a 512-960 px crop. Each block is a ResNet bottleneck (1x1 reduce, 3x3 dilated, 1x1
expand), so that the receptive field costs few parameters.

Optionally a latent code z is added to the features by a linear map initialised to zero: a
vector (B, z_dim) broadcast over H, W, or a map (B, z_dim, h, w) of the features' size (one code
per cell). A network trained without z is reproduced exactly at start, which lets a VAE-family
model be fine-tuned from a deterministic one. The owner sets `latent`
before each forward pass (the U-Net calls the bottleneck with the features only).

Tensors: (B, C, h, w) -> (B, C, h, w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DilatedBlock(nn.Module):
    def __init__(self, channels: int, dilation: int, reduction: int = 2):
        super().__init__()
        mid = channels // reduction
        self.body = nn.Sequential(
            nn.Conv2d(channels, mid, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(mid, mid, 3, padding=dilation, dilation=dilation),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(mid, channels, 1),
        )

    def forward(self, x):
        return x + self.body(x)


class DilatedBottleneck(nn.Module):
    """Residual blocks with growing dilation; with `z_dim` > 0 a latent code is added first."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 4, 8), z_dim: int = 0):
        super().__init__()
        self.z_dim = z_dim
        self.inject = nn.Linear(z_dim, channels) if z_dim else None
        if self.inject is not None:
            nn.init.zeros_(self.inject.weight)
            nn.init.zeros_(self.inject.bias)
        self.blocks = nn.Sequential(*[DilatedBlock(channels, d) for d in dilations])
        self.latent: torch.Tensor | None = None

    def forward(self, x):
        if self.inject is not None:
            if self.latent is None:
                raise RuntimeError("DilatedBottleneck with z_dim > 0 needs `latent` set before the forward pass")
            z = self.latent
            if z.dim() == 4:  # a latent map: the same linear map at every cell (a 1x1 convolution)
                x = x + F.conv2d(z, self.inject.weight[:, :, None, None], self.inject.bias)
            else:
                x = x + self.inject(z)[:, :, None, None]
        return self.blocks(x)
