"""The translate task's specs (light: no torch): `genapps translate`, `genapps pairs`, and the
`genapps train pix2pix` / `train cyclegan` commands."""

from genapps.tasks import TaskSpec, TrainCommand
from genapps.views import Metric, View

TRAINING = "genapps.tasks.translate.training"

TRANSLATE = TaskSpec(
    name="translate",
    module="genapps.tasks.translate.task",
    config="genapps.tasks.translate.config:Config",
    help="Translate a folder (or one image) with a pix2pix or CycleGAN model (deterministic by default).",
    remote=True,
    renames_outputs=lambda cfg: bool(cfg.suffix),
    view=View(metrics=(Metric("l1", "L1", lower_is_better=True), Metric("seconds_per_mp", "s/MP")),
              main=("psnr", "ssim", "l1")),
    train=(TrainCommand("pix2pix", f"{TRAINING}:Pix2PixConfig", f"{TRAINING}:train_pix2pix",
                        "Train a pix2pix model (U-Net + PatchGAN) on paired images."),
           TrainCommand("cyclegan", f"{TRAINING}:CycleGANConfig", f"{TRAINING}:train_cyclegan",
                        "Train a CycleGAN (two ResNet generators + two PatchGANs) on two unpaired folders.")),
)

PAIRS = TaskSpec(
    name="pairs",
    module="genapps.tasks.translate.pairs",
    config="genapps.tasks.translate.config:PairsConfig",
    help="Build a paired translation dataset (A -> B) from a folder of photos.",
    batch=False,
    device=False,
)
