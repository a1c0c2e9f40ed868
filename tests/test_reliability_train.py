"""Issue 12, training side: a resume continues only the same setup and data, option values are
checked up front, bad files are skipped, crafted weights fail in one line, a kill loses no work."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import photo
from genapps import io
from genapps.train import TrainConfig, TrainSpec, fit

DIGITS = Path(__file__).resolve().parent.parent / "data" / "digits"
SR = ["--scale", "2", "--channels", "4", "--blocks", "1", "--batch-size", "2", "--patch", "8"]


def one_line_error(result, *words):
    """Exit 2, a single 'error:' line holding every word, no traceback."""
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- train sr


def test_train_sr_rerun_with_another_setup_says_what_differs(tmp_path, cli, photo_dir):
    out = tmp_path / "m.safetensors"
    assert cli("train", "sr", "--data", photo_dir, "--out", out, "--steps", "3", *SR).exit_code == 0
    cases = [(["--channels", "8"], "config.channels 4 -> 8"), (["--scale", "4"], "config.scale 2 -> 4"),
             (["--gan"], "gan false -> true")]
    for change, words in cases:
        args = SR + change if change[0] != "--scale" else SR[2:] + change + ["--patch", "4"]
        one_line_error(cli("train", "sr", "--data", photo_dir, "--out", out, "--steps", "5", *args), words,
                       "--no-resume")
    Image.open(photo_dir / "a.png").save(photo_dir / "d.png")  # other data
    one_line_error(cli("train", "sr", "--data", photo_dir, "--out", out, "--steps", "5", *SR),
                   "data \"3 files", "-> \"4 files")
    assert io.load_torch(out.with_suffix(".state.pt"))["step"] == 3  # nothing was trained over it
    again = cli("train", "sr", "--data", photo_dir, "--out", out, "--steps", "4", *SR, "--channels", "8", "--no-resume")
    assert again.exit_code == 0, again.output
    assert json.loads(out.with_suffix(".json").read_text())["config"]["channels"] == 8


@pytest.mark.parametrize("junk", ["missing", "bytes", "list", "shapes"])
def test_train_sr_state_with_missing_keys_or_junk_is_one_line(tmp_path, cli, photo_dir, junk):
    out = tmp_path / "m.safetensors"
    state = out.with_suffix(".state.pt")
    assert cli("train", "sr", "--data", photo_dir, "--out", out, "--steps", "2", *SR).exit_code == 0
    saved = io.load_torch(state)
    if junk == "missing":
        del saved["opt_g"]
        torch.save(saved, state)
    elif junk == "bytes":
        state.write_bytes(b"\x80\x02junk")
    elif junk == "list":
        torch.save([1, 2], state)
    else:
        saved["g"]["head.weight"] = torch.zeros(3, 3)
        torch.save(saved, state)
    words = {"missing": "lacks opt_g", "bytes": "not a readable torch", "list": "not a training state",
             "shapes": "head.weight"}[junk]
    line = one_line_error(cli("train", "sr", "--data", photo_dir, "--out", out, "--steps", "3", *SR), words,
                          "--no-resume")
    assert "weights_only" not in line


def test_train_sr_out_must_be_safetensors_in_a_writable_folder(tmp_path, cli, photo_dir):
    one_line_error(cli("train", "sr", "--data", photo_dir, "--out", tmp_path / "w.json", *SR), ".safetensors")
    assert not (tmp_path / "w.json").exists()
    (tmp_path / "file").write_text("a file where the output folder would be")
    one_line_error(cli("train", "sr", "--data", photo_dir, "--out", tmp_path / "file" / "m.safetensors",
                       "--steps", "1", *SR), "not writable")
    one_line_error(cli("train", "sr", "--data", tmp_path / "missing", "--out", tmp_path / "new" / "m.safetensors",
                       "--steps", "1", *SR), "missing")
    assert not (tmp_path / "new").exists()  # no empty folder left by a failed start


@pytest.mark.parametrize("option, value, words", [
    ("--patch", "0", "patch must be >= 1"), ("--batch-size", "0", "batch_size must be >= 1"),
    ("--channels", "0", "channels must be >= 1"), ("--steps", "-5", "steps must be >= 1"),
    ("--blocks", "-1", "blocks must be >= 1"), ("--ema", "2", "ema must be in [0, 1)"),
    ("--lr", "0", "lr must be > 0"),
])
def test_train_sr_option_values_are_refused_up_front(tmp_path, cli, photo_dir, option, value, words):
    one_line_error(cli("train", "sr", "--data", photo_dir, "--out", tmp_path / "m.safetensors", *SR, option, value),
                   words)
    assert list(tmp_path.iterdir()) == [photo_dir]


def test_generic_train_config_is_validated():
    for bad in ({"steps": 0}, {"ema": 1.0}, {"lr": -1}, {"ckpt_every": 0}, {"betas": (0.9, 1.5)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_train_sr_skips_a_bad_validation_file(tmp_path, cli, photo_dir):
    (photo_dir / "broken.png").write_bytes(b"not an image")
    result = cli("train", "sr", "--data", photo_dir, "--val", photo_dir, "--out", tmp_path / "m.safetensors",
                 "--steps", "2", *SR)
    assert result.exit_code == 0, result.output
    assert "val_psnr_y" in json.loads((tmp_path / "m.json").read_text())["validation"]


# ---------------------------------------------------------------- the loop itself


def counting_spec(fail_at=None):
    """A regression whose logged loss is always 1.0 (so every logged mean must be 1.0)."""
    g = nn.Linear(1, 1)
    calls = {"n": 0}

    def g_loss(b, out, d):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("killed")
        return ((out - 3) ** 2).mean(), {"one": 1.0}

    return TrainSpec(g, lambda: torch.ones(4, 1), lambda net, b: net(b), g_loss, meta={"what": "counting"})


def test_logged_means_after_a_resume_count_the_steps_before_it(tmp_path):
    state = tmp_path / "s.pt"
    cfg = TrainConfig(steps=10, log_every=4, ckpt_every=5, ema=0.0)
    with pytest.raises(RuntimeError):
        fit(counting_spec(fail_at=7), cfg, state)  # last log at 4, last checkpoint at 5
    res = fit(counting_spec(), cfg, state)
    assert [h["step"] for h in res.history] == [4, 8, 10]
    assert all(h["one"] == 1.0 for h in res.history)
    spec = counting_spec()
    spec.meta = {"what": "other"}
    with pytest.raises(ValueError, match='what "counting" -> "other"'):
        fit(spec, cfg, state)


SIGTERM_RUN = """
import sys, torch
torch.set_num_threads(1)
from genapps.cli import main
main(sys.argv[1:])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_saves_the_state_and_the_run_resumes(tmp_path, photo_dir):
    out = tmp_path / "m.safetensors"
    args = ["train", "sr", "--data", str(photo_dir), "--out", str(out), "--steps", "1000000", *SR]
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_RUN, *args], stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stderr:  # the loop logs every 100 steps: the handler is in place
            if "step 100/" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 130, rest
    finally:
        proc.kill()
    assert "interrupted" in rest and "Traceback" not in rest
    step = io.load_torch(out.with_suffix(".state.pt"))["step"]
    assert 100 <= step < 1000000  # saved by the signal (exit 130 above: the handler ran)
    from genapps.tasks.upscale.training import SRTrainConfig, train_sr

    cfg = SRTrainConfig(data=str(photo_dir), out=str(out), scale=2, channels=4, blocks=1, batch_size=2, patch=8,
                        steps=step + 2)
    card = train_sr(cfg, torch.device("cpu"))
    assert card["history"][-1]["step"] == step + 2 and io.load_torch(out.with_suffix(".state.pt"))["step"] == step + 2


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_to_the_process_group_saves_an_inpaint_training_and_its_batch_workers_end(tmp_path):
    """Ctrl-C reaches every process of the terminal's group, the batch workers too (train inpaint
    makes its batches ahead in one): the training saves its state after the step, nothing is left running."""
    data, out = tmp_path / "photos", tmp_path / "m.safetensors"
    data.mkdir()
    for i in range(3):
        Image.fromarray(photo((96, 96), seed=i)).save(data / f"p{i}.png")
    args = ["train", "inpaint", "--data", str(data), "--holdout", "1", "--patch", "64", "--batch-size", "2",
            "--ngf", "4", "--masks", "thick", "--val-every", "0", "--steps", "1000000", "--out", str(out)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_RUN, *args], stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own process group, as a terminal's job
    try:
        for line in proc.stderr:  # the loop logs every 50 steps
            if "step 100/" in line:
                break
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 130, rest
    finally:
        proc.kill()
    assert "interrupted" in rest and "Traceback" not in rest and "exited unexpectedly" not in rest
    assert io.load_torch(out.with_suffix(".state.pt"))["step"] >= 100
    for _ in range(50):  # the workers end with the training (their watchdog sees it gone)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a batch worker outlived the training")


