"""Inpainting generators: a U-Net GAN generator and its VAE-family (pluralistic) variant.

Both see an image whose hole is pre-filled classically (classical.prefill: the mean of Telea,
Navier-Stokes and biharmonic) plus the mask, and predict a correction:
input (B, 4, H, W) = [pre-filled RGB in [0, 1], mask {0, 1}], output (B, 3, H, W) in [0, 1]
(clamped, not composited: the caller keeps the pixels outside the hole). H and W must be
multiples of `input_multiple`. The last layer starts at zero, so an untrained model returns
the pre-fill, and training only has to improve on it.
"""

from __future__ import annotations

import torch
from torch import nn

from genapps.nn import UnetGenerator
from genapps.nn.dilated import DilatedBottleneck


class InpaintUnet(nn.Module):
    """UnetGenerator (norm none) with a dilated-residual bottleneck, predicting a residual over the pre-fill."""

    def __init__(self, ngf: int = 16, num_downs: int = 5, dilations: tuple[int, ...] = (1, 2, 4, 8), z_dim: int = 0):
        super().__init__()
        bottleneck = DilatedBottleneck(ngf * 8, tuple(dilations), z_dim)
        self.unet = UnetGenerator(4, 3, num_downs=num_downs, ngf=ngf, norm="none", bottleneck=bottleneck)
        last = self.unet.model.model[3]  # the outermost transposed conv, before the tanh
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.input_multiple = self.unet.input_multiple

    @property
    def bottleneck(self) -> DilatedBottleneck:
        """The bottleneck inside the U-Net (registered there only: one key per weight)."""
        return next(m for m in self.unet.modules() if isinstance(m, DilatedBottleneck))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefill, mask = x[:, :3], x[:, 3:4]
        return (prefill + self.unet(torch.cat([prefill * 2 - 1, mask], 1))).clamp(0, 1)


def _encoder(in_ch: int, z_dim: int, width: int = 32) -> nn.Sequential:
    """(B, in_ch, H, W) -> (B, 2 z_dim) = (mu, logvar): strided convs, global average pool, linear."""
    layers, ch = [], in_ch
    for out in (width, width * 2, width * 2, width * 4):
        layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, 2 * z_dim))


class PluralisticUnet(nn.Module):
    """Conditional VAE over hole fills (Pluralistic Image Completion's two paths, on the same U-Net).

    A learned conditional prior p(z | masked image) and, for training only, a posterior
    q(z | full image, mask). z acts twice: added at the U-Net's bottleneck, and as a coarse
    (`grid` x `grid`) colour field added inside the hole (a direct path, so that the decoder cannot
    learn to ignore z, the usual posterior collapse next to a strong deterministic model).
    Sampling z from the prior gives different plausible fills of the same hole.
    """

    def __init__(self, ngf: int = 16, num_downs: int = 5, dilations: tuple[int, ...] = (1, 2, 4, 8), z_dim: int = 32,
                 grid: int = 4):
        super().__init__()
        self.z_dim, self.grid = z_dim, grid
        self.net = InpaintUnet(ngf, num_downs, dilations, z_dim)
        self.coarse = nn.Linear(z_dim, 3 * grid * grid)
        nn.init.zeros_(self.coarse.weight)
        nn.init.zeros_(self.coarse.bias)
        self.prior = _encoder(4, z_dim)
        self.posterior = _encoder(4, z_dim)
        with torch.no_grad():  # the posterior starts nearly deterministic (std 0.14): its z is information,
            self.posterior[-1].bias[z_dim:] = -4.0  # not noise the decoder would learn to ignore
        self.input_multiple = self.net.input_multiple

    def start_from_unet(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take over an InpaintUnet's state dict (the GAN model): the same fills as it while z is
        ignored. The latent map starts small, not zero: at zero the posterior would get no
        gradient (z unused, KL 0). ValueError when the tensors do not fit this model's U-Net."""
        missing, unexpected = self.net.load_state_dict(tensors, strict=False)
        if unexpected or any(".inject." not in k for k in missing):
            raise ValueError("does not fit the pluralistic model's U-Net")
        nn.init.normal_(self.net.bottleneck.inject.weight, std=0.1)

    def prior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.prior(torch.cat([x[:, :3] * 2 - 1, x[:, 3:4]], 1)).chunk(2, 1)
        return mu, logvar.clamp(-8, 4)

    def posterior_params(self, full: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(torch.cat([full * 2 - 1, mask], 1)).chunk(2, 1)
        return mu, logvar.clamp(-8, 4)

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.net.bottleneck.latent = z
        try:
            out = self.net(x)
        finally:
            self.net.bottleneck.latent = None
        field = self.coarse(z).view(-1, 3, self.grid, self.grid)
        field = torch.nn.functional.interpolate(field, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (out + x[:, 3:4] * field).clamp(0, 1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One sample: z ~ p(z | x) (B, 4, H, W) -> (B, 3, H, W)."""
        mu, logvar = self.prior_params(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decode(x, mu + eps * (0.5 * logvar).exp())


ARCHS = {"unet": InpaintUnet, "pluralistic": PluralisticUnet}


def define_G(arch: str, **config) -> nn.Module:
    """Build an inpainting generator by architecture name; unknown names list the valid ones."""
    if arch not in ARCHS:
        raise ValueError(f"unknown inpainting architecture {arch!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[arch](**config)

