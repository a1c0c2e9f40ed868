"""Daily use through the CLI (issue 18): outputs where the user said, packaging, conventions."""

import json
import logging

import numpy as np
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
