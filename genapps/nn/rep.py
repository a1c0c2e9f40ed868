"""Re-parameterizable 3x3 convolution (the RepVGG / ECBSR idea): train with parallel branches,
run as one plain 3x3 convolution.

`RepConv3x3` holds a 3x3 branch, a 1x1 branch, a 1x1 -> 3x3 expand-squeeze branch, the identity
(when in == out) and, optionally, 1x1 -> fixed Sobel-x / Sobel-y / Laplacian edge branches with a
learnable scale per output channel. Every branch is linear, so their sum is one 3x3 kernel and
bias: `kernel_bias()` composes it (differentiably), `forward` convolves with it (one convolution
per step, the same function and gradients as running the branches), `forward_branches` runs
the branches one by one (the reference the composition is tested against), `fold()` returns
the plain `nn.Conv2d(in, out, 3, padding=1)` for inference.

Border exactness: a 1x1 -> 3x3 branch pads its intermediate with the 1x1 bias, not zeros (as
ECBSR does), so that the folded convolution's zero padding gives the same result at the borders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EDGE_MASKS = {
    "sobel_x": [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
    "sobel_y": [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
    "laplacian": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
}


def _pad_with(y: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H+2, W+2), the 1 px border filled with value[c] (a per-channel bias)."""
    v = value.view(1, -1, 1, 1)
    return F.pad(y - v, (1, 1, 1, 1)) + v


class RepConv3x3(nn.Module):
    """Training form of a 3x3 convolution: (B, in_ch, H, W) -> (B, out_ch, H, W), 'same' zero padding.

    expand: width multiplier of the 1x1 -> 3x3 branch (ECBSR uses 2); edges: add the Sobel/Laplacian
    branches; identity: add x when in_ch == out_ch.
    """

    def __init__(self, in_ch: int, out_ch: int, expand: int = 2, edges: bool = True, identity: bool = True):
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.conv3 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 1)
        mid = max(1, expand * out_ch)
        self.expand1 = nn.Conv2d(in_ch, mid, 1)
        self.expand3 = nn.Conv2d(mid, out_ch, 3)
        self.identity = identity and in_ch == out_ch
        self.edge_names = tuple(EDGE_MASKS) if edges else ()
        if edges:
            self.edge1 = nn.ModuleList(nn.Conv2d(in_ch, out_ch, 1) for _ in self.edge_names)
            self.edge_scale = nn.Parameter(torch.randn(len(self.edge_names), out_ch) * 1e-3)
            self.edge_bias = nn.Parameter(torch.zeros(len(self.edge_names), out_ch))
            self.register_buffer("edge_masks", torch.tensor([EDGE_MASKS[n] for n in self.edge_names]),
                                 persistent=False)

    def kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent 3x3 kernel (out, in, 3, 3) and bias (out,)."""
        k = self.conv3.weight + F.pad(self.conv1.weight, (1, 1, 1, 1))
        b = self.conv3.bias + self.conv1.bias
        w1, w3 = self.expand1.weight[:, :, 0, 0], self.expand3.weight  # (mid, in), (out, mid, 3, 3)
        k = k + torch.einsum("omhw,mi->oihw", w3, w1)
        b = b + self.expand3.bias + torch.einsum("omhw,m->o", w3, self.expand1.bias)
        if self.identity:
            k = k + F.pad(torch.eye(self.out_ch, dtype=k.dtype, device=k.device)[:, :, None, None], (1, 1, 1, 1))
        for i, conv in enumerate(self.edge_names and self.edge1):
            mask = self.edge_masks[i] * self.edge_scale[i].view(-1, 1, 1)  # (out, 3, 3), depthwise
            k = k + mask[:, None] * conv.weight  # (out, 1, 3, 3) * (out, in, 1, 1)
            b = b + self.edge_bias[i] + mask.sum((1, 2)) * conv.bias  # the masks sum to 0: kept for clarity
        return k, b

    def forward(self, x):
        return F.conv2d(x, *self.kernel_bias(), padding=1)

    def forward_branches(self, x):
        """The same function computed branch by branch (slow; the reference for tests)."""
        y = self.conv3(x) + self.conv1(x)
        y = y + self.expand3(_pad_with(self.expand1(x), self.expand1.bias))
        if self.identity:
            y = y + x
        for i, conv in enumerate(self.edge_names and self.edge1):
            mask = (self.edge_masks[i] * self.edge_scale[i].view(-1, 1, 1))[:, None]  # (out, 1, 3, 3)
            y = y + F.conv2d(_pad_with(conv(x), conv.bias), mask, self.edge_bias[i], groups=self.out_ch)
        return y

    @torch.no_grad()
    def load_plain(self, conv: nn.Conv2d) -> None:
        """Start from a plain 3x3 convolution (the inverse of fold): the 3x3 branch takes its
        kernel (less the identity), the other branches start at zero output (their second
        factors are zero, so they still receive gradients); the function is then exactly `conv`'s."""
        k = conv.weight.detach().clone()
        if self.identity:
            k -= F.pad(torch.eye(self.out_ch, dtype=k.dtype, device=k.device)[:, :, None, None], (1, 1, 1, 1))
        self.conv3.weight.copy_(k)
        self.conv3.bias.copy_(conv.bias)
        for t in (self.conv1.weight, self.conv1.bias, self.expand3.weight, self.expand3.bias, self.expand1.bias):
            t.zero_()
        if self.edge_names:
            self.edge_scale.zero_()
            self.edge_bias.zero_()

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        """The plain inference convolution computing the same function."""
        k, b = self.kernel_bias()
        conv = nn.Conv2d(self.in_ch, self.out_ch, 3, padding=1).to(k.device, k.dtype)
        conv.weight.copy_(k)
        conv.bias.copy_(b)
        return conv


def fold_rep(module: nn.Module) -> nn.Module:
    """Replace (in place) every RepConv3x3 inside `module` by its folded nn.Conv2d; returns `module`.

    The folded convolution takes the RepConv3x3's place, so its weights are named `<name>.weight`
    and `<name>.bias` in the state dict, as in the plain (deploy) form of the model."""
    for name, child in module.named_children():
        if isinstance(child, RepConv3x3):
            setattr(module, name, child.fold())
        else:
            fold_rep(child)
    return module
