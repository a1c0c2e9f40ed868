"""The Winograd F(6x6, 3x3) CPU path of RRDBNet and SRVGGNetCompact equals PyTorch's convolutions."""

import numpy as np
import pytest
import torch
from PIL import Image

from genapps import weights
from genapps.tasks.upscale.task import upscale_tensor
from genapps.nn.sr import RRDBNet, SRVGGNetCompact
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
