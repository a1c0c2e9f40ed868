"""Translation: pair builders, pix2pix/CycleGAN training through the CLI, inference (any size,
determinism, test-time dropout, tiles, alpha/16-bit/grey), and the reference checkpoints."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from genapps import io, weights
from genapps.nn import PatchDiscriminator, ResnetGenerator, UnetGenerator
from genapps.tasks.translate import task as translate
from genapps.tasks.translate.models import define_G, infer_reference_arch
from genapps.tasks.translate.pairs import read_pairs
from genapps.tasks.translate.training import CycleGANConfig, CycleGANTraining
from tests.conftest import photo

TINY_P2P = ["--ngf", 4, "--num-downs", 5, "--preprocess", "crop", "--crop-size", 32, "--batch-size", 2,
            "--ndf", 4, "--n-layers-d", 2, "--ema", 0]
# dropout lives in the levels beyond the 5th: 6 levels need 64 px crops (the photos are resized)
TINY_DROPOUT = ["--dropout", "--ngf", 4, "--num-downs", 6, "--preprocess", "resize_and_crop", "--load-size", 64,
                "--crop-size", 64, "--batch-size", 2, "--ndf", 4, "--n-layers-d", 2, "--ema", 0]


@pytest.fixture
def photos(photo_dir):
    return photo_dir  # a.png, b.jpg, sub/c.png: 48x64 RGB


@pytest.fixture
def pix2pix(tmp_path, cli, photos):
    """A tiny pix2pix model with dropout, trained through the CLI on degrade pairs."""
    assert cli("pairs", photos, tmp_path / "pairs", "--kind", "degrade").exit_code == 0
    out = tmp_path / "p2p.safetensors"
    r = cli("train", "pix2pix", "--data", tmp_path / "pairs", "--layout", "folders", "--steps", 2, "--out", out,
            *TINY_DROPOUT)
    assert r.exit_code == 0, r.output
    return out


def read(path):
    return np.asarray(Image.open(path))


def test_pairs_kinds_and_layouts(tmp_path, cli, photos):
    for kind in ("edges", "gray", "degrade"):
        assert cli("pairs", photos, tmp_path / kind, "--kind", kind).exit_code == 0
        a, b = read(tmp_path / kind / "A/sub/c.png"), read(tmp_path / kind / "B/sub/c.png")
        assert b.shape == (48, 64, 3) and (a.shape == (48, 64) if kind != "degrade" else a.shape == b.shape)
        assert (tmp_path / kind / "A/b.png").exists()  # jpg photos become lossless png pairs
    square = np.full((40, 40, 3), 200, np.uint8)
    square[10:30, 10:30] = 30
    Image.fromarray(square).save(tmp_path / "sq.png")
    assert cli("pairs", tmp_path / "sq.png", tmp_path / "sq", "--kind", "edges").exit_code == 0
    edges = read(tmp_path / "sq/A/sq.png")
    assert set(np.unique(edges)) == {0, 255} and (edges[:, :5] == 255).all()  # black lines on white
    assert (edges[5:35, 5:35] == 0).sum() >= 60  # the square's outline
    assert cli("pairs", photos, tmp_path / "al", "--kind", "gray", "--layout", "aligned").exit_code == 0
    aligned = read(tmp_path / "al/a.png")
    assert aligned.shape == (48, 128, 3) and (aligned[:, 64:] == read(tmp_path / "gray/B/a.png")).all()
    # degradations are seeded per file: the same seed gives the same bytes, another seed differs
    assert cli("pairs", photos, tmp_path / "d2", "--kind", "degrade", "--layout", "input").exit_code == 0
    assert (read(tmp_path / "d2/a.png") == read(tmp_path / "degrade/A/a.png")).all()
    assert not (tmp_path / "d2/A").exists()
    assert cli("pairs", photos, tmp_path / "d3", "--kind", "degrade", "--layout", "input", "--seed", 1).exit_code == 0
    assert (read(tmp_path / "d3/a.png") != read(tmp_path / "d2/a.png")).any()


def test_read_pairs_layouts_and_directions(tmp_path, cli, photos):
    cli("pairs", photos, tmp_path / "f", "--kind", "gray")
    cli("pairs", photos, tmp_path / "al", "--kind", "gray", "--layout", "aligned")
    folders, aligned = read_pairs(tmp_path / "f", "folders"), read_pairs(tmp_path / "al", "aligned")
    assert [k for k, _, _ in folders] == [k for k, _, _ in aligned] == ["a", "b", "sub/c"]
    assert folders[0][1].shape == (48, 64, 1) and folders[0][2].shape == (48, 64, 3)
    assert (aligned[0][2] == folders[0][2]).all() and (aligned[0][1][:, :, 0] == folders[0][1][:, :, 0]).all()
    swapped = read_pairs(tmp_path / "f", "folders", "BtoA")
    assert swapped[0][1].shape == (48, 64, 3) and swapped[0][2].shape == (48, 64, 1)
    Image.fromarray(photo(seed=9)).save(photos / "a.jpg")  # a.png and a.jpg: both pairs kept, by extension
    cli("pairs", photos, tmp_path / "f2", "--kind", "gray")
    keys = [k for k, _, _ in read_pairs(tmp_path / "f2", "folders")]
    assert keys == ["a_jpg", "a_png", "b", "sub/c"]
    (tmp_path / "f/B/b.png").unlink()
    with pytest.raises(ValueError, match="without a partner"):
        read_pairs(tmp_path / "f", "folders")


def test_train_pix2pix_translate_deterministic_any_size_and_resume(tmp_path, cli, pix2pix):
    card = json.loads(pix2pix.with_suffix(".json").read_text())
    assert card["arch"] == "unet" and card["training"]["steps"] == 2 and "provenance" in card
    src = tmp_path / "odd"
    src.mkdir()
    Image.fromarray(photo((37, 53), seed=5)).save(src / "x.png")
    Image.fromarray(photo((70, 21), seed=6)).save(src / "y.png")
    for run in ("r1", "r2"):
        r = cli("translate", src, tmp_path / run, "-m", pix2pix, "--reference", src)
        assert r.exit_code == 0, r.output
        assert "psnr=" in r.output
    for name in ("x.png", "y.png"):
        assert (tmp_path / "r1" / name).read_bytes() == (tmp_path / "r2" / name).read_bytes()
    assert read(tmp_path / "r1/x.png").shape == (37, 53, 3) and read(tmp_path / "r1/y.png").shape == (70, 21, 3)
    # test-time dropout: differs from the deterministic output, reproducible by seed
    for run, seed in (("s1", 0), ("s2", 0), ("s3", 1)):
        assert cli("translate", src, tmp_path / run, "-m", pix2pix, "--stochastic", "--seed", seed).exit_code == 0
    assert (tmp_path / "s1/x.png").read_bytes() == (tmp_path / "s2/x.png").read_bytes()
    assert (read(tmp_path / "s1/x.png") != read(tmp_path / "r1/x.png")).any()
    assert (read(tmp_path / "s3/x.png") != read(tmp_path / "s1/x.png")).any()
    # -x: the mean over the 8 flips/transposes of the (odd-sized, padded) input, deterministic too
    for run in ("x1", "x2"):
        assert cli("translate", src, tmp_path / run, "-m", pix2pix, "-x").exit_code == 0
    assert (tmp_path / "x1/y.png").read_bytes() == (tmp_path / "x2/y.png").read_bytes()
    assert read(tmp_path / "x1/y.png").shape == (70, 21, 3)
    assert (read(tmp_path / "x1/y.png") != read(tmp_path / "r1/y.png")).any()
    # a pix2pix model translates one way
    r = cli("translate", src, tmp_path / "bad", "-m", pix2pix, "--direction", "BtoA")
    assert r.exit_code == 2 and "CycleGAN" in r.output
    # resume: the state holds step 2; asking for 3 steps continues from it
    state = pix2pix.with_suffix(".state.pt")
    assert io.load_torch(state)["step"] == 2
    r = cli("train", "pix2pix", "--data", tmp_path / "pairs", "--layout", "folders", "--steps", 3, "--out", pix2pix,
            *TINY_DROPOUT)
    assert r.exit_code == 0, r.output
    assert io.load_torch(state)["step"] == 3 and len(io.load_torch(state)["history"]) == 2
    # another architecture does not resume that state: one line naming the difference
    r = cli("train", "pix2pix", "--data", tmp_path / "pairs", "--layout", "folders", "--steps", 4, "--out", pix2pix,
            *TINY_DROPOUT, "--ngf", 8)
    assert r.exit_code == 2 and "config.ngf 4 -> 8" in r.output


def test_train_pix2pix_aligned_btoa_gray_to_colour(tmp_path, cli, photos):
    cli("pairs", photos, tmp_path / "al", "--kind", "gray", "--layout", "aligned")
    out = tmp_path / "c.safetensors"
    r = cli("train", "pix2pix", "--data", tmp_path / "al", "--direction", "BtoA", "--steps", 2, "--out", out,
            "--val-split", 1, "--residual", "--netd", "pixel", "--gan-mode", "lsgan", *TINY_P2P)
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["config"]["in_ch"] == 3 and card["validation"]["val_psnr"] > 0  # B (colour) -> A side
    assert card["validation_identity"]["val_identity_psnr"] > 0
    # the gray->colour direction on grey inputs writes colour
    cli("pairs", photos, tmp_path / "f", "--kind", "gray")
    col = tmp_path / "col.safetensors"
    r = cli("train", "pix2pix", "--data", tmp_path / "f", "--layout", "folders", "--steps", 1, "--out", col,
            "--residual", "--val-split", 1, *TINY_P2P)
    assert r.exit_code == 0, r.output
    assert json.loads(col.with_suffix(".json").read_text())["validation_identity"]["val_identity_psnr"] > 0  # grey vs colour
    assert cli("translate", tmp_path / "f/A", tmp_path / "o", "-m", col).exit_code == 0
    assert read(tmp_path / "o/sub/c.png").shape == (48, 64, 3)


def test_cyclegan_both_directions_from_one_file(tmp_path, cli, photos):
    cli("pairs", photos, tmp_path / "p", "--kind", "degrade")
    out = tmp_path / "cyc.safetensors"
    r = cli("train", "cyclegan", "--a", tmp_path / "p/A", "--b", tmp_path / "p/B", "--val", tmp_path / "p",
            "--steps", 2, "--out", out, "--ngf", 4, "--n-blocks", 1, "--preprocess", "crop", "--crop-size", 32,
            "--ndf", 4, "--n-layers-d", 2, "--pool-size", 1, "--ema", 0)
    assert r.exit_code == 0, r.output
    tensors, meta = weights.load_weights(out)
    assert meta["arch"] == "cycle" and any(k.startswith("G_A.") for k in tensors) and any(k.startswith("G_B.") for k in tensors)
    outputs = {}
    for direction in ("AtoB", "BtoA"):
        assert cli("translate", tmp_path / "p/A", tmp_path / direction, "-m", out, "--direction", direction).exit_code == 0
        outputs[direction] = read(tmp_path / direction / "a.png")
    assert outputs["AtoB"].shape == outputs["BtoA"].shape == (48, 64, 3)
    assert (outputs["AtoB"] != outputs["BtoA"]).any()
    assert json.loads(out.with_suffix(".json").read_text())["validation"]["val_psnr"] > 0


def test_neighbor2neighbor_sampler_and_loss():
    from genapps import losses
    h, w = 6, 8
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).float()[None]  # (1, 2, h, w)
    x = coords.repeat(3, 1, 1, 1)
    i1, i2 = losses.neighbour_pick(x, torch.Generator().manual_seed(0))
    p1, p2 = losses.neighbour_take(x, i1), losses.neighbour_take(x, i2)
    assert p1.shape == (3, 2, h // 2, w // 2)
    cell = torch.stack(torch.meshgrid(torch.arange(h // 2), torch.arange(w // 2), indexing="ij"))[None]
    for p in (p1, p2):  # both pixels lie in their own 2x2 cell
        assert torch.equal(torch.div(p, 2, rounding_mode="floor"), cell.float().expand_as(p))
    assert torch.equal((p1 - p2).abs().sum(1), torch.ones(3, h // 2, w // 2))  # adjacent, never diagonal or equal
    assert len({tuple(v) for v in (p1 - p2).permute(0, 2, 3, 1).reshape(-1, 2).tolist()}) == 4  # every direction
    torch.manual_seed(0)
    clean = torch.full((4, 3, 64, 64), 0.5)
    noisy = clean + 0.1 * torch.randn_like(clean)
    identity = losses.neighbor2neighbor_loss(lambda y: y, noisy, gamma=0.0)
    oracle = losses.neighbor2neighbor_loss(lambda y: torch.full_like(y, 0.5), noisy, gamma=0.0)
    assert abs(identity.item() - 2 * 0.01) < 0.002 and abs(oracle.item() - 0.01) < 0.001  # 2 sigma^2 vs sigma^2
    same = [losses.neighbor2neighbor_loss(lambda y: y, noisy, gamma, torch.Generator().manual_seed(1)) for gamma in (0, 2)]
    assert same[0].item() == pytest.approx(same[1].item())  # the identity's regulariser is 0


def test_cyclegan_self_supervised_denoising_term(tmp_path, cli, photos):
    cli("pairs", photos, tmp_path / "p", "--kind", "degrade")
    args = ["train", "cyclegan", "--a", tmp_path / "p/A", "--b", tmp_path / "p/B", "--steps", 2, "--ngf", 4,
            "--n-blocks", 1, "--preprocess", "crop", "--ndf", 4, "--n-layers-d", 2, "--pool-size", 1, "--ema", 0]
    r = cli(*args, "--crop-size", 36, "--n2n-weight", 10, "--out", tmp_path / "bad.safetensors")
    assert r.exit_code != 0 and "multiple of 8" in r.output and "Traceback" not in r.output
    out = tmp_path / "n2n.safetensors"
    r = cli(*args, "--crop-size", 32, "--n2n-weight", 10, "--out", out)
    assert r.exit_code == 0, r.output
    assert all(h["n2n"] > 0 for h in json.loads(out.with_suffix(".json").read_text())["history"])


def test_noise_aware_cycle_ignores_what_the_pool_averages_out(tmp_path, cli, photos):
    """--cycle-a-pool N: A's cycle is compared after an N x N mean, so a reconstruction that differs from
    a by zero-mean detail within each N x N cell (noise G_A removed) costs nothing; B's cycle is unchanged."""
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 0.2 - 0.1  # zero mean per 2x2 cell
    out = {"fake_b": b, "fake_a": a, "rec_a": a + checker, "rec_b": b + 0.05}
    disc = SimpleNamespace(D_A=lambda x: torch.ones(1), D_B=lambda x: torch.ones(1))
    cycles = {}
    for pool in (1, 2, 4):
        cfg = CycleGANConfig(a="A", b="B", out="o.safetensors", crop_size=16, lambda_identity=0, cycle_a_pool=pool)
        cycles[pool] = CycleGANTraining(cfg, None, None).generator_loss((a, b), out, disc)[1]["cycle"]
    assert cycles[1] == pytest.approx(2 * (0.1 + 0.05))
    assert cycles[2] == pytest.approx(2 * 0.05) and cycles[4] == pytest.approx(2 * 0.05)
    cli("pairs", photos, tmp_path / "p", "--kind", "degrade")
    r = cli("train", "cyclegan", "--a", tmp_path / "p/A", "--b", tmp_path / "p/B", "--steps", 1, "--ngf", 4,
            "--n-blocks", 1, "--preprocess", "crop", "--crop-size", 36, "--cycle-a-pool", 8,
            "--out", tmp_path / "x.safetensors")
    assert r.exit_code == 2 and "divide --crop-size 36" in r.output and "Traceback" not in r.output


