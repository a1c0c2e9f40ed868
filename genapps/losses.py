"""Losses shared by the tasks: adversarial (relativistic average, non-saturating, hinge),
perceptual (VGG19 features or a documented fallback), and the VAE's KL term.

Images are (B, C, H, W) in [0, 1]; discriminator outputs are raw logits of any shape.
"""

from __future__ import annotations

import logging
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from genapps import io

log = logging.getLogger(__name__)

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's IMAGENET1K_V1 weights, as cached by torch.hub


# ---------------------------------------------------------------- adversarial


def relativistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """RaGAN (ESRGAN): real should look more real than the average fake, and vice versa."""
    return 0.5 * (F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.zeros_like(fake_logits)))


def relativistic_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's side of RaGAN (gradients flow through both terms)."""
    return 0.5 * (F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.zeros_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.ones_like(fake_logits)))


def nonsaturating_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def nonsaturating_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


# ---------------------------------------------------------------- VAE


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over latent dims, mean over the batch. mu, logvar: (B, Z)."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


# ---------------------------------------------------------------- perceptual


def vgg19_weights_path() -> Path | None:
    """torchvision's VGG19 weights if they are on disk (never downloaded: genapps runs offline)."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    return path if path.is_file() else None


class PerceptualLoss(nn.Module):
    """L1 between deep features of prediction and target.

    With torchvision's VGG19 weights on disk: ESRGAN's conv5_4 (pre-activation) features on
    ImageNet-normalised input. Without them (offline machines), the documented fallback is a
    multi-scale gradient loss: L1 between Sobel gradients at 1x, 1/2x and 1/4x, which rewards
    matching edge and texture contrast rather than only mean colour. `backbone` says which runs.
    """

    def __init__(self):
        super().__init__()
        weights = vgg19_weights_path()
        self.features = None
        if weights is not None:
            from torchvision.models import vgg19

            vgg = vgg19()
            vgg.load_state_dict(io.load_torch(weights))
            self.features = vgg.features[:35].eval().requires_grad_(False)
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
            self.backbone = f"vgg19 conv5_4 ({weights})"
        else:
            self.backbone = "multi-scale Sobel gradients (fallback: no VGG19 weights on disk)"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.features is not None:
            f = lambda x: self.features((x - self.mean) / self.std)  # noqa: E731
            return F.l1_loss(f(pred), f(target))
        loss = pred.new_zeros(())
        for level in range(3):
            if level:
                pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            loss = loss + F.l1_loss(kornia.filters.spatial_gradient(pred), kornia.filters.spatial_gradient(target))
        return loss
