"""Shared blocks: residual blocks (EDSR's and CycleGAN's) and the 3x3 convolution."""

from __future__ import annotations

from torch import nn

from genapps.nn.unet import norm_layer


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride, 1)


class ResidualBlock(nn.Module):
    """EDSR's block: x + s * conv(relu(conv(x))); no batch norm (it hurts pixel-accurate outputs)."""

    def __init__(self, channels: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.act = nn.ReLU(inplace=True)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.conv2(self.act(self.conv1(x)))


class ResnetBlock(nn.Module):
    """CycleGAN's block: x + (pad, conv3x3, norm, relu, [dropout], pad, conv3x3, norm)(x).

    A sibling of ResidualBlock rather than an option of it: its parameters live in the
    reference's `conv_block.N` Sequential (norm modules and reflection pads take indices, and
    dropout shifts the second conv from index 5 to 6), while ResidualBlock's `conv1`/`conv2`
    names are those of the bundled SR weights; one class would carry two key layouts.
    """

    def __init__(self, dim: int, norm: str = "instance", dropout: bool = False, padding: str = "reflect"):
        super().__init__()
        pads = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}
        if padding not in (*pads, "zero"):
            raise ValueError(f"unknown padding {padding!r}; valid: reflect, replicate, zero")
        make_norm, use_bias = norm_layer(norm), norm != "batch"
        layers: list[nn.Module] = []
        for i in range(2):
            p = 1 if padding == "zero" else 0
            if padding != "zero":
                layers.append(pads[padding](1))
            layers += [nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), make_norm(dim)]
            if i == 0:
                layers.append(nn.ReLU(True))
                if dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)