# ---------------------------------------------------------------- augment


AUG = ["--steps", "4", "--image-size", "8", "--eval-steps", "2", "--batch-size", "8", "--no-interpolate"]


@pytest.fixture
def digits2(tmp_path):
    """Two classes of the embedded digits (10 images each) plus a broken file in class 0."""
    import shutil

    data = tmp_path / "data"
    for k in ("0", "1"):
        shutil.copytree(DIGITS / "train" / k, data / k)
    (data / "0" / "broken.png").write_bytes(b"\x89PNG not really")
    return data


def test_augment_refuses_output_in_or_around_the_data(tmp_path, cli, digits2):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out in (digits2, digits2 / "0", tmp_path):
        one_line_error(cli("augment", digits2, out, *AUG), "must not be the data folder")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    (tmp_path / "out" / "test" / "0").mkdir(parents=True)
    one_line_error(cli("augment", digits2, tmp_path / "out", "--eval", tmp_path / "out" / "test", *AUG),
                   "must not be the eval folder")


def files_and_manifest(out):
    import csv

    rows = list(csv.DictReader((out / "manifest.csv").open()))
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.png"))
    return on_disk, sorted(r["file"] for r in rows)


def test_augment_reruns_resume_only_the_same_setup(tmp_path, cli, digits2, caplog):
    out = tmp_path / "out"
    first = cli("augment", digits2, out, "--per-class", "3", *AUG)  # --channels auto reads past the broken file
    assert first.exit_code == 0, first.output
    assert any("broken.png" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert len(files_and_manifest(out)[0]) == 6
    smaller = cli("augment", digits2, out, "--per-class", "2", *AUG)
    assert smaller.exit_code == 0, smaller.output
    on_disk, listed = files_and_manifest(out)
    assert on_disk == listed and len(on_disk) == 4  # the manifest describes exactly the files
    for change, words in [(["--image-size", "12"], "arch.image_size 8 -> 12"), (["--z-dim", "3"], "arch.z_dim 16 -> 3"),
                          (["--model", "cgan"], 'model "cvae" -> "cgan"')]:
        one_line_error(cli("augment", digits2, out, "--per-class", "2", *AUG, *change), words, "--overwrite")
    (digits2 / "1").rename(digits2 / "one")  # renamed class: images would be mislabeled
    one_line_error(cli("augment", digits2, out, "--per-class", "2", *AUG), "classes", "one")
    redo = cli("augment", digits2, out, "--per-class", "2", *AUG, "--overwrite")
    assert redo.exit_code == 0, redo.output
    on_disk, listed = files_and_manifest(out)
    assert on_disk == listed and {f.split("/")[0] for f in on_disk} == {"0", "one"}


# ---------------------------------------------------------------- crafted or broken weight files


def srresnet_file(path, meta, **arch):
    from safetensors.torch import save_file

    from genapps.tasks.upscale.models import define_G

    g = define_G("srresnet", **({"scale": 2, "channels": 4, "blocks": 1} | arch))
    header = meta if isinstance(meta, str) else json.dumps(meta)
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(path), metadata={"genapps": header})


