"""`genapps train sr`: PSNR-oriented (L1) or GAN training of an SRResNet on a folder of HR photos.

HR crops are cut from images held in memory; LR is made on the fly by antialiased bicubic
downscaling (optionally followed by blur/noise/JPEG via albumentations, for real-world photos).
The GAN variant starts from a PSNR model and adds a perceptual and a relativistic adversarial
loss against a spectral-norm PatchGAN.
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genapps import io, losses
from genapps.nn import PatchDiscriminator
from genapps.tasks.upscale import TASK, bicubic_downscale, evaluate_model, load_model
from genapps.tasks.upscale.models import define_G
from genapps.train import TrainConfig, TrainSpec, check_resume, data_fingerprint, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SRTrainConfig:
    data: str
    out: str
    val: str | None = None
    scale: int = 4
    gan: bool = False
    init: str | None = None  # start from these weights (a PSNR model, for --gan)
    channels: int = 48
    blocks: int = 6
    steps: int = 20000
    batch_size: int = 16
    patch: int = 32  # LR crop size
    lr: float = 5e-4
    degrade: str = "bicubic"  # bicubic | real (blur, noise, JPEG after the downscale)
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0  # GAN only
    adversarial_weight: float = 5e-3  # GAN only
    d_channels: int = 32  # GAN only: width of the PatchGAN's first layer (2 strided layers)
    ema: float = 0.999  # decay of the generator's EMA (GAN fine-tunes want a shorter one, e.g. 0.99)
    val_every: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
        if self.degrade not in ("bicubic", "real"):
            raise ValueError(f"degrade must be 'bicubic' or 'real', got {self.degrade!r}")
        if Path(self.out).suffix != ".safetensors":
            raise ValueError(f"--out must be a .safetensors file (its card is written beside it as .json), "
                             f"got {self.out}")
        for name in ("channels", "blocks", "steps", "batch_size", "patch", "d_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pixel_weight", "perceptual_weight", "adversarial_weight", "val_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (0 = off), got {self.ema}")


def readable_images(folder: str | Path):
    """(path, (3, H, W) float image in [0, 1]) of every readable image of a folder; bad ones are
    skipped with a warning."""
    for path in io.list_images(folder):
        try:
            yield path, io.read_image(path).color.expand(3, -1, -1)
        except io.ImageError as e:
            log.warning("skipped: %s", e)


def val_pairs(folder: str | Path, scale: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, LR, HR) of every readable image of a validation folder (HR cropped to a multiple of scale)."""
    pairs = []
    for path, hr in readable_images(folder):
        hr = hr[:, :hr.shape[1] - hr.shape[1] % scale, :hr.shape[2] - hr.shape[2] % scale].contiguous()
        if min(hr.shape[1:]) < scale:
            log.warning("skipped: %s is smaller than the scale", path)
            continue
        pairs.append((path.stem, bicubic_downscale(hr, scale), hr))
    if not pairs:
        raise ValueError(f"--val {folder}: no readable validation images")
    return pairs


def load_hr_images(folder: str | Path, min_size: int) -> list[torch.Tensor]:
    """All RGB images of a folder as uint8 (3, H, W) tensors, skipping (with a warning) bad or tiny ones."""
    images = []
    for path, im in readable_images(folder):
        if min(im.shape[1:]) < min_size:
            log.warning("skipped: %s is smaller than the %d px crop", path, min_size)
            continue
        images.append((im * 255).round().to(torch.uint8))
    if not images:
        raise ValueError(f"no usable training images (>= {min_size} px) in {folder}")
    return images


def _real_degradation():
    import albumentations as A

    return A.Compose([
        A.GaussianBlur(blur_limit=(3, 5), p=0.5),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.5),
        A.ImageCompression(quality_range=(50, 95), p=0.5),
    ])


