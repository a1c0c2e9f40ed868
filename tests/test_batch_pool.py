"""The folder loop's reader/writer pool (batch._run_files): file order, overlap, error paths."""

import threading
import time

import pytest
import torch
from PIL import Image

from genapps import batch, io
from tests.conftest import photo


def _folder(path, n, bad=()):
    path.mkdir()
    for i in range(n):
        name = f"f{i:02d}.png"
        if i in bad:
            (path / name).write_bytes(b"not a png")
        else:
            Image.fromarray(photo((12, 16), seed=i)).save(path / name)
    return path


def _map(src, out, process, **kw):
    return batch.map_images(src, out, process, name="t", task="t", config={}, fingerprint={"v": 1}, **kw)


def test_records_arrive_in_file_order_and_reading_overlaps_the_model(tmp_path):
    src = _folder(tmp_path / "in", 8)
    events = []
    real_read = io.read_image

    def read(path, *a, **kw):
        events.append(("read", path.name, threading.current_thread().name))
        return real_read(path, *a, **kw)

    def process(image):
        time.sleep(0.05)  # a model: the reader has time to read the next file meanwhile
        events.append(("process", None, threading.current_thread().name))
        return io.LoadedImage(image.color.flip(-1), image.alpha, image.bit_depth)

    mp = pytest.MonkeyPatch()
    mp.setattr(io, "read_image", read)
    try:
        result = _map(src, tmp_path / "out", process)
    finally:
        mp.undo()
    assert [r.status for r in result.records] == ["ok"] * 8
    assert [r.input.rsplit("/", 1)[-1] for r in result.records] == [f"f{i:02d}.png" for i in range(8)]
    reads = [e for e in events if e[0] == "read"]
    assert all(t.startswith("genapps-read") for _, _, t in reads)  # reading left the model's thread
    assert all(t == threading.main_thread().name for k, _, t in events if k == "process")
    # the second file was read before the first one's model call returned: overlap, not a serial loop
    assert events.index(("read", "f01.png", reads[1][2])) < [e[0] for e in events].index("process")
    for i in range(8):  # each output is its own input's (order kept through the threads)
        got = io.read_image(tmp_path / "out" / f"f{i:02d}.png").color
        want = io.read_image(src / f"f{i:02d}.png").color.flip(-1)
        assert torch.equal(got, want)


def test_a_bad_file_is_an_error_record_in_its_place(tmp_path):
    src = _folder(tmp_path / "in", 5, bad=(2,))
    result = _map(src, tmp_path / "out", lambda im: im)
    assert [r.status for r in result.records] == ["ok", "ok", "error", "ok", "ok"]
    assert "f02.png" in result.records[2].error


def test_fail_fast_on_a_bad_read_writes_the_files_before_it_and_none_after(tmp_path):
    src = _folder(tmp_path / "in", 6, bad=(3,))
    with pytest.raises(batch.BatchAborted):
        _map(src, tmp_path / "out", lambda im: im, fail_fast=True)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["f00.png", "f01.png", "f02.png"]
    assert not list((tmp_path / "out").glob("*.tmp*"))


def test_fail_fast_on_a_failed_write_refuses_the_later_writes(tmp_path):
    src = _folder(tmp_path / "in", 6)
    real_write = io.write_image

    def write(path, *a, **kw):
        if path.name == "f02.png":
            raise OSError(28, "No space left on device")
        time.sleep(0.02)
        return real_write(path, *a, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(io, "write_image", write)
    try:
        with pytest.raises(batch.BatchAborted, match="No space left"):
            _map(src, tmp_path / "out", lambda im: im, fail_fast=True)
    finally:
        mp.undo()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["f00.png", "f01.png"]


def test_the_model_failing_keeps_the_earlier_outputs_and_a_rerun_resumes(tmp_path):
    src = _folder(tmp_path / "in", 6)
    calls = []

    def process(image):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # killed in the 4th model call
        return image

    with pytest.raises(KeyboardInterrupt):
        _map(src, tmp_path / "out", process)
    done = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert done == ["f00.png", "f01.png", "f02.png"]  # the writes queued before the kill were finished
    result = _map(src, tmp_path / "out", lambda im: im)
    assert [r.status for r in result.records] == ["skipped"] * 3 + ["ok"] * 3


def test_parallel_writers_keep_the_manifest_whole(tmp_path):
    src = _folder(tmp_path / "in", 12)
    assert batch.WRITERS >= 2
    _map(src, tmp_path / "out", lambda im: im)
    entries = batch.manifest_entries(tmp_path / "out")
    assert sorted(entries) == [f"f{i:02d}.png" for i in range(12)]
    assert all(e["sha256"] == io.sha256_file(tmp_path / "out" / name) for name, e in entries.items())
    result = _map(src, tmp_path / "out", lambda im: im)
    assert [r.status for r in result.records] == ["skipped"] * 12


def test_a_kill_inside_one_write_commits_nothing_after_it(tmp_path, monkeypatch):
    """Writers encode in parallel but commit in file order: the next file's finished encode waits,
    and after a kill in the rename of f02 neither f03 nor anything later gets a line or a file."""
    import os

    src = _folder(tmp_path / "in", 6)
    replace = os.replace

    def killed_at_f02(a, b):
        if str(b).endswith("f02.png"):
            time.sleep(0.3)  # f03's writer has encoded meanwhile and waits for its turn
            raise KeyboardInterrupt
        return replace(a, b)

    monkeypatch.setattr(io.os, "replace", killed_at_f02)
    with pytest.raises(KeyboardInterrupt):
        _map(src, tmp_path / "out", lambda im: im)
    monkeypatch.setattr(io.os, "replace", replace)
    assert sorted(batch.manifest_entries(tmp_path / "out")) == ["f00.png", "f01.png", "f02.png"]  # f02: line, no file
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["f00.png", "f01.png"]
