"""Daily use, round 2 (issue 30): Real-ESRGAN's model names, memory-budget tiling, progress in
pipes and logs, reports that cover the whole folder and compare."""

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

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
    assert _names_listed(up.output, "bundled: ") == {"realsr-x4", "sr-x2", "sr-x3", "sr-x4", "srgan-x4"}
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


# ---------------------------------------------------------------- tiles by a memory budget


def test_tile_choice_is_the_largest_that_fits_the_budget():
    from genapps.inference import MIN_TILE, TILE_GRID, MemoryProfile, choose_tile

    prof = MemoryProfile(per_px=50_000, baseline=10**9, out_channels=3)
    assert choose_tile(prof, (100, 100), 4, 16, 4, 2 * 10**9).tile == 0  # 0.5 GB pass: whole
    out_bytes = 4 * 3 * 1000 * 1000 * 16
    for budget in (3 * 10**9, 4 * 10**9, 8 * 10**9):
        plan = choose_tile(prof, (1000, 1000), 4, 16, 4, budget)
        assert plan.fits and plan.tile % TILE_GRID == 0 and plan.per_pass >= 1
        pass_bytes = lambda t: prof.per_px * (t + 32) ** 2  # noqa: E731
        assert prof.baseline + 4 * out_bytes + plan.per_pass * pass_bytes(plan.tile) <= budget
        assert prof.baseline + 4 * out_bytes + pass_bytes(plan.tile + TILE_GRID) > budget  # the largest
    tiles = [choose_tile(prof, (1000, 1000), 4, 16, 4, b * 10**9).tile for b in (3, 4, 8)]
    assert tiles == sorted(tiles) and tiles[0] < tiles[-1]
    on_grid = choose_tile(prof, (1000, 1000), 4, 16, 4, 4 * 10**9, multiple=24)
    assert on_grid.tile % 48 == 0  # multiples of the model's and of TILE_GRID
    starved = choose_tile(prof, (1000, 1000), 4, 16, 4, 10**9)
    assert starved.tile == MIN_TILE and not starved.fits and starved.per_pass == 1


def test_memory_profile_counts_the_tensors_alive_at_once():
    import torch
    from torch import nn

    from genapps.inference import HIDDEN, PROBE, PROBE_STEP, memory_profile

    calls = []

    class Net(nn.Sequential):
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    net = Net(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 3, 3, padding=1)).eval()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    prof = memory_profile(net, 3, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)  # the probe leaves the random stream alone
    # the first conv's and the ReLU's outputs (32 float32 each per px) are alive together at the peak
    assert prof.per_px == pytest.approx(HIDDEN * 2 * 32 * 4, rel=0.05)
    side = PROBE + PROBE_STEP  # two probes: a model's own padding shows as the growth of its peak
    assert prof.out_channels == 3 and prof.baseline > 0 and calls == [(1, 3, PROBE, PROBE), (1, 3, side, side)]
    assert prof.context == 0
    assert memory_profile(net, 3, torch.device("cpu")) is prof and len(calls) == 2  # measured once per model


def test_memory_profile_counts_a_model_s_own_padding_and_hidden_memory():
    import torch
    import torch.nn.functional as F
    from torch import nn

    from genapps.inference import HIDDEN, choose_tile, memory_profile

    class Padded(nn.Module):  # pads 20 px on every side itself (as an ncnn family does), crops back
        def __init__(self, hidden=None):
            super().__init__()
            self.conv, self.out = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 3, 3, padding=1)
            if hidden:
                self.hidden_memory = hidden

        def forward(self, x):
            return self.out(torch.relu(self.conv(F.pad(x, (20,) * 4))))[..., 20:-20, 20:-20]

    prof = memory_profile(Padded().eval(), 3, torch.device("cpu"))
    assert prof.context == 20  # the peak (two 32-channel maps) grows as (side + 40)^2
    assert prof.per_px == pytest.approx(HIDDEN * 2 * 32 * 4, rel=0.05)  # per px of the padded input
    budget = prof.baseline + 2 * 10**9
    plain = replace(prof, context=0)
    assert choose_tile(prof, (2000, 2000), 2, 16, 1, budget).tile < choose_tile(plain, (2000, 2000), 2, 16, 1, budget).tile
    assert choose_tile(prof, (1790, 1790), 2, 16, 1, budget).tile > 0 == choose_tile(plain, (1790, 1790), 2, 16, 1, budget).tile
    declared = memory_profile(Padded(hidden=5.0).eval(), 3, torch.device("cpu"))  # accelerate's models declare theirs
    assert declared.per_px == pytest.approx(prof.per_px * 5.0 / HIDDEN, rel=1e-6)


