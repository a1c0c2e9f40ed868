"""Shared blocks: residual blocks (EDSR's and CycleGAN's) and the PatchGAN / pixel discriminators."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import spectral_norm

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


D_NORMS = ("spectral", "batch", "instance", "none")


class PatchDiscriminator(nn.Module):
    """PatchGAN: pix2pix's NLayerDiscriminator (n_layers = `layers`, the 70x70 one at 3).

    `norm`: "spectral" (default: spectral norm on every conv, no norm layers; the SR GAN's
    layout `net.0, net.2, ...`), or the reference's "batch" / "instance" / "none" norm layers
    after each inner conv (then `net.N` indices follow the reference's `model.N`).
    (B, in_ch, H, W) in [0, 1] -> (B, 1, ~H/2^(layers-1)/2, ...) real/fake logits, one per patch.
    """

    def __init__(self, in_ch: int = 3, channels: int = 64, layers: int = 3, norm: str = "spectral"):
        super().__init__()
        if norm not in D_NORMS:
            raise ValueError(f"unknown discriminator norm {norm!r}; valid: {', '.join(D_NORMS)}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        sn = spectral_norm if norm == "spectral" else (lambda m: m)
        make_norm = None if norm == "spectral" else norm_layer(norm)
        use_bias = norm != "batch"
        seq = [sn(nn.Conv2d(in_ch, channels, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        ch = channels
        for i in range(1, layers + 1):
            nxt = channels * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            seq.append(sn(nn.Conv2d(ch, nxt, 4, stride, 1, bias=use_bias)))
            if make_norm is not None:
                seq.append(make_norm(nxt))
            seq.append(nn.LeakyReLU(0.2, True))
            ch = nxt
        seq.append(sn(nn.Conv2d(ch, 1, 4, 1, 1)))
        self.net = nn.Sequential(*seq)

    def forward(self, x):
        return self.net(x * 2 - 1)


class PixelDiscriminator(nn.Module):
    """pix2pix's PixelGAN (1x1 PatchGAN): (B, in_ch, H, W) in [0, 1] -> (B, 1, H, W) logits."""

    def __init__(self, in_ch: int = 3, channels: int = 64, norm: str = "batch"):
        super().__init__()
        if norm not in D_NORMS:
            raise ValueError(f"unknown discriminator norm {norm!r}; valid: {', '.join(D_NORMS)}")
        sn = spectral_norm if norm == "spectral" else (lambda m: m)
        inner = nn.Identity() if norm == "spectral" else norm_layer(norm)(channels * 2)
        self.net = nn.Sequential(
            sn(nn.Conv2d(in_ch, channels, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(channels, channels * 2, 1, bias=norm != "batch")), inner, nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(channels * 2, 1, 1)))

    def forward(self, x):
        return self.net(x * 2 - 1)
