"""Building blocks shared by the task models (no task-specific code here)."""

from genapps.nn.blocks import PatchDiscriminator, ResidualBlock, conv3x3

__all__ = ["PatchDiscriminator", "ResidualBlock", "conv3x3"]