GOOD = {"format_version": 1, "task": "upscale", "arch": "srresnet"}
CRAFTED = {
    "list.safetensors": ([1, 2], "damaged genapps metadata"),
    "json.safetensors": ("{not json", "damaged genapps metadata"),
    "keys.safetensors": (GOOD | {"config": {"scale": 2, "channels": 4, "blocks": 1, "evil": 1}}, "unknown config keys evil"),
    "wide.safetensors": (GOOD | {"config": {"scale": 2, "channels": 200000, "blocks": 1}}, "channels=200000"),
    "deep.safetensors": (GOOD | {"config": {"scale": 2, "channels": 4, "blocks": 3}}, "missing body.1"),
    "text.safetensors": (GOOD | {"config": {"scale": 2, "channels": "4", "blocks": 1}}, "must be integers"),
}


class Pickled:
    def __reduce__(self):
        return (print, ("this must never run",))


def crafted_pth(path):
    name = path.name
    if name == "empty.pth":
        path.write_bytes(b"")
    elif name == "rrdb500.pth":  # declares 500 RRDB blocks by its keys, holds next to nothing
        state = {"conv_first.weight": torch.zeros(64, 3, 3, 3), "conv_last.weight": torch.zeros(3, 64, 3, 3)}
        torch.save({"params_ema": state | {f"body.{i}.rdb1.conv1.weight": torch.zeros(1) for i in range(500)}}, path)
    elif name == "code.pth":
        torch.save({"params": Pickled()}, path)
    elif name == "keys.pth":
        torch.save({"params": {"body.x.weight": torch.zeros(3), "body.0.weight": torch.zeros(2, 3, 3, 3),
                               "body.1.weight": torch.zeros(2)}}, path)
    elif name == "nothing.pth":
        torch.save({"params": {}}, path)


