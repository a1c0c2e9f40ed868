"""Fast Fourier convolution (FFC, Chi et al. 2020), as LaMa (Suvorov et al. 2022) uses it for inpainting.

An FFC splits its channels into a local part (ordinary 3x3 convolutions) and a global part whose
spectral transform mixes channels in the 2-D Fourier domain (torch.fft.rfft2 -> 1x1 conv over the
real and imaginary parts -> irfft2): every output pixel of the global branch depends on every input
pixel, so one block already has a receptive field spanning the whole image, whatever its size
(which is what a large hole needs: context from far away). `ratio_gin` / `ratio_gout` are the
global fractions of the input / output channels; the four paths l->l, l->g, g->l (3x3 convs) and
g->g (the spectral transform) are summed into the output parts.

Differences from LaMa's code (a CPU-sized variant): no BatchNorm (train/eval would differ at the
small batches trained here; a residual block's branch is scaled by a learnable gain that starts
at 0 instead, as in ReZero, so a deep stack starts as the identity), no local Fourier unit.

Tensors: a pair (x_l (B, C_l, H, W), x_g (B, C_g, H, W)); a part of 0 channels is None. Any H, W
(rfft2 handles every size); results are deterministic on the CPU.
"""

from __future__ import annotations

import torch
from torch import nn

Pair = tuple[torch.Tensor | None, torch.Tensor | None]


class FourierUnit(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H, W): rfft2 (orthonormal), a 1x1 conv + ReLU over the stacked
    real and imaginary parts (2 C_in -> 2 C_out channels at every frequency), irfft2 back to H x W."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch * 2, out_ch * 2, 1, bias=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        spec = torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, H, W // 2 + 1) complex
        f = torch.stack((spec.real, spec.imag), 2).reshape(b, 2 * c, h, -1)
        f = self.act(self.conv(f.to(x.dtype))).float()
        f = f.reshape(b, -1, 2, h, f.shape[-1])
        out = torch.fft.irfft2(torch.complex(f[:, :, 0], f[:, :, 1]), s=(h, w), norm="ortho")
        return out.to(x.dtype)


class SpectralTransform(nn.Module):
    """LaMa's global path: 1x1 conv to C_out / 2 + ReLU, a FourierUnit (with its input added back:
    the spatial detail stays), 1x1 conv to C_out."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        mid = max(1, out_ch // 2)
        self.conv1 = nn.Sequential(nn.Conv2d(in_ch, mid, 1, bias=False), nn.ReLU(inplace=True))
        self.fu = FourierUnit(mid, mid)
        self.conv2 = nn.Conv2d(mid, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(x + self.fu(x))


def _split(channels: int, ratio: float) -> tuple[int, int]:
    """(local, global) channel counts for a global fraction `ratio`."""
    g = int(round(channels * ratio))
    return channels - g, g


class FFC(nn.Module):
    """One fast Fourier convolution: (x_l, x_g) -> (l2l(x_l) + g2l(x_g), l2g(x_l) + g2g(x_g)).

    in_ch / out_ch are the total channels; ratio_gin / ratio_gout their global fractions (0: no
    global part, 1: no local part). The local convs are k x k, reflect padded (stride 1).
    """

    def __init__(self, in_ch: int, out_ch: int, ratio_gin: float = 0.75, ratio_gout: float = 0.75,
                 kernel_size: int = 3):
        super().__init__()
        if not (0 <= ratio_gin <= 1 and 0 <= ratio_gout <= 1):
            raise ValueError(f"ratio_gin and ratio_gout must be in [0, 1], got {ratio_gin}, {ratio_gout}")
        self.in_l, self.in_g = _split(in_ch, ratio_gin)
        self.out_l, self.out_g = _split(out_ch, ratio_gout)

        def conv(i: int, o: int) -> nn.Module | None:
            return nn.Conv2d(i, o, kernel_size, padding=kernel_size // 2, padding_mode="reflect") if i and o else None

        self.l2l, self.l2g, self.g2l = conv(self.in_l, self.out_l), conv(self.in_l, self.out_g), conv(self.in_g, self.out_l)
        self.g2g = SpectralTransform(self.in_g, self.out_g) if self.in_g and self.out_g else None

    def forward(self, x: Pair) -> Pair:
        x_l, x_g = x
        out_l = out_g = None
        if self.out_l:
            out_l = sum(p(v) for p, v in ((self.l2l, x_l), (self.g2l, x_g)) if p is not None)
        if self.out_g:
            out_g = sum(p(v) for p, v in ((self.l2g, x_l), (self.g2g, x_g)) if p is not None)
        return out_l, out_g


def activation(name: str) -> nn.Module:
    """'relu' (LaMa's) or 'lrelu' (LeakyReLU 0.2: without a normalisation in front of it a ReLU unit whose
    bias drifts negative is dead for good, no gradient reaches it again; a leaky one recovers)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return nn.ReLU() if name == "relu" else nn.LeakyReLU(0.2)


ACTIVATIONS = ("relu", "lrelu")


class FFCAct(nn.Module):
    """FFC followed by an activation on each part (LaMa's FFC_BN_ACT without the BatchNorm)."""

    def __init__(self, in_ch: int, out_ch: int, ratio_gin: float = 0.75, ratio_gout: float = 0.75,
                 act: bool = True, kind: str = "relu"):
        super().__init__()
        self.ffc = FFC(in_ch, out_ch, ratio_gin, ratio_gout)
        self.act = activation(kind) if act else nn.Identity()

    def forward(self, x: Pair) -> Pair:
        out_l, out_g = self.ffc(x)
        return (self.act(out_l) if out_l is not None else None, self.act(out_g) if out_g is not None else None)


class FFCResnetBlock(nn.Module):
    """LaMa's FFC residual block: two FFCs (channels and ratio kept), added to the input part by
    part; the branch is scaled by a learnable gain starting at 0 (the block starts as the identity).
    `act`: the activation between the two FFCs (`activation`)."""

    def __init__(self, channels: int, ratio: float = 0.75, act: str = "relu"):
        super().__init__()
        self.conv1 = FFCAct(channels, channels, ratio, ratio, kind=act)
        self.conv2 = FFCAct(channels, channels, ratio, ratio, act=False)
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, x: Pair) -> Pair:
        y_l, y_g = self.conv2(self.conv1(x))
        x_l, x_g = x
        return (x_l + self.gain * y_l if x_l is not None else None,
                x_g + self.gain * y_g if x_g is not None else None)


def split_pair(x: torch.Tensor, ratio: float) -> Pair:
    """(B, C, H, W) -> (local, global) parts for a global fraction `ratio` (a part of 0 channels: None)."""
    n_l, n_g = _split(x.shape[1], ratio)
    return (x[:, :n_l] if n_l else None, x[:, n_l:] if n_g else None)


def merge_pair(x: Pair) -> torch.Tensor:
    """The inverse of split_pair: the parts concatenated along channels."""
    return torch.cat([p for p in x if p is not None], 1)