def test_pseudo_pairs_train_g_a_alone_on_b_cycle():
    """--pseudo-pairs: B's cycle G_A(G_B(b)) -> b sends no gradient into G_B (it cannot hide b in its
    output for G_A to decode); the reference's cycle does. G_A learns from it either way."""
    torch.manual_seed(0)
    net = define_G("cycle", in_ch=3, out_ch=3, ngf=4, n_blocks=1, norm="instance", dropout=False, residual=True)
    batch = (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    grads = {}
    for pseudo in (False, True):
        cfg = CycleGANConfig(a="A", b="B", out="o.safetensors", crop_size=16, lambda_identity=0, pseudo_pairs=pseudo)
        net.zero_grad()
        out = CycleGANTraining(cfg, None, None).forward(net, batch)
        torch.nn.functional.l1_loss(out["rec_b"], batch[1]).backward()
        grads[pseudo] = [sum(float(p.grad.abs().sum()) for p in g.parameters() if p.grad is not None)
                         for g in (net.G_A, net.G_B)]
    assert grads[False][0] > 0 and grads[False][1] > 0
    assert grads[True][0] > 0 and grads[True][1] == 0


def test_b_noise_degrader_draws_noise_in_training_and_under_stochastic(tmp_path, cli, photos):
    """--b-noise S: G_B sees Gaussian input noise in training (two passes differ; its identity term
    does not), the file records it, and translate --direction BtoA is deterministic by default and
    draws the noise under --stochastic (reproducible by seed)."""
    torch.manual_seed(0)
    net = define_G("cycle", in_ch=3, out_ch=3, ngf=4, n_blocks=1, norm="instance", dropout=False, residual=True,
                   b_noise=0.1).train()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert not torch.equal(net.G_B(x), net.G_B(x)) and torch.equal(net.G_B(x, noise=False), net.G_B(x, noise=False))
    assert torch.equal(net.G_A(x), net.G_A(x))  # G_A draws none
    assert torch.equal(net.eval().G_B(x), net.G_B(x))
    cli("pairs", photos, tmp_path / "p", "--kind", "degrade")
    out = tmp_path / "noisy.safetensors"
    r = cli("train", "cyclegan", "--a", tmp_path / "p/A", "--b", tmp_path / "p/B", "--steps", 1, "--ngf", 4,
            "--n-blocks", 1, "--preprocess", "crop", "--crop-size", 32, "--ndf", 4, "--n-layers-d", 2,
            "--pool-size", 1, "--ema", 0, "--b-noise", 0.05, "--out", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["config"]["b_noise"] == 0.05
    runs = {"d1": [], "d2": [], "s1": ["--stochastic"], "s2": ["--stochastic"], "s3": ["--stochastic", "--seed", 1]}
    for run, flags in runs.items():
        r = cli("translate", tmp_path / "p/B", tmp_path / run, "-m", out, "--direction", "BtoA", *flags)
        assert r.exit_code == 0, r.output
    name = sorted(p.name for p in (tmp_path / "d1").glob("*.png"))[0]
    img = {run: read(tmp_path / run / name) for run in runs}
    assert np.array_equal(img["d1"], img["d2"]) and np.array_equal(img["s1"], img["s2"])
    assert (img["s1"] != img["d1"]).any() and (img["s3"] != img["s1"]).any()


def test_tiles_alpha_16bit_and_grey(tmp_path):
    torch.manual_seed(0)
    g = define_G("resnet", ngf=4, n_blocks=1, norm="batch").eval()  # instance norm: per-tile stats
    x = torch.rand(1, 3, 90, 70)
    with torch.no_grad():
        whole, tiled = translate.translate_tensor(g, x), translate.translate_tensor(g, x, tile=40, overlap=16)
    assert tiled.shape == whole.shape == (1, 3, 90, 70)
    assert (tiled - whole).abs().mean() < 0.005 and (tiled - whole).abs().max() < 0.1
    cfg = translate.Config()
    rgba = io.LoadedImage(torch.rand(3, 20, 30), torch.rand(1, 20, 30), 16)
    out = translate.translate_image(g, rgba, cfg, torch.device("cpu"))
    assert out.bit_depth == 16 and out.color.shape == (3, 20, 30) and torch.equal(out.alpha, rgba.alpha)
    grey = translate.translate_image(g, io.LoadedImage(torch.rand(1, 20, 30)), cfg, torch.device("cpu"))
    assert grey.color.shape == (1, 20, 30)


def _reference_unet():
    """A random reference pix2pix U-Net state dict (the exact key layout of latest_net_G.pth)."""
    torch.manual_seed(0)
    g = UnetGenerator(3, 3, num_downs=7, ngf=4, norm="batch", dropout=True)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    return g.state_dict()


def test_reference_checkpoints_load_with_right_flags_and_fail_clearly_with_wrong(tmp_path, cli):
    unet, resnet = _reference_unet(), ResnetGenerator(3, 3, ngf=4, n_blocks=6, norm="instance").state_dict()
    assert "model.model.1.model.3.model.2.running_mean" in unet  # the layout the issue names
    assert infer_reference_arch(unet) == ("unet", {"in_ch": 3, "out_ch": 3, "num_downs": 7, "ngf": 4,
                                                   "norm": "batch", "dropout": False})
    assert infer_reference_arch(resnet)[1] | {"in_ch": 0} == {"in_ch": 0, "out_ch": 3, "ngf": 4, "n_blocks": 6,
                                                             "norm": "instance", "dropout": False}
    torch.save(unet, tmp_path / "latest_net_G.pth")
    torch.save({f"module.{k}": v for k, v in resnet.items()}, tmp_path / "latest_net_G_A.pth")
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo((37, 53))).save(src / "a.png")
    ok = [("latest_net_G.pth", []), ("latest_net_G.pth", ["--netg", "unet_128", "--ngf", 4, "--norm", "batch"]),
          ("latest_net_G.pth", ["--dropout", "--stochastic"]),
          ("latest_net_G_A.pth", ["--netg", "resnet_6blocks", "--norm", "instance"])]
    for i, (name, flags) in enumerate(ok):
        r = cli("translate", src, tmp_path / f"ok{i}", "-m", tmp_path / name, *flags)
        assert r.exit_code == 0, r.output
        assert read(tmp_path / f"ok{i}/a.png").shape == (37, 53, 3)
    bad = [("latest_net_G.pth", ["--netg", "unet_256"], "unet_128"),
           ("latest_net_G.pth", ["--netg", "resnet_9blocks"], "--netg unet_128 --ngf 4 --norm batch"),
           ("latest_net_G.pth", ["--norm", "instance"], "batch norm"),
           ("latest_net_G.pth", ["--stochastic"], "--dropout"),
           ("latest_net_G_A.pth", ["--ngf", 64], "ngf 4"),
           ("latest_net_G_A.pth", ["--netg", "resnet_9blocks"], "resnet_6blocks"),
           ("latest_net_G_A.pth", ["--dropout"], "without dropout")]
    for name, flags, hint in bad:
        r = cli("translate", src, tmp_path / "bad", "-m", tmp_path / name, *flags)
        assert r.exit_code == 2 and hint in r.output and "Traceback" not in r.output, (flags, r.output)
        assert len(r.output.strip().splitlines()) == 1


def test_discriminator_variants_keep_the_sr_layout():
    sr = PatchDiscriminator(3, 8, 2)
    assert [k for k in sr.state_dict() if k.endswith("weight_orig")] == [f"net.{i}.weight_orig" for i in (0, 2, 4, 6)]
    for norm in ("batch", "instance", "none"):
        d = PatchDiscriminator(6, 8, 3, norm)
        assert d(torch.rand(2, 6, 64, 64)).shape == (2, 1, 6, 6)
    assert any(k.endswith("running_mean") for k in PatchDiscriminator(6, 8, 3, "batch").state_dict())
    from genapps.nn import PixelDiscriminator
    assert PixelDiscriminator(6, 8).eval()(torch.rand(1, 6, 9, 11)).shape == (1, 1, 9, 11)


def test_pipeline_degrade_then_translate_measured_against_the_photos(tmp_path, cli, pix2pix, photos):
    (tmp_path / "p.yaml").write_text(f"""
input: {photos}
stages:
  - {{name: degrade, task: pairs, options: {{kind: degrade, layout: input}}}}
  - {{name: degraded-vs-clean, task: evaluate, input: degrade, options: {{reference: {photos}}}}}
  - {{name: restore, task: translate, input: degrade, options: {{model: {pix2pix}, reference: {photos}}}}}
""")
    r = cli("run", tmp_path / "p.yaml", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run/restore/sub/c.png").exists() and (tmp_path / "run/degrade/b.png").exists()
    assert "restore: 3 ok" in r.output and "psnr=" in r.output.split("restore:")[1]
    assert "psnr=" in r.output.split("degraded-vs-clean:")[1] and (tmp_path / "run/report.json").exists()
