"""The Winograd F(6x6, 3x3) CPU path of RRDBNet and SRVGGNetCompact equals PyTorch's convolutions."""

import numpy as np
import pytest
import torch
from PIL import Image

from genapps import weights
from genapps.tasks.upscale.task import upscale_tensor
from genapps.nn.sr import RRDBNet, SRVGGNetCompact
from genapps.nn import winograd
from genapps.nn.winograd import FastRRDBNet, WinogradConv2d, accelerate
from genapps.tasks.upscale.models import SRResNet
from test_zoo import randomized


@pytest.mark.parametrize("cin, cout, shape, bias", [(8, 5, (2, 7, 13), True), (16, 16, (1, 1, 1), True),
                                                     (3, 20, (1, 12, 18), False), (4, 4, (1, 6, 6), True)])
def test_winograd_conv_equals_conv2d(cin, cout, shape, bias):
    conv = randomized(torch.nn.Conv2d(cin, cout, 3, padding=1, bias=bias), 1.0)
    x = torch.randn(shape[0], cin, *shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref, out = conv(x), WinogradConv2d(conv)(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_fast_rrdbnet_equals_rrdbnet(scale):
    net = randomized(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, scale=scale), 0.1)
    fast = accelerate(net)
    assert isinstance(fast, FastRRDBNet) and (fast.scale, fast.input_multiple) == (net.scale, net.input_multiple)
    x = torch.rand(1, 3, 12, 20, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref, out = net(x), fast(x)
    assert out.shape == ref.shape == (1, 3, 12 * scale, 20 * scale)
    assert (out - ref).abs().max() < 1e-5
    tiled = upscale_tensor(fast, x, scale, tile=8, overlap=4)  # also inside genapps's tiling
    assert (tiled - upscale_tensor(net, x, scale, tile=8, overlap=4)).abs().max() < 1e-5


def test_fast_srvgg_equals_srvgg_and_others_are_unchanged():
    net = randomized(SRVGGNetCompact(num_feat=16, num_conv=2, upscale=3))
    x = torch.rand(2, 3, 11, 9, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = net(x)
        assert (accelerate(net)(x) - ref).abs().max() <= 2e-5 * ref.abs().max()
    other = SRResNet(scale=2, channels=8, blocks=1)
    assert accelerate(other) is other


def test_upscale_runs_the_fast_path_with_the_same_result(tmp_path, cli):
    net = randomized(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4), 0.05)
    weights.save_weights(tmp_path / "rrdb.safetensors", net.state_dict(),
                    {"task": "upscale", "arch": "rrdbnet",
                     "config": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 4}})
    (tmp_path / "in").mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (14, 18, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in/a.png")
    result = cli("upscale", tmp_path / "in", tmp_path / "out", "-m", tmp_path / "rrdb.safetensors", "--device", "cpu")
    assert result.exit_code == 0, result.output
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    ref = (upscale_tensor(net, x, 4)[0].permute(1, 2, 0).numpy() * 255).round()
    out = np.asarray(Image.open(tmp_path / "out/a.png"), dtype=float)
    assert out.shape == (56, 72, 3) and np.abs(out - ref).max() <= 1


PATHS = ["nnpack", "matmul"] if winograd.nnpack() else ["matmul"]


@pytest.fixture(params=PATHS)
def winograd_path(request, monkeypatch):
    """Both implementations behind WinogradConv2d: NNPACK's kernels (when torch has them) and the
    batched-matrix-product transforms."""
    if request.param == "matmul":
        monkeypatch.setattr(winograd, "nnpack", lambda: False)
    return request.param


@pytest.mark.parametrize("cin, cout, shape, padding", [(32, 48, (1, 17, 23), 1), (48, 64, (3, 13, 8), 0),
                                                       (64, 32, (2, 9, 30), 2), (8, 5, (1, 1, 1), 1)])
def test_winograd_conv_equals_conv2d_any_padding(winograd_path, cin, cout, shape, padding):
    """WinogradConv2d equals the plain convolution to float tolerance on both paths, any zero padding,
    batches, NCHW and channels_last input."""
    conv = randomized(torch.nn.Conv2d(cin, cout, 3, padding=padding), 1.0)
    fast = WinogradConv2d(conv)
    x = torch.randn(shape[0], cin, *shape[1:], generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ref = conv(x)
        for inp in (x, x.to(memory_format=torch.channels_last)):
            out = fast(inp)
            assert out.shape == ref.shape
            assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()


def test_winograd_conv_runs_other_dtypes_as_the_plain_conv():
    conv = randomized(torch.nn.Conv2d(32, 32, 3, padding=1), 1.0).to(torch.bfloat16)
    x = torch.randn(1, 32, 10, 12).to(torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(WinogradConv2d(conv)(x), conv(x))


def test_worth_it_keeps_narrow_and_strided_convolutions():
    assert not winograd.worth_it(torch.nn.Conv2d(3, 64, 3, padding=1))  # the first layer: oneDNN is faster
    assert not winograd.worth_it(torch.nn.Conv2d(64, 64, 3, stride=2, padding=1))
    assert not winograd.worth_it(torch.nn.Conv2d(64, 64, 1))
    assert winograd.worth_it(torch.nn.Conv2d(64, 64, 3, padding=1))
    assert winograd.worth_it(torch.nn.Conv2d(64, 64, 3))  # valid (Real-CUGAN, waifu2x)


@pytest.mark.parametrize("scale", [4, 2])
def test_fast_rrdbnet_with_winograd_convs_equals_rrdbnet(winograd_path, scale):
    """A Real-ESRGAN-wide RRDBNet (one block) through accelerate, on both Winograd paths."""
    net = randomized(RRDBNet(num_feat=64, num_block=1, num_grow_ch=32, scale=scale), 0.03)
    fast = accelerate(net)
    assert isinstance(fast, FastRRDBNet) and fast.receptive_radius == net.receptive_radius
    x = torch.rand(1, 3, 14, 18, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        ref, out = net(x), fast(x)
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_accelerated_srvgg_uses_winograd_where_worth_it(winograd_path):
    net = randomized(SRVGGNetCompact(num_feat=64, num_conv=3, upscale=4), 0.05)
    fast = accelerate(net)
    swapped = [m for m in fast.body if isinstance(m, WinogradConv2d)]
    assert len(swapped) == (4 if winograd_path == "nnpack" else 3)  # the last 64 -> 48 too with NNPACK
    assert type(fast.body[0]) is torch.nn.Conv2d  # 3 -> 64 stays
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        ref = net(x)
        assert (fast(x) - ref).abs().max() <= 2e-5 * ref.abs().max()
