"""The folder loop shared by the per-image tasks (what it returns: genapps.records).

`map_images` walks an input folder, mirrors it into the output folder, resumes (skips outputs
that its manifest shows were made by the same task, settings and model from the same input),
turns every bad file into an error record instead of a crash, writes atomically, and, given a
reference folder, measures each output against its reference. It reads top to bottom as
planning (`_plan`), resume triage (`_triage`) and the per-file step (`_FileStep`, its read, compute
and write overlapped across files by `_run_files`); a remote
folder is staged through a local one (`_map_remote`, `_Staging`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from genapps import io, paths
from genapps.paths import file_output
from genapps.distributed import Shard, current, shard_key
from genapps.records import Record, StageResult

log = logging.getLogger(__name__)


class BatchAborted(Exception):
    """--fail-fast stopped the batch at its first bad file."""


class InputChanged(ValueError):
    """An input file changed while it was being processed (that file's error)."""


PROGRESS_EVERY = 5.0  # s: the least time between two progress lines in pipes and logs (the last always shows)


def _duration(seconds: float) -> str:
    """'40 s', '3 min', '1 h 5 min': an ETA as people read it."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


class Progress:
    """Progress over `total` items: a tqdm bar on a terminal; elsewhere (pipes, log files, CI) an
    INFO line per finished item, `DESC: done 12/40 img.png 3.1 s, ETA 2 min`, at most every
    PROGRESS_EVERY s and always for the last item. Nothing shows before `delay` s have passed
    (a tile bar only for images that take a while).

    The ETA is the mean time of the items that did work (not skipped) times the items left;
    with `work` (how many of the `total` will do work: the rest are resumed skips) it counts only those.
    """

    def __init__(self, total: int, desc: str = "", delay: float = 0.0, work: int | None = None,
                 unit: str = "it", tty: bool | None = None):
        self.total, self.desc, self.delay, self.work = total, desc, delay, work
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.done = self.worked = 0
        self.busy = 0.0  # seconds of the items that did work
        self.start = self.shown = time.perf_counter()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, delay=delay, leave=False, unit=unit)

    def eta(self) -> float | None:
        """Seconds left (None before any item did work)."""
        if not self.worked:
            return None
        left = (self.work - self.worked) if self.work is not None else (self.total - self.done)
        return max(0, left) * self.busy / self.worked

    def update(self, label: str = "", seconds: float | None = None, status: str = "ok") -> None:
        """One item finished: `label` (a file name), its `seconds`, `status` ok / skipped / error."""
        self.done += 1
        if status != "skipped":
            self.worked += 1
            self.busy += seconds if seconds is not None else 0.0
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.perf_counter()
        last = self.done >= self.total
        if now - self.start < self.delay or (now - self.shown < PROGRESS_EVERY and not last):
            return  # a quick run says nothing; a long one at most every PROGRESS_EVERY s, and its end
        self.shown = now
        what = {"skipped": " skipped", "error": " failed"}.get(status, f" {seconds:.1f} s" if seconds is not None else "")
        eta = self.eta()
        tail = f", ETA {_duration(eta)}" if eta is not None and not last else ""
        log.info("%sdone %d/%d%s%s%s", f"{self.desc}: " if self.desc else "", self.done, self.total,
                 f" {label}" if label else "", what, tail)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress(iterable, total: int | None = None, desc: str = "", delay: float = 0.0, unit: str = "it"):
    """Iterate `iterable` with a Progress: a bar on a terminal, lines in pipes and logs (each item
    counts as finished when the next one is asked for)."""
    items = list(iterable) if total is None else iterable
    bar = Progress(len(items) if total is None else total, desc, delay=delay, unit=unit)
    try:
        t0 = time.perf_counter()
        for item in items:
            yield item
            bar.update(seconds=time.perf_counter() - t0)
            t0 = time.perf_counter()
    finally:
        bar.close()


Measure = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
Baseline = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # input (C, h, w), output (H, W) -> (C, H, W)


MANIFEST = ".genapps-manifest.jsonl"
RACY_SECONDS = 1.0  # an input modified this close before its output was recorded is hashed anyway (the
# file system's clock ticks coarsely: a same-size rewrite within one tick keeps the mtime; git's "racy clean")
NOT_RESULT_OPTIONS = ("resume", "fail_fast", "reference", "overwrite", "batch_size", "max_memory")


def _plain(obj):
    """`obj` as JSON gives it back (tuples -> lists, paths -> str), so fingerprints compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _short(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text[:12] + "..." if len(text) > 15 else text


class Manifest:
    """OUT/.genapps-manifest.jsonl: one JSON line per output written, the last line of a name wins.

    A line is {output, input, input_sha256, task, fingerprint, genapps, size, sha256, mtime_ns,
    input_stat}; it is appended (and flushed) before the output's temporary file is renamed to its
    final name, so every output under its final name has a line, also after a kill. Torn lines
    are ignored. `mtime_ns` (the output's) and `input_stat` ([size, mtime_ns] of the input and its
    side files, given `sources`) make the resume check cheap: a file whose size and modification
    time are those recorded is not hashed again; any other is, and its hash decides.
    """

    def __init__(self, folder: Path, task: str, fingerprint: dict, shard: Shard | None = None,
                 sources: Callable[[str], list[Path]] | None = None, fence: paths.Fence | None = None):
        from genapps import __version__

        self.folder, self.path, self.fence = folder, folder / manifest_name(shard), fence
        if self.path.is_symlink():  # appending would write wherever it points
            raise paths.OutsideOutput(f"{self.path}: refused, the manifest is a symbolic link (to "
                                      f"{os.readlink(self.path)}); genapps writes it only as a plain file in the "
                                      f"output folder: remove the link")
        self.task, self.fingerprint, self.version = task, _plain(fingerprint), __version__
        self.sharded = shard is not None and shard.active
        self.sources = sources  # an input's relative path -> the files its output depends on (it first)
        self.entries = manifest_entries(folder)
        self.lock = threading.Lock()
        self.own = {row["output"]: row for row in io.read_jsonl(self.path) if isinstance(row.get("output"), str)}

    def rel(self, dest: Path) -> str:
        return dest.relative_to(self.folder).as_posix()

    def differs(self, entry: dict) -> str:
        """'' when `entry` was made by this task with this fingerprint, else what differs."""
        if entry.get("task") != self.task:
            return f"task {entry.get('task')} -> {self.task}"
        old = entry.get("fingerprint") if isinstance(entry.get("fingerprint"), dict) else {}
        keys = [k for k in sorted(set(old) | set(self.fingerprint)) if old.get(k) != self.fingerprint.get(k)]
        return ", ".join(f"{k} {_short(old.get(k))} -> {_short(self.fingerprint.get(k))}" for k in keys)

    def input_stat(self, src_rel: str) -> list[list[int]] | None:
        """[size, mtime_ns] of the files the output of input `src_rel` depends on (None: unknown)."""
        if self.sources is None:
            return None
        try:
            return [[st.st_size, st.st_mtime_ns] for st in (os.stat(p) for p in self.sources(src_rel))]
        except (OSError, ValueError):
            return None

    def check(self, dest: Path, input_sha: Callable[[], str], src_rel: str | None = None) -> str:
        """What to do with an existing output: 'skip', 'redo' (junk, or its input changed) or
        'conflict: WHY' (made with other settings, or not by genapps).

        The output and the input (`src_rel`, with `sources`) are hashed only when their size or
        modification time differ from the recorded ones; an equal hash then refreshes the record.
        """
        if not dest.exists():
            return "redo"
        if not dest.is_file():
            return "redo"  # a folder in the way: writing reports it as this file's error
        entry = self.entries.get(self.rel(dest))
        if entry is None:
            try:
                io.read_image(dest)
            except io.ImageError:
                return "redo"  # empty or junk: nothing to keep
            return "conflict: not in the manifest (written by something else or an older genapps)"
        why = self.differs(entry)
        if why:
            return f"conflict: {why}"
        st = dest.stat()
        if entry.get("size") != st.st_size or (entry.get("mtime_ns") != st.st_mtime_ns
                                               and entry.get("sha256") != io.sha256_file(dest)):
            log.info("%s: not the file genapps wrote (truncated or replaced); redoing it", dest)
            return "redo"
        entry["mtime_ns"] = st.st_mtime_ns  # the same bytes (hashed, if touched): no hash next time
        stat = self.input_stat(src_rel) if src_rel is not None else None
        recorded = entry.get("time") if isinstance(entry.get("time"), (int, float)) else 0
        if stat is not None and entry.get("input_stat") == stat and \
                all(mtime < (recorded - RACY_SECONDS) * 1e9 for _, mtime in stat):
            return "skip"  # the input and its side files untouched since the output was made
        try:
            changed = entry.get("input_sha256") != input_sha()
        except (OSError, ValueError):
            return "redo"  # an unreadable input (or side input): processing it reports the error
        if changed:
            log.info("%s: its input changed since it was written; redoing it", dest)
            return "redo"
        if stat is not None:
            entry["input_stat"] = stat
        return "skip"

    def recorder(self, dest: Path, src_rel: str, input_sha: str) -> Callable[[Path], None]:
        """The before_replace hook of io.write_image: append the finished file's line."""
        def record(tmp: Path) -> None:
            st = tmp.stat()  # the rename keeps size and mtime: those of the final file
            entry = {"output": self.rel(dest), "input": src_rel, "input_sha256": input_sha, "task": self.task,
                     "fingerprint": self.fingerprint, "genapps": self.version,
                     "size": st.st_size, "sha256": io.sha256_file(tmp), "time": round(time.time(), 3),
                     "mtime_ns": st.st_mtime_ns}
            stat = self.input_stat(src_rel)
            if stat is not None:
                entry["input_stat"] = stat
            with self.lock:  # the writer threads of _run_files append one line at a time
                io.append_jsonl(self.path, entry, self.fence)
                self.entries[entry["output"]] = self.own[entry["output"]] = entry
        return record

    def compact(self) -> None:
        """Rewrite the file with one line per output (the latest); best effort. A shard rewrites
        its own file; an unsharded run gathers every shard's lines into the one manifest."""
        try:
            io.write_jsonl(self.path, list((self.own if self.sharded else self.entries).values()), self.fence)
            if not self.sharded:
                for path in self.folder.glob(".genapps-manifest.shard-*.jsonl"):
                    path.unlink()
        except (OSError, ValueError) as e:
            log.warning("%s: not compacted (%s)", self.path, getattr(e, "strerror", None) or e)


MANIFEST_NAME = re.compile(r"^\.genapps-manifest(\.shard-\d+-of-\d+)?\.jsonl$")


def manifest_entries(folder: str | Path) -> dict[str, dict]:
    """Output (relative path) -> its manifest line, from every manifest of `folder` (one per shard
    of a sharded run); the newest line of an output wins. {} without a manifest."""
    folder = Path(folder)
    rows = [row for path in sorted(folder.glob(".genapps-manifest*.jsonl")) if MANIFEST_NAME.match(path.name)
            for row in io.read_jsonl(path) if isinstance(row.get("output"), str)]
    rows.sort(key=lambda row: row.get("time") if isinstance(row.get("time"), (int, float)) else 0)
    return {row["output"]: row for row in rows}


def folder_outputs(output_dir: str | Path, outputs: list[str]) -> tuple[dict[str, list[str]], list[dict]]:
    """What the manifest of `output_dir` knows beside a run's `outputs` (paths of its records):
    ({output: every output of the same input, e.g. inpaint's NAME_s0, NAME_s1, ...}, the lines of
    the folder's other outputs made by the same task with the same settings, still on disk).
    The settings are those of the manifest lines of `outputs`; ({}, []) when none has one."""
    folder = Path(output_dir)
    if io.is_url(output_dir) or not folder.is_dir():
        return {}, []
    entries = manifest_entries(folder)
    rel = {}
    for out in outputs:
        try:
            rel[out] = Path(out).relative_to(folder).as_posix()
        except ValueError:
            continue
    mine = [entries[r] for r in rel.values() if r in entries]
    if not mine:
        return {}, []
    same = [e for e in entries.values() if e.get("task") == mine[0].get("task")
            and e.get("fingerprint") == mine[0].get("fingerprint")]
    by_input: dict[str, list[str]] = {}
    for e in same:
        by_input.setdefault(str(e.get("input")), []).append(e["output"])
    siblings = {out: [str(folder / o) for o in sorted(by_input.get(str(entries[r].get("input")), [r]))]
                for out, r in rel.items() if r in entries}
    inputs = {str(entries[r].get("input")) for r in rel.values() if r in entries}
    others = [e for e in same if str(e.get("input")) not in inputs and (folder / e["output"]).is_file()]
    return siblings, others


def manifest_name(shard: Shard | None = None) -> str:
    """The manifest file of a shard: one file per shard, so concurrent shards never append to one file."""
    if shard is None or not shard.active:
        return MANIFEST
    return f".genapps-manifest.shard-{shard.index}-of-{shard.count}.jsonl"


def output_plan(files: list[Path], input_dir: Path, output_dir: Path, ext: str | None, suffix: str,
                output_suffixes: tuple[str, ...] | None) -> dict[Path, dict[str, Path]]:
    """src -> {output suffix: output path} of a folder run (names that collide keep their extension)."""
    base = io.output_paths(files, input_dir, output_dir, ext, suffix)
    renamed = {src for src, d in base.items() if d != io.output_path(src, input_dir, output_dir, ext, suffix)}
    return {src: {k: io.output_path(src, input_dir, output_dir, ext, suffix + k, keep_ext=src in renamed)
                  for k in output_suffixes or ("",)} for src in files}


def map_images(input_dir: str | Path, output_dir: str | Path, process: Callable[[io.LoadedImage], io.LoadedImage],
               *, name: str, task: str, config: dict, fingerprint: dict | None = None,
               extra_inputs: Callable[[Path], list[Path]] | None = None, ext: str | None = None, suffix: str = "",
               quality: int = 95, resume: bool = True, fail_fast: bool = False, reference: str | Path | None = None,
               measure: Measure | None = None, reference_slack: int = 0, pass_source: bool = False,
               output_suffixes: tuple[str, ...] | None = None, fence: paths.Fence | None = None,
               baseline: Baseline | None = None) -> StageResult:
    """Apply `process` to every image under `input_dir` (or to one file), mirroring the tree into `output_dir`.

    `process(image)` returns the output image; with `pass_source` it is called as
    `process(image, src_path)` (inpaint finds the mask of `src` by its relative path). With
    `output_suffixes` (e.g. ("_s0", "_s1")) it returns a dict {suffix: image}, and each is written
    to the mirrored name + suffix (several outputs per input); the record's output is the first.
    Colliding output names, one input file to a named output file, and sharding: see `_plan`.

    Resume: `fingerprint` is a JSON-able dict of everything besides the input that changes the
    output: the result-changing options and the model's identity (e.g. {"model_sha256":
    io.weights_sha256(path), "arch": ..., "scale": 4, "tile": 0, "ext": "png"}). Default: `config`
    without NOT_RESULT_OPTIONS. `extra_inputs(src)` lists other files an output depends on
    (inpaint: the mask of `src`); their hashes join the input's, so editing them redoes the
    output. Each written file gets a line in OUTPUT/.genapps-manifest.jsonl (`Manifest`). With
    `resume`, up-to-date outputs are skipped, junk or outdated ones redone, and an output made with
    other settings makes the call raise ValueError before any work (`_triage`; redo with
    resume=False, the CLI's --overwrite). Temporary files of a killed run are removed. A file that
    cannot be read, processed or written is an error record, not an exception (`_FileStep`;
    `fail_fast` raises BatchAborted instead).

    `measure(output (C,H,W), reference (C,H,W)) -> {metric: value}` runs when `reference` is a
    folder holding the image of the same relative name (or the only one of the same stem); a
    reference up to `reference_slack` px larger is cropped to the output. Skipped outputs are
    measured too. With `baseline(input planes (C, h, w), output (H, W)) -> (C, H, W)` (upscale:
    the input resized bicubic; translate: the input itself), every measured record also gets
    `baseline_<metric>`: that baseline against the same reference (the report's baseline column).
    `input_dir` and `output_dir` may be fsspec URLs (s3://, gs://, az://, memory://;
    http(s):// for input; file:// is local): see `_map_remote`.

    Paths (genapps.paths): the output folder must not be the input folder nor contain it, nor
    overlap `reference`; every output, the manifest included, must resolve (through symbolic links)
    inside it, checked before any work and again at each write; `fence` widens it to a folder
    holding `output_dir` (pairs writes OUT/A and OUT/B; the input listing leaves out all of it).
    The run holds the output folder's lock (paths.output_lock): a second run on it is refused.
    Each input is hashed before it is read and again after its outputs are made: a file (or side
    file) that changed meanwhile is an error record, its output not written.
    """
    input_dir, output_dir = paths.normalize(input_dir), paths.normalize(output_dir)
    if io.is_url(input_dir) or io.is_url(output_dir):
        return _map_remote(input_dir, output_dir, process, name=name, task=task, config=config,
                           fingerprint=fingerprint, extra_inputs=extra_inputs, ext=ext, suffix=suffix, quality=quality,
                           resume=resume, fail_fast=fail_fast, reference=reference, measure=measure,
                           reference_slack=reference_slack, pass_source=pass_source, output_suffixes=output_suffixes,
                           baseline=baseline)
    plan = _plan(input_dir, output_dir, name=name, ext=ext, suffix=suffix, output_suffixes=output_suffixes,
                 reference=reference, fence=fence)
    if fingerprint is None:
        fingerprint = {k: v for k, v in config.items() if k not in NOT_RESULT_OPTIONS}

    def sources(src_rel: str) -> list[Path]:  # the files an output depends on: its input, side files (masks)
        src = plan.input_dir / src_rel
        return [src, *(extra_inputs(src) if extra_inputs else [])]

    with paths.output_lock(plan.output_dir, plan.shard):
        manifest = Manifest(plan.output_dir, task, fingerprint, plan.shard, sources, plan.fence)
        input_sha = _InputHashes(extra_inputs)
        todo = _triage(plan, manifest, input_sha, resume=resume, name=name)
        io.check_writable(plan.output_dir)
        io.remove_stale_temps([d for dests in plan.outputs.values() for d in dests.values()] + [manifest.path])
        step = _FileStep(process, manifest, input_sha, plan.input_dir, pass_source=pass_source,
                         several=bool(output_suffixes), quality=quality, fail_fast=fail_fast,
                         refs=io.image_index(reference) if reference and measure else None, measure=measure,
                         slack=reference_slack, fence=plan.fence)
        files = list(plan.outputs)
        records: list[Record] = []
        start = time.perf_counter()
        bar = Progress(len(files), name, work=sum(v != "skip" for v in todo.values()), unit="file")
        def on_record(record: Record) -> None:
            records.append(record)
            bar.update(Path(record.input).name, record.seconds, record.status)

        try:
            _run_files(step, files, plan.outputs, todo, on_record)
        finally:
            bar.close()
            if manifest.path.exists():
                manifest.compact()
        if baseline is not None and step.refs is not None:
            _measure_baselines(records, plan.input_dir, step.refs, measure, reference_slack, baseline)
    return StageResult(name, task, str(plan.input_dir), str(plan.output_dir), config, records,
                       time.perf_counter() - start)


@dataclass
class _Plan:
    """What a local map_images run does: the folders (of a single file: its folder and the output
    file's), and this shard's inputs in order, each with {output suffix: output path}."""

    input_dir: Path
    output_dir: Path
    outputs: dict[Path, dict[str, Path]]
    shard: Shard
    fence: paths.Fence  # where the run may write (genapps.paths)


def _plan(input_dir: str | Path, output_dir: str | Path, *, name: str, ext: str | None, suffix: str,
          output_suffixes: tuple[str, ...] | None, reference: str | Path | None = None,
          fence: paths.Fence | None = None) -> _Plan:
    """Planning: list the inputs (one file, or a folder's images outside the output folder), name
    their outputs, keep this shard's. ValueError when there is no image, the outputs would
    overwrite the inputs or the reference, or an output resolves outside the output folder (a
    symbolic link in it: paths.Fence).

    Two inputs whose outputs would share a name (`a.png`, `a.jpg` with ext png) keep their
    extension in it (`a_png.png`, `a_jpg.png`). With one input file and an `output_dir` naming an
    image file (see `file_output`), that file is written (`suffix` does not apply) and the manifest
    is the hidden one of its folder. Sharding (genapps.distributed: torchrun's rank or --shard
    I/N): output names are chosen over all files, then only this shard's files (by relative path)
    are done; the shard appends to its own manifest (.genapps-manifest.shard-I-of-N.jsonl) and
    reads every manifest on resume.
    """
    target, skipped = file_output(input_dir, output_dir), ""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    sides = {"reference": reference}
    if target is not None:  # one image to one named file; the manifest goes beside it
        if target.resolve() == input_dir.resolve():
            raise ValueError(f"output {target} is the input file (it would be overwritten)")
        if ext and f".{ext.lstrip('.').lower()}" != target.suffix.lower():
            raise ValueError(f"--ext {ext} contradicts the output file name {target.name}")
        files, input_dir, output_dir = [input_dir], input_dir.parent, target.parent
        plan = {files[0]: {k: target.with_name(f"{target.stem}{k}{target.suffix}") for k in output_suffixes or ("",)}}
        fence = fence or paths.check_output(output_dir, sides=sides)
    else:
        fence = fence or paths.check_output(output_dir, input=input_dir, sides=sides)
        if input_dir.is_file():  # one image: process it as a folder of one
            files, input_dir = [input_dir], input_dir.parent
        else:
            files = [p for p in io.list_images(input_dir) if not fence.holds(p)]
            skipped = io.unsupported_files(input_dir, exclude=fence.root)
    if not files:
        raise ValueError(f"no images in {input_dir}: {f'found only {skipped}' if skipped else 'the folder is empty'} "
                         f"(extensions read: {' '.join(io.IMAGE_EXTS)})")
    if target is None and skipped:
        log.warning("%s: skipped %s (not an image extension genapps reads: %s)", input_dir, skipped,
                    " ".join(io.IMAGE_EXTS))
    if target is None:
        plan = output_plan(files, input_dir, output_dir, ext, suffix, output_suffixes)
    shard = current()
    if shard.active:  # names were chosen over all files (as one process would); this shard does its own
        files = [src for src in files if shard.owns(src.relative_to(input_dir).as_posix())]
        log.info("%s: shard %s has %d of the %d file(s)", name, shard, len(files), len(plan))
        plan = {src: plan[src] for src in files}
    for dest in (d for dests in plan.values() for d in dests.values()):
        fence.check(dest)  # a symbolic link in OUTPUT: refused before any work
    return _Plan(input_dir, output_dir, plan, shard, fence)


class _InputHashes:
    """sha256 of an input, computed once per run; with `extra_inputs(src)` (side files the output
    depends on) the hash of the input's and their hashes together."""

    def __init__(self, extra_inputs: Callable[[Path], list[Path]] | None):
        self.extra_inputs, self.known = extra_inputs, {}

    def __call__(self, src: Path) -> str:
        if src not in self.known:
            self.known[src] = self.fresh(src)
        return self.known[src]

    def fresh(self, src: Path) -> str:
        """The hash of the files as they are now (not remembered)."""
        digests = [io.sha256_file(p) for p in [src, *(self.extra_inputs(src) if self.extra_inputs else [])]]
        return digests[0] if len(digests) == 1 else hashlib.sha256(" ".join(digests).encode()).hexdigest()


def _triage(plan: _Plan, manifest: Manifest, input_sha: _InputHashes, *, resume: bool, name: str) -> dict[Path, str]:
    """Resume triage: src -> 'skip' or 'redo' (everything without `resume`). An output is skipped
    only if its manifest line has the same task and fingerprint and the file and its input still
    have the recorded hashes; junk, truncated or outdated files are redone (Manifest.check). An
    output made with another task/fingerprint, or not in the manifest, is refused: ValueError
    before any work, naming the first difference and how to redo them."""
    todo: dict[Path, str] = {}
    conflicts = []
    for src, dests in plan.outputs.items():
        if not resume:
            todo[src] = "redo"
            continue
        rel = src.relative_to(plan.input_dir).as_posix()
        verdicts = [manifest.check(d, lambda: input_sha(src), rel) for d in dests.values()]
        conflicts += [(d, v) for d, v in zip(dests.values(), verdicts) if v.startswith("conflict")]
        todo[src] = "skip" if all(v == "skip" for v in verdicts) else "redo"
    if conflicts:
        dest, why = conflicts[0]
        raise ValueError(f"{len(conflicts)} existing output(s) in {plan.output_dir} were not made with these settings "
                         f"(first: {dest.name}: {why.removeprefix('conflict: ')}); redo them with --overwrite "
                         f"(in a pipeline: --set {name}.resume=false) or choose another output folder")
    return todo


@dataclass
class _Loaded:
    """What the reader hands on: the input's hash taken before the read, and the image."""

    sha: str
    image: io.LoadedImage
    t0: float  # when the reader started on the file (the record's seconds count from it)


@dataclass
class _Computed:
    sha: str
    outputs: dict  # {output suffix: LoadedImage}
    t0: float


@dataclass
class _FileStep:
    """The per-file step in three parts that `_run_files` overlaps (file i+1 read while file i is
    processed and file i-1 written): `read` hashes the input (and its side files) and reads it;
    `compute` runs `process`; `write` hashes the input again, writes each output atomically inside
    the fence (its manifest line, with the hash taken before the read, appended just before the
    rename) and measures it against the reference. A file that cannot be read, processed or
    written, or that changed while it was processed, is an error record (with `fail_fast`:
    BatchAborted, and nothing after it is written); a skipped one is only measured."""

    process: Callable
    manifest: Manifest
    input_sha: _InputHashes
    input_dir: Path
    pass_source: bool  # process(image, src)
    several: bool  # process returns {output suffix: image}
    quality: int
    fail_fast: bool
    refs: io.ImageIndex | None
    measure: Measure | None
    slack: int
    fence: paths.Fence

    def __call__(self, src: Path, dests: dict[str, Path], verdict: str) -> Record:
        """The three parts one after the other."""
        return self.write(src, dests, self.compute(src, dests, self.read(src, verdict)))

    def read(self, src: Path, verdict: str) -> _Loaded | Record | None:
        """None for a skipped file (nothing to read)."""
        if verdict == "skip":
            return None
        t0 = time.perf_counter()
        try:
            sha = self.input_sha.fresh(src)  # before the read: the manifest vouches for what was processed
            return _Loaded(sha, io.read_image(src), t0)
        except (io.ImageError, ValueError, RuntimeError, OSError) as e:
            return self._error(e, src, None, t0)

    def compute(self, src: Path, dests: dict[str, Path], loaded: _Loaded | Record | None) -> _Computed | Record | None:
        if not isinstance(loaded, _Loaded):
            return loaded
        try:
            out = self.process(loaded.image, src) if self.pass_source else self.process(loaded.image)
            outputs = out if self.several else {"": out}
            if set(outputs) != set(dests):
                raise RuntimeError(f"expected outputs {sorted(dests)}, got {sorted(outputs)}")
            return _Computed(loaded.sha, outputs, loaded.t0)
        except (io.ImageError, ValueError, RuntimeError, OSError) as e:
            return self._error(e, src, None, loaded.t0)

    def write(self, src: Path, dests: dict[str, Path], computed: _Computed | Record | None,
              gate: Callable[[], None] | None = None) -> Record:
        """`gate()` runs before each output is committed (its manifest line, then the rename): the
        pool's writers wait there for the files before this one, so commits keep file order."""
        dest = next(iter(dests.values()))
        rel = src.relative_to(self.input_dir).as_posix()
        ref, why = self.refs.find(rel) if self.refs is not None else (None, "")
        if why:
            log.warning("%s: not measured (%s)", src, why)
        if isinstance(computed, Record):
            return computed
        if computed is None:
            return Record(str(src), str(dest), "skipped", None, _measure(dest, ref, self.measure, self.slack))
        writing = None
        try:
            if self.input_sha.fresh(src) != computed.sha:
                raise InputChanged("the input (or a side file of it, such as its mask) changed while it was "
                                   "processed; its output is not written (run again to redo it)")
            for key, writing in dests.items():
                record = self.manifest.recorder(writing, rel, computed.sha)
                commit = record if gate is None else (lambda tmp, record=record: (gate(), record(tmp)))
                io.write_image(writing, computed.outputs[key], quality=self.quality, before_replace=commit,
                               fence=self.fence)
            result = computed.outputs[next(iter(dests))]
        except (io.ImageError, ValueError, RuntimeError, OSError) as e:
            return self._error(e, src, writing, computed.t0)
        seconds = time.perf_counter() - computed.t0
        metrics = {"output_mp": result.size[0] * result.size[1] / 1e6} | _measure(result, ref, self.measure, self.slack)
        return Record(str(src), str(dest), "ok", None, metrics, seconds)

    def _error(self, e: Exception, src: Path, writing: Path | None, t0: float) -> Record:
        message = _error_message(e, src, writing)
        log.error("%s", message)
        if self.fail_fast:
            raise BatchAborted(message) from None
        return Record(str(src), None, "error", message, {}, time.perf_counter() - t0)


PIPELINE_DEPTH = 2  # files read ahead of the model, and written behind it: memory stays flat
WRITERS = 2  # threads encoding outputs (PNG encoding is most of a cheap model's file time); 1 with fail_fast


def _run_files(step: _FileStep, files: list[Path], outputs: dict[Path, dict[str, Path]], todo: dict[Path, str],
               on_record: Callable[[Record], None]) -> None:
    """Run `step` over `files` in order, the reading of the next files and the writing of the
    previous ones in two worker threads beside the model's compute (PIL's decode and encode, the
    hashing and torch all release the GIL); WRITERS threads encode, one with `fail_fast`. Commits
    (manifest line, rename) go one file at a time in file order; records arrive in file order.
    After a failed write (or a kill inside one), nothing later is committed: `abort` refuses it."""
    if len(files) < 2:
        for src in files:
            on_record(step(src, outputs[src], todo[src]))
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    abort, turn, finished = threading.Event(), threading.Condition(), [0]  # files whose write is over, in order

    def wait_turn(i: int) -> None:
        """Block until files 0..i-1 are written (or one failed: then refuse)."""
        with turn:
            turn.wait_for(lambda: finished[0] == i or abort.is_set())
        if abort.is_set():
            raise BatchAborted("aborted")

    def write(i, src, computed):  # encodes in parallel; commits (manifest line + rename) one at a time, in order
        try:
            if abort.is_set():
                raise BatchAborted("aborted")
            return step.write(src, outputs[src], computed, gate=lambda: wait_turn(i))
        except BaseException:
            abort.set()
            raise
        finally:
            with turn:
                turn.wait_for(lambda: finished[0] == i or abort.is_set())
                finished[0] = max(finished[0], i + 1)
                turn.notify_all()

    reader = ThreadPoolExecutor(1, thread_name_prefix="genapps-read")
    writers = 1 if step.fail_fast else max(1, min(WRITERS, os.cpu_count() or 1))
    writer = ThreadPoolExecutor(writers, thread_name_prefix="genapps-write")
    pending_files, reads, writes, count = iter(files), deque(), deque(), 0

    def read_ahead():
        while len(reads) < PIPELINE_DEPTH and (src := next(pending_files, None)) is not None:
            reads.append((src, reader.submit(step.read, src, todo[src])))

    try:
        read_ahead()
        while reads:
            src, loaded = reads.popleft()
            read_ahead()
            computed = step.compute(src, outputs[src], loaded.result())
            writes.append(writer.submit(write, count, src, computed))
            count += 1
            while writes and (len(writes) > PIPELINE_DEPTH + writers - 1 or writes[0].done()):
                on_record(writes.popleft().result())
        while writes:
            on_record(writes.popleft().result())
    finally:  # on an exception (a read or the model failing, Ctrl-C): reads ahead are dropped, and the
        reader.shutdown(wait=True, cancel_futures=True)  # outputs of the earlier files already made still
        writer.shutdown(wait=True)  # get written, as in a file-by-file loop (unless a write failed: abort)


def _error_message(e: Exception, src: Path, writing: Path | None) -> str:
    """The error record's line: the image's own message, or which file could not be read or written."""
    if isinstance(e, io.ImageError):
        return str(e)
    if isinstance(e, OSError) and e.errno is not None:
        return f"{writing or e.filename or src}: cannot {'write' if writing else 'read'} ({e.strerror})"
    return f"{src}: {e}"


def _measure(output: io.LoadedImage | Path, ref: Path | None, measure: Measure | None,
             slack: int) -> dict[str, float]:
    """Metrics of a written output against its reference; a failure is a warning, not a lost file."""
    if measure is None or ref is None:
        return {}
    try:
        pred = output.color if isinstance(output, io.LoadedImage) else io.read_image(output).color
        return measure_pair(pred, io.read_image(ref).color, measure, slack)
    except (io.ImageError, ValueError) as e:
        log.warning("not measured against %s: %s", ref, e)
        return {}


def _measure_baselines(records: list[Record], input_dir: Path, refs: io.ImageIndex, measure: Measure, slack: int,
                       baseline: Baseline) -> None:
    """Add baseline_<metric> to every record measured against a reference: the task's baseline of
    its input at the output's size, measured as the output was. A failure only leaves it out."""
    from PIL import Image

    for rec in records:
        if rec.status == "error" or not rec.metrics or not rec.output:
            continue
        ref, _ = refs.find(Path(rec.input).relative_to(input_dir).as_posix())
        if ref is None:
            continue
        try:
            with Image.open(rec.output) as out:
                size = (out.height, out.width)
            base = baseline(io.read_image(rec.input).color, size)
            rec.metrics |= {f"baseline_{k}": v for k, v in measure_pair(base, io.read_image(ref).color, measure,
                                                                         slack).items()}
        except (io.ImageError, ValueError, OSError) as e:
            log.warning("%s: baseline not measured (%s)", rec.input, e)


def measure_pair(pred: torch.Tensor, ref: torch.Tensor, measure: Measure, slack: int = 0) -> dict[str, float]:
    """Run `measure` on two (C, H, W) images; colour/grey mismatch is resolved by going to colour.

    A reference up to `slack` px larger is cropped to the prediction (SR crops HR to a multiple
    of the scale).
    """
    dh, dw = ref.shape[-2] - pred.shape[-2], ref.shape[-1] - pred.shape[-1]
    if 0 <= dh <= slack and 0 <= dw <= slack:
        ref = ref[..., :pred.shape[-2], :pred.shape[-1]]
    if pred.shape[-2:] != ref.shape[-2:]:
        raise ValueError(f"output {tuple(pred.shape[-2:])} and reference {tuple(ref.shape[-2:])} differ in size")
    if pred.shape[0] != ref.shape[0]:
        pred, ref = pred.expand(3, -1, -1), ref.expand(3, -1, -1)
    return measure(pred, ref)


REMOTE_CHUNK = 64  # files a remote run stages, processes and uploads together


def _map_remote(input_dir: str | Path, output_dir: str | Path, process, *, name: str, pass_source: bool,
                extra_inputs, **options) -> StageResult:
    """map_images with a remote (fsspec URL) input and/or output folder, staged through a local
    temporary folder, REMOTE_CHUNK files at a time: the chunk's inputs are fetched (linked, when
    local), the remote manifests and the chunk's existing outputs are fetched for the resume check,
    the local map_images runs, then this shard's manifest is uploaded and only then the new outputs
    (so every remote output has its manifest line; a kill loses at most the chunk's uploads, redone
    on resume). Records name the remote files. Remote input with `pass_source` or `extra_inputs`
    (inpaint's masks) is refused: those look up side files by local path.
    """
    if io.is_url(input_dir) and (pass_source or extra_inputs):
        raise ValueError(f"{name}: a remote input folder is not supported for this task (it reads side files "
                         f"by local path); copy the input to a local folder")
    root, rels = _remote_inputs(input_dir)
    shard = current()
    chunks = _chunks(rels, shard)
    start, records = time.perf_counter(), []
    with paths.output_lock(output_dir, shard), tempfile.TemporaryDirectory(prefix="genapps-stage-") as tmp:
        stage = _Staging(input_dir, output_dir, root, Path(tmp), shard)
        # local input: the task sees the real path
        inner = (lambda image, src: process(image, stage.original(src))) if pass_source else process
        side = (lambda src: extra_inputs(stage.original(src))) if extra_inputs else None
        for chunk in filter(None, chunks):
            outs = stage.fetch(chunk, options["ext"], options["suffix"], options["output_suffixes"])
            result = map_images(stage.input, stage.output, inner, name=name, pass_source=pass_source,
                                extra_inputs=side, **options)
            records += stage.publish(result.records, outs)
    return StageResult(name, options["task"], str(input_dir), str(output_dir), options["config"], records,
                       time.perf_counter() - start)


def _remote_inputs(input_dir: str | Path) -> tuple[Path | None, list[str]]:
    """The input images of a remote run as relative paths, and the local input root (None for a
    remote input). ValueError when there is none."""
    root = None
    if io.is_url(input_dir):
        rels = io.list_remote_images(str(input_dir))
    else:
        root = Path(input_dir)
        files = [root] if root.is_file() else io.list_images(root)
        root = root.parent if root.is_file() else root
        rels = [p.relative_to(root).as_posix() for p in files]
    if not rels:
        raise ValueError(f"no images in {input_dir} (extensions: {', '.join(io.IMAGE_EXTS)})")
    return root, rels


def _chunks(rels: list[str], shard: Shard) -> list[list[str]]:
    """This shard's inputs in chunks of about REMOTE_CHUNK; same-stem files (a.png, a.jpg) stay in
    one chunk: their output names depend on each other."""
    groups: dict[str, list[str]] = {}
    for rel in rels:
        if shard.owns(rel):
            groups.setdefault(shard_key(rel), []).append(rel)
    chunks: list[list[str]] = [[]]
    for group in groups.values():
        if len(chunks[-1]) >= REMOTE_CHUNK:
            chunks.append([])
        chunks[-1] += group
    return chunks


class _Staging:
    """The local side of a remote run: `input` (TMP/in) holds the current chunk's inputs, `output`
    (TMP/out, or the local output folder) the remote manifests (fetched at the start) and the
    chunk's outputs."""

    def __init__(self, input_dir: str | Path, output_dir: str | Path, root: Path | None, tmp: Path, shard: Shard):
        self.input_dir, self.output_dir, self.root, self.shard = str(input_dir), str(output_dir), root, shard
        self.remote_in, self.remote_out = io.is_url(input_dir), io.is_url(output_dir)
        self.input, self.output = Path(tmp, "in"), Path(tmp, "out") if self.remote_out else Path(output_dir)
        self.existing = io.remote_files(self.output_dir) if self.remote_out else {}
        for rel in self.existing:
            if MANIFEST_NAME.match(rel):
                io.download(io.url_join(self.output_dir, rel), self.output / rel)

    def original(self, staged: Path):
        """The input file (URL or local path) that `staged` stands for."""
        rel = staged.relative_to(self.input).as_posix()
        return io.url_join(self.input_dir, rel) if self.remote_in else self.root / rel

    def fetch(self, chunk: list[str], ext: str | None, suffix: str,
              output_suffixes: tuple[str, ...] | None) -> dict[Path, list[str]]:
        """Stage the chunk's inputs and their existing remote outputs (for the resume check);
        return staged input -> its outputs' relative paths."""
        shutil.rmtree(self.input, ignore_errors=True)
        for rel in chunk:
            (self.input / rel).parent.mkdir(parents=True, exist_ok=True)
            if self.remote_in:
                io.download(io.url_join(self.input_dir, rel), self.input / rel)
            else:
                os.symlink((self.root / rel).resolve(), self.input / rel)
        plan = output_plan(io.list_images(self.input), self.input, self.output, ext, suffix, output_suffixes)
        outs = {src: [d.relative_to(self.output).as_posix() for d in dests.values()] for src, dests in plan.items()}
        for rel in (r for rels in outs.values() for r in rels):
            if rel in self.existing and not (self.output / rel).exists():
                io.download(io.url_join(self.output_dir, rel), self.output / rel)
        return outs

    def publish(self, records: list[Record], outs: dict[Path, list[str]]) -> list[Record]:
        """Upload this shard's manifest, then the chunk's new outputs, and drop the staged outputs
        (remote output only); return the records renamed to the original input and remote output."""
        if self.remote_out:
            manifest = self.output / manifest_name(self.shard)
            if manifest.exists():  # the lines first: a remote output never lacks its line
                io.upload(manifest, io.url_join(self.output_dir, manifest.name))
            for r in records:
                for rel in outs[Path(r.input)] if r.status == "ok" else []:
                    io.upload(self.output / rel, io.url_join(self.output_dir, rel))
            for rel in (r for rels in outs.values() for r in rels):
                (self.output / rel).unlink(missing_ok=True)
        for r in records:
            out_rel = Path(r.output).relative_to(self.output).as_posix() if r.output else None
            r.input = str(self.original(Path(r.input)))
            r.output = io.url_join(self.output_dir, out_rel) if out_rel and self.remote_out else r.output
        return records
