"""NAFNet (Chen et al. 2022, "Simple Baselines for Image Restoration"): a U-Net of NAF blocks,
restoration's strong baseline at low compute. A NAF block is LayerNorm -> 1x1 -> depthwise 3x3
-> SimpleGate (x1 * x2) -> simplified channel attention -> 1x1, plus a gated feed-forward part;
no nonlinear activation at all. Keys follow the official implementation (intro, encoders, downs,
middle_blks, ups, decoders, ending), so its checkpoints' tensors map by name.

Tiling: the channel attention pools each feature map globally, which makes every output pixel
depend on the whole image, so tiles could never equal the whole. At inference genapps uses TLC
(Chu et al. 2022, "Improving Image Restoration by Revisiting Global Information Aggregation"):
the pool becomes a local mean over a window of `local_window` input px (1.5x the training crop
in the paper), which is also what the network saw in training. `receptive_radius` declares it,
so genapps.inference's tiled runner gives tiles that much context.

(B, C, H, W) in any range -> (B, C, H, W) = input + correction; H and W multiples of
`input_multiple` = 2 ** len(enc_blocks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """Layer norm over channels at each pixel (no spatial statistics: tiles stay exact)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


def _box_mean_1d(x: torch.Tensor, dim: int, window: int) -> torch.Tensor:
    """Mean over [i - window // 2, i + window - window // 2) along `dim` (2 or 3), clipped at the
    ends: running sums, read at the two ends of each box by slicing (no gather)."""
    n, r0, r1 = x.shape[dim], window // 2, window - window // 2
    c = F.pad(x.cumsum(dim), (0, 0, 1, 0) if dim == 2 else (1, 0))  # c[i] = sum of x[:i], length n + 1
    # replicate c at both ends: c_pad[j + r0] = c[clamp(j, 0, n)], so the box ends are plain slices
    c = F.pad(c, (0, 0, r0, r1) if dim == 2 else (r0, r1, 0, 0), mode="replicate")
    total = c.narrow(dim, r0 + r1, n) - c.narrow(dim, 0, n)
    i = torch.arange(n, device=x.device)
    count = (i + r1).clamp(max=n) - (i - r0).clamp(min=0)
    shape = [1] * x.ndim
    shape[dim] = n
    return total / count.to(x.dtype).view(shape)


def local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of x over a window x window box around each pixel (clipped at the borders), O(1) per
    pixel by running sums (separable); the global mean when the map is no larger than the window.

    x: (B, C, H, W) -> (B, C, H, W), or (B, C, 1, 1) for the global case.
    """
    h, w = x.shape[-2:]
    if h <= window and w <= window:
        return x.mean((2, 3), keepdim=True)
    return _box_mean_1d(_box_mean_1d(x, 2, window), 3, window)


class ChannelAttention(nn.Module):
    """Simplified channel attention: x * conv1x1(mean of x), the mean global in training and over
    `window` px of this level at inference (TLC; 0 = global)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.window = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = local_mean(x, self.window) if self.window and not self.training else x.mean((2, 3), keepdim=True)
        return x * self.conv(pooled)


class NAFBlock(nn.Module):
    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2):
        super().__init__()
        dw, ffn = c * dw_expand, c * ffn_expand
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.sca = ChannelAttention(dw // 2)
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.norm1, self.norm2 = LayerNorm2d(c), LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))  # both branches start closed: the block is the identity
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(self.norm1(inp)))
        x1, x2 = x.chunk(2, 1)  # SimpleGate
        x = self.conv3(self.sca(x1 * x2))
        y = inp + x * self.beta
        x1, x2 = self.conv4(self.norm2(y)).chunk(2, 1)
        return y + self.conv5(x1 * x2) * self.gamma


