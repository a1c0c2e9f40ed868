"""`genapps train sr`: PSNR-oriented (L1) or GAN training of an SR network on a folder of HR photos.

Architectures: `srresnet` (residual blocks), or `rep` (a plain 3x3 stack trained with
re-parameterizable multi-branch convolutions, saved folded into plain 3x3 convolutions).
HR crops are cut from images held in memory; LR is made on the fly (`degrade`): antialiased
bicubic downscaling (`bicubic`), then blur/noise/JPEG (`real`, genapps.degradations.degrade), or
Real-ESRGAN's second-order degradation of the HR crop (`realworld`, genapps.degradations.realworld).

Distillation (`teacher`): the student learns a teacher's outputs (any model `upscale` loads) for
degraded LR crops instead of the HR crops. The teacher runs once per cached crop: `teacher_patches`
crops of `teacher_crop` LR px (one per training image in turn, positions and degradations seeded by
(seed, relative path, crop index)) are degraded, upscaled by the teacher and written to
OUT.teacher-cache/<teacher sha256>/, one file per crop, atomically: a killed run keeps every finished
crop and a rerun runs the teacher only on the missing ones. Training crops `patch` px windows of them.
The GAN variant starts from a PSNR model and adds a perceptual and a relativistic adversarial
loss against a spectral-norm PatchGAN.

Validation: `holdout` N keeps the last N images of the data folder (by sorted relative path)
out of training; they select EMA vs raw weights. A `val` folder (e.g. Set5) is then only
reported (its metrics are named after the folder); without a holdout, `val` validates and selects.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genapps import degradations, io, losses, zoo
from genapps.nn import PatchDiscriminator
from genapps.nn.winograd import accelerate
from genapps.tasks.upscale.task import TASK, bicubic_downscale, evaluate_model, load_model, upscale_tensor
from genapps.tasks.upscale.models import define_G
from genapps.train import TrainConfig, TrainSpec, check_resume, data_fingerprint, fit
from genapps.weights import save_trained

log = logging.getLogger(__name__)

DEGRADES = ("bicubic", "real", "realworld")


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
    branches: bool = field(default=True, metadata={
        "help": "rep: train the multi-branch form; --no-branches: the plain (folded) form itself, about 3x "
                "faster per step, to fine-tune a folded --init."})
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
        "choices": DEGRADES,
        "help": "LR inputs: bicubic; real: + blur, noise, JPEG; realworld: Real-ESRGAN's second-order degradation."})
    teacher: str | None = field(default=None, metadata={
        "help": "Distil this model (any model `upscale` loads): learn its outputs for the degraded inputs "
                "(run once, cached in OUT.teacher-cache/)."})
    teacher_patches: int = field(default=512, metadata={"help": "--teacher: LR crops the teacher upscales (cached)."})
    teacher_crop: int = field(default=64, metadata={"help": "--teacher: LR px of a cached crop (>= --patch)."})
    hr_weight: float = field(default=0.0, metadata={
        "help": "--teacher: weight of an L1 to the HR crop (--pixel-weight weighs the L1 to the teacher)."})
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
        if self.degrade not in DEGRADES:
            raise ValueError(f"degrade must be one of {', '.join(DEGRADES)}, got {self.degrade!r}")
        if self.teacher and self.teacher_crop < self.patch:
            raise ValueError(f"teacher_crop ({self.teacher_crop}) must be >= patch ({self.patch})")
        if Path(self.out).suffix != ".safetensors":
            raise ValueError(f"--out must be a .safetensors file (its card is written beside it as .json), "
                             f"got {self.out}")
        for name in ("channels", "blocks", "steps", "batch_size", "patch", "d_channels", "teacher_patches",
                     "teacher_crop"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pixel_weight", "perceptual_weight", "adversarial_weight", "val_every", "hr_weight"):
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


VAL_CROP = 384  # px: --degrade real/realworld validate on the centre crop of this size (HR)


def val_pairs(folder, scale: int, what: str = "--val", degrade: str = "bicubic",
              seed: int = 0) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, LR, HR) of every readable image of a validation folder or list of files (HR cropped
    to a multiple of scale). `degrade` real/realworld: the HR is first centre-cropped to VAL_CROP px
    and its LR degraded as in training, seeded by (seed, file name): the same every run."""
    pairs = []
    for path, hr in readable_images(folder):
        if degrade != "bicubic":
            h, w = min(hr.shape[1], VAL_CROP), min(hr.shape[2], VAL_CROP)
            y, x = (hr.shape[1] - h) // 2, (hr.shape[2] - w) // 2
            hr = hr[:, y:y + h, x:x + w]
        hr = hr[:, :hr.shape[1] - hr.shape[1] % scale, :hr.shape[2] - hr.shape[2] % scale].contiguous()
        if min(hr.shape[1:]) < scale:
            log.warning("skipped: %s is smaller than the scale", path)
            continue
        if degrade == "bicubic":
            lr = bicubic_downscale(hr, scale)
        else:
            hr = (hr * 255).round() / 255
            lr = degrade_lr(_to_hwc(hr), degrade, scale, degradations.file_rng(seed, path.stem))
        pairs.append((path.stem, lr, hr))
    if not pairs:
        raise ValueError(f"{what}: no readable validation images")
    return pairs


