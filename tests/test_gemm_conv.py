"""genapps.nn.gemm_conv: the blocked matrix-product convolutions equal torch's reference ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genapps.nn import gemm_conv
from genapps.nn.gemm_conv import GemmConv2d, patch_conv, patch_deconv, patch_ok, thin_conv, thin_ok

TOL = 1e-5


def rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.fixture(params=[(gemm_conv.BLOCK, gemm_conv.PRODUCT_FLOATS), (8, 200)])
def block(request, monkeypatch):
    """The default bands of rows, and bands of one or two rows (several per image, a short last one;
    PRODUCT_FLOATS 200: two rows of the patch tests' 4-6 columns)."""
    monkeypatch.setattr(gemm_conv, "BLOCK", request.param[0])
    monkeypatch.setattr(gemm_conv, "PRODUCT_FLOATS", request.param[1])


@pytest.mark.parametrize("kernel, bias", [((2, 2), True), ((3, 2), False)])
def test_patch_conv(block, kernel, bias):
    x, w = rand(2, 5, 11, 9), rand(6, 5, *kernel, seed=1, scale=0.1)
    b = rand(6, seed=2) if bias else None
    want = F.conv2d(x, w, b, stride=kernel)  # 11 x 9 do not divide: the last rows/columns are dropped
    assert (patch_conv(x, w, b) - want).abs().max() <= TOL


@pytest.mark.parametrize("kernel, bias", [((2, 2), True), ((2, 3), False)])
def test_patch_deconv(block, kernel, bias):
    x, w = rand(2, 5, 7, 6), rand(5, 4, *kernel, seed=1, scale=0.1)
    b = rand(4, seed=2) if bias else None
    got = patch_deconv(x, w, b)
    assert got.is_contiguous() and (got - F.conv_transpose2d(x, w, b, stride=kernel)).abs().max() <= TOL


@pytest.mark.parametrize("kernel, bias, padding", [((3, 3), True, (0, 0)), ((1, 5), False, (0, 0)),
                                                   ((3, 3), True, (1, 1)), ((3, 5), False, (2, 1)),
                                                   ((3, 3), False, (6, 0))])
def test_thin_conv(block, kernel, bias, padding):
    x, w = rand(2, 16, 13, 10), rand(3, 16, *kernel, seed=1, scale=0.1)
    b = rand(3, seed=2) if bias else None
    assert (thin_conv(x, w, b, padding) - F.conv2d(x, w, b, padding=padding)).abs().max() <= TOL


@pytest.mark.parametrize("patch_pixels", [gemm_conv.PATCH_PIXELS, 0])
def test_gemm_conv2d_replaces_only_its_shapes(monkeypatch, patch_pixels):
    """Which convolutions GemmConv2d takes (patch: stride = kernel, unpadded; thin: stride 1, >= 16
    inputs, C_out*kh*kw <= 64), and that it equals the convolution it replaces, padding included;
    channels_last and bf16 input run the original convolution (and patches below PATCH_PIXELS)."""
    monkeypatch.setattr(gemm_conv, "PATCH_PIXELS", patch_pixels)
    assert patch_ok(nn.Conv2d(8, 8, 2, 2)) and not patch_ok(nn.Conv2d(8, 8, 2, 2, padding=1))
    assert not patch_ok(nn.Conv2d(8, 8, 3, 2)) and not patch_ok(nn.Conv2d(8, 8, 2, 2, groups=2))
    assert thin_ok(nn.Conv2d(64, 3, 3)) and thin_ok(nn.Conv2d(16, 7, 3, padding=1))
    assert not thin_ok(nn.Conv2d(64, 8, 3)) and not thin_ok(nn.Conv2d(8, 3, 3)) and not thin_ok(nn.Conv2d(64, 3, 3, 2))
    with pytest.raises(ValueError):
        GemmConv2d(nn.Conv2d(64, 64, 3))
    x = rand(1, 32, 12, 10)
    for conv in (nn.Conv2d(32, 3, 3, padding=1), nn.Conv2d(32, 3, (3, 1), padding=(1, 0)), nn.Conv2d(32, 16, 2, 2)):
        fast = GemmConv2d(conv)
        with torch.inference_mode():
            want = conv(x)
            assert (fast(x) - want).abs().max() <= TOL
            cl = fast(x.to(memory_format=torch.channels_last))
            assert cl.is_contiguous(memory_format=torch.channels_last) and (cl - want).abs().max() <= TOL
            assert fast.to(torch.bfloat16)(x.bfloat16()).dtype == torch.bfloat16