class NAFNet(nn.Module):
    """The NAFNet U-Net. width: channels at full resolution (doubled per level); enc_blocks /
    dec_blocks: NAF blocks per level (same length = number of levels); middle_blocks at the bottom.

    local_window: TLC's pooling window in input px at inference (0 = global pooling, the
    official behaviour); genapps sets it to 1.5x the training crop.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, width: int = 16, enc_blocks=(1, 1, 1, 2),
                 middle_blocks: int = 4, dec_blocks=(1, 1, 1, 1), local_window: int = 0):
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(f"enc_blocks {list(enc_blocks)} and dec_blocks {list(dec_blocks)} need the same length")
        if out_ch != in_ch and in_ch != 1:
            raise ValueError(f"NAFNet adds its input to its output: in_ch must be 1 or {out_ch}, got {in_ch}")
        self.intro = nn.Conv2d(in_ch, width, 3, padding=1)
        self.ending = nn.Conv2d(width, out_ch, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        chan = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*(NAFBlock(chan) for _ in range(n))))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, 2))
            chan *= 2
        self.middle_blks = nn.Sequential(*(NAFBlock(chan) for _ in range(middle_blocks)))
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*(NAFBlock(chan) for _ in range(n))))
        self.input_multiple = 2 ** len(enc_blocks)
        self.set_local_window(local_window)

    def set_local_window(self, window: int) -> None:
        """TLC: pool channel attention over `window` input px at inference (0 = globally)."""
        self.local_window = int(window)
        # 3x3 convs at every level + the pooling window: what a tile needs around the pixels it keeps
        levels = len(self.encoders)
        self.receptive_radius = self.local_window // 2 + 2 * sum(2 ** i for i in range(levels + 1)) + 2 if window else 0
        for level, blocks in enumerate(list(self.encoders) + [self.middle_blks]):
            for block in blocks:
                block.sca.window = max(1, window // 2 ** level) if window else 0
        for i, blocks in enumerate(self.decoders):
            level = len(self.decoders) - 1 - i
            for block in blocks:
                block.sca.window = max(1, window // 2 ** level) if window else 0

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        return inp + self.ending(x)


def _tile(c: int, k: int) -> torch.Tensor:
    """New channel n of a k-times wider feature map copies old channel n % c."""
    return torch.arange(k * c) % c


def _gated(c2: int, k: int) -> torch.Tensor:
    """The map for a tensor that SimpleGate splits in halves (x1 | x2 of c2 // 2 each): each new half
    copies its old half, so the gate's product is the tiled old product."""
    h = c2 // 2
    return torch.cat([_tile(h, k), h + _tile(h, k)])


def _shuffled(c: int, k: int) -> torch.Tensor:
    """The map for an up-convolution's output before PixelShuffle(2): groups of 4 channels make one
    output channel, so whole groups are tiled."""
    n = torch.arange(k * c)
    return 4 * ((n // 4) % (c // 4)) + n % 4


def widen_nafnet(state: dict[str, torch.Tensor], factor: int = 2, spread: float = 0.2,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A NAFNet state dict made `factor` times wider (every level's channels) computing the same function
    (Net2WiderNet, Chen et al. 2016): each channel is copied `factor` times, and a convolution reading
    copied channels splits each weight among the copies at random (shares 1/factor +- spread/factor,
    summing to 1), so the copies' gradients differ and training pulls them apart. The layer norms see
    every channel `factor` times, so their mean and variance, and the whole forward, are unchanged.

    Why: a wider NAFNet can start from a trained narrower one rather than from zero (issue 29's next
    lever). Keys as NAFNet's; returns a new dict of float tensors.
    """
    k = int(factor)
    if k < 2:
        raise ValueError(f"factor must be an integer of at least 2, got {factor}")

    def split(w: torch.Tensor, in_map: torch.Tensor) -> torch.Tensor:
        """w (O, I_new, ...) read from copies: each weight times its copy's share of the original."""
        c = int(in_map.max()) + 1
        share = 1 + spread * (2 * torch.rand(w.shape[:2], generator=generator) - 1)  # (O, I_new)
        copies = torch.zeros(w.shape[0], c).index_add_(1, in_map, share)  # the shares' sum per original
        share = share / copies[:, in_map]
        return w * share.view(*share.shape, *[1] * (w.ndim - 2))

    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        t = t.float()
        leaf, kind = name.split(".")[-2:]
        if leaf in ("norm1", "norm2") or kind in ("beta", "gamma"):  # per channel: (C,) or (1, C, 1, 1)
            out[name] = t[:, _tile(t.shape[1], k)] if t.ndim == 4 else t[_tile(t.shape[0], k)]
            continue
        # (the map of the output channels, whether the input channels are copies); tensors are (O, I, kh, kw) or (O,)
        if name.startswith(("intro.", "ending.", "downs.", "ups.")):
            out_map, wide_in = {"intro": (_tile, False), "ending": (None, True), "downs": (_tile, True),
                                "ups": (_shuffled, True)}[name.split(".")[0]]
        elif leaf in ("conv1", "conv2", "conv4"):  # c -> the gated 2c (conv2: depthwise on it)
            out_map, wide_in = _gated, leaf != "conv2"
        elif leaf in ("conv", "conv3", "conv5"):  # sca.conv (gate -> gate), conv3 / conv5 (gate -> c)
            out_map, wide_in = _tile, True
        else:
            raise ValueError(f"widen_nafnet: {name!r} is not a NAFNet tensor")
        t = t[out_map(t.shape[0], k)] if out_map else t
        if kind == "weight" and wide_in:
            in_map = _tile(t.shape[1], k)
            t = split(t[:, in_map], in_map)
        out[name] = t
    return out
