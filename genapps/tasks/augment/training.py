"""Training of the augment task's networks, all through genapps.train.fit.

- `train_classifier`: the small CNN on real (and optionally synthetic / pseudo-labeled) images,
  optionally with albumentations' random affine (the classical baseline augmentation).
- `pseudo_label`: self-training on an unlabeled pool (confident predictions become labels).
- `train_generator`: the CVAE (ELBO, kornia affine jitter) or the cGAN (hinge loss, projection
  D, spectral norm, DiffAugment with kornia: translation, cutout, brightness on real and fake).
- `generate`: class-conditional samples, optionally filtered by a classifier.

Images are (N, C, S, S) float32 in [0, 1]; labels (N,) int64.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genapps import losses
from genapps.tasks.augment.config import ENCODER_MODELS, GeneratorConfig
from genapps.tasks.augment.models import GENERATORS, define_model
from genapps.train import TrainConfig, TrainingDiverged, TrainSpec, fit

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- classical augmentation


def affine_augmenter(seed: int):
    """albumentations' random affine (the baseline): rotate +-15, shift +-10%, scale 0.9-1.1, shear +-10."""
    import albumentations as A

    return A.Compose([A.Affine(scale=(0.9, 1.1), translate_percent=(-0.1, 0.1), rotate=(-15, 15),
                               shear=(-10, 10), border_mode=0, fill=0, p=1.0)], seed=seed)


def strong_augmenter(seed: int):
    """The judge's augmentation (albumentations): a wider random affine (rotate +-20, shift +-12%,
    scale 0.8-1.2, shear +-15), elastic distortion, thinner or thicker strokes, and a cut-out, so
    that a classifier trained on a few images per class learns the shapes, not the images."""
    import albumentations as A

    return A.Compose([
        A.Affine(scale=(0.8, 1.2), translate_percent=(-0.12, 0.12), rotate=(-20, 20), shear=(-15, 15),
                 border_mode=0, fill=0, p=1.0),
        A.ElasticTransform(alpha=1.0, sigma=4.0, p=0.3),
        A.OneOf([A.Morphological(scale=(2, 2), operation="erosion"),
                 A.Morphological(scale=(2, 2), operation="dilation")], p=0.3),
        A.CoarseDropout(num_holes_range=(1, 2), hole_height_range=(0.1, 0.25), hole_width_range=(0.1, 0.25),
                        fill=0, p=0.3)], seed=seed)


