"""downscale: low-resolution copies of a folder (antialiased bicubic), the start of an SR pipeline.

HR -> LR here, LR -> SR by `upscale`, SR against HR through upscale's `reference` option or an
`evaluate` stage. Images are cropped to a multiple of the scale first so that x`scale`
upscaling gives back the HR size exactly. Alpha, grayscale and 16-bit are kept.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from genapps import io
from genapps.batch import map_images
from genapps.inference import resize
from genapps.records import StageResult
from genapps.tasks.upscale.config import DownscaleConfig as Config

TASK = "downscale"


def downscale_image(image: io.LoadedImage, scale: int) -> io.LoadedImage:
    h, w = image.size
    if min(h, w) < scale:
        raise ValueError(f"{w}x{h} is too small to downscale x{scale}")
    hh, ww = h - h % scale, w - w % scale
    size = (hh // scale, ww // scale)

    def shrink(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else resize(t[None, :, :hh, :ww], size)[0]

    return io.LoadedImage(shrink(image.color), shrink(image.alpha), image.bit_depth)


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device: torch.device,
        name: str = TASK) -> StageResult:
    return map_images(input_dir, output_dir, lambda im: downscale_image(im, cfg.scale), name=name, task=TASK,
                      config=asdict(cfg), ext=cfg.ext, resume=cfg.resume, fail_fast=cfg.fail_fast)
