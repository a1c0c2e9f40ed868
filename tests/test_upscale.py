"""Super-resolution: tiling, alpha, 16-bit, grayscale, public weights, training, the CLI."""

import json

import pytest
import torch
from PIL import Image

from genapps import io
from genapps.tasks.upscale import task as upscale
from genapps.tasks.upscale.models import SRResNet, define_G
from genapps.weights import bundled_weights, save_weights
from tests.conftest import photo


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SRResNet(scale=2, channels=8, blocks=2).eval()  # receptive radius 7 px


@pytest.fixture
def weights(tmp_path, model):
    path = tmp_path / "tiny-x2.safetensors"
    save_weights(path, model.state_dict(), {"task": "upscale", "arch": "srresnet",
                                       "config": {"scale": 2, "channels": 8, "blocks": 2}})
    return path


def test_tiled_equals_whole_image(model):
    x = torch.rand(1, 3, 45, 61)
    whole = upscale.upscale_tensor(model, x, 2)
    for tile, overlap in [(16, 16), (20, 16), (9, 20)]:
        tiled = upscale.upscale_tensor(model, x, 2, tile=tile, overlap=overlap, batch_size=3)
        assert tiled.shape == whole.shape == (1, 3, 90, 122)
        assert (tiled - whole).abs().max() <= 2 / 255, (tile, overlap)
    naive = upscale.upscale_tensor(model, x, 2, tile=16, overlap=0)
    assert (naive - whole).abs().max() > 2 / 255  # without overlap the seams show: the check can fail


def test_alpha_gray_and_16bit_are_kept(model):
    cfg = upscale.Config(scale=2)
    alpha = torch.full((1, 10, 12), 0.2)
    alpha[:, :, 6:] = 0.9
    rgba = io.LoadedImage(torch.rand(3, 10, 12), alpha)
    out = upscale.upscale_image(model, rgba, 2, cfg, torch.device("cpu"))
    assert out.color.shape == (3, 20, 24) and out.alpha.shape == (1, 20, 24)
    expected = upscale.upscale_tensor(model, alpha.expand(3, -1, -1)[None], 2)[0].mean(0, keepdim=True)
    assert torch.allclose(out.alpha, expected, atol=1e-5)  # alpha runs on its own, not mixed with colour
    assert abs(out.alpha[:, :, :8].mean() - 0.2) < 0.1 and abs(out.alpha[:, :, -8:].mean() - 0.9) < 0.1
    gray16 = io.LoadedImage(torch.rand(1, 10, 12), None, 16)
    out = upscale.upscale_image(model, gray16, 2, upscale.Config(scale=2, outscale=3.0), torch.device("cpu"))
    assert out.color.shape == (1, 30, 36) and out.bit_depth == 16


def basicsr_msrresnet_state(feat=8, blocks=2, scale=4):
    """A random state dict in BasicSR's MSRResNet key layout (written out, not taken from genapps)."""
    conv = lambda o, i: {"weight": torch.randn(o, i, 3, 3) * 0.05, "bias": torch.zeros(o)}  # noqa: E731
    layers = {"conv_first": conv(feat, 3), "conv_hr": conv(feat, feat), "conv_last": conv(3, feat),
              "upconv1": conv(feat * 4, feat), "upconv2": conv(feat * 4, feat)}
    for b in range(blocks):
        layers[f"body.{b}.conv1"], layers[f"body.{b}.conv2"] = conv(feat, feat), conv(feat, feat)
    return {f"{k}.{p}": v for k, d in layers.items() for p, v in d.items()}


def rrdbnet_state(feat=8, blocks=1, grow=4, scale=4):
    conv = lambda o, i: {"weight": torch.randn(o, i, 3, 3) * 0.05, "bias": torch.zeros(o)}  # noqa: E731
    in_ch = {4: 3, 2: 12}[scale]
    layers = {"conv_first": conv(feat, in_ch), "conv_body": conv(feat, feat), "conv_up1": conv(feat, feat),
              "conv_up2": conv(feat, feat), "conv_hr": conv(feat, feat), "conv_last": conv(3, feat)}
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                layers[f"body.{b}.rdb{r}.conv{c}"] = conv(feat if c == 5 else grow, feat + (c - 1) * grow)
    return {f"{k}.{p}": v for k, d in layers.items() for p, v in d.items()}


