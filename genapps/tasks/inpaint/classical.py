"""Classical inpainting: OpenCV's Telea and Navier-Stokes, scikit-image's biharmonic, and OpenCV-contrib's
frequency-selective reconstruction (FSR, `cv2.xphoto.inpaint`, fast and best; needs the contrib build of
OpenCV: pyproject's `fsr` extra, opencv-contrib-python-headless, installed over opencv-python-headless).

All take a (C, H, W) float image in [0, 1] and a bool (H, W) hole mask and return a (C, H, W)
float image whose hole is filled (pixels outside the hole are returned unchanged); a hole that
covers the whole image is a ValueError (check_fillable: nothing to fill from).
Their mean pre-fills the hole that the learned model then corrects.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

RADIUS = 5  # px, the radius of OpenCV's methods (as IOPaint's cv2 model and REFERENCE-POINTS)


def _opencv(image: torch.Tensor, mask: torch.Tensor, flag: int) -> torch.Tensor:
    """Per channel in float32 on the 0-255 scale (OpenCV's 1-channel float path; its thresholds assume
    that scale): 16-bit precision is kept."""
    m = mask.numpy().astype(np.uint8)
    planes = [cv2.inpaint(np.ascontiguousarray(c.numpy() * 255, dtype=np.float32), m, RADIUS, flag) for c in image]
    return (torch.from_numpy(np.stack(planes)) / 255).clamp(0, 1)


def telea(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _opencv(image, mask, cv2.INPAINT_TELEA)


def navier_stokes(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _opencv(image, mask, cv2.INPAINT_NS)


def biharmonic(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from skimage.restoration import inpaint_biharmonic

    out = inpaint_biharmonic(image.permute(1, 2, 0).numpy().astype(np.float64), mask.numpy(), channel_axis=-1)
    return torch.from_numpy(out).permute(2, 0, 1).float().clamp(0, 1)


FSR_MISSING = ("the fsr methods need OpenCV's contrib modules (cv2.xphoto): pip install --force-reinstall --no-deps "
               "opencv-contrib-python-headless==<the installed opencv-python-headless version> (both provide cv2)")


def _fsr(image: torch.Tensor, mask: torch.Tensor, fast: bool) -> torch.Tensor:
    """cv2.xphoto.inpaint's frequency-selective reconstruction on the 8-bit image (FSR runs on 8-bit
    1- or 3-channel images; the channels as they are: RGB measured lower hole L1 than CIELab on
    held-out photos, 13.7 vs 14.6 with FSR fast)."""
    xphoto = getattr(cv2, "xphoto", None)
    if xphoto is None:
        raise RuntimeError(FSR_MISSING)
    hole = mask.numpy()
    src = np.ascontiguousarray((image.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8))
    src[hole] = 0  # the hole's content is ignored
    if src.shape[2] == 1:
        src = src[..., 0]
    dst = np.zeros_like(src)
    xphoto.inpaint(src, np.where(hole, 0, 255).astype(np.uint8), dst,  # FSR's mask: non-zero = known
                   xphoto.INPAINT_FSR_FAST if fast else xphoto.INPAINT_FSR_BEST)
    out = torch.from_numpy(dst.reshape(*dst.shape[:2], -1)).permute(2, 0, 1).float() / 255
    return out


def fsr_fast(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _fsr(image, mask, fast=True)


def fsr_best(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _fsr(image, mask, fast=False)


METHODS = {"telea": telea, "ns": navier_stokes, "biharmonic": biharmonic, "fsr-fast": fsr_fast, "fsr-best": fsr_best}


def check_fillable(mask: torch.Tensor) -> None:
    """A ValueError when the hole is the whole image: every method fills from the pixels outside
    the hole (OpenCV's would return the input unchanged, biharmonic and the model fail)."""
    if bool(mask.all()):
        raise ValueError(f"the mask covers the whole {mask.shape[1]}x{mask.shape[0]} image: no pixel outside the "
                         f"hole to fill it from (a mask must leave some of the image)")


def fill(method: str, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(C, H, W) in [0, 1], bool (H, W) -> (C, H, W), hole filled by `method`, outside untouched."""
    if method not in METHODS:
        raise ValueError(f"unknown classical method {method!r}; valid: {', '.join(METHODS)}")
    if not mask.any():
        return image.clone()
    check_fillable(mask)
    return torch.where(mask, METHODS[method](image, mask), image)


def prefill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The learned model's starting point: the mean of the Telea, Navier-Stokes and biharmonic fills.

    (C, H, W) in [0, 1], bool (H, W) -> (C, H, W). Their errors differ (Telea and NS propagate the
    border inwards, biharmonic is the smoothest fill), so the mean has about 8-10% lower hole L1
    than the best of them (measured on held-out training photos). The hole's content is ignored.
    """
    if not mask.any():
        return image.clone()
    check_fillable(mask)
    holed = torch.where(mask, torch.zeros(()), image)
    mean = (telea(holed, mask) + navier_stokes(holed, mask) + biharmonic(holed, mask)) / 3
    return torch.where(mask, mean, image)
