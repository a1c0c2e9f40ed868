"""Image degradations for making training and benchmark inputs: one implementation, shared by the
tasks (upscale's `train sr --degrade`, pairs' `degrade` and `realworld` kinds, the benchmarks).

Three models:
- `degrade` (first order): Gaussian blur, Gaussian noise, JPEG, with parameters drawn from
  DEGRADE_RANGES (`random_degradation`); what `genapps pairs --kind degrade` makes.
- `realworld` (second order, Real-ESRGAN, Wang et al. 2021): blur (Gaussian / generalized Gaussian /
  plateau kernels, isotropic or anisotropic, or a sinc), random resize (up/down/keep; area,
  bilinear or bicubic), Gaussian or Poisson noise (colour or grey), JPEG; the same again with the
  second-round ranges; then the resize to the LR size with a sinc (ringing) filter and a last JPEG
  in random order. The ranges are a frozen `RealWorld` dataclass whose defaults are Real-ESRGAN's
  x4plus training options (options/train_realesrgan_x4plus.yml and its dataset).
- `InjectedDegradation` (estimated from degraded photos without their originals: Ji et al. 2020,
  RealSR's kernel estimation and noise injection): noise patches cut from flat regions of the
  degraded photos are added to clean photos after a Gaussian blur whose range is fitted so that
  their mean power spectrum matches the degraded photos', then a JPEG whose quality range is
  fitted on the degraded photos' 8-px blockiness. Pairs for restoration from unpaired data.

Images are numpy (H, W, C) arrays (C = 1 or 3, RGB), uint8 at the ends and float32 in [0, 1] in
between (as Real-ESRGAN, which clamps after each noise and JPEG). Every random draw comes from the
numpy Generator passed in, so a degradation is reproducible: `file_rng(seed, relative path)` gives
each image its own, independent of the others. OpenCV does the filtering, resizing and JPEG; the
kernels are computed here (neither kornia nor albumentations draws Real-ESRGAN's kernel family
from a given Generator).
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import asdict, dataclass

import cv2
import numpy as np

# ---------------------------------------------------------------- first order (pairs --kind degrade)

DEGRADE_RANGES = {"blur_sigma": (0.0, 1.5), "noise_sigma": (0.0, 20.0), "jpeg_quality": (30, 90)}
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> grey (ITU-R BT.601, as genapps.inference.LUMA)


def file_rng(seed: int, key: str, *more: int) -> np.random.Generator:
    """A generator seeded by (seed, key[, more ints]): a file's (or crop's) degradation does not
    depend on the others. `key` is e.g. the file's relative path without extension."""
    return np.random.default_rng([seed, zlib.crc32(key.encode()), *more])


def degrade(rgb: np.ndarray, blur_sigma: float, noise_sigma: float, jpeg_quality: int,
            rng: np.random.Generator) -> np.ndarray:
    """(H, W, C) uint8 -> same shape uint8: Gaussian blur, Gaussian noise (0-255 scale), JPEG."""
    x = rgb.astype(np.float32)
    if blur_sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), blur_sigma, borderType=cv2.BORDER_REFLECT)
        x = x.reshape(rgb.shape)
    if noise_sigma > 0:
        x = x + rng.normal(0.0, noise_sigma, x.shape).astype(np.float32)
    x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return jpeg_uint8(x, jpeg_quality)


def random_degradation(rng: np.random.Generator) -> dict:
    """`degrade`'s parameters drawn from DEGRADE_RANGES."""
    (b0, b1), (n0, n1), (q0, q1) = DEGRADE_RANGES.values()
    return {"blur_sigma": float(rng.uniform(b0, b1)), "noise_sigma": float(rng.uniform(n0, n1)),
            "jpeg_quality": int(rng.integers(q0, q1 + 1))}


# ---------------------------------------------------------------- the ops


