"""evaluate: PSNR/SSIM of a folder of predictions against a folder of references.

Files pair up by relative path (the same name, else the only image of the same name without
extension, see io.ImageIndex.find); with `masks`, only pixels where the mask is white count (an
inpainting hole, say); an all-black mask is an error record "not measured: empty mask", never
NaN. Records show reference -> prediction in the report; unpaired files are listed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from genapps import distributed, io, metrics
from genapps.batch import measure_pair, progress
from genapps.records import Record, StageResult
from genapps.tasks.evaluate.config import Config

log = logging.getLogger(__name__)

TASK = "evaluate"


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device: torch.device,
        name: str = TASK) -> StageResult:
    """Measure every prediction under `input_dir` that has a reference.

    Nothing is written: the stage's output is its input, so a pipeline continues from there.
    Files that pair with nothing (or ambiguously: `a.png` and `a.jpg` beside each other) are
    listed in the summary's "unpaired" (the CLI prints each), never guessed.
    """
    start = time.perf_counter()
    pairs, unpaired = io.pair_files(input_dir, cfg.reference)
    if unpaired:  # the CLI lists each one on stderr from the summary
        log.info("%d file(s) not paired; see the report's 'unpaired'", len(unpaired))
    if not pairs:
        raise ValueError(f"no prediction in {input_dir} pairs with a reference in {cfg.reference} "
                         f"({len(unpaired)} unpaired file(s); pairing is by relative path and name)")
    shard = distributed.current()
    if shard.active:  # pairs by their prediction's relative path, unpaired files by their own
        def rel(p: Path) -> str:
            root = Path(input_dir) if Path(input_dir) in p.parents else Path(cfg.reference)
            return p.relative_to(root).as_posix()

        pairs = [(p, r) for p, r in pairs if shard.owns(rel(p))]
        unpaired = [(p, why) for p, why in unpaired if shard.owns(rel(p))]
    masks = io.image_index(cfg.masks) if cfg.masks else None
    records = []
    for pred_path, ref_path in progress(pairs, total=len(pairs), desc=name):
        t0 = time.perf_counter()
        try:
            values = _measure_one(cfg, Path(input_dir), pred_path, ref_path, masks, device)
            records.append(Record(str(ref_path), str(pred_path), "ok", None, values, time.perf_counter() - t0))
        except (io.ImageError, ValueError) as e:
            message = str(e) if str(e).startswith(str(pred_path)) or isinstance(e, io.ImageError) else f"{pred_path}: {e}"
            log.error("%s", message)
            records.append(Record(str(ref_path), str(pred_path), "error", message, {}, time.perf_counter() - t0))
    summary = {"pairs": len(pairs), "unpaired": [{"file": str(p), "reason": why} for p, why in unpaired]}
    return StageResult(name, TASK, str(input_dir), str(input_dir), asdict(cfg), records,
                       time.perf_counter() - start, summary)


def _measure_one(cfg: Config, input_dir: Path, pred_path: Path, ref_path: Path, masks: io.ImageIndex | None,
                 device: torch.device) -> dict[str, float]:
    """Metrics of one pair (inside its mask with `masks`); a ValueError says what is wrong."""
    pred, ref = io.read_image(pred_path).color, io.read_image(ref_path).color
    mask = None
    if masks is not None:
        mask_path, why = masks.find(pred_path.relative_to(input_dir).as_posix())
        if mask_path is None:
            raise ValueError(f"no mask in {cfg.masks} ({why})")
        mask = (io.read_image(mask_path).color.mean(0, keepdim=True) > 0.5).float()[None]
        if mask.shape[-2:] != pred.shape[-2:]:
            raise ValueError(f"mask {mask_path} is {mask.shape[-1]}x{mask.shape[-2]}, the prediction "
                             f"{pred.shape[-1]}x{pred.shape[-2]}")
        if metrics.shave(mask, cfg.crop_border).sum() == 0:
            raise ValueError(f"not measured: empty mask ({mask_path} has no white pixel"
                             f"{' inside --crop-border' if cfg.crop_border else ''})")
        mask = mask.to(device)

    def measure(p, r):
        p = metrics.quantize(p) if cfg.quantize else p
        m = metrics.image_metrics(p[None].to(device), r[None].to(device), y_channel=cfg.y_channel,
                                  crop_border=cfg.crop_border, mask=mask)
        return {k: v[0] for k, v in m.items()}

    return measure_pair(pred, ref, measure)
