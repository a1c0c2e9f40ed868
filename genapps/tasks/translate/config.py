"""The options of `genapps translate` and `genapps pairs`, and the names they choose from (light: no
torch), so that the CLI builds its options and a rerun with nothing to do finishes without importing
the models."""

from __future__ import annotations

from dataclasses import dataclass, field

from genapps import paths

DEFAULT_MODEL = "restore"
# the reference implementation's --netG names -> (genapps arch, its config) (genapps.tasks.translate.models)
NETG = {"unet_128": ("unet", {"num_downs": 7}), "unet_256": ("unet", {"num_downs": 8}),
        "resnet_9blocks": ("resnet", {"n_blocks": 9}), "resnet_6blocks": ("resnet", {"n_blocks": 6})}
KINDS = ("edges", "gray", "degrade", "realworld")  # of `genapps pairs`
LAYOUTS = ("folders", "aligned", "input")


@dataclass(frozen=True)
class Config:
    """Options of `genapps translate` and of a `translate` pipeline stage."""

    model: str = field(default=DEFAULT_MODEL, metadata={"path": "if_exists", "flags": ("-m", "--model"), "help":
                       "Bundled name (restore, colorize, restore-unpaired), .safetensors, or a reference "
                       "latest_net_G*.pth."})
    direction: str = field(default="AtoB", metadata={  # CycleGAN models: AtoB (G_A) or BtoA (G_B)
        "choices": ("AtoB", "BtoA"), "help": "CycleGAN models: which generator runs."})
    stochastic: bool = field(default=False, metadata={
        "help": "Test-time dropout (and a CycleGAN G_B's --b-noise), seeded per file (--seed)."})
    seed: int = 0
    tile: int = field(default=0, metadata={"flags": ("-t", "--tile"), "help": "Tile size in px (0 = whole image "
                                                                             "when it fits --max-memory, else the "
                                                                             "largest tile that does)."})
    tile_overlap: int = 32
    tta: bool = field(default=False, metadata={"flags": ("-x", "--tta"), "help": (
        "Test-time augmentation: the mean over the 8 flips and transposes of the input (8x the time).")})
    max_memory: float | None = field(default=None, metadata={  # GB of process memory the tile choice aims at
        "help": "GB of memory (RAM; GPU memory on CUDA) that -t 0 fits its tiles in; default a quarter of RAM, "
                "at most 4 GB (CUDA: half the free GPU memory); 0 = no limit."})
    # reference .pth only: checked against what the keys show (None = read from the keys)
    netg: str | None = field(default=None, metadata={
        "flags": ("--netg", "--netG"), "choices": tuple(NETG),
        "help": "Reference .pth: checked against its keys (read from them when left out)."})
    ngf: int | None = field(default=None, metadata={"help": "Reference .pth: checked against its keys."})
    norm: str | None = field(default=None, metadata={"choices": ("batch", "instance", "none"),
                                                     "help": "Reference .pth: checked against its keys."})
    dropout: bool | None = field(default=None, metadata={
        "help": "Reference U-Net .pth: was it trained with dropout?"})
    ext: str | None = None
    suffix: str = ""
    quality: int = 95
    resume: bool = True
    fail_fast: bool = False
    reference: str | None = field(default=None, metadata={
        "path": True, "type": "dir", "help": "Target folder: report PSNR/SSIM/L1 per image."})

    def __post_init__(self):
        if self.direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {self.direction!r}")
        if self.tile < 0 or self.tile_overlap < 0:
            raise ValueError("tile and tile_overlap must be >= 0")
        if self.max_memory is not None and self.max_memory < 0:
            raise ValueError(f"max_memory must be >= 0 GB (0 = no limit), got {self.max_memory}")
        if self.netg is not None and self.netg not in NETG:
            raise ValueError(f"netg must be one of {', '.join(NETG)}, got {self.netg!r}")
        if self.norm is not None and self.norm not in ("batch", "instance", "none"):
            raise ValueError(f"norm must be batch, instance or none, got {self.norm!r}")
        paths.check_ext(self.ext)


@dataclass(frozen=True)
class PairsConfig:
    """Options of `genapps pairs` and of a `pairs` pipeline stage."""

    kind: str = field(default="degrade", metadata={
        "choices": KINDS, "required": True,  # on the command line
        "help": "A side: Canny edges, grayscale, blur+noise+JPEG, or Real-ESRGAN's second-order degradation; B side: the photo."})
    layout: str = field(default="folders", metadata={
        "choices": LAYOUTS,
        "help": "folders: OUTPUT/A and OUTPUT/B; aligned: A|B side by side; input: only the A images."})
    seed: int = field(default=0, metadata={"help": "Degradations are seeded per file."})
    resume: bool = True
    fail_fast: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.seed < 0:  # numpy's generators take seeds >= 0 (file_rng)
            raise ValueError(f"seed must be >= 0, got {self.seed}")
