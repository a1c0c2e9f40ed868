"""CycleGAN's ResNet generator, in the reference implementation's exact module layout.

junyanz/pytorch-CycleGAN-and-pix2pix's `ResnetGenerator` is one flat `nn.Sequential` named
`model`: a 7x7 stem, two stride-2 downsamplings, `n_blocks` ResnetBlocks, two transposed-conv
upsamplings and a 7x7 head with tanh (resnet_9blocks / resnet_6blocks). Keeping the indices
(`model.10.conv_block.1.weight`, ...) lets genapps load its `latest_net_G_A.pth` unchanged.

Tensors: (B, in_ch, H, W) in [-1, 1] -> (B, out_ch, H, W) in [-1, 1], H and W multiples of 4.
"""

from __future__ import annotations

import torch
from torch import nn

from genapps.nn.blocks import ResnetBlock
from genapps.nn.unet import norm_layer


class ResnetGenerator(nn.Module):
    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, n_blocks: int = 9, norm: str = "instance",
                 dropout: bool = False, padding: str = "reflect"):
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        make_norm, use_bias = norm_layer(norm), norm != "batch"
        model: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=use_bias), make_norm(ngf),
                                  nn.ReLU(True)]
        for mult in (1, 2):
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                      make_norm(ngf * mult * 2), nn.ReLU(True)]
        model += [ResnetBlock(ngf * 4, norm, dropout, padding) for _ in range(n_blocks)]
        for mult in (4, 2):
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                         bias=use_bias), make_norm(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)
        self.input_multiple = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
