"""The public super-resolution architectures genapps runs: BasicSR's MSRResNet and RRDBNet
(ESRGAN / Real-ESRGAN) and Real-ESRGAN's SRVGGNetCompact, with an explicit factory.

All map (B, in_ch, h, w) in [0, 1] to (B, out_ch, h*scale, w*scale) (not clamped). The classes
keep the exact parameter names of BasicSR / Real-ESRGAN, so their `.pth` files and the zoo's
ncnn conversions load unchanged. genapps's own SR nets (SRResNet, RepSR) live with the upscale
task; genapps.nn.winograd runs RRDBNet and SRVGGNetCompact fast on CPU.

RRDBNet and SRVGGNetCompact declare `receptive_radius` (input px of context their output needs
to stay within 2/255 of the whole-image result; genapps.inference sizes tile margins by it).
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn


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


def rrdb_receptive_radius(num_block: int, unshuffle: int = 1) -> int:
    """Input px of context an RRDBNet of `num_block` blocks needs for its output to stay within
    2/255 of the whole-image result: its exact receptive radius (15 3x3 convolutions per block,
    conv_first, conv_body, the upsampling convolutions: 15 * num_block + 4 feature px) capped by
    what trained weights need, measured on Real-ESRGAN's x4plus (23 blocks: max 1.1/255 from 64
    px on) and x4plus-anime (6 blocks: max 0.3/255 from 48 px on): 42 + num_block feature px.
    A feature px is `unshuffle` input px (the x2/x1 variants' pixel-unshuffled input)."""
    return min(15 * num_block + 4, 42 + num_block) * unshuffle


class RRDBNet(nn.Module):
    """ESRGAN / Real-ESRGAN generator, names as in basicsr/archs/rrdbnet_arch.py (x1, x2 via unshuffle, x4)."""

    def __init__(self, num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32):
        super().__init__()
        self.scale = scale
        self.input_multiple = {1: 4, 2: 2}.get(scale, 1)
        self.receptive_radius = rrdb_receptive_radius(num_block, self.input_multiple)
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
        self.receptive_radius = num_conv + 2  # exact: num_conv + 2 3x3 convolutions, a nearest skip
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


PUBLIC_ARCHS = {"msrresnet": MSRResNet, "rrdbnet": RRDBNet, "srvgg": SRVGGNetCompact}


def build_arch(archs: dict[str, type[nn.Module]], arch: str, config: dict) -> nn.Module:
    """archs[arch](**config); an unknown name or config key raises a ValueError listing the valid ones
    (the upscale task's define_G uses it on its own table, this one plus genapps's nets)."""
    if arch not in archs:
        raise ValueError(f"unknown SR architecture {arch!r}; valid: {', '.join(archs)}")
    valid = list(inspect.signature(archs[arch]).parameters)
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ValueError(f"{arch}: unknown config keys {', '.join(map(str, unknown))}; valid: {', '.join(valid)}")
    return archs[arch](**config)


def define_public(arch: str, **config) -> nn.Module:
    """A public SR network by factory name (msrresnet | rrdbnet | srvgg) and its constructor arguments."""
    return build_arch(PUBLIC_ARCHS, arch, config)


def infer_public_arch(state: dict[str, torch.Tensor]) -> tuple[str, dict]:
    """(arch, config) of a BasicSR/Real-ESRGAN state dict, read off its key layout and shapes.

    Only a guess from the keys: the caller checks every shape against the built model
    (genapps.train.build_from_weights); a malformed dict may raise KeyError/IndexError/ValueError.
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
