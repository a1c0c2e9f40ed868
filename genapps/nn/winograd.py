"""Fast fp32 CPU inference of 3x3 convolutions: Winograd F(6x6, 3x3), one implementation.

A 3x3 convolution over a 6x6 output tile costs 324 multiply-adds per channel pair directly and
64 in the Winograd domain (Lavin & Gray 2016; ncnn runs its models this way). `WinogradConv2d`
replaces any 3x3, stride-1, ungrouped nn.Conv2d (zero padding 0, 1, ...) at inference: on torch
builds with NNPACK (x86-64 AVX2 and ARM, `nnpack()`) it runs NNPACK's fused F(6x6, 3x3) kernels
(torch._nnpack_spatial_convolution, one image at a time), else the batched-matrix-product
transforms below: the 64 products of all tiles are one batched matrix product (64, tiles, C_in) x
(64, C_in, C_out), the tile transforms small dense matrix products. Both equal the direct
convolution to ~1e-5 relative (tested). `worth_it` says where it beats PyTorch's own (oneDNN)
convolution on one thread (measured: benchmarks/zoo2.md): wide layers.

In RRDBNet's dense blocks every convolution reads a concatenation of the same features; without
NNPACK `FastRRDBNet` transforms each feature once and shares it among the block's convolutions (the
batched-matrix-product path; NNPACK exposes no transforms, and its kernels beat the sharing).
`accelerate` puts these in a model:
RRDBNet, SRVGGNetCompact and an ncnn graph (genapps.nn.ncnn_graph). Inference only, fp32, CPU;
other dtypes and devices run the original convolution.
"""

from __future__ import annotations

import copy
import ctypes
import functools

import torch
import torch.nn.functional as F
from torch import nn

from genapps.nn.gemm_conv import GemmConv2d, patch_ok, thin_ok
from genapps.nn.ncnn_graph import NcnnGraph, NcnnModel, contiguous_nchw
from genapps.nn.sr import RRDBNet, SRVGGNetCompact

TILE = 6  # output tile; the input tile is TILE + 2
_N = TILE + 2


def _matrices() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B^T, G, A^T) of F(TILE, 3) by Toom-Cook at 0, +-1, +-2, +-1/2 and infinity (fp64).

    A^T and G follow from the points (Vandermonde rows, Lagrange denominators); B^T solves
    sum_k A^T[i,k] G[k,t] B^T[k,s] = [s == i + t], i.e. the 1-D correlation identity."""
    pts = [0, 1, -1, 2, -2, 0.5, -0.5][:_N - 1]
    at, g = torch.zeros(TILE, _N, dtype=torch.float64), torch.zeros(_N, 3, dtype=torch.float64)
    for j, p in enumerate(pts):
        at[:, j] = torch.tensor([p ** i for i in range(TILE)], dtype=torch.float64)
        denominator = torch.tensor([p - q for q in pts if q != p], dtype=torch.float64).prod()
        g[j] = torch.tensor([p ** t for t in range(3)], dtype=torch.float64) / denominator
    at[TILE - 1, _N - 1] = g[_N - 1, 2] = 1
    coeff = torch.einsum("ik,kt->itk", at, g).reshape(TILE * 3, _N)  # (i, t) x k
    system = torch.zeros(TILE * 3 * _N, _N * _N, dtype=torch.float64)
    rhs = torch.zeros(TILE * 3 * _N, dtype=torch.float64)
    for row, (it, s) in enumerate((it, s) for it in range(TILE * 3) for s in range(_N)):
        system[row, torch.arange(_N) * _N + s] = coeff[it]
        rhs[row] = float(s == it // 3 + it % 3)
    bt = torch.linalg.lstsq(system, rhs[:, None]).solution.reshape(_N, _N)
    return bt.round(decimals=9), g, at


_BT, _G, _AT = _matrices()
_BIAS_SLOT = _N + 1  # A^T e_1 = (1, ..., 1): a bias added at transform position (1, 1) reaches all outputs


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> (N*N, C_in, C_out): G g G^T per channel pair (computed in fp64)."""
    u = _G @ weight.detach().double() @ _G.T
    return u.permute(2, 3, 1, 0).reshape(_N * _N, weight.shape[1], weight.shape[0]).float().contiguous()


