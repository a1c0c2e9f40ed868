"""The options of `genapps evaluate` (light: no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    """Options of `genapps evaluate` and of an `evaluate` pipeline stage."""

    reference: str = field(metadata={"path": True})
    y_channel: bool = False  # BT.601 luma (MATLAB rgb2ycbcr), the SR protocol
    crop_border: int = 0  # pixels shaved each side, the SR protocol uses the scale
    masks: str | None = field(default=None, metadata={"path": True})
    quantize: bool = True  # round predictions to 8 bits first, as saved files are

    def __post_init__(self):
        if self.crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {self.crop_border}")
