"""The inpaint task's specs (light: no torch): `genapps inpaint`, `genapps masks`, `genapps train inpaint`."""

from genapps.tasks import TaskSpec, TrainCommand
from genapps.views import Metric, View

INPAINT = TaskSpec(
    name="inpaint",
    module="genapps.tasks.inpaint.task",
    config="genapps.tasks.inpaint.config:Config",
    help="Fill the masked holes of a folder (or one image): remove objects, scratches, text.",
    remote=True,
    renames_outputs=lambda cfg: bool(cfg.suffix) or cfg.samples > 1,
    view=View(metrics=(Metric("hole_psnr", "hole PSNR dB"), Metric("hole_l1", "hole L1 (0-255)", lower_is_better=True),
                       Metric("input_mp", "input MP"), Metric("seconds_per_mp", "s/MP")),
              main=("hole_psnr", "psnr", "ssim", "hole_l1")),
    train=(TrainCommand("inpaint", "genapps.tasks.inpaint.training:InpaintTrainConfig",
                        "genapps.tasks.inpaint.training:train_inpaint",
                        "Train an inpainting model (U-Net GAN, or the pluralistic VAE-family variant)."),),
)

MASKS = TaskSpec(
    name="masks",
    module="genapps.tasks.inpaint.masks",
    config="genapps.tasks.inpaint.config:MasksConfig",
    help="Write a seeded inpainting mask (PNG, white = hole) for every image of a folder.",
    batch=False,
    device=False,
)
