"""A template task: the whole contract a new application fulfils (tests/test_fifth_task.py runs it).

A real task is a folder genapps/tasks/NAME/ whose __init__.py holds the TaskSpec (light: no torch)
and whose task.py holds what the spec's `module` names (Config + run; models in models.py, training
in training.py); it is added with one line in genapps.tasks.TASKS: "NAME": "genapps.tasks.NAME:SPEC".
This file puts both in one module to stay short. `posterize` keeps `bits` bits per channel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from genapps import io
from genapps.batch import map_images
from genapps.tasks import TaskSpec
from genapps.views import Metric, View


@dataclass(frozen=True)
class Config:
    """Options of `genapps posterize` and of a `posterize` pipeline stage (unknown keys are refused)."""

    bits: int = field(default=3, metadata={"choices": (1, 2, 3, 4, 5, 6, 7), "help": "Bits kept per channel."})
    # fields the folder loop uses; their help, flags (--overwrite) and ranges come from COMMON_FIELDS
    ext: str | None = None
    suffix: str = ""
    quality: int = 95
    resume: bool = True
    fail_fast: bool = False


def posterize(image: io.LoadedImage, bits: int) -> io.LoadedImage:
    """Colour (C, H, W) in [0, 1] -> the same with 2**bits levels per channel; alpha and bit depth kept."""
    levels = 2 ** bits - 1
    return io.LoadedImage((image.color * levels).round() / levels, image.alpha, image.bit_depth)


def levels_left(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """The task's own per-image metric (with a reference folder): distinct values of the output."""
    return {"levels": float(torch.unique((out * 255).round()).numel())}


def run(cfg: Config, input_dir, output_dir, device, name: str = "posterize"):
    return map_images(input_dir, output_dir, lambda im: posterize(im, cfg.bits), name=name, task="posterize",
                      config=asdict(cfg), fingerprint={"bits": cfg.bits, "ext": cfg.ext, "suffix": cfg.suffix},
                      ext=cfg.ext, suffix=cfg.suffix, quality=cfg.quality, resume=cfg.resume,
                      fail_fast=cfg.fail_fast)


SPEC = TaskSpec(
    name="posterize",
    module=__name__,  # a real task: "genapps.tasks.posterize.task"
    help="Keep a few bits per channel of every image of a folder (or one image).",
    remote=True,  # map_images without side folders: fsspec URLs work
    renames_outputs=lambda cfg: bool(cfg.suffix),
    view=View(output="posterized", metrics=(Metric("levels", "grey levels left", lower_is_better=True),),
              main=("psnr", "levels")),
)
