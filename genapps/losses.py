"""Every loss of genapps's trainings: adversarial (relativistic average, non-saturating, hinge,
pix2pix's vanilla/LSGAN, the semi-supervised GAN's), discriminator feature matching, the VAE
terms (ELBO, KL to N(0, I) or between two Gaussians), masked (hole) L1, the Laplacian-pyramid
structure L1, perceptual (VGG19 features or a documented fallback), Neighbor2Neighbor's
self-supervised denoising, and colour as classes
(Zhang et al. 2016: soft-encoded ab targets, class-rebalancing weights, the weighted cross-entropy).

Images are (B, C, H, W) in [0, 1]; discriminator outputs are raw logits of any shape.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F
from torch import nn

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


GAN_MODES = ("vanilla", "lsgan")


def gan_loss(logits: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """pix2pix's GANLoss: BCE with logits (vanilla) or MSE to 1/0 (lsgan), towards `real`."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def semigan_unsupervised_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """-E log D(x_unlabeled) - E log(1 - D(G(z))) with D(x) = Z / (Z + 1), Z = sum_k exp(logit_k):
    K class logits (B, K) serve as a real/fake discriminator whose fake logit is fixed at 0.
    log D = lse - softplus(lse) and log(1 - D) = -softplus(lse), lse = logsumexp of the logits."""
    lse_r, lse_f = logits_real.logsumexp(1), logits_fake.logsumexp(1)
    return -lse_r.mean() + F.softplus(lse_r).mean() + F.softplus(lse_f).mean()


def feature_matching_l1(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 between a discriminator's activations on fake and on real images
    (e.g. PatchDiscriminator.forward_with_features; real ones usually computed under no_grad)."""
    return sum(F.l1_loss(f, r) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)


# ---------------------------------------------------------------- VAE


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over latent dims, mean over the batch. mu, logvar: (B, Z).

    kl_gaussians with mu_p = logvar_p = 0, in the usual closed form (its own sum order: the two
    differ in the last float bits, and trained weights are kept bit-identical)."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def kl_gaussians(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) summed over latent dims, mean over the batch. All (B, Z), or
    latent maps (B, Z, h, w): then the mean is over the batch and the cells (a cell's KL weighs as a vector's)."""
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1)
    return kl.sum(1).mean()


def elbo_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              beta: float = 1.0, recon: str = "bce") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO per image: recon (BCE or MSE summed over pixels) + beta * KL(q(z|x,y) || N(0, I)).

    logits: the decoder's pre-sigmoid output, x the images in [0, 1] (same shape); mu, logvar (B, Z).
    Returns (loss, recon, kl), each averaged over the batch.
    """
    if recon == "bce":
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
    elif recon == "mse":
        rec = F.mse_loss(torch.sigmoid(logits), x, reduction="none").flatten(1).sum(1).mean()
    else:
        raise ValueError(f"unknown reconstruction loss {recon!r}; valid: bce, mse")
    kl = kl_normal(mu, logvar)
    return rec + beta * kl, rec, kl


# ---------------------------------------------------------------- self-supervised denoising

# the adjacent pixel pairs of a 2x2 cell, positions 0 (0, 0), 1 (0, 1), 2 (1, 0), 3 (1, 1), both orders
NEIGHBOUR_PAIRS = ((0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2))