def test_upscale_tiles_within_max_memory_and_matches_the_whole_image(cli, tmp_path, caplog):
    import logging

    (tmp_path / "in").mkdir()
    Image.fromarray(photo((120, 150), seed=3)).save(tmp_path / "in" / "p.png")
    with caplog.at_level(logging.INFO):
        tiled = cli("upscale", tmp_path / "in", tmp_path / "tiled", "-m", "sr-x2", "-s", "2", "--max-memory", "0.001",
                    "--no-report")
    assert tiled.exit_code == 0, tiled.output
    assert "tiles of 64 px for a 0.02-MP image: sr-x2 needs" in caplog.text
    assert "too small for sr-x2 even in 64-px tiles" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        whole = cli("upscale", tmp_path / "in", tmp_path / "whole", "-m", "sr-x2", "-s", "2", "--max-memory", "0",
                    "--no-report")
        default = cli("upscale", tmp_path / "in", tmp_path / "default", "-m", "sr-x2", "-s", "2", "--no-report")
    assert whole.exit_code == 0 and default.exit_code == 0 and "tiles of" not in caplog.text
    a, b = (np.asarray(Image.open(tmp_path / d / "p.png"), np.int16) for d in ("tiled", "whole"))
    assert a.shape == (240, 300, 3) and np.abs(a - b).max() <= 2
    assert (tmp_path / "whole" / "p.png").read_bytes() == (tmp_path / "default" / "p.png").read_bytes()
    # the budget is not a setting of the result: a rerun with another budget resumes
    again = cli("upscale", tmp_path / "in", tmp_path / "tiled", "-m", "sr-x2", "-s", "2", "--no-report")
    assert again.exit_code == 0 and "0 ok, 1 skipped" in again.output
    bad = cli("upscale", tmp_path / "in", tmp_path / "bad", "-m", "sr-x2", "--max-memory", "-1")
    assert bad.exit_code == 2 and "max_memory must be >= 0" in bad.output


def test_translate_tiles_within_max_memory(cli, tmp_path, caplog):
    import logging

    (tmp_path / "in").mkdir()
    Image.fromarray(photo((330, 360), seed=4)).save(tmp_path / "in" / "p.png")
    with caplog.at_level(logging.INFO):
        result = cli("translate", tmp_path / "in", tmp_path / "out", "--max-memory", "0.001", "--no-report")
    assert result.exit_code == 0, result.output
    assert "tiles of 64 px for a 0.12-MP image: restore needs ~" in caplog.text  # its multiple: 32 px
    assert Image.open(tmp_path / "out" / "p.png").size == (360, 330)


# ---------------------------------------------------------------- progress in pipes and logs


def _done_lines(text: str) -> list[str]:
    return [line.split("INFO", 1)[-1] for line in text.splitlines() if ": done " in line]


