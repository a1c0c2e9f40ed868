"""`genapps train sr`: PSNR-oriented (L1) or GAN training of an SR network on a folder of HR photos.

Architectures: `srresnet` (residual blocks), or `rep` (a plain 3x3 stack trained with
re-parameterizable multi-branch convolutions, saved folded into plain 3x3 convolutions).
HR crops are cut from images held in memory; LR is made on the fly by antialiased bicubic
downscaling (optionally followed by blur/noise/JPEG via albumentations, for real-world photos).
The GAN variant starts from a PSNR model and adds a perceptual and a relativistic adversarial
loss against a spectral-norm PatchGAN.

Validation: `holdout` N keeps the last N images of the data folder (by sorted relative path)
out of training; they select EMA vs raw weights. A `val` folder (e.g. Set5) is then only
reported (its metrics are named after the folder); without a holdout, `val` validates and selects.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genapps import io, losses
from genapps.nn import PatchDiscriminator
from genapps.tasks.upscale.task import TASK, bicubic_downscale, evaluate_model, load_model
from genapps.tasks.upscale.models import define_G
from genapps.train import TrainConfig, TrainSpec, check_resume, data_fingerprint, fit
from genapps.weights import save_trained

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SRTrainConfig:
    data: str = field(metadata={"type": "dir", "help": "Folder of HR training images."})
    out: str = field(metadata={"type": "file", "help": "Output .safetensors file."})
    val: str | None = field(default=None, metadata={  # with holdout > 0 only reported (not used for selection)
        "type": "dir", "help": "Folder of HR validation images; with --holdout only reported (e.g. Set5)."})
    holdout: int = field(default=0, metadata={  # sorted relative paths
        "help": "The last N images of --data: never trained on, they validate and select EMA/raw weights."})
    arch: str = field(default="srresnet", metadata={  # rep: blocks = number of hidden 3x3 convs; saved folded
        "choices": ("srresnet", "rep"),
        "help": "rep: a plain 3x3 stack trained with re-parameterizable branches, saved folded."})
    scale: int = field(default=4, metadata={"choices": (2, 3, 4)})
    gan: bool = field(default=False, metadata={"help": "GAN training (perceptual + adversarial); start it from --init."})
    init: str | None = field(default=None, metadata={"help": "Start from these weights (a bundled name or file)."})
    channels: int = 48
    blocks: int = field(default=6, metadata={
        "help": "srresnet: residual blocks; rep: hidden 3x3 convs (12 = REFERENCE-POINTS' plain net)."})
    steps: int = 20000
    batch_size: int = 16
    patch: int = field(default=32, metadata={"help": "LR crop size in px."})
    lr: float = 5e-4
    degrade: str = field(default="bicubic", metadata={  # real: blur, noise, JPEG after the downscale
        "choices": ("bicubic", "real")})
    pixel_weight: float = field(default=1.0, metadata={"help": "Weight of the L1 loss."})
    perceptual_weight: float = 1.0  # GAN only
    adversarial_weight: float = 5e-3  # GAN only
    d_channels: int = field(default=32, metadata={  # 2 strided layers
        "help": "GAN: discriminator width."})
    ema: float = field(default=0.999, metadata={  # GAN fine-tunes want a shorter one, e.g. 0.99
        "help": "Generator EMA decay (0 = off)."})
    val_every: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
        if self.arch not in ("srresnet", "rep"):
            raise ValueError(f"arch must be 'srresnet' or 'rep', got {self.arch!r}")
        if self.holdout < 0:
            raise ValueError(f"holdout must be >= 0, got {self.holdout}")
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


def readable_images(paths):
    """(path, (3, H, W) float image in [0, 1]) of every readable image of `paths` (a folder or a
    list of files); bad ones are skipped with a warning."""
    for path in io.list_images(paths) if isinstance(paths, (str, Path)) else paths:
        try:
            yield path, io.read_image(path).color.expand(3, -1, -1)
        except io.ImageError as e:
            log.warning("skipped: %s", e)


def val_pairs(folder, scale: int, what: str = "--val") -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, LR, HR) of every readable image of a validation folder or list of files (HR cropped
    to a multiple of scale)."""
    pairs = []
    for path, hr in readable_images(folder):
        hr = hr[:, :hr.shape[1] - hr.shape[1] % scale, :hr.shape[2] - hr.shape[2] % scale].contiguous()
        if min(hr.shape[1:]) < scale:
            log.warning("skipped: %s is smaller than the scale", path)
            continue
        pairs.append((path.stem, bicubic_downscale(hr, scale), hr))
    if not pairs:
        raise ValueError(f"{what}: no readable validation images")
    return pairs


