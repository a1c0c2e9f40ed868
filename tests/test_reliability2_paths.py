"""Issue 25, part A: the guarantees hold against paths, links, concurrent runs and the tool's own
advice (through the CLI; a second process holds a lock where concurrency is the point).

Cases: 1 file:// URLs, 2 a stage named like the pipeline's input, 3 side folders equal to
OUTPUT, 4 symbolic links in OUTPUT, 5 inputs changed while processed, 7 the output lock,
8 shard reports of other runs, 11 `pairs IN IN`; and the tracebacks of YAML, `report merge`,
evaluate's default report folder.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import photo

ROOT = Path(__file__).resolve().parent.parent


def one_error_line(result):
    """The CLI's one-line user error: exit 2, a single 'error: ...' line, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def make_inputs(folder: Path, n: int = 3, size=(16, 16)) -> Path:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    names = ["a.png", "b.png", "sub/c.png", "d.png", "e.png", "f.png"][:n]
    for i, name in enumerate(names):
        Image.fromarray(photo(size, seed=i)).save(folder / name)
    return folder


def snapshot(folder: Path) -> dict:
    """{relative path: bytes} of every file under `folder` (links not followed)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def upscale(cli, src, out, *extra):
    return cli("upscale", src, out, "-m", "bicubic", "-s", "2", *extra)


# ---------------------------------------------------------------- 1. file:// URLs are local paths


def test_file_urls_name_local_folders_for_input_output_and_report(cli, tmp_path, monkeypatch):
    src = make_inputs(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    result = upscale(cli, src, f"file://{tmp_path / 'out'}")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "file:").exists()  # not ./file:/tmp/...
    assert sorted(snapshot(tmp_path / "out")) == [".genapps-done.json", ".genapps-manifest.jsonl", "a.png", "b.png",
                                                   "report.html", "report.json", "sub/c.png"]
    result = upscale(cli, f"file://{src}", f"file://localhost{tmp_path / 'out2'}", "--report",
                     f"file://{tmp_path / 'rep'}", "--reference", f"file://{src}")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out2" / "sub" / "c.png").is_file() and (tmp_path / "rep" / "report.json").is_file()
    assert "another host" in one_error_line(upscale(cli, src, "file://server/share/out"))
    assert "must not be the input folder" in one_error_line(upscale(cli, src, f"file://{src}"))
    (tmp_path / "p.yaml").write_text(f"input: file://{src}\noutput: file://{tmp_path / 'p'}\n"
                                     f"stages:\n  - {{task: downscale, options: {{scale: 2}}}}\n")
    assert cli("run", tmp_path / "p.yaml").exit_code == 0 and (tmp_path / "p" / "downscale" / "a.png").is_file()
    assert not (tmp_path / "file:").exists()


# ---------------------------------------------------------------- 2. a stage named like the pipeline's input


def test_a_stage_writing_into_the_pipeline_input_is_refused_at_load_whatever_resume_says(cli, tmp_path):
    photos = make_inputs(tmp_path / "photos")
    before = snapshot(photos)
    yaml = tmp_path / "p.yaml"
    yaml.write_text("input: photos\noutput: .\nstages:\n  - {name: photos, task: downscale, options: {scale: 2}}\n")
    for extra in ((), ("--set", "photos.resume=false")):
        message = one_error_line(cli("run", yaml, *extra))
        assert "stage 'photos'" in message and "pipeline's input folder" in message and "resume" not in message
        assert snapshot(photos) == before
    # a stage's reference (or any folder a stage reads) is never a stage folder either
    yaml.write_text("input: photos\nstages:\n  - {name: up, task: upscale, options: {model: bicubic, scale: 2, "
                    "reference: out/up}}\n")
    (tmp_path / "out" / "up").mkdir(parents=True)
    assert "stage 'up' reference" in one_error_line(cli("run", yaml, "--out", tmp_path / "out"))
    # a pipeline output inside its input: the stage folders would be read back as inputs
    yaml.write_text("input: photos\nstages:\n  - {name: lr, task: downscale, options: {scale: 2}}\n")
    assert "pipeline's input folder" in one_error_line(cli("run", yaml, "--out", photos / "runs"))
    assert snapshot(photos) == before


def test_the_conflict_advice_is_safe_to_follow(cli, tmp_path):
    """The advice of a settings conflict (--set STAGE.resume=false) only comes once the folders are
    apart, so following it overwrites outputs, never inputs."""
    photos = make_inputs(tmp_path / "photos")
    before = snapshot(photos)
    yaml = tmp_path / "p.yaml"
    yaml.write_text("input: photos\nstages:\n  - {name: lr, task: downscale, options: {scale: 2}}\n")
    assert cli("run", yaml, "--out", tmp_path / "out").exit_code == 0
    refused = one_error_line(cli("run", yaml, "--out", tmp_path / "out", "--set", "lr.scale=4"))
    assert "--set lr.resume=false" in refused
    assert cli("run", yaml, "--out", tmp_path / "out", "--set", "lr.scale=4", "--set", "lr.resume=false").exit_code == 0
    assert snapshot(photos) == before


# ---------------------------------------------------------------- 3. side folders equal to OUTPUT


def test_reference_and_masks_never_overlap_the_output_whatever_the_flags(cli, tmp_path):
    src = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert upscale(cli, src, out).exit_code == 0
    before = snapshot(out)
    for ref in (out, out / "sub", tmp_path):
        message = one_error_line(upscale(cli, src, out, "--reference", ref, "--overwrite"))
        assert "must not be the reference folder" in message
    assert snapshot(out) == before
    masks = tmp_path / "m"
    masks.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(masks / name)
    done = cli("inpaint", src, tmp_path / "filled", "--masks", masks, "--method", "telea", "--skip-missing-masks")
    assert done.exit_code == 0, done.output
    before = snapshot(tmp_path / "filled")
    for bad in (tmp_path / "filled", tmp_path / "filled" / "a.png"):
        message = one_error_line(cli("inpaint", src, tmp_path / "filled", "--masks", bad, "--method", "telea",
                                     "--overwrite"))
        assert "masks" in message
    assert snapshot(tmp_path / "filled") == before
    # inside the input folder stays allowed (outputs are left out of the listing)
    assert upscale(cli, src, src / "up").exit_code == 0
    assert " 0 ok, 3 skipped" in upscale(cli, src, src / "up").output


# ---------------------------------------------------------------- 4. symbolic links in OUTPUT


def test_a_linked_subfolder_or_manifest_never_leads_outside_the_output(cli, tmp_path):
    src = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert upscale(cli, src, out).exit_code == 0
    before = snapshot(src)
    import shutil

    shutil.rmtree(out / "sub")
    (out / "sub").symlink_to(src / "sub", target_is_directory=True)  # a link into the input tree
    for extra in ((), ("--overwrite",)):
        message = one_error_line(upscale(cli, src, out, *extra))
        assert "outside the output folder" in message and "sub/c.png" in message
    assert snapshot(src) == before
    (out / "sub").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / ".genapps-manifest.jsonl").unlink()
    (out / ".genapps-manifest.jsonl").symlink_to(elsewhere / "m.jsonl")
    assert "manifest is a symbolic link" in one_error_line(upscale(cli, src, out, "--overwrite"))
    assert list(elsewhere.iterdir()) == []
    (out / ".genapps-manifest.jsonl").unlink()
    # a linked output file is replaced by the new output, never written through
    (out / "a.png").unlink()
    (out / "a.png").symlink_to(src / "a.png")
    assert upscale(cli, src, out, "--overwrite").exit_code == 0
    assert not (out / "a.png").is_symlink() and snapshot(src) == before


def test_a_link_made_during_the_run_is_that_files_error(cli, tmp_path, monkeypatch):
    from genapps.tasks.upscale import task

    src = make_inputs(tmp_path / "in")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = task.upscale_image

    def linking(*args):
        if not (out / "sub").exists():
            (out / "sub").symlink_to(elsewhere, target_is_directory=True)
        return real(*args)

    monkeypatch.setattr(task, "upscale_image", linking)
    result = upscale(cli, src, out)
    assert result.exit_code == 1 and "2 ok, 0 skipped, 1 failed" in result.output
    assert "outside the output folder" in result.output and list(elsewhere.iterdir()) == []


def test_linked_report_parts_are_refused(cli, tmp_path):
    src = make_inputs(tmp_path / "in")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".genapps-parts").symlink_to(elsewhere, target_is_directory=True)
    result = upscale(cli, src, tmp_path / "out", "--shard", "0/2")
    assert result.exit_code == 1 and "error: report not written" in result.output
    assert "outside the output folder" in result.output and list(elsewhere.iterdir()) == []


# ---------------------------------------------------------------- 5. inputs changed while processed


def test_an_input_replaced_while_processed_is_not_vouched_for(cli, tmp_path, monkeypatch):
    from genapps.tasks.upscale import task

    src = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    real = task.upscale_image
    replaced = []

    def replacing(model, image, *args):
        if not replaced:  # a.png: someone saves a new version while it is processed
            Image.fromarray(photo((16, 16), seed=9)).save(src / "a.png")
            replaced.append(True)
        return real(model, image, *args)

    monkeypatch.setattr(task, "upscale_image", replacing)
    result = upscale(cli, src, out)
    assert result.exit_code == 1 and "2 ok, 0 skipped, 1 failed" in result.output
    assert "changed while it was processed" in result.output and not (out / "a.png").exists()
    monkeypatch.setattr(task, "upscale_image", real)
    again = upscale(cli, src, out)  # redone from the new input, the others skipped
    assert again.exit_code == 0 and "1 ok, 2 skipped" in again.output
    assert upscale(cli, src, tmp_path / "fresh").exit_code == 0
    assert (out / "a.png").read_bytes() == (tmp_path / "fresh" / "a.png").read_bytes()


def test_a_mask_edited_while_processed_is_not_vouched_for(cli, tmp_path, monkeypatch):
    from genapps.tasks.inpaint import task

    src = make_inputs(tmp_path / "in")
    masks = tmp_path / "masks"
    (masks / "sub").mkdir(parents=True)
    hole = np.zeros((16, 16), np.uint8)
    hole[4:9, 4:9] = 255
    for name in ("a.png", "b.png", "sub/c.png"):
        Image.fromarray(hole).save(masks / name)
    real = task.inpaint_image
    edited = []

    def editing(image, mask, cfg, *args):
        if not edited:
            Image.fromarray(255 - hole).save(masks / "a.png")
            edited.append(True)
        return real(image, mask, cfg, *args)

    monkeypatch.setattr(task, "inpaint_image", editing)
    args = ("inpaint", src, tmp_path / "out", "--masks", masks, "--method", "telea")
    result = cli(*args)
    assert result.exit_code == 1 and "changed while it was processed" in result.output
    monkeypatch.setattr(task, "inpaint_image", real)
    again = cli(*args)
    assert again.exit_code == 0 and "1 ok, 2 skipped" in again.output


# ---------------------------------------------------------------- 7. one run per output folder


def hold_lock(folder: Path, shard: str = "") -> subprocess.Popen:
    """A child process holding `folder`'s lock (of shard "I/N" if given) until it is killed."""
    code = ("import sys, time\nfrom genapps import paths\nfrom genapps.distributed import parse_shard\n"
            f"shard = parse_shard({shard!r}) if {shard!r} else None\n"
            f"with paths.output_lock({str(folder)!r}, shard):\n"
            "    print('locked', flush=True)\n    time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_run_on_the_same_output_is_one_line_naming_the_first(cli, tmp_path, caplog):
    src = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    child = hold_lock(out)
    try:
        message = one_error_line(upscale(cli, src, out))
        assert f"PID {child.pid}, started " in message and "in use by another genapps run" in message
        assert not (out / "a.png").exists()
        yaml = tmp_path / "p.yaml"
        yaml.write_text("stages:\n  - {task: downscale, options: {scale: 2}}\n")
        assert f"PID {child.pid}" in one_error_line(cli("run", yaml, "--input", src, "--out", out))
    finally:
        child.kill()  # dies holding it: the lock file stays, the kernel frees the lock
        child.wait()
    assert json.loads((out / ".genapps-lock").read_text())["pid"] == child.pid
    result = upscale(cli, src, out)
    assert result.exit_code == 0 and "3 ok" in result.output
    assert f"taking over the lock of genapps run PID {child.pid}" in caplog.text
    assert not (out / ".genapps-lock").exists()  # released on exit


def test_the_lock_is_released_on_errors_and_interrupts(cli, tmp_path, monkeypatch):
    from genapps.tasks.upscale import task

    src = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert upscale(cli, src, out).exit_code == 0
    assert "not made with these settings" in one_error_line(cli("upscale", src, out, "-m", "bicubic", "-s", "4"))
    assert not (out / ".genapps-lock").exists()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(task, "upscale_image", interrupted)
    assert upscale(cli, src, out, "--overwrite").exit_code == 130
    assert not (out / ".genapps-lock").exists()
    monkeypatch.undo()
    assert upscale(cli, src, out, "--overwrite").exit_code == 0
    assert not (tmp_path / "new").exists()
    one_error_line(cli("upscale", src, tmp_path / "new", "-m", "no-such-model"))
    assert not (tmp_path / "new").exists()  # no empty output folder left by the lock either


def test_shards_of_one_run_proceed_together_other_runs_do_not(cli, tmp_path):
    src = make_inputs(tmp_path / "in", 6)
    out = tmp_path / "out"
    child = hold_lock(out, "0/2")
    try:
        assert upscale(cli, src, out, "--shard", "1/2").exit_code == 0  # the other shard of the run
        assert f"shard 0/2: PID {child.pid}" in one_error_line(upscale(cli, src, out))  # a whole run waits
        assert f"PID {child.pid}" in one_error_line(upscale(cli, src, out, "--shard", "0/2"))  # so does the same shard
    finally:
        child.kill()
        child.wait()
    assert upscale(cli, src, out, "--shard", "0/2").exit_code == 0
    assert (out / "report.json").is_file() and not list(out.glob(".genapps-lock*"))


# ---------------------------------------------------------------- 8. shard reports of other runs


def report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_a_shard_rerun_with_another_model_drops_the_old_merged_report(cli, tmp_path, caplog):
    src = make_inputs(tmp_path / "in", 6)
    out = tmp_path / "out"
    for i in range(2):
        assert upscale(cli, src, out, "--shard", f"{i}/2").exit_code == 0
    assert report(out)["stages"][0]["config"]["model"] == "bicubic"
    other = ("upscale", src, out, "-m", "sr-x2", "-s", "2", "--overwrite")
    result = cli(*other, "--shard", "0/2")
    assert result.exit_code == 0, result.output
    assert not (out / "report.json").exists() and not (out / "report.html").exists()  # never the old model's
    assert "removed report.json/html of an earlier run" in caplog.text and "of another run" in caplog.text
    message = one_error_line(cli("report", "merge", out))
    assert "different settings" in message and "model" in message
    assert cli(*other, "--shard", "1/2").exit_code == 0
    assert report(out)["stages"][0]["config"]["model"] == "sr-x2" and report(out)["config"]["shards"] == 2


def test_shards_of_different_input_folders_never_merge(cli, tmp_path):
    import shutil

    src = make_inputs(tmp_path / "in", 6)
    shutil.copytree(src, tmp_path / "copy")
    out = tmp_path / "out"
    assert upscale(cli, src, out, "--shard", "0/2").exit_code == 0
    assert upscale(cli, tmp_path / "copy", out, "--shard", "1/2").exit_code == 0
    assert not (out / "report.json").exists()
    assert "different input folders" in one_error_line(cli("report", "merge", out))


@pytest.mark.parametrize("damage", [
    lambda d: d["stages"][0]["records"].append("not a record"),
    lambda d: d["stages"][0].update(records={"a": 1}),
    lambda d: d["stages"][0]["records"][0].update(extra=1),
    lambda d: d.update(count="two"),
    lambda d: d.update(stages=[1]),
    lambda d: d["stages"][0].update(view=[1, 2]),
    lambda d: d["stages"][0].update(view={"nonsense": 1}),
])
def test_report_merge_of_a_malformed_part_is_one_line(cli, tmp_path, damage):
    src = make_inputs(tmp_path / "in", 6)
    out = tmp_path / "out"
    for i in range(2):
        assert upscale(cli, src, out, "--shard", f"{i}/2").exit_code == 0
    part = out / ".genapps-parts" / "report.shard-0-of-2.json"
    doc = json.loads(part.read_text())
    damage(doc)
    part.write_text(json.dumps(doc))
    assert "report part" in one_error_line(cli("report", "merge", out))


# ---------------------------------------------------------------- 11. pairs IN IN


def test_pairs_never_write_into_their_input(cli, tmp_path):
    src = make_inputs(tmp_path / "in")
    before = snapshot(src)
    for out in (src, tmp_path):
        assert "must not be the input folder" in one_error_line(cli("pairs", src, out, "--kind", "gray"))
    assert snapshot(src) == before
    assert cli("pairs", src, src / "pairs", "--kind", "gray").exit_code == 0  # inside: allowed, left out of the listing
    again = cli("pairs", src, src / "pairs", "--kind", "gray")
    assert again.exit_code == 0 and "0 ok, 3 skipped" in again.output
    assert sorted(p.relative_to(src / "pairs").as_posix() for p in (src / "pairs").rglob("*.png")) == [
        "A/a.png", "A/b.png", "A/sub/c.png", "B/a.png", "B/b.png", "B/sub/c.png"]


# ---------------------------------------------------------------- tracebacks of YAML, merge, evaluate


@pytest.mark.parametrize("text, expected", [
    ("input: in\nstages:\n  - task: [upscale]\n", "unknown task of type list"),
    ("input: in\nstages:\n  - task: {a: 1}\n", "unknown task of type dict"),
    ("input: in\nstages:\n  - {task: downscale, name: [a, b]}\n", "'name' must be a string"),
    ("input: in\nstages:\n  - {task: downscale, input: [a]}\n", "'input' must be a string"),
    ("input: [in]\nstages:\n  - {task: downscale}\n", "'input' must be a string"),
    ("input: in\noutput: 3\nstages:\n  - {task: downscale}\n", "'output' must be a string"),
    ("input: in\ndescription: {a: 1}\nstages:\n  - {task: downscale}\n", "'description' must be a string"),
    ("input: in\nstages:\n  - {<<: 3, task: downscale}\n", "for merging"),
    ("input: in\nstages:\n  - {task: downscale, options: [scale]}\n", "'options' must be a mapping"),
])
def test_yaml_fields_are_typed_in_one_line(cli, tmp_path, text, expected):
    make_inputs(tmp_path / "in", 1)
    (tmp_path / "p.yaml").write_text(text)
    message = one_error_line(cli("run", tmp_path / "p.yaml", "--out", tmp_path / "out"))
    assert expected in message and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "p.yaml"]  # no folder ['a', 'b']


