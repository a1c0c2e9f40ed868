"""What every task returns: one Record per input file and one StageResult per stage.

Plain data, apart from the loop that makes it (genapps.batch), so the report (genapps.report)
reads and rebuilds it without importing the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genapps.views import View


@dataclass
class Record:
    """One input file processed by one stage."""

    input: str
    output: str | None
    status: str  # "ok" | "error" | "skipped"
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    warning: str | None = None  # an "ok" output the user should look at (e.g. a colour input to a colouriser)


@dataclass
class StageResult:
    """What one stage (or one batch command) did: its records plus task-specific numbers."""

    name: str
    task: str
    input_dir: str
    output_dir: str
    config: dict
    records: list[Record]
    seconds: float
    summary: dict = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)
    view: View | None = None  # how its records appear in reports: its task's (TaskSpec.view), set by the caller

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.records if r.status == "error"]