def load_hr_images(folder, min_size: int, where: str = "", root: str | Path | None = None) -> list:
    """All RGB images of a folder (or list of files) as uint8 (3, H, W) tensors, skipping (with a
    warning) bad or tiny ones. With `root`: (key, image) pairs, key = the relative path under
    root without extension."""
    images = []
    for path, im in readable_images(folder):
        if min(im.shape[1:]) < min_size:
            log.warning("skipped: %s is smaller than the %d px crop", path, min_size)
            continue
        im = (im * 255).round().to(torch.uint8)
        images.append((Path(path).relative_to(root).with_suffix("").as_posix(), im) if root is not None else im)
    if not images:
        raise ValueError(f"no usable training images (>= {min_size} px) in {where or folder}")
    return images


def _to_hwc(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float [0, 1] or uint8 -> (H, W, 3) uint8."""
    t = t if t.dtype == torch.uint8 else (t.clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(t.permute(1, 2, 0).numpy())


def _from_hwc(a: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255


def degrade_lr(hr: np.ndarray, how: str, scale: int, rng: np.random.Generator) -> torch.Tensor:
    """(H, W, 3) uint8 HR (H, W multiples of scale) -> (3, H/s, W/s) LR in [0, 1], 8-bit values:
    bicubic (PIL, antialiased); real: then genapps.degradations.degrade with random_degradation's
    parameters; realworld: Real-ESRGAN's second-order model at this scale. Random draws from `rng`."""
    if how == "realworld":
        ranges = degradations.REALESRGAN if scale == degradations.REALESRGAN.scale else \
            replace(degradations.REALESRGAN, scale=scale)
        return _from_hwc(degradations.realworld(hr, rng, ranges))
    lr = bicubic_downscale(_from_hwc(hr), scale)
    if how == "real":
        lr = _from_hwc(degradations.degrade(_to_hwc(lr), **degradations.random_degradation(rng), rng=rng))
    return lr


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy generator drawn from a torch one (None: the global RNG, which fit seeds and saves)."""
    return np.random.default_rng(int(torch.randint(2 ** 62, (1,), generator=generator)))


def make_batches(images: list[torch.Tensor], cfg: SRTrainConfig, generator: torch.Generator | None):
    """A function returning (lr, hr) batches: (B, 3, p, p) and (B, 3, p*s, p*s) in [0, 1].

    bicubic: torch's antialiased bicubic on the batch; real: + genapps.degradations.degrade per LR
    crop; realworld: genapps.degradations.realworld per HR crop."""
    hp = cfg.patch * cfg.scale

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
        if cfg.degrade == "realworld":
            lr = torch.stack([degrade_lr(_to_hwc(c), "realworld", cfg.scale, _numpy_rng(generator)) for c in crops])
            return lr, hr
        lr = F.interpolate(hr, size=(cfg.patch, cfg.patch), mode="bicubic", antialias=True,
                           align_corners=False).clamp(0, 1)  # size, not 1/scale: exact at x3
        lr = (lr * 255).round() / 255  # LR inputs are 8-bit images in practice
        if cfg.degrade == "real":
            lr = torch.stack([_from_hwc(degradations.degrade(_to_hwc(x), **degradations.random_degradation(rng), rng=rng))
                              for x in lr for rng in [_numpy_rng(generator)]])
        return lr, hr

    return next_batch


# ---------------------------------------------------------------- distillation: the teacher cache


@dataclass(frozen=True)
class TeacherCrop:
    """One cached training example: LR crop `index` of image `key` (relative path without
    extension) at HR position (y, x), `size` LR px; its degradation is seeded by (seed, key, index)."""

    key: str
    image: int  # index into the loaded images
    index: int
    y: int
    x: int
    size: int

    def file_name(self, cfg: SRTrainConfig) -> str:
        ident = f"{self.key}|{self.index}|{self.y}|{self.x}|{self.size}|x{cfg.scale}|{cfg.degrade}|{cfg.seed}"
        return hashlib.sha256(ident.encode()).hexdigest()[:24] + ".npz"


def teacher_crops(keys: list[str], images: list[torch.Tensor], cfg: SRTrainConfig) -> list[TeacherCrop]:
    """cfg.teacher_patches crops, one per image in turn (sorted keys), positions seeded by
    (seed, key, crop index): the same list every run."""
    hp = cfg.teacher_crop * cfg.scale
    crops = []
    for index in range(cfg.teacher_patches):
        i = index % len(images)
        rng = degradations.file_rng(cfg.seed, keys[i], index, 0)
        h, w = images[i].shape[1:]
        crops.append(TeacherCrop(keys[i], i, index, int(rng.integers(h - hp + 1)), int(rng.integers(w - hp + 1)),
                                 cfg.teacher_crop))
    return crops


def teacher_cache_dir(out: str | Path, teacher_sha256: str | None) -> Path:
    """OUT.teacher-cache/<the teacher's sha256, 16 hex>: another teacher gets another folder."""
    out = Path(out)
    return out.with_name(out.stem + ".teacher-cache") / (teacher_sha256 or "unknown")[:16]


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)  # a killed run leaves a whole file or none


