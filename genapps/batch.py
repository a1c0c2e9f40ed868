"""Records that every task returns, and the folder loop shared by the per-image tasks.

`map_images` walks an input folder, mirrors it into the output folder, resumes (skips outputs
that exist), turns every bad file into an error record instead of a crash, writes atomically,
and, given a reference folder, measures each output against its reference.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from genapps import io

log = logging.getLogger(__name__)


@dataclass
class Record:
    """One input file processed by one stage."""

    input: str
    output: str | None
    status: str  # "ok" | "error" | "skipped"
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class StageResult:
    """What one stage (or one batch command) did: its records plus task-specific numbers."""

    name: str
    task: str
    input_dir: str
    output_dir: str
    config: dict
    records: list[Record]
    seconds: float
    summary: dict = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.records if r.status == "error"]


class BatchAborted(Exception):
    """--fail-fast stopped the batch at its first bad file."""


def progress(iterable, total: int | None = None, desc: str = ""):
    """A tqdm bar on a terminal; silent in CI and pipes (records and logs say what happened)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False)


Measure = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]


def map_images(
    input_dir: str | Path,
    output_dir: str | Path,
    process: Callable[[io.LoadedImage], io.LoadedImage],
    *,
    name: str,
    task: str,
    config: dict,
    ext: str | None = None,
    suffix: str = "",
    quality: int = 95,
    resume: bool = True,
    fail_fast: bool = False,
    reference: str | Path | None = None,
    measure: Measure | None = None,
    reference_slack: int = 0,
    pass_source: bool = False,
    output_suffixes: tuple[str, ...] | None = None,
) -> StageResult:
    """Apply `process` to every image under `input_dir` (or to one file), mirroring the tree into `output_dir`.

    `process(image)` returns the output image; with `pass_source` it is called as
    `process(image, src_path)` (inpaint finds the mask of `src` by its relative path). With
    `output_suffixes` (e.g. ("_s0", "_s1")) it returns a dict {suffix: image}, and each is written
    to the mirrored name + suffix (several outputs per input); the record's output is the first.

    `measure(output (C,H,W), reference (C,H,W)) -> {metric: value}` runs when `reference` is a
    folder holding an image with the same relative path (any extension); a reference up to
    `reference_slack` px larger is cropped to the output. Existing (skipped) outputs are measured too.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if input_dir.is_file():  # one image: process it as a folder of one
        files, input_dir = [input_dir], input_dir.parent
    else:
        files = [p for p in io.list_images(input_dir) if output_dir.resolve() not in p.resolve().parents]
    if output_dir.resolve() == input_dir.resolve() or output_dir.resolve() in input_dir.resolve().parents:
        raise ValueError(f"output folder {output_dir} must not be the input folder or contain it (inputs would be "
                         f"overwritten)")
    io.check_writable(output_dir)
    refs = io.image_index(reference) if reference else {}
    records: list[Record] = []
    start = time.perf_counter()
    for src in progress(files, total=len(files), desc=name):
        dests = {k: io.output_path(src, input_dir, output_dir, ext, suffix + k) for k in output_suffixes or ("",)}
        dest = next(iter(dests.values()))
        ref = refs.get(src.relative_to(input_dir).with_suffix("").as_posix()) if measure else None
        if resume and all(d.exists() for d in dests.values()):
            records.append(Record(str(src), str(dest), "skipped", None, _measure(dest, ref, measure, reference_slack)))
            continue
        t0 = time.perf_counter()
        try:
            image = io.read_image(src)
            out = process(image, src) if pass_source else process(image)
            outputs = out if output_suffixes else {"": out}
            if set(outputs) != set(dests):
                raise RuntimeError(f"expected outputs {sorted(dests)}, got {sorted(outputs)}")
            for key, d in dests.items():
                io.write_image(d, outputs[key], quality=quality)
            result = outputs[next(iter(dests))]
        except (io.ImageError, ValueError, RuntimeError) as e:
            message = str(e) if isinstance(e, io.ImageError) else f"{src}: {e}"
            log.error("%s", message)
            records.append(Record(str(src), None, "error", message, {}, time.perf_counter() - t0))
            if fail_fast:
                raise BatchAborted(message) from None
            continue
        seconds = time.perf_counter() - t0
        metrics = {"output_mp": result.size[0] * result.size[1] / 1e6} | _measure(result, ref, measure, reference_slack)
        records.append(Record(str(src), str(dest), "ok", None, metrics, seconds))
    return StageResult(name, task, str(input_dir), str(output_dir), config, records, time.perf_counter() - start)


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
