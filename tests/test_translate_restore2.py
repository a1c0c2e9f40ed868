"""Translation round 2, restoration: NAFNet (genapps.nn.nafnet) with TLC pooling, pairs made on
the fly (`train pix2pix --synthesize`), --init stages."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genapps import weights
from genapps.inference import infer
from genapps.nn.nafnet import NAFNet, local_mean, widen_nafnet
from genapps.tasks.translate.models import ARCHS, define_G
from genapps.tasks.translate.training import JitterConfig, _zero_last, start_from, synthesized_batches
from tests.conftest import photo

TINY_NAF = ["--netg", "nafnet", "--ngf", 4, "--num-downs", 2, "--blocks", 1, "--gan-weight", 0, "--preprocess",
            "crop", "--crop-size", 16, "--batch-size", 2, "--ema", 0]


def test_local_mean_is_the_border_clipped_box_mean():
    x = torch.randn(2, 3, 19, 26)
    for window in (1, 4, 5, 8):
        total = F.avg_pool2d(F.pad(x, (window // 2, window - 1 - window // 2) * 2), window, 1, divisor_override=1)
        count = F.avg_pool2d(F.pad(torch.ones_like(x), (window // 2, window - 1 - window // 2) * 2), window, 1,
                             divisor_override=1)
        assert torch.allclose(local_mean(x, window), total / count, atol=1e-5), window
    assert torch.allclose(local_mean(x, 64), x.mean((2, 3), keepdim=True))  # map inside the window: global


def test_nafnet_shapes_identity_at_start_and_config_checks():
    net = NAFNet(3, 3, width=8, enc_blocks=(1, 2), middle_blocks=1, dec_blocks=(1, 1)).eval()
    assert net.input_multiple == 4
    x = torch.rand(2, 3, 24, 36)
    assert net(x).shape == x.shape
    _zero_last(net)  # what training does: with its output conv at zero the net starts as the identity
    assert torch.equal(net(x), x)
    grey = NAFNet(1, 3, width=4, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,))
    assert grey(torch.rand(1, 1, 8, 8)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="same length"):
        NAFNet(enc_blocks=(1, 1), dec_blocks=(1,))
    with pytest.raises(ValueError, match="in_ch"):
        NAFNet(in_ch=2, out_ch=3)
    assert "nafnet" in ARCHS


def _trained_like(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-zero gates and weights: a net whose output depends on its input everywhere."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.eval()


def test_tlc_tiles_equal_the_whole_image_and_global_pooling_would_not():
    net = _trained_like(define_G("nafnet", width=4, enc_blocks=[1, 1], middle_blocks=1, dec_blocks=[1, 1],
                                 local_window=24))
    assert net.receptive_radius > 12
    x = torch.rand(1, 3, 96, 120) * 2 - 1
    with torch.no_grad():
        whole = net(x)
        tiled = infer(net, x, tile=32, overlap=net.receptive_radius, batch_size=1, centre=True)
        assert (tiled - whole).abs().max() < 1e-4
        net.set_local_window(0)  # global pooling: a tile's statistics differ from the whole image's
        whole_global = net(x)
        tiled_global = infer(net, x, tile=32, overlap=net.receptive_radius or 32, batch_size=1, centre=True)
        assert (tiled_global - whole_global).abs().max() > 1e-3
        assert (whole_global - whole).abs().max() > 1e-3  # the window changed the result: the test can fail
        again = net(x)
    assert torch.equal(again, whole_global)  # deterministic


def test_synthesized_batches_degrade_each_crop_afresh():
    photos = [photo((40, 50), seed=s) for s in range(3)]
    next_batch = synthesized_batches(photos, JitterConfig("crop", 0, 16), 4, "mixed", seed=0)
    a, b = next_batch()
    assert a.shape == b.shape == (4, 3, 16, 16) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert (a - b).abs().mean() > 0.005  # A is a degraded B
    a2, _ = next_batch()
    assert not torch.equal(a, a2)
    again = synthesized_batches(photos, JitterConfig("crop", 0, 16), 4, "mixed", seed=0)()
    assert torch.equal(again[0], a) and torch.equal(again[1], b)  # seeded


@pytest.fixture
def photo_folder(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(5):
        Image.fromarray(photo((36, 44), seed=i)).save(d / f"p{i}.png")
    return d


def test_train_nafnet_on_the_fly_translate_and_init_stage(tmp_path, cli, photo_folder):
    out = tmp_path / "naf.safetensors"
    r = cli("train", "pix2pix", "--data", photo_folder, "--synthesize", "degrade", "--val-split", 2, "--steps", 3,
            "--out", out, *TINY_NAF)
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["arch"] == "nafnet" and card["config"]["local_window"] == 24
    assert card["config"]["enc_blocks"] == [1, 2] and card["config"]["middle_blocks"] == 1
    assert len(card["stages"]) == 1 and card["stages"][0]["synthesize"] == "degrade"
    assert card["validation_identity"]["val_identity_psnr"] > 0  # the 2 held-out photos, degraded per file
    # the checkpoint carries its config: loading needs no flag
    g, info = weights.load_model(out, "translate", ARCHS)
    assert info.arch == "nafnet" and g.local_window == 24
    res = tmp_path / "res"
    r = cli("translate", photo_folder, res, "-m", out)
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(res / "p0.png")).shape == (36, 44, 3)
    # a second stage from the first one's weights, deepened at the 1/2 level (--deep-blocks 3): the card lists
    # both stages, and the deeper net starts as exactly the first one (new NAF blocks are the identity)
    deeper = define_G("nafnet", **(card["config"] | {"enc_blocks": [1, 3]}))
    start_from(deeper, str(out))
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(deeper.eval()(x), g.float().eval()(x))
    out2 = tmp_path / "naf2.safetensors"
    r = cli("train", "pix2pix", "--data", photo_folder, "--synthesize", "degrade", "--val-split", 2, "--steps", 2,
            "--out", out2, "--init", out, *TINY_NAF, "--deep-blocks", 3)
    assert r.exit_code == 0, r.output
    card2 = json.loads(out2.with_suffix(".json").read_text())
    assert len(card2["stages"]) == 2 and card2["config"]["enc_blocks"] == [1, 3]
    # --init of weights sharing no tensor with the model: one line saying so
    r = cli("train", "pix2pix", "--data", photo_folder, "--synthesize", "degrade", "--val-split", 2, "--steps", 2,
            "--out", tmp_path / "naf3.safetensors", "--init", "colorize", *TINY_NAF)
    assert r.exit_code == 2 and "no tensor of it fits" in r.output and "Traceback" not in r.output


def test_a_widened_nafnet_computes_the_same_and_its_copies_learn_apart(tmp_path):
    """widen_nafnet: a 2x (and 3x) wider NAFNet equals the narrow one (global and TLC pooling, every
    block live); its copied channels get different gradients, so one optimiser step separates them;
    start_from widens a narrower NAFNet file (--init restore with a larger --ngf)."""
    narrow = _trained_like(NAFNet(3, 3, width=4, enc_blocks=(1, 2), middle_blocks=1, dec_blocks=(1, 1)))
    x = torch.rand(2, 3, 32, 40)
    for k in (2, 3):
        wide = NAFNet(3, 3, width=4 * k, enc_blocks=(1, 2), middle_blocks=1, dec_blocks=(1, 1)).eval()
        wide.load_state_dict(widen_nafnet(narrow.state_dict(), k, generator=torch.Generator().manual_seed(k)))
        for window in (0, 24):
            narrow.set_local_window(window), wide.set_local_window(window)
            with torch.no_grad():
                ref = narrow(x)
                assert (wide(x) - ref).abs().max() <= 1e-5 * ref.abs().max(), (k, window)
    # one step of plain SGD on the 2x net: the two copies of an intro channel no longer match
    wide = NAFNet(3, 3, width=8, enc_blocks=(1, 2), middle_blocks=1, dec_blocks=(1, 1))
    wide.load_state_dict(widen_nafnet(narrow.state_dict(), 2))
    assert torch.equal(wide.intro.weight[0], wide.intro.weight[4])
    wide.train()(x).square().mean().backward()
    with torch.no_grad():
        for p in wide.parameters():
            p -= 1e-3 * p.grad
    assert not torch.equal(wide.intro.weight[0], wide.intro.weight[4])
    with pytest.raises(ValueError, match="at least 2"):
        widen_nafnet(narrow.state_dict(), 1)
    # through start_from: a translate file of the narrow net starts a wider one with the same outputs
    path = tmp_path / "narrow.safetensors"
    config = {"width": 4, "enc_blocks": [1, 2], "middle_blocks": 1, "dec_blocks": [1, 1], "local_window": 24}
    narrow = _trained_like(define_G("nafnet", **config))
    weights.save_weights(path, narrow.state_dict(), {"task": "translate", "arch": "nafnet", "config": config})
    wide = define_G("nafnet", **(config | {"width": 8}))
    start_from(wide, str(path))
    with torch.no_grad():
        assert torch.allclose(wide.eval()(x), narrow(x), atol=1e-5)


def test_extra_photos_need_synthesize(tmp_path, cli, photo_folder):
    r = cli("train", "pix2pix", "--data", photo_folder, "--extra", photo_folder, "--steps", 1,
            "--out", tmp_path / "x.safetensors", *TINY_NAF)
    assert r.exit_code == 2 and "--synthesize" in r.output