def jpeg_uint8(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, C) uint8 -> the same after a JPEG round trip at `quality` (OpenCV's libjpeg, 4:2:0)."""
    bgr = rgb[:, :, ::-1] if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV failed to JPEG-encode")
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    out = out[:, :, ::-1] if out.ndim == 3 else out
    return np.ascontiguousarray(out).reshape(rgb.shape)


def jpeg(x: np.ndarray, quality: float) -> np.ndarray:
    """(H, W, C) float in [0, 1] -> the same after clamping, 8-bit rounding and a JPEG round trip."""
    u8 = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    return jpeg_uint8(u8, int(round(quality))).astype(np.float32) / 255


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.meshgrid(r, r)  # xx (columns), yy (rows)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
                    beta: float = 1.0, shape: str = "gaussian") -> np.ndarray:
    """(size, size) float32 blur kernel summing to 1, centred.

    shape "gaussian" exp(-0.5 * x' S^-1 x) / "generalized" exp(-0.5 * (x' S^-1 x)^beta) (beta = 1:
    Gaussian; < 1 a sharper peak and heavier tails, > 1 a flatter top) / "plateau"
    1 / (1 + (x' S^-1 x)^beta), as Real-ESRGAN (basicsr.data.degradations);
    S = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)'. sigma_y = None: isotropic."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ rot.T
    inv = np.linalg.inv(cov)
    xx, yy = _grid(size)
    q = inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy  # x' S^-1 x
    if shape == "gaussian":
        k = np.exp(-0.5 * q)
    elif shape == "generalized":
        k = np.exp(-0.5 * np.power(q, beta))
    elif shape == "plateau":
        k = 1 / (1 + np.power(q, beta))
    else:
        raise ValueError(f"kernel shape must be gaussian, generalized or plateau, got {shape!r}")
    return (k / k.sum()).astype(np.float32)


def sinc_kernel(size: int, omega_c: float, pad_to: int = 0) -> np.ndarray:
    """(size, size) float32 circular low-pass (2-D sinc, cutoff omega_c in (0, pi]) summing to 1,
    zero-padded to (pad_to, pad_to) if larger: ringing and overshoot artefacts."""
    import torch  # its Bessel J1 (scipy is not a dependency)

    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {size}")
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = omega_c * torch.special.bessel_j1(torch.from_numpy(omega_c * r)).numpy() / (2 * np.pi * r)
    k[(size - 1) // 2, (size - 1) // 2] = omega_c ** 2 / (4 * np.pi)
    k = k / k.sum()
    if pad_to > size:
        p = (pad_to - size) // 2
        k = np.pad(k, ((p, p), (p, p)))
    return k.astype(np.float32)


def filter2d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 convolved with a (k, k) kernel, reflect padding (as Real-ESRGAN's filter2D)."""
    y = cv2.filter2D(x, -1, kernel[::-1, ::-1].copy(), borderType=cv2.BORDER_REFLECT_101)
    return y.reshape(x.shape)


