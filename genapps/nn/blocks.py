"""Shared blocks: a residual block without batch norm and a spectral-norm PatchGAN discriminator."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import spectral_norm


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride, 1)


class ResidualBlock(nn.Module):
    """EDSR's block: x + s * conv(relu(conv(x))); no batch norm (it hurts pixel-accurate outputs)."""

    def __init__(self, channels: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.act = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.conv2(self.act(self.conv1(x)))


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix's NLayerDiscriminator) with spectral norm instead of batch norm.

    (B, in_ch, H, W) in [0, 1] -> (B, 1, H/2^n, W/2^n) real/fake logits, one per patch.
    """

    def __init__(self, in_ch: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        seq = [spectral_norm(nn.Conv2d(in_ch, channels, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        ch = channels
        for i in range(1, layers + 1):
            nxt = channels * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            seq += [spectral_norm(nn.Conv2d(ch, nxt, 4, stride, 1)), nn.LeakyReLU(0.2, True)]
            ch = nxt
        seq.append(spectral_norm(nn.Conv2d(ch, 1, 4, 1, 1)))
        self.net = nn.Sequential(*seq)

    def forward(self, x):
        return self.net(x * 2 - 1)
