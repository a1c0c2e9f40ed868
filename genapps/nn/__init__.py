"""Building blocks shared by the task models (no task-specific code here)."""

from genapps.nn.blocks import PatchDiscriminator, ResidualBlock, conv3x3
from genapps.nn.unet import UnetGenerator, norm_layer

__all__ = ["PatchDiscriminator", "ResidualBlock", "UnetGenerator", "conv3x3", "norm_layer"]
