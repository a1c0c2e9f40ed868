"""The weights layer (genapps.weights): one loader for every task, one ModelInfo, and crafted files
that fail in one line before anything is allocated - for inpaint and translate as for upscale
(tests/test_reliability_train.py has the upscale cases these mirror)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from genapps import weights
from genapps.nn import UnetGenerator
from genapps.tasks.inpaint.models import define_G as inpaint_G
from genapps.tasks.translate.models import define_G as translate_G
from tests.conftest import photo
from tests.test_reliability_train import Pickled, one_line_error


def genapps_file(path, model: torch.nn.Module, meta) -> None:
    header = meta if isinstance(meta, str) else json.dumps(meta)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"genapps": header})


@pytest.fixture
def image_and_mask(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo((32, 40))).save(src / "a.png")
    mask = np.zeros((32, 40), np.uint8)
    mask[8:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return src, tmp_path / "mask.png"


# ---------------------------------------------------------------- inpaint -m FILE

INPAINT = {"format_version": 1, "task": "inpaint", "arch": "unet"}
SMALL_INPAINT = {"ngf": 4, "num_downs": 5}
INPAINT_CRAFTED = {
    "list.safetensors": ([1, 2], "damaged genapps metadata"),
    "json.safetensors": ("{not json", "damaged genapps metadata"),
    "task.safetensors": (INPAINT | {"task": "upscale", "config": SMALL_INPAINT}, "weights of task 'upscale', not 'inpaint'"),
    "arch.safetensors": (INPAINT | {"arch": "lama", "config": SMALL_INPAINT}, "valid: unet, pluralistic"),
    "keys.safetensors": (INPAINT | {"config": SMALL_INPAINT | {"evil": 1}}, "unknown config keys evil"),
    "wide.safetensors": (INPAINT | {"config": {"ngf": 200000, "num_downs": 5}}, "ngf=200000"),
    "deep.safetensors": (INPAINT | {"config": {"ngf": 4, "num_downs": 6}}, "do not fit the declared model"),
    "text.safetensors": (INPAINT | {"config": {"ngf": "4", "num_downs": 5}}, "must be integers"),
    "dilations.safetensors": (INPAINT | {"config": SMALL_INPAINT | {"dilations": [1, "2"]}}, "must be integers"),
}


@pytest.mark.parametrize("name", list(INPAINT_CRAFTED) + ["foreign.safetensors", "w.pth"])
def test_crafted_inpaint_weights_fail_in_one_line_before_building(tmp_path, cli, image_and_mask, name):
    path = tmp_path / name
    g = inpaint_G("unet", **SMALL_INPAINT)
    if name == "foreign.safetensors":
        save_file(g.state_dict(), str(path))
        words = "not a genapps checkpoint"
    elif name == "w.pth":
        torch.save(g.state_dict(), path)
        words = "not a readable safetensors file"
    else:
        genapps_file(path, g, INPAINT_CRAFTED[name][0])
        words = INPAINT_CRAFTED[name][1]
    src, mask = image_and_mask
    result = cli("inpaint", src, tmp_path / "out", "--masks", mask, "-m", path)
    one_line_error(result, str(path), words)


def test_an_honest_inpaint_file_still_loads(tmp_path, cli, image_and_mask):
    genapps_file(tmp_path / "ok.safetensors", inpaint_G("unet", **SMALL_INPAINT), INPAINT | {"config": SMALL_INPAINT})
    src, mask = image_and_mask
    result = cli("inpaint", src, tmp_path / "out", "--masks", mask, "-m", tmp_path / "ok.safetensors")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert json.dumps(SMALL_INPAINT) in json.dumps(report)  # model_info: arch, config, source, name


# ---------------------------------------------------------------- translate -m FILE

TRANSLATE = {"format_version": 1, "task": "translate", "arch": "unet"}
SMALL_UNET = {"in_ch": 3, "out_ch": 3, "num_downs": 5, "ngf": 4, "norm": "batch", "dropout": False}
TRANSLATE_CRAFTED = {
    "list.safetensors": ([1, 2], "damaged genapps metadata"),
    "task.safetensors": (TRANSLATE | {"task": "inpaint", "config": SMALL_UNET}, "not 'translate'"),
    "arch.safetensors": (TRANSLATE | {"arch": "transformer", "config": SMALL_UNET}, "valid: unet, resnet, cycle"),
    "keys.safetensors": (TRANSLATE | {"config": SMALL_UNET | {"evil": 1}}, "unknown config keys evil"),
    "wide.safetensors": (TRANSLATE | {"config": SMALL_UNET | {"ngf": 200000}}, "ngf=200000"),
    "deep.safetensors": (TRANSLATE | {"config": SMALL_UNET | {"num_downs": 6}}, "do not fit the declared model"),
    "text.safetensors": (TRANSLATE | {"config": SMALL_UNET | {"ngf": "4"}}, "must be integers"),
    "flag.safetensors": (TRANSLATE | {"config": SMALL_UNET | {"dropout": 1}}, "dropout must be true or false"),
    "cycle.safetensors": (TRANSLATE | {"arch": "cycle", "config": SMALL_UNET | {"ngf": 200000}}, "ngf=200000"),
}


def reference_file(path) -> str:
    """A crafted reference latest_net_G.pth; returns the words its error must hold."""
    name = path.name
    unet = UnetGenerator(3, 3, num_downs=5, ngf=4, norm="batch").state_dict()
    if name == "empty.pth":
        path.write_bytes(b"")
        return "not a readable torch weights file"
    if name == "code.pth":
        torch.save({"model.model.0.weight": Pickled()}, path)
        return "refused, it would import"
    if name == "nothing.pth":
        torch.save({}, path)
        return "not a state dict of tensors"
    if name == "keys.pth":
        torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, path)
        return "unrecognised weights"
    if name == "shapes.pth":  # the keys of a U-Net, one inner tensor of another shape
        key = "model.model.1.model.3.model.1.weight"
        torch.save(unet | {key: torch.zeros(3, *unet[key].shape[1:])}, path)
        return "do not fit the declared model"
    if name == "expanded.pth":  # a U-Net of ngf 4096 whose every tensor is one stored number, expanded
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in UnetGenerator(3, 3, num_downs=5, ngf=4096).state_dict().items()}
        torch.save({k: torch.zeros(1).expand(s) if len(s) else torch.zeros(()) for k, s in shapes.items()}, path)
        return "more elements than the file stores"
    raise AssertionError(name)


REFERENCE = ["empty.pth", "code.pth", "nothing.pth", "keys.pth", "shapes.pth", "expanded.pth"]


@pytest.mark.parametrize("name", list(TRANSLATE_CRAFTED) + REFERENCE)
def test_crafted_translate_weights_fail_in_one_line_before_building(tmp_path, cli, image_and_mask, name, capfd):
    path = tmp_path / name
    if name in TRANSLATE_CRAFTED:
        genapps_file(path, translate_G("unet", **SMALL_UNET), TRANSLATE_CRAFTED[name][0])
        words = TRANSLATE_CRAFTED[name][1]
    else:
        words = reference_file(path)
    src, _ = image_and_mask
    result = cli("translate", src, tmp_path / "out", "-m", path)
    line = one_line_error(result, str(path), words)
    assert "weights_only" not in line
    assert "this must never run" not in result.output + capfd.readouterr().out


def test_an_honest_translate_file_and_reference_file_still_load(tmp_path, cli, image_and_mask):
    src, _ = image_and_mask
    genapps_file(tmp_path / "ok.safetensors", translate_G("unet", **SMALL_UNET), TRANSLATE | {"config": SMALL_UNET})
    torch.save(UnetGenerator(3, 3, num_downs=5, ngf=4, norm="batch").state_dict(), tmp_path / "latest_net_G.pth")
    for name in ("ok.safetensors", "latest_net_G.pth"):
        result = cli("translate", src, tmp_path / f"out-{name}", "-m", tmp_path / name)
        assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- the loader itself


def test_a_mismatched_declaration_is_never_built_for_real(tmp_path):
    """The builder runs on the meta device only, until the file's tensors match the skeleton."""
    devices = []

    def spy(**config):
        devices.append(torch.empty(0).device.type)
        return inpaint_G("unet", **config)

    genapps_file(tmp_path / "deep.safetensors", inpaint_G("unet", **SMALL_INPAINT),
                 INPAINT | {"config": {"ngf": 4, "num_downs": 6}})
    with pytest.raises(ValueError, match="do not fit"):
        weights.load_model(tmp_path / "deep.safetensors", "inpaint", {"unet": spy})
    assert devices == ["meta"]
    genapps_file(tmp_path / "ok.safetensors", inpaint_G("unet", **SMALL_INPAINT), INPAINT | {"config": SMALL_INPAINT})
    model, info = weights.load_model(tmp_path / "ok.safetensors", "inpaint", {"unet": spy})
    assert devices == ["meta", "meta", "cpu"] and not model.training
    assert info == weights.ModelInfo(arch="unet", source=str(tmp_path / "ok.safetensors"), config=SMALL_INPAINT,
                                     sha256=weights.weights_sha256(tmp_path / "ok.safetensors"))
    assert info.as_report() == {"arch": "unet", "source": info.source, "config": SMALL_INPAINT}


def test_resolvers_are_handed_in_and_listed_when_nothing_matches(tmp_path):
    target = tmp_path / "x.safetensors"
    target.write_bytes(b"")
    other = weights.Resolver("elsewhere", ("one", "two"), lambda name: target if name == "one" else None)
    assert weights.resolve_weights("one", (other,)) == target
    assert weights.resolve_weights("sr-x4") == weights.WEIGHTS_DIR / "sr-x4.safetensors"
    with pytest.raises(FileNotFoundError, match="bundled: .*sr-x4.*; elsewhere: one, two"):
        weights.resolve_weights("three", (other,))
    with pytest.raises(FileNotFoundError) as e:
        weights.resolve_weights("one")  # a resolver not handed in is not consulted
    assert "elsewhere" not in str(e.value)


def test_bundled_weights_ship_inside_the_package():
    """genapps/weights is a package: its files are package data (pyproject) beside the module."""
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["genapps"]
    assert {"weights/*.safetensors", "weights/*.json"} <= set(data)
    assert weights.WEIGHTS_DIR == Path(weights.__file__).parent
    assert {"sr-x4", "inpaint", "restore"} <= set(weights.bundled_weights())
    assert weights.bundled_card("sr-x4")["arch"] == "rep"
