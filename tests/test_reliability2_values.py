"""Issue 25, part B: the values genapps reads and writes are the ones it says, through the CLI.

Case 6 (a reference checkpoint's one direction), case 9 (import names that -m would not reach),
case 10 ("ok" for garbage: NaN weights, an all-white mask, float/int32 TIFF ranges, stale
samples, mask pairing), the tracebacks and unclear messages of weights, masks and pairs, and the
tiling guarantee sized by the model's receptive radius. Every file is built in the test.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from genapps import weights, zoo
from genapps.inference import infer
from genapps.nn import ResnetGenerator, UnetGenerator
from genapps.nn.sr import RRDBNet, SRVGGNetCompact
from tests.conftest import photo
from tests.test_reliability_train import one_line_error
from tests.test_zoo import randomized, write_ncnn_srvgg


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAPPS_HOME", str(tmp_path / "home"))


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo((32, 40))).save(folder / "a.png")
    return folder


def box_mask(path, h=32, w=40, box=(8, 20, 10, 30)):
    mask = np.zeros((h, w), np.uint8)
    mask[box[0]:box[1], box[2]:box[3]] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return path


def failed_lines(result) -> list[str]:
    return [ln.strip() for ln in result.output.splitlines() if ln.strip().startswith("failed:")]


def model_info(out) -> dict:
    return json.loads((out / "report.json").read_text())["stages"][0]["config"]["model_info"]


# ---------------------------------------------------------------- case 6: a reference file holds one direction


def test_case6_reference_checkpoint_runs_only_its_own_direction_and_the_report_says_which(tmp_path, cli, src):
    torch.manual_seed(0)
    for name in ("latest_net_G_A.pth", "latest_net_G_B.pth", "latest_net_G.pth"):
        torch.save(ResnetGenerator(3, 3, ngf=4, n_blocks=2, norm="instance").state_dict(), tmp_path / name)
    r = cli("translate", src, tmp_path / "o1", "-m", tmp_path / "latest_net_G_A.pth", "--direction", "BtoA")
    one_line_error(r, "latest_net_G_A.pth", "A->B generator (G_A)", "give latest_net_G_B.pth")
    r = cli("translate", src, tmp_path / "o2", "-m", tmp_path / "latest_net_G_B.pth")  # AtoB, the default
    one_line_error(r, "B->A generator (G_B)", "--direction BtoA")
    r = cli("translate", src, tmp_path / "o3", "-m", tmp_path / "latest_net_G.pth", "--direction", "BtoA")
    one_line_error(r, "holds one generator", "latest_net_G_B.pth")
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))
    runs = {"AtoB": ("latest_net_G_A.pth", "G_A"), "BtoA": ("latest_net_G_B.pth", "G_B")}
    outputs = {}
    for direction, (name, generator) in runs.items():
        out = tmp_path / direction
        r = cli("translate", src, out, "-m", tmp_path / name, "--direction", direction)
        assert r.exit_code == 0, r.output
        info = model_info(out)
        assert info["direction"] == direction and info["generator"] == generator, info
        outputs[direction] = np.asarray(Image.open(out / "a.png"))
    assert not np.array_equal(outputs["AtoB"], outputs["BtoA"])  # two generators ran, not one twice


# ---------------------------------------------------------------- case 9: names -m would not reach


def test_case9_import_ncnn_refuses_bundled_zoo_and_reserved_names(tmp_path, cli):
    model = randomized(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2))
    param, bin_path = write_ncnn_srvgg(model, tmp_path / "tiny")
    for name, why in [("sr-x4", "bundled model"), ("bicubic", "classical baseline"),
                      ("realesrgan-x4plus", "zoo model")]:
        r = cli("models", "import-ncnn", param, bin_path, "--name", name)
        one_line_error(r, repr(name), "taken", why, "--name")
        assert not (zoo.home() / f"{name}.safetensors").exists()
    # the default name is the .param's stem: a zoo name there is refused the same way
    named = tmp_path / "realesrgan-x4plus-anime.param"
    named.write_text(param.read_text())
    one_line_error(cli("models", "import-ncnn", named, bin_path), "zoo model")
    r = cli("models", "import-ncnn", param, bin_path, "--name", "my-x2")
    assert r.exit_code == 0 and "-m my-x2" in r.output, r.output
    # with --out the file is used by its path, not its name: any name is fine there
    r = cli("models", "import-ncnn", param, bin_path, "--name", "sr-x4", "--out", tmp_path / "elsewhere")
    assert r.exit_code == 0 and (tmp_path / "elsewhere" / "sr-x4.safetensors").is_file(), r.output


# ---------------------------------------------------------------- case 10a: NaN weights


def _with_nan(name: str, path) -> None:
    tensors, meta = weights.load_weights(weights.bundled_weights()[name])
    key = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[key] = tensors[key].float().clone()
    tensors[key][0, 0, 0, 0] = float("nan")
    weights.save_weights(path, tensors, {k: v for k, v in meta.items() if k != "format_version"})


@pytest.mark.parametrize("task,bundled,extra", [
    ("upscale", "sr-x2", ["-s", "2"]), ("upscale", "sr-x2", ["-s", "2", "-t", "16"]),
    ("translate", "restore", []), ("inpaint", "inpaint", ["--masks", "MASK"])])
def test_case10a_nan_weights_are_a_per_file_error_naming_the_model(tmp_path, cli, src, task, bundled, extra):
    weights_file = tmp_path / f"nan-{bundled}.safetensors"
    _with_nan(bundled, weights_file)
    extra = [str(box_mask(tmp_path / "m.png")) if a == "MASK" else a for a in extra]
    out = tmp_path / "out"
    r = cli(task, src, out, "-m", weights_file, *extra)
    assert r.exit_code == 1, r.output
    [line] = failed_lines(r)
    assert "a.png" in line and f"model {weights_file}" in line and "NaN or infinite" in line, line
    assert not (out / "a.png").exists()


# ---------------------------------------------------------------- case 10b: an all-white mask


@pytest.mark.parametrize("method", ["telea", "ns", "biharmonic", "model"])
def test_case10b_an_all_white_mask_is_a_per_file_error_for_every_method(tmp_path, cli, src, method):
    white = tmp_path / "white.png"
    Image.fromarray(np.full((32, 40), 255, np.uint8)).save(white)
    out = tmp_path / "out"
    r = cli("inpaint", src, out, "--masks", white, "--method", method)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    [line] = failed_lines(r)
    assert "covers the whole 40x32 image" in line, line
    assert not (out / "a.png").exists()


# ---------------------------------------------------------------- case 10c: float and int32 value ranges


def _tiff(path, array, mode):
    Image.fromarray(array, mode=mode).save(path)


def test_case10c_float_and_int32_tiffs_are_scaled_or_refused_never_clipped(tmp_path, cli, caplog):
    inp = tmp_path / "in"
    inp.mkdir()
    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (32, 1))
    _tiff(inp / "unit.tif", ramp, "F")  # [0, 1]: as it is
    _tiff(inp / "bytes.tif", ramp * 255, "F")  # 0-255 stored as float: / 255 (a warning)
    _tiff(inp / "int16.tif", np.round(ramp * 65535).astype(np.int32), "I")  # 16-bit data in int32
    _tiff(inp / "huge.tif", ramp * 1e6, "F")
    _tiff(inp / "over.tif", ramp * 1.02, "F")  # just above 1: no scale fits
    nan = ramp.copy()
    nan[3, 4] = np.nan
    _tiff(inp / "nan.tif", nan, "F")
    _tiff(inp / "int32.tif", np.round(ramp * 100000).astype(np.int32), "I")
    _tiff(inp / "negative.tif", np.round(ramp * 60000 - 100).astype(np.int32), "I")
    black = box_mask(tmp_path / "m.png", box=(0, 0, 0, 0))  # nothing to fill: the image as read, written back
    out = tmp_path / "out"
    r = cli("inpaint", inp, out, "--masks", black, "--method", "telea")
    assert r.exit_code == 1, r.output
    expected = np.round(ramp * 65535)
    for name in ("unit", "bytes", "int16"):
        written = np.asarray(Image.open(out / f"{name}.tif")).astype(np.float64)
        assert np.abs(written - expected).max() <= 1, name  # 16-bit, full range kept
    assert "bytes.tif: float image with values up to 255, read as 0-255 data (divided by 255)" in caplog.text
    failed = "\n".join(failed_lines(r))
    for name, words in [("huge", "[0, 1e+06]"), ("over", "[0, 1.02]"), ("nan", "NaN"),
                        ("int32", "[0, 100000], outside 0-65535"), ("negative", "[-100, 59900]")]:
        assert f"{name}.tif" in failed and words in failed, (name, failed)
        assert not (out / f"{name}.tif").exists()
    assert "does not clip" in failed


# ---------------------------------------------------------------- case 10d: stale samples


def test_case10d_fewer_samples_never_leave_the_old_ones_behind(tmp_path, cli, src):
    mask = box_mask(tmp_path / "m.png")
    out = tmp_path / "out"
    assert cli("inpaint", src, out, "--masks", mask, "--samples", "3", "--no-tta").exit_code == 0
    assert sorted(p.name for p in out.glob("a*.png")) == ["a_s0.png", "a_s1.png", "a_s2.png"]
    kept = (out / "a_s2.png").read_bytes()
    one_line_error(cli("inpaint", src, out, "--masks", mask, "--samples", "2"), "written with samples 3",
                   "--overwrite")
    assert (out / "a_s2.png").read_bytes() == kept  # refused before any work
    r = cli("inpaint", src, out, "--masks", mask, "--samples", "2", "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("a*.png")) == ["a_s0.png", "a_s1.png"]
    r = cli("inpaint", src, out, "--masks", mask, "--overwrite")  # one fill: a.png, no samples left
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("a*.png")) == ["a.png"]
    report = json.loads((out / "report.json").read_text())["stages"][0]["summary"]
    assert report["removed_stale_outputs"] == ["a_s0.png", "a_s1.png"]
    # a file genapps did not write (or one edited since) is never removed
    other = tmp_path / "out2"
    assert cli("inpaint", src, other, "--masks", mask, "--samples", "2").exit_code == 0
    Image.fromarray(photo((32, 40), seed=5)).save(other / "a_s1.png")
    assert cli("inpaint", src, other, "--masks", mask, "--overwrite").exit_code == 0
    assert sorted(p.name for p in other.glob("a*.png")) == ["a.png", "a_s1.png"]


# ---------------------------------------------------------------- case 10e: mask pairing


def test_case10e_a_mask_pairs_by_the_rule_its_warning_states(tmp_path, cli, src, caplog):
    masks = tmp_path / "masks"
    box_mask(masks / "a.bmp", box=(2, 10, 2, 12))  # same stem, other extension
    box_mask(masks / "a.png", box=(20, 30, 20, 35))  # the image's full name: this one
    out = tmp_path / "out"
    r = cli("inpaint", src, out, "--masks", masks, "--method", "telea")
    assert r.exit_code == 0, r.output
    assert "a.bmp, a.png share one name; each pairs only with an image of its full name" in caplog.text
    changed = (np.asarray(Image.open(out / "a.png")) != np.asarray(Image.open(src / "a.png"))).any(-1)
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 20 and cols.min() >= 20, "the mask of the full name, a.png, was used"
    # an image of neither full name: ambiguous, a per-file error (never a pick, never "skipped")
    jpg = tmp_path / "jpg"
    jpg.mkdir()
    Image.fromarray(photo((32, 40))).save(jpg / "a.jpg")
    r = cli("inpaint", jpg, tmp_path / "out2", "--masks", masks, "--method", "telea", "--skip-missing-masks")
    assert r.exit_code == 1, r.output
    [line] = failed_lines(r)
    assert "ambiguous" in line and "a.bmp" in line and "a.png" in line, line


# ---------------------------------------------------------------- tracebacks and unclear messages


def test_a_reference_pth_with_a_0_dim_or_missing_tensor_is_one_sentence(tmp_path, cli, src):
    unet = UnetGenerator(3, 3, num_downs=5, ngf=4, norm="batch").state_dict()
    missing = {k: v for k, v in unet.items() if k != "model.model.3.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    one_line_error(cli("translate", src, tmp_path / "o", "-m", tmp_path / "missing.pth"),
                   "missing.pth", "the tensor model.model.3.weight is missing")
    for name, state, key in [("unet0.pth", unet, "model.model.0.weight"),
                             ("resnet0.pth", ResnetGenerator(3, 3, ngf=4, n_blocks=1).state_dict(), "model.1.weight")]:
        torch.save(dict(state) | {key: torch.tensor(1.0)}, tmp_path / name)
        one_line_error(cli("translate", src, tmp_path / "o", "-m", tmp_path / name),
                       f"{key} has shape ()", "4 dimensions")


def test_inpaint_with_a_pth_says_what_inpaint_runs(tmp_path, cli, src):
    torch.save(UnetGenerator(3, 3, num_downs=5, ngf=4).state_dict(), tmp_path / "x.pth")
    line = one_line_error(cli("inpaint", src, tmp_path / "o", "--masks", box_mask(tmp_path / "m.png"), "-m",
                              tmp_path / "x.pth"), "x.pth", "genapps's format", "nor inpainting weights spandrel reads")
    assert "header" not in line


def test_pairs_with_a_negative_seed_is_a_setup_error(tmp_path, cli, src):
    one_line_error(cli("pairs", src, tmp_path / "p", "--kind", "degrade", "--seed", "-1"), "seed must be >= 0")
    assert not (tmp_path / "p").exists()


def test_an_empty_single_mask_file_is_one_setup_error(tmp_path, cli, src):
    Image.fromarray(photo((32, 40), seed=1)).save(src / "b.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    one_line_error(cli("inpaint", src, tmp_path / "o", "--masks", empty), "mask file is unreadable", "empty file")


# ---------------------------------------------------------------- tiling sized by the receptive radius


class Shift(nn.Module):
    """A plain conv stack whose output at x is the input at x - `radius` (one px per 3x3
    convolution, zero padding): the worst case for tiles whose hidden context is below its radius."""

    def __init__(self, radius: int):
        super().__init__()
        self.receptive_radius = radius
        self.convs = nn.ModuleList(nn.Conv2d(3, 3, 3, padding=1, bias=False) for _ in range(radius))
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.zero_()
                for c in range(3):
                    conv.weight[c, c, 1, 0] = 1.0  # out[y, x] = in[y, x - 1]

    def forward(self, x):
        for conv in self.convs:
            x = conv(x)
        return x


def test_tiles_hide_the_declared_receptive_radius():
    x = torch.rand(1, 3, 30, 70)
    net = Shift(12).eval()
    whole = infer(net, x, context=8)
    for overlap in (0, 4, 16):
        assert (infer(net, x, tile=16, overlap=overlap, context=8) - whole).abs().max() < 1e-6, overlap
    net.receptive_radius = 0  # undeclared: the old margins (overlap / 2 hidden) read the tile's zero padding
    assert (infer(net, x, tile=16, overlap=16, context=8) - whole).abs().max() > 0.1


def test_zoo_architectures_declare_their_receptive_radius():
    from genapps.nn.winograd import accelerate

    assert SRVGGNetCompact(num_feat=4, num_conv=16).receptive_radius == 18  # exact: 18 convolutions
    x4plus = RRDBNet(num_feat=4, num_block=23, num_grow_ch=4)
    assert x4plus.receptive_radius == 65 and accelerate(x4plus).receptive_radius == 65  # measured: 64 px
    assert RRDBNet(num_feat=4, num_block=6, num_grow_ch=4).receptive_radius == 48  # x4plus-anime, measured
    assert RRDBNet(num_feat=4, num_block=1, num_grow_ch=4).receptive_radius == 19  # exact below the cap
    assert RRDBNet(scale=2, num_feat=4, num_block=1, num_grow_ch=4).receptive_radius == 38  # unshuffled x2


def test_esrgan_and_compact_files_read_by_spandrel_declare_the_same_radius(tmp_path):
    pytest.importorskip("spandrel")
    from genapps.tasks.upscale.task import load_model

    torch.save(RRDBNet(num_feat=8, num_block=2).state_dict(), tmp_path / "esrgan.pth")  # growth 32: spandrel's
    torch.save(SRVGGNetCompact(num_feat=8, num_conv=5).state_dict(), tmp_path / "compact.pth")
    for name, arch, radius in [("esrgan.pth", "ESRGAN", 34), ("compact.pth", "Compact", 7)]:
        model, info = load_model(str(tmp_path / name))
        assert (info.arch, model.receptive_radius) == (arch, radius)


def _genapps_upscale_file(path, model, arch, config):
    weights.save_weights(path, model.state_dict(), {"task": "upscale", "arch": arch, "config": config})


@pytest.mark.parametrize("arch,config", [
    ("rrdbnet", {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}),
    ("rrdbnet", {"scale": 2, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}),
    ("srvgg", {"num_feat": 8, "num_conv": 4, "upscale": 2})])
def test_tiny_zoo_architectures_tiled_equal_the_whole_image_through_the_cli(tmp_path, cli, arch, config):
    net = {"rrdbnet": RRDBNet, "srvgg": SRVGGNetCompact}[arch](**config)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.12)
        last = net.conv_last if arch == "rrdbnet" else net.body[-1]
        last.bias.fill_(0.5 if arch == "rrdbnet" else 0.0)
    _genapps_upscale_file(tmp_path / "tiny.safetensors", net, arch, config)
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(photo((56, 72), seed=2)).save(inp / "a.png")
    scale = config.get("scale", config.get("upscale"))
    outs = []
    for tiled in ([], ["-t", "16", "--tile-overlap", "4"]):
        out = tmp_path / f"out{len(tiled)}"
        r = cli("upscale", inp, out, "-m", tmp_path / "tiny.safetensors", "-s", scale, *tiled, "--no-report")
        assert r.exit_code == 0, r.output
        outs.append(np.asarray(Image.open(out / "a.png")).astype(int))
    assert outs[0].shape == (56 * scale, 72 * scale, 3) and outs[0].std() > 5  # not a flat image
    assert np.abs(outs[0] - outs[1]).max() <= 1  # within rounding: the margins cover the whole radius