def test_per_file_progress_lines_when_not_on_a_terminal(cli, photo_dir, tmp_path, caplog, monkeypatch):
    import logging

    from genapps import batch

    with caplog.at_level(logging.INFO, logger="genapps"):
        assert cli("upscale", photo_dir, tmp_path / "out", "-m", "bicubic", "-s", "2", "--no-report").exit_code == 0
    lines = _done_lines(caplog.text)  # quick files: only the last one is said
    assert len(lines) == 1 and "upscale: done 3/3 c.png" in lines[0] and "ETA" not in lines[0]
    monkeypatch.setattr(batch, "PROGRESS_EVERY", 0.0)  # every file
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="genapps"):
        assert cli("upscale", photo_dir, tmp_path / "out2", "-m", "bicubic", "-s", "2", "--no-report").exit_code == 0
    lines = _done_lines(caplog.text)
    assert len(lines) == 3 and all(f"done {i}/3" in line for i, line in enumerate(lines, 1))
    assert "a.png" in lines[0] and " s, ETA " in lines[0] and "ETA" not in lines[2]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="genapps"):
        assert cli("upscale", photo_dir, tmp_path / "out2", "-m", "bicubic", "-s", "2", "--no-report").exit_code == 0
    assert all(line.endswith("skipped") for line in _done_lines(caplog.text))


def test_progress_eta_counts_the_files_that_do_work(monkeypatch, caplog):
    import logging

    from genapps import batch

    clock = iter(range(0, 1000, 10))  # every call: 10 s later
    monkeypatch.setattr(batch.time, "perf_counter", lambda: next(clock))
    bar = batch.Progress(5, "up", work=3, tty=False)
    with caplog.at_level(logging.INFO, logger="genapps"):
        bar.update("a.png", 0.0, "skipped")
        bar.update("b.png", 60.0)
        bar.update("c.png", 30.0, "error")
    lines = _done_lines(caplog.text)
    assert lines[0].endswith("up: done 1/5 a.png skipped")  # no work yet: no ETA
    assert lines[1].endswith("up: done 2/5 b.png 60.0 s, ETA 2 min")  # 2 files to do, 60 s each
    assert lines[2].endswith("up: done 3/5 c.png failed, ETA 45 s")  # 1 file left, 45 s each
    assert batch._duration(3900) == "1 h 5 min"


def test_tile_progress_for_an_image_that_takes_a_while(monkeypatch, caplog):
    import logging
    import time

    import torch

    from genapps import batch, inference

    def slow(x):
        time.sleep(0.05)
        return x

    x = torch.rand(1, 3, 40, 40)
    monkeypatch.setattr(batch, "PROGRESS_EVERY", 0.0)
    with caplog.at_level(logging.INFO, logger="genapps"):
        inference.infer(torch.nn.Identity(), x, tile=8, overlap=4, batch_size=1, forward=slow)
    assert not _done_lines(caplog.text)  # 16 passes (4 x 4 tiles of 16 px) in ~0.8 s: below TILE_DELAY, nothing said
    monkeypatch.setattr(inference, "TILE_DELAY", 0.2)
    with caplog.at_level(logging.INFO, logger="genapps"):
        y = inference.infer(torch.nn.Identity(), x, tile=8, overlap=4, batch_size=1, forward=slow)
    lines = _done_lines(caplog.text)
    assert torch.allclose(y, x) and 6 < len(lines) < 16 and lines[-1].endswith("16 tiles: done 16/16 0.1 s")
    assert "ETA" in lines[0]


# ---------------------------------------------------------------- reports that cover the folder and compare


