"""Image quality metrics on torch tensors (pure functions, kornia style).

Why: every app in genapps (super-resolution, inpainting, translation, ...)
reports the same numbers, and they must agree with the reference
implementations people compare against (scikit-image, the MATLAB SR
protocol) while running batched on whatever device the images live on.

Conventions
-----------
* Images are float tensors with values in [0, 1] (``data_range`` 1), shape
  (B, C, H, W) or (C, H, W) (treated as a batch of one), C = 1 or 3.
* Metrics return a tensor of shape (B,) -- one value per image -- on the
  input device, float64 for float64 inputs and float32 otherwise (half and
  bfloat16 inputs are computed in float32).
* Nothing is moved to the CPU; metric functions stay differentiable
  (except :func:`quantize` and :func:`image_metrics`).
* ``mask`` arguments are (B, 1, H, W) or anything broadcastable to the image
  shape (e.g. (H, W), (B, C, H, W)); values in {0, 1} or weights in [0, 1].
  Only masked-in pixels count; an all-zero mask gives NaN for that image.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "rgb_to_y",
    "shave",
    "mse",
    "mae",
    "psnr",
    "ssim",
    "ms_ssim",
    "psnr_y",
    "ssim_y",
    "quantize",
    "colourfulness",
    "image_metrics",
    "MS_SSIM_WEIGHTS",
]

logger = logging.getLogger(__name__)

#: Scale weights of Wang, Simoncelli & Bovik (2003), finest scale first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# BT.601 "studio swing" luma as in MATLAB rgb2ycbcr (and skimage.color.rgb2ycbcr).
_Y_OFFSET = 16.0
_Y_COEFFS = (65.481, 128.553, 24.966)

_K1 = 0.01
_K2 = 0.03


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------
def _check_image(img: torch.Tensor, name: str = "img") -> torch.Tensor:
    """Return ``img`` as (B, C, H, W); raise ValueError/TypeError if unusable."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(img).__name__}")
    if img.dim() not in (3, 4):
        raise ValueError(
            f"{name} must have shape (B, C, H, W) or (C, H, W), got {tuple(img.shape)}"
        )
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 channels (dim -3), got shape {tuple(img.shape)}"
        )
    if not img.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor with values in [0, 1], got dtype {img.dtype}"
            " (convert uint8 images with img.float() / 255)"
        )
    return img


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_pair(
    pred: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (pred, target) pair; return both as (B, C, H, W) in a common float dtype."""
    if isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor):
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape, got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        if pred.device != target.device:
            raise ValueError(
                f"pred and target must be on the same device, got {pred.device} "
                f"and {target.device}"
            )
    pred = _check_image(pred, "pred")
    target = _check_image(target, "target")
    dtype = _compute_dtype(pred, target)
    return pred.to(dtype), target.to(dtype)


def _check_mask(mask: Optional[torch.Tensor], img: torch.Tensor) -> Optional[torch.Tensor]:
    """Return ``mask`` as a float tensor broadcastable to ``img`` (B, C, H, W), or None."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dim() > 4 or mask.dim() < 2:
        raise ValueError(
            f"mask must have 2 to 4 dims and broadcast to the image shape "
            f"{tuple(img.shape)}, got {tuple(mask.shape)}"
        )
    # manual check: torch.broadcast_shapes lazily imports torch.fx machinery (~1 s)
    padded = (1,) * (img.dim() - mask.dim()) + tuple(mask.shape)
    if any(m not in (1, s) for m, s in zip(padded, img.shape)):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the image shape "
            f"{tuple(img.shape)} (expected (B, 1, H, W))"
        )
    if mask.dim() < 4:
        mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
    return mask.to(device=img.device, dtype=img.dtype)


