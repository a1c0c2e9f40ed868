"""The options of `genapps augment` and the defaults per generator (light: no torch), so that the CLI
builds its options without importing the models."""

from __future__ import annotations

from dataclasses import dataclass, field

GENERATOR_NAMES = ("cvae", "vaegan", "cgan")  # genapps.tasks.augment.models.GENERATORS
ENCODER_MODELS = ("cvae", "vaegan")  # the generators with an encoder q(z|x, y)
DECODERS = ("conv", "residual")  # the CVAE's decoders
# Per model: steps, learning rate, latent size, weight of the classifier guidance, decoder. The CVAE's
# residual decoder at 1000 steps beat the conv decoder at 1500 (same CPU time) on every sample measure
# of benchmarks/augment_quick.json; 1500 cGAN steps is the benchmarked count (was 3000, unmeasured).
DEFAULTS = {
    "cvae": {"steps": 1000, "lr": 1e-3, "z_dim": 16, "guide_weight": 20.0, "decoder": "residual"},
    "cgan": {"steps": 1500, "lr": 2e-4, "z_dim": 64, "guide_weight": 0.5, "decoder": "conv"},
}
# The VAE-GAN: the CVAE's recipe plus a projection discriminator on its decoded prior samples.
DEFAULTS["vaegan"] = DEFAULTS["cvae"] | {"adversarial_weight": 10.0}
# sampling -> share of the samples decoded from q(z | x, y) of a training image of their class (a
# posterior variant) instead of the N(0, I) prior: "posterior" samples the class's aggregate posterior,
# a learned prior with no holes (the samples stay near the training images' styles).
POSTERIOR_FRACTION = {"prior": 0.0, "mixed": 0.5, "posterior": 1.0}
# A posterior variant's z = mu + T sigma eps: at T = 2 the variants leave their source images (near-copies 2-5%
# instead of 62% at T = 1 on the validation split) and the outside judge still recognises 97-98% of them.
POSTERIOR_TEMPERATURE = 2.0
DEFAULT_PER_CLASS = 100


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator training recipe (genapps.tasks.augment.training.train_generator), defaults resolved."""

    model: str = "cvae"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    z_dim: int = 16
    beta: float = 1.0  # CVAE: weight of the KL term
    jitter: bool = True  # CVAE: kornia random affine on training images
    guide_weight: float = 0.0  # weight of the class-consistency loss (needs a guide classifier)
    guide_fraction: float = 0.5  # share of the batch decoded from the prior for that loss (its cost)
    decoder: str = "conv"  # CVAE decoder: conv | residual (see models.CVAE)
    adversarial_weight: float = 0.0  # vaegan: weight of the hinge loss of D on the decoded prior samples
    ema: float = 0.999
    seed: int = 0


@dataclass(frozen=True)
class Config:
    """Options of `genapps augment` and of an `augment` pipeline stage."""

    model: str = field(default="cvae", metadata={  # cvae | vaegan | cgan
        "choices": GENERATOR_NAMES, "help": "vaegan: the CVAE plus an adversarial loss on its samples."})
    per_class: int | None = field(default=None, metadata={  # default 100 unless ratio is given
        "help": "Synthetic images per class (default 100)."})
    ratio: float | None = field(default=None, metadata={"help": "Synthetic images per real image of each class."})
    unlabeled: str | None = field(default=None, metadata={
        "path": True, "type": "dir", "help": "Unlabeled images that also train the generator."})
    image_size: int = 28  # px, images are resized to image_size x image_size (multiple of 4)
    channels: int | str = field(default="auto", metadata={  # 1 if all images are grayscale
        "help": "1, 3 or auto."})
    steps: int | None = field(default=None, metadata={"help": "Generator training steps (default: cvae 1000, cgan 1500)."})
    batch_size: int = 64
    lr: float | None = None  # default: 1e-3 (cvae), 2e-4 (cgan)
    z_dim: int | None = None  # latent size, default: 16 (cvae), 64 (cgan)
    beta: float = field(default=1.0, metadata={"help": "CVAE: KL weight."})  # weight of the KL term in the ELBO
    decoder: str | None = field(default=None, metadata={
        "choices": DECODERS, "help": "CVAE/VAE-GAN decoder (default residual: residual blocks before each upsampling)."})
    temperature: float | None = field(default=None, metadata={
        "help": "Sampling: prior draws z ~ N(0, T^2 I) (default 1; below 1: more typical samples), posterior "
                "draws z = mu + T sigma eps (default 2: variants further from their source image)."})
    guide: bool = field(default=True, metadata={"cli": False})  # prior samples of class k must be classified as k
    guide_fraction: float = field(default=0.5, metadata={"cli": False})  # share of each batch decoded from the prior
    sampling: str = field(default="auto", metadata={
        "choices": ("auto", *POSTERIOR_FRACTION),
        "help": "cvae/vaegan: z from the prior, or (mixed: half, posterior: all) from q(z|x, y) of a training image "
                "of the class; auto: posterior (cgan: prior)."})
    adversarial_weight: float | None = field(default=None, metadata={
        "help": "vaegan: weight of the adversarial loss (default 10)."})
    seed: int = 0
    filter: bool = field(default=True, metadata={
        "help": "Drop samples a real-data classifier confidently assigns to another class."})
    filter_confidence: float = field(default=0.5, metadata={
        "help": "The filter drops a sample its judge assigns to another class with at least this probability."})
    judge_holdout: float = field(default=0.5, metadata={
        "help": "Share of each class's labeled images held out from the generator to train the filter's judge "
                "(0: the filter uses the generator's guide classifier)."})
    pseudo_threshold: float = 0.95  # --unlabeled: confidence for a pseudo-label to be used
    interpolate: bool = field(default=True, metadata={"help": "Latent interpolation figure."})
    eval: str | None = field(default=None, metadata={
        "path": True, "type": "dir",
        "help": "TEST_DIR (ImageFolder): prove with a downstream classifier whether synthesis helped."})
    eval_seeds: int = 3
    eval_steps: int = 600  # classifier training steps (also the guide's and pseudo-labeler's; the judge's x 2.5)
    semigan_steps: int = field(default=0, metadata={
        "help": "With --unlabeled and --eval: also arm g, the semi-supervised GAN classifier (Salimans et al. "
                "2016), trained this many steps per seed (10000 measured; ~17 CPU-min each on 28 px)."})
    resume: bool = field(default=True, metadata={"invert": "--overwrite",
                                                 "help": "Retrain and rewrite instead of resuming."})

    def __post_init__(self):
        if self.model not in GENERATOR_NAMES:
            raise ValueError(f"model must be one of {', '.join(GENERATOR_NAMES)}, got {self.model!r}")
        if self.per_class is not None and self.ratio is not None:
            raise ValueError("give per_class or ratio, not both")
        if self.per_class is not None and self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}")
        if self.ratio is not None and not self.ratio > 0:
            raise ValueError(f"ratio must be > 0, got {self.ratio}")
        if self.image_size < 8 or self.image_size % 4 or self.image_size > 256:
            raise ValueError(f"image_size must be a multiple of 4 between 8 and 256, got {self.image_size}")
        channels = self.channels
        if isinstance(channels, str) and channels.strip().isdigit():
            channels = int(channels)
        if channels not in (1, 3, "auto"):
            raise ValueError(f"channels must be 1, 3 or auto, got {self.channels!r}")
        object.__setattr__(self, "channels", channels)
        for name in ("steps", "z_dim"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.judge_holdout < 1:
            raise ValueError(f"judge_holdout must be in [0, 1), got {self.judge_holdout}")
        for name in ("filter_confidence", "pseudo_threshold", "guide_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.decoder is not None and self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.decoder not in (None, "conv") and self.model not in ENCODER_MODELS:
            raise ValueError(f"decoder applies to models {' and '.join(ENCODER_MODELS)} only")
        if self.temperature is not None and not 0 < self.temperature <= 2:
            raise ValueError(f"temperature must be in (0, 2], got {self.temperature}")
        if self.sampling != "auto" and self.sampling not in POSTERIOR_FRACTION:
            raise ValueError(f"sampling must be auto, {', '.join(POSTERIOR_FRACTION)}, got {self.sampling!r}")
        if POSTERIOR_FRACTION.get(self.sampling) and self.model not in ENCODER_MODELS:
            raise ValueError(f"sampling {self.sampling!r} needs an encoder: use it with model "
                             f"{' or '.join(ENCODER_MODELS)}")
        if self.adversarial_weight is not None and (self.model != "vaegan" or not self.adversarial_weight > 0):
            raise ValueError("adversarial_weight applies to model vaegan and must be > 0")
        if self.eval_seeds < 1 or self.eval_steps < 1:
            raise ValueError("eval_seeds and eval_steps must be >= 1")
        if self.semigan_steps < 0 or (self.semigan_steps and not (self.unlabeled and self.eval)):
            raise ValueError("semigan_steps (arm g of the proof) needs unlabeled and eval, and must be >= 0")

    def generator_config(self) -> GeneratorConfig:
        d = DEFAULTS[self.model]
        return GeneratorConfig(model=self.model, steps=self.steps or d["steps"], batch_size=self.batch_size,
                               lr=self.lr or d["lr"], z_dim=self.z_dim or d["z_dim"], beta=self.beta,
                               guide_weight=d["guide_weight"] if self.guide else 0.0, decoder=self.decoder or d["decoder"],
                               guide_fraction=self.guide_fraction, seed=self.seed,
                               adversarial_weight=self.adversarial_weight or d.get("adversarial_weight", 0.0))
