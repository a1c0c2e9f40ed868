"""The U-Net generator of pix2pix, in the reference implementation's exact module layout.

junyanz/pytorch-CycleGAN-and-pix2pix builds `UnetGenerator` recursively from
`UnetSkipConnectionBlock`s; keeping that nesting (`model.model.1.model.3...`) lets genapps load
its `latest_net_G.pth` files unchanged. pix2pix (translate) and the inpainting model both use it;
inpainting adds a `bottleneck` (e.g. dilated residual blocks) at the innermost level for a
receptive field that spans large holes, and optional `refine` modules on a level's concatenated
output (skip + decoder features), where the reference has only the next transposed conv to mix them;
they sit outside the reference's `model` Sequentials, so its weights load with or without them.

Tensors: (B, in_ch, H, W) in [-1, 1] -> (B, out_ch, H, W) in [-1, 1] (tanh), with H and W
multiples of 2**num_downs (`input_multiple`).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

NORMS = {
    "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
    "instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
    "none": lambda channels: nn.Identity(),  # an Identity keeps the reference's module indices
}


def norm_layer(name: str):
    """The reference's `get_norm_layer`: a factory (channels -> module)."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; valid: {', '.join(NORMS)}")
    return NORMS[name]


class UnetSkipConnectionBlock(nn.Module):
    """One level: down (conv 4x4 s2), the inner levels, up (transposed conv 4x4 s2), skip by concatenation."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", use_dropout: bool = False,
                 bottleneck: nn.Module | None = None, refine: nn.Module | None = None):
        super().__init__()
        self.outermost = outermost
        self.refine = refine  # (B, 2 outer_nc, h, w) -> same: applied to the concatenated output
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"  # no bias before a batch norm's shift (the reference also drops it for 'none')
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        downnorm, upnorm = make_norm(inner_nc), make_norm(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv] + ([bottleneck] if bottleneck is not None else []) + [uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        out = torch.cat([x, self.model(x)], 1)
        return out if self.refine is None else self.refine(out)


def level_channels(level: int, ngf: int) -> int:
    """Channels of level `level`'s concatenated output (skip + decoder): 2 x its outer width."""
    return 2 * ngf * min(8, 2 ** (level - 1))


class UnetGenerator(nn.Module):
    """pix2pix's generator: `num_downs` levels (7 = reference unet_128, 8 = unet_256), widths
    ngf, 2ngf, 4ngf, then 8ngf for every deeper level; dropout on the inner 8ngf levels.

    `refine`: level -> module (level k in 1 .. num_downs - 1 works at 1/2^k of the input size on
    its concatenated output of `level_channels(k, ngf)` channels)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, num_downs: int = 7, ngf: int = 64, norm: str = "batch",
                 dropout: bool = False, bottleneck: nn.Module | None = None, refine: dict[int, nn.Module] | None = None):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 (the reference's smallest U-Net), got {num_downs}")
        refine = dict(refine or {})
        if bad := sorted(set(refine) - set(range(1, num_downs))):
            raise ValueError(f"refine levels must be in 1..{num_downs - 1}, got {bad}")
        level = num_downs - 1
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True, bottleneck=bottleneck,
                                        refine=refine.get(level))
        for _ in range(num_downs - 5):
            level -= 1
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=dropout,
                                            refine=refine.get(level))
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm, refine=refine.get(3))
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm, refine=refine.get(2))
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm, refine=refine.get(1))
        self.model = UnetSkipConnectionBlock(out_ch, ngf, input_nc=in_ch, submodule=block, outermost=True, norm=norm)
        self.input_multiple = 2 ** num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