def _per_image_mean(values: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean over (C, H, W) of a (B, C, H, W) map, mask-weighted if a mask is given.

    An all-zero mask yields 0/0 = NaN for that image.
    """
    if mask is None:
        return values.flatten(1).mean(dim=1)
    weights = mask.expand_as(values)
    return (values * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1)


# --------------------------------------------------------------------------
# colour / geometry / quantisation
# --------------------------------------------------------------------------
def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma Y in [0, 1] scale, as MATLAB ``rgb2ycbcr`` (the SR evaluation protocol).

    ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in [0, 1], so
    Y lies in [16/255, 235/255]. Input (B, 3, H, W) or (3, H, W); output
    (B, 1, H, W). Single-channel input is returned unchanged (as (B, 1, H, W)).
    """
    img = _check_image(img)
    if img.shape[1] == 1:
        return img
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    cr, cg, cb = _Y_COEFFS
    return (_Y_OFFSET + cr * r + cg * g + cb * b) / 255.0


def shave(img: torch.Tensor, border: int) -> torch.Tensor:
    """Crop ``border`` pixels from each side of the last two (H, W) dims.

    Why: SR papers ignore a border of ``scale`` pixels where upsamplers are
    unreliable. ``border`` 0 returns the input; any leading dims are kept.
    """
    border = int(border)
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return img
    if img.dim() < 2:
        raise ValueError(f"shave needs at least (H, W) dims, got shape {tuple(img.shape)}")
    h, w = img.shape[-2:]
    if 2 * border >= h or 2 * border >= w:
        raise ValueError(
            f"cannot shave {border} px from each side of a {h}x{w} image"
        )
    return img[..., border : h - border, border : w - border]


def quantize(img: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Snap [0, 1] values to the nearest of the 2**bits levels, as saving to an 8-bit PNG would.

    Why: report what users actually get from a saved file. Values are clamped
    to [0, 1] and rounded half up (``floor(x * 255 + 0.5) / 255`` for 8 bits,
    like ``torchvision.utils.save_image``). Same shape, dtype and device as
    the input; not differentiable.
    """
    if not isinstance(img, torch.Tensor) or not img.is_floating_point():
        raise TypeError("quantize expects a float torch.Tensor with values in [0, 1]")
    if int(bits) != bits or not 1 <= bits <= 24:
        raise ValueError(f"bits must be an integer in [1, 24], got {bits}")
    levels = float(2 ** int(bits) - 1)
    return torch.floor(img.clamp(0.0, 1.0) * levels + 0.5) / levels


# --------------------------------------------------------------------------
# pixel-wise errors
# --------------------------------------------------------------------------
def mse(
    pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mean squared error per image, shape (B,).

    With ``mask`` the mean runs over masked-in pixels x channels only
    (weights in [0, 1] act as weights); an empty mask gives NaN.
    """
    pred, target = _check_pair(pred, target)
    mask = _check_mask(mask, pred)
    return _per_image_mean((pred - target) ** 2, mask)


def mae(
    pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mean absolute error per image, shape (B,); ``mask`` as in :func:`mse`."""
    pred, target = _check_pair(pred, target)
    mask = _check_mask(mask, pred)
    return _per_image_mean((pred - target).abs(), mask)


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, shape (B,): ``10 log10(data_range^2 / mse)``.

    Matches ``skimage.metrics.peak_signal_noise_ratio``: identical images give
    +inf. ``mask`` as in :func:`mse` (empty mask -> NaN).
    """
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    err = mse(pred, target, mask=mask)
    return 10.0 * torch.log10(float(data_range) ** 2 / err)


# --------------------------------------------------------------------------
# SSIM family
# --------------------------------------------------------------------------
def _gaussian_kernel1d(
    window_size: int, sigma: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, as scipy.ndimage.gaussian_filter1d builds them."""
    radius = window_size // 2
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _check_window(window_size: int, sigma: float) -> None:
    if int(window_size) != window_size or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd integer, got {window_size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")


def _ssim_maps(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float,
    window_size: int,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure (cs) maps over the valid region.

    Inputs (B, C, H, W) already validated; outputs (B, C, H - 2r, W - 2r) with
    r = window_size // 2. The valid (unpadded) separable Gaussian filtering
    equals skimage's reflect-filtered map cropped by r, since the crop removes
    exactly the pixels the padding touched. Population (co)variances, as in
    Wang et al. 2004.
    """
    b, c, h, w = x.shape
    if h < window_size or w < window_size:
        raise ValueError(
            f"SSIM needs images of at least {window_size}x{window_size} pixels "
            f"(window_size), got {h}x{w}"
        )
    k = _gaussian_kernel1d(window_size, sigma, x.device, x.dtype)
    n = 5 * c
    kh = k.view(1, 1, 1, -1).expand(n, 1, 1, window_size)
    kv = k.view(1, 1, -1, 1).expand(n, 1, window_size, 1)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    filt = F.conv2d(F.conv2d(stack, kh, groups=n), kv, groups=n)
    mu_x, mu_y, e_xx, e_yy, e_xy = filt.split(c, dim=1)

    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    cs_map = (2.0 * cov_xy + c2) / (var_x + var_y + c2)
    lum_map = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return lum_map * cs_map, cs_map


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    mask: Optional[torch.Tensor] = None,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Gaussian-window SSIM per image, shape (B,), values in [-1, 1] (1 = identical).

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range,
    channel_axis=...)``: the map is computed on the valid region (a border of
    ``window_size // 2`` pixels is dropped, like skimage's crop) and averaged;
    colour images average the per-channel SSIM. With ``mask`` the map is
    averaged over masked-in pixels only (the mask is cropped the same way).
    For another ``sigma``, skimage's window is ``2 * int(3.5 * sigma + 0.5) + 1``.
    Images must be at least ``window_size`` pixels on each side.
    """
    _check_window(window_size, sigma)
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    pred, target = _check_pair(pred, target)
    mask = _check_mask(mask, pred)
    ssim_map, _ = _ssim_maps(pred, target, float(data_range), int(window_size), float(sigma))
    if mask is not None:
        mask = shave(mask, int(window_size) // 2)
    return _per_image_mean(ssim_map, mask)


def ms_ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) per image, shape (B,), in [0, 1].

    Why: less sensitive than SSIM to the viewing scale, common for
    generative outputs. At each of ``len(weights)`` scales (2x2 average pooling
    in between) the mean contrast-structure term is taken, and at the coarsest
    scale the full SSIM; the result is ``prod(term_j ** weight_j)``. Negative
    terms are clamped to 0 (as torchmetrics' default ``normalize="relu"``
    and pytorch_msssim do) so the fractional powers stay real. With the 5
    standard weights, H and W must be >= 176 (``window_size * 2**4``).
    """
    _check_window(window_size, sigma)
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    pred, target = _check_pair(pred, target)
    n_scales = len(weights)
    if n_scales < 1:
        raise ValueError("weights must contain at least one scale weight")
    h, w = pred.shape[-2:]
    factor = 2 ** (n_scales - 1)
    min_size = window_size * factor
    if h // factor < window_size or w // factor < window_size:
        raise ValueError(
            f"ms_ssim with {n_scales} scales and window_size {window_size} needs images "
            f"of at least {min_size}x{min_size} pixels, got {h}x{w}"
        )
    w_t = torch.as_tensor(list(weights), device=pred.device, dtype=pred.dtype)
    terms = []
    x, y = pred, target
    for scale in range(n_scales):
        ssim_map, cs_map = _ssim_maps(x, y, float(data_range), int(window_size), float(sigma))
        if scale == n_scales - 1:
            terms.append(_per_image_mean(ssim_map, None))
        else:
            terms.append(_per_image_mean(cs_map, None))
            x = F.avg_pool2d(x, kernel_size=2)
            y = F.avg_pool2d(y, kernel_size=2)
    stacked = torch.stack(terms, dim=1).clamp(min=0.0)  # (B, n_scales)
    return torch.prod(stacked ** w_t, dim=1)


# --------------------------------------------------------------------------
# super-resolution protocol
# --------------------------------------------------------------------------
def psnr_y(pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """PSNR on the BT.601 Y channel after shaving ``crop_border`` px (SR protocol), shape (B,)."""
    pred, target = _check_pair(pred, target)
    return psnr(shave(rgb_to_y(pred), crop_border), shave(rgb_to_y(target), crop_border))


def ssim_y(pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """SSIM on the BT.601 Y channel after shaving ``crop_border`` px (SR protocol), shape (B,)."""
    pred, target = _check_pair(pred, target)
    return ssim(shave(rgb_to_y(pred), crop_border), shave(rgb_to_y(target), crop_border))


def colourfulness(img: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness of RGB images on the 0-255 scale, shape (B,):
    sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2), rg = R - G,
    yb = (R + G) / 2 - B, over each image's pixels (sample std); 0 for grey. Computed in float64."""
    img = img[None] if img.dim() == 3 else img
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"colourfulness needs (B, 3, H, W) or (3, H, W) RGB images, got {tuple(img.shape)}")
    r, g, b = (img.double() * 255).flatten(2).unbind(1)
    rg, yb = r - g, 0.5 * (r + g) - b
    std = torch.sqrt(rg.std(1) ** 2 + yb.std(1) ** 2)
    return std + 0.3 * torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)


# --------------------------------------------------------------------------
# convenience
# --------------------------------------------------------------------------
def image_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    y_channel: bool = False,
    crop_border: int = 0,
    mask: Optional[torch.Tensor] = None,
) -> dict[str, list[float]]:
    """Per-image metrics as plain floats, for the CLI and pipelines (no gradients).

    Returns ``{"psnr": [...], "ssim": [...]}`` with one float per image
    (data_range 1). ``y_channel`` evaluates on the BT.601 Y channel;
    ``crop_border`` shaves that many pixels per side (also from ``mask``).
    With ``mask`` ((B, 1, H, W) or broadcastable), all values are computed
    inside the mask only and a ``"mae"`` key is added; an empty mask gives NaN.
    Raises ValueError if shapes differ.
    """
    if isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor):
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape, got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
    with torch.no_grad():
        pred, target = _check_pair(pred, target)
        mask = _check_mask(mask, pred)
        if y_channel:
            pred, target = rgb_to_y(pred), rgb_to_y(target)
            if mask is not None and mask.shape[1] != 1:
                raise ValueError(
                    f"with y_channel=True the mask must have 1 channel, got {tuple(mask.shape)}"
                )
        pred, target = shave(pred, crop_border), shave(target, crop_border)
        if mask is not None:
            mask = shave(mask, crop_border)
        out: dict[str, torch.Tensor] = {
            "psnr": psnr(pred, target, mask=mask),
            "ssim": ssim(pred, target, mask=mask),
        }
        if mask is not None:
            out["mae"] = mae(pred, target, mask=mask)
        result = {k: [float(v) for v in t.detach().cpu().tolist()] for k, t in out.items()}
    logger.debug("image_metrics: %s", result)
    return result