def test_an_alias_bomb_is_refused_at_once(cli, tmp_path):
    make_inputs(tmp_path / "in", 1)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines[-1] = lines[-1].replace("a8: &a8", "name:")  # 9**9 strings once expanded
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\ninput: in\nstages:\n  - {task: downscale}\n")
    start = time.perf_counter()
    assert "alias bomb" in one_error_line(cli("run", tmp_path / "bomb.yaml"))
    (tmp_path / "many.yaml").write_text("a: &a x\nname: [" + ", ".join(["*a"] * 150) + "]\n")
    assert "more than 100 aliases" in one_error_line(cli("run", tmp_path / "many.yaml"))
    assert time.perf_counter() - start < 10


def test_yaml_merge_keys_merge(cli, tmp_path):
    src = make_inputs(tmp_path / "in", 1)
    (tmp_path / "p.yaml").write_text(
        "input: in\nstages:\n  - {name: up, task: upscale, options: &up {model: bicubic, scale: 4, suffix: _u}}\n"
        "  - {name: up2, task: upscale, input: in, options: {<<: *up, scale: 2}}\n")
    assert cli("run", tmp_path / "p.yaml", "--out", tmp_path / "out").exit_code == 0
    assert Image.open(tmp_path / "out" / "up" / "a_u.png").size == (64, 64)
    assert Image.open(tmp_path / "out" / "up2" / "a_u.png").size == (32, 32)  # own keys win
    assert src.is_dir()


def test_evaluate_never_puts_its_default_report_into_its_inputs(cli, tmp_path, monkeypatch):
    src = make_inputs(tmp_path / "pred", 1)
    make_inputs(tmp_path / "ref", 1)
    monkeypatch.chdir(src)
    message = one_error_line(cli("evaluate", ".", tmp_path / "ref"))
    assert "inside PRED_DIR" in message and "--report" in message
    assert not (src / "runs").exists()
    monkeypatch.chdir(tmp_path / "ref")
    assert "inside REF_DIR" in one_error_line(cli("evaluate", src, "."))
    assert cli("evaluate", src, ".", "--no-report").exit_code == 0
    assert cli("evaluate", src, ".", "--report", tmp_path / "rep").exit_code == 0
    assert not (tmp_path / "ref" / "runs").exists() and (tmp_path / "rep" / "report.json").is_file()
