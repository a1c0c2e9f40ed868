"""The augment task's spec (light: no torch): `genapps augment DATA OUTPUT`."""

from genapps.tasks import TaskSpec
from genapps.views import Metric, View

AUGMENT = TaskSpec(
    name="augment",
    module="genapps.tasks.augment.task",
    config="genapps.tasks.augment.config:Config",
    help="Train a class-conditional generator on an ImageFolder and write synthetic labeled images.",
    arguments=("data", "output_dir"),
    metavars=("DATA", "OUTPUT"),
    batch=False,
    view=View(input="real", output="synthetic", by_class=True,
              metrics=(Metric("filter_confidence", "filter confidence"),)),
)
