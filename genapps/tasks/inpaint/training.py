"""`genapps train inpaint`: the U-Net GAN inpainter, its pluralistic (conditional VAE) variant, or
the LaMa-style FFC model (`--model ffc`).

Crops of the training photos (downscaled at random to 0.45-0.8 of their size, so that 1 MP
photos look like the 0.15 MP benchmark images), flipped, are cut with a seeded mask drawn on a
320x480 canvas (holes as large as the benchmark's), their hole pre-filled by the mean of the
Telea, Navier-Stokes and biharmonic fills. The generator
predicts a correction of the pre-fill; losses: hole L1 (+ a small L1 outside the hole),
hinge adversarial loss and discriminator feature matching against a spectral-norm PatchGAN on
the composited image and the mask. The pluralistic variant adds a posterior q(z | full crop),
a learned conditional prior p(z | masked crop) and KL(q || p); its adversarial terms apply to a
fill sampled from the prior. Validation: hole L1 and PSNR on fixed crops and masks of a
held-out split (the last `holdout` training photos when no --val folder is given).

The FFC model (round 2): no classical pre-fill (the model fills the hole itself, push-pull); photos
of --data and --extra (benchmark-sized ones, e.g. BSD's 481x321, kept at full size only); LaMa-style
masks (`--masks lama`: wide irregular strokes and boxes over 10-50% of the crop, the benchmark's
kinds, thin scratches and text); losses: hole L1, a Laplacian-pyramid L1 of the composited crop
(`structure_weight`, a receptive field as large as the crop with no downloaded weights), and the
PatchGAN's hinge + feature matching terms. Every validation that improves on the best so far
writes OUT's `.best.safetensors` (the held-out selection); a card records every stage of the
weights (an --init's stages, then this one).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import string
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from genapps import io, losses, weights
from genapps.nn import PatchDiscriminator
from genapps.tasks.inpaint import masks as M
from genapps.tasks.inpaint.classical import prefill
from genapps.tasks.inpaint.models import define_G
from genapps.train import TrainConfig, TrainSpec, check_resume, data_fingerprint, fit
from genapps.weights import save_trained

log = logging.getLogger(__name__)

TASK = "inpaint"
SCALES = (0.45, 0.6, 0.8)  # training photos are kept at these sizes
CANVAS = (320, 480)  # masks are drawn at benchmark size, then cropped with the image
MIXED = (("thick", 0.4), ("medium", 0.2), ("thin", 0.1), ("box", 0.15), ("area", 0.15))
MASK_SETS = ("thin", "medium", "thick", "mixed", "lama")
MODELS = {"gan": "unet", "pluralistic": "pluralistic", "ffc": "ffc"}  # --model -> architecture
FULL_SIZE_UP_TO = 640  # px: photos no longer than this are benchmark-sized already (kept at scale 1 only)


@dataclass(frozen=True)
class InpaintTrainConfig:
    data: str = field(metadata={"type": "dir", "help": "Folder of training photos."})
    out: str = field(metadata={"type": "file", "help": "Output .safetensors file."})
    val: str | None = field(default=None, metadata={"type": "dir", "help": "Validation photos (default: the last "
                                                    "--holdout of --data)."})
    holdout: int = field(default=8, metadata={"help": "Photos of --data kept for validation."})
    extra: str | None = field(default=None, metadata={"type": "dir", "help": "A folder of more training photos "
                                                      "(searched recursively; never validated on)."})
    model: str = field(default="gan", metadata={"choices": tuple(MODELS)})
    init: str | None = field(default=None, metadata={
        "help": "Start from these weights (pluralistic: a GAN inpainting model; ffc: an ffc model, to continue)."})
    masks: str = field(default="mixed", metadata={"help": (
        f"Training holes: one of {', '.join(MASK_SETS)}, or a mixture of mixed's kinds with weights, e.g. "
        "area:0.5,thick:0.3,box:0.2 (area = the benchmark's 10-60% buckets; mixed is "
        + ",".join(f"{k}:{w}" for k, w in MIXED) + ").")})
    ngf: int = field(default=16, metadata={"help": "U-Net width (ffc: the stem's width, doubled per level)."})
    blocks: int = field(default=6, metadata={"help": "FFC: residual blocks at the lowest resolution."})
    downs: int = field(default=3, metadata={"help": "FFC: stride-2 levels (the blocks run at 1/2^downs)."})
    prefill: bool = field(default=True, metadata={"help": "FFC: start from a push-pull pre-fill of the hole."})
    act: str = field(default="lrelu", metadata={"choices": ("relu", "lrelu"), "help": (
        "FFC: activation (relu: round 2's stage 1; its unnormalised trunk dies, the correction stays ~0).")})
    structure_weight: float = field(default=1.0, metadata={
        "help": "FFC: weight of the Laplacian-pyramid L1 of the composited crop."})
    num_downs: int = field(default=5, metadata={"cli": False})
    refine: str = field(default="", metadata={"help": (
        "U-Net models: levels (comma-separated, k works at 1/2^k) that get two residual blocks on their skip + "
        "decoder features, e.g. 2,3,4; they start as the identity, so --init from a model without them "
        "continues it unchanged.")})
    z_dim: int = field(default=32, metadata={"help": "Pluralistic: latent size."})
    latent_map: bool = field(default=False, metadata={"help": (
        "Pluralistic: z is a map at the bottleneck's size, one code per cell (fills that differ in structure), "
        "not one vector per crop.")})
    steps: int = 10000
    batch_size: int = 8
    patch: int = field(default=128, metadata={"help": "Crop size in px (multiple of 32)."})
    lr: float = 5e-4
    hole_weight: float = field(default=1.0, metadata={"cli": False})
    valid_weight: float = field(default=0.1, metadata={"cli": False})
    adversarial_weight: float = 0.01
    feature_weight: float = field(default=0.1, metadata={"help": "Discriminator feature matching."})
    kl_weight: float = field(default=0.002, metadata={"help": "Pluralistic: KL(q || prior) weight."})
    temperature: float = field(default=1.0, metadata={"help": (
        "Pluralistic: scale of the prior's std for the training samples (the best-of-K term) and for the saved "
        "model's sampling: larger = fills that differ more.")})
    min_of: int = field(default=3, metadata={  # the best of the prior samples gets the hole L1
        "help": "Pluralistic: prior samples per crop; the best one's hole L1 is trained (0 = none)."})
    diversity: float = field(default=0.0, metadata={"help": (
        "Pluralistic: DSGAN's diversity floor, hole L1 (0-255) that two prior samples of a crop should differ by "
        "per typical noise distance; keeps the prior from shrinking under the best-of-K term (0 = off).")})
    d_channels: int = field(default=16, metadata={"cli": False})
    ema: float = field(default=0.999, metadata={"help": "Generator EMA decay (0 = off)."})
    val_every: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.masks not in MASK_SETS:
            mask_mixture(self.masks)  # ValueError unless a valid mixture
        if not 0 < self.temperature <= 16:
            raise ValueError(f"temperature must be in (0, 16], got {self.temperature}")
        if self.diversity < 0 or (self.diversity and (self.model != "pluralistic" or self.min_of < 2)):
            raise ValueError("diversity needs --model pluralistic and --min-of 2 or more (and is at least 0)")
        levels = self.refine_levels
        if levels and (self.model == "ffc" or any(not 1 <= k < self.num_downs for k in levels)):
            raise ValueError(f"refine needs a U-Net model (gan, pluralistic) and levels in 1..{self.num_downs - 1}, "
                             f"got {self.refine!r}")
        multiple = 2 ** (self.downs if self.model == "ffc" else self.num_downs)
        if self.patch % multiple:
            raise ValueError(f"patch must be a multiple of {multiple}, got {self.patch}")

    @property
    def refine_levels(self) -> list[int]:
        """--refine as sorted distinct ints (ValueError when it is not a comma-separated list of them)."""
        try:
            return sorted({int(v) for v in self.refine.split(",") if v.strip()})
        except ValueError:
            raise ValueError(f"refine must be comma-separated level numbers such as 2,3,4, got {self.refine!r}") from None


def load_photos(paths: list[Path], min_size: int, full_size_up_to: int = 0) -> list[torch.Tensor]:
    """uint8 (3, H, W) copies of the photos at every scale of SCALES (those at least min_size px);
    photos whose longer side is at most `full_size_up_to` px at full size only."""
    out = []
    for path in paths:
        try:
            im = io.read_image(path).color.expand(3, -1, -1)
        except io.ImageError as e:
            log.warning("skipped: %s", e)
            continue
        for s in (1.0,) if max(im.shape[1:]) <= full_size_up_to else SCALES:
            size = (round(im.shape[1] * s), round(im.shape[2] * s))
            if min(size) >= min_size:
                small = F.interpolate(im[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
                out.append((small.clamp(0, 1) * 255).round().to(torch.uint8))
    if not out:
        raise ValueError(f"no usable training images (>= {min_size} px after downscaling)")
    return out


def mask_mixture(spec: str) -> tuple[tuple[str, float], ...] | None:
    """`--masks` as ((kind, probability), ...) summing to 1: "mixed" -> MIXED, a weighted mixture of
    MIXED's kinds ("area:0.5,thick:0.3,box:0.2") -> its normalised weights; the other MASK_SETS -> None
    (a single kind, or lama's own draw). ValueError naming the valid sets and kinds otherwise."""
    if spec == "mixed":
        return MIXED
    if spec in MASK_SETS:
        return None
    kinds = dict(MIXED)
    try:
        weights = {k.strip(): float(w) for k, w in (item.split(":") for item in spec.split(","))}
    except ValueError:
        weights = {}
    if not weights or any(k not in kinds or w < 0 for k, w in weights.items()) or sum(weights.values()) <= 0:
        raise ValueError(f"masks must be one of {', '.join(MASK_SETS)} or kind:weight pairs of the kinds "
                         f"{', '.join(kinds)} (e.g. area:0.5,thick:0.3,box:0.2), got {spec!r}")
    total = sum(weights.values())
    return tuple((k, w / total) for k, w in weights.items())


def train_mask(kind: str, patch: int, seed: int) -> np.ndarray:
    """A bool (patch, patch) hole: a `kind` mask (a MASK_SETS name or a mask_mixture) drawn on the
    benchmark-size canvas (grown to the patch when it is larger), cropped where it has holes."""
    rng = np.random.default_rng(seed)
    mixture = mask_mixture(kind)
    if mixture:
        names, probs = zip(*mixture)
        kind = str(rng.choice(names, p=probs))
        if kind == "area":
            kind = str(rng.choice(list(M.BUCKETS)[1:]))  # 10-60%
    size = (max(CANVAS[0], patch), max(CANVAS[1], patch))
    canvas = M.generate(kind, size, int(rng.integers(2 ** 62)))
    best = None
    for _ in range(8):
        y, x = int(rng.integers(0, size[0] - patch + 1)), int(rng.integers(0, size[1] - patch + 1))
        crop = canvas[y:y + patch, x:x + patch]
        if 0.02 <= crop.mean() <= 0.7:
            return crop
        if best is None or abs(crop.mean() - 0.2) < abs(best.mean() - 0.2):
            best = crop
    if best.mean() < 0.005:  # nothing here: a box
        best = M.generate("box", (patch, patch), int(rng.integers(2 ** 62)))
    return best


def _lama_strokes(mask: np.ndarray, rng: np.random.Generator) -> None:
    """LaMa's wide irregular strokes: 1-5 polylines of 2-8 segments, 8-28% of the side wide."""
    side = max(mask.shape)
    for _ in range(int(rng.integers(1, 6))):
        x, y = float(rng.uniform(0, mask.shape[1])), float(rng.uniform(0, mask.shape[0]))
        width = max(3, int(rng.uniform(0.08, 0.28) * side))
        for _ in range(int(rng.integers(2, 9))):
            angle = float(rng.uniform(0, 2 * np.pi))
            length = float(rng.uniform(0.1, 0.5)) * side
            nx = float(np.clip(x + length * np.cos(angle), 0, mask.shape[1] - 1))
            ny = float(np.clip(y + length * np.sin(angle), 0, mask.shape[0] - 1))
            cv2.line(mask, (round(x), round(y)), (round(nx), round(ny)), 1, width)
            cv2.circle(mask, (round(nx), round(ny)), width // 2, 1, -1)
            x, y = nx, ny


def _lama_boxes(mask: np.ndarray, rng: np.random.Generator) -> None:
    """LaMa's boxes: 1-4 rectangles of 12-60% of the side."""
    h, w = mask.shape
    for _ in range(int(rng.integers(1, 5))):
        bh, bw = int(rng.uniform(0.12, 0.6) * h), int(rng.uniform(0.12, 0.6) * w)
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        mask[y:y + bh, x:x + bw] = 1


def _text(mask: np.ndarray, rng: np.random.Generator) -> None:
    """Text to remove: 1-4 lines of random letters (Hershey fonts, 2-7 px strokes), as captions and watermarks."""
    h, w = mask.shape
    letters = string.ascii_letters + string.digits
    for _ in range(int(rng.integers(1, 5))):
        text = "".join(rng.choice(list(letters), int(rng.integers(3, 14))))
        scale = float(rng.uniform(0.5, 2.0))
        thick = int(rng.integers(2, 8))
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX]))
        org = (int(rng.integers(-w // 4, w - 10)), int(rng.integers(10, h + 10)))
        cv2.putText(mask, text, org, font, scale, 1, thick, cv2.LINE_8)


LAMA = (("wide", 0.3), ("boxes", 0.15), ("benchmark", 0.35), ("text", 0.1), ("scratches", 0.1))


def lama_mask(patch: int, seed: int) -> np.ndarray:
    """A bool (patch, patch) hole drawn like LaMa's training masks, plus the real uses: wide strokes
    (30%), boxes (15%), the benchmark's kinds on a benchmark-sized canvas (mixed/area buckets, 35%),
    text (10%) and thin scratches (10%); wide strokes and boxes are redrawn until they cover 10-50%
    of the crop, the others 1-60%."""
    rng = np.random.default_rng(seed)
    names, probs = zip(*LAMA)
    kind = str(rng.choice(names, p=probs))
    if kind == "benchmark":
        return train_mask("mixed", patch, int(rng.integers(2 ** 62)))
    if kind == "scratches":
        return M.generate("thin", (patch, patch), int(rng.integers(2 ** 62)))
    lo, hi = (0.1, 0.5) if kind in ("wide", "boxes") else (0.01, 0.6)
    best = None
    for _ in range(20):
        mask = np.zeros((patch, patch), np.uint8)
        {"wide": _lama_strokes, "boxes": _lama_boxes, "text": _text}[kind](mask, rng)
        if lo <= mask.mean() <= hi:
            return mask.astype(bool)
        if best is None or abs(mask.mean() - 0.25) < abs(best.mean() - 0.25):
            best = mask
    if best.mean() < 0.005:
        _lama_boxes(best, rng)
    return best.astype(bool)


def draw_mask(kind: str, patch: int, seed: int) -> np.ndarray:
    """A training hole of mask set `kind` (MASK_SETS)."""
    return lama_mask(patch, seed) if kind == "lama" else train_mask(kind, patch, seed)


def make_input(image: torch.Tensor, mask: torch.Tensor, classical: bool = True) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] and (B, 1, H, W) {0, 1} -> the model input (B, 4, H, W): the image with its hole
    pre-filled classically (`classical`; else zeroed: the FFC model fills it itself) + the mask."""
    if classical:
        filled = torch.stack([prefill(im, m[0] > 0.5) for im, m in zip(image, mask)])
    else:
        filled = image * (1 - mask)
    return torch.cat([filled, mask], 1)


def make_batches(images: list[torch.Tensor], cfg: InpaintTrainConfig):
    """A function of a torch.Generator returning a batch (x (B,4,p,p), target (B,3,p,p), mask (B,1,p,p)),
    all drawn from that generator (TrainSpec.make_batch: made ahead in background processes, since the
    classical pre-fill costs as much CPU as the network's step)."""
    p = cfg.patch
    classical = cfg.model != "ffc"

    def make_batch(gen: torch.Generator):
        crops, holes = [], []
        for i in torch.randint(len(images), (cfg.batch_size,), generator=gen).tolist():
            im = images[i]
            y = int(torch.randint(im.shape[1] - p + 1, (1,), generator=gen))
            x = int(torch.randint(im.shape[2] - p + 1, (1,), generator=gen))
            crop = im[:, y:y + p, x:x + p]
            flips = torch.randint(2, (2,), generator=gen).tolist()
            crop = crop.flip(2) if flips[0] else crop
            crop = crop.transpose(1, 2) if flips[1] else crop
            crops.append(crop)
            holes.append(torch.from_numpy(draw_mask(cfg.masks, p, int(torch.randint(2 ** 62, (1,), generator=gen)))))
        target = torch.stack(crops).float() / 255
        mask = torch.stack(holes)[:, None].float()
        return make_input(target, mask, classical), target, mask

    return make_batch


def validation_set(paths: list[Path], size: int = 256,
                   classical: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed (x, target, mask) crops: each photo at half size, centre crop, one thick and one mixed mask
    (the same crops and masks for every model; `classical` as make_input)."""
    targets, holes = [], []
    for path in paths:
        im = io.read_image(path).color.expand(3, -1, -1)
        im = F.interpolate(im[None], scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False)[0]
        s = min(size, im.shape[1], im.shape[2]) // 32 * 32
        y, x = (im.shape[1] - s) // 2, (im.shape[2] - s) // 2
        crop = (im[:, y:y + s, x:x + s].clamp(0, 1) * 255).round() / 255
        for kind in ("thick", "mixed"):
            targets.append(crop)
            holes.append(torch.from_numpy(train_mask(kind, s, M.seed_for(0, f"{kind}/{path.name}"))))
    if not targets or len({t.shape for t in targets}) != 1:
        raise ValueError("validation images must be at least 64 px and give crops of one size")
    target = torch.stack(targets)
    mask = torch.stack(holes)[:, None].float()
    return make_input(target, mask, classical), target, mask


def _params(g) -> int:
    return sum(p.numel() for p in g.parameters())


def build_generator(cfg: InpaintTrainConfig) -> tuple[torch.nn.Module, str, dict]:
    arch = MODELS[cfg.model]
    if arch == "ffc":
        config = {"channels": cfg.ngf, "downs": cfg.downs, "blocks": cfg.blocks, "prefill": cfg.prefill}
        config |= {"act": cfg.act} if cfg.act != "relu" else {}  # (stage 1's weights: relu, no key)
    else:
        config = {"ngf": cfg.ngf, "num_downs": cfg.num_downs} | ({"z_dim": cfg.z_dim} if arch == "pluralistic" else {})
        if arch == "pluralistic" and cfg.temperature != 1.0:  # (absent at 1: round 1's cards)
            config["temperature"] = cfg.temperature
        if arch == "pluralistic" and cfg.latent_map:  # (absent when off: round 1's and 2's cards)
            config["latent_map"] = True
        if cfg.refine_levels:  # (absent when off: the earlier cards)
            config["refine"] = cfg.refine_levels
    g = define_G(arch, **config)
    if cfg.init:
        tensors, meta = weights.load_weights(weights.resolve_weights(cfg.init))
        if meta.get("task") != TASK:
            raise ValueError(f"--init {cfg.init}: weights of task {meta.get('task')!r}, not {TASK!r}")
        if arch == "ffc" or meta.get("arch") == "ffc":  # continue an FFC model (the next stage of its training)
            if meta.get("arch") != arch or meta.get("config") != config:
                raise ValueError(f"--init {cfg.init}: {meta.get('arch')} {meta.get('config')} does not match "
                                 f"{arch} {config}")
            g.load_state_dict({k: v.float() for k, v in tensors.items()})
            return g, arch, config
        latent = ("z_dim", "latent_map")  # the U-Net's weights do not depend on these; the encoders' do
        base = {k: v for k, v in config.items() if k not in ("temperature", "refine", *latent)}  # (temperature: sampling)
        added = set(config.get("refine", [])) - set(meta["config"].get("refine", []))  # new levels: identity at start
        if {k: v for k, v in meta["config"].items() if k not in ("temperature", "refine", *latent)} != base or (
                meta["arch"] == arch and any(meta["config"].get(k) != config.get(k) for k in latent)) or (
                not set(meta["config"].get("refine", [])) <= set(config.get("refine", []))):
            raise ValueError(f"--init {cfg.init}: {meta['arch']} {meta['config']} does not match {arch} {config}")
        if meta["arch"] == arch:
            missing, unexpected = g.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
            if unexpected or any(".refine." not in k for k in missing):
                raise ValueError(f"--init {cfg.init}: its tensors do not fit {arch} {config}")
            if added:
                log.info("--init %s: refine levels %s added (starting as the identity)", cfg.init, sorted(added))
        elif meta["arch"] == "unet" and arch == "pluralistic":  # the VAE starts as the GAN model (z ignored)
            try:
                g.start_from_unet({k: v.float() for k, v in tensors.items()})
            except ValueError as e:
                raise ValueError(f"--init {cfg.init}: {e}") from None
        else:
            raise ValueError(f"--init {cfg.init}: cannot start a {arch} model from {meta['arch']} weights")
    return g, arch, config


@dataclass(frozen=True)
class InpaintTraining:
    """The parts of `genapps train inpaint` that fit calls. Batches are (x (B, 4, p, p) pre-filled
    input + mask, target (B, 3, p, p) in [0, 1], mask (B, 1, p, p) {0, 1}). The pluralistic model's
    output is (posterior fill, prior fills (K, B, 3, p, p), mu_q, logvar_q, mu_p, logvar_p, the fills' unit
    noise (K, B, Z))."""

    cfg: InpaintTrainConfig
    device: torch.device
    pluralistic: bool
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # validation_set's fixed (x, target, mask)
    prefill_val: float  # the pre-fill's own validation hole L1 (0-255), reported beside the model's
    keep_best: BestKeeper | None = None  # called with every validation; counts the steps

    def forward(self, net, batch):
        x, target, mask = batch
        if self.keep_best is not None:
            self.keep_best.step += 1  # (once per training step: validation calls the model itself)
        if not self.pluralistic:
            return net(x)
        mu_q, lv_q = net.posterior_params(target, mask)
        mu_p, lv_p = net.prior_params(x)
        z_q = mu_q + torch.randn_like(mu_q) * (0.5 * lv_q).exp()
        noise = torch.randn((max(1, self.cfg.min_of), *mu_p.shape), device=mu_p.device, dtype=mu_p.dtype)
        samples = [net.decode(x, net.sample_z(mu_p, lv_p, eps=eps)) for eps in noise]
        return net.decode(x, z_q), torch.stack(samples), mu_q, lv_q, mu_p, lv_p, noise

    def _sample(self, out) -> torch.Tensor:
        """The fill the discriminator judges: the model's, or the pluralistic model's first prior sample."""
        return out[1][0] if self.pluralistic else out

    def generator_loss(self, batch, out, disc):
        """Hole and valid L1 (pluralistic: + KL(q || p) and the best prior sample's hole L1), then
        the hinge adversarial loss and feature matching on the composited fill."""
        cfg, (_, target, mask) = self.cfg, batch
        pred, sample = out[0] if self.pluralistic else out, self._sample(out)
        hole = losses.hole_l1(pred, target, mask)
        valid = losses.hole_l1(pred, target, 1 - mask)
        loss = cfg.hole_weight * hole + cfg.valid_weight * valid
        logs = {"hole_l1": hole.item() * 255, "valid_l1": valid.item() * 255}
        if self.pluralistic:
            kl = losses.kl_gaussians(*out[2:6])
            loss = loss + cfg.kl_weight * kl
            logs |= {"kl": kl.item(), "prior_hole_l1": losses.hole_l1(sample, target, mask).item() * 255}
            if cfg.min_of:  # the best prior sample of each crop must match: the samples spread out (best-of-K)
                best = losses.best_of_hole_l1(out[1], target, mask)
                loss = loss + cfg.hole_weight * best
                logs["best_prior_hole_l1"] = best.item() * 255
            if cfg.diversity:  # the samples differ by at least the floor per noise distance (DSGAN)
                short = losses.diversity_sensitive_loss(out[1], out[6], mask, cfg.diversity / 255)
                loss = loss + cfg.hole_weight * short
                logs["diversity_short"] = short.item() * 255
        if cfg.model == "ffc" and cfg.structure_weight:  # the structure of the composited crop, coarse to fine
            structure = losses.laplacian_pyramid_l1(mask * pred + (1 - mask) * target, target)
            loss = loss + cfg.structure_weight * structure
            logs["structure"] = structure.item() * 255
        if disc is not None:
            comp = mask * sample + (1 - mask) * target
            fake_logits, fake_feats = disc.forward_with_features(torch.cat([comp, mask], 1))
            with torch.no_grad():
                _, real_feats = disc.forward_with_features(torch.cat([target, mask], 1))
            adv = losses.hinge_g_loss(fake_logits)
            fm = losses.feature_matching_l1(fake_feats, real_feats)
            loss = loss + cfg.adversarial_weight * adv + cfg.feature_weight * fm
            logs |= {"adv": adv.item(), "fm": fm.item()}
        return loss, logs

    def discriminator_loss(self, disc, batch, out):
        _, target, mask = batch
        comp = mask * self._sample(out) + (1 - mask) * target
        loss = losses.hinge_d_loss(disc(torch.cat([target, mask], 1)), disc(torch.cat([comp, mask], 1)))
        return loss, {"d": loss.item()}

    def validate(self, model) -> dict[str, float]:
        """Hole L1 (0-255, and negated: the selection metric) and hole PSNR on the fixed validation
        crops (pluralistic: one prior sample each, from a generator seeded 0)."""
        x, target, mask = (t.to(self.device) for t in self.val)
        gen = torch.Generator(device=self.device).manual_seed(0)
        preds = [model(x[i:i + 4], gen) if self.pluralistic else model(x[i:i + 4]) for i in range(0, len(x), 4)]
        pred = torch.cat(preds)
        l1 = float(losses.hole_l1(pred, target, mask)) * 255
        mse = float(((pred - target) ** 2 * mask).sum() / (mask.sum() * 3))
        result = {"val_hole_l1": l1, "val_hole_psnr": float(10 * np.log10(1 / max(mse, 1e-10))),
                  "val_neg_hole_l1": -l1, "val_prefill_hole_l1": self.prefill_val}
        if self.pluralistic:  # two more samples each: best of 3 and how much the fills differ
            more = [torch.cat([model(x[i:i + 4], gen) for i in range(0, len(x), 4)]) for _ in range(2)]
            result |= sample_spread(torch.stack([pred, *more]), target, mask)
        if self.keep_best is not None:
            self.keep_best(model, result)
        return result


def sample_spread(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """K fills (K, B, 3, H, W) of the crops: the best-of-K hole L1 (each crop's best fill, then the hole L1
    over every crop's hole pixels, as val_hole_l1 is measured: the two compare) and the diversity, the
    hole L1 between two fills averaged over the pairs, both in 0-255. (Before 2026-12-04 the best-of-K
    was a mean of per-crop L1s, which weighs small holes more: 13.6 beside a pooled one-sample 15.0.)"""
    k, b = len(samples), samples.shape[1]
    per = losses.per_crop_hole_l1(samples, target, mask)  # (K, B)
    best = samples[per.argmin(0), torch.arange(b, device=samples.device)]
    pairs = [losses.hole_l1(samples[i], samples[j], mask) for i in range(k) for j in range(i + 1, k)]
    return {f"val_best_of_{k}_hole_l1": float(losses.hole_l1(best, target, mask)) * 255,
            "val_diversity": float(torch.stack(pairs).mean()) * 255 if pairs else 0.0}


def split_validation(cfg: InpaintTrainConfig) -> tuple[list[Path], list[Path]]:
    """(training photos, validation photos): --val's folder, or the last `holdout` photos of data."""
    paths = io.list_images(cfg.data)
    if cfg.val:
        return paths, io.list_images(cfg.val)
    if not 0 < cfg.holdout < len(paths):
        raise ValueError(f"--holdout {cfg.holdout}: needs 0 < holdout < {len(paths)} images in {cfg.data}")
    return paths[:-cfg.holdout], paths[-cfg.holdout:]


class BestKeeper:
    """Writes the generator to `path` (safetensors + card) whenever a validation's hole L1 is the
    lowest so far (also across resumes: the best file's own validation is the bar)."""

    def __init__(self, path: Path, card: dict):
        self.path, self.card, self.best = path, card, float("inf")
        if path.is_file():
            try:
                self.best = float(weights.load_weights(path)[1].get("validation", {}).get("val_hole_l1", self.best))
            except ValueError:
                pass
        self.step = 0  # the training's step (counted by InpaintTraining.forward)

    def __call__(self, model: torch.nn.Module, result: dict) -> None:
        if result["val_hole_l1"] < self.best:
            self.best = result["val_hole_l1"]
            state = {k: v.detach().half().cpu().contiguous() for k, v in model.state_dict().items()}
            card = self.card | {"validation": result, "selected": {"step": self.step, "written": time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime())}}
            save_trained(self.path, state, card)
            log.info("best validation so far (hole L1 %.3f): %s", result["val_hole_l1"], self.path)


def train_inpaint(cfg: InpaintTrainConfig, device: torch.device, resume: bool = True) -> dict:
    """Train, save `cfg.out` (safetensors, fp16 + a JSON card beside it), return the card."""
    out = Path(cfg.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a .safetensors file name")
    io.check_writable(out.parent)  # before the work, not after it
    cv2.setNumThreads(1)
    torch.manual_seed(cfg.seed)
    g, arch, arch_config = build_generator(cfg)
    g = g.to(device)
    train_paths, val_paths = split_validation(cfg)
    ffc = arch == "ffc"
    extra_paths = io.list_images(cfg.extra) if cfg.extra else []
    meta = {"arch": arch, "config": arch_config, "prefill": "mean of telea, ns, biharmonic", "masks": cfg.masks,
            "patch": cfg.patch, "batch_size": cfg.batch_size, "d_channels": cfg.d_channels,
            "data": data_fingerprint(train_paths, cfg.data)}
    if ffc:
        meta |= {"prefill": "push-pull (in the model)" if cfg.prefill else "none"}
    if ffc or cfg.extra:  # (absent for the round-1 models without --extra: their states still resume)
        meta["extra"] = data_fingerprint(extra_paths, cfg.extra) if cfg.extra else None
    check_resume(out.with_suffix(".state.pt"), meta, resume)
    images = load_photos(train_paths + extra_paths, cfg.patch, FULL_SIZE_UP_TO if ffc else 0)
    log.info("training inpaint %s (%d params) on %d photos (%d crops sources), validating on %d",
             arch, _params(g), len(train_paths) + len(extra_paths), len(images), len(val_paths))
    val = validation_set(val_paths, classical=not ffc)
    prefill_val = g.base(val[0]) if ffc else val[0][:, :3]
    # every model keeps its best validation (the U-Nets too since 2026-12-05: a stage's last is not always its best)
    keeper = BestKeeper(out.with_suffix(".best.safetensors"), {
        "task": TASK, "arch": arch, "config": arch_config, "training": asdict(cfg),
        "provenance": f"trained by genapps (`genapps train inpaint`) on {cfg.data}"
                      + (f" and {cfg.extra}" if cfg.extra else "") + "; the best held-out validation so far",
        "stages": weights.previous_stages(cfg.init) + [{"command": weights.command_line(), "init": cfg.init,
                                                        "data": meta["data"], "extra": meta.get("extra"),
                                                        "note": "this stage up to the step in `selected`"}]})
    state_path = out.with_suffix(".state.pt")  # the step of each validation, for the best file's card
    keeper.step = int(io.load_torch(state_path).get("step", 0)) if resume and state_path.is_file() else 0
    training = InpaintTraining(cfg, device, arch == "pluralistic", val,
                               float(losses.hole_l1(prefill_val, val[1], val[2])) * 255, keeper)
    d = PatchDiscriminator(4, cfg.d_channels, 3).to(device) if cfg.adversarial_weight > 0 else None
    spec = TrainSpec(g, None, training.forward, training.generator_loss, discriminator=d,
                     d_loss=training.discriminator_loss if d is not None else None, validate=training.validate,
                     select_by="val_neg_hole_l1", meta=meta, make_batch=make_batches(images, cfg))
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, lr_d=cfg.lr * 0.5, betas=(0.5, 0.99), ema=cfg.ema,
                       warmup=0 if cfg.init else 200, log_every=50, val_every=cfg.val_every, ckpt_every=250,
                       grad_clip=1.0, seed=cfg.seed)
    result = fit(spec, tcfg, state_path=out.with_suffix(".state.pt"), resume=resume)
    minutes = result.seconds / 60
    card = {
        "task": TASK, "arch": arch, "config": arch_config,
        "training": asdict(cfg) | {"device": str(device), "minutes": round(minutes, 1),
                                   "threads": torch.get_num_threads()},
        "validation": result.validation, "history": result.history[-5:],
        "params": _params(result.generator),
        "provenance": f"trained by genapps (`genapps train inpaint`, the command above) on {cfg.data}"
                      + (f" and {cfg.extra}" if cfg.extra else ""),
    }
    card["stages"] = weights.previous_stages(cfg.init) + [{  # every stage of these weights, this one last
        "command": weights.command_line(), "steps": cfg.steps, "init": cfg.init,
        "minutes": round(minutes, 1), "threads": torch.get_num_threads(),
        # the training loop's CPU time over every resumed run (fit's cpu_seconds; data loading not included)
        "cpu_hours": round(result.cpu_seconds / 3600, 3), "data": meta["data"], "extra": meta.get("extra"),
        "validation": f"held-out: {'--val ' + cfg.val if cfg.val else f'the last {cfg.holdout} photos of --data'}; "
                      f"final {result.validation.get('weights', '')} val_hole_l1 "
                      f"{result.validation.get('val_hole_l1', float('nan')):.3f}"}]
    state = {k: v.half() for k, v in result.generator.state_dict().items()}  # fp16 on disk, fp32 when loaded
    return save_trained(out, state, card)
