"""Convolutions as blocked matrix products on NCHW input, for fp32 CPU inference (one thread).

Three layer shapes that PyTorch's own (oneDNN) kernels run slowly on large NCHW tensors, and that
U-Nets (Real-CUGAN, waifu2x CUNet) run at full resolution (the patch paths from PATCH_PIXELS on):

- `patch_conv`: a convolution whose kernel equals its stride (2x2 stride-2 downsampling): the
  patches do not overlap, so each output pixel is one row of a (C_out, C_in*kh*kw) matrix product;
- `patch_deconv`: a transposed convolution whose kernel equals its stride (2x2 stride-2
  upsampling): each input pixel gives one (C_out, kh, kw) output patch, one matrix product;
- `thin_conv`: a stride-1 convolution with few output channels (C_out*kh*kw <= THIN_COLUMNS, the
  last 64 -> 3 layer): the products of every kernel tap as one matrix product, summed shifted.

Each runs a band of rows at a time (`_rows`), so that the rearranged inputs and the products stay
in the CPU's cache, and writes straight into the NCHW output. Exact up to float rounding (tested
against F.conv2d / F.conv_transpose2d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BLOCK = 4096  # input pixels per band of rows (1024-8192 measured alike on 64-128 channels, one thread)
PRODUCT_FLOATS = 1 << 19  # a band's patches (C_in*kh*kw, pixels) or deconvolution product (C_out*kh*kw, pixels):
# 2 MB, the size of the L2 cache
# (64 -> 64 at 258 px: 40.6 -> 36.6 CPU ms against 4096 pixels per band; 128 -> 128 at 131 px: 39.5 -> 30.5)
THIN_COLUMNS = 64  # C_out * kh * kw up to which a stride-1 convolution runs as `thin_conv`
PATCH_PIXELS = 1 << 18  # the patch paths from this many pixels on the larger side (input of a
# convolution, output of a deconvolution); below, oneDNN is as fast or faster (64 -> 64 on one thread,
# CPU ms, oneDNN / blocked: 2x2 stride-2 convolution 94.5 / 51 at 548 px input, 15.3 / 19.8 at 288 px;
# deconvolution 159 / 102 at 258 -> 516 px, 17.1 / 17.4 at 140 -> 280 px)


def _rows(width: int, block: int = BLOCK) -> int:
    return max(1, block // max(1, width))


def patch_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride=kernel size) without padding: (B, C_in, H, W) -> (B, C_out, H // kh, W // kw)."""
    b, c, h, w = x.shape
    co, _, kh, kw = weight.shape
    ho, wo = h // kh, w // kw
    wm = weight.reshape(co, c * kh * kw)
    out = torch.empty(b, co, ho, wo, dtype=x.dtype, device=x.device)
    step = _rows(wo, PRODUCT_FLOATS // (c * kh * kw))
    patches = torch.empty(c * kh * kw * step * wo, dtype=x.dtype, device=x.device)  # one band's, reused
    for n in range(b):
        ov = out[n].view(co, ho * wo)
        for r0 in range(0, ho, step):
            r1 = min(ho, r0 + step)
            u = patches[:c * kh * kw * (r1 - r0) * wo].view(c, kh, kw, r1 - r0, wo)
            u.copy_(x[n, :, r0 * kh:r1 * kh, :wo * kw].reshape(c, r1 - r0, kh, wo, kw).permute(0, 2, 4, 1, 3))
            u = u.view(c * kh * kw, (r1 - r0) * wo)
            if bias is None:
                torch.mm(wm, u, out=ov[:, r0 * wo:r1 * wo])
            else:
                torch.addmm(bias[:, None], wm, u, out=ov[:, r0 * wo:r1 * wo])
    return out


def patch_deconv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.conv_transpose2d(x, weight, bias, stride=kernel size) without padding, weight (C_in, C_out, kh, kw):
    (B, C_in, H, W) -> (B, C_out, H * kh, W * kw)."""
    b, c, h, w = x.shape
    _, co, kh, kw = weight.shape
    wm = weight.reshape(c, co * kh * kw).t().contiguous()  # (C_out*kh*kw, C_in)
    bm = None if bias is None else bias.repeat_interleave(kh * kw)[:, None]
    out = torch.empty(b, co, h * kh, w * kw, dtype=x.dtype, device=x.device)
    step = _rows(w, PRODUCT_FLOATS // (co * kh * kw))
    product = torch.empty(co * kh * kw, step * w, dtype=x.dtype, device=x.device)  # one band's, reused
    for n in range(b):
        xv, ov = x[n].reshape(c, h * w), out[n].view(co, h, kh, w, kw)
        for r0 in range(0, h, step):
            r1 = min(h, r0 + step)
            cols, y = xv[:, r0 * w:r1 * w], product[:, :(r1 - r0) * w]
            torch.mm(wm, cols, out=y) if bm is None else torch.addmm(bm, wm, cols, out=y)
            ov[:, r0:r1].copy_(y.view(co, kh, kw, r1 - r0, w).permute(0, 3, 1, 4, 2))
    return out


def thin_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
              padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """F.conv2d(x, weight, bias, padding=padding) (stride 1, zero padding) for few outputs:
    (B, C_in, H, W) -> (B, C_out, H + 2 ph - kh + 1, W + 2 pw - kw + 1); the padding is added band
    by band (no padded copy of the whole input)."""
    b, c, h, w = x.shape
    co, _, kh, kw = weight.shape
    ph, pw = padding
    ho, wo, wp = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1, w + 2 * pw
    wm = weight.permute(2, 3, 0, 1).reshape(kh * kw * co, c)
    out = torch.empty(b, co, ho, wo, dtype=x.dtype, device=x.device)
    step = _rows(wp, 4 * BLOCK)
    for n in range(b):
        for r0 in range(0, ho, step):
            r1 = min(ho, r0 + step)
            rows = r1 - r0 + kh - 1
            top, bottom = r0 - ph, r0 - ph + rows  # input rows of the band, padding outside [0, h)
            lo = min(h, max(0, top))
            hi = max(lo, min(h, bottom))
            band = x[n, :, lo:hi]
            if ph or pw:
                above = min(rows, max(0, lo - top))
                band = F.pad(band, (pw, pw, above, rows - above - (hi - lo)))
            p = torch.mm(wm, band.reshape(c, rows * wp)).view(kh, kw, co, rows, wp)
            y = out[n, :, r0:r1]
            if bias is None:
                y.copy_(p[0, 0, :, :r1 - r0, :wo])
            else:
                torch.add(p[0, 0, :, :r1 - r0, :wo], bias.view(-1, 1, 1), out=y)
            for dy in range(kh):
                for dx in range(kw):
                    if dy or dx:
                        y += p[dy, dx, :, dy:dy + r1 - r0, dx:dx + wo]
    return out


def _plain(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.groups == 1 and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


def patch_ok(conv: nn.Module) -> bool:
    """An ungrouped, unpadded convolution whose stride equals its kernel (larger than 1x1)."""
    return (_plain(conv) and conv.stride == conv.kernel_size and conv.kernel_size != (1, 1)
            and conv.padding == (0, 0))


def thin_ok(conv: nn.Module) -> bool:
    """An ungrouped stride-1 convolution from 16 input channels to few outputs (C_out*kh*kw <= THIN_COLUMNS)."""
    kh, kw = conv.kernel_size if isinstance(conv, nn.Conv2d) else (0, 0)
    return (_plain(conv) and conv.stride == (1, 1) and kh * kw > 1 and conv.in_channels >= 16
            and conv.out_channels * kh * kw <= THIN_COLUMNS)


class GemmConv2d(nn.Module):
    """Inference replacement of an nn.Conv2d that `patch_ok` or `thin_ok` accepts: fp32 CPU input
    NCHW input through `patch_conv` / `thin_conv` (NCHW output), other input through the original
    convolution (`self.conv`)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not (patch_ok(conv) or thin_ok(conv)):
            raise ValueError(f"neither a patch nor a thin convolution: {conv}")
        self.conv = conv
        self.run = patch_conv if patch_ok(conv) else thin_conv
        self.padding = tuple(int(p) for p in conv.padding)
        self.weight = conv.weight.detach().float().contiguous()
        self.bias = None if conv.bias is None else conv.bias.detach().float().contiguous()

    def forward(self, x):
        if x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous():
            return self.conv(x)  # channels_last input stays with oneDNN (and keeps its layout)
        if self.run is thin_conv:
            return thin_conv(x, self.weight, self.bias, self.padding)
        if x.shape[2] * x.shape[3] < PATCH_PIXELS:
            return self.conv(x)
        return patch_conv(x, self.weight, self.bias)
