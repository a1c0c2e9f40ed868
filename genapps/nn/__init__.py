"""Networks and blocks shared by the tasks (no task-specific code here): blocks, the U-Net and
ResNet generators, the discriminators, the image pool, the public SR architectures (nn.sr) and
their fast CPU inference (nn.winograd)."""

from genapps.nn.blocks import ResidualBlock, ResnetBlock, conv3x3
from genapps.nn.discriminators import (CycleDiscriminators, PatchDiscriminator, PixelDiscriminator,
                                       ProjectionDiscriminator)
from genapps.nn.pool import ImagePool
from genapps.nn.resnet import ResnetGenerator
from genapps.nn.unet import UnetGenerator, norm_layer

__all__ = ["CycleDiscriminators", "ImagePool", "PatchDiscriminator", "PixelDiscriminator", "ProjectionDiscriminator",
           "ResidualBlock", "ResnetBlock", "ResnetGenerator", "UnetGenerator", "conv3x3", "norm_layer"]
