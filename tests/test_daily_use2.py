"""Daily use, round 2 (issue 30): Real-ESRGAN's model names, memory-budget tiling, progress in
pipes and logs, reports that cover the whole folder and compare."""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from conftest import photo
from genapps import zoo

HAS_ZOO = importlib.util.find_spec("ncnn") is not None and zoo.wheel_models_dir() is not None
needs_zoo = pytest.mark.skipif(not HAS_ZOO, reason="the zoo extra is not installed (pip install 'genapps[zoo]')")


@pytest.fixture
def genapps_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAPPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def one_photo(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(photo((20, 24))).save(folder / "a.png")
    return folder


# ---------------------------------------------------------------- model names


def _names_listed(output: str, after: str) -> set[str]:
    """The comma-separated names after 'bundled: ' up to the next ';'."""
    part = output.split(after, 1)[1].split(";", 1)[0]
    return {n.strip().split(" ")[0] for n in part.split(",")}


def test_an_unknown_model_lists_only_the_models_of_the_command(cli, one_photo, tmp_path, genapps_home):
    up = cli("upscale", one_photo, tmp_path / "o1", "-m", "nope")
    assert up.exit_code == 2
    assert _names_listed(up.output, "bundled: ") == {"sr-x2", "sr-x3", "sr-x4", "srgan-x4"}
    assert "realesrgan-x4plus (RealESRGAN_x4plus)" in up.output and "bicubic" in up.output
    assert "colorize" not in up.output and "inpaint" not in up.output.replace("upscale model", "")
    tr = cli("translate", one_photo, tmp_path / "o2", "-m", "nope")
    assert tr.exit_code == 2
    assert _names_listed(tr.output, "bundled: ") == {"colorize", "restore", "restore-unpaired"}
    assert "zoo" not in tr.output and "sr-x4" not in tr.output
    inp = cli("inpaint", one_photo, tmp_path / "o3", "-m", "nope", "--masks", one_photo / "a.png")
    assert inp.exit_code == 2
    assert _names_listed(inp.output, "bundled: ") == {"inpaint", "inpaint-pluralistic"}
    assert "sr-x4" not in inp.output and "restore" not in inp.output and not (tmp_path / "o1").exists()


def test_real_esrgan_names_the_zoo_lacks_say_where_their_file_is(cli, one_photo, tmp_path, genapps_home):
    missing = cli("upscale", one_photo, tmp_path / "o", "-n", "RealESRGAN_x2plus")
    assert missing.exit_code == 2 and "RealESRGAN_x2plus is not in the zoo" in missing.output
    assert "github.com/xinntao/Real-ESRGAN/releases" in missing.output
    pth = cli("upscale", one_photo, tmp_path / "o", "-m", "RealESRGAN_x4plus.pth")
    assert pth.exit_code == 2 and "-m RealESRGAN_x4plus" in pth.output


def test_zoo_names_spelled_as_real_esrgan_does():
    assert zoo.zoo_name("RealESRGAN_x4plus") == "realesrgan-x4plus"
    assert zoo.zoo_name("RealESRGAN_x4plus_anime_6B") == "realesrgan-x4plus-anime"
    assert zoo.zoo_name("realesr-animevideov3") == "realesr-animevideov3-x4"
    assert zoo.zoo_name("realesr-animevideov3", 2) == "realesr-animevideov3-x2"  # realesrgan-ncnn-vulkan -s 2
    assert zoo.zoo_name("realesr-animevideov3", 3) == "realesr-animevideov3-x3"
    assert zoo.zoo_name("realesrgan-x4plus", 2) == "realesrgan-x4plus"  # a zoo name is itself
    assert zoo.zoo_name("RealESRGAN_x4plus", 2) == "realesrgan-x4plus"  # no x2 file: the x4 net, resized
    assert zoo.zoo_name("sr-x4") is None and zoo.zoo_name("RealESRGAN_x2plus") is None
    assert set(zoo.ALIASES.values()) <= set(zoo.ZOO)


@needs_zoo
def test_real_esrgan_names_run_the_zoo_models(cli, one_photo, tmp_path, genapps_home):
    """`-n realesr-animevideov3 -s 2` runs the -x2 file (as realesrgan-ncnn-vulkan does) and
    resumes what `-m realesr-animevideov3-x2` wrote: one model, two spellings."""
    first = cli("upscale", "-i", one_photo, "-o", tmp_path / "out", "-n", "realesr-animevideov3", "-s", "2")
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    info = report["stages"][0]["config"]["model_info"]
    assert info["source"].endswith("realesr-animevideov3-x2.safetensors")
    assert Image.open(tmp_path / "out" / "a.png").size == (48, 40)
    again = cli("upscale", one_photo, tmp_path / "out", "-m", "realesr-animevideov3-x2", "-s", "2")
    assert again.exit_code == 0 and "0 ok, 1 skipped" in again.output
    x4 = cli("upscale", one_photo, tmp_path / "out4", "-n", "RealESRGAN_x4plus_anime_6B", "--no-report")
    assert x4.exit_code == 0, x4.output
    assert Image.open(tmp_path / "out4" / "a.png").size == (96, 80)
