"""The upscale task's specs (light: no torch): `genapps upscale`, the downscale stage, `genapps train sr`."""

from genapps.tasks import TaskSpec, TrainCommand
from genapps.views import Metric, View

UPSCALE = TaskSpec(
    name="upscale",
    module="genapps.tasks.upscale.task",
    config="genapps.tasks.upscale.config:Config",
    help="""Super-resolve a folder (or one image) of photos or scans x2/x3/x4.

    OUTPUT is a folder (the input tree is mirrored into it), or for one input image a file name
    such as result.png.
    """,
    remote=True,
    renames_outputs=lambda cfg: bool(cfg.suffix),
    view=View(metrics=(Metric("native_scale", "native scale"),)),
    train=(TrainCommand("sr", "genapps.tasks.upscale.training:SRTrainConfig", "genapps.tasks.upscale.training:train_sr",
                        "Train a super-resolution model (SRResNet or the re-parameterized plain net; L1, or GAN with "
                        "--gan)."),),
)

DOWNSCALE = TaskSpec(
    name="downscale",
    module="genapps.tasks.upscale.downscale",
    config="genapps.tasks.upscale.config:DownscaleConfig",
    help="Shrink every image by an integer factor (antialiased bicubic): LR inputs for an SR stage.",
    command=False,
    remote=True,
)