def make_batches(images: list[torch.Tensor], cfg: SRTrainConfig, generator: torch.Generator | None):
    """A function returning (lr, hr) batches: (B, 3, p, p) and (B, 3, p*s, p*s) in [0, 1]."""
    hp = cfg.patch * cfg.scale
    degrade = _real_degradation() if cfg.degrade == "real" else None

    def next_batch():
        crops = []
        for i in torch.randint(len(images), (cfg.batch_size,), generator=generator).tolist():
            im = images[i]
            y = int(torch.randint(im.shape[1] - hp + 1, (1,), generator=generator))
            x = int(torch.randint(im.shape[2] - hp + 1, (1,), generator=generator))
            crop = im[:, y:y + hp, x:x + hp]
            flips = torch.randint(2, (3,), generator=generator).tolist()
            if flips[0]:
                crop = crop.flip(2)
            if flips[1]:
                crop = crop.flip(1)
            if flips[2]:
                crop = crop.transpose(1, 2)
            crops.append(crop)
        hr = torch.stack(crops).float() / 255
        lr = F.interpolate(hr, scale_factor=1 / cfg.scale, mode="bicubic", antialias=True,
                           align_corners=False).clamp(0, 1)
        lr = (lr * 255).round() / 255  # LR inputs are 8-bit images in practice
        if degrade is not None:
            arr = (lr.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
            lr = torch.from_numpy(np.stack([degrade(image=a)["image"] for a in arr])).permute(0, 3, 1, 2).float() / 255
        return lr, hr

    return next_batch


def train_sr(cfg: SRTrainConfig, device: torch.device, resume: bool = True) -> dict:
    """Train, save `cfg.out` (safetensors + a JSON card beside it), return the card.

    The state `cfg.out` with .state.pt resumes only a run of the same architecture, GAN setting
    and data files (TrainSpec.meta)."""
    out = Path(cfg.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a .safetensors file name")
    io.check_writable(out.parent, create=False)  # before the work (created when the state is saved)
    torch.manual_seed(cfg.seed)
    arch_config = {"scale": cfg.scale, "channels": cfg.channels, "blocks": cfg.blocks}
    g = define_G("srresnet", **arch_config)
    if cfg.init:
        init, info = load_model(cfg.init)
        if info["arch"] != "srresnet" or info["config"] != arch_config:
            raise ValueError(f"--init {cfg.init}: {info['arch']} {info.get('config')} does not match {arch_config}")
        g.load_state_dict(init.state_dict())
    g = g.to(device, memory_format=torch.channels_last)  # faster convolutions on CPU
    meta = {"arch": "srresnet", "config": arch_config, "gan": cfg.gan, "d_channels": cfg.d_channels if cfg.gan else None,
            "data": data_fingerprint(io.list_images(cfg.data), cfg.data)}
    check_resume(out.with_suffix(".state.pt"), meta, resume)
    images = load_hr_images(cfg.data, cfg.patch * cfg.scale)
    log.info("training x%d %s on %d images from %s", cfg.scale, "GAN" if cfg.gan else "L1", len(images), cfg.data)
    next_batch = make_batches(images, cfg, None)  # the global RNG: fit seeds it and saves it for resume
    pairs = val_pairs(cfg.val, cfg.scale) if cfg.val else []

    def batch_on_device():
        lr, hr = next_batch()
        return lr.to(device, memory_format=torch.channels_last), hr.to(device)

    d = None
    perceptual = None
    if cfg.gan:
        d = PatchDiscriminator(3, cfg.d_channels, 2).to(device)
        perceptual = losses.PerceptualLoss().to(device)
        log.info("perceptual loss: %s", perceptual.backbone)

    def g_loss(batch, sr, disc):
        _, hr = batch
        pix = F.l1_loss(sr, hr)
        logs = {"l1": pix.item()}
        loss = cfg.pixel_weight * pix
        if disc is not None:
            perc = perceptual(sr, hr)
            adv = losses.relativistic_g_loss(disc(hr), disc(sr))
            loss = loss + cfg.perceptual_weight * perc + cfg.adversarial_weight * adv
            logs |= {"perc": perc.item(), "adv": adv.item()}
        return loss, logs

    def d_loss(disc, batch, sr):
        _, hr = batch
        loss = losses.relativistic_d_loss(disc(hr), disc(sr))
        return loss, {"d": loss.item()}

    def validate(model):
        return {f"val_{k}": v for k, v in evaluate_model(model, pairs, cfg.scale, device).items()} if pairs else {}

    spec = TrainSpec(g, batch_on_device, lambda net, batch: net(batch[0]), g_loss,
                     discriminator=d, d_loss=d_loss if cfg.gan else None, validate=validate,
                     select_by="val_psnr_y" if pairs and not cfg.gan else None, meta=meta)
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, lr_d=cfg.lr, betas=(0.9, 0.99), ema=cfg.ema,
                       warmup=0 if cfg.init else 200, log_every=100, val_every=cfg.val_every,
                       ckpt_every=500, seed=cfg.seed)
    result = fit(spec, tcfg, state_path=out.with_suffix(".state.pt"), resume=resume)
    card = {
        "task": TASK, "arch": "srresnet", "config": arch_config,
        "training": asdict(cfg) | {"device": str(device), "minutes": round(result.seconds / 60, 1)},
        "command": "genapps " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "",
        "license": "MIT", "provenance": (f"fine-tuned from {cfg.init}" if cfg.init else "trained from scratch")
        + f" by genapps (`genapps train sr`, the command above) on {cfg.data}",
        "validation": result.validation, "history": result.history[-5:],
        "params": sum(p.numel() for p in g.parameters()),
    }
    io.save_weights(out, result.generator.state_dict(), {k: card[k] for k in ("task", "arch", "config")}
                    | {"validation": result.validation})
    io.write_json(out.with_suffix(".json"), card)
    return card