def _lr_hr(tmp_path, names=("a", "b", "c"), size=(64, 80)):
    """HR photos and their x2 LR versions (PIL bicubic), as SR benchmarks make them."""
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    hr.mkdir()
    lr.mkdir()
    for i, n in enumerate(names):
        im = Image.fromarray(photo(size, seed=i))
        im.save(hr / f"{n}.png")
        im.resize((size[1] // 2, size[0] // 2), Image.BICUBIC).save(lr / f"{n}.png")
    return lr, hr


def test_a_partial_rerun_reports_every_output_of_the_folder(cli, tmp_path):
    from tests.test_report_html import Page, check_images

    lr, hr = _lr_hr(tmp_path)
    out = tmp_path / "out"
    args = ("upscale", lr, out, "-m", "bicubic", "-s", "2", "--reference", hr)
    assert cli(*args).exit_code == 0
    Image.fromarray(photo((32, 40), seed=9)).save(lr / "b.png")  # one input changed
    again = cli(*args)
    assert again.exit_code == 0 and "1 ok, 2 skipped" in again.output
    page = Page((out / "report.html").read_text())
    check_images(page)
    assert "Input | output | reference (3 of 3; 1 made by this run, 2 resumed)" in page.headings
    assert len(page.body_rows("per-image")) == 3
    doc = json.loads((out / "report.json").read_text())
    stage = doc["stages"][0]
    assert stage["stats"]["metrics"]["psnr_y"]["n"] == 3  # the means cover the folder, not the one redone
    assert (stage["stats"]["ok"], stage["stats"]["skipped"]) == (1, 2)  # the counts say what this run did
    # a baseline: the input bicubic-resized by PIL's antialiased resize, measured like the output
    assert stage["stats"]["metrics"]["baseline_psnr_y"]["n"] == 3
    assert stage["metric_labels"]["psnr_y"] == "PSNR (Y) dB"
    assert stage["metric_labels"]["baseline_psnr_y"] == "baseline PSNR (Y) dB"
    heads = [c["text"] for c in page.tables["per-image"]["rows"][0]]
    assert heads[1] == "upscalePSNR (Y) dB" and heads[2] == "upscalebaseline PSNR (Y) dB"
    assert [c["stage"] for c in doc["per_image"]["baseline_columns"]] == ["upscale"]
    assert all(row["baselines"][0] is not None for row in doc["per_image"]["rows"])
    # one file into the same folder: the folder's report still shows its other outputs
    single = cli("upscale", lr / "a.png", out, "-m", "bicubic", "-s", "2", "--reference", hr)
    assert single.exit_code == 0 and "0 ok, 1 skipped" in single.output
    page = Page((out / "report.html").read_text())
    assert "Input | output | reference (3 of 3; 1 resumed, 2 from earlier runs)" in page.headings
    doc = json.loads((out / "report.json").read_text())
    assert sorted(Path(p).name for p in doc["stages"][0]["earlier_outputs"]) == ["b.png", "c.png"]


def test_every_sample_is_in_the_report(cli, tmp_path):
    from tests.test_report_html import Page, check_images

    (tmp_path / "in").mkdir()
    Image.fromarray(photo((48, 48), seed=1)).save(tmp_path / "in" / "x.png")
    mask = np.zeros((48, 48), np.uint8)
    mask[16:30, 12:36] = 255
    Image.fromarray(mask).save(tmp_path / "hole.png")
    result = cli("inpaint", tmp_path / "in", tmp_path / "out", "--masks", tmp_path / "hole.png", "--samples", "3")
    assert result.exit_code == 0, result.output
    page = Page((tmp_path / "out" / "report.html").read_text())
    check_images(page)
    assert "Input | output (all 3 samples) | mask (1 of 1)" in page.headings
    assert [c.split(":")[0] for c in page.captions[:5]] == ["input", "output s0", "output s1", "output s2", "mask"]
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    [(first, samples)] = doc["stages"][0]["samples"].items()
    assert first.endswith("x_s0.png") and [Path(p).name for p in samples] == ["x_s0.png", "x_s1.png", "x_s2.png"]


def test_a_pipeline_report_names_colour_spaces_and_follows_each_image(cli, tmp_path):
    from tests.test_report_html import Page, check_images

    _, hr = _lr_hr(tmp_path, size=(96, 96))
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"""name: compare
input: {hr}
output: {tmp_path / 'run'}
stages:
  - name: lr
    task: downscale
    options: {{scale: 2}}
  - name: sr
    task: upscale
    options: {{model: bicubic, scale: 2, reference: {hr}}}
  - name: clean
    task: translate
    options: {{model: restore, reference: {hr}}}
  - name: eval
    task: evaluate
    options: {{reference: {hr}, y_channel: true, crop_border: 2}}
""")
    result = cli("run", yaml)
    assert result.exit_code == 0, result.output
    page = Page((tmp_path / "run" / "report.html").read_text())
    check_images(page)
    heads = [c["text"] for c in page.tables["grid compare"]["rows"][0]]
    assert "PSNR (Y) dB" in heads and "PSNR dB (RGB)" in heads and "PSNR dB (Y)" in heads  # never one column
    rows = {r[0]["text"]: r for r in page.body_rows("grid compare")}
    sub = [c["text"] for c in page.tables["grid compare"]["rows"][1]]
    y_col = heads.index("PSNR (Y) dB") - 2  # the rowspan'd stage/task cells come first
    assert sub[3 * y_col: 3 * y_col + 3] == ["mean", "median", "baseline"]
    assert rows["clean"][2 + 3 * y_col]["text"] == ""  # RGB PSNR is not under the Y header
    per = json.loads((tmp_path / "run" / "report.json").read_text())["per_image"]
    assert [(c["stage"], c["space"]) for c in per["columns"]] == [("sr", "Y"), ("clean", "RGB"), ("eval", "Y")]
    assert per["stages"] == ["lr", "sr", "clean", "eval"]
    assert all(row["status"] == ["ok", "ok", "ok", "ok"] for row in per["rows"])
    assert "Through the stages" in page.headings
    through = [c for c in page.captions if c.split(" ·")[0] in ("input", "lr", "sr", "clean", "eval", "reference")]
    assert [c.split(" ·")[0] for c in through[:6]] == ["input", "lr", "sr", "clean", "eval", "reference"]
    assert any(c.startswith("clean · PSNR dB (RGB) ") for c in page.captions)


# ---------------------------------------------------------------- cheap "already done" checks


def test_a_rerun_hashes_only_files_whose_size_or_mtime_changed(cli, photo_dir, tmp_path, monkeypatch):
    import os
    import time

    from genapps import io

    old = time.time() - 3600
    for p in photo_dir.rglob("*.*"):
        os.utime(p, (old, old))  # inputs made an hour ago
    out = tmp_path / "out"
    args = ("upscale", photo_dir, out, "-m", "bicubic", "-s", "2", "--no-report")
    assert cli(*args).exit_code == 0
    hashed = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    again = cli(*args)
    assert again.exit_code == 0 and "0 ok, 3 skipped" in again.output and hashed == []  # nothing hashed
    os.utime(out / "a.png")  # touched, the same bytes: hashed once, kept, and its new mtime recorded
    again = cli(*args)
    assert "0 ok, 3 skipped" in again.output and hashed == ["a.png"]
    hashed.clear()
    assert "0 ok, 3 skipped" in cli(*args).output and hashed == []
    # an input rewritten (other bytes, a new mtime): hashed, and its output redone
    Image.fromarray(photo(seed=7)).save(photo_dir / "a.png")
    assert "1 ok, 2 skipped" in cli(*args).output


def test_an_input_modified_just_before_its_output_is_always_hashed(cli, tmp_path, monkeypatch):
    from genapps import io

    (tmp_path / "in").mkdir()
    Image.fromarray(photo(seed=1)).save(tmp_path / "in" / "x.png")  # written now: "racy"
    args = ("upscale", tmp_path / "in", tmp_path / "out", "-m", "bicubic", "-s", "2", "--no-report")
    assert cli(*args).exit_code == 0
    hashed = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    assert "0 ok, 1 skipped" in cli(*args).output and hashed == ["x.png"]
    entry = json.loads((tmp_path / "out" / ".genapps-manifest.jsonl").read_text().splitlines()[0])
    assert {"mtime_ns", "input_stat", "sha256", "input_sha256"} <= set(entry)
