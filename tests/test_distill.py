"""`train sr --teacher`: the student learns the teacher's outputs; the teacher runs once per cached
crop (a second run does not call it; a killed partial cache resumes with only the missing crops)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import photo
from genapps.tasks.upscale import task as upscale
from genapps.tasks.upscale import training
from genapps.weights import ModelInfo


class FakeTeacher(nn.Module):
    """x2 nearest-neighbour upscaling plus a constant: cheap, and unlike any HR. Counts its calls;
    raises after `fail_after` calls (a killed run)."""

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.calls, self.images, self.fail_after = 0, 0, fail_after

    def forward(self, x):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.images += x.shape[0]
        return (F.interpolate(x, scale_factor=2, mode="nearest") + 0.1).clamp(0, 1)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(photo((40, 48), seed=i)).save(folder / f"p{i}.png")
    return folder


def _cfg(data, out, **kw):
    return training.SRTrainConfig(**{"data": str(data), "out": str(out), "scale": 2, "arch": "rep", "channels": 4,
                                     "blocks": 1, "steps": 2, "batch_size": 2, "patch": 8, "degrade": "realworld",
                                     "teacher": "fake", "teacher_patches": 6, "teacher_crop": 12} | kw)


def _use(monkeypatch, teacher):
    monkeypatch.setattr(training, "load_teacher",
                        lambda name, scale: (teacher, ModelInfo(arch="fake", source="fake.safetensors",
                                                                sha256="ab" * 32, scale=2)))


def test_second_run_does_not_call_the_teacher(tmp_path, data, monkeypatch):
    first = FakeTeacher()
    _use(monkeypatch, first)
    card = training.train_sr(_cfg(data, tmp_path / "m.safetensors"), torch.device("cpu"))
    cache = tmp_path / "m.teacher-cache" / ("ab" * 8)
    assert first.images == 6 and len(list(cache.glob("*.npz"))) == 6
    assert card["teacher"]["name"] == "fake" and card["teacher_cache"]["crops"] == 6
    assert "distilled from fake" in card["provenance"] and "teacher's licence" in card["license"]
    again = FakeTeacher()
    _use(monkeypatch, again)
    training.train_sr(_cfg(data, tmp_path / "m.safetensors", steps=3), torch.device("cpu"))
    assert again.calls == 0  # every crop came from the cache
    more = FakeTeacher()
    _use(monkeypatch, more)
    training.train_sr(_cfg(data, tmp_path / "m.safetensors", teacher_patches=9, steps=4), torch.device("cpu"))
    assert more.images == 3  # only the new crops (the first 6 are the same list's prefix)


def test_a_killed_partial_cache_resumes(tmp_path, data):
    cfg = _cfg(data, tmp_path / "m.safetensors", teacher_patches=10)
    keyed = training.load_hr_images(data, 24, root=data)
    images = [im for _, im in keyed]
    crops = training.teacher_crops([k for k, _ in keyed], images, cfg)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        training.fill_teacher_cache(crops, images, cfg, FakeTeacher(fail_after=1), cache, batch=4)
    assert len(list(cache.glob("*.npz"))) == 4 and not list(cache.glob(".*"))  # whole files only, no temporaries
    resumed = FakeTeacher()
    items = training.fill_teacher_cache(crops, images, cfg, resumed, cache, batch=4)
    assert resumed.images == 6  # only the missing crops
    reference = training.fill_teacher_cache(crops, images, cfg, FakeTeacher(), tmp_path / "fresh", batch=4)
    for got, want in zip(items, reference):  # the same as an uninterrupted run
        assert all(np.array_equal(got[k], want[k]) for k in ("lr", "teacher", "hr"))
    first = items[0]
    assert first["lr"].shape == (12, 12, 3) and first["teacher"].shape == first["hr"].shape == (24, 24, 3)
    assert first["lr"].dtype == np.uint8
    (cache / crops[0].file_name(cfg)).write_bytes(b"broken")  # an unreadable file is made again
    fixed = FakeTeacher()
    training.fill_teacher_cache(crops, images, cfg, fixed, cache, batch=4)
    assert fixed.images == 1


def test_batches_are_the_same_windows_of_lr_teacher_and_hr(tmp_path, data):
    cfg = _cfg(data, tmp_path / "m.safetensors")
    keyed = training.load_hr_images(data, 24, root=data)
    images = [im for _, im in keyed]
    crops = training.teacher_crops([k for k, _ in keyed], images, cfg)
    assert crops == training.teacher_crops([k for k, _ in keyed], images, cfg)  # seeded
    items = training.fill_teacher_cache(crops, images, cfg, FakeTeacher(), tmp_path / "c")
    lr, teacher, hr = training.cache_batches(items, cfg, torch.Generator().manual_seed(0))()
    assert lr.shape == (2, 3, 8, 8) and teacher.shape == hr.shape == (2, 3, 16, 16)
    expect = (F.interpolate(lr, scale_factor=2, mode="nearest") + 0.1).clamp(0, 1)
    assert torch.allclose(teacher, expect, atol=1 / 255 + 1e-6)  # the teacher's output of this very LR window


def test_the_student_learns_the_teacher(tmp_path, data, monkeypatch):
    """L1 to the teacher falls; the HR term is logged when weighted."""
    _use(monkeypatch, FakeTeacher())
    card = training.train_sr(_cfg(data, tmp_path / "m.safetensors", steps=60, lr=3e-3, hr_weight=0.5, val_every=0),
                             torch.device("cpu"))
    history = card["history"]
    assert "l1_hr" in history[-1] and history[-1]["l1"] < 0.1


def test_teacher_through_the_cli_is_a_model_upscale_loads(tmp_path, cli, data):
    teacher = tmp_path / "teacher.safetensors"
    assert cli("train", "sr", "--data", data, "--out", teacher, "--scale", "2", "--channels", "4", "--blocks", "1",
               "--steps", "1", "--batch-size", "1", "--patch", "8").exit_code == 0
    out = tmp_path / "student.safetensors"
    result = cli("train", "sr", "--data", data, "--out", out, "--scale", "2", "--arch", "rep", "--channels", "4",
                 "--blocks", "1", "--steps", "2", "--batch-size", "2", "--patch", "8", "--degrade", "realworld",
                 "--teacher", teacher, "--teacher-patches", "3", "--teacher-crop", "12")
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["teacher"]["arch"] == "srresnet" and card["training"]["teacher"] == str(teacher)
    assert len(list((tmp_path / "student.teacher-cache").rglob("*.npz"))) == 3
    net, info = upscale.load_model(str(out))
    assert info.scale == 2
    x4 = cli("train", "sr", "--data", data, "--out", tmp_path / "s4.safetensors", "--scale", "4", "--channels", "4",
             "--blocks", "1", "--steps", "1", "--patch", "8", "--teacher", teacher, "--teacher-crop", "8")
    assert x4.exit_code != 0 and "x2 model" in x4.output


def test_no_branches_fine_tunes_the_folded_form_of_its_init(tmp_path, data):
    """--no-branches: a folded rep --init is taken over as is (the same function), trained and saved plain."""
    first = training.train_sr(_cfg(data, tmp_path / "a.safetensors", teacher=None, degrade="bicubic", steps=1),
                              torch.device("cpu"))
    assert first["config"]["deploy"] == 1
    cfg = _cfg(data, tmp_path / "b.safetensors", teacher=None, branches=False, init=str(tmp_path / "a.safetensors"))
    g, arch_config, warmup = training.build_generator(cfg)
    init, _ = upscale.load_model(str(tmp_path / "a.safetensors"))
    x = torch.rand(1, 3, 10, 10)
    assert arch_config["deploy"] == 1 and not warmup and torch.equal(g.eval()(x), init(x))
    card = training.train_sr(cfg, torch.device("cpu"))
    assert card["config"]["deploy"] == 1 and "training_form" not in card
