"""Inpainting generators: a U-Net GAN generator and its VAE-family (pluralistic) variant (round 1),
and the LaMa-style FFC generator (round 2).

The U-Net models see an image whose hole is pre-filled classically (classical.prefill: the mean of Telea,
Navier-Stokes and biharmonic) plus the mask, and predict a correction:
input (B, 4, H, W) = [pre-filled RGB in [0, 1], mask {0, 1}], output (B, 3, H, W) in [0, 1]
(clamped, not composited: the caller keeps the pixels outside the hole). H and W must be
multiples of `input_multiple`. The last layer starts at zero, so an untrained model returns
the pre-fill, and training only has to improve on it (`classical_prefill = True`: the caller
pre-fills). The FFC model takes the image with its hole (content ignored) and the mask, and makes
its own fast push-pull pre-fill (`classical_prefill = False`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genapps.nn.dilated import DilatedBlock, DilatedBottleneck
from genapps.nn.ffc import FFCResnetBlock, activation, merge_pair, split_pair
from genapps.nn.unet import UnetGenerator, level_channels


def refine_block(channels: int, dilations: tuple[int, ...] = (1, 2)) -> nn.Sequential:
    """Residual bottleneck blocks that start as the identity (last conv zero): added to a trained
    U-Net, they leave its output unchanged until training moves them."""
    blocks = [DilatedBlock(channels, d) for d in dilations]
    for block in blocks:
        nn.init.zeros_(block.body[-1].weight)
        nn.init.zeros_(block.body[-1].bias)
    return nn.Sequential(*blocks)


class InpaintUnet(nn.Module):
    """UnetGenerator (norm none) with a dilated-residual bottleneck, predicting a residual over the pre-fill.

    `refine`: U-Net levels (k: 1/2^k of the input) that get two residual blocks on their skip +
    decoder features (capacity where the reference U-Net mixes them by one transposed conv; they
    start as the identity, so a model without them continues unchanged)."""

    classical_prefill = True  # its input's hole holds classical.prefill

    def __init__(self, ngf: int = 16, num_downs: int = 5, dilations: tuple[int, ...] = (1, 2, 4, 8), z_dim: int = 0,
                 refine: tuple[int, ...] = ()):
        super().__init__()
        bottleneck = DilatedBottleneck(ngf * 8, tuple(dilations), z_dim)
        levels = {k: refine_block(level_channels(k, ngf)) for k in refine}
        self.unet = UnetGenerator(4, 3, num_downs=num_downs, ngf=ngf, norm="none", bottleneck=bottleneck,
                                  refine=levels)
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


def _map_encoder(in_ch: int, z_dim: int, downs: int, width: int = 32) -> nn.Sequential:
    """(B, in_ch, H, W) -> (B, 2 z_dim, H / 2^downs, W / 2^downs) = (mu, logvar) per cell: strided
    convs to the U-Net bottleneck's size, then two dilated 3x3 convs so that a cell inside a hole
    sees the known pixels around it."""
    layers, ch = [], in_ch
    for i in range(downs):
        out = width * min(4, 2 ** ((i + 1) // 2))
        layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = out
    layers += [nn.Conv2d(ch, ch, 3, padding=2, dilation=2), nn.LeakyReLU(0.2, True),  # (zero padding: maps
               nn.Conv2d(ch, 2 * z_dim, 3, padding=1)]  # of 1x1 cells are fine)
    return nn.Sequential(*layers)


class PluralisticUnet(nn.Module):
    """Conditional VAE over hole fills (Pluralistic Image Completion's two paths, on the same U-Net).

    A learned conditional prior p(z | masked image) and, for training only, a posterior
    q(z | full image, mask). z acts twice: added at the U-Net's bottleneck, and as a coarse
    (`grid` x `grid`) colour field added inside the hole (a direct path, so that the decoder cannot
    learn to ignore z, the usual posterior collapse next to a strong deterministic model).
    Sampling z from the prior gives different plausible fills of the same hole; `temperature`
    scales the prior's standard deviation when sampling (1: the prior itself; larger: fills that
    differ more; 0: always the prior mean, one fill). Training with min-of-K samples drawn at
    that temperature teaches the decoder to spread them over plausible fills.

    `latent_map`: z is a map (B, z_dim, H / 2^num_downs, W / 2^num_downs) at the bottleneck's size,
    one Gaussian per cell from fully convolutional encoders, and the colour field is per cell, so
    that samples can differ in what they put where (structure), not only in a global tone (round 2's
    vector z: samples differed mostly in shading).

    `refine`: the U-Net's refine levels (InpaintUnet).
    """

    classical_prefill = True

    def __init__(self, ngf: int = 16, num_downs: int = 5, dilations: tuple[int, ...] = (1, 2, 4, 8), z_dim: int = 32,
                 grid: int = 4, temperature: float = 1.0, latent_map: bool = False, refine: tuple[int, ...] = ()):
        super().__init__()
        if not 0 <= temperature <= 16:
            raise ValueError(f"temperature must be in [0, 16], got {temperature}")
        self.z_dim, self.grid, self.temperature, self.latent_map = z_dim, grid, temperature, latent_map
        self.net = InpaintUnet(ngf, num_downs, dilations, z_dim, refine)
        self.coarse = nn.Linear(z_dim, 3 if latent_map else 3 * grid * grid)
        nn.init.zeros_(self.coarse.weight)
        nn.init.zeros_(self.coarse.bias)
        encoder = (lambda: _map_encoder(4, z_dim, num_downs)) if latent_map else (lambda: _encoder(4, z_dim))
        self.prior, self.posterior = encoder(), encoder()
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
        """The fill of x (B, 4, H, W) for the code z: the U-Net's, then the colour field."""
        return self.add_field(self.decode_net(x, z), x, z)

    def decode_net(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The U-Net's fill for the code z (B, 3, H, W), before the colour field (a test-time
        augmentation averages this over transforms of x, and of z when it is a map)."""
        self.net.bottleneck.latent = z
        try:
            return self.net(x)
        finally:
            self.net.bottleneck.latent = None

    def add_field(self, out: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """out + the hole's coarse colour field of z, clamped to [0, 1]."""
        if self.latent_map:  # (B, z_dim, h, w) -> (B, 3, h, w): the same linear map at every cell
            field = F.conv2d(z, self.coarse.weight[:, :, None, None], self.coarse.bias)
        else:
            field = self.coarse(z).view(-1, 3, self.grid, self.grid)
        field = F.interpolate(field, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (out + x[:, 3:4] * field).clamp(0, 1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One sample: z ~ p(z | x) with its std scaled by `temperature`; (B, 4, H, W) -> (B, 3, H, W)."""
        mu, logvar = self.prior_params(x)
        return self.decode(x, self.sample_z(mu, logvar, generator))

    def sample_z(self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                 eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + temperature * std * eps (mu's shape), eps ~ N(0, 1) from `generator` (or given: training's
        diversity term measures the distance between draws)."""
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * (0.5 * logvar).exp() * self.temperature


def push_pull_fill(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """A fast smooth fill of the unknown pixels: push-pull over an image pyramid (Gortler et al.'s
    lumigraph fill), O(pixels).

    image (B, C, H, W), known (B, 1, H, W) in [0, 1] (1 = known) -> (B, C, H, W): known pixels kept.
    Push: each coarser cell holds the weighted mean of its 2x2 children and the weight
    min(1, sum of theirs) (a cell with one known child already counts as known: the fill stays
    local). Pull, coarse to fine: a cell's colour is its own mean blended by its weight with the
    bilinear upsampled coarser colour. Milliseconds per megapixel (classical.prefill's
    biharmonic part costs seconds). A crop with no known pixel comes back grey (0.5).
    """
    levels = [(image, known)]
    while min(levels[-1][1].shape[-2:]) > 1 and not bool((levels[-1][1] > 0).all()):
        c, w = levels[-1]
        w_sum = F.avg_pool2d(w, 2, ceil_mode=True)
        c_next = F.avg_pool2d(c * w, 2, ceil_mode=True) / w_sum.clamp(min=1e-8)
        levels.append((c_next, (4 * w_sum).clamp(max=1)))
    c, w = levels[-1]
    fill = torch.where(w > 0, c, torch.full_like(c, 0.5))
    for c, w in reversed(levels[:-1]):
        up = F.interpolate(fill, size=c.shape[-2:], mode="bilinear", align_corners=False)
        fill = c * w + up * (1 - w)
    return image * known + fill * (1 - known)


def _conv(i: int, o: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(i, o, 3, stride, 1, padding_mode="reflect")


class FFCInpaint(nn.Module):
    """LaMa-style inpainting generator sized for the CPU.

    (B, 4, H, W) = [RGB in [0, 1] (the hole's content is ignored), mask {0, 1}] -> (B, 3, H, W) in
    [0, 1] (clamped, not composited). The hole is pre-filled by push_pull_fill (`prefill`; else left
    at 0); a 3x3 conv stem and `downs` stride-2 convs (widths channels * 2^i) bring it to 1/2^downs
    resolution, where `blocks` FFC residual blocks (global fraction `ratio`: a receptive field
    spanning the whole crop) work; nearest upsampling + 3x3 convs come back, each level adding
    the encoder's features of its size (U-Net-like additive skips, for sharp hole borders); the
    last conv, zero at start, predicts a correction of the pre-fill. H and W must be multiples
    of `input_multiple` = 2^downs. `act`: the trunk's and the FFC blocks' activation ('relu', the
    weights of round 2's stage 1; 'lrelu' trains: with no normalisation, the ReLU trunk's units die
    under the hole L1 (their biases drift negative while the correction is still noise) and the
    correction stays ~0, the pre-fill's).
    """

    classical_prefill = False  # it fills the hole itself (push-pull): give it the holed image

    def __init__(self, channels: int = 24, downs: int = 3, blocks: int = 6, ratio: float = 0.75,
                 prefill: bool = True, act: str = "relu"):
        super().__init__()
        if downs < 1 or blocks < 0 or channels < 4:
            raise ValueError(f"need downs >= 1, blocks >= 0, channels >= 4; got {downs}, {blocks}, {channels}")
        self.prefill, self.ratio = prefill, ratio
        widths = [channels * 2 ** i for i in range(downs + 1)]
        self.stem = nn.Sequential(_conv(4, widths[0]), activation(act))
        self.down = nn.ModuleList(nn.Sequential(_conv(widths[i], widths[i + 1], 2), activation(act))
                                  for i in range(downs))
        self.blocks = nn.ModuleList(FFCResnetBlock(widths[-1], ratio, act) for _ in range(blocks))
        self.up = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                              _conv(widths[i + 1], widths[i]), activation(act))
                                for i in reversed(range(downs)))
        self.head = _conv(widths[0], 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.input_multiple = 2 ** downs

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """The starting fill: (B, 3, H, W), the known pixels of x and the pre-fill (or 0) in the hole."""
        mask = x[:, 3:4]
        return push_pull_fill(x[:, :3], 1 - mask) if self.prefill else x[:, :3] * (1 - mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x[:, 3:4]
        base = self.base(x)
        h = self.stem(torch.cat([base * 2 - 1, mask], 1))
        skips = [h]
        for down in self.down:
            h = down(h)
            skips.append(h)
        pair = split_pair(h, self.ratio)
        for block in self.blocks:
            pair = block(pair)
        h = merge_pair(pair)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            h = up(h) + skip
        return (base + self.head(h)).clamp(0, 1)


ARCHS = {"unet": InpaintUnet, "pluralistic": PluralisticUnet, "ffc": FFCInpaint}


def define_G(arch: str, **config) -> nn.Module:
    """Build an inpainting generator by architecture name; unknown names list the valid ones."""
    if arch not in ARCHS:
        raise ValueError(f"unknown inpainting architecture {arch!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[arch](**config)