RESIZE_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def resize(x: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """(H, W, C) float32 -> (size[0], size[1], C) by OpenCV's area / bilinear / bicubic."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    h, w = max(1, int(size[0])), max(1, int(size[1]))
    return cv2.resize(x, (w, h), interpolation=RESIZE_MODES[mode]).reshape(h, w, x.shape[2])


def add_gaussian_noise(x: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """(H, W, C) float in [0, 1] + N(0, sigma^2) noise (sigma on the [0, 1] scale), the same in
    every channel if `gray`; clamped to [0, 1]."""
    shape = x.shape[:2] + (1,) if gray else x.shape
    noise = rng.normal(0.0, sigma, shape).astype(np.float32)
    return np.clip(x + noise, 0, 1)


def add_poisson_noise(x: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """(H, W, C) float in [0, 1] + `scale` times Poisson (shot) noise, as Real-ESRGAN: the image is
    counted in 2^ceil(log2(#distinct values)) levels; grey: the noise of the luma, in every channel."""
    src = (x @ LUMA)[..., None] if gray and x.shape[2] == 3 else x
    levels = 2 ** np.ceil(np.log2(max(2, len(np.unique(np.round(src * 255))))))
    noise = rng.poisson(np.clip(src, 0, 1) * levels) / levels - src
    return np.clip(x + scale * noise.astype(np.float32), 0, 1)


# ---------------------------------------------------------------- second order (Real-ESRGAN)

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


@dataclass(frozen=True)
class RealWorld:
    """Ranges of the second-order degradation; defaults are Real-ESRGAN x4plus's. Noise sigmas on
    the 0-255 scale; probabilities of resize are (up, down, keep)."""

    scale: int = 4
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # KERNEL_TYPES
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian shape
    betap: tuple[float, float] = (1.0, 2.0)  # plateau shape
    sinc_prob: float = 0.1
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_quality: tuple[float, float] = (30.0, 95.0)
    # second round
    second_blur_prob: float = 0.8
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    sinc_prob2: float = 0.1
    resize_probs2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_sigma2: tuple[float, float] = (1.0, 25.0)
    poisson_scale2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_quality2: tuple[float, float] = (30.0, 95.0)
    final_sinc_prob: float = 0.8

    def __post_init__(self):
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        for name in ("kernel_probs", "resize_probs", "resize_probs2"):
            if abs(sum(getattr(self, name)) - 1) > 1e-6:
                raise ValueError(f"{name} must sum to 1, got {getattr(self, name)}")
        if len(self.kernel_probs) != len(KERNEL_TYPES):
            raise ValueError(f"kernel_probs needs one probability per kernel type {KERNEL_TYPES}")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd, got {self.kernel_sizes}")

    def as_dict(self) -> dict:
        return asdict(self)


REALESRGAN = RealWorld()


def random_kernel(rng: np.random.Generator, sizes, probs, sigma, betag, betap, sinc_prob,
                  pad_to: int = 21) -> np.ndarray:
    """One blur kernel of Real-ESRGAN's family, zero-padded to (pad_to, pad_to): with probability
    sinc_prob a sinc, else a random type of KERNEL_TYPES with sigmas in `sigma`, a random angle and
    shape parameter."""
    size = int(rng.choice(sizes))
    if rng.uniform() < sinc_prob:
        omega = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        return sinc_kernel(size, omega, pad_to)
    kind = KERNEL_TYPES[int(rng.choice(len(KERNEL_TYPES), p=probs))]
    sx = rng.uniform(*sigma)
    sy, theta = (rng.uniform(*sigma), rng.uniform(-np.pi, np.pi)) if kind.endswith("aniso") else (sx, 0.0)
    if kind.startswith("generalized"):
        shape, beta = "generalized", rng.uniform(*betag)
    elif kind.startswith("plateau"):
        shape, beta = "plateau", rng.uniform(*betap)
    else:
        shape, beta = "gaussian", 1.0
    k = gaussian_kernel(size, sx, sy, theta, beta, shape)
    p = max(0, (pad_to - size) // 2)
    return np.pad(k, ((p, p), (p, p)))


def _random_resize(x, rng, probs, rng_range, target_hw=None):
    kind = int(rng.choice(3, p=probs))
    factor = rng.uniform(1, rng_range[1]) if kind == 0 else rng.uniform(rng_range[0], 1) if kind == 1 else 1.0
    mode = str(rng.choice(list(RESIZE_MODES)))
    h, w = target_hw if target_hw is not None else x.shape[:2]
    return resize(x, (int(h * factor), int(w * factor)), mode)


def _random_noise(x, rng, gaussian_prob, sigma, poisson_scale, gray_prob):
    gray = rng.uniform() < gray_prob
    if rng.uniform() < gaussian_prob:
        return add_gaussian_noise(x, rng.uniform(*sigma) / 255, gray, rng)
    return add_poisson_noise(x, rng.uniform(*poisson_scale), gray, rng)


def realworld(hr: np.ndarray, rng: np.random.Generator, ranges: RealWorld = REALESRGAN) -> np.ndarray:
    """(H, W, C) uint8 HR -> (H // scale, W // scale, C) uint8 LR by Real-ESRGAN's second-order
    degradation (its feed_data, on one image, in the same order)."""
    r = ranges
    if hr.ndim == 2:
        hr = hr[:, :, None]
    h, w = hr.shape[:2]
    lh, lw = h // r.scale, w // r.scale
    if lh < 1 or lw < 1:
        raise ValueError(f"image {w}x{h} is smaller than the scale {r.scale}")
    k1 = random_kernel(rng, r.kernel_sizes, r.kernel_probs, r.blur_sigma, r.betag, r.betap, r.sinc_prob)
    k2 = random_kernel(rng, r.kernel_sizes, r.kernel_probs, r.blur_sigma2, r.betag, r.betap, r.sinc_prob2)
    x = hr.astype(np.float32) / 255
    # first round
    x = filter2d(x, k1)
    x = _random_resize(x, rng, r.resize_probs, r.resize_range)
    x = _random_noise(x, rng, r.gaussian_noise_prob, r.noise_sigma, r.poisson_scale, r.gray_noise_prob)
    x = jpeg(x, rng.uniform(*r.jpeg_quality))
    # second round
    if rng.uniform() < r.second_blur_prob:
        x = filter2d(x, k2)
    x = _random_resize(x, rng, r.resize_probs2, r.resize_range2, target_hw=(h / r.scale, w / r.scale))
    x = _random_noise(x, rng, r.gaussian_noise_prob2, r.noise_sigma2, r.poisson_scale2, r.gray_noise_prob2)
    # final: resize to the LR size + sinc, and JPEG, in random order
    size = int(rng.choice(r.kernel_sizes))
    sinc = sinc_kernel(size, rng.uniform(np.pi / 3, np.pi), 21) if rng.uniform() < r.final_sinc_prob else None
    quality = rng.uniform(*r.jpeg_quality2)
    mode = str(rng.choice(list(RESIZE_MODES)))
    if rng.uniform() < 0.5:
        x = resize(x, (lh, lw), mode)
        x = filter2d(x, sinc) if sinc is not None else x
        x = jpeg(x, quality)
    else:
        x = jpeg(x, quality)
        x = resize(x, (lh, lw), mode)
        x = filter2d(x, sinc) if sinc is not None else x
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- estimated from degraded photos (Ji et al. 2020)

NOISE_PATCH = 16  # JPEG's 4:2:0 block (MCU): patches cut and placed on its grid keep the block structure


@functools.cache
def _plane_projection() -> np.ndarray:
    """(P*P, P*P) projection onto the planes a + b x + c y over a NOISE_PATCH patch."""
    yy, xx = np.mgrid[0:NOISE_PATCH, 0:NOISE_PATCH].astype(np.float64)
    basis = np.stack([np.ones(xx.size), xx.ravel(), yy.ravel()], 1)
    return (basis @ np.linalg.pinv(basis)).astype(np.float32)


def noise_patches(rgb: np.ndarray, percentile: float = 10, slack: float = 1.25, limit: int = 512,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """(H, W, 3) uint8 degraded photo -> (n, P, P, 3) float32 noise patches (0-255 scale, P =
    NOISE_PATCH): the photo's flattest patches on the P grid (each minus its best-fitting plane per
    channel, so smooth gradients such as skies count as flat), those whose residual std is within
    `slack` of the `percentile`-th of the photo's patches, none near black or white (clipped
    noise). A photo without flat regions gives texture here: Ji et al.'s caveat. At most `limit`."""
    p = NOISE_PATCH
    h, w = rgb.shape[0] // p * p, rgb.shape[1] // p * p
    if h == 0 or w == 0:
        return np.zeros((0, p, p, 3), np.float32)
    x = rgb[:h, :w].astype(np.float32).reshape(h // p, p, w // p, p, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 3, p * p)
    residual = x - x @ _plane_projection().T
    std = residual.std(axis=2).max(axis=1)
    mean = x.mean(axis=2)
    usable = (mean.min(axis=1) > 16) & (mean.max(axis=1) < 240)
    if usable.sum() < 8:
        return np.zeros((0, p, p, 3), np.float32)
    keep = np.flatnonzero(usable & (std <= np.percentile(std[usable], percentile) * slack))
    if len(keep) > limit:
        keep = (rng or np.random.default_rng(0)).choice(keep, limit, replace=False)
    return np.ascontiguousarray(residual[keep].reshape(-1, 3, p, p).transpose(0, 2, 3, 1))


def noise_field(patches: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) float32: random patches of one photo's (n, P, P, 3) noise, each flipped or
    transposed at random, tiled on the P grid (block edges stay on JPEG's 8-px grid)."""
    p = NOISE_PATCH
    gh, gw = -(-h // p), -(-w // p)
    tiles = patches[rng.integers(len(patches), size=gh * gw)]
    if rng.uniform() < 0.5:
        tiles = tiles.transpose(0, 2, 1, 3)
    tiles = tiles[:, ::int(rng.choice([-1, 1])), ::int(rng.choice([-1, 1]))]
    field = tiles.reshape(gh, gw, p, p, 3).transpose(0, 2, 1, 3, 4).reshape(gh * p, gw * p, 3)
    return np.ascontiguousarray(field[:h, :w])


def mean_log_spectrum(images: list[np.ndarray], crop: int = 128, bins: int = 24) -> np.ndarray:
    """(bins,) mean log power of the grey centre crops' radial spectrum (Hann window), relative to
    its lowest-frequency bins (so a different mean contrast of two photo sets does not count),
    radial frequency bins over (0, 0.5] cycles/px."""
    yy, xx = np.mgrid[0:crop, 0:crop]
    f = np.hypot(*(np.fft.fftfreq(crop)[g] for g in (yy, xx)))
    which = np.minimum((f / 0.5 * bins).astype(int), bins)  # bins: beyond 0.5 (the corners)
    window = np.outer(np.hanning(crop), np.hanning(crop))
    power = np.zeros(bins + 1)
    for im in images:
        g = _centre(im, crop).astype(np.float64) @ LUMA.astype(np.float64)
        spec = np.abs(np.fft.fft2((g - g.mean()) * window)) ** 2
        power += np.bincount(which.ravel(), spec.ravel(), bins + 1) / np.bincount(which.ravel(), minlength=bins + 1)
    log = np.log(power[:bins] / len(images) + 1e-12)
    return log - log[1:3].mean()


def blockiness(rgb: np.ndarray) -> float:
    """Mean absolute luma step across the 8-px grid's edges over the mean step everywhere, rows and
    columns averaged: about 1 for an image never JPEG-compressed, larger the coarser its JPEG."""
    g = rgb.astype(np.float32) @ LUMA
    g = g[:g.shape[0] // 8 * 8, :g.shape[1] // 8 * 8]
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    return float((dx[:, 7::8].mean() / (dx.mean() + 1e-6) + dy[7::8].mean() / (dy.mean() + 1e-6)) / 2)


BLUR_GRID = tuple(np.round(np.arange(0, 5.01, 0.25), 2))  # 0-3 was too short for `realworld` photos (fit at 3)
JPEG_GRID = (0, 90, 80, 70, 60, 50, 40, 30, 20, 10)  # lowest quality of U(q, 95); 0: no JPEG


@dataclass(frozen=True)
class InjectedDegradation:
    """Gaussian blur (sigma ~ U(0, blur_max)), then a noise field of one degraded photo's patches
    (`noise`: per photo (n, P, P, 3) float32, 0-255 scale), 8-bit rounding, then a JPEG of quality
    U(jpeg_min, 95) (jpeg_min 0: none). Made by `injected_from`; photos that gave no patches are
    left out of `noise`."""

    noise: tuple
    blur_max: float
    jpeg_min: int = 0

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 -> the same, degraded."""
        x = rgb.astype(np.float32)
        sigma = rng.uniform(0, self.blur_max)
        if sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT).reshape(rgb.shape)
        patches = self.noise[int(rng.integers(len(self.noise)))]
        x = x + noise_field(patches, x.shape[0], x.shape[1], rng)
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
        return jpeg_uint8(x, int(rng.integers(self.jpeg_min, 96))) if self.jpeg_min else x

    def summary(self) -> dict:
        return {"blur_max": self.blur_max, "jpeg_min": self.jpeg_min, "noise_photos": len(self.noise),
                "noise_patches": int(sum(len(n) for n in self.noise)),
                "noise_std": round(float(np.sqrt(np.mean([np.mean(n ** 2) for n in self.noise]))), 3)}


def injected_from(degraded, clean, seed: int = 0,
                  crop: int = 128) -> InjectedDegradation:
    """Estimate an InjectedDegradation from degraded photos and unrelated clean ones (iterables of
    (H, W, 3) uint8, no pairs): the noise patches of each degraded photo; the blur range of BLUR_GRID whose
    degraded clean crops' mean log spectrum (mean_log_spectrum) is nearest to the degraded photos'
    between 0.04 and 0.46 cycles/px (least squares; each range tried with the same draws); then the
    JPEG range of JPEG_GRID whose degraded clean crops' mean blockiness is nearest to theirs; the
    blur again with that JPEG, and the JPEG again."""
    rng = np.random.default_rng(seed)
    noise, crops, blocks = [], [], []
    for im in degraded:  # one pass, keeping only what the fit needs (a folder of large photos streams through)
        patches = noise_patches(im, rng=rng)
        noise += [patches] if len(patches) else []
        crops += [_centre(im, crop)] if min(im.shape[:2]) >= crop else []
        blocks.append(blockiness(im))
    if not noise:
        raise ValueError("no flat regions in the degraded photos: no noise to inject (need photos of "
                         f"at least {NOISE_PATCH} x {NOISE_PATCH} px with some smooth areas)")
    noise = tuple(noise)
    sized = [_centre(im, crop) for im in clean if min(im.shape[:2]) >= crop]
    if not sized or not crops:
        raise ValueError(f"need degraded and clean photos of at least {crop} x {crop} px to fit the blur")
    target = mean_log_spectrum(crops, crop)
    bins = len(target)
    band = slice(int(0.04 / 0.5 * bins) + 1, int(0.46 / 0.5 * bins))
    target_blocks = float(np.mean(blocks))

    def spectrum_error(model: InjectedDegradation) -> float:
        draws = np.random.default_rng(seed + 1)
        made = [model(im, draws) for im in sized]
        return float(np.mean((mean_log_spectrum(made, crop)[band] - target[band]) ** 2))

    def blockiness_error(model: InjectedDegradation) -> float:
        draws = np.random.default_rng(seed + 2)
        return abs(float(np.mean([blockiness(model(im, draws)) for im in sized])) - target_blocks)

    blur_max, jpeg_min = 0.0, 0
    for _ in range(2):  # coordinate descent: the JPEG takes off high frequencies too
        blur_max = min(BLUR_GRID, key=lambda b: spectrum_error(InjectedDegradation(noise, float(b), jpeg_min)))
        jpeg_min = min(JPEG_GRID, key=lambda q: blockiness_error(InjectedDegradation(noise, float(blur_max), q)))
    return InjectedDegradation(noise, float(blur_max), int(jpeg_min))


def _centre(im: np.ndarray, crop: int) -> np.ndarray:
    """The (crop, crop) centre of an (H, W, ...) array."""
    y0, x0 = (im.shape[0] - crop) // 2, (im.shape[1] - crop) // 2
    return im[y0:y0 + crop, x0:x0 + crop]
