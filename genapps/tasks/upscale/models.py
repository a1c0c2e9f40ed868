"""Super-resolution generators: genapps's own SRResNet, and the public BasicSR/Real-ESRGAN layouts.

All map (B, 3, h, w) in [0, 1] to (B, 3, h*scale, w*scale) (not clamped). The public classes
keep the exact parameter names of BasicSR so that their `.pth` files load unchanged.
"""

from __future__ import annotations

import copy
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from genapps.nn import ResidualBlock, conv3x3
from genapps.nn.rep import RepConv3x3, fold_rep


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


class MSRResNet(nn.Module):
    """BasicSR's MSRResNet (SRResNet without BN), parameter names as in basicsr/archs/srresnet_arch.py."""

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4):
        super().__init__()
        self.upscale = upscale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[_BasicSRResBlock(num_feat) for _ in range(num_block)])
        if upscale in (2, 3):
            self.upconv1 = nn.Conv2d(num_feat, num_feat * upscale * upscale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        elif upscale == 4:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        else:
            raise ValueError(f"MSRResNet supports upscale 2, 3, 4, got {upscale}")
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x):
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)


class _BasicSRResBlock(nn.Module):
    """basicsr ResidualBlockNoBN (names conv1, conv2)."""

    def __init__(self, num_feat=64, res_scale=1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class _ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat=64, num_grow_ch=32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, num_feat, num_grow_ch=32):
        super().__init__()
        self.rdb1 = _ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = _ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = _ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN / Real-ESRGAN generator, names as in basicsr/archs/rrdbnet_arch.py (x1, x2 via unshuffle, x4)."""

    def __init__(self, num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32):
        super().__init__()
        self.scale = scale
        self.input_multiple = {1: 4, 2: 2}.get(scale, 1)
        self.conv_first = nn.Conv2d(num_in_ch * self.input_multiple ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[_RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        feat = F.pixel_unshuffle(x, self.input_multiple) if self.input_multiple > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact net (realesr-general-x4v3, animevideov3), names as in realesrgan/archs."""

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4):
        super().__init__()
        self.upscale = upscale
        layers = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


ARCHS = {"srresnet": SRResNet, "rep": RepSR, "msrresnet": MSRResNet, "rrdbnet": RRDBNet, "srvgg": SRVGGNetCompact}


def define_G(arch: str, **config) -> nn.Module:
    """Build a generator by architecture name; unknown names or config keys list the valid ones."""
    if arch not in ARCHS:
        raise ValueError(f"unknown SR architecture {arch!r}; valid: {', '.join(ARCHS)}")
    valid = list(inspect.signature(ARCHS[arch]).parameters)
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ValueError(f"{arch}: unknown config keys {', '.join(map(str, unknown))}; valid: {', '.join(valid)}")
    return ARCHS[arch](**config)


def infer_public_arch(state: dict[str, torch.Tensor]) -> tuple[str, dict]:
    """(arch, config) of a BasicSR/Real-ESRGAN state dict, read off its key layout and shapes.

    Only a guess from the keys: the caller checks every shape against the built model
    (genapps.weights.build_from_weights); a malformed dict may raise KeyError/IndexError/ValueError.
    """
    def count(prefix: str) -> int:
        return len({k.split(".")[1] for k in state if k.startswith(prefix)})

    if "body.0.rdb1.conv1.weight" in state:
        in_ch = state["conv_first.weight"].shape[1]
        scale = {3: 4, 12: 2, 48: 1}.get(in_ch)
        if scale is None:
            raise ValueError(f"RRDBNet with {in_ch} input channels: cannot tell its scale")
        return "rrdbnet", {"scale": scale, "num_feat": state["conv_first.weight"].shape[0],
                           "num_block": count("body."), "num_grow_ch": state["body.0.rdb1.conv1.weight"].shape[0],
                           "num_out_ch": state["conv_last.weight"].shape[0]}
    if "conv_first.weight" in state and "upconv1.weight" in state:
        feat = state["conv_first.weight"].shape[0]
        scale = 4 if "upconv2.weight" in state else math.isqrt(state["upconv1.weight"].shape[0] // feat)
        return "msrresnet", {"num_feat": feat, "num_block": count("body."), "upscale": scale,
                             "num_in_ch": state["conv_first.weight"].shape[1],
                             "num_out_ch": state["conv_last.weight"].shape[0]}
    if "body.0.weight" in state and "body.1.weight" in state and state["body.1.weight"].ndim == 1:
        convs = sorted(int(k.split(".")[1]) for k in state if k.endswith(".weight") and state[k].ndim == 4)
        last = state[f"body.{convs[-1]}.weight"]
        in_ch = state["body.0.weight"].shape[1]
        return "srvgg", {"num_in_ch": in_ch, "num_feat": state["body.0.weight"].shape[0],
                         "num_conv": len(convs) - 2, "upscale": math.isqrt(last.shape[0] // in_ch)}
    raise ValueError("unrecognised weights: not an MSRResNet, RRDBNet or SRVGGNetCompact state dict")
