"""Issue 12, the shared folder mechanisms: nothing written outside OUT, nothing stale, nothing
silently dropped, one line instead of a traceback (through the CLI)."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import photo


def one_error_line(result):
    """The CLI's one-line user error: exit 2, a single 'error: ...' line, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def pipeline(tmp_path, stages, extra=""):
    (tmp_path / "in").mkdir(parents=True, exist_ok=True)
    if not list((tmp_path / "in").iterdir()):
        Image.fromarray(photo((16, 16))).save(tmp_path / "in" / "a.png")
    path = tmp_path / "p.yaml"
    path.write_text(f"input: in\n{extra}stages:\n{stages}")
    return path


# ---------------------------------------------------------------- 1. stage names are one folder name


@pytest.mark.parametrize("name", ["../../victim", "/tmp/abs", ".", "..", "a/b", "a\\\\b", ".hidden",
                                  "report.html", "REPORT.json"])
def test_stage_name_must_be_one_plain_folder_name(tmp_path, cli, name):
    path = pipeline(tmp_path / "w", f"  - {{name: '{name}', task: downscale, options: {{scale: 2}}}}\n")
    out = tmp_path / "w" / "out"
    message = one_error_line(cli("run", path, "--out", out))
    assert "one plain folder name" in message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["w"]
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["in", "p.yaml"]


def test_pipeline_name_is_checked_when_it_names_the_output(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = pipeline(tmp_path, "  - {task: downscale, options: {scale: 2}}\n", extra="name: ../escape\n")
    assert "pipeline name" in one_error_line(cli("run", path))
    assert not (tmp_path.parent / "escape").exists()


# ---------------------------------------------------------------- 10. --set values, duplicate keys


@pytest.mark.parametrize("value", ["[1", "!!python/object/apply:os.system ['echo pwned']", "{a: 1, a: 2}"])
def test_bad_set_values_are_one_line(tmp_path, cli, value):
    path = pipeline(tmp_path, "  - {name: lr, task: downscale, options: {scale: 2}}\n")
    message = one_error_line(cli("run", path, "--out", tmp_path / "out", "--set", f"lr.scale={value}"))
    assert "--set" in message and not (tmp_path / "out").exists()


def test_duplicate_yaml_keys_are_rejected(tmp_path, cli):
    path = pipeline(tmp_path, "  - name: lr\n    task: downscale\n    options: {scale: 2}\n    options: {scale: 4}\n")
    message = one_error_line(cli("run", path, "--out", tmp_path / "out"))
    assert "duplicate key 'options'" in message and "line 6" in message


# ---------------------------------------------------------------- helpers for the batch tests


def flat(path, value, size=(16, 16), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path, format=fmt)


def mean(path):
    return float(np.asarray(Image.open(path).convert("L")).mean())


def upscale(cli, src, out, *flags):
    return cli("upscale", src, out, "-m", "bicubic", "-s", "2", *flags)


def report(folder):
    def strict(token):
        raise ValueError(f"not strict JSON: {token}")
    return json.loads((folder / "report.json").read_text(), parse_constant=strict)


def manifest(out):
    return {row["output"]: row for row in map(json.loads, (out / ".genapps-manifest.jsonl").read_text().splitlines())}


# ---------------------------------------------------------------- 2. same stem, two files


def test_same_stem_inputs_keep_their_extension(tmp_path, cli):
    flat(tmp_path / "in" / "a.png", 20)
    flat(tmp_path / "in" / "a.jpg", 230)
    flat(tmp_path / "in" / "b.png", 120)
    out = tmp_path / "out"
    result = upscale(cli, tmp_path / "in", out, "--ext", "png")
    assert result.exit_code == 0 and "3 ok, 0 skipped" in result.output, result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["a_jpg.png", "a_png.png", "b.png"]
    assert mean(out / "a_png.png") < 30 and mean(out / "a_jpg.png") > 220
    # without --ext the names differ already and nothing is renamed
    assert upscale(cli, tmp_path / "in", tmp_path / "keep").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "keep").glob("*.*g")) == ["a.jpg", "a.png", "b.png"]


def test_names_that_still_collide_are_refused_before_work(tmp_path, cli):
    flat(tmp_path / "in" / "a.png", 20)
    flat(tmp_path / "in" / "a.jpg", 230)
    flat(tmp_path / "in" / "a_jpg.png", 120)
    message = one_error_line(upscale(cli, tmp_path / "in", tmp_path / "out", "--ext", "png"))
    assert "a.jpg" in message and "a_jpg.png" in message and "rename one" in message
    assert not (tmp_path / "out").exists()


