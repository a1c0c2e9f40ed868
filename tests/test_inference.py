"""genapps.inference: the one padding, tiled runner, TTA and grey/alpha/16-bit round trip that
upscale, translate and inpaint share, and the size requirement every model declares."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import photo
from PIL import Image
from torch import nn

from genapps import io
from genapps.inference import (SizeRequirements, _ramp, _spans, dihedral, dihedral_tta, infer, pad_to_multiple, round_trip,
                               size_requirements, to_channels)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (24, 32), (37, 53)])
@pytest.mark.parametrize("req", [SizeRequirements(), SizeRequirements(4), SizeRequirements(32),
                                 SizeRequirements(8, minimum=64)])
@pytest.mark.parametrize("context", [0, 8])
@pytest.mark.parametrize("centre", [False, True])
def test_pad_to_multiple_round_trip(size, req, context, centre):
    x = torch.rand(2, 3, *size)
    xp, (top, left) = pad_to_multiple(x, req, context, centre)
    H, W = xp.shape[-2:]
    assert H % req.multiple == W % req.multiple == 0 and min(H, W) >= req.minimum
    assert torch.equal(xp[..., top:top + size[0], left:left + size[1]], x)  # crops back exactly
    c = min(context, size[0] - 1, size[1] - 1)
    assert top >= c and left >= c and H - top - size[0] >= c and W - left - size[1] >= c
    if not centre:  # what the requirement adds goes at the end
        assert (top, left) == (c, c)
    assert H == req.fit(size[0] + 2 * c) and W == req.fit(size[1] + 2 * c)  # no more than needed


def test_padding_mirrors_and_replicates_what_a_mirror_cannot_reach():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    xp, (top, left) = pad_to_multiple(x, SizeRequirements(1), context=2)
    assert (top, left) == (2, 2)
    assert torch.equal(xp[0, 0, 2, :2], x[0, 0, 0, 1:3].flip(0)) and torch.equal(xp[0, 0, 0, 2:6], x[0, 0, 2])
    xp, _ = pad_to_multiple(x, SizeRequirements(8))  # 5 more rows than a 3-row mirror gives: 2 reflected, then edge
    assert xp.shape[-2:] == (8, 8)
    assert torch.equal(xp[0, 0, 3:5, :4], x[0, 0, [1, 0]]) and (xp[0, 0, 5:, :4] == x[0, 0, 0]).all()


class ConvNet(nn.Module):
    """A small conv net (receptive radius 2 px, in input px) declaring a size requirement; with
    `unshuffle` it only takes multiples of it and sees the image on that grid (like RRDBNet x2)."""

    def __init__(self, scale=1, multiple=1, unshuffle=1, in_ch=3, out_ch=3):
        super().__init__()
        torch.manual_seed(0)
        self.input_multiple, self.unshuffle, self.scale = multiple, unshuffle, scale
        self.a = nn.Conv2d(in_ch * unshuffle ** 2, 8, 3, padding=1)
        self.b = nn.Conv2d(8, out_ch * (scale * unshuffle) ** 2, 1)

    def forward(self, x):
        x = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        return F.pixel_shuffle(self.b(torch.relu(self.a(x))), self.scale * self.unshuffle)


# (multiple, unshuffle, tile, overlap): the net is exact from `unshuffle` px inside a tile's edge
# on, and the blend uses margins rounded out to the multiple from their middle on (16 - 3: 3 -> 8)
TILINGS = [(m, u, t, o) for m, u in [(1, 1), (4, 1), (4, 4), (8, 2)] for t, o in [(8, 8), (12, 6), (9, 5), (16, 3)]
           if -(-o // m) * m // 2 >= u]


@pytest.mark.parametrize("scale", [1, 4])
@pytest.mark.parametrize("multiple,unshuffle,tile,overlap", TILINGS)
def test_tiled_equals_whole(scale, multiple, unshuffle, tile, overlap):
    net = ConvNet(scale, multiple, unshuffle).eval()
    x = torch.rand(2, 3, 29, 43)
    whole = infer(net, x, scale, context=8)
    tiled = infer(net, x, scale, tile=tile, overlap=overlap, batch_size=3, context=8)
    assert whole.shape == tiled.shape == (2, 3, 29 * scale, 43 * scale)
    assert (tiled - whole).abs().max() < 1e-5, "tiles on the model's grid, margins wider than its radius"


@pytest.mark.parametrize("multiple,minimum", [(1, 0), (8, 0), (4, 64), (16, 0)])
def test_tiles_of_an_axis_share_one_length_cover_it_once_and_keep_their_margins(multiple, minimum):
    req, rng = SizeRequirements(multiple, minimum), np.random.default_rng(multiple)
    for _ in range(300):
        size = req.fit(int(rng.integers(1, 2000)))
        tile = max(multiple, int(rng.integers(1, 500)) // multiple * multiple)
        overlap = int(rng.integers(0, 64))
        margin_px = -(-overlap // multiple) * multiple  # margins on the model's multiple
        spans = _spans(size, tile, overlap, req)
        assert len({end - start for start, end, _, _ in spans}) == 1, "one tile shape per image"
        owners, weight = np.zeros(size, int), torch.zeros(size)
        for start, end, fade_in, fade_out in spans:
            assert start % multiple == 0 and 0 <= start < end <= size and req.fit(end - start) == end - start
            assert end - fade_out > start + fade_in and end - start <= req.fit(tile + 2 * margin_px + multiple)
            assert fade_in >= margin_px or start == 0
            assert fade_out >= margin_px or end == size
            owners[start + fade_in:end - fade_out] += 1
            weight[start:end] += _ramp(end - start, fade_in, fade_out, overlap // 2)
        assert (owners == 1).all(), "the cores partition the axis"
        assert bool((weight > 0).all()), "every pixel gets a blending weight"
    # 816 px in 432-px tiles (16 px margins): two tiles of 424 px meeting at 408 (not 448 + 400 px);
    # 628 px in 192-px tiles, 73-px margins: three of 307 px (not 265 + 338 + 338 + 125)
    assert _spans(816, 432, 16, SizeRequirements()) == [(0, 424, 0, 16), (392, 816, 16, 0)]
    assert [end - start for start, end, _, _ in _spans(628, 192, 73, SizeRequirements())] == [307] * 3


def test_tiles_of_one_shape_run_in_batches_and_the_heap_is_trimmed_once(monkeypatch):
    import genapps.inference as inference
    calls, batches = [], []
    monkeypatch.setattr(inference, "release_freed_memory", lambda device: calls.append(device))
    net = ConvNet(1).eval()
    x = torch.rand(1, 3, 40, 60)
    whole = infer(net, x)
    assert len(calls) == 1, "a whole-image pass gives its memory back once"
    tiled = infer(net, x, tile=20, overlap=8, batch_size=4, forward=lambda t: batches.append(t.shape[0]) or net(t))
    assert (tiled - whole).abs().max() < 1e-5
    assert batches == [4, 2] and len(calls) == 2, "6 tiles of one shape: passes of 4 and 2, trimmed after the last"


def test_tiled_runner_takes_the_model_s_output_channels_and_a_forward_wrapper():
    net = ConvNet(1, 32, in_ch=1, out_ch=3).eval()  # colorize's shape: 1 -> 3 channels, a U-Net's multiple
    x = torch.rand(1, 1, 50, 70)
    kw = dict(centre=True, forward=lambda t: net(t * 2 - 1))
    whole, tiled = infer(net, x, **kw), infer(net, x, tile=16, overlap=16, batch_size=1, **kw)
    assert whole.shape == tiled.shape == (1, 3, 50, 70)
    assert (tiled - whole).abs().max() < 1e-5


def test_without_overlap_the_seams_show():
    net = ConvNet(1).eval()
    x = torch.rand(1, 3, 40, 40)
    assert (infer(net, x, tile=8, overlap=0) - infer(net, x)).abs().max() > 2 / 255


def test_tta_of_an_identity_is_the_input_and_undoes_each_transform():
    x = torch.rand(2, 3, 5, 7)
    assert torch.allclose(dihedral_tta(nn.Identity(), x), x, atol=1e-6)
    assert all(torch.equal(dihedral(dihedral(x, k), k, inverse=True), x) for k in range(8))
    assert len({dihedral(x, k).flatten().tolist().__repr__() for k in range(8)}) == 8
    mirror = lambda t: t.flip(-1)  # noqa: E731  a left-right mirror is an up-down one on the transposed views
    assert torch.allclose(dihedral_tta(mirror, x), (x.flip(-1) + x.flip(-2)) / 2, atol=1e-6)


@pytest.mark.parametrize("scale,multiple", [(1, 1), (2, 4)])
def test_infer_tta_is_the_mean_over_the_dihedral_views_whole_and_in_tiles(scale, multiple):
    """`infer(tta=True)`: each pass averages the model over the 8 flips/transposes of the padded input
    (a conv net is not flip-equivariant, so it differs from one pass); tiles equal the whole."""
    net = ConvNet(scale, multiple).eval()
    x = torch.rand(1, 3, 21, 30)
    xp, (top, left) = pad_to_multiple(x, SizeRequirements(multiple))
    with torch.no_grad():
        want = dihedral_tta(net, xp)[..., top * scale:(top + 21) * scale, left * scale:(left + 30) * scale]
    whole = infer(net, x, scale, tta=True)
    assert torch.allclose(whole, want, atol=1e-6)
    assert (whole - infer(net, x, scale)).abs().max() > 1e-3
    assert torch.allclose(infer(net, x, scale, tile=8, overlap=8, tta=True), whole, atol=1e-5)


def test_round_trip_keeps_grey_alpha_and_bit_depth():
    seen = []

    def double(planes):  # a x2 "model" that records what it is given
        seen.append(planes.shape[0])
        return F.interpolate(planes[None], scale_factor=2, mode="nearest")[0]

    grey16 = io.LoadedImage(torch.rand(1, 6, 8), torch.rand(1, 6, 8), 16)
    out = round_trip(grey16, double, alpha="model")
    assert seen == [3, 3]  # grey and alpha both run as RGB
    assert out.color.shape == out.alpha.shape == (1, 12, 16) and out.bit_depth == 16
    assert torch.allclose(out.alpha[:, ::2, ::2], grey16.alpha, atol=1e-6)
    out = round_trip(io.LoadedImage(torch.rand(3, 6, 8), torch.rand(1, 6, 8)), double, alpha="bicubic")
    assert out.color.shape == (3, 12, 16) and out.alpha.shape == (1, 12, 16) and out.bit_depth == 8
    rgba = io.LoadedImage(torch.rand(3, 6, 8), torch.rand(1, 6, 8), 16)
    out = round_trip(rgba, lambda p: 1 - p)  # alpha kept as it is
    assert out.alpha is rgba.alpha and torch.allclose(out.color, 1 - rgba.color) and out.bit_depth == 16
    with pytest.raises(ValueError, match="alpha must be"):
        round_trip(rgba, lambda p: p, alpha="nope")


def test_round_trip_gives_a_one_channel_model_luma_and_keeps_its_colour():
    colorize = lambda p: p.expand(3, -1, -1) * 0.5  # noqa: E731  1 -> 3 channels
    rgb = torch.rand(3, 4, 5)
    out = round_trip(io.LoadedImage(rgb), colorize, channels=1)
    assert out.color.shape == (3, 4, 5)
    assert torch.allclose(out.color[0], to_channels(rgb, 1)[0] * 0.5)
    grey = round_trip(io.LoadedImage(rgb[:1]), colorize, channels=1)  # grey in, colour out: stays colour
    assert grey.color.shape == (3, 4, 5)


def test_each_model_class_declares_its_size_requirement():
    from genapps.nn import ResnetGenerator, UnetGenerator
    from genapps.tasks.inpaint.models import define_G as inpaint_G
    from genapps.tasks.translate.models import define_G as translate_G
    from genapps.tasks.upscale.task import Bicubic
    from genapps.nn.winograd import accelerate
    from genapps.tasks.upscale.models import define_G as sr_G

    expected = [
        (UnetGenerator(num_downs=6, ngf=4), 64), (ResnetGenerator(ngf=4, n_blocks=1), 4),
        (translate_G("unet", num_downs=5, ngf=4), 32), (translate_G("resnet", ngf=4, n_blocks=1), 4),
        (translate_G("cycle", ngf=4, n_blocks=1), 4),
        (inpaint_G("unet", ngf=4, num_downs=5), 32), (inpaint_G("pluralistic", ngf=4, num_downs=6), 64),
        (sr_G("srvgg", num_feat=8, num_conv=2), 1), (Bicubic(2), 1),
    ]
    for scale, multiple in [(1, 4), (2, 2), (4, 1)]:
        rrdb = sr_G("rrdbnet", scale=scale, num_feat=8, num_block=1, num_grow_ch=4)
        expected += [(rrdb, multiple), (accelerate(rrdb), multiple)]
    for model, multiple in expected:
        assert size_requirements(model) == SizeRequirements(multiple), type(model).__name__


def test_a_spandrel_model_declares_its_architecture_s_requirements():
    pytest.importorskip("spandrel")
    from spandrel import ModelLoader
    from spandrel.architectures.SwinIR import SwinIR

    from genapps.weights import SpandrelModel

    net = SwinIR(img_size=16, window_size=4, embed_dim=12, depths=[1], num_heads=[2], mlp_ratio=1.0, upscale=2,
                 upsampler="pixelshuffledirect")
    desc = ModelLoader().load_from_state_dict(net.state_dict())
    model = SpandrelModel(desc).eval()
    req = size_requirements(model)
    assert (req.multiple, req.minimum) == (desc.size_requirements.multiple_of, desc.size_requirements.minimum)
    assert req != SizeRequirements()  # SwinIR has one (spandrel: a minimum size)
    x = torch.rand(1, 3, 6, 9)
    xp, _ = pad_to_multiple(x, req, context=8)
    assert xp.shape[-1] % req.multiple == 0 and min(xp.shape[-2:]) >= req.minimum
    assert infer(model, x, 2, context=8).shape == (1, 3, 12, 18)


def test_bundled_models_tiled_within_2_of_255_of_the_whole_image(tmp_path, cli):
    """The README's promise, for upscale's sr-x4 and translate's restore (cross-faded tiles)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo((96, 136), seed=3)).save(src / "a.png")
    for args, tiled in [(["upscale", "-m", "sr-x4"], ["-t", "16", "--tile-overlap", "16"]),
                        (["translate", "-m", "restore"], ["-t", "64"])]:
        outs = []
        for extra in ([], tiled):
            out = tmp_path / f"{args[0]}{len(extra)}"
            assert cli(args[0], src, out, *args[1:], *extra, "--no-report").exit_code == 0
            outs.append(np.asarray(Image.open(out / "a.png")).astype(int))
        assert outs[0].shape == outs[1].shape
        assert np.abs(outs[0] - outs[1]).max() <= 2, args
