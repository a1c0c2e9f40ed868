"""Foreign weights through spandrel: several architectures in their public key layouts (spandrel's
own classes with tiny hyperparameters, random weights), purpose and scale checks, and files that
must not run code or allocate more than they hold."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from genapps.tasks.upscale.task import load_model

spandrel = pytest.importorskip("spandrel")
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.LaMa import LaMa  # noqa: E402
from spandrel.architectures.SPAN import SPAN  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402


def randomized(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model.eval()


# name -> (builder, how the file is written, spandrel's architecture id, scale)
ARCHS = {
    "esrgan.pth": (lambda: ESRGAN(num_filters=8, num_blocks=1, scale=4), "params_ema+module", "ESRGAN", 4),
    "compact.safetensors": (lambda: Compact(num_feat=8, num_conv=2, upscale=2), "safetensors", "Compact", 2),
    "swinir.pth": (lambda: SwinIR(img_size=16, window_size=4, embed_dim=12, depths=[1], num_heads=[2], mlp_ratio=1.0,
                                  upscale=2, upsampler="pixelshuffledirect"), "plain", "SwinIR", 2),
    "span.ckpt": (lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2), "state_dict", "SPAN", 2),
    "restore-x1.pth": (lambda: Compact(num_feat=8, num_conv=2, upscale=1), "plain", "Compact", 1),
}


def write(model: torch.nn.Module, path, how: str) -> None:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if how == "safetensors":
        save_file(state, str(path))
    elif how == "params_ema+module":
        torch.save({"params_ema": {f"module.{k}": v for k, v in state.items()}}, path)
    elif how == "state_dict":
        torch.save({"state_dict": state, "epoch": 3}, path)
    else:
        torch.save(state, path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    originals = {}
    for name, (build, how, _, _) in ARCHS.items():
        originals[name] = randomized(build())
        write(originals[name], folder / name, how)
    return folder, originals


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (18, 20, 3), dtype=np.uint8)).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("name", list(ARCHS))
def test_loads_the_architecture_with_its_weights(model_dir, name):
    folder, originals = model_dir
    model, info = load_model(str(folder / name))
    assert info.arch == ARCHS[name][2] and info.scale == ARCHS[name][3]
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours, theirs = model(x), originals[name](x).clamp(0, 1)
    assert ours.shape == theirs.shape == (1, 3, 16 * info.scale, 16 * info.scale)
    assert torch.allclose(ours, theirs, atol=1e-5)  # the file's weights, in the right architecture


def test_a_model_folder_runs_through_upscale(model_dir, image_dir, tmp_path, cli):
    folder, _ = model_dir
    for name in ARCHS:
        out = tmp_path / f"out-{name}"
        result = cli("upscale", image_dir, out, "-m", folder / name, "-s", "2", "--device", "cpu")
        assert result.exit_code == 0, (name, result.output)
        assert Image.open(out / "a.png").size == (40, 36), name  # any native scale, resized to x2
        report = json.loads((out / "report.json").read_text())
        assert ARCHS[name][2] in json.dumps(report)


def test_outscale_one_with_a_restoration_model(model_dir, image_dir, tmp_path, cli):
    folder, _ = model_dir
    result = cli("upscale", image_dir, tmp_path / "out", "-m", folder / "restore-x1.pth", "--outscale", "1",
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out/a.png").size == (20, 18)


def one_line_error(result, *parts):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def test_an_inpainting_model_is_refused_naming_what_it_is(tmp_path, image_dir, cli):
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LaMa(in_nc=4).state_dict().items()}
    torch.save({k: torch.zeros(s, dtype=torch.float16) for k, s in shapes.items()}, tmp_path / "big-lama.pth")
    result = cli("upscale", image_dir, tmp_path / "out", "-m", tmp_path / "big-lama.pth")
    one_line_error(result, "big-lama.pth", "LaMa", "Inpainting", "x1", "not for upscale")


def test_a_declared_model_larger_than_the_file_is_refused(tmp_path, image_dir, cli):
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LaMa(in_nc=4).state_dict().items()}
    # every tensor a stride-0 view of one number: the right keys and shapes, 51M parameters declared
    torch.save({k: torch.zeros(()).expand(s) for k, s in shapes.items()}, tmp_path / "hollow.pth")
    result = cli("upscale", image_dir, tmp_path / "out", "-m", tmp_path / "hollow.pth")
    one_line_error(result, "hollow.pth", "more parameters than the file holds")


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("ext", [".pth", ".pt", ".ckpt"])
def test_a_pickle_payload_never_runs(tmp_path, image_dir, cli, ext):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{ext}"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1)}, "hook": Payload(str(marker))}, path)
    result = cli("upscale", image_dir, tmp_path / "out", "-m", path)
    one_line_error(result, str(path))
    assert not marker.exists()


def test_unknown_layout_is_one_line(tmp_path, image_dir, cli):
    save_file({"foo.weight": torch.zeros(4, 3, 3, 3)}, str(tmp_path / "odd.safetensors"))
    result = cli("upscale", image_dir, tmp_path / "out", "-m", tmp_path / "odd.safetensors")
    one_line_error(result, "odd.safetensors")
