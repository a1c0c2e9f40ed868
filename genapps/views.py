"""How a task's records appear in a report: image labels, its own metrics, their direction.

A task declares one `View` in its spec (genapps/tasks/<task>/spec.py). The code above the tasks
(cli.run_task, pipeline.run_pipeline) attaches it to the task's StageResult, so that report.py reads
it from the result and never imports a task. Metrics every task can measure (PSNR, SSIM, ... of
genapps.metrics) are the report's own (report.CORE_METRICS); a View adds the task's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A per-image metric or summary key: what the page calls it and which way is better."""

    key: str
    label: str
    lower_is_better: bool = False


@dataclass(frozen=True)
class View:
    """How a task's records appear on the page (default: input | output, core metrics only)."""

    input: str = "input"  # label of Record.input
    output: str = "output"  # label of Record.output
    input_is_reference: bool = False  # evaluate: Record.input is the reference, shown after the output
    by_class: bool = False  # one row per class (the output's parent folder): real | synthetic
    metrics: tuple[Metric, ...] = ()  # the task's own metrics and summary keys (labels, direction)
    main: tuple[str, ...] | None = None  # metrics to rank images by, preferred first (None: the report's core order)

    @classmethod
    def from_dict(cls, d: dict | None) -> "View":
        """The inverse of dataclasses.asdict (report parts of sharded runs store views as JSON)."""
        if not d:
            return cls()
        main = d.get("main")
        return cls(**(d | {"metrics": tuple(Metric(**m) for m in d.get("metrics") or ()),
                           "main": None if main is None else tuple(main)}))