def transform_input(x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """NHWC (B, H, W, C) -> (V (N*N, tiles, C), geometry): B^T d B of every NxN tile
    (stride TILE, zero padding 1 as the convolution's)."""
    b, h, w, c = x.shape
    th, tw = -(-h // TILE), -(-w // TILE)
    xp = F.pad(x, (0, 0, 1, TILE * tw + 1 - w, 1, TILE * th + 1 - h))
    d = xp.unfold(1, _N, TILE).unfold(2, _N, TILE).permute(4, 5, 0, 1, 2, 3).reshape(_N, -1)
    bt = _BT.to(x)
    v = torch.matmul(bt, (bt @ d).view(_N, _N, -1))
    return v.view(_N * _N, b * th * tw, c), (b, h, w, th, tw)


def transform_output(m: torch.Tensor, bias: torch.Tensor | None, geometry: tuple) -> torch.Tensor:
    """(N*N, tiles, C_out) products -> NHWC (B, H, W, C_out): A^T m A per tile, plus the bias."""
    b, h, w, th, tw = geometry
    if bias is not None:
        m[_BIAS_SLOT] += bias
    at = _AT.to(m)
    y = torch.matmul(at, (at @ m.view(_N, -1)).view(TILE, _N, -1))
    y = y.view(TILE, TILE, b, th, tw, -1).permute(2, 3, 0, 4, 1, 5).reshape(b, TILE * th, TILE * tw, -1)
    return y if (TILE * th, TILE * tw) == (h, w) else y[:, :h, :w].contiguous()


class _Conv:
    """Transformed weights and bias of one 3x3 nn.Conv2d; called on transformed inputs."""

    def __init__(self, conv: nn.Conv2d):
        self.u = transform_weight(conv.weight)
        self.bias = None if conv.bias is None else conv.bias.detach().float().clone()

    def __call__(self, v: torch.Tensor, geometry: tuple) -> torch.Tensor:
        return transform_output(torch.bmm(v, self.u), self.bias, geometry)


def nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()  # free for a channels_last tensor


def nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)  # a channels_last view


def winograd_ok(conv: nn.Module) -> bool:
    """A plain 3x3, stride 1, ungrouped convolution with the same zero padding on both axes."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1])


@functools.cache
def nnpack() -> bool:
    """Whether this torch has NNPACK (x86-64 with AVX2, ARM); the check also initialises it (its
    convolutions fail before)."""
    try:
        return bool(torch.backends.nnpack.is_available())
    except (AttributeError, RuntimeError):
        return False


def worth_it(conv: nn.Module) -> bool:
    """Whether WinogradConv2d runs `conv` faster than PyTorch's own convolution on this CPU, one
    thread, on NCHW input, measured per layer shape (benchmarks/zoo2.md, section layers): with NNPACK
    from 16 input and output channels and 2048 channel pairs (19 -> 128: 0.65x the time; 32 -> 32 and
    narrower: no gain; 3 -> 64: 2x slower); with the batched-matrix-product path from 64 and 64."""
    if not winograd_ok(conv):
        return False
    if nnpack():
        return min(conv.in_channels, conv.out_channels) >= 16 and conv.in_channels * conv.out_channels >= 2048
    return min(conv.in_channels, conv.out_channels) >= 64


class WinogradConv2d(nn.Module):
    """Inference replacement of a 3x3 stride-1 nn.Conv2d (winograd_ok): (B, C_in, H, W) ->
    (B, C_out, H + 2p - 2, W + 2p - 2), fp32 on CPU through Winograd F(6x6, 3x3) (NNPACK when
    available: contiguous output; else the batched-matrix-product path: channels_last output);
    other dtypes and devices run the original convolution (`self.conv`)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not winograd_ok(conv):
            raise ValueError(f"not a plain 3x3 stride-1 convolution: {conv}")
        self.conv = conv
        self.padding = int(conv.padding[0])
        self.weight = conv.weight.detach().float().contiguous()
        self.bias = None if conv.bias is None else conv.bias.detach().float().contiguous()
        self._transformed: _Conv | None = None  # the batched-matrix-product path's weights, made on first use

    def forward(self, x):
        if x.dtype != torch.float32 or x.device.type != "cpu":
            return self.conv(x)
        if nnpack():
            x = contiguous_nchw(x)
            pad = [self.padding, self.padding]
            if x.shape[0] == 1:  # one image at a time: NNPACK's batch path is ~20% slower per image
                return torch._nnpack_spatial_convolution(x, self.weight, self.bias, pad)
            return torch.cat([torch._nnpack_spatial_convolution(xi[None], self.weight, self.bias, pad) for xi in x])
        if self._transformed is None:
            self._transformed = _Conv(self.conv)
        p = self.padding  # the transforms pad by 1: more is padded here, none is cropped
        if p > 1:
            x = F.pad(x, (p - 1,) * 4)
        y = nchw(self._transformed(*transform_input(nhwc(x))))
        return y[..., 1:-1, 1:-1] if p == 0 else y


class FastRRDBNet(nn.Module):
    """An RRDBNet (genapps.nn.sr) for fp32 CPU inference; same interface (scale, input_multiple,
    receptive_radius) and output. With NNPACK, the RRDBNet with its convolutions as WinogradConv2d
    (`self.net`: NNPACK's kernels beat the shared transforms: x4plus on 128 px took 5.3 s against
    5.8-6.0 s, one thread); without, the dense blocks' convolutions share the batched-matrix-product
    transforms."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.scale, self.input_multiple, self.receptive_radius = net.scale, net.input_multiple, net.receptive_radius
        self.net = with_winograd(net) if nnpack() else None
        if self.net is not None:
            return
        self.conv_first, self.conv_last = net.conv_first, net.conv_last  # 3/12/48 or 3 channels: direct
        self.convs = {name: _Conv(m) for name, m in net.named_modules()
                      if isinstance(m, nn.Conv2d) and m not in (net.conv_first, net.conv_last)}
        self.blocks = [[[self.convs[f"body.{i}.rdb{r}.conv{k}"] for k in range(1, 6)] for r in (1, 2, 3)]
                       for i in range(len(net.body))]

    def _conv(self, name: str, x: torch.Tensor, leaky: bool) -> torch.Tensor:
        y = self.convs[name](*transform_input(x))
        return F.leaky_relu_(y, 0.2) if leaky else y

    @staticmethod
    def _dense(x: torch.Tensor, convs: list) -> torch.Tensor:
        """One residual dense block on NHWC x: conv_k reads cat(x, x_1, ..., x_k-1), each transformed once."""
        v, geometry = transform_input(x)
        grow = convs[0].u.shape[-1]
        feats = torch.empty(_N * _N, v.shape[1], x.shape[-1] + 4 * grow, dtype=x.dtype)
        feats[..., :x.shape[-1]] = v
        c = x.shape[-1]
        for conv in convs[:4]:
            y = F.leaky_relu_(conv(feats[..., :c], geometry), 0.2)
            feats[..., c:c + grow] = transform_input(y)[0]
            c += grow
        return convs[4](feats, geometry).mul_(0.2).add_(x)

    def forward(self, x):
        x = x.float()
        if self.net is not None:
            return self.net(x)
        feat = F.pixel_unshuffle(x, self.input_multiple) if self.input_multiple > 1 else x
        feat = nhwc(self.conv_first(feat))
        h = feat
        for rrdb in self.blocks:
            start = h
            for convs in rrdb:
                h = self._dense(h, convs)
            h = h.mul_(0.2).add_(start)
        feat = feat + self._conv("conv_body", h, False)
        for name in ("conv_up1", "conv_up2"):
            feat = self._conv(name, feat.repeat_interleave(2, 1).repeat_interleave(2, 2), True)
        feat = self._conv("conv_hr", feat, True)
        return self.conv_last(nchw(feat))


# real peak RSS / the tensor bytes genapps.inference's memory probe tracks, for accelerate's models
# (kept freed memory, NNPACK's workspaces) in one pass: measured 2.4-3.7 (ncnn graphs at 512 px) and
# 3.8-4.4 (FastRRDBNet at 192-400 px), with margin (benchmarks/ncnn_graph.md, "Memory-safe tiling per family");
# FastRRDBNet 6.5: at 5.0 a 1-MP photo got 192-px tiles and peaked at 4.52 GB (27 passes) in the 4 GB budget
HIDDEN_MEMORY = {"winograd": 4.0, "rrdbnet": 6.5}


KEEP_FREED_MB = 256  # glibc serves blocks up to this size from its heap (larger ones are mmap-ed each time)
TRIM_ABOVE_MB = 2047  # and trims the heap's top only above this much free memory (a C int of bytes)


@functools.cache
def _keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for the next pass instead of returning it: blocks up to
    KEEP_FREED_MB come from the heap, and its top is trimmed only above TRIM_ABOVE_MB free (glibc
    only). Otherwise a pass's feature maps (77 MB at 550 px in Real-CUGAN's second U-Net) are
    mmap-ed, or the freed heap returned, and page-faulted in again at every pass: 1/6 of the time
    (realcugan-x2 in 460-px passes: 4.8-5.5 CPU s with 250-300k page faults per pass at 64 / 256 MB,
    4.0-4.3 s without; benchmarks/zoo2.md). What a tile pass keeps is given back when the tile shape
    changes (genapps.inference.release_freed_memory): every tile of an image has one shape."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, KEEP_FREED_MB << 20)
                    and libc.mallopt(m_trim_threshold, TRIM_ABOVE_MB << 20))
    except (OSError, AttributeError):
        return False


def with_winograd(model: nn.Module) -> nn.Module:
    """An inference copy of `model` (eval mode) with every convolution where `worth_it` as a WinogradConv2d,
    and the 2x2 stride-2 and few-output ones (genapps.nn.gemm_conv: patch_ok, thin_ok) as a GemmConv2d;
    with NNPACK (NCHW) its weights in the contiguous layout, so that the other layers keep NCHW too
    (channels_last weights make oneDNN return channels_last: each NNPACK layer would convert back)."""
    fast = copy.deepcopy(model)
    if nnpack():
        fast = fast.to(memory_format=torch.contiguous_format)
    for module in list(fast.modules()):
        for name, child in list(module.named_children()):
            if worth_it(child):
                setattr(module, name, WinogradConv2d(child))
            elif patch_ok(child) or thin_ok(child):
                setattr(module, name, GemmConv2d(child))
    return fast.eval()


def accelerate(model: nn.Module) -> nn.Module:
    """An fp32 CPU inference copy of an RRDBNet (FastRRDBNet), an SRVGGNetCompact or an ncnn graph
    (NcnnModel / NcnnGraph): their 3x3 stride-1 convolutions as WinogradConv2d where `worth_it`;
    other models unchanged."""
    if type(model) is RRDBNet:
        _keep_freed_memory()
        fast = FastRRDBNet(model).eval()
        fast.hidden_memory = HIDDEN_MEMORY["rrdbnet"]
        return fast
    if type(model) is SRVGGNetCompact or isinstance(model, (NcnnModel, NcnnGraph)):
        _keep_freed_memory()
        fast = with_winograd(model)
        fast.hidden_memory = HIDDEN_MEMORY["winograd"]
        return fast
    return model
