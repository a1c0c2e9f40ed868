"""Scale-out: the shard split, sharded batch runs with one merged report, torchrun (2 gloo processes on CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genapps import distributed
from genapps.distributed import Shard, parse_shard, shard_key, shard_of

ROOT = Path(__file__).resolve().parent.parent


def make_folder(folder: Path, n: int = 9) -> Path:
    """n 16x20 images (some in sub/), and beside the folder `<folder>_hr`: their 32x40 references."""
    for root in (folder, folder.with_name(folder.name + "_hr")):
        (root / "sub").mkdir(parents=True)
    for i in range(n):
        arr = (np.random.default_rng(i).random((32, 40, 3)) * 255).astype(np.uint8)
        name = f"{'sub/' if i % 3 == 0 else ''}im{i}.png"
        Image.fromarray(arr).save(folder.with_name(folder.name + "_hr") / name)
        Image.fromarray(arr).resize((20, 16), Image.BICUBIC).save(folder / name)
    return folder


def report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def totals(doc: dict) -> list[tuple]:
    """Per stage: counts and metric means, the numbers a merged report must share with one process."""
    out = []
    for st in doc["stages"]:
        s = st["stats"]
        means = {k: round(v["mean"], 9) for k, v in s["metrics"].items() if v["mean"] is not None}
        out.append((st["name"], s["total"], s["ok"], s["skipped"], s["error"], means,
                    sorted(Path(r["input"]).name for r in st["records"])))
    return out


def test_split_is_deterministic_complete_and_keeps_same_stems_together():
    rels = [f"d{i % 7}/img{i}.png" for i in range(300)] + ["a.png", "a.jpg", "x/.hidden.png"]
    for n in (1, 2, 3, 5):
        owners = [[k for k in range(n) if Shard(k, n).owns(r)] for r in rels]
        assert all(len(o) == 1 for o in owners)  # every file exactly once
        assert [shard_of(r, n) for r in rels] == [o[0] for o in owners]
    assert shard_of("a.png", 4) == shard_of("a.jpg", 4) and shard_key("sub/a.b.png") == "sub/a.b"
    counts = np.bincount([shard_of(r, 3) for r in rels], minlength=3)
    assert counts.min() > 60  # a hash spreads evenly, whatever the names


def test_shard_option_and_torchrun_environment(monkeypatch):
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.current() == Shard(1, 2)
    with distributed.sharding("1/3"):  # a Slurm array task of a 2-process torchrun job: composed
        assert distributed.current() == Shard(3, 6)
    with distributed.unsharded():
        assert not distributed.current().active
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="inconsistent"):
        distributed.current()


def test_shards_do_every_file_once_and_merge_into_the_single_process_report(tmp_path, cli):
    src = make_folder(tmp_path / "in")
    res = cli("upscale", src, tmp_path / "one", "-m", "bicubic", "-s", "2", "--reference", f"{src}_hr")
    assert res.exit_code == 0, res.output
    first = cli("upscale", src, tmp_path / "out", "-m", "bicubic", "-s", "2", "--reference", f"{src}_hr", "--shard", "1/3")
    assert first.exit_code == 0 and "report.shard-1-of-3.json" in first.output
    assert not (tmp_path / "out" / "report.json").exists()  # two shards still missing
    merge = cli("report", "merge", tmp_path / "out")
    assert merge.exit_code == 2 and "0/3, 2/3 have not written their part" in merge.output
    for i in (0, 2):
        assert cli("upscale", src, tmp_path / "out", "-m", "bicubic", "-s", "2", "--reference", f"{src}_hr",
                   "--shard", f"{i}/3").exit_code == 0
    merged = report(tmp_path / "out")  # the last shard to finish merged
    assert totals(merged) == totals(report(tmp_path / "one")) and merged["config"]["shards"] == 3
    outputs = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert outputs == sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    lines = [json.loads(line)["output"] for m in sorted((tmp_path / "out").glob(".genapps-manifest.shard-*-of-3.jsonl"))
             for line in m.read_text().splitlines()]
    assert sorted(lines) == outputs  # each output written by exactly one shard, in that shard's manifest
    (tmp_path / "out" / "report.json").unlink()
    again = cli("upscale", src, tmp_path / "out", "-m", "bicubic", "-s", "2", "--reference", f"{src}_hr",
                "--shard", "2/3")  # resume per shard
    assert again.exit_code == 0 and " 0 ok," in again.output and "skipped" in again.output
    merged = report(tmp_path / "out")  # merged again, with shard 2's resumed (skipped) records
    assert totals(merged)[0][1:5] == (9, 9 - totals(merged)[0][3], totals(merged)[0][3], 0)
    one = cli("upscale", src, tmp_path / "out", "-m", "bicubic", "-s", "2")  # one process reads every shard's manifest
    assert one.exit_code == 0 and "0 ok, 9 skipped" in one.output


def test_sharded_evaluate_and_pipeline(tmp_path, cli):
    src = make_folder(tmp_path / "in", 6)
    pred, hr = tmp_path / "pred", f"{src}_hr"
    assert cli("upscale", src, pred, "-m", "bicubic", "-s", "2", "--no-report").exit_code == 0
    assert cli("evaluate", pred, hr, "--report", tmp_path / "e1").exit_code == 0
    for i in range(2):
        assert cli("evaluate", pred, hr, "--report", tmp_path / "e2", "--shard", f"{i}/2").exit_code == 0
    assert totals(report(tmp_path / "e2")) == totals(report(tmp_path / "e1"))
    assert totals(report(tmp_path / "e1"))[0][5]["psnr"] > 10
    assert cli("evaluate", pred, hr, "--shard", "0/2").exit_code == 2  # where would the shards meet?
    yaml = tmp_path / "p.yaml"
    yaml.write_text("stages:\n  - {task: downscale, options: {scale: 2}}\n"
                    "  - {task: upscale, options: {model: bicubic, scale: 2}}\n")
    assert cli("run", yaml, "--input", src, "--out", tmp_path / "p1").exit_code == 0
    for i in range(2):
        assert cli("run", yaml, "--input", src, "--out", tmp_path / "p2", "--shard", f"{i}/2").exit_code == 0
    assert totals(report(tmp_path / "p2")) == totals(report(tmp_path / "p1"))
    yaml.write_text("stages:\n  - {task: upscale, options: {model: bicubic, scale: 2, suffix: _x2}}\n"
                    "  - {task: downscale, options: {scale: 2}}\n")
    res = cli("run", yaml, "--input", src, "--out", tmp_path / "p3", "--shard", "0/2")
    assert res.exit_code == 2 and "rename their outputs" in res.output


def torchrun(*args, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_torchrun_batch_two_gloo_processes_one_merged_report(tmp_path, cli):
    src = make_folder(tmp_path / "in")
    assert cli("upscale", src, tmp_path / "one", "-m", "bicubic", "-s", "2", "--reference", f"{src}_hr").exit_code == 0
    res = torchrun("-m", "genapps", "upscale", src, tmp_path / "out", "-m", "bicubic", "-s", "2",
                   "--reference", f"{src}_hr", "--device", "cpu", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out" / ".genapps-parts").iterdir()) == [
        "report.shard-0-of-2.json", "report.shard-1-of-2.json"]
    assert totals(report(tmp_path / "out")) == totals(report(tmp_path / "one"))
    counts = [json.loads((tmp_path / "out" / ".genapps-parts" / f"report.shard-{i}-of-2.json").read_text())
              ["stages"][0]["records"] for i in range(2)]
    names = sorted(Path(r["input"]).name for part in counts for r in part)
    assert names == sorted(p.name for p in src.rglob("*.png")) and all(counts)  # each file once, both ranks worked


# ---------------------------------------------------------------- device and precision


def test_runtime_cpu_fallbacks_and_batches(caplog, monkeypatch):
    import torch

    from genapps import device

    rt = device.runtime("cpu", "fp16")  # fp16 is CUDA-only: fp32 with a warning
    assert rt.precision == "fp32" and rt.amp_dtype is None and "fp16 runs on CUDA only" in caplog.text
    assert not rt.grad_scaler().is_enabled() and rt.memory_format is None
    net = torch.nn.Conv2d(3, 4, 3)
    assert rt.compiled(net) is net and rt.module(net) is net
    assert rt.module(net.to(memory_format=torch.channels_last)).weight.is_contiguous(
        memory_format=torch.channels_last)  # CPU: the task's choice of memory format is kept
    batch = {"x": torch.ones(2, 3, 4, 4), "pair": (torch.zeros(3), 5)}
    moved = rt.to(batch)
    assert torch.equal(moved["x"], batch["x"]) and moved["pair"][1] == 5 and not moved["x"].is_pinned()
    bf16 = device.runtime("cpu", "bf16")
    with bf16.autocast():
        assert net(torch.ones(1, 3, 5, 5)).dtype == torch.bfloat16  # bf16 autocast works on CPU
    assert not bf16.grad_scaler().is_enabled()
    assert device.runtime("cpu", channels_last=True).to(torch.ones(1, 3, 4, 4)).is_contiguous(
        memory_format=torch.channels_last)
    monkeypatch.setattr(torch, "compile", lambda m: ("compiled", m))  # the real one imports dynamo: seconds
    assert device.runtime("cpu", compile=True).compiled(net) == ("compiled", net)
    with pytest.raises(ValueError, match="unknown precision"):
        device.Runtime(torch.device("cpu"), "fp8")


def test_device_option_under_torchrun_and_train_options_reach_the_loop(monkeypatch, tmp_path, cli):
    import torch

    from genapps import device
    from genapps.tasks.upscale import training

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert device.select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            device.select_device("cuda")
    seen = {}
    monkeypatch.setattr(training, "train_sr", lambda cfg, dev, resume: seen.update(rt=device.current(dev)) or
                        {"validation": {}})
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    res = cli("train", "--precision", "bf16", "--compile", "sr", "--data", tmp_path, "--out", tmp_path / "m.safetensors",
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert seen["rt"] == device.Runtime(torch.device("cpu"), "bf16", True)
    assert device.current("cpu") == device.Runtime(torch.device("cpu"))  # only within the command


# ---------------------------------------------------------------- data-parallel training


def test_torchrun_training_equals_one_process_with_the_global_batch_and_resumes_alone(tmp_path):
    import torch

    from _ddp_worker import CONFIG, regression_spec
    from genapps.train import TrainConfig, fit

    res = torchrun(ROOT / "tests" / "_ddp_worker.py", tmp_path, 10, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "global batch = 4 per rank x 2 = 8" in res.stderr
    assert res.stderr.count("step 10/10") == 1  # rank 0 alone logs
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for k, v in ranks[0]["raw"].items():
        assert torch.equal(v, ranks[1]["raw"][k])  # identical on every rank
    single = regression_spec()
    one = fit(single, TrainConfig(steps=10, **CONFIG))
    for k, v in single.generator.state_dict().items():
        torch.testing.assert_close(ranks[0]["raw"][k], v, rtol=1e-5, atol=1e-6)  # = one process, global batch
    for k, v in one.generator.state_dict().items():
        torch.testing.assert_close(ranks[0]["final"][k], v, rtol=1e-5, atol=1e-6)  # EMA too
    assert [round(h["mse"], 5) for h in ranks[0]["history"]] == [round(h["mse"], 5) for h in one.history]
    # the 2-process state resumes in one process (any number of ranks) and continues as if never split
    resumed, straight = regression_spec(), regression_spec()
    for _ in range(10):
        resumed.next_batch()  # the resumed run's data stream at step 10
    fit(resumed, TrainConfig(steps=20, **CONFIG), state_path=tmp_path / "run.state.pt")
    fit(straight, TrainConfig(steps=20, **CONFIG))
    for k, v in straight.generator.state_dict().items():
        torch.testing.assert_close(resumed.generator.state_dict()[k], v, rtol=1e-5, atol=1e-6)
