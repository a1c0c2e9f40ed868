"""Daily use through the CLI (issue 18): outputs where the user said, packaging, conventions."""

import ast
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import photo


def test_one_image_to_a_named_file_beside_it_resumes(cli, photo_dir):
    src, dest = photo_dir / "a.png", photo_dir / "a_x2.png"
    result = cli("upscale", src, dest, "-m", "bicubic", "-s", "2")
    assert result.exit_code == 0, result.output
    assert dest.is_file() and Image.open(dest).size == (128, 96)
    assert not (photo_dir / "report.json").exists() and "report:" not in result.output  # no report by default
    manifest = [json.loads(line) for line in (photo_dir / ".genapps-manifest.jsonl").read_text().splitlines()]
    assert [m["output"] for m in manifest] == ["a_x2.png"]
    again = cli("upscale", src, dest, "-m", "bicubic", "-s", "2")
    assert again.exit_code == 0 and "0 ok, 1 skipped" in again.output
    other = cli("upscale", src, dest, "-m", "bicubic", "-s", "3")  # other settings: refused, not silently kept
    assert other.exit_code == 2 and "--overwrite" in other.output
    same = cli("upscale", src, src, "-m", "bicubic")
    assert same.exit_code == 2 and "is the input file" in same.output


def test_one_image_to_a_named_file_is_shared_by_the_tasks(cli, photo_dir, tmp_path):
    mask = np.zeros((48, 64), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "hole.png")
    dest = tmp_path / "out" / "filled.jpg"
    result = cli("inpaint", photo_dir / "b.jpg", dest, "--masks", tmp_path / "hole.png", "--method", "telea",
                 "--report", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    assert Image.open(dest).format == "JPEG" and (tmp_path / "rep" / "report.html").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".genapps-manifest.jsonl", "filled.jpg"]


