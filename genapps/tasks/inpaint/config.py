"""The options of `genapps inpaint` and `genapps masks`, and the names they choose from (light: no torch),
so that the CLI builds its options and a rerun with nothing to do finishes without importing the models."""

from __future__ import annotations

from dataclasses import dataclass, field

from genapps import paths

# kind -> (strokes (min, max), segments per stroke (min, max), width px (min, max), segment length as a
# fraction of the image's longer side (min, max)). `thick` is REFERENCE-POINTS' benchmark protocol.
STROKES = {
    "thin": ((4, 8), (2, 5), (3, 8), (0.05, 0.25)),
    "medium": ((4, 6), (2, 4), (8, 16), (0.08, 0.3)),
    "thick": ((4, 4), (2, 4), (14, 31), (0.1, 0.35)),
}
BUCKETS = {f"area{hi}": (hi / 100 - 0.1, hi / 100) for hi in range(10, 70, 10)}
KINDS = (*STROKES, "box", "mixed", *BUCKETS)

CLASSICAL = ("telea", "ns", "biharmonic", "fsr-fast", "fsr-best")  # genapps.tasks.inpaint.classical
METHODS = ("model", *CLASSICAL)


@dataclass(frozen=True)
class Config:
    """Options of `genapps inpaint` and of an `inpaint` pipeline stage.

    Masks come from `masks` (a folder mirrored by relative path and stem, or one file), or are
    generated on the fly by `mask_kind`/`mask_seed` exactly as `genapps masks` writes them.
    """

    masks: str | None = field(default=None, metadata={
        "path": True, "type": "path", "required": True,  # on the command line; a pipeline may give mask_kind
        "help": "Mask folder (matched by path and stem, photo.png or photo_mask.png) or one mask file for every "
                "image; white (>= threshold) = hole."})
    mask_kind: str | None = field(default=None, metadata={"cli": False})  # instead of `masks`: generate (KINDS)
    mask_seed: int = field(default=0, metadata={"cli": False})
    method: str = field(default="model", metadata={"choices": METHODS})
    model: str | None = field(default=None, metadata={"path": "if_exists", "flags": ("-m", "--model"), "help":
                              "Bundled name (genapps info) or .safetensors; default inpaint (inpaint-pluralistic "
                              "with --samples > 1)."})
    samples: int = field(default=1, metadata={"range": (1, 64), "help": "Fills per image from the pluralistic "
                                              "model: NAME_s0, NAME_s1, ..."})
    seed: int = field(default=0, metadata={"help": "Seed of the pluralistic samples."})
    mode_first: bool = field(default=True, metadata={"help": (
        "Pluralistic model: the first fill (NAME_s0; the only one without --samples) is its most likely one "
        "(the prior's mean), the others are drawn.")})
    temperature: float | None = field(default=None, metadata={"range": (0, 16), "help": (
        "Pluralistic model: how far its samples spread (the prior's temperature; 0 = one most likely fill). "
        "Default: the model's own, chosen on held-out photos.")})
    concat: bool = field(default=False, metadata={"help": "Write image | mask | result side by side."})
    mask_threshold: int = field(default=127, metadata={"range": (0, 255)})
    grow: int = field(default=0, metadata={"range": (0, 256), "help": "Dilate every mask by N px before filling "
                                           "(hand-drawn masks miss edge pixels)."})
    invert_mask: bool = field(default=False, metadata={"help": "Masks are white where the image is kept."})
    skip_missing_masks: bool = field(default=False, metadata={
        "help": "Skip images without a mask instead of failing them."})
    tta: bool = field(default=True, metadata={
        "help": "Average the model (each pluralistic sample: its draw) over the 8 flips/transposes."})
    work_size: int = field(default=512, metadata={  # longer side (px) of the crops the model runs on
        "help": "Model crops larger than this are resized down."})
    margin: int = field(default=48, metadata={"cli": False})  # context (px) kept around each hole
    ext: str | None = None
    suffix: str = ""
    quality: int = 95
    resume: bool = True
    fail_fast: bool = False
    reference: str | None = field(default=None, metadata={  # originals: hole L1/PSNR, PSNR/SSIM
        "path": True, "type": "dir", "help": "Originals: report hole L1/PSNR per image."})

    def __post_init__(self):
        if (self.masks is None) == (self.mask_kind is None):
            raise ValueError("give masks (a folder or one file) or mask_kind (generated masks), not both or neither")
        if self.mask_kind is not None and self.mask_kind not in KINDS:
            raise ValueError(f"mask_kind must be one of {', '.join(KINDS)}, got {self.mask_kind!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.samples > 1 and self.method != "model":
            raise ValueError(f"samples > 1 needs method 'model' (a pluralistic model), not {self.method!r}")
        if self.temperature is not None and not 0 <= self.temperature <= 16:
            raise ValueError(f"temperature must be in [0, 16], got {self.temperature}")
        if not 0 <= self.mask_threshold <= 255:
            raise ValueError(f"mask_threshold must be in 0..255, got {self.mask_threshold}")
        if not 0 <= self.grow <= 256:
            raise ValueError(f"grow must be in 0..256, got {self.grow}")
        if self.work_size < 64 or self.margin < 0:
            raise ValueError("work_size must be >= 64 and margin >= 0")
        paths.check_ext(self.ext)


@dataclass(frozen=True)
class MasksConfig:
    """Options of `genapps masks` and of a `masks` pipeline stage: one seeded mask per image."""

    kind: str = field(default="thick", metadata={
        "choices": KINDS, "help": "Brush strokes, boxes, or a hole-area bucket (area30 = 20-30% of the image)."})
    seed: int = field(default=0, metadata={"help": "Masks depend on (seed, relative path) only."})
    resume: bool = field(default=True, metadata={"invert": "--overwrite", "help": "Redo masks that exist."})
    fail_fast: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
