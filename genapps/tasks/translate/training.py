"""`genapps train pix2pix` and `genapps train cyclegan`, both through train.fit.

pix2pix: a U-Net generator and a conditional PatchGAN (or pixel) discriminator on (A, B) pairs;
loss = gan_weight * cGAN (vanilla or LSGAN) + l1_weight * L1 (on the [-1, 1] scale, as the
reference; lambda 100). With --color-loss classification (grey -> colour, Zhang et al. 2016) the
generator is the unet-ab colouriser: the L1 term is replaced by the class-rebalanced cross-entropy
over the quantized ab colours of the training photos, and after training the annealed-mean
temperature is chosen on the validation pairs (the most colourful with PSNR not below the grey input). CycleGAN: two ResNet generators and two PatchGANs, wrapped into one
generator module and one discriminator module so that fit's loop, EMA and checkpoints work
unchanged; LSGAN + cycle (lambda 10) + identity (0.5 * lambda) losses, a history pool of 50 fakes.
Adam 2e-4, beta1 0.5, constant then linear decay over the second half (the reference's schedule).
Random jitter (optional resize, random crop, horizontal flip) is identical for A and B.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genapps import io, losses, metrics, weights
from genapps.degradations import file_rng, injected_from
from genapps.inference import size_requirements
from genapps.nn import CycleDiscriminators, ImagePool, PatchDiscriminator, PixelDiscriminator
from genapps.nn.color import AB_GRID, ab_histogram, bins_from_histogram, rgb_to_ab
from genapps.nn.nafnet import NAFNet, widen_nafnet
from genapps.tasks.translate.models import UnetAbClassifier, define_G
from genapps.tasks.translate.pairs import from_uint8, make_a, read_folder, read_pairs, to_uint8
from genapps.train import TrainConfig, TrainSpec, check_resume, data_fingerprint, fit
from genapps.weights import save_trained

log = logging.getLogger(__name__)

PREPROCESS = ("crop", "scale_and_crop", "resize_and_crop")
# made on the fly: `genapps pairs` kinds (mixed: either, at random), or injected: the degradation of the
# photos in --noise-from estimated without their originals (degradations.injected_from)
SYNTHESIZE = ("degrade", "realworld", "mixed", "injected")
NETG_ARCHS = ("unet", "nafnet")
COLOR_LOSSES = ("l1", "classification")
# annealed-mean temperatures tried on the validation pairs after a classification training
TEMPERATURES = (0.2, 0.3, 0.38, 0.5, 0.7, 1.0)
# shares of the rebalancing divided out at decoding (UnetAbClassifier.undo_rebalance), tried with each
UNDO_REBALANCE = (0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.75, 1.0)


@dataclass(frozen=True)
class JitterConfig:
    """How training crops are cut (the reference's --preprocess, --load_size, --crop_size)."""

    preprocess: str = "resize_and_crop"  # crop (native scale) | scale_and_crop (shorter side) | resize_and_crop (square)
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def __post_init__(self):
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {self.preprocess!r}")
        if self.preprocess != "crop" and self.load_size < self.crop_size:
            raise ValueError(f"load_size {self.load_size} must be >= crop_size {self.crop_size}")


@dataclass(frozen=True, kw_only=True)
class GANTrainOptions:
    """Options both trainings share: jitter, schedule, discriminator, EMA."""

    out: str = field(metadata={"type": "file", "help": "Output .safetensors file."})
    residual: bool = field(default=False, metadata={  # restoration, colourisation
        "help": "Learn the correction over the input (restoration)."})
    ndf: int = field(default=32, metadata={"help": "Discriminator width."})
    n_layers_d: int = field(default=3, metadata={"help": "PatchGAN depth (3 = 70x70)."})
    d_norm: str = field(default="spectral", metadata={"choices": ("spectral", "batch", "instance", "none")})
    preprocess: str = field(default="resize_and_crop", metadata={
        "choices": ("resize_and_crop", "scale_and_crop", "crop"),
        "help": "resize to a square / scale the shorter side to --load-size, or crop at native scale."})
    load_size: int = 286
    crop_size: int = 256
    steps: int = 5000
    batch_size: int = 1
    lr: float = field(default=2e-4, metadata={"help": "Constant, then linear decay to 0."})
    ema: float = field(default=0.999, metadata={"help": "Generator EMA decay (0 = off)."})
    val_every: int = 0
    seed: int = 0

    def __post_init__(self):
        JitterConfig(self.preprocess, self.load_size, self.crop_size)
        if self.crop_size % self.multiple():
            raise ValueError(f"crop_size {self.crop_size} must be a multiple of the generator's {self.multiple()}")

    def multiple(self) -> int:
        return 4


@dataclass(frozen=True, kw_only=True)
class Pix2PixConfig(GANTrainOptions):
    data: str = field(metadata={"type": "dir", "help": "Paired dataset (see --layout)."})
    layout: str = field(default="aligned", metadata={
        "choices": ("aligned", "folders"),
        "help": "aligned: A|B side by side; folders: A/ and B/ paired by relative path."})
    direction: str = field(default="AtoB", metadata={"choices": ("AtoB", "BtoA")})
    val: str | None = field(default=None, metadata={"type": "dir", "help": "Paired validation folder (same layout)."})
    val_split: int = field(default=0, metadata={"help": "Hold the last N pairs of --data out."})
    netg: str = field(default="unet", metadata={
        "choices": NETG_ARCHS, "help": "Generator: the pix2pix U-Net, or NAFNet (restoration; always residual, "
                                       "--ngf its width, --num-downs its levels, --blocks its middle blocks)."})
    ngf: int = 32
    num_downs: int = field(default=7, metadata={"help": "U-Net depth (7 = unet_128, 8 = unet_256)."})
    blocks: int = field(default=4, metadata={"help": "nafnet: NAF blocks at the lowest resolution."})
    deep_blocks: int = field(default=2, metadata={
        "help": "nafnet: NAF blocks at the deepest encoder level (NAFNet's GoPro model: 28). New blocks start as "
                "the identity, so --init from a shallower model continues it unchanged."})
    norm: str = field(default="batch", metadata={"choices": ("batch", "instance", "none")})
    dropout: bool = field(default=False, metadata={"help": "Dropout in the inner U-Net levels (used by --stochastic)."})
    netd: str = field(default="basic", metadata={"choices": ("basic", "pixel")})  # basic: PatchGAN
    gan_mode: str = field(default="vanilla", metadata={"choices": ("vanilla", "lsgan")})
    gan_weight: float = field(default=1.0, metadata={"help": "0 = L1 only."})  # no discriminator then
    l1_weight: float = 100.0
    beta1: float = field(default=0.5, metadata={"help": "Adam's beta1 (the reference's 0.5)."})
    synthesize: str | None = field(default=None, metadata={
        "choices": SYNTHESIZE,
        "help": "Make A from each B crop on the fly with `genapps pairs --kind` (mixed: degrade or realworld at "
                "random): --data (and --extra) are then folders of photos, and a fresh degradation every step."})
    extra: str | None = field(default=None, metadata={
        "type": "dir", "help": "With --synthesize: a folder of more training photos (never validated on)."})
    noise_from: str | None = field(default=None, metadata={
        "type": "dir", "help": "With --synthesize injected: degraded photos without their originals; their noise "
                               "(flat regions) and blur (spectrum) are copied onto the clean --data photos "
                               "(Ji et al. 2020): restoration pairs from unpaired data."})
    color_loss: str = field(default="l1", metadata={
        "choices": COLOR_LOSSES,
        "help": "Grey -> colour: classification predicts a distribution over quantized ab colours with the "
                "class-rebalanced cross-entropy (Zhang et al. 2016; arch unet-ab; replaces the L1 term)."})
    rebalance: float = field(default=0.5, metadata={
        "help": "--color-loss classification: the uniform's share in the rebalancing prior (lambda)."})
    init: str | None = field(default=None, metadata={
        "help": "Start from these weights (a bundled name or file): every tensor of the same name and shape."})

    def multiple(self) -> int:
        return 2 ** self.num_downs

    def __post_init__(self):
        if self.color_loss not in COLOR_LOSSES:
            raise ValueError(f"color_loss must be one of {', '.join(COLOR_LOSSES)}, got {self.color_loss!r}")
        if not 0 <= self.rebalance <= 1:
            raise ValueError(f"rebalance must be in [0, 1], got {self.rebalance}")
        if self.color_loss == "classification" and (self.residual or self.dropout):
            raise ValueError("--color-loss classification predicts colour classes: drop --residual and --dropout")
        if self.layout not in ("aligned", "folders"):
            raise ValueError(f"layout must be aligned or folders, got {self.layout!r}")
        if self.direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {self.direction!r}")
        if self.netd not in ("basic", "pixel"):
            raise ValueError(f"netd must be basic or pixel, got {self.netd!r}")
        if self.gan_mode not in losses.GAN_MODES:
            raise ValueError(f"gan_mode must be one of {', '.join(losses.GAN_MODES)}, got {self.gan_mode!r}")
        if self.netg not in NETG_ARCHS:
            raise ValueError(f"netg must be one of {', '.join(NETG_ARCHS)}, got {self.netg!r}")
        if self.synthesize is not None and self.synthesize not in SYNTHESIZE:
            raise ValueError(f"synthesize must be one of {', '.join(SYNTHESIZE)}, got {self.synthesize!r}")
        if (self.synthesize == "injected") != bool(self.noise_from):
            raise ValueError("--synthesize injected and --noise-from DIR go together")
        if self.extra and not self.synthesize:
            raise ValueError("--extra is a folder of photos: it needs --synthesize")
        if self.synthesize and self.color_loss != "l1":
            raise ValueError("--synthesize makes degraded inputs (restoration); --color-loss classification "
                             "trains on grey -> colour pairs: use one or the other")
        if self.netg == "nafnet" and min(self.blocks, self.num_downs, self.deep_blocks) < 1:
            raise ValueError(f"nafnet needs --blocks, --num-downs and --deep-blocks >= 1, "
                             f"got {self.blocks}, {self.num_downs}, {self.deep_blocks}")
        if not 0 <= self.beta1 < 1:
            raise ValueError(f"beta1 must be in [0, 1), got {self.beta1}")
        super().__post_init__()

    def generator_config(self, in_ch: int, out_ch: int) -> dict:
        """The generator's arch config (what its checkpoint carries)."""
        if self.netg == "nafnet":  # TLC window: 1.5x the training crop (Chu et al. 2022)
            return {"in_ch": in_ch, "out_ch": out_ch, "width": self.ngf,
                    "enc_blocks": [1] * (self.num_downs - 1) + [self.deep_blocks],
                    "middle_blocks": self.blocks, "dec_blocks": [1] * self.num_downs,
                    "local_window": self.crop_size * 3 // 2}
        return {"in_ch": in_ch, "out_ch": out_ch, "num_downs": self.num_downs, "ngf": self.ngf,
                "norm": self.norm, "dropout": self.dropout, "residual": self.residual}


@dataclass(frozen=True, kw_only=True)
class CycleGANConfig(GANTrainOptions):
    a: str = field(metadata={"type": "dir", "help": "Folder of domain A images."})
    b: str = field(metadata={"type": "dir", "help": "Folder of domain B images (unpaired)."})
    val: str | None = field(default=None, metadata={  # paired: A/ and B/
        "type": "dir", "help": "Paired validation folder (A/ and B/): PSNR of A->B."})
    ngf: int = 16
    n_blocks: int = field(default=6, metadata={"help": "ResNet blocks (9 = resnet_9blocks)."})
    norm: str = field(default="instance", metadata={"choices": ("instance", "batch", "none")})
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    n2n_weight: float = field(default=0.0, metadata={
        "help": "Self-supervised denoising of domain A (Neighbor2Neighbor): weight of its MSE term on "
                "G_A (0 = off; --crop-size a multiple of 8)."})
    cycle_a_pool: int = field(default=1, metadata={
        "help": "Compare A's cycle (A -> B -> A) after an N x N average pool: what G_A removes below N px "
                "(noise, JPEG blocks) is not asked back from G_B (a noise-aware cycle; 1 = the reference's)."})
    b_noise: float = field(default=0.0, metadata={
        "help": "Gaussian noise at G_B's input, its std drawn per image in [0, S] ([0, 1] scale), in "
                "training (not its identity term) and under translate --stochastic: a learned "
                "degradation can then draw noise."})
    pseudo_pairs: bool = field(default=False, metadata={
        "help": "B's cycle as pseudo-pairs (degradation learning): G_B(b) is detached there, so G_B learns "
                "to imitate A only from D_B and cannot hide b in its output; G_A learns to undo it."})

    def __post_init__(self):
        super().__post_init__()
        if self.n2n_weight < 0 or self.b_noise < 0:
            raise ValueError(f"n2n_weight and b_noise must be >= 0, got {self.n2n_weight}, {self.b_noise}")
        if self.cycle_a_pool < 1 or self.crop_size % self.cycle_a_pool:
            raise ValueError(f"cycle_a_pool must be >= 1 and divide --crop-size {self.crop_size}, "
                             f"got {self.cycle_a_pool}")
        if self.n2n_weight and self.crop_size % (2 * self.multiple()):
            raise ValueError(f"--n2n-weight trains on half-size neighbour sub-images: crop_size must be a "
                             f"multiple of {2 * self.multiple()}, got {self.crop_size}")


# ---------------------------------------------------------------- data


def prescale(im: np.ndarray, jitter: JitterConfig) -> np.ndarray:
    """The deterministic part of the jitter, done once per image: the reference's resize."""
    h, w = im.shape[:2]
    if jitter.preprocess == "resize_and_crop":
        size = (jitter.load_size, jitter.load_size)
    elif jitter.preprocess == "scale_and_crop":
        s = jitter.load_size / min(h, w)
        size = (max(jitter.crop_size, round(w * s)), max(jitter.crop_size, round(h * s)))
    else:
        return im
    out = cv2.resize(im, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_CUBIC)
    return out.reshape(size[1], size[0], *im.shape[2:])


def _channels(images: list[np.ndarray]) -> int:
    return 1 if all(i.shape[2] == 1 for i in images) else 3


def _as_channels(im: np.ndarray, ch: int) -> np.ndarray:
    return np.repeat(im, 3, axis=2) if im.shape[2] == 1 and ch == 3 else im


def _prepare(im: np.ndarray, ch: int, jitter: JitterConfig) -> np.ndarray:
    """(H, W, C) uint8 -> prescaled (H', W', ch) uint8."""
    out = prescale(_as_channels(im, ch), jitter)
    return out.reshape(*out.shape[:2], ch)


def make_jitter(jitter: JitterConfig, seed: int | None = None):
    """Random crop + flip, the same for A and B (albumentations additional_targets); seeded when given."""
    import albumentations as A

    ops = [A.RandomCrop(jitter.crop_size, jitter.crop_size)] + ([A.HorizontalFlip(p=0.5)] if jitter.flip else [])
    return A.Compose(ops, additional_targets={"target": "image"}, seed=seed)


def _to_batch(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def paired_batches(pairs: list[tuple[np.ndarray, np.ndarray]], jitter: JitterConfig, batch_size: int):
    """next_batch() -> (a, b): (B, Ca, c, c) and (B, Cb, c, c) in [0, 1], c = crop_size."""
    aug = make_jitter(jitter)
    too_small = [i for i, (a, _) in enumerate(pairs) if min(a.shape[:2]) < jitter.crop_size]
    if too_small:
        raise ValueError(f"{len(too_small)} training image(s) smaller than the {jitter.crop_size} px crop "
                         f"(use --crop-size, or --preprocess resize_and_crop)")

    def next_batch():
        a_list, b_list = [], []
        for i in torch.randint(len(pairs), (batch_size,)).tolist():
            out = aug(image=pairs[i][0], target=pairs[i][1])
            a_list.append(out["image"])
            b_list.append(out["target"])
        return _to_batch(a_list), _to_batch(b_list)

    return next_batch


SYNTH_SCALES = (1.0, 0.5)  # photos also at half size: sharper, benchmark-like (BSD68-sized) detail per crop


def synthesized_batches(photos: list[np.ndarray], jitter: JitterConfig, batch_size: int, kind, seed: int):
    """next_batch() -> (a, b) like paired_batches, where b is a random crop of a photo and a is
    `genapps pairs --kind` applied to that crop with a fresh random degradation every time (or
    `kind(crop, rng)`, when it is a degradation such as an InjectedDegradation)."""
    aug = make_jitter(jitter, seed)
    rng = np.random.default_rng(seed)

    def next_batch():
        a_list, b_list = [], []
        for i in rng.integers(len(photos), size=batch_size):
            b = aug(image=photos[i], target=photos[i])["image"]
            if callable(kind):
                a_list.append(kind(b, rng))
                b_list.append(b)
                continue
            k = kind if kind != "mixed" else ("degrade", "realworld")[int(rng.integers(2))]
            a_list.append(to_uint8(make_a(from_uint8(b), k, int(rng.integers(2 ** 31)), "crop")))
            b_list.append(b)
        return _to_batch(a_list), _to_batch(b_list)

    return next_batch


def _load_photos(paths: list[Path], crop: int) -> list[np.ndarray]:
    """(H, W, 3) uint8 photos at every scale of SYNTH_SCALES that still holds a crop."""
    out = []
    for path in paths:
        im = _read_rgb(path)
        for s in SYNTH_SCALES:
            size = (round(im.shape[1] * s), round(im.shape[0] * s))
            if min(size) >= crop:
                out.append(im if s == 1 else cv2.resize(im, size, interpolation=cv2.INTER_AREA))
    if not out:
        raise ValueError(f"no training photo holds a {crop} px crop")
    return out


def _read_photo(path: Path) -> np.ndarray:
    return to_uint8(io.read_image(path).color)


def _read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8: grey photos repeated into 3 channels."""
    im = _read_photo(path)
    return np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im


def _load_synthesized(cfg: Pix2PixConfig):
    """(photos, val pairs, 3, 3, degradation) for --synthesize: the last --val-split photos of --data
    become fixed validation pairs (the A side seeded per file, as `genapps pairs --seed` makes them;
    kind degrade unless realworld or injected is asked), the rest and --extra the training photos;
    degradation: the InjectedDegradation estimated from --noise-from and them (else None)."""
    paths = io.list_images(cfg.data)
    if not 0 <= cfg.val_split < len(paths):
        raise ValueError(f"--val-split {cfg.val_split} leaves no training photos of {len(paths)}")
    train_paths, val_paths = paths[:len(paths) - cfg.val_split], paths[len(paths) - cfg.val_split:]
    train_paths += io.list_images(cfg.extra) if cfg.extra else []
    photos = _load_photos(train_paths, cfg.crop_size)
    val_kind = "realworld" if cfg.synthesize == "realworld" else "degrade"
    injected = None
    if cfg.synthesize == "injected":
        noisy_paths = io.list_images(cfg.noise_from)
        if not noisy_paths:
            raise ValueError(f"--noise-from {cfg.noise_from}: no images in it")
        degraded = map(_read_rgb, noisy_paths)  # read one at a time
        # fitted on the photos at their own scale (the degraded photos' scale), not the half-size copies
        clean = map(_read_rgb, train_paths)
        injected = injected_from(degraded, clean, seed=cfg.seed)
        log.info("injected degradation from %s: %s", cfg.noise_from, injected.summary())
    val = []
    for path in val_paths:
        b = _read_rgb(path)
        key = path.relative_to(cfg.data).with_suffix("").as_posix()
        a = (injected(b, file_rng(cfg.seed, key)) if injected is not None
             else to_uint8(make_a(from_uint8(b), val_kind, cfg.seed, key)))
        val.append((a, b))
    if cfg.val:
        val += [(a, b) for _, a, b in read_pairs(cfg.val, cfg.layout, cfg.direction)]
    return photos, val, 3, 3, injected


def _load_paired(cfg: Pix2PixConfig, jitter: JitterConfig):
    """(train pairs, val pairs, in_ch, out_ch); train pairs prescaled, val at native size."""
    pairs = read_pairs(cfg.data, cfg.layout, cfg.direction)
    val = read_pairs(cfg.val, cfg.layout, cfg.direction) if cfg.val else []
    if cfg.val_split:
        if cfg.val_split >= len(pairs):
            raise ValueError(f"--val-split {cfg.val_split} leaves no training pairs of {len(pairs)}")
        pairs, val = pairs[:-cfg.val_split], val + pairs[-cfg.val_split:]
    in_ch, out_ch = _channels([a for _, a, _ in pairs]), _channels([b for _, _, b in pairs])
    train = [(_prepare(a, in_ch, jitter), _prepare(b, out_ch, jitter)) for _, a, b in pairs]
    val = [(_as_channels(a, in_ch), _as_channels(b, out_ch)) for _, a, b in val]
    return train, val, in_ch, out_ch


# ---------------------------------------------------------------- running and validating a generator


def run_generator(g: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> the generator's output in [0, 1]."""
    return (g(x * 2 - 1) + 1) / 2


VAL_CROP = 384


@torch.no_grad()
def validation_scores(g: nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], colour: bool = False) -> dict[str, float]:
    """Mean PSNR/L1 (8-bit outputs) on centre crops (<= VAL_CROP px, multiples of the net's multiple);
    with `colour`, also the outputs' mean colourfulness (Hasler-Suesstrunk, 0-255)."""
    multiple = size_requirements(g).multiple
    psnrs, l1s, colours = [], [], []
    for a, b in pairs:
        h, w = (min(s, VAL_CROP) // multiple * multiple for s in a.shape[:2])
        if not h or not w:
            continue
        y0, x0 = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
        ta, tb = _to_batch([a[y0:y0 + h, x0:x0 + w]]), _to_batch([b[y0:y0 + h, x0:x0 + w]])
        out = metrics.quantize(run_generator(g, ta).clamp(0, 1))
        out = out.expand(-1, tb.shape[1], -1, -1) if out.shape[1] == 1 else out  # the grey identity of colorize
        psnrs.append(float(metrics.psnr(out, tb)[0]))
        l1s.append(float(metrics.mae(out, tb)[0]))
        if colour:
            colours.append(float(metrics.colourfulness(out.expand(-1, 3, -1, -1))[0]))
    if not psnrs:
        return {}
    return {"val_psnr": float(np.mean(psnrs)), "val_l1": float(np.mean(l1s))} | (
        {"val_colourfulness": float(np.mean(colours))} if colour else {})


def _save(out: Path, result, arch: str, arch_config: dict, cfg, extra: dict) -> dict:
    """Write OUT (safetensors with task/arch/config) and OUT.json (the card); return the card."""
    card = {"task": "translate", "arch": arch, "config": arch_config} | extra | {
        "training": asdict(cfg) | {"minutes": round(result.seconds / 60, 1)},
        "validation": result.validation, "history": result.history[-5:],
        "params": sum(p.numel() for p in result.generator.parameters()),
        "provenance": f"trained by genapps on {Path(getattr(cfg, 'data', getattr(cfg, 'a', '')))}",
    }
    return save_trained(out, result.generator.state_dict(), card, extra_meta=extra)


# ---------------------------------------------------------------- pix2pix


def _gan_train_config(cfg: GANTrainOptions) -> TrainConfig:
    """The reference's schedule: Adam 2e-4, beta1 0.5, constant then linear decay over the second half."""
    return TrainConfig(steps=cfg.steps, lr=cfg.lr, lr_d=cfg.lr, betas=(getattr(cfg, "beta1", 0.5), 0.999), ema=cfg.ema,
                       linear_from=max(1, cfg.steps // 2), log_every=50, val_every=cfg.val_every,
                       ckpt_every=200, seed=cfg.seed)


def _on_device(next_batch, device: torch.device):
    """next_batch() -> (a, b) on the CPU  =>  a function returning them on `device`."""
    return lambda: tuple(t.to(device) for t in next_batch())


@dataclass(frozen=True)
class Pix2PixLosses:
    """pix2pix's losses on batches (a, b) in [0, 1] and the generator's fake b: the discriminator
    judges (a, b) pairs, concatenated along channels."""

    cfg: Pix2PixConfig

    def generator_loss(self, batch, fake, disc):
        """l1_weight * L1 (on the [-1, 1] scale, as the reference) + gan_weight * cGAN."""
        cfg, (a, b) = self.cfg, batch
        l1 = 2 * F.l1_loss(fake, b)  # the reference's L1 on [-1, 1] images
        loss, logs = cfg.l1_weight * l1, {"l1": l1.item() / 2}
        if disc is not None:
            adv = losses.gan_loss(disc(torch.cat([a, fake], 1)), True, cfg.gan_mode)
            loss = loss + cfg.gan_weight * adv
            logs["g_gan"] = adv.item()
        return loss, logs

    def discriminator_loss(self, disc, batch, fake):
        (a, b), mode = batch, self.cfg.gan_mode
        loss = 0.5 * (losses.gan_loss(disc(torch.cat([a, b], 1)), True, mode)
                      + losses.gan_loss(disc(torch.cat([a, fake], 1)), False, mode))
        return loss, {"d": loss.item()}


def _pix2pix_discriminator(cfg: Pix2PixConfig, in_ch: int, out_ch: int) -> nn.Module | None:
    """The conditional PatchGAN (or PixelGAN) on in_ch + out_ch channels; None for an L1-only run."""
    if cfg.gan_weight <= 0:
        return None
    if cfg.netd == "pixel":
        return PixelDiscriminator(in_ch + out_ch, cfg.ndf, cfg.d_norm)
    return PatchDiscriminator(in_ch + out_ch, cfg.ndf, cfg.n_layers_d, cfg.d_norm)


def train_pix2pix(cfg: Pix2PixConfig, device: torch.device, resume: bool = True) -> dict:
    """Train, save `cfg.out` (safetensors + a JSON card beside it), return the card."""
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    io.check_writable(out.parent, create=False)  # before the work (created when the state is saved)
    jitter = JitterConfig(cfg.preprocess, cfg.load_size, cfg.crop_size)
    injected = None
    if cfg.synthesize:
        train, val, in_ch, out_ch, injected = _load_synthesized(cfg)  # train: photos (A is made from each crop)
        batches = synthesized_batches(train, jitter, cfg.batch_size, injected or cfg.synthesize, cfg.seed)
    else:
        train, val, in_ch, out_ch = _load_paired(cfg, jitter)
        batches = paired_batches(train, jitter, cfg.batch_size)
    classes = ColourClasses.of(train, cfg) if cfg.color_loss == "classification" else None
    if classes is None:
        arch, arch_config = cfg.netg, cfg.generator_config(in_ch, out_ch)
    else:
        if (in_ch, out_ch) != (1, 3):
            raise ValueError(f"--color-loss classification colours grey images: A must be grey and B colour, "
                             f"got {in_ch} -> {out_ch} channels")
        arch, arch_config = "unet-ab", {"bins": classes.flat_bins(), "temperature": 0.38, "ngf": cfg.ngf,
                                        "num_downs": cfg.num_downs, "norm": cfg.norm}
    meta = {"arch": arch, "config": arch_config, "direction": cfg.direction, "layout": cfg.layout,
            "val_split": cfg.val_split, "data": data_fingerprint(io.list_images(cfg.data), cfg.data),
            "discriminator": [cfg.netd, cfg.ndf, cfg.n_layers_d, cfg.d_norm] if cfg.gan_weight > 0 else None}
    if classes is not None:
        meta |= {"rebalance": cfg.rebalance}
    if cfg.synthesize:  # (absent for the earlier runs: their states still resume)
        meta |= {"synthesize": cfg.synthesize,
                 "extra": data_fingerprint(io.list_images(cfg.extra), cfg.extra) if cfg.extra else None}
    if injected is not None:
        meta |= {"noise_from": data_fingerprint(io.list_images(cfg.noise_from), cfg.noise_from)}
    check_resume(out.with_suffix(".state.pt"), meta, resume)
    g = define_G(arch, **arch_config)
    if cfg.residual or arch == "nafnet":  # start as the identity: the net learns the correction
        _zero_last(g)
    if classes is not None:
        classes.start_head(g)
    if cfg.init:
        start_from(g, cfg.init)
    g = g.to(device)
    d = _pix2pix_discriminator(cfg, in_ch, out_ch)
    d = d.to(device) if d is not None else None
    log.info("pix2pix %s (%s): %s, %d validation pairs, %d->%d channels, G %.2fM params", cfg.direction, arch,
             f"{len(train)} photos, A made on the fly ({cfg.synthesize})" if cfg.synthesize
             else f"{len(train)} training pairs", len(val), in_ch, out_ch, sum(p.numel() for p in g.parameters()) / 1e6)
    parts = Pix2PixLosses(cfg) if classes is None else ColourClassLosses(cfg, classes)
    spec = TrainSpec(g, _on_device(batches, device),
                     parts.forward if classes is not None else lambda net, batch: run_generator(net, batch[0]),
                     parts.generator_loss, discriminator=d, d_loss=parts.discriminator_loss if d is not None else None,
                     validate=lambda net: validation_scores(net, val), select_by="val_psnr" if val else None,
                     meta=meta)
    result = fit(spec, _gan_train_config(cfg), state_path=out.with_suffix(".state.pt"), resume=resume)
    extra = {"trained_direction": cfg.direction, "model": "pix2pix",
             "validation_identity": identity_scores(val) if val else {}}
    if injected is not None:
        extra["injected_degradation"] = injected.summary()
    if classes is not None:
        extra |= classes.finish(result, val, extra["validation_identity"], arch_config)
    extra["stages"] = weights.previous_stages(cfg.init, task="translate") + [{
        "command": weights.command_line(), "steps": cfg.steps, "init": cfg.init,
        "minutes": round(result.seconds / 60, 1), "threads": torch.get_num_threads(),
        # the training loop's CPU time over every resumed run (fit's cpu_seconds; data loading and the
        # temperature sweep not included)
        "cpu_minutes": round(result.cpu_seconds / 60, 1), "data": meta["data"],
        "extra": meta.get("extra"), "synthesize": cfg.synthesize, "noise_from": meta.get("noise_from"),
        "validation": result.validation}]
    return _save(out, result, arch, arch_config, cfg, extra)


def start_from(g: nn.Module, init: str) -> None:
    """Load every tensor of the `init` weights (a bundled name or a file of task translate) whose
    name and shape match `g`'s (e.g. a pix2pix colouriser's U-Net body into unet-ab); the others
    keep their initialisation (logged). A NAFNet whose width is a multiple of the init's starts as
    its widened copy (genapps.nn.nafnet.widen_nafnet: the same outputs). A file sharing no tensor
    with `g` is a ValueError."""
    tensors, meta = weights.load_weights(weights.resolve_weights(init, task="translate"))
    if meta.get("task") != "translate":
        raise ValueError(f"--init {init}: weights of task {meta.get('task')!r}, not 'translate'")
    own = g.state_dict()
    if isinstance(g, NAFNet) and meta.get("arch") == "nafnet":
        width, init_width = g.intro.out_channels, meta["config"]["width"]
        if width != init_width and width % init_width == 0:  # a wider NAFNet: the same function, copied channels
            tensors = widen_nafnet(tensors, width // init_width, generator=torch.Generator().manual_seed(0))
            log.info("--init %s: NAFNet widened %d -> %d channels (Net2WiderNet)", init, init_width, width)
    take = {k: v.float() for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    if not take:
        raise ValueError(f"--init {init}: no tensor of it fits this model ({meta.get('arch')} {meta.get('config')})")
    g.load_state_dict(take, strict=False)
    fresh = sorted(set(own) - set(take))
    log.info("--init %s: %d tensors loaded%s", init, len(take),
             f"; {len(fresh)} keep their initialisation ({', '.join(fresh[:4])}{', ...' if len(fresh) > 4 else ''})"
             if fresh else "")


@dataclass(frozen=True)
class ColourClasses:
    """The colour classes of a classification training: the (Q, 2) ab bins the training photos'
    colours fall in (genapps.nn.color's grid), their empirical prior (Q,) and the rebalancing
    weights (Q,) of losses.rebalancing_weights. Colours are read at half resolution, where the
    unet-ab head predicts them (the mean ab of each 2x2 block)."""

    bins: torch.Tensor
    prior: torch.Tensor
    weights: torch.Tensor
    rebalance: float

    @classmethod
    def of(cls, train: list[tuple[np.ndarray, np.ndarray]], cfg: Pix2PixConfig) -> ColourClasses:
        counts = sum(ab_histogram(half_res_ab(_to_batch([b]))) for _, b in train)
        bins, prior = bins_from_histogram(counts)
        w = losses.rebalancing_weights(prior, bins, cfg.rebalance)
        log.info("colour classes: %d ab bins (grid %d) from %d training photos; rebalancing weights %.2f-%.2f",
                 len(bins), AB_GRID, len(train), float(w.min()), float(w.max()))
        return cls(bins, prior, w, cfg.rebalance)

    def flat_bins(self) -> list[int]:
        return [int(v) for v in self.bins.round().long().flatten()]

    def start_head(self, g: UnetAbClassifier) -> None:
        """The classifier starts at the prior: zero weights, biases log p (an --init may replace them)."""
        head = g.model.model[-1]
        nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(self.prior.clamp_min(1e-8).log())

    def finish(self, result, val: list, identity: dict, arch_config: dict) -> dict:
        """Choose the decoding on the validation pairs: of every annealed-mean temperature and share
        of the rebalancing divided out (UnetAbClassifier.undo_rebalance), the most colourful whose
        PSNR is not below the grey input's (none: the highest PSNR); set it on the generator and in
        `arch_config` (with the weights); the card's entries (the curve, the choice, the classes)."""
        g, curve = result.generator.eval(), []  # eval: batch norm's running statistics, left unchanged
        weights = [round(float(w), 5) for w in self.weights]
        for undo in UNDO_REBALANCE:
            g.set_rebalance(weights, undo)
            for t in TEMPERATURES:
                g.temperature = t
                scores = validation_scores(g, val, True)
                curve.append({"undo_rebalance": undo, "temperature": t} | {k: round(v, 4) for k, v in scores.items()})
        floor = identity.get("val_identity_psnr", float("-inf"))
        ok = [c for c in curve if c.get("val_psnr", float("-inf")) >= floor]
        pick = max(ok, key=lambda c: c["val_colourfulness"]) if ok else max(curve, key=lambda c: c.get("val_psnr", 0))
        g.set_rebalance(weights, pick["undo_rebalance"])
        g.temperature = arch_config["temperature"] = pick["temperature"]
        arch_config |= {"rebalance_weights": weights, "undo_rebalance": pick["undo_rebalance"]}
        why = ("the most colourful with val PSNR >= the grey input's" if ok else
               "no decoding reached the grey input's val PSNR: the highest PSNR")
        log.info("decoding: temperature %.2f, rebalancing divided out %.2f (%s): val PSNR %.2f (grey %.2f), "
                 "colourfulness %.1f", pick["temperature"], pick["undo_rebalance"], why,
                 pick.get("val_psnr", float("nan")), floor, pick.get("val_colourfulness", 0))
        return {"color_loss": {"kind": "classification (Zhang et al. 2016)", "bins": len(self.bins), "grid": AB_GRID,
                               "rebalance_lambda": self.rebalance, "smoothing_sigma": 5.0, "soft_encoding": "5 nearest, sigma 5",
                               "weights_min_max": [round(float(self.weights.min()), 3), round(float(self.weights.max()), 3)]},
                "temperature": {"chosen": pick["temperature"], "undo_rebalance": pick["undo_rebalance"], "rule": why,
                                "curve": curve, "grey_input_val_psnr": round(floor, 4)}}


def half_res_ab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 2, H/2, W/2): the mean ab of each 2x2 block (unet-ab's targets)."""
    return F.avg_pool2d(rgb_to_ab(rgb), 2)


@dataclass(frozen=True)
class ColourClassLosses:
    """The unet-ab colouriser's losses on batches (a grey, b colour) in [0, 1]: the class-rebalanced
    cross-entropy of its half-resolution logits against b's soft-encoded ab, plus gan_weight * cGAN
    of its decoded colours (only when a discriminator is on)."""

    cfg: Pix2PixConfig
    classes: ColourClasses

    def forward(self, net: UnetAbClassifier, batch):
        """(logits (B, Q, H/2, W/2), the decoded colours in [0, 1] or None without a discriminator)."""
        x = batch[0] * 2 - 1
        logits = net.logits(x)
        return logits, (net.decode(logits, x) + 1) / 2 if self.cfg.gan_weight > 0 else None

    def generator_loss(self, batch, out, disc):
        (a, b), (logits, fake) = batch, out
        bins = self.classes.bins.to(logits.device)
        target = losses.soft_encode_ab(half_res_ab(b), bins)
        ce = losses.rebalanced_cross_entropy(logits, target, self.classes.weights)
        loss, logs = ce, {"ce": ce.item()}
        if disc is not None:
            adv = losses.gan_loss(disc(torch.cat([a, fake], 1)), True, self.cfg.gan_mode)
            loss = loss + self.cfg.gan_weight * adv
            logs["g_gan"] = adv.item()
        return loss, logs

    def discriminator_loss(self, disc, batch, out):
        return Pix2PixLosses(self.cfg).discriminator_loss(disc, batch, out[1])


def identity_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The validation scores of the input itself (the identity baseline), for the card."""
    scores = validation_scores(_Identity(), pairs)
    return {k.replace("val_", "val_identity_"): v for k, v in scores.items()}


class _Identity(nn.Module):
    input_multiple = 1

    def forward(self, x):
        return x


def _zero_last(g: nn.Module) -> None:
    """Zero the output conv of a residual generator (NAFNet's `ending`): it starts as the identity."""
    last = getattr(g, "ending", None) or [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)


# ---------------------------------------------------------------- CycleGAN


def unpaired_batches(a_images: list[np.ndarray], b_images: list[np.ndarray], jitter: JitterConfig, batch_size: int):
    """next_batch() -> (a, b): independent random crops of the two domains, (B, C, c, c) in [0, 1]."""
    aug = make_jitter(jitter)
    for images in (a_images, b_images):
        if any(min(i.shape[:2]) < jitter.crop_size for i in images):
            raise ValueError(f"training image(s) smaller than the {jitter.crop_size} px crop (use --crop-size)")

    def crops(images):
        return _to_batch([aug(image=images[i], target=images[i])["image"]
                          for i in torch.randint(len(images), (batch_size,)).tolist()])

    return lambda: (crops(a_images), crops(b_images))


@dataclass(frozen=True)
class CycleGANTraining:
    """CycleGAN's forward pass and losses (LSGAN, as the reference) on unpaired batches (a, b) in
    [0, 1]; `net` is CycleGenerators (G_A: A -> B, G_B: B -> A), `disc` CycleDiscriminators."""

    cfg: CycleGANConfig
    pool_a: ImagePool  # past G_B(b) fakes shown to D_B
    pool_b: ImagePool  # past G_A(a) fakes shown to D_A

    def forward(self, net, batch) -> dict[str, torch.Tensor]:
        """fake_b = G_A(a), fake_a = G_B(b), their reconstructions, and (identity loss) G_A(b), G_B(a).
        With pseudo_pairs, B's cycle G_A(G_B(b)) -> b trains G_A alone: the reference's lets G_B encode b
        in a near-invisible signal that G_A decodes (a steganographic cycle) instead of a degradation
        G_A must learn to undo (Bulat et al. 2018 learn the degradation first for the same reason)."""
        a, b = batch
        fake_b, fake_a = run_generator(net.G_A, a), run_generator(net.G_B, b)
        pseudo_a = fake_a.detach() if self.cfg.pseudo_pairs else fake_a  # (G_B(b), b): a pair for G_A only
        out = {"fake_b": fake_b, "fake_a": fake_a,
               "rec_a": run_generator(net.G_B, fake_b), "rec_b": run_generator(net.G_A, pseudo_a)}
        if self.cfg.lambda_identity:
            out |= {"idt_a": run_generator(net.G_A, b),
                    "idt_b": run_generator(lambda x: net.G_B(x, noise=False), a)}  # (G_B's b_noise: not here)
        if self.cfg.n2n_weight:
            out["n2n"] = losses.neighbor2neighbor_loss(lambda x: run_generator(net.G_A, x), a)
        return out

    def generator_loss(self, batch, out, disc):
        """Both adversarial terms + lambda_cycle * cycle L1 (+ lambda_cycle * lambda_identity * identity L1),
        the L1 terms on the [-1, 1] scale (+ n2n_weight * G_A's Neighbor2Neighbor MSE on A, [0, 1] scale).
        A's cycle compares cycle_a_pool-pooled images: the reference's cycle asks G_B to re-add the exact
        noise G_A removed, so G_A learns to keep it."""
        cfg, (a, b) = self.cfg, batch
        adv = (losses.gan_loss(disc.D_A(out["fake_b"]), True, "lsgan")
               + losses.gan_loss(disc.D_B(out["fake_a"]), True, "lsgan"))
        pool = cfg.cycle_a_pool  # (1: the reference's full-resolution cycle)
        cycle = 2 * (F.l1_loss(F.avg_pool2d(out["rec_a"], pool), F.avg_pool2d(a, pool)) + F.l1_loss(out["rec_b"], b))
        loss = adv + cfg.lambda_cycle * cycle
        logs = {"g_gan": adv.item(), "cycle": cycle.item()}
        if cfg.lambda_identity:
            idt = 2 * (F.l1_loss(out["idt_a"], b) + F.l1_loss(out["idt_b"], a))
            loss = loss + cfg.lambda_cycle * cfg.lambda_identity * idt
            logs["idt"] = idt.item()
        if cfg.n2n_weight:
            loss = loss + cfg.n2n_weight * out["n2n"]
            logs["n2n"] = out["n2n"].item()
        return loss, logs

    def discriminator_loss(self, disc, batch, out):
        """Each discriminator: real of its domain vs a fake from the pool, halved."""
        a, b = batch
        out = {k: v.detach() for k, v in out.items()}  # fit detaches tensors and tuples, not dicts
        loss_a = 0.5 * (losses.gan_loss(disc.D_A(b), True, "lsgan")
                        + losses.gan_loss(disc.D_A(self.pool_b.query(out["fake_b"])), False, "lsgan"))
        loss_b = 0.5 * (losses.gan_loss(disc.D_B(a), True, "lsgan")
                        + losses.gan_loss(disc.D_B(self.pool_a.query(out["fake_a"])), False, "lsgan"))
        return loss_a + loss_b, {"d_a": loss_a.item(), "d_b": loss_b.item()}


def train_cyclegan(cfg: CycleGANConfig, device: torch.device, resume: bool = True) -> dict:
    """Train both directions, save `cfg.out` (one file: G_A and G_B) + its JSON card, return the card."""
    torch.manual_seed(cfg.seed)
    io.check_writable(Path(cfg.out).parent, create=False)
    jitter = JitterConfig(cfg.preprocess, cfg.load_size, cfg.crop_size)
    a_raw, b_raw = read_folder(cfg.a), read_folder(cfg.b)
    in_ch, out_ch = _channels(a_raw), _channels(b_raw)
    a_images, b_images = [_prepare(i, in_ch, jitter) for i in a_raw], [_prepare(i, out_ch, jitter) for i in b_raw]
    val = [(_as_channels(a, in_ch), _as_channels(b, out_ch)) for _, a, b in read_pairs(cfg.val, "folders")] \
        if cfg.val else []
    if cfg.lambda_identity and in_ch != out_ch:
        raise ValueError(f"the identity loss needs the same channels in A and B ({in_ch} vs {out_ch}); "
                         f"use --lambda-identity 0")
    arch_config = {"in_ch": in_ch, "out_ch": out_ch, "ngf": cfg.ngf, "n_blocks": cfg.n_blocks, "norm": cfg.norm,
                   "dropout": False, "residual": cfg.residual} | ({"b_noise": cfg.b_noise} if cfg.b_noise else {})
    g = define_G("cycle", **arch_config)
    meta = {"arch": "cycle", "config": arch_config, "discriminator": [cfg.ndf, cfg.n_layers_d, cfg.d_norm],
            "data_a": data_fingerprint(io.list_images(cfg.a), cfg.a),
            "data_b": data_fingerprint(io.list_images(cfg.b), cfg.b)}
    out = Path(cfg.out)
    check_resume(out.with_suffix(".state.pt"), meta, resume)
    if cfg.residual:
        _zero_last(g.G_A)
        _zero_last(g.G_B)
    g = g.to(device)
    d = CycleDiscriminators(in_ch, out_ch, cfg.ndf, cfg.n_layers_d, cfg.d_norm).to(device)
    log.info("CycleGAN: %d A images, %d B images, %d validation pairs, G %.2fM params (both directions)",
             len(a_images), len(b_images), len(val), sum(p.numel() for p in g.parameters()) / 1e6)
    training = CycleGANTraining(cfg, ImagePool(cfg.pool_size), ImagePool(cfg.pool_size))
    spec = TrainSpec(g, _on_device(unpaired_batches(a_images, b_images, jitter, cfg.batch_size), device),
                     training.forward, training.generator_loss, discriminator=d, d_loss=training.discriminator_loss,
                     validate=lambda net: validation_scores(net.G_A, val), select_by="val_psnr" if val else None,
                     meta=meta)
    result = fit(spec, _gan_train_config(cfg), state_path=out.with_suffix(".state.pt"), resume=resume)
    return _save(out, result, "cycle", arch_config, cfg,
                 {"model": "cyclegan", "validation_identity": identity_scores(val) if val else {}})
