"""Inpainting masks: IOPaint/LaMa file conventions and seeded generators.

A mask here is a bool (H, W) tensor or array, True = hole (the pixels to fill).

Files: a grayscale mask marks the hole with values >= `threshold` (127 of 255, IOPaint/LaMa);
`invert` swaps the convention (white = keep); an RGBA mask uses its alpha channel. A mask pairs
with its image by relative path and stem: `a/photo.jpg` <- `a/photo.png` or `a/photo_mask.png`
(any image extension); or one mask file serves every image.

Generators (LaMa-style): irregular brush strokes `thin`, `medium`, `thick`, rectangles `box`,
a `mixed` draw of all of these, and hole-area buckets `area10` .. `area60` (0-10%, ..., 50-60% of
the image). The same (seed, name) always gives the same mask.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from genapps import io
from genapps.tasks.inpaint.config import BUCKETS, KINDS, STROKES  # the tables live with the options
from genapps.tasks.inpaint.config import MasksConfig as Config

log = logging.getLogger(__name__)



# ---------------------------------------------------------------- files


def to_mask(image: io.LoadedImage, threshold: int = 127, invert: bool = False) -> torch.Tensor:
    """A loaded mask file -> bool (H, W), True = hole. RGBA/LA uses alpha, colour its mean."""
    plane = image.alpha[0] if image.alpha is not None else image.color.mean(0)
    hole = (plane * 255) >= threshold - 1e-3  # 16-bit masks: the threshold is on the 8-bit scale
    return ~hole if invert else hole


class MaskSource:
    """Finds the mask of each image: a folder mirrored by relative path and stem, or one file for all.

    Pairing is io.ImageIndex's rule (the one the report shows masks by): the mask of the image's
    full relative name wins (`a.png` for `a.png`), else the only mask of its stem (`a.png` for
    `a.jpg`), else `<stem>_mask.*` the same way; two masks of the stem and neither of the full
    name are ambiguous (a per-file error, never a silent pick). One mask file is read at once, so
    an unreadable one is a setup error, not an error per image.
    """

    def __init__(self, masks: str | Path, threshold: int = 127, invert: bool = False):
        self.root = Path(masks)
        if not self.root.exists():
            raise FileNotFoundError(f"masks not found: {masks}")
        self.threshold, self.invert = threshold, invert
        self._index = io.ImageIndex(self.root) if self.root.is_dir() else None
        if self._index is None:
            try:
                io.read_image(self.root)
            except io.ImageError as e:
                raise io.ImageError(f"the mask file is unreadable: {e}") from None

    def path_for(self, rel: str | Path) -> Path | None:
        """The mask file of the image at relative path `rel` (None when there is none); a
        ValueError when two masks could be its (ambiguous)."""
        if self._index is None:
            return self.root
        rel = Path(rel)
        for candidate in (rel, rel.with_name(f"{rel.stem}_mask{rel.suffix}")):
            found, why = self._index.find(candidate.as_posix())
            if found is not None:
                return found
            if why.startswith("ambiguous"):
                raise ValueError(f"the mask of {rel.as_posix()} is {why} (keep one of them)")
        return None

    def mask_for(self, rel: str | Path, size: tuple[int, int]) -> torch.Tensor:
        """bool (H, W) for the image at `rel` of `size` (H, W); FileNotFoundError when it has none."""
        path = self.path_for(rel)
        if path is None:
            raise FileNotFoundError(f"no mask for {rel} in {self.root} (looked for {Path(rel).stem}.* and "
                                    f"{Path(rel).stem}_mask.*)")
        mask = to_mask(io.read_image(path), self.threshold, self.invert)  # read each time: an edit is seen
        if tuple(mask.shape) != tuple(size):
            log.warning("%s: mask %s is %dx%d, image is %dx%d; resized (nearest)", rel, path.name,
                        mask.shape[1], mask.shape[0], size[1], size[0])
            mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
        return mask


def mask_image(mask: torch.Tensor) -> io.LoadedImage:
    """bool (H, W) -> a grayscale 8-bit image, white = hole (the IOPaint convention)."""
    return io.LoadedImage(mask.float()[None], None, 8)


# ---------------------------------------------------------------- generators


def seed_for(seed: int, name: str) -> int:
    """A deterministic 63-bit seed from (seed, a relative path or any name), stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _strokes(mask: np.ndarray, rng: np.random.Generator, kind: str) -> None:
    (s0, s1), (g0, g1), (w0, w1), (l0, l1) = STROKES[kind]
    h, w = mask.shape
    side = max(h, w)
    for _ in range(int(rng.integers(s0, s1 + 1))):
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        width = int(rng.integers(w0, w1 + 1))
        angle = float(rng.uniform(0, 2 * np.pi))
        for _ in range(int(rng.integers(g0, g1 + 1))):
            angle += float(rng.uniform(-np.pi / 2, np.pi / 2))
            length = float(rng.uniform(l0, l1)) * side
            nx = float(np.clip(x + length * np.cos(angle), 0, w - 1))
            ny = float(np.clip(y + length * np.sin(angle), 0, h - 1))
            cv2.line(mask, (round(x), round(y)), (round(nx), round(ny)), 1, width)
            cv2.circle(mask, (round(nx), round(ny)), width // 2, 1, -1)
            x, y = nx, ny


def _box(mask: np.ndarray, rng: np.random.Generator) -> None:
    h, w = mask.shape
    bh, bw = int(rng.uniform(0.1, 0.4) * h), int(rng.uniform(0.1, 0.4) * w)
    y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    mask[y:y + bh, x:x + bw] = 1


def _mixed(mask: np.ndarray, rng: np.random.Generator) -> None:
    choice = int(rng.integers(0, 5))
    if choice == 4:
        _box(mask, rng)
    else:
        _strokes(mask, rng, ("thin", "medium", "thick", "thick")[choice])


def generate(kind: str, size: tuple[int, int], seed: int) -> np.ndarray:
    """A seeded mask of `kind` (see KINDS): bool (H, W) array, True = hole.

    Area buckets add mixed strokes and boxes until the hole covers at least the bucket's lower
    bound, and redraw when they overshoot its upper bound.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid: {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    h, w = size
    if kind in BUCKETS:
        lo, hi = BUCKETS[kind]
        for _ in range(200):
            mask = np.zeros((h, w), np.uint8)
            while mask.mean() < max(lo, 0.01):
                _mixed(mask, rng)
            if mask.mean() <= hi:
                return mask.astype(bool)
        raise RuntimeError(f"could not draw a {kind} mask for a {h}x{w} image")
    mask = np.zeros((h, w), np.uint8)
    if kind in STROKES:
        _strokes(mask, rng, kind)
    elif kind == "box":
        _box(mask, rng)
    else:
        _mixed(mask, rng)
        if rng.random() < 0.5:
            _mixed(mask, rng)
    return mask.astype(bool)


def grow(mask: torch.Tensor, px: int) -> torch.Tensor:
    """bool (H, W) hole dilated by `px` pixels (a disc): hand-drawn masks miss the edge pixels of what
    they cover, and every method then smears those into the fill. px = 0 returns the mask."""
    if px <= 0 or not mask.any():
        return mask
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return torch.from_numpy(cv2.dilate(mask.numpy().astype(np.uint8), disc) > 0)


# ---------------------------------------------------------------- the `masks` task


TASK = "masks"


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device=None, name: str = TASK):
    """Write OUTPUT/<relative path>.png (white = hole) for every image, seeded by (seed, relative path)."""
    from genapps.batch import map_images

    root = Path(input_dir) if Path(input_dir).is_dir() else Path(input_dir).parent

    def process(image: io.LoadedImage, src: Path) -> io.LoadedImage:
        rel = src.relative_to(root).as_posix()
        return mask_image(torch.from_numpy(generate(cfg.kind, image.size, seed_for(cfg.seed, rel))))

    result = map_images(input_dir, output_dir, process, name=name, task=TASK, config=asdict(cfg), ext="png",
                        resume=cfg.resume, fail_fast=cfg.fail_fast, pass_source=True)
    result.summary = {"kind": cfg.kind, "seed": cfg.seed}
    return result
