"""evaluate: PSNR/SSIM of a folder of predictions against a folder of references.

Files pair up by relative path without extension; with `masks`, only pixels where the mask is
white count (an inpainting hole, say). Records show reference -> prediction in the report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from genapps import io, metrics
from genapps.batch import Record, StageResult, measure_pair, progress

log = logging.getLogger(__name__)

TASK = "evaluate"


@dataclass(frozen=True)
class Config:
    reference: str = field(metadata={"path": True})
    y_channel: bool = False  # BT.601 luma (MATLAB rgb2ycbcr), the SR protocol
    crop_border: int = 0  # pixels shaved each side, the SR protocol uses the scale
    masks: str | None = field(default=None, metadata={"path": True})
    quantize: bool = True  # round predictions to 8 bits first, as saved files are

    def __post_init__(self):
        if self.crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {self.crop_border}")


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device: torch.device,
        name: str = TASK) -> StageResult:
    """Measure every prediction under `input_dir` that has a reference.

    Nothing is written: the stage's output is its input, so a pipeline continues from there.
    """
    start = time.perf_counter()
    pairs, unmatched = io.pair_files(input_dir, cfg.reference)
    if not pairs:
        raise ValueError(f"no prediction in {input_dir} has a reference of the same name in {cfg.reference}")
    for p in unmatched:
        log.warning("no reference for %s", p)
    masks = io.image_index(cfg.masks) if cfg.masks else {}
    records = []
    for pred_path, ref_path in progress(pairs, total=len(pairs), desc=name):
        t0 = time.perf_counter()
        try:
            pred, ref = io.read_image(pred_path).color, io.read_image(ref_path).color
            mask = None
            if cfg.masks:
                key = pred_path.relative_to(input_dir).with_suffix("").as_posix()
                if key not in masks:
                    raise ValueError(f"no mask for {pred_path} in {cfg.masks}")
                mask = (io.read_image(masks[key]).color.mean(0, keepdim=True) > 0.5).float()[None].to(device)

            def measure(p, r):
                p = metrics.quantize(p) if cfg.quantize else p
                m = metrics.image_metrics(p[None].to(device), r[None].to(device), y_channel=cfg.y_channel,
                                          crop_border=cfg.crop_border, mask=mask)
                return {k: v[0] for k, v in m.items()}

            values = measure_pair(pred, ref, measure)
            records.append(Record(str(ref_path), str(pred_path), "ok", None, values, time.perf_counter() - t0))
        except (io.ImageError, ValueError) as e:
            log.error("%s", e)
            records.append(Record(str(ref_path), str(pred_path), "error", str(e), {}, time.perf_counter() - t0))
    summary = {"pairs": len(pairs), "unmatched_predictions": [str(p) for p in unmatched]}
    return StageResult(name, TASK, str(input_dir), str(input_dir), asdict(cfg), records,
                       time.perf_counter() - start, summary)
