"""The options of `genapps upscale` and of the `downscale` stage (light: no torch), so that the CLI
builds its options and a rerun with nothing to do finishes without importing the models."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from genapps import paths

log = logging.getLogger("genapps.tasks.upscale.task")

RUNTIMES = ("auto", "torch", "ncnn")  # as genapps.zoo.on_engine takes them (this module stays light: no import)


@dataclass(frozen=True)
class Config:
    """Options of `genapps upscale` and of an `upscale` pipeline stage."""

    model: str | None = field(default=None, metadata={  # bundled name, file, "bicubic"; default sr-x{scale}
        "path": "if_exists", "flags": ("-m", "--model"),
        "help": "Bundled or zoo name (genapps info), a genapps .safetensors or any file spandrel reads "
                "(.pth/.pt/.ckpt/.safetensors), or 'bicubic'; default sr-x{scale}."})
    scale: int = field(default=4, metadata={"flags": ("-s", "--scale"), "choices": (2, 3, 4)})
    outscale: float | None = field(default=None, metadata={  # final factor; default: the model's own scale
        "help": "Final scale; the model's output is resized to it."})
    noise: float | None = field(default=None, metadata={  # SRMD's noise map input (non-blind models)
        "help": "SRMD models (srmd-x2/x3/x4): the input's noise level, sigma on the 0-255 scale (default 3)."})
    tile: int = field(default=0, metadata={"flags": ("-t", "--tile"),  # LR tile size in px, 0 = whole image
                                           "help": "Tile size in input px (0 = whole image when it fits "
                                                   "--max-memory, else the largest tile that does)."})
    tile_overlap: int = 16
    max_memory: float | None = field(default=None, metadata={  # GB of process memory the tile choice aims at
        "help": "GB of memory (RAM; GPU memory on CUDA) that -t 0 fits its tiles in; default a quarter of RAM, "
                "at most 4 GB (CUDA: half the free GPU memory); 0 = no limit."})
    precision: str = field(default="fp32", metadata={"flag_values": {  # fp16 / bf16 apply on CUDA only
        "--half": ("fp16", "fp16 on CUDA (ignored on CPU)."),
        "--bf16": ("bf16", "bf16 on CUDA, and on CPUs with native bf16 (about 2x faster there).")}})
    runtime: str = field(default="auto", metadata={"choices": RUNTIMES, "help": (
        "What runs the ncnn wheels' models (genapps info) on the CPU in fp32: auto and ncnn = the ncnn engine "
        "(faster on the U-Nets), torch = genapps's converted graph.")})
    batch_size: int = field(default=4, metadata={"help": "Tiles per forward pass."})
    tta: bool = field(default=False, metadata={"flags": ("-x", "--tta"), "help": (
        "Test-time augmentation: each pass is the mean over the 8 flips and transposes of its input (8x the time).")})
    alpha: str = field(default="model", metadata={"choices": ("model", "bicubic")})  # how alpha is upscaled
    ext: str | None = None  # output extension, default: the input's
    suffix: str = ""
    quality: int = 95
    resume: bool = True
    fail_fast: bool = False
    reference: str | None = field(default=None, metadata={"path": True, "type": "dir",
                                                          "help": "HR folder: report Y-PSNR/SSIM per image."})

    def __post_init__(self):
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
        if self.alpha not in ("model", "bicubic"):
            raise ValueError(f"alpha must be 'model' or 'bicubic', got {self.alpha!r}")
        if self.tile < 0 or self.tile_overlap < 0 or self.batch_size < 1:
            raise ValueError("tile and tile_overlap must be >= 0 and batch_size >= 1")
        if self.max_memory is not None and self.max_memory < 0:
            raise ValueError(f"max_memory must be >= 0 GB (0 = no limit), got {self.max_memory}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {self.precision!r}")
        paths.check_ext(self.ext)
        if self.noise is not None and not 0 <= self.noise <= 75:
            raise ValueError(f"noise must be in [0, 75] (sigma on the 0-255 scale), got {self.noise}")
        if self.outscale is not None and not 1 <= self.outscale <= 16:
            raise ValueError(f"outscale must be in [1, 16] (output size over input size; the downscale task "
                             f"shrinks), got {self.outscale}")
        if 0 < self.tile < 8:
            raise ValueError(f"tile must be 0 (whole image) or >= 8 px, got {self.tile}")
        if 0 < self.tile < 32:
            log.warning("--tile %d is small: many tiny forward passes, several times slower than tiles of "
                        "128-512 px", self.tile)
        if self.tile and self.tile_overlap < 8:
            log.warning("--tile-overlap %d px may leave visible seams between tiles (default 16)", self.tile_overlap)


@dataclass(frozen=True)
class DownscaleConfig:
    """Options of a `downscale` pipeline stage."""

    scale: int = 4
    ext: str | None = None
    resume: bool = True
    fail_fast: bool = False

    def __post_init__(self):
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