def neighbour_pick(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbor2Neighbor's random neighbour sub-sampler (Huang et al. 2021): for every 2x2 cell of
    x (B, C, H, W) the indices (B, 1, 1, H/2, W/2) of two adjacent pixels, the same for every channel."""
    b, _, h, w = x.shape
    pairs = torch.tensor(NEIGHBOUR_PAIRS, device=x.device)
    pick = pairs[torch.randint(len(NEIGHBOUR_PAIRS), (b, 1, 1, h // 2, w // 2), generator=generator).to(x.device)]
    return pick[..., 0], pick[..., 1]


def neighbour_take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): the pixel `index` (from neighbour_pick) of every 2x2 cell."""
    b, c, h, w = x.shape
    cells = F.pixel_unshuffle(x[:, :, :h // 2 * 2, :w // 2 * 2], 2).view(b, c, 4, h // 2, w // 2)
    return cells.gather(2, index.expand(b, c, 1, h // 2, w // 2)).squeeze(2)


def neighbor2neighbor_loss(restore, noisy: torch.Tensor, gamma: float = 1.0,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Self-supervised denoising from noisy images alone (Neighbor2Neighbor, Huang et al. 2021):
    two neighbour sub-images g1, g2 of each image carry the same signal and independent noise, so
    restore(g1) is pushed towards g2 (MSE); the regulariser, gamma * MSE(restore(g1) - g2 -
    (g1(restore(y)) - g2(restore(y)))) with restore(y) not differentiated, corrects for the
    neighbours' small signal difference. `restore` maps (B, C, h, w) in [0, 1] to the same;
    noisy (B, C, H, W) in [0, 1], H and W even and twice a multiple of restore's size needs."""
    i1, i2 = neighbour_pick(noisy, generator)
    g1, g2 = neighbour_take(noisy, i1), neighbour_take(noisy, i2)
    with torch.no_grad():
        whole = restore(noisy)
        gap = neighbour_take(whole, i1) - neighbour_take(whole, i2)
    diff = restore(g1) - g2
    return F.mse_loss(diff, torch.zeros_like(diff)) + gamma * F.mse_loss(diff, gap)


# ---------------------------------------------------------------- masked (inpainting)


def hole_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| over hole pixels and channels (a scalar, in [0, 1] units).
    pred, target (B, C, H, W); mask (B, 1, H, W), 1 in the hole (1 - mask: the valid pixels)."""
    return ((pred - target).abs() * mask).sum() / (mask.sum() * pred.shape[1]).clamp(min=1)


def per_crop_hole_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hole_l1 of each crop: pred and target (..., B, C, H, W) (leading dims broadcast, e.g. K
    samples), mask (B, 1, H, W) -> (..., B) mean |pred - target| over each crop's hole pixels."""
    err = ((pred - target).abs() * mask).flatten(-3).sum(-1)
    return err / (mask.flatten(-3).sum(-1) * pred.shape[-3]).clamp(min=1)


def best_of_hole_l1(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Best-of-K hole L1: samples (K, B, 3, H, W) of each crop's fill; the hole L1 (as hole_l1,
    per crop) of the best sample of each crop, mean over the crops. Only the best sample is
    pushed towards the target, so the K samples may spread over plausible fills."""
    return per_crop_hole_l1(samples, target, mask).min(0).values.mean()


def diversity_sensitive_loss(samples: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                             floor: float) -> torch.Tensor:
    """DSGAN's clipped diversity term (Yang et al. 2019, "Diversity-Sensitive Conditional GANs"):
    keeps a conditional generator from ignoring its noise, here from a learned prior that shrinks.

    samples (K, B, 3, H, W): K fills of each crop from the noise draws noise (K, B, Z) or latent maps
    (K, B, Z, h, w) (the unit normal eps before the prior's mean and std: a prior that shrinks its
    std does not shrink this distance); mask (B, 1, H, W). For every pair of samples and crop:
    their hole L1 divided by the noise distance (mean |eps_i - eps_j|, over its expectation
    2/sqrt(pi) for unit normals: 1 on average), clipped at `floor` (image units). Returns floor -
    mean clipped ratio: 0 once every pair differs by at least `floor` per typical noise distance,
    so it buys diversity up to that and no more (the best-of-K term then decides what the samples
    look like)."""
    k = len(samples)
    if k < 2:
        raise ValueError("the diversity term needs at least two samples per crop")
    ratios = []
    for i in range(k):
        for j in range(i + 1, k):
            d_img = per_crop_hole_l1(samples[i], samples[j], mask)
            d_noise = (noise[i] - noise[j]).abs().flatten(1).mean(1) / (2 / math.pi ** 0.5)
            ratios.append((d_img / d_noise.clamp(min=1e-3)).clamp(max=floor))
    return floor - torch.stack(ratios).mean()


def laplacian_pyramid_l1(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Structure loss with a receptive field as large as the image and no downloaded weights: the
    L1 between the Laplacian pyramids (2x2 average pooling, bilinear upsampling) of pred and target,
    band by band, each band's L1 weighted 2^level (a coarse band's pixel stands for 4^level pixels;
    2^level keeps fine edges and large-scale structure alike), plus the L1 of the coarsest residual
    at 2^levels, divided by the sum of the weights. On an inpainted (composited) image it is
    nonzero only around the hole, and its coarse bands judge the fill's shading across the whole hole.
    pred, target (B, C, H, W); a scalar in the units of the images."""
    total, weights, level = pred.new_zeros(()), 0.0, 0
    while level < levels and min(pred.shape[-2:]) >= 2:
        p_low, t_low = F.avg_pool2d(pred, 2, ceil_mode=True), F.avg_pool2d(target, 2, ceil_mode=True)
        size = pred.shape[-2:]
        p_band = pred - F.interpolate(p_low, size=size, mode="bilinear", align_corners=False)
        t_band = target - F.interpolate(t_low, size=size, mode="bilinear", align_corners=False)
        total = total + 2 ** level * F.l1_loss(p_band, t_band)
        weights += 2 ** level
        pred, target, level = p_low, t_low, level + 1
    weight = 2.0 ** level
    return (total + weight * F.l1_loss(pred, target)) / (weights + weight)


# ---------------------------------------------------------------- colour classes (Zhang et al. 2016)


def soft_encode_ab(ab: torch.Tensor, bins: torch.Tensor, neighbours: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """(B, 2, H, W) ab -> (B, Q, H, W) target distributions over the (Q, 2) bins: each pixel's
    `neighbours` nearest bins weighted by a Gaussian of their distance (sigma in ab units), summing
    to 1; the rest 0 (the paper's soft-encoding: 5 neighbours, sigma 5)."""
    b, _, h, w = ab.shape
    d2 = torch.cdist(ab.permute(0, 2, 3, 1).reshape(-1, 2).float(), bins.float()).square()  # (B*H*W, Q)
    near, idx = d2.topk(min(neighbours, bins.shape[0]), dim=1, largest=False)
    weight = torch.exp(-(near - near[:, :1]) / (2 * sigma ** 2))  # relative to the nearest: no underflow
    target = torch.zeros_like(d2).scatter_(1, idx, weight / weight.sum(1, keepdim=True))
    return target.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def smoothed_prior(prior: torch.Tensor, bins: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """(Q,) the empirical prior of the (Q, 2) bins smoothed by a Gaussian of `sigma` ab units over
    the bins, renormalised to sum 1 (float64)."""
    kernel = torch.exp(-torch.cdist(bins.double(), bins.double()).square() / (2 * sigma ** 2))
    smooth = kernel @ prior.double()
    return smooth / smooth.sum()


def rebalancing_weights(prior: torch.Tensor, bins: torch.Tensor, mix: float = 0.5, sigma: float = 5.0) -> torch.Tensor:
    """(Q,) class-rebalancing weights w of the (Q, 2) bins (the paper's eq. 4): the smoothed prior
    p~ (smoothed_prior) mixed with the uniform by `mix` (lambda; 0.5 in the paper), inverted and
    normalised so that the expected weight sum_q p~_q w_q is 1: w = ((1 - mix) p~ + mix / Q)^-1
    / E_p~[...]. Rare (saturated) colours weigh more; mix 1 gives all ones."""
    smooth = smoothed_prior(prior, bins, sigma)
    w = 1 / ((1 - mix) * smooth + mix / prior.numel())
    return (w / (smooth * w).sum()).float()


def rebalanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The multinomial cross-entropy of (B, Q, H, W) logits against soft targets of the same shape,
    each pixel weighted by the (Q,) rebalancing weight of its target's most likely bin, mean over
    pixels (a scalar; with weights all 1, the plain cross-entropy in nats)."""
    ce = -(target * torch.log_softmax(logits.float(), dim=1)).sum(1)
    return (ce * weights.to(ce.device)[target.argmax(1)]).mean()


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

            from genapps import io

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
