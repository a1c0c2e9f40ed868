"""`genapps pairs`: paired translation datasets from any folder of photos, and reading them back.

Kinds (A = input side, B = target side = the photo):
  edges    A = Canny edges of the photo (black lines on white, as edges2shoes), 1 channel
  gray     A = the photo's BT.601 luma, 1 channel
  degrade  A = the photo blurred, noised and JPEG-compressed, seeded per file:
           Gaussian blur sigma ~ U(0, 1.5) px, Gaussian noise sigma ~ U(0, 20) on the 0-255
           scale, JPEG quality ~ U(30, 90) (OpenCV's libjpeg), in that order.
  realworld  A = Real-ESRGAN's second-order degradation of the photo (genapps.degradations.realworld:
           random blur kernels, resize, Gaussian/Poisson noise, JPEG, twice, sinc ringing) at
           scale 1, i.e. brought back to the photo's size, seeded per file.
Layouts: `folders` = OUTPUT/A/<rel>.png and OUTPUT/B/<rel>.png; `aligned` = OUTPUT/<rel>.png with
A|B side by side (the reference's datasets); `input` = only the A images, mirrored names (the
photos themselves are then the targets, e.g. a --reference folder). Pairs are PNG (lossless),
8-bit; alpha is dropped.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from genapps import io, paths
from genapps.batch import map_images
from genapps.degradations import DEGRADE_RANGES, REALESRGAN, degrade, file_rng, random_degradation, realworld
from genapps.records import StageResult
from genapps.tasks.translate.config import PairsConfig as Config

TASK = "pairs"
REALWORLD_SAME_SIZE = replace(REALESRGAN, scale=1)  # A and B of a pair have the same size


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) float [0, 1] -> (H, W, C) uint8."""
    return (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def from_uint8(a: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) uint8 -> (C, H, W) float [0, 1]."""
    a = a[:, :, None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255


def gray(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (1, H, W) BT.601 luma (as PIL's 'L')."""
    return (rgb * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)


def edges(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (1, H, W): Canny edges (thresholds from the median) as black lines on white."""
    g = to_uint8(gray(rgb))[:, :, 0]
    g = cv2.GaussianBlur(g, (0, 0), 1.0)
    med = float(np.median(g))
    e = cv2.Canny(g, int(max(0, 0.66 * med)), int(min(255, 1.33 * med)))
    return from_uint8(255 - e)


def make_a(photo: torch.Tensor, kind: str, seed: int, key: str) -> torch.Tensor:
    """The A side of one photo ((3, H, W) in [0, 1])."""
    if kind == "gray":
        return gray(photo)
    if kind == "edges":
        return edges(photo)
    rng = file_rng(seed, key)
    if kind == "realworld":
        return from_uint8(realworld(to_uint8(photo), rng, REALWORLD_SAME_SIZE))
    return from_uint8(degrade(to_uint8(photo), **random_degradation(rng), rng=rng))


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device: torch.device,
        name: str = TASK) -> StageResult:
    """Write the pairs of every photo under `input_dir` into `output_dir` (layout per cfg).

    `output_dir` must not be the input folder nor contain it (genapps.paths); inside it, it is
    left out of the input listing (A/ and B/ alike), and no pair is written outside it.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    fence = paths.check_output(output_dir, input=input_dir)
    root = input_dir.parent if input_dir.is_file() else input_dir
    a_dir = output_dir / "A" if cfg.layout == "folders" else output_dir
    files = [input_dir] if input_dir.is_file() else [p for p in io.list_images(input_dir) if not fence.holds(p)]
    b_paths = io.output_paths(files, root, output_dir / "B", ".png")  # the names map_images gives the A side
    for b_path in b_paths.values() if cfg.layout == "folders" else ():
        fence.check(b_path)  # a symbolic link in OUTPUT: refused before any work

    def process(image: io.LoadedImage, src: Path) -> io.LoadedImage:
        key = src.relative_to(root).with_suffix("").as_posix()
        photo = image.color.expand(3, -1, -1)
        photo = (photo * 255).round() / 255  # 16-bit sources become 8-bit pairs
        a = make_a(photo, cfg.kind, cfg.seed, key)
        if cfg.layout == "aligned":
            return io.LoadedImage(torch.cat([a.expand(3, -1, -1), photo], 2))
        if cfg.layout == "folders":
            io.write_image(b_paths[src], io.LoadedImage(photo), fence=fence)
        return io.LoadedImage(a)

    result = map_images(input_dir, a_dir, process, name=name, task=TASK, config=asdict(cfg), ext=".png",
                        resume=cfg.resume, fail_fast=cfg.fail_fast, pass_source=True, fence=fence)
    result.output_dir = str(output_dir)
    result.summary = {"kind": cfg.kind, "layout": cfg.layout}
    if cfg.kind == "degrade":
        result.summary["ranges"] = DEGRADE_RANGES
    elif cfg.kind == "realworld":
        result.summary["ranges"] = REALWORLD_SAME_SIZE.as_dict()
    return result


# ---------------------------------------------------------------- reading paired datasets


def read_pairs(folder: str | Path, layout: str, direction: str = "AtoB") -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(key, input, target) uint8 (H, W, C) arrays of a paired dataset, sorted by key.

    `folders`: FOLDER/A and FOLDER/B paired by relative path without extension (unpaired files
    are an error); `aligned`: each image split into its left (A) and right (B) halves.
    `direction` BtoA swaps the sides.
    """
    if layout not in ("folders", "aligned"):
        raise ValueError(f"layout must be folders or aligned, got {layout!r}")
    folder = Path(folder)
    pairs = []
    if layout == "folders":
        if not (folder / "A").is_dir() or not (folder / "B").is_dir():
            raise FileNotFoundError(f"{folder}: a 'folders' dataset needs subfolders A/ and B/")
        matched, unpaired = io.pair_files(folder / "A", folder / "B")
        if unpaired:
            raise ValueError(f"{folder}: {len(unpaired)} image(s) without a partner in A/ or B/, e.g. {unpaired[0]}")
        for a_path, b_path in sorted(matched):
            key = a_path.relative_to(folder / "A").with_suffix("").as_posix()
            pairs.append((key, _read_uint8(a_path), _read_uint8(b_path)))
    else:
        for path in io.list_images(folder):
            im = _read_uint8(path)
            if im.shape[1] % 2:
                raise ValueError(f"{path}: an aligned A|B image needs an even width, got {im.shape[1]}")
            half = im.shape[1] // 2
            pairs.append((path.relative_to(folder).with_suffix("").as_posix(), im[:, :half], im[:, half:]))
    if not pairs:
        raise ValueError(f"no image pairs in {folder}")
    for key, a, b in pairs:
        if a.shape[:2] != b.shape[:2]:
            raise ValueError(f"{folder}: {key}: A is {a.shape[1]}x{a.shape[0]} but B is {b.shape[1]}x{b.shape[0]}")
    return [(k, b, a) for k, a, b in pairs] if direction == "BtoA" else pairs


def _read_uint8(path: Path) -> np.ndarray:
    """An image file as (H, W, C) uint8, C = 1 or 3 (alpha dropped, 16-bit rounded)."""
    return to_uint8(io.read_image(path).color)


def read_folder(folder: str | Path) -> list[np.ndarray]:
    """Every image of a folder as (H, W, C) uint8 (CycleGAN's unpaired domains)."""
    images = [_read_uint8(p) for p in io.list_images(folder)]
    if not images:
        raise ValueError(f"no images in {folder}")
    return images
