"""Remote folders through fsspec, tested on its in-process `memory://` file system."""

import json

import fsspec
import numpy as np
import pytest
import torch
from PIL import Image

from genapps import batch, io

from test_distributed import make_folder, report, totals


@pytest.fixture(autouse=True)
def memory_fs():
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    yield fs
    fs.store.clear()


def test_read_write_list_urls(memory_fs, tmp_path):
    image = io.LoadedImage(torch.rand(3, 12, 10), torch.rand(1, 12, 10), 8)
    io.write_image("memory://bucket/sub/a.png", image)
    io.write_image("memory://bucket/b.jpg", io.LoadedImage(torch.rand(1, 8, 8)))
    memory_fs.pipe("/bucket/notes.txt", b"text")
    back = io.read_image("memory://bucket/sub/a.png")
    assert np.array_equal(io._to_uint(back.color, 8), io._to_uint(image.color, 8))
    assert back.alpha is not None and back.size == (12, 10)
    assert io.list_remote_images("memory://bucket") == ["b.jpg", "sub/a.png"]
    assert [k for k in memory_fs.store if ".tmp" in k] == []
    memory_fs.pipe("/bucket/bad.png", b"not a png")
    with pytest.raises(io.ImageError, match=r"^memory://bucket/bad.png: not an image"):
        io.read_image("memory://bucket/bad.png")
    with pytest.raises(io.ImageError, match="memory://bucket/none.png: cannot read"):
        io.read_image("memory://bucket/none.png")
    with pytest.raises(FileNotFoundError, match="input folder not found: memory://nothing"):
        io.list_remote_images("memory://nothing")
    assert not io.is_url("file:///tmp/a") and not io.is_url(tmp_path) and io.is_url("s3://b/k")


def test_upload_without_atomic_put_goes_through_a_temporary_name(memory_fs, tmp_path, monkeypatch):
    monkeypatch.setattr(io, "ATOMIC_PUT", frozenset())
    moves = []
    real_mv = type(memory_fs).mv
    monkeypatch.setattr(type(memory_fs), "mv", lambda self, a, b, **kw: (moves.append((a, b)), real_mv(self, a, b, **kw)))
    (tmp_path / "f.txt").write_text("data")
    io.upload(tmp_path / "f.txt", "memory://bucket/dir/f.txt")
    assert memory_fs.cat("/bucket/dir/f.txt") == b"data"
    assert len(moves) == 1 and io.TEMP_NAME.match(moves[0][0].rsplit("/", 1)[1]) and moves[0][1] == "/bucket/dir/f.txt"
    assert memory_fs.find("/bucket") == ["/bucket/dir/f.txt"]


def test_upscale_into_a_remote_folder_resumes_and_refuses_foreign_files(memory_fs, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(batch, "REMOTE_CHUNK", 2)  # several chunks: staged, uploaded and cleaned one by one
    src = make_folder(tmp_path / "in", 5)
    out = "memory://bucket/out"
    assert "--report" in cli("upscale", src, out, "-m", "bicubic", "-s", "2").output  # where would report.html go?
    res = cli("upscale", src, out, "-m", "bicubic", "-s", "2", "--report", tmp_path / "r")
    assert res.exit_code == 0, res.output
    names = sorted(p.removeprefix("/bucket/out/") for p in memory_fs.find("/bucket/out"))
    assert names == [".genapps-manifest.jsonl", "im1.png", "im2.png", "im4.png", "sub/im0.png", "sub/im3.png"]
    assert io.read_image(f"{out}/im1.png").size == (32, 40)
    records = report(tmp_path / "r")["stages"][0]["records"]
    assert sorted(r["output"] for r in records)[0] == f"{out}/im1.png" and all(r["status"] == "ok" for r in records)
    lines = [json.loads(line) for line in memory_fs.cat("/bucket/out/.genapps-manifest.jsonl").decode().splitlines()]
    assert sorted(e["output"] for e in lines) == names[1:]
    again = cli("upscale", src, out, "-m", "bicubic", "-s", "2", "--no-report")
    assert again.exit_code == 0 and "0 ok, 5 skipped" in again.output
    memory_fs.pipe("/bucket/out/im2.png", b"torn")  # a damaged remote output is redone
    assert "1 ok, 4 skipped" in cli("upscale", src, out, "-m", "bicubic", "-s", "2", "--no-report").output
    assert io.read_image(f"{out}/im2.png").size == (32, 40)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "other.png")
    io.upload(tmp_path / "other.png", f"{out}/im4.png")  # someone else's file under an output name
    memory_fs.pipe("/bucket/out/.genapps-manifest.jsonl", b"")
    refused = cli("upscale", src, out, "-m", "bicubic", "-s", "2", "--no-report")
    assert refused.exit_code == 2 and "not in the manifest" in refused.output


def test_remote_input_and_output_sharded_match_a_local_run(memory_fs, tmp_path, cli):
    src = make_folder(tmp_path / "in", 6)
    for p in src.rglob("*.png"):
        io.upload(p, f"memory://data/lr/{p.relative_to(src).as_posix()}")
    assert cli("upscale", src, tmp_path / "local", "-m", "bicubic", "-s", "2", "--reference", f"{src}_hr").exit_code == 0
    for i in range(2):  # each shard's report part in its own local folder (two machines, say)
        res = cli("upscale", "memory://data/lr", "memory://data/sr", "-m", "bicubic", "-s", "2",
                  "--reference", f"{src}_hr", "--report", tmp_path / f"r{i}", "--shard", f"{i}/2")
        assert res.exit_code == 0 and f"report.shard-{i}-of-2.json" in res.output, res.output
    assert cli("report", "merge", tmp_path / "r0", tmp_path / "r1", "--out", tmp_path / "r").exit_code == 0
    assert totals(report(tmp_path / "r")) == totals(report(tmp_path / "local"))
    remote = sorted(p.removeprefix("/data/sr/") for p in memory_fs.find("/data/sr") if not p.split("/")[-1].startswith("."))
    assert remote == sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    assert sorted(p.split("/")[-1] for p in memory_fs.find("/data/sr") if ".genapps-manifest" in p) == [
        ".genapps-manifest.shard-0-of-2.jsonl", ".genapps-manifest.shard-1-of-2.jsonl"]
    for rel in remote:
        assert torch.equal(io.read_image(f"memory://data/sr/{rel}").color, io.read_image(tmp_path / "local" / rel).color)


def test_local_only_commands_refuse_urls(tmp_path, cli):
    src = make_folder(tmp_path / "in", 2)
    res = cli("pairs", src, "memory://bucket/pairs", "--kind", "gray")
    assert res.exit_code == 2 and "pairs works on local folders only" in res.output
    res = cli("inpaint", "memory://bucket/in", tmp_path / "o", "--masks", src, "--method", "telea", "--no-report")
    assert res.exit_code == 2 and "remote input folder is not supported" in res.output