PTH = {"empty.pth": "not a readable torch weights file", "rrdb500.pth": "more parameters than the file holds",
       "code.pth": "refused, it would import", "keys.pth": "do not fit the declared model",
       "nothing.pth": "not a state dict of tensors"}


@pytest.mark.parametrize("name", list(CRAFTED) + list(PTH))
def test_crafted_weights_fail_in_one_line_before_building(tmp_path, cli, photo_dir, name, capfd):
    path = tmp_path / name
    if name in CRAFTED:
        srresnet_file(path, CRAFTED[name][0])
    else:
        crafted_pth(path)
    result = cli("upscale", photo_dir, tmp_path / "out", "-m", path, "-s", "2")
    line = one_line_error(result, str(path), CRAFTED.get(name, (None, PTH.get(name)))[1])
    assert "weights_only" not in line
    assert "this must never run" not in result.output + capfd.readouterr().out


def test_an_honest_file_still_loads(tmp_path, cli, photo_dir):
    srresnet_file(tmp_path / "ok.safetensors", GOOD | {"config": {"scale": 2, "channels": 4, "blocks": 1}})
    result = cli("upscale", photo_dir, tmp_path / "out", "-m", tmp_path / "ok.safetensors", "-s", "2")
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- upscale option values


def test_upscale_option_values_are_checked_up_front(tmp_path, cli, photo_dir, caplog):
    for args, words in [(["--outscale", "0.01"], "outscale must be in [1, 16]"),
                        (["--tile", "1"], "tile must be 0 (whole image) or >= 8")]:
        one_line_error(cli("upscale", photo_dir, tmp_path / "out", "-m", "bicubic", "-s", "2", *args), words)
    assert not (tmp_path / "out").exists()  # refused before any work
    result = cli("upscale", photo_dir, tmp_path / "out", "-m", "bicubic", "-s", "2", "--tile", "16",
                 "--tile-overlap", "0")
    assert result.exit_code == 0, result.output
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "--tile 16 is small" in warned and "visible seams" in warned
