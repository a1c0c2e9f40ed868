"""The evaluate task's spec (light: no torch). `genapps evaluate PRED_DIR REF_DIR` is a command of its
own in cli.py (its folders map to the config differently); pipelines run it as a stage."""

from genapps.tasks import TaskSpec
from genapps.views import View

EVALUATE = TaskSpec(
    name="evaluate",
    module="genapps.tasks.evaluate.task",
    config="genapps.tasks.evaluate.config:Config",
    help="PSNR/SSIM of predictions against references, paired by relative path and stem.",
    command=False,
    view=View(input="reference", output="prediction", input_is_reference=True),
)