def load_hr_images(folder, min_size: int, where: str = "") -> list[torch.Tensor]:
    """All RGB images of a folder (or list of files) as uint8 (3, H, W) tensors, skipping (with a
    warning) bad or tiny ones."""
    images = []
    for path, im in readable_images(folder):
        if min(im.shape[1:]) < min_size:
            log.warning("skipped: %s is smaller than the %d px crop", path, min_size)
            continue
        images.append((im * 255).round().to(torch.uint8))
    if not images:
        raise ValueError(f"no usable training images (>= {min_size} px) in {where or folder}")
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
        lr = F.interpolate(hr, size=(cfg.patch, cfg.patch), mode="bicubic", antialias=True,
                           align_corners=False).clamp(0, 1)  # size, not 1/scale: exact at x3
        lr = (lr * 255).round() / 255  # LR inputs are 8-bit images in practice
        if degrade is not None:
            arr = (lr.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
            lr = torch.from_numpy(np.stack([degrade(image=a)["image"] for a in arr])).permute(0, 3, 1, 2).float() / 255
        return lr, hr

    return next_batch


def split_holdout(data: str | Path, holdout: int) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files) of a folder: the held-out ones are the last `holdout`
    by sorted relative path (io.list_images' order), never trained on."""
    paths = io.list_images(data)
    if not holdout:
        return paths, []
    if not 0 < holdout < len(paths):
        raise ValueError(f"--holdout {holdout}: needs 0 < holdout < {len(paths)} images in {data}")
    return paths[:-holdout], paths[-holdout:]


def build_generator(cfg: SRTrainConfig) -> tuple[torch.nn.Module, dict, bool]:
    """The generator to train, its config, and whether it wants a learning-rate warmup (all but
    an --init taken over tensor for tensor). `rep` always trains its multi-branch form (deploy=0).

    --init (saved weights of the same arch, width and depth; any scale) starts it: a folded rep
    model is unfolded (RepSR.load_plain: the same function, every branch trainable again);
    tensors of another shape (the last conv at another scale) keep their initialisation."""
    arch_config = {"scale": cfg.scale, "channels": cfg.channels, "blocks": cfg.blocks}
    if cfg.arch == "rep":
        arch_config["deploy"] = 0
    g = define_G(cfg.arch, **arch_config)
    skipped = []
    if cfg.init:
        init, info = load_model(cfg.init)
        config = info.config or {}
        if info.arch != cfg.arch or (config.get("channels"), config.get("blocks")) != (cfg.channels, cfg.blocks):
            raise ValueError(f"--init {cfg.init}: {info.arch} {config} does not match {cfg.arch} with "
                             f"channels {cfg.channels}, blocks {cfg.blocks}")
        if cfg.arch == "rep":
            skipped = g.load_plain(init)
        else:
            own = g.state_dict()
            take = {k: v for k, v in init.state_dict().items() if k in own and own[k].shape == v.shape}
            g.load_state_dict(take, strict=False)
            skipped = sorted(set(own) - set(take))
        if skipped:
            log.info("--init %s (x%d): %s start from their initialisation (another shape)", cfg.init,
                     info.scale, ", ".join(skipped))
    # new zero branches or a fresh layer: Adam's first full-size steps would throw the start away
    warmup = not cfg.init or cfg.arch == "rep" or bool(skipped)
    return g, arch_config, warmup


def inference_form(g: torch.nn.Module, arch_config: dict) -> tuple[torch.nn.Module, dict]:
    """The model and config to save: a `rep` training form folded into plain 3x3 convolutions."""
    if arch_config.get("deploy") == 0:
        return g.fold(), arch_config | {"deploy": 1}
    return g, arch_config


def _saved_step(state_path: Path) -> int:
    """The step a resume starts from (0 without a usable state; fit reports a broken one)."""
    try:
        step = io.load_torch(state_path).get("step", 0) if state_path.exists() else 0
        return step if isinstance(step, int) else 0
    except (ValueError, AttributeError):
        return 0


@dataclass(frozen=True)
class SRTraining:
    """The parts of `genapps train sr` that fit calls: batches, generator and discriminator losses,
    validation. Batches are (lr (B, 3, p, p) channels_last, hr (B, 3, p*s, p*s)) in [0, 1]."""

    cfg: SRTrainConfig
    device: torch.device
    batches: Callable[[], tuple[torch.Tensor, torch.Tensor]]  # make_batches' function (CPU tensors)
    pairs: list  # (name, LR, HR) validating and selecting (val_pairs); empty: no validation
    reported: list  # (name, LR, HR) only reported, under `report_name`
    report_name: str = ""
    perceptual: losses.PerceptualLoss | None = None  # GAN only

    def next_batch(self):
        lr, hr = self.batches()
        return lr.to(self.device, memory_format=torch.channels_last), hr.to(self.device)

    @staticmethod
    def forward(net, batch):
        return net(batch[0])

    def generator_loss(self, batch, sr, disc):
        """pixel_weight * L1, plus (GAN) perceptual and relativistic adversarial terms."""
        cfg, (_, hr) = self.cfg, batch
        pix = F.l1_loss(sr, hr)
        logs = {"l1": pix.item()}
        loss = cfg.pixel_weight * pix
        if disc is not None:
            perc = self.perceptual(sr, hr)
            adv = losses.relativistic_g_loss(disc(hr), disc(sr))
            loss = loss + cfg.perceptual_weight * perc + cfg.adversarial_weight * adv
            logs |= {"perc": perc.item(), "adv": adv.item()}
        return loss, logs

    @staticmethod
    def discriminator_loss(disc, batch, sr):
        _, hr = batch
        loss = losses.relativistic_d_loss(disc(hr), disc(sr))
        return loss, {"d": loss.item()}

    def validate(self, model) -> dict[str, float]:
        """val_psnr_y, val_ssim_y on `pairs`; `reported` under its folder's name (never selects)."""
        scale, device = self.cfg.scale, self.device
        logs = {f"val_{k}": v for k, v in evaluate_model(model, self.pairs, scale, device).items()} if self.pairs else {}
        if self.reported:
            logs |= {f"{self.report_name}_{k}": v for k, v in evaluate_model(model, self.reported, scale, device).items()}
        return logs


def train_sr(cfg: SRTrainConfig, device: torch.device, resume: bool = True) -> dict:
    """Train, save `cfg.out` (safetensors + a JSON card beside it), return the card.

    The state `cfg.out` with .state.pt resumes only a run of the same architecture, GAN setting
    and training files (TrainSpec.meta)."""
    torch.set_float32_matmul_precision("high")
    started = time.perf_counter()
    out = Path(cfg.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a .safetensors file name")
    io.check_writable(out.parent, create=False)  # before the work (created when the state is saved)
    torch.manual_seed(cfg.seed)
    g, arch_config, warmup = build_generator(cfg)
    g = g.to(device, memory_format=torch.channels_last)  # faster convolutions on CPU
    train_paths, held_out = split_holdout(cfg.data, cfg.holdout)
    meta = {"arch": cfg.arch, "config": arch_config, "gan": cfg.gan,
            "d_channels": cfg.d_channels if cfg.gan else None, "data": data_fingerprint(train_paths, cfg.data)}
    state_path = out.with_suffix(".state.pt")
    check_resume(state_path, meta, resume)
    start_step = _saved_step(state_path) if resume else 0
    images = load_hr_images(train_paths, cfg.patch * cfg.scale, cfg.data)
    log.info("training x%d %s %s on %d images from %s (%d held out), %d threads", cfg.scale, cfg.arch,
             "GAN" if cfg.gan else "L1", len(images), cfg.data, len(held_out), torch.get_num_threads())
    pairs = val_pairs(held_out, cfg.scale, f"--holdout {cfg.holdout}") if held_out else \
        val_pairs(cfg.val, cfg.scale) if cfg.val else []
    reported = val_pairs(cfg.val, cfg.scale) if held_out and cfg.val else []
    d = PatchDiscriminator(3, cfg.d_channels, 2).to(device) if cfg.gan else None
    perceptual = losses.PerceptualLoss().to(device) if cfg.gan else None
    if perceptual is not None:
        log.info("perceptual loss: %s", perceptual.backbone)
    training = SRTraining(cfg, device, make_batches(images, cfg, None),  # the global RNG: fit seeds and saves it
                          pairs, reported, Path(cfg.val).name if reported else "", perceptual)
    spec = TrainSpec(g, training.next_batch, training.forward, training.generator_loss,
                     discriminator=d, d_loss=training.discriminator_loss if cfg.gan else None,
                     validate=training.validate, select_by="val_psnr_y" if pairs and not cfg.gan else None, meta=meta)
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, lr_d=cfg.lr, betas=(0.9, 0.99), ema=cfg.ema,
                       warmup=200 if warmup else 0, log_every=100, val_every=cfg.val_every,
                       ckpt_every=500, seed=cfg.seed)
    result = fit(spec, tcfg, state_path=state_path, resume=resume)
    final, saved_config = inference_form(result.generator, arch_config)
    card = _card(cfg, device, result, final, saved_config, held_out, start_step, time.perf_counter() - started)
    if final is not result.generator:
        card["training_form"] = {"config": arch_config, "params": sum(p.numel() for p in g.parameters()),
                                 "folded": "RepConv3x3 branches (3x3, 1x1, 1x1->3x3, identity, Sobel/Laplacian) "
                                           "folded into one 3x3 convolution each"}
    return save_trained(out, final.state_dict(), card)


def _card(cfg: SRTrainConfig, device: torch.device, result, final: torch.nn.Module, saved_config: dict,
          held_out: list[Path], start_step: int, run_seconds: float) -> dict:
    """The weights card of a finished training (save_trained adds the command and licence)."""
    threads, cores = torch.get_num_threads(), os.cpu_count() or 1
    return {
        "task": TASK, "arch": cfg.arch, "config": saved_config,
        "training": asdict(cfg) | {
            "device": str(device), "minutes": round(result.seconds / 60, 1),
            "threads": threads, "cpu_count": cores, "resumed_from_step": start_step,
            "run_wall_minutes": round(run_seconds / 60, 1),  # this run, loading + validation included
            "note": f"this run (steps {start_step}-{cfg.steps}) used {threads} thread(s) on a {cores}-core machine"
                    + (" (all cores)" if threads >= cores else "") + "; minutes = training time over all runs"},
        "validation_split": {"holdout": cfg.holdout, "files": [p.relative_to(cfg.data).as_posix() for p in held_out],
                             "selects": "EMA vs raw weights"}
        if held_out else {"folder": cfg.val, "selects": "EMA vs raw weights"} if cfg.val else {},
        "provenance": (f"fine-tuned from {cfg.init}" if cfg.init else "trained from scratch")
        + f" by genapps (`genapps train sr`, the command above) on {cfg.data}",
        "validation": result.validation, "history": result.history[-5:],
        "params": sum(p.numel() for p in final.parameters()),
    }
