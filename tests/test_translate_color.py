"""Colourisation as classification (Zhang et al. 2016): the colour classes and their losses, the
annealed-mean decoding, the unet-ab colouriser (shapes, determinism, tiles, its checkpoint), its
training through the CLI, and the warning for colour input to a colouriser."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genapps import losses, metrics, weights
from genapps.nn.color import AB_GRID, ab_histogram, annealed_mean, bins_from_histogram, colour_from_ab, rgb_to_ab
from genapps.tasks.translate import task as translate
from genapps.tasks.translate.models import UnetAbClassifier, define_G, load_model
from genapps.tasks.translate.training import TEMPERATURES, UNDO_REBALANCE, start_from
from tests.conftest import photo

TINY_AB = ["--color-loss", "classification", "--gan-weight", 0, "--ngf", 4, "--num-downs", 5, "--preprocess", "crop",
           "--crop-size", 32, "--batch-size", 2, "--ema", 0]


def grid_bins(radius: int = 30) -> torch.Tensor:
    """A square grid of ab bins, symmetric about grey: (Q, 2)."""
    r = torch.arange(-radius, radius + 1, AB_GRID, dtype=torch.float32)
    return torch.cartesian_prod(r, r)


def tiny_colouriser(seed: int = 0, ngf: int = 4) -> UnetAbClassifier:
    torch.manual_seed(seed)
    g = define_G("unet-ab", bins=[int(v) for v in grid_bins().flatten()], temperature=0.38, ngf=ngf, num_downs=5)
    for m in g.modules():  # BN running stats away from the identity, so eval mode is a real test
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    return g.eval()


def test_bins_and_prior_from_colours():
    rgb = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0.5, 0.5, 0.5]])[:, :, None, None].expand(-1, -1, 4, 4)
    counts = ab_histogram(rgb_to_ab(rgb))
    bins, prior = bins_from_histogram(counts)
    assert counts.shape == (23, 23) and counts.sum() == 48 and bins.shape == (3, 2) and prior.shape == (3,)
    assert torch.allclose(prior, torch.full((3,), 1 / 3)) and (bins % AB_GRID == 0).all()
    assert [0.0, 0.0] in bins.tolist()  # grey is a bin; red has a > 0, blue b < 0
    assert any(a > 50 for a, _ in bins.tolist()) and any(b < -50 for _, b in bins.tolist())


def test_rebalancing_weights_shape_expectation_and_limits():
    bins = grid_bins(50)
    prior = torch.rand(len(bins)) ** 4
    prior /= prior.sum()
    w = losses.rebalancing_weights(prior, bins, 0.5)
    smooth = losses.smoothed_prior(prior, bins)
    assert w.shape == prior.shape and (w > 0).all()
    assert abs(float((smooth * w.double()).sum()) - 1) < 1e-5  # the expected weight under the smoothed prior
    assert float(w[smooth.argmax()]) == pytest.approx(float(w.min()))  # the commonest colour weighs least
    assert torch.allclose(losses.rebalancing_weights(prior, bins, 1.0), torch.ones(len(bins)))  # all uniform


def test_soft_encoding_and_cross_entropy_decreases_on_a_fixed_batch():
    bins = grid_bins()
    ab = torch.tensor([[[[3.0, -22.0]], [[8.0, 17.0]]]])  # (1, 2, 1, 2): pixels (a, b) = (3, 8) and (-22, 17)
    t = losses.soft_encode_ab(ab, bins)
    assert t.shape == (1, len(bins), 1, 2) and torch.allclose(t.sum(1), torch.ones(1, 1, 2))
    assert ((t > 0).sum(1) == 5).all()
    assert bins[t[0].argmax(0)[0]].tolist() == [[0.0, 10.0], [-20.0, 20.0]]  # the nearest bin weighs most
    g = tiny_colouriser()
    g.train()
    colour = torch.from_numpy(np.stack([photo((32, 32), seed=s) for s in (0, 1)])).permute(0, 3, 1, 2) / 255
    grey = (colour * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)
    target = losses.soft_encode_ab(torch.nn.functional.avg_pool2d(rgb_to_ab(colour), 2), g.bins)
    w = losses.rebalancing_weights(torch.full((len(bins),), 1 / len(bins)), bins)
    opt = torch.optim.Adam(g.parameters(), 1e-2)
    seen = []
    for _ in range(20):
        loss = losses.rebalanced_cross_entropy(g.logits(grey * 2 - 1), target, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(loss.item())
    assert seen[-1] < 0.8 * seen[0], seen
    # with unit weights: the plain cross-entropy of a uniform prediction is log Q
    uniform = losses.rebalanced_cross_entropy(torch.zeros_like(target), target, torch.ones(len(bins)))
    assert float(uniform) == pytest.approx(float(np.log(len(bins))), rel=1e-5)


def test_annealed_mean_mode_grey_and_luma():
    bins = grid_bins()
    top = torch.randint(len(bins), (1, 3, 4))
    logits = torch.rand(1, len(bins), 3, 4) + 2 * torch.nn.functional.one_hot(top, len(bins)).permute(0, 3, 1, 2)
    mode = bins[top].permute(0, 3, 1, 2)  # (1, 2, 3, 4): the ab of each pixel's most likely bin
    assert torch.allclose(annealed_mean(logits, bins, 1e-2), mode, atol=1e-3)  # T -> 0: the mode
    assert annealed_mean(torch.zeros(1, len(bins), 2, 2), bins, 0.38).abs().max() < 1e-5  # uniform: grey ab
    sharp, soft = (annealed_mean(logits, bins, t).abs().mean() for t in (0.1, 1.0))
    assert sharp > soft  # a lower temperature is more saturated
    with pytest.raises(ValueError, match="temperature"):
        annealed_mean(logits, bins, 0)
    grey = torch.rand(1, 1, 6, 5)
    out = colour_from_ab(grey, torch.zeros(1, 2, 6, 5))
    assert (out - grey).abs().max() < 2e-3  # grey ab: the grey itself
    vivid = colour_from_ab(grey * 0.5 + 0.25, torch.full((1, 2, 6, 5), 30.0))
    luma = (vivid * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)
    assert (luma - (grey * 0.5 + 0.25)).abs().max() < 1e-4 and metrics.colourfulness(vivid)[0] > 10


def test_colouriser_shapes_determinism_and_tiles():
    g = tiny_colouriser()
    x = torch.rand(1, 1, 96, 64)
    with torch.no_grad():
        assert g.logits(x * 2 - 1).shape == (1, len(grid_bins()), 48, 32)
        y = g(x * 2 - 1)
        assert y.shape == (1, 3, 96, 64) and y.min() >= -1 and y.max() <= 1
        assert torch.equal(y, g(x * 2 - 1))
        whole = translate.translate_tensor(g, torch.rand(1, 1, 90, 70))
        again = translate.translate_tensor(g, torch.rand(1, 1, 90, 70))
    assert not torch.equal(whole, again)
    torch.manual_seed(1)
    x = torch.rand(1, 1, 90, 70)
    with torch.no_grad():
        whole, tiled = translate.translate_tensor(g, x), translate.translate_tensor(g, x, tile=40, overlap=16)
        assert torch.equal(whole, translate.translate_tensor(g, x))
    assert tiled.shape == whole.shape == (1, 3, 90, 70)
    assert (tiled - whole).abs().mean() < 0.005 and (tiled - whole).abs().max() < 0.1
    assert translate.model_channels(g) == (1, 3)
    with pytest.raises(ValueError, match="bins"):
        UnetAbClassifier(bins=(0, 0, 10))


def test_undo_rebalance_divides_the_weights_out():
    g = tiny_colouriser(seed=5).eval()
    q = len(grid_bins())
    w = torch.rand(q) * 4 + 0.2
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        logits, plain = g.logits(x), g(x)
        g.set_rebalance(w.tolist(), 0.0)
        assert torch.equal(g(x), plain)  # alpha 0: as trained
        expected = g.decode(logits - 0.5 * w.log().view(1, -1, 1, 1), x)  # decoded before alpha is set
        g.set_rebalance(w.tolist(), 0.5)
        assert torch.allclose(g(x), expected, atol=1e-6) and (g(x) - plain).abs().max() > 1e-3
        g.set_rebalance(torch.ones(q).tolist(), 1.0)
        assert torch.allclose(g(x), plain, atol=1e-6)  # unit weights: nothing to divide out
    with pytest.raises(ValueError, match="rebalance_weights"):
        g.set_rebalance([1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="undo_rebalance"):
        g.set_rebalance([], 0.5)


def test_checkpoint_carries_bins_and_temperature(tmp_path):
    g = tiny_colouriser(seed=3)
    g.temperature = 0.6
    config = {"bins": [int(v) for v in g.bins.flatten()], "temperature": 0.6, "ngf": 4, "num_downs": 5, "norm": "batch"}
    path = tmp_path / "ab.safetensors"
    weights.save_weights(path, g.state_dict(), {"task": "translate", "arch": "unet-ab", "config": config})
    loaded, info = load_model(str(path), flags={"ngf": 64, "norm": "instance"})  # flags are for reference .pth only
    assert info.arch == "unet-ab" and loaded.temperature == 0.6 and torch.equal(loaded.bins, g.bins)
    x = torch.rand(1, 1, 32, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), g(x))
    # --init: a pix2pix colouriser's body starts unet-ab (the head keeps its initialisation)
    unet = define_G("unet", in_ch=1, out_ch=3, num_downs=5, ngf=4, residual=True)
    weights.save_weights(tmp_path / "u.safetensors", unet.state_dict(), {"task": "translate", "arch": "unet",
                                                                         "config": {}})
    fresh = tiny_colouriser(seed=4)
    start_from(fresh, str(tmp_path / "u.safetensors"))
    assert torch.equal(fresh.state_dict()["model.model.0.weight"], unet.state_dict()["model.model.0.weight"])
    other = define_G("resnet", in_ch=1, out_ch=3, ngf=4, n_blocks=1)
    weights.save_weights(tmp_path / "r.safetensors", other.state_dict(), {"task": "translate", "arch": "resnet",
                                                                          "config": {}})
    with pytest.raises(ValueError, match="no tensor"):
        start_from(fresh, str(tmp_path / "r.safetensors"))


def test_train_classification_then_colour_input_warns(tmp_path, cli, photo_dir, caplog):
    assert cli("pairs", photo_dir, tmp_path / "pairs", "--kind", "gray").exit_code == 0
    out = tmp_path / "ab.safetensors"
    r = cli("train", "pix2pix", "--data", tmp_path / "pairs", "--layout", "folders", "--val-split", 1, "--steps", 3,
            "--out", out, *TINY_AB)
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["arch"] == "unet-ab" and card["color_loss"]["bins"] == len(card["config"]["bins"]) // 2
    curve = card["temperature"]["curve"]
    assert card["config"]["temperature"] == card["temperature"]["chosen"] in [c["temperature"] for c in curve]
    assert card["config"]["undo_rebalance"] == card["temperature"]["undo_rebalance"] in {c["undo_rebalance"] for c in curve}
    assert len(card["config"]["rebalance_weights"]) == card["color_loss"]["bins"] and len(curve) == len(UNDO_REBALANCE) * len(TEMPERATURES)
    reloaded = load_model(str(out))[0]
    assert reloaded.undo_rebalance == card["config"]["undo_rebalance"] and reloaded.log_weights.shape == (card["color_loss"]["bins"],)
    assert all({"val_psnr", "val_colourfulness"} <= set(c) for c in curve) and card["stages"][-1]["steps"] == 3
    gan = tmp_path / "gan.safetensors"  # with a discriminator on the decoded colours, from the first model
    r = cli("train", "pix2pix", "--data", tmp_path / "pairs", "--layout", "folders", "--val-split", 1, "--steps", 2,
            "--out", gan, *TINY_AB, "--gan-weight", 0.1, "--ndf", 4, "--n-layers-d", 2, "--init", out)
    assert r.exit_code == 0, r.output
    assert {"d", "g_gan", "ce"} <= set(json.loads(gan.with_suffix(".json").read_text())["history"][-1])
    r = cli("train", "pix2pix", "--data", tmp_path / "pairs", "--layout", "folders", "--steps", 1, "--out",
            tmp_path / "bad.safetensors", *TINY_AB, "--residual")
    assert r.exit_code == 2 and "--residual" in r.output
    # grey input: colour out, no warning; colour input: colourised from its luma, with a warning
    grey, colour = tmp_path / "grey", tmp_path / "colour"
    grey.mkdir()
    colour.mkdir()
    Image.fromarray(photo(seed=5)).convert("L").save(grey / "g.png")
    Image.fromarray(photo(seed=5)).save(colour / "c.png")
    Image.fromarray(photo(seed=5)).convert("L").convert("RGB").save(colour / "grey_as_rgb.png")
    caplog.clear()
    r = cli("translate", grey, tmp_path / "o1", "-m", out)
    assert r.exit_code == 0 and "colour input" not in caplog.text
    assert np.asarray(Image.open(tmp_path / "o1/g.png")).shape == (48, 64, 3)
    r = cli("translate", colour, tmp_path / "o2", "-m", out)
    warned = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert r.exit_code == 0 and len(warned) == 1 and "c.png: colour input" in warned[0]
    records = {rec["input"].rsplit("/", 1)[-1]: rec
               for rec in json.loads((tmp_path / "o2/report.json").read_text())["stages"][0]["records"]}
    assert "luma only" in records["c.png"]["warning"] and records["grey_as_rgb.png"]["warning"] is None
    assert "colour image" in json.loads((tmp_path / "o2/report.json").read_text())["stages"][0]["summary"]["colour_inputs"]
    assert "warning: colour input" in (tmp_path / "o2/report.html").read_text()
    # the output of the colour file is the output of its luma
    luma = tmp_path / "luma"
    luma.mkdir()
    Image.fromarray(photo(seed=5)).convert("L").save(luma / "c.png")
    cli("translate", luma, tmp_path / "o3", "-m", out)
    diff = np.abs(np.asarray(Image.open(tmp_path / "o3/c.png"), int) - np.asarray(Image.open(tmp_path / "o2/c.png"), int))
    assert diff.max() <= 2  # PIL's luma rounding vs genapps' BT.601 on floats