def srvgg_state(feat=8, convs=2, scale=4):
    state = {"body.0.weight": torch.randn(feat, 3, 3, 3) * 0.05, "body.0.bias": torch.zeros(feat),
             "body.1.weight": torch.full((feat,), 0.25)}
    for i in range(convs):
        state |= {f"body.{2 + 2 * i}.weight": torch.randn(feat, feat, 3, 3) * 0.05,
                  f"body.{2 + 2 * i}.bias": torch.zeros(feat), f"body.{3 + 2 * i}.weight": torch.full((feat,), 0.25)}
    last = 2 + 2 * convs
    return state | {f"body.{last}.weight": torch.randn(3 * scale * scale, feat, 3, 3) * 0.05,
                    f"body.{last}.bias": torch.zeros(3 * scale * scale)}


@pytest.mark.parametrize("state,key,scale,arch", [
    (basicsr_msrresnet_state(), "params", 4, "msrresnet"),
    (rrdbnet_state(scale=4), "params_ema", 4, "rrdbnet"),
    (rrdbnet_state(scale=2), "params_ema", 2, "rrdbnet"),
    (srvgg_state(), "params", 4, "Compact"),  # spandrel's; MSRResNet and RRDBNet of growth 4: genapps's own
])
def test_public_weights_load_and_run(tmp_path, state, key, scale, arch):
    prefixed = {f"module.{k}": v for k, v in state.items()}
    torch.save({key: prefixed}, tmp_path / "w.pth")
    net, info = upscale.load_model(str(tmp_path / "w.pth"))
    assert info.arch == arch and info.scale == scale
    assert {k.removeprefix("net.") for k in net.state_dict()} == set(state)
    for tile, overlap in [(8, 4), (9, 5)]:  # tiles are rounded to the model's input multiple
        out = upscale.upscale_tensor(net, torch.rand(1, 3, 13, 17), scale, tile=tile, overlap=overlap)
        assert out.shape == (1, 3, 13 * scale, 17 * scale)


def test_unknown_arch_lists_valid():
    with pytest.raises(ValueError, match="srresnet"):
        define_G("nope")


def test_upscale_cli_writes_images_report_and_metrics(tmp_path, cli, weights, photo_dir):
    lr = tmp_path / "lr"
    assert cli("run", write_pipeline(tmp_path, photo_dir, weights), "--out", tmp_path / "run").exit_code == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    names = [s["name"] for s in report["stages"]]
    assert names == ["lr", "sr", "eval"]
    sr = report["stages"][1]
    assert all(r["status"] == "ok" and r["metrics"]["psnr_y"] > 15 for r in sr["records"])
    assert (tmp_path / "run" / "sr" / "sub" / "c.png").is_file()
    assert Image.open(tmp_path / "run" / "sr" / "b.jpg").size == (64, 48)
    html = (tmp_path / "run" / "report.html").read_text()
    assert "data:image/" in html
    result = cli("upscale", tmp_path / "run" / "lr", lr, "-m", weights, "-s", "2", "--ext", "webp", "--suffix", "_x2",
                 "--half")
    assert result.exit_code == 0, result.output
    assert (lr / "sub" / "c_x2.webp").is_file()
    # -x (--tta): the mean over 8 flips/transposes, another output: never mixed with plain outputs
    src, out = tmp_path / "run" / "lr", tmp_path / "tta"
    assert cli("upscale", src, out, "-m", weights, "-s", "2", "-t", 16).exit_code == 0
    plain = io.read_image(out / "b.jpg").color
    r = cli("upscale", src, out, "-m", weights, "-s", "2", "-t", 16, "-x")
    assert r.exit_code == 2 and "tta null -> true" in r.output, r.output
    r = cli("upscale", src, out, "-m", weights, "-s", "2", "-t", 16, "-x", "--overwrite")
    assert r.exit_code == 0 and "3 ok, 0 skipped" in r.output, r.output
    assert not torch.equal(io.read_image(out / "b.jpg").color, plain)
    r = cli("upscale", src, out, "-m", weights, "-s", "2", "-t", 16, "--tta")
    assert r.exit_code == 0 and "0 ok, 3 skipped" in r.output, r.output


def write_pipeline(tmp_path, photo_dir, weights):
    path = tmp_path / "p.yaml"
    path.write_text(f"""
input: {photo_dir}
stages:
  - {{name: lr, task: downscale, options: {{scale: 2}}}}
  - {{name: sr, task: upscale, options: {{model: {weights}, scale: 2, reference: {photo_dir}, tile: 16}}}}
  - {{name: eval, task: evaluate, options: {{reference: {photo_dir}, y_channel: true, crop_border: 2}}}}
""")
    return path