def fill_teacher_cache(crops: list[TeacherCrop], images: list[torch.Tensor], cfg: SRTrainConfig,
                       teacher: torch.nn.Module, cache: Path, batch: int = 4) -> list[dict[str, np.ndarray]]:
    """Every crop's {"lr", "teacher", "hr"} (H, W, 3) uint8 arrays, from `cache` when there, else
    made (HR crop -> degrade_lr -> the teacher, through upscale_tensor) and written to `cache`, one
    file per crop, atomically, `batch` crops per teacher call."""
    cache.mkdir(parents=True, exist_ok=True)
    s, found, todo = cfg.scale, {}, []
    for c in crops:
        path = cache / c.file_name(cfg)
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    found[c] = {k: z[k] for k in ("lr", "teacher", "hr")}
                continue
            except (OSError, ValueError, KeyError) as e:
                log.warning("teacher cache: %s unreadable (%s); made again", path.name, e)
        todo.append(c)
    if todo:
        log.info("teacher cache %s: %d of %d crops cached, running the teacher on %d", cache, len(found),
                 len(crops), len(todo))
    started = time.perf_counter()
    for b in range(0, len(todo), batch):
        part = todo[b:b + batch]
        hrs = [_to_hwc(images[c.image][:, c.y:c.y + c.size * s, c.x:c.x + c.size * s]) for c in part]
        lrs = torch.stack([degrade_lr(hr, cfg.degrade, s, degradations.file_rng(cfg.seed, c.key, c.index, 1))
                           for hr, c in zip(hrs, part)])
        with torch.inference_mode():
            outs = upscale_tensor(teacher, lrs, s, batch_size=batch)
        for c, lr, out, hr in zip(part, lrs, outs, hrs):
            found[c] = {"lr": _to_hwc(lr), "teacher": _to_hwc(out), "hr": hr}
            _save_npz_atomic(cache / c.file_name(cfg), **found[c])
        done = b + len(part)
        if done % (batch * 10) == 0 or done == len(todo):
            rate = (time.perf_counter() - started) / done
            log.info("teacher: %d/%d crops, %.1f s each, %.1f min left", done, len(todo), rate,
                     rate * (len(todo) - done) / 60)
    return [found[c] for c in crops]