def test_a_folder_into_an_image_name_is_warned(cli, photo_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        result = cli("upscale", photo_dir, tmp_path / "out.png", "-m", "bicubic", "-s", "2", "--no-report")
    assert result.exit_code == 0 and (tmp_path / "out.png" / "a.png").is_file()
    assert "is a folder of that name: INPUT is a folder" in caplog.text


def test_report_folder_and_no_report(cli, photo_dir, tmp_path):
    result = cli("upscale", photo_dir, tmp_path / "out", "-m", "bicubic", "-s", "2", "--report", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "report.html").is_file() and f"report: {tmp_path / 'rep'}" in result.output
    assert not (tmp_path / "out" / "report.json").exists() and (tmp_path / "out" / "sub" / "c.png").is_file()
    result = cli("upscale", photo_dir, tmp_path / "out2", "-m", "bicubic", "-s", "2", "--no-report")
    assert result.exit_code == 0 and "report:" not in result.output
    assert not (tmp_path / "out2" / "report.json").exists() and (tmp_path / "out2" / "a.png").is_file()
    result = cli("upscale", photo_dir, tmp_path / "out3", "-m", "bicubic", "-s", "2")  # default: OUTPUT
    assert (tmp_path / "out3" / "report.json").is_file()


def test_evaluate_never_writes_into_its_inputs_by_default(cli, tmp_path, monkeypatch):
    for folder, seed in (("pred", 1), ("ref", 0)):
        (tmp_path / folder).mkdir()
        Image.fromarray(photo(seed=seed)).save(tmp_path / folder / "a.png")
    monkeypatch.chdir(tmp_path)
    first = cli("evaluate", "pred", "ref")
    second = cli("evaluate", "pred", "ref")
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.png"]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(r.name.startswith("evaluate-") and (r / "report.json").is_file() for r in runs)
    assert f"report: {runs[0].relative_to(tmp_path)}" in first.output + second.output
    assert cli("evaluate", "pred", "ref", "--no-report").exit_code == 0 and len(list((tmp_path / "runs").iterdir())) == 2
    assert cli("evaluate", "pred", "ref", "--report", "pred").exit_code == 0  # asked: allowed
    assert (tmp_path / "pred" / "report.json").is_file()


def test_empty_folders_and_unsupported_files_are_named(cli, tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    result = cli("upscale", tmp_path / "empty", tmp_path / "o1", "-m", "bicubic")
    assert result.exit_code == 2 and "the folder is empty" in result.output
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("x")
    result = cli("upscale", tmp_path / "text", tmp_path / "o2", "-m", "bicubic")
    assert result.exit_code == 2 and "found only 1 .txt" in result.output and not (tmp_path / "o2").exists()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    frames = [Image.fromarray(photo((16, 20), seed=s)).convert("P") for s in range(2)]
    frames[0].save(mixed / "anim.gif", save_all=True, append_images=frames[1:])
    for name in ("a.txt", "b.txt", "c.xcf"):
        (mixed / name).write_text("x")
    with caplog.at_level(logging.WARNING):
        result = cli("upscale", mixed, tmp_path / "o3", "-m", "bicubic", "-s", "2")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "o3" / "anim.png").size == (40, 32)  # GIF read (first frame), written as PNG
    warned = caplog.text
    assert "skipped 2 .txt, 1 .xcf" in warned and "only the first is used" in warned


# ---------------------------------------------------------------- packaging

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel as `pip wheel .` builds it (from a copy of the checkout's tracked layout), unpacked."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("genapps", "pipelines", "data"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.state.pt"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True)
    path = next(out.glob("genapps-*.whl"))
    site = out / "site"
    with zipfile.ZipFile(path) as z:
        z.extractall(site)
    return path, site


def test_demo_ships_in_the_wheel_and_is_found_there(wheel, tmp_path):
    path, site = wheel
    code = ("import genapps.pipeline as c; from genapps.pipeline import load_pipeline; p = c.demo_pipeline(); "
            "print(c.__file__); print(p); load_pipeline(p, out='o')")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr
    cli_file, yaml = map(Path, run.stdout.split())
    assert cli_file.is_relative_to(site) and yaml == site / "genapps" / "demo" / "pipelines" / "demo.yaml"
    assert len(list((site / "genapps" / "demo" / "data" / "photos").glob("*.png"))) >= 4  # the YAML's ../data
    size = sum(p.stat().st_size for p in (site / "genapps" / "demo").rglob("*") if p.is_file())
    assert size < 5e6


def test_demo_without_its_files_is_one_clear_line(cli, tmp_path, monkeypatch):
    import genapps.pipeline

    monkeypatch.setattr(genapps.pipeline, "__file__", str(tmp_path / "site" / "genapps" / "pipeline.py"))
    result = cli("demo", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "the demo files are not installed" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_what_is_imported_is_declared_and_licensed(wheel):
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*meta["dependencies"], *(d for extra in meta["optional-dependencies"].values() for d in extra)]
    names = {re.split(r"[<>=!~\[; ]", d)[0].lower().replace("_", "-") for d in declared}
    torch_spec = next(d for d in meta["dependencies"] if d.startswith("torch") and not d.startswith("torchvision"))
    assert "<" not in torch_spec and "opencv-python-headless" in names
    dists = importlib.metadata.packages_distributions()
    imported = set()
    for file in (ROOT / "genapps").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"genapps"}
    undeclared = {m: dists.get(m) for m in third_party
                  if not {d.lower().replace("_", "-") for d in dists.get(m, [m])} & names}
    assert not undeclared
    assert meta["license"] == {"text": "MIT"} and "MIT License" in (ROOT / "LICENSE").read_text()
    with zipfile.ZipFile(wheel[0]) as z:
        assert any(n.endswith("licenses/LICENSE") for n in z.namelist())


def test_every_weight_card_says_its_license_and_provenance(cli, photo_dir, tmp_path):
    cards = sorted((ROOT / "genapps" / "weights").glob("*.json"))
    assert cards
    for card in cards:
        data = json.loads(card.read_text())
        assert data.get("license") and data.get("provenance"), card.name
    out = tmp_path / "mine.safetensors"
    result = cli("train", "sr", "--data", photo_dir, "--out", out, "--steps", "2", "--scale", "2", "--channels", "4",
                 "--blocks", "1", "--batch-size", "2", "--patch", "8")
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["license"] == "MIT" and str(photo_dir) in card["provenance"]


# ---------------------------------------------------------------- conventions


@pytest.fixture
def genapps_log_level():
    """Commands set the genapps logger's level; give the next test the default back."""
    yield
    logging.getLogger("genapps").setLevel(logging.INFO)


def test_verbosity_flags_also_after_the_command(cli, photo_dir, tmp_path, caplog, genapps_log_level):
    src = photo_dir / "a.png"
    with caplog.at_level(logging.DEBUG):
        assert cli("upscale", src, tmp_path / "1.png", "-s", "3", "-m", "sr-x4").exit_code == 0  # resized to x3
        assert "resized to x3" in caplog.text
        caplog.clear()
        assert cli("upscale", src, tmp_path / "2.png", "-s", "3", "-q").exit_code == 0
        assert not [r for r in caplog.records if r.name.startswith("genapps") and r.levelno < logging.WARNING]
        assert cli("upscale", src, tmp_path / "3.png", "-s", "3", "--verbose").exit_code == 0
        assert logging.getLogger("genapps").getEffectiveLevel() == logging.DEBUG
    assert "-q, --quiet" in cli("evaluate", "--help").output


def test_cpu_warning_names_the_real_flag(cli, photo_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        result = cli("upscale", photo_dir / "a.png", tmp_path / "o.png", "-m", "bicubic", "--half", "--device", "cpu")
    assert result.exit_code == 0 and "--half ignored on cpu" in caplog.text and "--fp16" not in caplog.text


def test_evaluate_size_mismatch_names_the_file(cli, tmp_path):
    for folder, size in (("pred", (16, 16)), ("ref", (20, 24))):
        (tmp_path / folder).mkdir()
        Image.fromarray(photo(size)).save(tmp_path / folder / "a.png")
    result = cli("evaluate", tmp_path / "pred", tmp_path / "ref", "--no-report")
    failed = [line for line in result.output.splitlines() if "failed:" in line]
    assert result.exit_code == 1 and len(failed) == 1
    assert str(tmp_path / "pred" / "a.png") in failed[0] and "differ in size" in failed[0]


def test_progress_over_the_tiles_of_one_large_image(cli, photo_dir, tmp_path, monkeypatch):
    import genapps.inference as up

    bars = []
    monkeypatch.setattr(up, "progress", lambda it, total, desc: bars.append((total, desc)) or it)
    assert cli("upscale", photo_dir / "a.png", tmp_path / "t.png", "-m", "bicubic", "-s", "2", "-t", "8",
               "--tile-overlap", "8").exit_code == 0
    assert len(bars) == 1 and bars[0][1].endswith(" tiles") and int(bars[0][1].split()[0]) >= up.TILE_PROGRESS
    bars.clear()
    assert cli("upscale", photo_dir / "a.png", tmp_path / "w.png", "-m", "bicubic", "-s", "2").exit_code == 0
    assert not bars  # one whole-image pass: no bar


def test_real_esrgan_spellings_are_understood(cli, photo_dir, tmp_path):
    out = tmp_path / "r.png"
    result = cli("upscale", "-i", photo_dir / "a.png", "-o", out, "-n", "bicubic", "-s", "2", "--tile_pad", "10",
                 "-t", "32", "--fp32", "--ext", "auto", "-g", "-1")
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (128, 96)
    folder = cli("upscale", "--input", photo_dir, "--output", tmp_path / "f", "--model_name", "bicubic", "-s", "2",
                 "--fail_fast", "--no-report")
    assert folder.exit_code == 0 and (tmp_path / "f" / "sub" / "c.png").is_file()
    face = cli("upscale", photo_dir, tmp_path / "g", "--face_enhance")
    assert face.exit_code == 2 and "--face_enhance (face enhancement (GFPGAN) is not part of genapps)" in face.output
    ev = cli("evaluate", "-i", photo_dir, photo_dir)
    assert ev.exit_code == 2 and "takes the folders or files as arguments" in ev.output
    run = cli("run", "x.yaml", "--output", tmp_path)  # click's own suggestion stays where it has one
    assert run.exit_code == 2 and "--out" in run.output and "as arguments" not in run.output
