"""The "nothing to do" stamp (genapps.stamps): a rerun of a finished run ends before torch loads,
and anything that could change an output sends the run back through the per-file resume check."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from genapps import stamps


def _folder(path: Path, n: int = 3) -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray((np.random.default_rng(i).random((16, 20, 3)) * 255).astype("uint8")).save(path / f"{i}.png")
    return path


def _touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_a_rerun_with_nothing_to_do_imports_no_torch(tmp_path):
    src, out = _folder(tmp_path / "in"), tmp_path / "out"
    code = textwrap.dedent(f"""
        import sys
        from genapps.cli import main
        try:
            main(["upscale", {str(src)!r}, {str(out)!r}, "-m", "bicubic", "-s", "2"])
        except SystemExit as e:
            assert not e.code, e.code
        print("torch imported:", "torch" in sys.modules)
    """)
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path) for _ in "12"]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert "3 ok" in runs[0].stdout and "torch imported: True" in runs[0].stdout
    assert "nothing to do, 3 file(s) up to date" in runs[1].stdout and "torch imported: False" in runs[1].stdout


def test_any_change_sends_the_rerun_through_the_resume_check(cli, tmp_path):
    src, out = _folder(tmp_path / "in"), tmp_path / "out"
    args = ("upscale", src, out, "-m", "bicubic", "-s", "2")
    assert "3 ok" in cli(*args).output
    assert "nothing to do" in cli(*args).output
    _touch(src / "1.png")  # same bytes, new mtime: the manifest's hash check finds it done
    result = cli(*args)
    assert "nothing to do" not in result.output and "0 ok, 3 skipped" in result.output
    assert "nothing to do" in cli(*args).output  # stamped again
    (out / "2.png").unlink()
    assert "1 ok, 2 skipped" in cli(*args).output
    (out / "0.png").write_bytes((out / "1.png").read_bytes())  # an output edited by hand
    assert "nothing to do" not in cli(*args).output
    assert "nothing to do" in cli(*args, "--no-report").output  # done: the report is not wanted
    assert "nothing to do" in cli(*args).output  # the report there is this state's
    (out / "report.html").unlink()
    assert "0 ok, 3 skipped" in cli(*args, "--no-report").output  # OUTPUT changed: the resume check
    assert "nothing to do" in cli(*args, "--no-report").output
    assert "nothing to do" not in cli(*args).output  # the report is wanted: rewritten
    assert (out / "report.html").exists()
    out2 = tmp_path / "out2"
    assert "3 ok" in cli("upscale", src, out2, "-m", "bicubic", "-s", "2", "--no-report").output
    assert "nothing to do" not in cli("upscale", src, out2, "-m", "bicubic", "-s", "2").output  # no report yet


def test_no_stamp_after_a_failed_file_nor_with_resume_off(cli, tmp_path):
    src, out = _folder(tmp_path / "in"), tmp_path / "out"
    (src / "broken.png").write_bytes(b"not an image")
    assert cli("upscale", src, out, "-m", "bicubic", "-s", "2").exit_code == 1
    assert not (out / stamps.STAMP).exists()
    (src / "broken.png").unlink()
    assert "nothing to do" not in cli("upscale", src, out, "-m", "bicubic", "-s", "2").output
    assert (out / stamps.STAMP).exists()
    redo = cli("masks", src, tmp_path / "masks", "--overwrite")
    assert redo.exit_code == 0 and not (tmp_path / "masks" / stamps.STAMP).exists()


def test_the_key_covers_options_files_and_reads(tmp_path):
    out, model = tmp_path / "out", tmp_path / "model.safetensors"
    out.mkdir()
    model.write_bytes(b"weights")
    src = _folder(tmp_path / "in")
    stamp = stamps.Stamp.of(out, {"task": "upscale", "options": {"scale": 2}}, [src, model])
    stamp.write(3)
    assert stamp.current()["done"] == 3
    assert stamps.Stamp.of(out, {"task": "upscale", "options": {"scale": 4}}, [src, model]).current() is None
    assert stamps.Stamp.of(out, {"task": "upscale", "options": {"scale": 2}}, [src, model]).current() is not None
    _touch(model)  # a model file replaced in place
    assert stamps.Stamp.of(out, {"task": "upscale", "options": {"scale": 2}}, [src, model]).current() is None
    stamp = stamps.Stamp.of(out, {"task": "upscale", "options": {"scale": 2}}, [src, model])
    stamp.write(3)
    (src / "new.png").write_bytes((src / "0.png").read_bytes())  # a new input
    assert stamps.Stamp.of(out, {"task": "upscale", "options": {"scale": 2}}, [src, model]).current() is None


def test_a_pipeline_rerun_with_nothing_to_do(cli, tmp_path):
    src = _folder(tmp_path / "in")
    yaml = tmp_path / "p.yaml"
    yaml.write_text("stages:\n  - task: upscale\n    options: {model: bicubic, scale: 2}\n"
                    "  - task: downscale\n    options: {scale: 2}\n")
    args = ("run", yaml, "--input", src, "--out", tmp_path / "o")
    first = cli(*args)
    assert first.exit_code == 0 and "downscale: 3 ok" in first.output
    assert "nothing to do, 6 file(s) up to date" in cli(*args).output
    assert "nothing to do" not in cli(*args, "--set", "downscale.scale=4").output  # refused or redone: not skipped
    (tmp_path / "o" / "downscale" / "0.png").unlink()
    again = cli(*args)
    assert "nothing to do" not in again.output and "downscale: 1 ok, 2 skipped" in again.output


def test_every_task_config_is_light_and_is_the_task_modules_config():
    code = textwrap.dedent("""
        import sys
        from genapps.tasks import TASKS, load_spec
        names = [load_spec(n).config_class().__name__ for n in TASKS]
        print(len(names), "torch" in sys.modules)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    from genapps.tasks import TASKS, load_spec

    assert run.stdout.split() == [str(len(TASKS)), "False"]
    for name in TASKS:
        spec = load_spec(name)
        assert spec.config and spec.config_class() is spec.load().Config, name


def test_the_light_name_tables_match_the_factories():
    from genapps.tasks.augment import config as augment_config
    from genapps.tasks.augment.models import GENERATORS
    from genapps.tasks.inpaint import config as inpaint_config
    from genapps.tasks.inpaint.classical import METHODS

    assert augment_config.GENERATOR_NAMES == tuple(GENERATORS)
    assert inpaint_config.CLASSICAL == tuple(METHODS)