def apply_albumentations(transform, x: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) in [0, 1] -> the same shape, each image transformed independently."""
    arr = x.permute(0, 2, 3, 1).numpy()
    out = np.stack([transform(image=a)["image"] for a in arr])
    if out.ndim == 3:
        out = out[..., None]
    return torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2).float().clamp(0, 1)


# ---------------------------------------------------------------- classifier


@dataclass(frozen=True)
class ClassifierConfig:
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    augment: bool = False  # albumentations random affine on every training image
    strong: bool = False  # with augment: strong_augmenter instead (the judge's)
    extra_fraction: float = 0.5  # share of each batch drawn from the extra (synthetic/pseudo) set
    seed: int = 0


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: ClassifierConfig,
                     device: torch.device, x_extra: torch.Tensor | None = None,
                     y_extra: torch.Tensor | None = None,
                     extra_sets: tuple[tuple[torch.Tensor, torch.Tensor, float], ...] = ()) -> nn.Module:
    """The small CNN trained with cross-entropy for cfg.steps Adam steps; returns it in eval mode.

    Each batch holds round(batch_size * extra_fraction) images of (x_extra, y_extra) when given,
    round(batch_size * fraction) of each (x, y, fraction) of `extra_sets` (e.g. pseudo-labeled
    and synthetic images), the rest from (x, y), all sampled uniformly with replacement.
    """
    c, s = x.shape[1], x.shape[-1]
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only, not on earlier work
    net = define_model("classifier", channels=c, num_classes=num_classes, image_size=s).to(device)
    rng = torch.Generator().manual_seed(cfg.seed)
    aug = (strong_augmenter if cfg.strong else affine_augmenter)(cfg.seed) if cfg.augment else None
    sets = [(x_extra, y_extra, cfg.extra_fraction)] if x_extra is not None else []
    sets = [(xe, ye, round(cfg.batch_size * f)) for xe, ye, f in [*sets, *extra_sets] if len(xe) and round(cfg.batch_size * f)]
    n_real = cfg.batch_size - sum(n for _, _, n in sets)
    if n_real < 1:
        raise ValueError("the extra sets' fractions leave no room for the real images in a batch")

    def next_batch():
        i = torch.randint(len(x), (n_real,), generator=rng)
        xb, yb = [x[i]], [y[i]]
        for xe, ye, n in sets:
            j = torch.randint(len(xe), (n,), generator=rng)
            xb.append(xe[j]), yb.append(ye[j])
        xb, yb = torch.cat(xb), torch.cat(yb)
        if aug is not None:
            xb = apply_albumentations(aug, xb)
        return xb.to(device), yb.to(device)

    def g_loss(batch, logits, _d):
        loss = F.cross_entropy(logits, batch[1])
        return loss, {"ce": loss.item()}

    spec = TrainSpec(net, next_batch, lambda m, b: m(b[0]), g_loss)
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, betas=(0.9, 0.999), ema=0.0, log_every=max(1, cfg.steps),
                       ckpt_every=10 ** 9, seed=cfg.seed)
    return fit(spec, tcfg).generator.eval()


def judge_split(y: torch.Tensor, num_classes: int, share: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator indices, judge indices) of the labeled set y (N,): per class, round(share x its
    images) drawn at random (at least 1, and at least 1 left for the generator) are held out for the
    judge. A class with a single image cannot be split: then the judge indices are empty (no judge)."""
    g = torch.Generator().manual_seed(seed)
    gen, judge = [], []
    counts = torch.bincount(y, minlength=num_classes)
    if share <= 0 or bool((counts < 2).any()):
        return torch.arange(len(y)), torch.zeros(0, dtype=torch.long)
    for k in range(num_classes):
        members = torch.nonzero(y == k)[:, 0]
        members = members[torch.randperm(len(members), generator=g)]
        n = min(max(1, round(share * len(members))), len(members) - 1)
        judge.append(members[:n]), gen.append(members[n:])
    return torch.cat(gen).sort().values, torch.cat(judge).sort().values


def judge_steps(steps: int) -> int:
    """The judge's Adam steps for the proof's classifier `steps`: 2.5 x (1500 for the default 600; with
    strong augmentation it reaches 89% on held-out MNIST digits from 5 per class, 86% at 600)."""
    return round(2.5 * steps)


def train_judge(x: torch.Tensor, y: torch.Tensor, num_classes: int, device: torch.device, seed: int = 0,
                steps: int = 1500) -> nn.Module:
    """The filter's judge: the small CNN trained on images the generator never sees (x (N, C, S, S),
    y (N,)), with strong augmentation (strong_augmenter), so that it judges shapes as a model trained
    elsewhere would, not the generator's training images or the guide's decision boundary."""
    return train_classifier(x, y, num_classes, ClassifierConfig(steps=steps, augment=True, strong=True,
                                                                seed=seed + 1), device)


@torch.no_grad()
def predict_proba(net: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 500) -> torch.Tensor:
    """(N, C, S, S) -> (N, K) softmax probabilities (CPU)."""
    net.eval()
    return torch.cat([F.softmax(net(x[i:i + batch].to(device)), 1).cpu() for i in range(0, len(x), batch)])


@torch.no_grad()
def features(net: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 500) -> torch.Tensor:
    """(N, C, S, S) -> (N, 128) penultimate activations of the classifier (CPU, float64)."""
    net.eval()
    return torch.cat([net.features(x[i:i + batch].to(device)).cpu() for i in range(0, len(x), batch)]).double()


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    return float((predict_proba(net, x, device).argmax(1) == y).float().mean())


# ---------------------------------------------------------------- pseudo-labels


