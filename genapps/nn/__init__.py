"""Building blocks shared by the task models (no task-specific code here)."""

from genapps.nn.blocks import PatchDiscriminator, PixelDiscriminator, ResidualBlock, ResnetBlock, conv3x3
from genapps.nn.resnet import ResnetGenerator
from genapps.nn.unet import UnetGenerator, norm_layer

__all__ = ["PatchDiscriminator", "PixelDiscriminator", "ResidualBlock", "ResnetBlock", "ResnetGenerator", "UnetGenerator",
           "conv3x3", "norm_layer"]
