"""Data of the augment task: ImageFolders (one subfolder per class) and unlabeled folders loaded
into memory as tensors, through genapps.io.

Images are resized to (S, S), converted to C = 1 or 3 channels, and kept as float32 in [0, 1].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genapps import io

log = logging.getLogger(__name__)


@dataclass
class LabeledImages:
    """x: (N, C, S, S) float32 in [0, 1]; y: (N,) int64 class indices; files[i] is x[i]'s source."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    files: list[str]


def to_tensor(image: io.LoadedImage, size: int, channels: int) -> torch.Tensor:
    """A loaded image -> (channels, size, size) in [0, 1]: grey<->colour conversion, area/bilinear resize."""
    x = image.color
    if x.shape[0] != channels:
        x = x.expand(3, -1, -1) if channels == 3 else (x * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
    if tuple(x.shape[1:]) != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return x.clamp(0, 1).contiguous()


def class_folders(root: str | Path) -> list[Path]:
    """The class subfolders of an ImageFolder (those holding images), sorted; ValueError if none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder not found: {root}")
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and io.list_images(d)]
    if not folders:
        loose = io.list_images(root, recursive=False)
        hint = f" (it holds {len(loose)} images directly; move them into one subfolder per class)" if loose else ""
        raise ValueError(f"{root} is not an ImageFolder: no class subfolders with images{hint}")
    return folders


def infer_channels(files: list[Path]) -> int:
    """1 if every readable image (of up to 64 sampled) is grayscale, else 3 (unreadable ones are
    left to the loader, which skips them with a warning)."""
    step = max(1, len(files) // 64)
    for p in files[::step]:
        try:
            if not io.read_image(p).grayscale:
                return 3
        except io.ImageError:
            continue
    return 1


def load_imagefolder(root: str | Path, size: int, channels: int | str = "auto",
                     classes: list[str] | None = None) -> LabeledImages:
    """Load an ImageFolder; with `classes`, its class names must be among them (a test set's check).

    Unreadable files are skipped with a warning; a class left without images is a ValueError.
    """
    folders = class_folders(root)
    names = [f.name for f in folders]
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise ValueError(f"{root}: classes {', '.join(unknown)} are not among the training classes "
                             f"({', '.join(classes)})")
    classes = list(classes) if classes is not None else names
    files_by_class = {f.name: io.list_images(f) for f in folders}
    if channels == "auto":
        channels = infer_channels([p for fs in files_by_class.values() for p in fs])
    xs, ys, files = [], [], []
    for name, paths in files_by_class.items():
        n = 0
        for p in paths:
            try:
                xs.append(to_tensor(io.read_image(p), size, int(channels)))
            except io.ImageError as e:
                log.warning("skipped: %s", e)
                continue
            ys.append(classes.index(name))
            files.append(str(p))
            n += 1
        if n == 0:
            raise ValueError(f"{root}/{name}: no readable images")
    return LabeledImages(torch.stack(xs), torch.tensor(ys), classes, files)


def load_unlabeled(root: str | Path, size: int, channels: int) -> tuple[torch.Tensor, list[Path]]:
    """Every readable image under `root` (recursively) as (N, C, S, S) in [0, 1], and its N files."""
    xs, files = [], []
    for p in io.list_images(root):
        try:
            xs.append(to_tensor(io.read_image(p), size, channels))
            files.append(p)
        except io.ImageError as e:
            log.warning("skipped: %s", e)
    if not xs:
        raise ValueError(f"--unlabeled {root}: no readable images")
    return torch.stack(xs), files