def load_teacher(name: str, scale: int) -> tuple[torch.nn.Module, object]:
    """The teacher as `upscale` runs it on the CPU (Winograd-accelerated fp32); its native scale must be `scale`."""
    model, info = load_model(name, scale)
    if info.scale != scale or info.extra.get("outscale"):
        raise ValueError(f"--teacher {name} is a x{info.extra.get('outscale') or info.scale} model; "
                         f"the student is x{scale}")
    return accelerate(model.to(memory_format=torch.channels_last)), info


def cache_batches(items: list[dict[str, np.ndarray]], cfg: SRTrainConfig, generator: torch.Generator | None):
    """A function returning (lr, teacher, hr) batches, (B, 3, p, p), (B, 3, p*s, p*s) x 2 in [0, 1]:
    random `patch` px windows of the cached crops (the same window of all three), flipped/transposed."""
    s, p = cfg.scale, cfg.patch
    tensors = [tuple(torch.from_numpy(it[k]).permute(2, 0, 1) for k in ("lr", "teacher", "hr")) for it in items]

    def next_batch():
        out = ([], [], [])
        for i in torch.randint(len(tensors), (cfg.batch_size,), generator=generator).tolist():
            lr, t, hr = tensors[i]
            y = int(torch.randint(lr.shape[1] - p + 1, (1,), generator=generator))
            x = int(torch.randint(lr.shape[2] - p + 1, (1,), generator=generator))
            flips = torch.randint(2, (3,), generator=generator).tolist()
            for side, im, f in zip(out, (lr, t, hr), (1, s, s)):
                crop = im[:, y * f:(y + p) * f, x * f:(x + p) * f]
                crop = crop.flip(2) if flips[0] else crop
                crop = crop.flip(1) if flips[1] else crop
                side.append(crop.transpose(1, 2) if flips[2] else crop)
        return tuple(torch.stack(side).float() / 255 for side in out)

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
    an --init taken over tensor for tensor). `rep` trains its multi-branch form (deploy=0), or with
    branches=False its plain form (deploy=1, what is saved).

    --init (saved weights of the same arch, width and depth; any scale) starts it: a folded rep
    model is unfolded (RepSR.load_plain: the same function, every branch trainable again);
    tensors of another shape (the last conv at another scale) keep their initialisation."""
    arch_config = {"scale": cfg.scale, "channels": cfg.channels, "blocks": cfg.blocks}
    if cfg.arch == "rep":
        arch_config["deploy"] = 0 if cfg.branches else 1
    g = define_G(cfg.arch, **arch_config)
    skipped = []
    if cfg.init:
        init, info = load_model(cfg.init)
        config = info.config or {}
        if info.arch != cfg.arch or (config.get("channels"), config.get("blocks")) != (cfg.channels, cfg.blocks):
            raise ValueError(f"--init {cfg.init}: {info.arch} {config} does not match {cfg.arch} with "
                             f"channels {cfg.channels}, blocks {cfg.blocks}")
        if arch_config.get("deploy") == 0:
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
    warmup = not cfg.init or arch_config.get("deploy") == 0 or bool(skipped)
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
    batches: Callable[[], tuple]  # make_batches' (lr, hr) or cache_batches' (lr, teacher, hr) function (CPU)
    pairs: list  # (name, LR, HR) validating and selecting (val_pairs); empty: no validation
    reported: list  # (name, LR, HR) only reported, under `report_name`
    report_name: str = ""
    perceptual: losses.PerceptualLoss | None = None  # GAN only

    def next_batch(self):
        """(lr, target, hr): the target is the teacher's output when distilling, else the HR crop."""
        batch = self.batches()
        lr, target, hr = batch if len(batch) == 3 else (batch[0], batch[1], batch[1])
        return lr.to(self.device, memory_format=torch.channels_last), target.to(self.device), hr.to(self.device)

    @staticmethod
    def forward(net, batch):
        return net(batch[0])

    def generator_loss(self, batch, sr, disc):
        """pixel_weight * L1 to the target (the teacher's output or the HR crop), hr_weight * L1 to
        the HR crop when distilling, plus (GAN) perceptual and relativistic adversarial terms
        against the target."""
        cfg, (_, target, hr) = self.cfg, batch
        pix = F.l1_loss(sr, target)
        logs = {"l1": pix.item()}
        loss = cfg.pixel_weight * pix
        if cfg.teacher and cfg.hr_weight:
            pix_hr = F.l1_loss(sr, hr)
            loss = loss + cfg.hr_weight * pix_hr
            logs["l1_hr"] = pix_hr.item()
        if disc is not None:
            perc = self.perceptual(sr, target)
            adv = losses.relativistic_g_loss(disc(target), disc(sr))
            loss = loss + cfg.perceptual_weight * perc + cfg.adversarial_weight * adv
            logs |= {"perc": perc.item(), "adv": adv.item()}
        return loss, logs

    @staticmethod
    def discriminator_loss(disc, batch, sr):
        target = batch[1]
        loss = losses.relativistic_d_loss(disc(target), disc(sr))
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
    teacher, teacher_info = load_teacher(cfg.teacher, cfg.scale) if cfg.teacher else (None, None)
    if teacher is not None:  # a resumed distillation must keep its teacher and inputs
        meta |= {"teacher": teacher_info.sha256, "degrade": cfg.degrade}
    state_path = out.with_suffix(".state.pt")
    check_resume(state_path, meta, resume)
    start_step = _saved_step(state_path) if resume else 0
    teacher_card = {}
    if teacher is not None:
        keyed = load_hr_images(train_paths, cfg.teacher_crop * cfg.scale, cfg.data, root=cfg.data)
        crops = teacher_crops([k for k, _ in keyed], [im for _, im in keyed], cfg)
        cache = teacher_cache_dir(out, teacher_info.sha256)
        t0 = time.perf_counter()
        items = fill_teacher_cache(crops, [im for _, im in keyed], cfg, teacher, cache)
        teacher_card = {"teacher": {"name": cfg.teacher, "arch": teacher_info.arch, "sha256": teacher_info.sha256,
                                    "source": Path(teacher_info.source).name},
                        "teacher_cache": {"folder": str(cache), "crops": len(crops), "images": len(keyed),
                                          "lr_px": cfg.teacher_crop, "this_run_minutes":
                                          round((time.perf_counter() - t0) / 60, 1)}}
        del teacher
        n_images = len(keyed)
        batches = cache_batches(items, cfg, None)  # the global RNG: fit seeds and saves it
    else:
        images = load_hr_images(train_paths, cfg.patch * cfg.scale, cfg.data)
        n_images = len(images)
        batches = make_batches(images, cfg, None)  # the global RNG: fit seeds and saves it
    log.info("training x%d %s %s on %d images from %s (%d held out), %d threads%s", cfg.scale, cfg.arch,
             "GAN" if cfg.gan else "L1", n_images, cfg.data, len(held_out), torch.get_num_threads(),
             f", distilling {cfg.teacher}" if cfg.teacher else "")
    pairs = val_pairs(held_out, cfg.scale, f"--holdout {cfg.holdout}", cfg.degrade, cfg.seed) if held_out else \
        val_pairs(cfg.val, cfg.scale, degrade=cfg.degrade, seed=cfg.seed) if cfg.val else []
    reported = val_pairs(cfg.val, cfg.scale, degrade=cfg.degrade, seed=cfg.seed) if held_out and cfg.val else []
    d = PatchDiscriminator(3, cfg.d_channels, 2).to(device) if cfg.gan else None
    perceptual = losses.PerceptualLoss().to(device) if cfg.gan else None
    if perceptual is not None:
        log.info("perceptual loss: %s", perceptual.backbone)
    training = SRTraining(cfg, device, batches,
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
    card |= teacher_card
    if cfg.teacher:
        card["provenance"] += (f"; distilled from {cfg.teacher} ({teacher_info.arch}): trained on its outputs for "
                               f"{cfg.degrade}-degraded crops, so the teacher's weights' licence applies to this "
                               f"model's provenance")
        card["license"] = (f"{zoo.LICENSE} (Real-ESRGAN's, Xintao Wang et al.: the teacher's licence applies to "
                           f"this distilled model's provenance)" if cfg.teacher in zoo.ZOO else
                           f"the teacher's licence ({cfg.teacher}) applies to this distilled model's provenance")
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