def test_train_sr_tiny_and_resume(tmp_path, photo_dir):
    from genapps.tasks.upscale.training import SRTrainConfig, train_sr

    out = tmp_path / "m.safetensors"
    cfg = SRTrainConfig(data=str(photo_dir), val=str(photo_dir), out=str(out), scale=2, channels=8, blocks=1,
                        steps=6, batch_size=2, patch=8, val_every=3)
    card = train_sr(cfg, torch.device("cpu"))
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["config"]["scale"] == 2
    assert set(card["validation"]) == {"val_psnr_y", "val_ssim_y", "weights"}  # EMA or raw, by val PSNR
    net, info = upscale.load_model(str(out))
    assert info.arch == "srresnet" and info.scale == 2
    state = io.load_torch(out.with_suffix(".state.pt"))
    assert state["step"] == 6
    longer = SRTrainConfig(**{**cfg.__dict__, "steps": 8, "val_every": 2})
    card = train_sr(longer, torch.device("cpu"))
    assert io.load_torch(out.with_suffix(".state.pt"))["step"] == 8
    assert [h["step"] for h in card["history"]] == [6, 8]  # log_every is 100: only a resumed run logs 6 and 8
    gan = SRTrainConfig(**{**cfg.__dict__, "steps": 3, "gan": True, "init": str(out), "patch": 16,
                           "out": str(tmp_path / "g.safetensors")})
    assert "adv" in train_sr(gan, torch.device("cpu"))["history"][-1]


def test_output_folder_must_not_be_the_input(tmp_path, cli, photo_dir):
    result = cli("upscale", photo_dir, photo_dir, "-m", "bicubic", "--overwrite")
    assert result.exit_code == 2 and "must not be the input folder" in result.output
    assert Image.open(photo_dir / "a.png").size == (64, 48)  # untouched


def test_reference_not_a_multiple_of_the_scale_is_cropped(tmp_path, cli):
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    hr = photo((50, 61))
    Image.fromarray(hr).save(tmp_path / "hr" / "x.png")
    Image.fromarray(hr).resize((15, 12), Image.BICUBIC).save(tmp_path / "lr" / "x.png")
    result = cli("upscale", tmp_path / "lr", tmp_path / "sr", "-m", "bicubic", "-s", "4", "--reference", tmp_path / "hr")
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "sr" / "report.json").read_text())["stages"][0]["records"][0]
    assert rec["status"] == "ok" and rec["metrics"]["psnr_y"] > 15
    again = cli("upscale", tmp_path / "lr", tmp_path / "sr", "-m", "bicubic", "-s", "4", "--reference", tmp_path / "hr")
    rec2 = json.loads((tmp_path / "sr" / "report.json").read_text())["stages"][0]["records"][0]
    assert again.exit_code == 0 and rec2["status"] == "skipped" and rec2["metrics"]["psnr_y"] == rec["metrics"]["psnr_y"]


def test_bad_weights_file_is_a_one_line_error(tmp_path, cli, photo_dir):
    (tmp_path / "w.pth").write_bytes(b"not a pickle at all")
    result = cli("upscale", photo_dir, tmp_path / "out", "-m", tmp_path / "w.pth")
    assert result.exit_code == 2 and "not a readable torch weights file" in result.output
    torch.save({"params": {"conv_first.weight": torch.zeros(1)}}, tmp_path / "v.pth")
    result = cli("upscale", photo_dir, tmp_path / "out", "-m", tmp_path / "v.pth")
    assert result.exit_code == 2 and result.output.startswith("error: ")


def test_default_model_for_x3_is_the_native_sr_x3(tmp_path, cli, photo_dir, monkeypatch):
    bundled = bundled_weights()
    if not {"sr-x3", "sr-x4"} <= set(bundled):
        pytest.skip("sr-x3 / sr-x4 not bundled")
    result = cli("upscale", photo_dir / "a.png", tmp_path / "out", "-s", "3")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "a.png").size == (64 * 3, 48 * 3)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["stages"][0]["summary"]["model"] == "sr-x3"
    # without a native x3 model, x3 is sr-x4's output resized (as Real-ESRGAN does)
    from genapps.tasks.upscale import task as upscale

    monkeypatch.setattr("genapps.weights.bundled_weights", lambda: {k: v for k, v in bundled.items() if k != "sr-x3"})
    assert upscale.default_model(3) == "sr-x4" and upscale.default_model(2) == "sr-x2"
