"""The fast Fourier convolution block (genapps.nn.ffc): shapes, a global receptive field, determinism."""

import pytest
import torch

from genapps.nn.ffc import FFC, FFCResnetBlock, FourierUnit, SpectralTransform, merge_pair, split_pair


def _pair(b=2, c=16, h=24, w=20, ratio=0.75, seed=0):
    torch.manual_seed(seed)
    return split_pair(torch.randn(b, c, h, w), ratio)


@pytest.mark.parametrize("h,w", [(16, 16), (24, 20), (17, 9)])
def test_fourier_unit_and_spectral_transform_keep_the_size(h, w):
    x = torch.randn(2, 6, h, w)
    assert FourierUnit(6, 4)(x).shape == (2, 4, h, w)
    assert SpectralTransform(6, 8)(x).shape == (2, 8, h, w)


@pytest.mark.parametrize("gin,gout", [(0.0, 0.75), (0.75, 0.75), (0.75, 0.0), (0.5, 0.25), (0.0, 0.0)])
def test_ffc_shapes_follow_the_ratios(gin, gout):
    x = split_pair(torch.randn(2, 16, 12, 10), gin)
    out_l, out_g = FFC(16, 32, gin, gout)(x)
    n_g = round(32 * gout)
    assert (out_l is None) == (n_g == 32) and (out_g is None) == (n_g == 0)
    if out_l is not None:
        assert out_l.shape == (2, 32 - n_g, 12, 10)
    if out_g is not None:
        assert out_g.shape == (2, n_g, 12, 10)
    assert merge_pair((out_l, out_g)).shape == (2, 32, 12, 10)


def test_ffc_rejects_bad_ratios():
    with pytest.raises(ValueError, match="ratio"):
        FFC(8, 8, 1.5, 0.5)


def test_split_and_merge_are_inverse():
    x = torch.randn(1, 10, 5, 5)
    assert torch.equal(merge_pair(split_pair(x, 0.75)), x)
    assert split_pair(x, 0.0)[1] is None and split_pair(x, 1.0)[0] is None


def test_resnet_block_starts_as_identity_and_keeps_shapes():
    block = FFCResnetBlock(16, 0.75)
    x = _pair()
    y = block(x)
    assert all(torch.equal(a, b) for a, b in zip(x, y))  # gain 0 at start
    block.gain.data.fill_(1.0)
    y = block(x)
    assert [t.shape for t in y] == [t.shape for t in x]
    assert not torch.equal(y[0], x[0])


def test_global_receptive_field_one_corner_changes_the_opposite_corner():
    """A 3x3 conv stack of two layers sees 5x5 pixels; one FFC block sees the whole image."""
    torch.manual_seed(0)
    block = FFCResnetBlock(16, 0.75).eval()
    block.gain.data.fill_(1.0)
    x = torch.randn(1, 16, 32, 32)
    x2 = x.clone()
    x2[:, :, :2, :2] += 5.0  # the top-left corner
    with torch.no_grad():
        a, b = merge_pair(block(split_pair(x, 0.75))), merge_pair(block(split_pair(x2, 0.75)))
    corner = (a - b)[:, :, -4:, -4:].abs()  # the bottom-right corner
    assert corner.max() > 1e-4
    # the local part alone (ratio 0: no spectral path) does not reach it
    local = FFCResnetBlock(16, 0.0).eval()
    local.gain.data.fill_(1.0)
    with torch.no_grad():
        a, b = merge_pair(local(split_pair(x, 0.0))), merge_pair(local(split_pair(x2, 0.0)))
    assert (a - b)[:, :, -4:, -4:].abs().max() == 0


def test_deterministic():
    torch.manual_seed(1)
    block = FFCResnetBlock(16, 0.75)
    block.gain.data.fill_(0.5)
    x = _pair(seed=3)
    with torch.no_grad():
        a, b = block(x), block(x)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_gradients_reach_every_parameter():
    block = FFCResnetBlock(16, 0.75)
    block.gain.data.fill_(1.0)
    out = merge_pair(block(_pair()))
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