def test_evaluate_lists_every_file_it_could_not_pair(tmp_path, cli):
    for name, value in [("a.png", 10), ("a.jpg", 200), ("b.png", 100), ("c.png", 50)]:
        flat(tmp_path / "pred" / name, value)
    for name, value in [("a.png", 12), ("b.jpg", 104), ("d.png", 60)]:
        flat(tmp_path / "ref" / name, value)
    result = cli("evaluate", tmp_path / "pred", tmp_path / "ref", "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    stage = report(tmp_path / "rep")["stages"][0]
    pairs = {(r["output"].rsplit("/", 1)[1], r["input"].rsplit("/", 1)[1]) for r in stage["records"]}
    assert pairs == {("a.png", "a.png"), ("b.png", "b.jpg")}  # a.jpg is not measured against a.png
    unpaired = {u["file"].rsplit("/", 2)[1] + "/" + u["file"].rsplit("/", 1)[1] for u in stage["summary"]["unpaired"]}
    assert unpaired == {"pred/a.jpg", "pred/c.png", "ref/d.png"}
    for name in unpaired:
        assert f"not paired: {tmp_path / name}" in result.output


def test_reference_pairs_the_renamed_outputs_with_their_sources(tmp_path, cli):
    for name, value in [("a.png", 20), ("a.jpg", 230)]:
        flat(tmp_path / "hr" / name, value, (32, 32))
        flat(tmp_path / "in" / name, value)
    out = tmp_path / "out"
    assert upscale(cli, tmp_path / "in", out, "--ext", "png", "--reference", tmp_path / "hr").exit_code == 0
    records = report(out)["stages"][0]["records"]
    assert all(r["metrics"]["psnr_y"] == "inf" or r["metrics"]["psnr_y"] > 40 for r in records)  # its own HR
    result = cli("evaluate", out, tmp_path / "hr", "--out", tmp_path / "rep")
    assert result.exit_code == 0 and "not paired" not in result.output
    pairs = {(r["output"].rsplit("/", 1)[1], r["input"].rsplit("/", 1)[1])
             for r in report(tmp_path / "rep")["stages"][0]["records"]}
    assert pairs == {("a_png.png", "a.png"), ("a_jpg.png", "a.jpg")}


# ---------------------------------------------------------------- 3. stale outputs on resume


def test_resume_refuses_outputs_made_with_other_settings(tmp_path, cli):
    flat(tmp_path / "in" / "a.png", 90)
    flat(tmp_path / "in" / "sub" / "b.png", 150)
    out = tmp_path / "out"
    assert upscale(cli, tmp_path / "in", out).exit_code == 0
    before = (out / "a.png").read_bytes()
    message = one_error_line(cli("upscale", tmp_path / "in", out, "-m", "bicubic", "-s", "4"))
    assert "2 existing output(s)" in message and "scale 2 -> 4" in message and "--overwrite" in message
    assert (out / "a.png").read_bytes() == before
    message = one_error_line(cli("upscale", tmp_path / "in", out, "-m", "sr-x2", "-s", "2"))
    assert "arch bicubic -> " in message and "model_sha256 bicubic -> " in message
    result = cli("upscale", tmp_path / "in", out, "-m", "bicubic", "-s", "4", "--overwrite")
    assert result.exit_code == 0 and "2 ok" in result.output
    assert Image.open(out / "a.png").size == (64, 64)
    entries = manifest(out)
    assert set(entries) == {"a.png", "sub/b.png"}
    import genapps
    from genapps import io

    entry = entries["sub/b.png"]
    assert entry["task"] == "upscale" and entry["genapps"] == genapps.__version__
    assert entry["fingerprint"]["scale"] == 4 and entry["fingerprint"]["model_sha256"] == "bicubic"
    assert entry["sha256"] == io.sha256_file(out / "sub" / "b.png") and entry["input"] == "sub/b.png"
    # the same settings resume
    assert "2 skipped" in cli("upscale", tmp_path / "in", out, "-m", "bicubic", "-s", "4").output


def test_resume_redoes_junk_truncated_missing_and_changed_outputs(tmp_path, cli):
    for i, name in enumerate(["a.png", "b.png", "c.png", "d.png", "e.png"]):
        flat(tmp_path / "in" / name, 40 * i + 10)
    out = tmp_path / "out"
    assert upscale(cli, tmp_path / "in", out).exit_code == 0
    good = (out / "e.png").read_bytes()
    (out / "a.png").write_bytes(b"")  # 0 bytes
    (out / "b.png").write_bytes(good[: len(good) // 2])  # truncated
    (out / "c.png").unlink()
    flat(tmp_path / "in" / "d.png", 250)  # the input changed
    (out / ".e.png.abcd_123.tmp").write_bytes(b"half")  # a killed run's temporary file
    (out / ".keep.tmp").write_bytes(b"not ours")
    (out / ".notes.txt.abcd_123.tmp").write_bytes(b"another program's temporary file")
    result = upscale(cli, tmp_path / "in", out)
    assert result.exit_code == 0 and "4 ok, 1 skipped" in result.output, result.output
    assert (out / "e.png").read_bytes() == good and mean(out / "d.png") > 240
    assert all(Image.open(out / n).size == (32, 32) for n in ["a.png", "b.png", "c.png"])
    assert not (out / ".e.png.abcd_123.tmp").exists()
    assert (out / ".keep.tmp").exists() and (out / ".notes.txt.abcd_123.tmp").exists()


def test_outputs_genapps_did_not_write_are_not_taken_as_done(tmp_path, cli):
    flat(tmp_path / "in" / "a.png", 90)
    flat(tmp_path / "out" / "a.png", 10, (32, 32))  # someone else's file under the output name
    message = one_error_line(upscale(cli, tmp_path / "in", tmp_path / "out"))
    assert "not in the manifest" in message
    assert mean(tmp_path / "out" / "a.png") == 10
    (tmp_path / "out" / "a.png").write_text("junk")  # junk without a manifest line: nothing to keep
    assert upscale(cli, tmp_path / "in", tmp_path / "out").exit_code == 0
    assert mean(tmp_path / "out" / "a.png") == pytest.approx(90, abs=1)


def test_manifest_covers_several_outputs_per_input(tmp_path):
    from genapps import io
    from genapps.batch import map_images

    flat(tmp_path / "in" / "a.png", 90)

    def two(image, src):
        return {"_s0": image, "_s1": io.LoadedImage(1 - image.color)}

    side = tmp_path / "masks" / "a.png"
    flat(side, 255)

    def run(**fp):
        return map_images(tmp_path / "in", tmp_path / "out", two, name="t", task="t", config={},
                          fingerprint=fp, pass_source=True, output_suffixes=("_s0", "_s1"),
                          extra_inputs=lambda src: [tmp_path / "masks" / src.name])

    assert [r.status for r in run(seed=0).records] == ["ok"]
    assert set(manifest(tmp_path / "out")) == {"a_s0.png", "a_s1.png"}
    assert [r.status for r in run(seed=0).records] == ["skipped"]
    (tmp_path / "out" / "a_s1.png").unlink()
    assert [r.status for r in run(seed=0).records] == ["ok"]
    flat(side, 0)  # the side input changed: redone
    assert [r.status for r in run(seed=0).records] == ["ok"]
    assert [r.status for r in run(seed=0).records] == ["skipped"]
    with pytest.raises(ValueError, match="seed 0 -> 1"):
        run(seed=1)


# ---------------------------------------------------------------- 6. write errors


def test_a_folder_at_an_output_path_is_a_per_file_error(tmp_path, cli):
    flat(tmp_path / "in" / "a.png", 90)
    flat(tmp_path / "in" / "b.png", 120)
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    result = upscale(cli, tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{tmp_path / 'out' / 'a.png'}: cannot write (Is a directory)" in result.output
    stage = report(tmp_path / "out")["stages"][0]
    assert [r["status"] for r in stage["records"]] == ["error", "ok"]
    assert Image.open(tmp_path / "out" / "b.png").size == (32, 32)


def test_disk_full_is_a_per_file_error_and_the_report_is_written(tmp_path, cli, monkeypatch):
    import errno

    from genapps import io

    write = io.write_image

    def full_for_b(path, *args, **kwargs):
        if path.name == "b.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(path, *args, **kwargs)

    monkeypatch.setattr(io, "write_image", full_for_b)
    for name in ["a.png", "b.png", "c.png"]:
        flat(tmp_path / "in" / name, 90)
    result = upscale(cli, tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 1 and "2 ok, 0 skipped, 1 failed" in result.output
    assert "b.png: cannot write (No space left on device)" in result.output
    assert [r["status"] for r in report(tmp_path / "out")["stages"][0]["records"]] == ["ok", "error", "ok"]


def test_a_report_that_cannot_be_written_is_one_line(tmp_path, cli, monkeypatch):
    import errno

    from genapps import report as report_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_module, "write_text", full)
    flat(tmp_path / "in" / "a.png", 90)
    result = upscale(cli, tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 ok" in result.output and "error: report not written" in result.output
    assert (tmp_path / "out" / "a.png").is_file()
    path = pipeline(tmp_path / "p", "  - {task: downscale, options: {scale: 2}}\n")
    result = cli("run", path, "--out", tmp_path / "p" / "out")
    assert result.exit_code == 1 and "error: report not written" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_subfolder_is_a_per_file_error(tmp_path, cli):
    flat(tmp_path / "in" / "a.png", 90)
    flat(tmp_path / "in" / "sub" / "b.png", 90)
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "sub").chmod(0o500)
    try:
        result = upscale(cli, tmp_path / "in", tmp_path / "out")
    finally:
        (tmp_path / "out" / "sub").chmod(0o700)
    assert result.exit_code == 1 and "Permission denied" in result.output and (tmp_path / "out" / "a.png").is_file()


def test_evaluate_checks_its_report_folder_before_the_work(tmp_path, cli):
    flat(tmp_path / "pred" / "a.png", 90)
    flat(tmp_path / "ref" / "a.png", 90)
    (tmp_path / "file").write_text("x")
    message = one_error_line(cli("evaluate", tmp_path / "pred", tmp_path / "ref", "--out", tmp_path / "file" / "rep"))
    assert "not writable" in message


# ---------------------------------------------------------------- minor


def test_an_empty_mask_is_not_measured_not_nan(tmp_path, cli):
    for name, value in [("a.png", 90), ("b.png", 120)]:
        flat(tmp_path / "pred" / name, value, (24, 24))
        flat(tmp_path / "ref" / name, value + 8, (24, 24))
    flat(tmp_path / "masks" / "a.png", 0, (24, 24))  # all black
    flat(tmp_path / "masks" / "b.png", 255, (24, 24))
    result = cli("evaluate", tmp_path / "pred", tmp_path / "ref", "--masks", tmp_path / "masks",
                 "--report", tmp_path / "pred")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"not measured: empty mask ({tmp_path / 'masks' / 'a.png'}" in result.output
    records = {r["output"].rsplit("/", 1)[1]: r for r in report(tmp_path / "pred")["stages"][0]["records"]}
    assert records["a.png"]["status"] == "error" and records["a.png"]["metrics"] == {}
    assert records["b.png"]["status"] == "ok" and records["b.png"]["metrics"]["psnr"] > 20


@pytest.mark.parametrize("case", ["mask size", "ssim size"])
def test_measuring_errors_name_the_file(tmp_path, cli, case):
    size = (24, 24) if case == "mask size" else (6, 6)
    flat(tmp_path / "pred" / "a.png", 90, size)
    flat(tmp_path / "ref" / "a.png", 98, size)
    flat(tmp_path / "masks" / "a.png", 255, (20, 20))
    flags = ("--masks", tmp_path / "masks") if case == "mask size" else ()
    result = cli("evaluate", tmp_path / "pred", tmp_path / "ref", *flags, "--no-report")
    assert result.exit_code == 1 and "Traceback" not in result.output
    failed = next(line for line in result.output.splitlines() if "failed:" in line)
    assert str(tmp_path / "pred" / "a.png") in failed
    assert ("masks/a.png is 20x20" if case == "mask size" else "SSIM needs images of at least") in failed


@pytest.mark.parametrize("model", ["missing.safetensors", "junk.safetensors"])
def test_no_empty_output_folder_when_the_model_fails_to_load(tmp_path, cli, model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flat(tmp_path / "in" / "a.png", 90)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    one_error_line(cli("upscale", "in", tmp_path / "new" / "out", "-m", model))
    assert not (tmp_path / "new").exists()


def test_an_input_folder_without_images_is_one_line_and_creates_nothing(tmp_path, cli):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    assert "no images in" in one_error_line(upscale(cli, tmp_path / "in", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_kill_between_manifest_line_and_rename_is_redone(tmp_path, cli, monkeypatch):
    """The manifest line is appended before the rename: a kill in between leaves a line without
    its file (redone next time), never a file without its line."""
    import os

    from genapps import io

    for name in ["a.png", "b.png", "c.png"]:
        flat(tmp_path / "in" / name, 90)
    replace = os.replace

    def killed_at_b(src, dst):
        if str(dst).endswith("b.png"):
            raise KeyboardInterrupt
        return replace(src, dst)

    monkeypatch.setattr(io.os, "replace", killed_at_b)
    assert upscale(cli, tmp_path / "in", tmp_path / "out").exit_code == 130
    monkeypatch.setattr(io.os, "replace", replace)
    assert set(manifest(tmp_path / "out")) == {"a.png", "b.png"} and not (tmp_path / "out" / "b.png").exists()
    assert not list((tmp_path / "out").glob(".*.tmp"))
    result = upscale(cli, tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 0 and "2 ok, 1 skipped" in result.output


def test_leftover_report_temp_files_are_removed(tmp_path, cli):
    flat(tmp_path / "pred" / "a.png", 90)
    flat(tmp_path / "ref" / "a.png", 92)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / ".report.json.k2j4_x9a.tmp").write_text("{half")
    assert cli("evaluate", tmp_path / "pred", tmp_path / "ref", "--out", tmp_path / "rep").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["report.html", "report.json"]
