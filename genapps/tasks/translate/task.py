"""translate: image-to-image translation of folders with pix2pix (paired) and CycleGAN (unpaired) models.

The pipeline: load a model (a bundled name, a genapps .safetensors, or the reference
implementation's latest_net_G*.pth), run it through genapps.inference (reflect-padded to the
network's multiple, whole or in cross-faded tiles, cropped back; grey and alpha round trip), write
the same bit depth. Deterministic by default (eval mode: no dropout, batch norm's running stats);
`stochastic` turns the dropout layers on, seeded per file, as the reference's test-time noise
(and a learned degradation's input noise: CycleGAN's G_B trained with --b-noise).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from genapps import io, metrics
from genapps.batch import map_images
from genapps.inference import auto_tile, infer, round_trip
from genapps.records import StageResult
from genapps.tasks.translate.config import Config
from genapps.tasks.translate.models import InputNoise, UnetAbClassifier, load_model

log = logging.getLogger(__name__)

TASK = "translate"


def translate_tensor(g: nn.Module, x: torch.Tensor, tile: int = 0, overlap: int = 32,
                     name: str | None = None, tta: bool = False) -> torch.Tensor:
    """(B, Cin, h, w) in [0, 1] -> (B, Cout, h, w) in [0, 1].

    inference.infer at scale 1: the image is padded to the network's multiple (reflect, split over
    both ends) and cropped back; with `tile` > 0, tiles of tile + 2*overlap px are cross-faded.
    A NaN/inf output is a NonFiniteOutput naming the model (`name`); `tta`: the mean over the 8
    flips and transposes (8x the time).
    """
    y = infer(g, x, tile=tile, overlap=overlap, batch_size=1, centre=True, forward=lambda t: g(t * 2 - 1),
              name=name, tta=tta)
    return ((y + 1) / 2).clamp(0, 1)


def model_channels(g: nn.Module) -> tuple[int, int]:
    """(input, output) channels of a generator, from its first and last convolutions (a colouriser
    that classifies colours, unet-ab, makes 3 channels from its last layer's Q scores)."""
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return convs[0].in_channels, 3 if isinstance(g, UnetAbClassifier) else convs[-1].out_channels


COLOUR_CHROMA = 0.02  # mean max(R, G, B) - min(R, G, B) above which an input counts as colour (5/255)


def mean_chroma(planes: torch.Tensor) -> float:
    """The mean chroma (max - min over R, G, B, in [0, 1]) of (C, H, W) planes; 0 for grey (C = 1)."""
    if planes.shape[0] < 3:
        return 0.0
    rgb = planes[:3].float()
    return float((rgb.amax(0) - rgb.amin(0)).mean())


def colour_input_warning(planes: torch.Tensor, channels: tuple[int, int]) -> str | None:
    """The warning for a colour image given to a colouriser (a model reading 1 channel and writing
    3): it runs on the image's BT.601 luma and the output's colours are the model's, not the
    input's. None for grey input, a grey-looking RGB file (mean chroma <= COLOUR_CHROMA) or
    another model."""
    chroma = mean_chroma(planes)
    if channels != (1, 3) or chroma <= COLOUR_CHROMA:
        return None
    return (f"colour input (mean chroma {chroma * 255:.0f}/255): the colouriser ran on its luma only, so its own "
            f"colours were replaced by the model's; give grey images")


def translate_image(g: nn.Module, image: io.LoadedImage, cfg: Config, device: torch.device) -> io.LoadedImage:
    """Translate the colour planes; grey input -> grey output unless the model makes colour from grey
    (1 -> 3 channels, e.g. colorize); alpha passes through unchanged; the bit depth is kept."""
    def step(planes: torch.Tensor) -> torch.Tensor:
        x = planes[None].to(device)
        tile = cfg.tile or auto_tile(g, x, overlap=cfg.tile_overlap, batch_size=1, max_memory=cfg.max_memory,
                                     forward=lambda t: g(t * 2 - 1), label=cfg.model)[0]
        return translate_tensor(g, x, tile, cfg.tile_overlap, cfg.model, cfg.tta)[0].cpu()

    return round_trip(image, step, channels=model_channels(g)[0])


def measure(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """PSNR (dB), SSIM and L1 (in [0, 1] units) of an 8-bit-quantized output against its target."""
    pred, ref = metrics.quantize(pred[None]), ref[None]
    return {"psnr": float(metrics.psnr(pred, ref)[0]), "ssim": float(metrics.ssim(pred, ref)[0]),
            "l1": float(metrics.mae(pred, ref)[0])}


def set_stochastic(g: nn.Module, on: bool) -> int:
    """Put the dropout and input-noise layers in train mode (on) or eval mode; returns how many there are."""
    drops = [m for m in g.modules() if isinstance(m, (nn.Dropout, InputNoise))]
    for m in drops:
        m.train(on)
    return len(drops)


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device: torch.device,
        name: str = TASK) -> StageResult:
    """Translate every image under `input_dir` into `output_dir` (mirrored tree)."""
    flags = {"netg": cfg.netg, "ngf": cfg.ngf, "norm": cfg.norm, "dropout": cfg.dropout}
    g, info = load_model(cfg.model, cfg.direction, flags)
    g = g.to(device)
    if cfg.stochastic and not set_stochastic(g, True):
        hint = (" (a reference U-Net's dropout does not show in its keys: add --dropout if it was trained "
                "with it, the pix2pix default)" if info.extra.get("reference_netg", "").startswith("unet") else "")
        raise ValueError(f"--stochastic: model {cfg.model} has no dropout or input-noise layers{hint}")
    root = Path(input_dir).parent if Path(input_dir).is_file() else Path(input_dir)
    channels, warnings = model_channels(g), {}

    def process(image: io.LoadedImage, src: Path) -> io.LoadedImage:
        warning = colour_input_warning(image.color, channels)
        if warning:
            log.warning("%s: %s", src, warning)
            warnings[str(src)] = warning
        if cfg.stochastic:  # reproducible noise: seeded by (seed, file), not by the order of files
            torch.manual_seed(zlib.crc32(f"{cfg.seed}:{src.relative_to(root).as_posix()}".encode()))
        return translate_image(g, image, cfg, device)

    t0 = time.perf_counter()
    fingerprint = {"model_sha256": info.sha256, "arch": info.arch, "config": info.config,
                   "direction": cfg.direction, "stochastic": cfg.stochastic, "seed": cfg.seed if cfg.stochastic else None,
                   "tile": cfg.tile, "tile_overlap": cfg.tile_overlap if cfg.tile else None,
                   "ext": cfg.ext, "suffix": cfg.suffix, "quality": cfg.quality}
    if cfg.tta:  # (absent when off: outputs written before the option stay valid)
        fingerprint["tta"] = True
    result = map_images(input_dir, output_dir, process, name=name, task=TASK, fingerprint=fingerprint,
                        config=asdict(cfg) | {"model_info": info.as_report()}, ext=cfg.ext, suffix=cfg.suffix,
                        quality=cfg.quality, resume=cfg.resume, fail_fast=cfg.fail_fast, reference=cfg.reference,
                        measure=measure, pass_source=True, baseline=lambda planes, size: planes)  # the input as it is
    for rec in result.records:
        rec.warning = warnings.get(rec.input) if rec.status == "ok" else rec.warning
    ok = [r for r in result.records if r.status == "ok"]
    mp = sum(r.metrics.get("output_mp", 0.0) for r in ok)
    result.summary = {"model": cfg.model, "arch": info.arch, "direction": cfg.direction,
                      "stochastic": cfg.stochastic, "output_mp": round(mp, 3),
                      "seconds_per_mp": round(sum(r.seconds for r in ok) / max(mp, 1e-9), 3) if mp else None,
                      "seconds": round(time.perf_counter() - t0, 2)}
    if warnings:
        result.summary["colour_inputs"] = (f"{len(warnings)} colour image(s) colourised from their luma only "
                                           f"(their colours replaced; see each record's warning)")
    return result