def train_semigan_classifier(x: torch.Tensor, y: torch.Tensor, x_unl: torch.Tensor, num_classes: int,
                             cfg: ClassifierConfig, device: torch.device, unlabeled_batch: int = 64) -> nn.Module:
    """The GAN semi-supervised classifier (Salimans et al. 2016, "Improved techniques for training
    GANs"): the small CNN is the discriminator, with the K real classes and an implicit fake one
    (D(x) = Z / (Z + 1), Z = sum_k exp(logit_k), so the fake logit is fixed at 0); the cGAN's
    generator (random class inputs) is trained by feature matching on the CNN's penultimate
    features of the unlabeled images. Its loss: cross-entropy on the labeled batch (random affine
    when cfg.augment) + the real/fake log-likelihood of unlabeled (random affine) and generated images.

    x (N, C, S, S), x_unl (M, C, S, S) in [0, 1]; returns the CNN (the classifier) in eval mode.
    """
    c, s = x.shape[1], x.shape[-1]
    torch.manual_seed(cfg.seed)
    net = define_model("classifier", channels=c, num_classes=num_classes, image_size=s).to(device)
    gen = define_model("cgan", channels=c, num_classes=num_classes, image_size=s).to(device)
    rng = torch.Generator().manual_seed(cfg.seed)
    aug = affine_augmenter(cfg.seed) if cfg.augment else None

    def next_batch():
        i = torch.randint(len(x), (cfg.batch_size,), generator=rng)
        xl, yl, xu = x[i], y[i], x_unl[torch.randint(len(x_unl), (unlabeled_batch,), generator=rng)]
        if aug is not None:
            xl, xu = apply_albumentations(aug, xl), apply_albumentations(aug, xu)
        z = torch.randn(unlabeled_batch, gen.z_dim, generator=rng)
        yz = F.one_hot(torch.randint(num_classes, (unlabeled_batch,), generator=rng), num_classes).float()
        return xl.to(device), yl.to(device), xu.to(device), z.to(device), yz.to(device)

    def d_loss(d, b, fake):
        ce = F.cross_entropy(d(b[0]), b[1])
        unsup = losses.semigan_unsupervised_loss(d(b[2]), d(fake))
        return ce + unsup, {"ce": ce.item(), "unsup": unsup.item()}

    def g_loss(b, fake, d):
        fm = (d.features(b[2]).detach().mean(0) - d.features(fake).mean(0)).pow(2).mean()
        return fm, {"feature_matching": fm.item()}

    spec = TrainSpec(gen, next_batch, lambda g, b: g(b[3], b[4]), g_loss, discriminator=net, d_loss=d_loss)
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, lr_d=cfg.lr, betas=(0.5, 0.999), cosine=False, ema=0.0,
                       log_every=max(1, cfg.steps // 10), ckpt_every=10 ** 9, seed=cfg.seed)
    fit(spec, tcfg)
    return net.eval()


@dataclass
class PseudoLabels:
    labels: torch.Tensor  # (M,) predicted class of every unlabeled image
    confidence: torch.Tensor  # (M,) its probability
    keep: torch.Tensor  # (M,) bool: confidence >= threshold after the last round
    classifier: nn.Module  # the last round's classifier (trained on labeled + pseudo-labeled)
    rounds: list[dict] = field(default_factory=list)


def self_training_steps(steps: int, n_unlabeled: int) -> int:
    """Classifier steps with an unlabeled pool: `steps`, up to twice as many for a pool of 2,000+."""
    return int(steps * (1 + min(1.0, n_unlabeled / 2000)))


def pseudo_label(x: torch.Tensor, y: torch.Tensor, x_unl: torch.Tensor, num_classes: int, device: torch.device,
                 threshold: float = 0.95, rounds: int = 2, steps: int = 1000, seed: int = 0) -> PseudoLabels:
    """Self-training: a classifier on the labeled images (random affine) labels the pool; confident
    pool images (>= threshold) join the training set of the next round's classifier, `rounds` times.
    """
    cfg = ClassifierConfig(steps=steps, augment=True, seed=seed)
    clf = train_classifier(x, y, num_classes, cfg, device)
    history = []
    for r in range(rounds + 1):
        p = predict_proba(clf, x_unl, device)
        conf, lab = p.max(1)
        keep = conf >= threshold
        history.append({"round": r, "kept": int(keep.sum()), "of": len(x_unl)})
        log.info("pseudo-labels round %d: %d of %d unlabeled images at confidence >= %.2f",
                 r, int(keep.sum()), len(x_unl), threshold)
        if r == rounds:
            break
        cfg = ClassifierConfig(steps=steps, augment=True, extra_fraction=0.75, seed=seed + r + 1)
        clf = train_classifier(x, y, num_classes, cfg, device, x_unl[keep], lab[keep])
    return PseudoLabels(lab, conf, keep, clf, history)


# ---------------------------------------------------------------- generators


def _jitter():
    import kornia.augmentation as K

    return K.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.9, 1.1), shear=8, p=0.8)


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020) with kornia: brightness, translation 1/8, cutout 1/2; differentiable."""
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device) - 0.5) * 0.4  # brightness
    s = x.shape[-1]
    shift = torch.randint(-(s // 8), s // 8 + 1, (b, 2), device=x.device).float()
    import kornia.geometry.transform as T

    x = T.translate(x, shift, padding_mode="zeros")
    half = s // 2
    cy, cx = (torch.randint(0, s, (2, b, 1, 1), device=x.device))
    yy, xx = torch.arange(s, device=x.device).view(1, s, 1), torch.arange(s, device=x.device).view(1, 1, s)
    mask = ((yy - cy).abs() >= half // 2) | ((xx - cx).abs() >= half // 2)
    return x * mask[:, None].to(x)


class CollapseMonitor:
    """Counts consecutive discriminator steps with every real and fake on the right side of the
    hinge margin (D 'wins' completely); `steps_max` is the longest such run, `events` the runs longer
    than `patience`."""

    def __init__(self, patience: int = 200):
        self.patience, self.run, self.steps_max, self.events = patience, 0, 0, 0

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        won = bool((real_logits > 1).all() and (fake_logits < -1).all())
        self.run = self.run + 1 if won else 0
        self.steps_max = max(self.steps_max, self.run)
        if self.run == self.patience:
            self.events += 1
            log.warning("discriminator collapse: it separated real and fake perfectly for %d steps", self.patience)


@dataclass
class GeneratorResult:
    generator: nn.Module
    arch: dict
    history: list[dict]
    collapse: dict


def generator_meta(x: torch.Tensor, num_classes: int, cfg: GeneratorConfig, data: dict | None = None) -> dict:
    """TrainSpec.meta of a generator trained on x (N, C, S, S): model, architecture, and `data`'s keys."""
    arch = {"channels": x.shape[1], "num_classes": num_classes, "image_size": x.shape[-1], "z_dim": cfg.z_dim}
    if cfg.model in ENCODER_MODELS and cfg.decoder != "conv":  # absent for the default: older states still resume
        arch["decoder"] = cfg.decoder
    return {"model": cfg.model, "arch": arch} | (data or {})


