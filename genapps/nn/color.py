"""Colour as classes (Zhang, Isola & Efros 2016, "Colorful Image Colorization"): the ab plane of
CIE Lab cut into square cells of AB_GRID units, a set of bin centres (the cells the training
colours fall in), the annealed-mean decoding of a distribution over them, and the way back to
RGB that keeps the input's luma.

Lab conversion is kornia's (sRGB D65; L in [0, 100], a and b about [-110, 110]). Shapes: images
(B, 3, H, W) in [0, 1], ab (B, 2, H, W) in Lab units, bins (Q, 2), logits (B, Q, H, W).
"""

from __future__ import annotations

import kornia
import torch

AB_GRID = 10  # ab units per bin side (the paper's grid)
AB_RANGE = 110  # |a|, |b| of sRGB colours stay below this: the grid's cells are centred on -110..110
LUMA = (0.299, 0.587, 0.114)  # BT.601, as genapps' grey inputs (genapps pairs --kind gray)


def rgb_to_ab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> (B, 2, H, W) the a and b of CIE Lab."""
    return kornia.color.rgb_to_lab(rgb)[:, 1:]


def ab_histogram(ab: torch.Tensor, grid: int = AB_GRID) -> torch.Tensor:
    """Pixel counts of (..., 2, H, W) ab values in the grid's cells: a (n, n) float64 tensor,
    n = 2 * AB_RANGE / grid + 1, indexed [a cell, b cell] from -AB_RANGE."""
    n = 2 * AB_RANGE // grid + 1
    cells = ((ab.movedim(-3, -1).reshape(-1, 2) + AB_RANGE) / grid).round().long().clamp(0, n - 1)
    flat = cells[:, 0] * n + cells[:, 1]
    return torch.bincount(flat, minlength=n * n).double().reshape(n, n)


def bins_from_histogram(counts: torch.Tensor, grid: int = AB_GRID) -> tuple[torch.Tensor, torch.Tensor]:
    """(bins (Q, 2) the centres of the cells with any pixel, prior (Q,) their share of the pixels)
    from ab_histogram's counts; cells in a, then b order (Zhang et al. keep the 313 in-gamut cells;
    here the cells the data shows, at most 23 x 23)."""
    idx = torch.nonzero(counts > 0)
    if not len(idx):
        raise ValueError("no colours to make ab bins from")
    bins = (idx * grid - AB_RANGE).float()
    prior = counts[idx[:, 0], idx[:, 1]]
    return bins, (prior / prior.sum()).float()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, Q, H, W) logits -> (B, 2, H, W) ab: the mean of the distribution re-sharpened by
    `temperature` (softmax(logits / T), the paper's f_T(z) = exp(log z / T) renormalised):
    T = 1 the mean (desaturated), T -> 0 the mode (vivid, patchy); the paper uses 0.38."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    p = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", p, bins.to(p.dtype))


def colour_from_ab(grey: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) grey in [0, 1] and (B, 2, H, W) ab -> (B, 3, H, W) RGB in [0, 1] whose BT.601
    luma is the grey's: Lab with the grey's L, back to RGB, then the luma difference added to all
    three channels (Lab's L and BT.601 luma disagree on saturated colours), clamped."""
    lightness = kornia.color.rgb_to_lab(grey.expand(-1, 3, -1, -1))[:, :1]
    rgb = kornia.color.lab_to_rgb(torch.cat([lightness, ab], 1), clip=True)
    luma = (rgb * rgb.new_tensor(LUMA)[:, None, None]).sum(1, keepdim=True)
    return (rgb + (grey - luma)).clamp(0, 1)
