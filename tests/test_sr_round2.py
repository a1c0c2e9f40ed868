"""SR round 2: re-parameterizable convolutions fold exactly, the bicubic skip as a convolution,
the held-out validation split, x3 training, the rep arch through the CLI, the benchmark's parts."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import photo
from genapps.nn.rep import RepConv3x3, fold_rep
from genapps.tasks.upscale import task as upscale
from genapps.tasks.upscale import models, training


def _randomize(module: nn.Module, std: float = 0.3) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)
    return module


@pytest.mark.parametrize("in_ch, out_ch, edges", [(5, 5, True), (3, 7, True), (6, 6, False)])
def test_rep_conv_folds_into_one_plain_conv(in_ch, out_ch, edges):
    rep = _randomize(RepConv3x3(in_ch, out_ch, edges=edges))
    x = torch.rand(2, in_ch, 9, 11)
    branches = rep.forward_branches(x)  # every branch run on its own, borders included
    folded = rep.fold()
    assert type(folded) is nn.Conv2d and folded.kernel_size == (3, 3) and folded.padding == (1, 1)
    torch.testing.assert_close(rep(x), branches, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded(x), branches, atol=1e-5, rtol=1e-5)
    if in_ch == out_ch:  # the identity branch is there: zeroing it changes the output by x
        assert not torch.allclose(branches, branches - x)


def test_rep_sr_training_form_folds_to_the_saved_plain_form():
    train_form = _randomize(models.define_G("rep", scale=3, channels=8, blocks=2, deploy=0), 0.1)
    x = torch.rand(1, 3, 12, 10)
    plain = train_form.fold()
    assert not any(isinstance(m, RepConv3x3) for m in plain.modules()) and plain.deploy == 1
    torch.testing.assert_close(plain(x), train_form(x), atol=1e-5, rtol=1e-5)
    loaded = models.define_G("rep", scale=3, channels=8, blocks=2, deploy=1)
    loaded.load_state_dict(plain.state_dict())  # the plain form has exactly the folded keys
    torch.testing.assert_close(loaded(x), train_form(x), atol=1e-5, rtol=1e-5)
    assert fold_rep(nn.Sequential(RepConv3x3(3, 3)))[0].__class__ is nn.Conv2d


def test_untrained_rep_sr_is_bicubic():
    x = torch.rand(1, 3, 10, 12)
    for deploy in (0, 1):
        net = models.define_G("rep", scale=4, channels=48, blocks=1, deploy=deploy)  # 48 = 3*4*4: no identity
        torch.testing.assert_close(net(x), F.interpolate(x, scale_factor=4, mode="bicubic"), atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_skip_conv_equals_interpolate(scale):
    x = torch.rand(2, 3, 7, 9)
    got = F.pixel_shuffle(models.BicubicSkip(scale)(x), scale)
    torch.testing.assert_close(got, F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False),
                               atol=1e-5, rtol=0)
    assert not models.SRResNet(scale, 8, 1).state_dict().keys() & {"skip.kernel"}  # weights files unchanged


def _two_kinds(folder: Path) -> None:
    """Training photos 48x64 and (sorted last) held-out photos 40x56: told apart by their size."""
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo((48, 64), seed=i)).save(folder / f"a{i}.png")
    for i in range(2):
        Image.fromarray(photo((40, 56), seed=10 + i)).save(folder / f"z{i}.png")


def test_held_out_files_are_never_trained_on_and_validate(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _two_kinds(data)
    trained_shapes, validated = set(), []
    make_batches, evaluate = training.make_batches, training.evaluate_model

    def spy_batches(images, cfg, generator):
        trained_shapes.update(tuple(im.shape) for im in images)
        return make_batches(images, cfg, generator)

    def spy_evaluate(model, pairs, scale, device):
        validated.append(sorted(name for name, _, _ in pairs))
        return evaluate(model, pairs, scale, device)

    monkeypatch.setattr(training, "make_batches", spy_batches)
    monkeypatch.setattr(training, "evaluate_model", spy_evaluate)
    out = tmp_path / "m.safetensors"
    cfg = training.SRTrainConfig(data=str(data), out=str(out), holdout=2, scale=2, channels=4, blocks=1, steps=2,
                                 batch_size=2, patch=8)
    card = training.train_sr(cfg, torch.device("cpu"))
    assert trained_shapes == {(3, 48, 64)}  # only the three training photos
    assert validated and all(v == ["z0", "z1"] for v in validated)  # EMA and raw, on the held-out photos
    assert card["validation_split"]["files"] == ["z0.png", "z1.png"]
    assert card["validation"]["weights"] in ("ema", "raw")
    assert card["training"]["threads"] == torch.get_num_threads() and card["training"]["run_wall_minutes"] >= 0
    assert "minutes" in card["training"] and "core" in card["training"]["note"]
    with pytest.raises(ValueError, match="holdout 5"):
        training.split_holdout(data, 5)


def test_val_folder_with_holdout_is_only_reported(tmp_path):
    data = tmp_path / "data"
    _two_kinds(data)
    cfg = training.SRTrainConfig(data=str(data), val=str(data), out=str(tmp_path / "m.safetensors"), holdout=1,
                                 scale=2, channels=4, blocks=1, steps=1, batch_size=1, patch=8)
    card = training.train_sr(cfg, torch.device("cpu"))
    assert {"val_psnr_y", "data_psnr_y"} <= set(card["validation"])  # selected on val_, data_ only reported
    assert card["validation_split"]["files"] == ["z1.png"]


def test_x3_batches_have_exact_sizes(tmp_path):
    images = [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)]
    cfg = training.SRTrainConfig(data=".", out="m.safetensors", scale=3, patch=10, batch_size=2)
    lr, hr = training.make_batches(images, cfg, torch.Generator().manual_seed(0))()
    assert lr.shape == (2, 3, 10, 10) and hr.shape == (2, 3, 30, 30)


def test_rep_trains_saves_folded_and_upscales_through_the_cli(tmp_path, cli, photo_dir):
    out = tmp_path / "rep.safetensors"
    result = cli("train", "sr", "--data", photo_dir, "--out", out, "--arch", "rep", "--holdout", "1", "--scale", "3",
                 "--channels", "4", "--blocks", "1", "--batch-size", "2", "--patch", "8", "--steps", "2")
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["arch"] == "rep" and card["config"]["deploy"] == 1 and card["training_form"]["config"]["deploy"] == 0
    assert card["validation_split"] == {"holdout": 1, "files": ["sub/c.png"], "selects": "EMA vs raw weights"}
    net, info = upscale.load_model(str(out))
    assert info.arch == "rep" and info.scale == 3
    assert all(type(m) is nn.Conv2d for m in net.body if not isinstance(m, nn.PReLU))  # the plain form
    up = cli("upscale", photo_dir, tmp_path / "up", "-m", out, "--scale", "3")
    assert up.exit_code == 0, up.output
    assert Image.open(tmp_path / "up" / "a.png").size == (64 * 3, 48 * 3)


def _bench():
    path = Path(__file__).parents[1] / "scripts" / "bench_sr.py"
    spec = importlib.util.spec_from_file_location("bench_sr", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_reports_peak_ratio_and_perceptual_scores():
    bench = _bench()
    net = models.define_G("rep", scale=2, channels=8, blocks=1)
    s = bench.speed(net, 2, threads=1, repeat=1, size=16)
    assert s["peak_width"] == 8 and s["peak_gflops_per_s"] > 0
    assert s["of_peak"] == pytest.approx(s["gflops_per_s"] / s["peak_gflops_per_s"])
    hr = torch.rand(3, 40, 40)
    same, blurred = bench.perceptual(hr, hr, 2), bench.perceptual(F.avg_pool2d(hr[None], 3, 1, 1)[0], hr, 2)
    if not same:
        pytest.skip("piq is not installed (pip install -e .[bench])")
    assert same["haarpsi"] == pytest.approx(1.0, abs=1e-3) and same["gmsd"] == pytest.approx(0.0, abs=1e-3)
    assert blurred["haarpsi"] < same["haarpsi"] and blurred["gmsd"] > same["gmsd"]


def test_rep_conv_unfolds_from_a_plain_conv():
    plain = _randomize(nn.Conv2d(6, 6, 3, padding=1))
    for identity in (True, False):
        rep = _randomize(RepConv3x3(6, 6, identity=identity))
        rep.load_plain(plain)
        x = torch.rand(1, 6, 8, 9)
        torch.testing.assert_close(rep.forward_branches(x), plain(x), atol=1e-5, rtol=1e-5)
        rep(x).square().mean().backward()  # every branch trains again
        assert all(rep.get_parameter(n).grad.abs().sum() > 0 for n in ("conv1.weight", "expand3.weight", "edge_scale"))


def test_init_from_another_scale_takes_the_body_over(tmp_path, photo_dir):
    x4 = tmp_path / "x4.safetensors"
    common = dict(data=str(photo_dir), arch="rep", channels=4, blocks=1, batch_size=2, patch=8, steps=1, ema=0.0)
    training.train_sr(training.SRTrainConfig(out=str(x4), scale=4, **common), torch.device("cpu"))
    g, config, warmup = training.build_generator(
        training.SRTrainConfig(out="x2.safetensors", scale=2, init=str(x4), **common))
    plain, _ = upscale.load_model(str(x4))
    x = torch.rand(1, 4, 6, 6)
    torch.testing.assert_close(g.body[2](x), plain.body[2](x), atol=1e-5, rtol=1e-5)  # hidden conv: unfolded
    assert config["deploy"] == 0 and not g.body[-1].fold().weight.any()  # x2's last conv: fresh (zero)
    assert warmup  # new branches and a fresh layer: no full-size first steps


def test_gan_fine_tunes_the_folded_rep_model(tmp_path, photo_dir):
    base = tmp_path / "rep.safetensors"
    common = dict(data=str(photo_dir), arch="rep", scale=2, channels=4, blocks=1, batch_size=2, patch=16)
    training.train_sr(training.SRTrainConfig(out=str(base), steps=1, **common), torch.device("cpu"))
    gan = training.SRTrainConfig(out=str(tmp_path / "gan.safetensors"), steps=1, gan=True, init=str(base), **common)
    card = training.train_sr(gan, torch.device("cpu"))
    assert card["config"]["deploy"] == 1 and card["training_form"]["config"]["deploy"] == 0
    assert "adv" in card["history"][-1]
    other = training.SRTrainConfig(**{**gan.__dict__, "channels": 8, "out": str(tmp_path / "g2.safetensors")})
    with pytest.raises(ValueError, match="does not match"):
        training.train_sr(other, torch.device("cpu"))
