"""Discriminators of genapps's GANs: pix2pix's PatchGAN and PixelGAN, CycleGAN's pair of
PatchGANs, and the augment cGAN's projection discriminator.

Inputs are images in [0, 1] (each discriminator maps them to [-1, 1] itself); outputs are raw
real/fake logits. The PatchGAN and PixelGAN also give the activations feature-matching losses
compare (`forward_with_features`), so a trainer never reaches into their layers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from genapps.nn.unet import norm_layer

D_NORMS = ("spectral", "batch", "instance", "none")


def _with_features(net: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """net(x) layer by layer: (its output, the activations after each of its LeakyReLUs)."""
    feats, h = [], x
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.LeakyReLU):
            feats.append(h)
    return h, feats


class PatchDiscriminator(nn.Module):
    """PatchGAN: pix2pix's NLayerDiscriminator (n_layers = `layers`, the 70x70 one at 3).

    `norm`: "spectral" (default: spectral norm on every conv, no norm layers; the SR GAN's
    layout `net.0, net.2, ...`), or the reference's "batch" / "instance" / "none" norm layers
    after each inner conv (then `net.N` indices follow the reference's `model.N`).
    (B, in_ch, H, W) in [0, 1] -> (B, 1, ~H/2^(layers-1)/2, ...) real/fake logits, one per patch.
    """

    def __init__(self, in_ch: int = 3, channels: int = 64, layers: int = 3, norm: str = "spectral"):
        super().__init__()
        if norm not in D_NORMS:
            raise ValueError(f"unknown discriminator norm {norm!r}; valid: {', '.join(D_NORMS)}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        sn = spectral_norm if norm == "spectral" else (lambda m: m)
        make_norm = None if norm == "spectral" else norm_layer(norm)
        use_bias = norm != "batch"
        seq = [sn(nn.Conv2d(in_ch, channels, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        ch = channels
        for i in range(1, layers + 1):
            nxt = channels * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            seq.append(sn(nn.Conv2d(ch, nxt, 4, stride, 1, bias=use_bias)))
            if make_norm is not None:
                seq.append(make_norm(nxt))
            seq.append(nn.LeakyReLU(0.2, True))
            ch = nxt
        seq.append(sn(nn.Conv2d(ch, 1, 4, 1, 1)))
        self.net = nn.Sequential(*seq)

    def forward(self, x):
        return self.net(x * 2 - 1)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the logits of forward, the activations after each LeakyReLU: one per conv but the last)."""
        return _with_features(self.net, x * 2 - 1)


class PixelDiscriminator(nn.Module):
    """pix2pix's PixelGAN (1x1 PatchGAN): (B, in_ch, H, W) in [0, 1] -> (B, 1, H, W) logits."""

    def __init__(self, in_ch: int = 3, channels: int = 64, norm: str = "batch"):
        super().__init__()
        if norm not in D_NORMS:
            raise ValueError(f"unknown discriminator norm {norm!r}; valid: {', '.join(D_NORMS)}")
        sn = spectral_norm if norm == "spectral" else (lambda m: m)
        inner = nn.Identity() if norm == "spectral" else norm_layer(norm)(channels * 2)
        self.net = nn.Sequential(
            sn(nn.Conv2d(in_ch, channels, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(channels, channels * 2, 1, bias=norm != "batch")), inner, nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(channels * 2, 1, 1)))

    def forward(self, x):
        return self.net(x * 2 - 1)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the logits of forward, the activations after each LeakyReLU)."""
        return _with_features(self.net, x * 2 - 1)


class CycleDiscriminators(nn.Module):
    """CycleGAN's two PatchGANs in one module (one optimiser and checkpoint in train.fit): D_A
    judges domain B (real B vs G_A(A)), D_B judges domain A, as in the reference."""

    def __init__(self, in_ch: int, out_ch: int, ndf: int, n_layers: int, norm: str):
        super().__init__()
        self.D_A = PatchDiscriminator(out_ch, ndf, n_layers, norm)
        self.D_B = PatchDiscriminator(in_ch, ndf, n_layers, norm)


class ProjectionDiscriminator(nn.Module):
    """Spectral-norm conv discriminator with a projection head (Miyato & Koyama 2018).

    (x (B, C, S, S) in [0, 1], y (B, K)) -> (B,) logits = psi(h) + <embed(y), h>.
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(channels, w, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            spectral_norm(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            spectral_norm(nn.Conv2d(2 * w, 4 * w, 3, 1, 1)), nn.LeakyReLU(0.2, True))
        self.linear = spectral_norm(nn.Linear(4 * w, 1))
        self.embed = spectral_norm(nn.Linear(num_classes, 4 * w, bias=False))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.net(x * 2 - 1).sum((2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)
