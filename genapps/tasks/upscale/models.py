"""Super-resolution generators of the upscale task: genapps's own SRResNet and RepSR, and
`define_G` over them and the public BasicSR/Real-ESRGAN architectures of genapps.nn.sr.

All map (B, 3, h, w) in [0, 1] to (B, 3, h*scale, w*scale) (not clamped).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from genapps.nn import ResidualBlock, conv3x3
from genapps.nn.ncnn_graph import ncnn_model
from genapps.nn.rep import RepConv3x3, fold_rep
from genapps.nn.sr import PUBLIC_ARCHS, build_arch


def _cubic(t: float, a: float = -0.75) -> float:
    """torch's bicubic convolution kernel (a = -0.75) at distance t."""
    t = abs(t)
    if t <= 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    return a * (((t - 5) * t + 8) * t - 4) if t < 2 else 0.0


def bicubic_phase_kernel(scale: int) -> torch.Tensor:
    """(scale*scale, 1, 5, 5): torch's bicubic upscaling (align_corners=False) as a convolution
    whose output channel py*scale+px is the output sub-pixel (py, px): PixelShuffle of it (on a
    replicate-padded input) is F.interpolate(x, scale_factor=scale, mode="bicubic")."""
    taps = []
    for p in range(scale):
        t = (p + 0.5) / scale - 0.5  # output pixel s*k+p samples the input at k + t
        taps.append([_cubic(t - j) for j in range(-2, 3)])
    w = torch.tensor(taps)  # (scale, 5): weight of input k+j, j = -2..2
    return (w[:, None, :, None] * w[None, :, None, :]).reshape(scale * scale, 1, 5, 5)


class BicubicSkip(nn.Module):
    """(B, C, h, w) -> (B, C*s*s, h, w): bicubic x s upscaling before its PixelShuffle.

    Added to a network's last convolution before the one PixelShuffle, it replaces
    `F.interpolate(x, scale_factor=s, mode="bicubic")` + a full-resolution add: the same numbers
    (to float rounding) at a fraction of the time. No parameters (the weights files do not change).
    """

    def __init__(self, scale: int, channels: int = 3):
        super().__init__()
        self.channels = channels
        kernel = bicubic_phase_kernel(scale).repeat(channels, 1, 1, 1)  # (C*s*s, 1, 5, 5), grouped by C
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x):
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.kernel, groups=self.channels)


class SRResNet(nn.Module):
    """EDSR-style residual network (no batch norm) with a PixelShuffle tail and a bicubic skip.

    The network only learns the residual over bicubic upscaling, which makes short CPU trainings
    converge fast.
    """

    def __init__(self, scale: int = 4, channels: int = 48, blocks: int = 6, in_ch: int = 3):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        self.scale = scale
        self.head = conv3x3(in_ch, channels)
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.body_tail = conv3x3(channels, channels)
        self.tail = nn.Sequential(conv3x3(channels, in_ch * scale * scale), nn.PixelShuffle(scale))
        self.skip = BicubicSkip(scale, in_ch)

    def forward(self, x):
        feat = self.head(x)
        feat = feat + self.body_tail(self.body(feat))
        return self.tail[1](self.tail[0](feat) + self.skip(x))  # + bicubic, before the shuffle


class RepSR(nn.Module):
    """A plain 3x3 stack: conv(3 -> C), PReLU, `blocks` x (conv(C -> C), PReLU), conv(C -> 3*s*s),
    PixelShuffle, + bicubic skip (the REFERENCE-POINTS plain net at channels=48, blocks=12).

    deploy=0 is the training form (every conv a RepConv3x3 with parallel branches), deploy=1 the
    inference form (plain nn.Conv2d; the only form saved). `fold()` turns the first into the second
    with the same outputs; both have the same state-dict layout apart from the branch weights.
    """

    def __init__(self, scale: int = 4, channels: int = 48, blocks: int = 12, deploy: int = 1, in_ch: int = 3):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if deploy not in (0, 1):
            raise ValueError(f"deploy must be 0 (training form) or 1 (plain), got {deploy}")
        self.scale, self.deploy = scale, deploy
        conv = (lambda i, o: nn.Conv2d(i, o, 3, padding=1)) if deploy else RepConv3x3
        layers = [conv(in_ch, channels), nn.PReLU(channels)]
        for _ in range(blocks):
            layers += [conv(channels, channels), nn.PReLU(channels)]
        layers.append(nn.Conv2d(channels, in_ch * scale * scale, 3, padding=1) if deploy else
                      RepConv3x3(channels, in_ch * scale * scale, identity=False))  # sub-pixels: no identity
        self.body = nn.Sequential(*layers)
        with torch.no_grad():  # the last conv starts at 0: the untrained net is bicubic upscaling
            for name, p in layers[-1].named_parameters():
                if name in ("weight", "bias") or name.startswith(("conv3.", "conv1.", "expand3.", "edge_scale")):
                    p.zero_()
        self.upsample = nn.PixelShuffle(scale)
        self.skip = BicubicSkip(scale, in_ch)

    def forward(self, x):
        return self.upsample(self.body(x) + self.skip(x))

    def load_plain(self, plain: nn.Module) -> list[str]:
        """Start this model from a plain-form RepSR of the same width and depth (any scale):
        each RepConv3x3 from its folded convolution (RepConv3x3.load_plain), PReLUs copied; a
        layer of another shape (the last conv at another scale) keeps its initialisation.
        Returns the names of the layers not taken over."""
        skipped = []
        for i, (mine, theirs) in enumerate(zip(self.body, plain.body)):
            if (isinstance(mine, RepConv3x3) and isinstance(theirs, nn.Conv2d)
                    and theirs.weight.shape == (mine.out_ch, mine.in_ch, 3, 3)):
                mine.load_plain(theirs)
            elif type(mine) is type(theirs) and all(a.shape == b.shape for a, b in
                                                    zip(mine.state_dict().values(), theirs.state_dict().values())):
                mine.load_state_dict(theirs.state_dict())
            else:
                skipped.append(f"body.{i}")
        return skipped

    def fold(self) -> "RepSR":
        """This model in its plain inference form (deploy=1), sharing no tensors with it."""
        plain = fold_rep(copy.deepcopy(self))
        plain.deploy = 1
        return plain


# genapps's own nets, genapps.nn.sr's, and the ncnn graphs of the zoo wheels as genapps.zoo caches them
ARCHS = {"srresnet": SRResNet, "rep": RepSR} | PUBLIC_ARCHS | {"ncnn": ncnn_model}


def define_G(arch: str, **config) -> nn.Module:
    """Build a generator by architecture name; unknown names or config keys list the valid ones."""
    return build_arch(ARCHS, arch, config)