@dataclass(frozen=True, kw_only=True)
class _GeneratorTraining:
    """What both generator families' trainings share: the data (x (N, C, S, S) in [0, 1], y (N,)
    int64) drawn with `rng`, the guide classifier's class-consistency loss, and the
    discriminator's hinge step (watched by `monitor`)."""

    cfg: GeneratorConfig
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    device: torch.device
    rng: torch.Generator
    guide: nn.Module | None  # frozen, in eval mode; None without guidance
    monitor: CollapseMonitor

    def onehot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.num_classes).float()

    def guidance(self, fake: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """guide_weight * cross-entropy of the guide on the first n_guide fakes against their classes."""
        if self.guide is None:
            return fake.new_zeros(()), {}
        n = _n_guide(self.cfg)
        ce = F.cross_entropy(self.guide(fake[:n]), labels[:n])
        return self.cfg.guide_weight * ce, {"guide_ce": ce.item()}

    def hinge_d_step(self, disc, real, real_y, fake, fake_y):
        """The discriminator's hinge loss on DiffAugment-ed real and fake images (both GANs)."""
        real_logits = disc(diff_augment(real), real_y)
        fake_logits = disc(diff_augment(fake), fake_y)
        self.monitor.update(real_logits.detach(), fake_logits.detach())
        loss = losses.hinge_d_loss(real_logits, fake_logits)
        return loss, {"d": loss.item(), "d_real": real_logits.mean().item(), "d_fake": fake_logits.mean().item()}


def _n_guide(cfg: GeneratorConfig) -> int:
    """How many images of a batch are decoded from the prior for the guide (and the VAE-GAN's D)."""
    return max(2, round(cfg.batch_size * cfg.guide_fraction))


@dataclass(frozen=True, kw_only=True)
class CVAETraining(_GeneratorTraining):
    """cvae / vaegan: the ELBO on (jittered) real images; `n_prior` images decoded from the prior
    with the batch's first labels for the guide and (vaegan) the hinge adversarial loss."""

    jitter: nn.Module | None  # kornia's random affine on the training images
    n_prior: int
    betas = (0.9, 0.999)
    lr_d_factor = 1

    def next_batch(self):
        """(images (B, C, S, S), one-hot labels (B, K)) on the device."""
        i = torch.randint(len(self.x), (self.cfg.batch_size,), generator=self.rng)
        xb = self.x[i].to(self.device)
        if self.jitter is not None:
            xb = self.jitter(xb).clamp(0, 1)
        return xb, self.onehot(self.y[i]).to(self.device)

    def forward(self, net, b):
        """(reconstruction logits, mu, logvar, decoded prior samples of the batch's first labels)"""
        logits, mu, logvar = net(b[0], b[1])
        if not self.n_prior:
            return logits, mu, logvar, None
        z = torch.randn(self.n_prior, self.cfg.z_dim, device=self.device)
        return logits, mu, logvar, net.generate(z, b[1][:self.n_prior])

    def generator_loss(self, batch, out, disc):
        """beta-ELBO, + guidance and (vaegan) adversarial_weight * hinge loss on the prior samples."""
        loss, rec, kl = losses.elbo_loss(out[0], batch[0], out[1], out[2], self.cfg.beta)
        logs = {"recon": rec.item(), "kl": kl.item()}
        if out[3] is not None:
            labels = batch[1][:self.n_prior]
            extra, more = self.guidance(out[3], labels.argmax(1))
            loss, logs = loss + extra, logs | more
            if disc is not None:
                adv = losses.hinge_g_loss(disc(diff_augment(out[3]), labels))
                loss, logs = loss + self.cfg.adversarial_weight * adv, logs | {"g": adv.item()}
        return loss, logs

    def discriminator_loss(self, disc, batch, out):
        return self.hinge_d_step(disc, batch[0], batch[1], out[3], batch[1][:self.n_prior])


@dataclass(frozen=True, kw_only=True)
class CGANTraining(_GeneratorTraining):
    """cgan: hinge loss against the projection discriminator, fakes of random classes, + guidance."""

    betas = (0.0, 0.99)
    lr_d_factor = 2

    def next_batch(self):
        """(real images, their one-hot labels, z (B, z_dim), one-hot classes of the fakes) on the device."""
        cfg, rng = self.cfg, self.rng
        i = torch.randint(len(self.x), (cfg.batch_size,), generator=rng)
        z = torch.randn(cfg.batch_size, cfg.z_dim, generator=rng)
        yf = torch.randint(self.num_classes, (cfg.batch_size,), generator=rng)
        return (self.x[i].to(self.device), self.onehot(self.y[i]).to(self.device), z.to(self.device),
                self.onehot(yf).to(self.device))

    @staticmethod
    def forward(net, b):
        return net(b[2], b[3])

    def generator_loss(self, batch, fake, disc):
        loss = losses.hinge_g_loss(disc(diff_augment(fake), batch[3]))
        extra, more = self.guidance(fake, batch[3].argmax(1))
        return loss + extra, {"g": loss.item()} | more

    def discriminator_loss(self, disc, batch, fake):
        return self.hinge_d_step(disc, batch[0], batch[1], fake, batch[3])


def train_generator(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: GeneratorConfig,
                    device: torch.device, state_path: str | Path | None = None, resume: bool = True,
                    guide: nn.Module | None = None, meta: dict | None = None) -> GeneratorResult:
    """Train the class-conditional generator `cfg.model` on (x, y); returns its EMA copy in eval mode.

    With a frozen `guide` classifier and cfg.guide_weight > 0, samples decoded from the prior
    (z ~ N(0, I), class k) are also pushed to be classified as k (cross-entropy): without it, a
    CVAE trained on tens of images hides the class in z and its prior samples ignore the label.
    The state at `state_path` resumes only the same model, architecture and `meta` (the caller's
    description of the data, e.g. class names and a fingerprint of the files).
    """
    arch = generator_meta(x, num_classes, cfg)["arch"]
    d_config = {"channels": x.shape[1], "num_classes": num_classes, "image_size": x.shape[-1]}
    torch.manual_seed(cfg.seed)
    g = define_model(cfg.model, **arch).to(device)
    guide = guide.to(device).eval().requires_grad_(False) if guide is not None and cfg.guide_weight > 0 else None
    common = dict(cfg=cfg, x=x, y=y, num_classes=num_classes, device=device,
                  rng=torch.Generator().manual_seed(cfg.seed), guide=guide, monitor=CollapseMonitor())
    if cfg.model in ENCODER_MODELS:
        jitter = _jitter() if cfg.jitter else None
        adversarial = cfg.model == "vaegan"
        d = define_model("cgan_d", **d_config).to(device) if adversarial else None
        n_prior = _n_guide(cfg) if guide is not None or adversarial else 0  # prior samples for the guide and D
        training = CVAETraining(**common, jitter=jitter, n_prior=n_prior)
    elif cfg.model == "cgan":
        d = define_model("cgan_d", **d_config).to(device)
        training = CGANTraining(**common)
    else:
        raise ValueError(f"unknown generator {cfg.model!r}; valid: {', '.join(GENERATORS)}")
    spec = TrainSpec(g, training.next_batch, training.forward, training.generator_loss, discriminator=d,
                     d_loss=training.discriminator_loss if d is not None else None,
                     meta=generator_meta(x, num_classes, cfg, meta))
    ema = min(cfg.ema, 1 - 10 / max(cfg.steps, 20))  # short runs still average something sensible
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, lr_d=cfg.lr * training.lr_d_factor, betas=training.betas, ema=ema,
                       warmup=min(100, cfg.steps // 10), log_every=max(1, min(200, cfg.steps // 5)), ckpt_every=250,
                       seed=cfg.seed)
    result = fit(spec, tcfg, state_path=state_path, resume=resume)
    monitor = training.monitor
    collapse = {"longest_d_win_streak": monitor.steps_max, "collapse_events": monitor.events}
    if cfg.model == "cgan" and monitor.steps_max >= cfg.steps // 2 > 0:
        raise TrainingDiverged(f"the discriminator collapsed: it separated real and fake perfectly for "
                               f"{monitor.steps_max} consecutive steps; lower --lr or add data")
    return GeneratorResult(result.generator.eval(), arch, result.history, collapse)


@torch.no_grad()
def generate(g: nn.Module, y: torch.Tensor, seed: int, device: torch.device, batch: int = 500,
             temperature: float = 1.0, source: tuple[torch.Tensor, torch.Tensor] | None = None,
             posterior: torch.Tensor | None = None, posterior_temperature: float | None = None) -> torch.Tensor:
    """Samples of classes y (N,): (N, C, S, S) in [0, 1], 8-bit quantized.

    z ~ N(0, temperature^2 I) (the prior), except where `posterior` (N,) bool is set: there a random
    `source` image (x (M, C, S, S), y (M,)) of the same class is encoded and z = mu + T sigma eps
    (q(z | x, y) with its spread scaled by T = posterior_temperature, default `temperature`) is
    decoded (CVAE only): a new variant of that image, not a copy; T > 1 takes it further from it.
    """
    g.eval()
    rng = torch.Generator().manual_seed(seed)
    eps = torch.randn(len(y), g.z_dim, generator=rng)
    z = eps * temperature
    onehot = F.one_hot(y, g.num_classes).float()
    if posterior is not None and posterior.any():
        xs, ys = source
        picks = torch.zeros(len(y), dtype=torch.long)
        for k in y[posterior].unique().tolist():
            members = torch.nonzero(ys == k)[:, 0]
            rows = torch.nonzero(posterior & (y == k))[:, 0]
            if len(members) == 0:
                posterior = posterior & (y != k)
                continue
            picks[rows] = members[torch.randint(len(members), (len(rows),), generator=rng)]
        rows = torch.nonzero(posterior)[:, 0]
        spread = temperature if posterior_temperature is None else posterior_temperature
        for i in range(0, len(rows), batch):
            r = rows[i:i + batch]
            mu, logvar = g.encode(xs[picks[r]].to(device), onehot[r].to(device))
            z[r] = (mu + (0.5 * logvar).exp() * (eps[r] * spread).to(device)).cpu()
    out = [g.generate(z[i:i + batch].to(device), onehot[i:i + batch].to(device)).cpu() for i in range(0, len(y), batch)]
    return (torch.cat(out) * 255).round() / 255  # what a PNG holds


@dataclass
class Synthetic:
    x: torch.Tensor  # (N, C, S, S) kept samples
    y: torch.Tensor  # (N,) their classes
    score: torch.Tensor  # (N,) filter classifier's probability of the intended class (NaN without filter)
    dropped: dict[int, int]  # class -> samples dropped by the filter
    topped_up: dict[int, int] = field(default_factory=dict)  # class -> dropped samples taken back (fill_short)


def synthesize(g: nn.Module, counts: dict[int, int], seed: int, device: torch.device,
               filter_net: nn.Module | None = None, filter_confidence: float = 0.9,
               max_rounds: int = 5, source: tuple[torch.Tensor, torch.Tensor] | None = None,
               posterior_fraction: float = 0.0, temperature: float = 1.0,
               posterior_temperature: float | None = None, fill_short: bool = False) -> Synthetic:
    """`counts[k]` samples of every class k; with a filter classifier, samples it assigns to another
    class with probability >= filter_confidence are dropped and replaced (up to max_rounds draws).
    A class still short after max_rounds is left short, or with `fill_short` completed with its
    dropped samples the filter scored highest for the class (counted in `topped_up`).

    A share `posterior_fraction` of them are posterior variants of `source` images (see generate);
    `temperature` < 1 scales z (truncation: typical samples, less variety); `posterior_temperature`
    (default `temperature`) scales the posterior variants' spread around their source's encoding.
    """
    xs, ys, scores = [], [], []
    rejected = []  # (x, y, score) of the dropped samples, for fill_short
    dropped = {k: 0 for k in counts}
    need = dict(counts)
    for r in range(max_rounds):
        todo = {k: n for k, n in need.items() if n > 0}
        if not todo:
            break
        extra = 1.0 if filter_net is None else 1.25
        y = torch.cat([torch.full((int(np.ceil(n * extra)) + (0 if filter_net is None else 2),), k) for k, n in todo.items()])
        post = None
        if source is not None and posterior_fraction > 0:
            post = torch.rand(len(y), generator=torch.Generator().manual_seed(seed * 1000 + r)) < posterior_fraction
        x = generate(g, y, seed * 1000 + r, device, temperature=temperature, source=source, posterior=post,
                     posterior_temperature=posterior_temperature)
        if filter_net is not None:
            p = predict_proba(filter_net, x, device)
            score = p.gather(1, y[:, None])[:, 0]
            conf, pred = p.max(1)
            ok = ~((pred != y) & (conf >= filter_confidence))
        else:
            score, ok = torch.full((len(y),), float("nan")), torch.ones(len(y), dtype=torch.bool)
        for k in todo:
            idx = torch.nonzero((y == k) & ok)[:, 0][:need[k]]
            dropped[k] += int(((y == k) & ~ok).sum())
            xs.append(x[idx]), ys.append(y[idx]), scores.append(score[idx])
            need[k] -= len(idx)
        if fill_short:
            rejected.append((x[~ok], y[~ok], score[~ok]))
    short = {k: n for k, n in need.items() if n > 0}
    topped_up = {}
    if short and fill_short:
        rx, ry, rs = (torch.cat(t) for t in zip(*rejected))
        for k, n in short.items():
            idx = torch.nonzero(ry == k)[:, 0]
            idx = idx[torch.argsort(rs[idx], descending=True, stable=True)][:n]
            xs.append(rx[idx]), ys.append(ry[idx]), scores.append(rs[idx])
            topped_up[k] = len(idx)
        log.warning("the filter dropped too many samples of some classes in %d draws: completed them with the "
                    "dropped samples it scored highest (class: samples) %s", max_rounds, topped_up)
    elif short:
        log.warning("the filter left classes short of samples after %d draws: %s", max_rounds, short)
    x, y, score = torch.cat(xs), torch.cat(ys), torch.cat(scores)
    order = torch.argsort(y, stable=True)
    return Synthetic(x[order], y[order], score[order], dropped, topped_up)
