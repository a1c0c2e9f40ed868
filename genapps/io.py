"""All disk I/O of genapps: images, folders, atomic writes, JSON(-lines), training states, torch files.

Images become float32 tensors in [0, 1], shape (C, H, W) with C = 1 (grayscale) or 3 (colour);
alpha travels beside the colour as (1, H, W) so that models never see it, and the bit depth is
kept so that a 16-bit input is written back as 16-bit. Weights files (reading, validating,
saving, resolving names, building models) are genapps.weights, a layer above this one.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from genapps.paths import WRITE_FORMATS, Fence, is_url, make_dirs

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")  # GIF: read only (first frame)
MAX_PIXELS = 178_956_970  # PIL's own decompression-bomb limit (2x its warning level)

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey half image
_UMASK = os.umask(0)
os.umask(_UMASK)


class ImageError(Exception):
    """A file that cannot be read or written as an image; the message is one readable line."""


@dataclass
class LoadedImage:
    """An image as models see it plus what is needed to write it back faithfully.

    color: (C, H, W) float32 in [0, 1], C = 1 or 3. alpha: (1, H, W) in [0, 1] or None.
    bit_depth: 8 or 16 (per channel, of the source file).
    """

    color: torch.Tensor
    alpha: torch.Tensor | None = None
    bit_depth: int = 8

    @property
    def grayscale(self) -> bool:
        return self.color.shape[0] == 1

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.color.shape[1]), int(self.color.shape[2])


# ---------------------------------------------------------------- reading


def _from_uint(arr: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) uint8/uint16 array -> (C, H, W) float32 tensor in [0, 1]."""
    peak = 65535.0 if arr.dtype == np.uint16 else 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32) / peak)


def _split_alpha(t: torch.Tensor, has_alpha: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if has_alpha:
        return t[:-1], t[-1:]
    return t, None


def _png_tiff_is_16bit_colour(path: Path, im: Image.Image) -> bool:
    """PIL decodes 16-bit colour PNG/TIFF to 8 bits; detect them to decode with OpenCV instead."""
    if im.mode not in ("RGB", "RGBA") or im.format not in ("PNG", "TIFF"):
        return False
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        return len(head) == 26 and head[24] == 16
    bits = im.tag_v2.get(258, (8,)) if hasattr(im, "tag_v2") else (8,)
    return max(bits if isinstance(bits, tuple) else (bits,)) == 16


def _read_16bit_colour(path: Path) -> LoadedImage:
    import cv2  # installed with albumentations; decodes 16-bit colour

    arr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        raise ImageError(f"{path}: cannot decode 16-bit colour image")
    arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    color, alpha = _split_alpha(_from_uint(arr), arr.shape[2] == 4)
    return LoadedImage(color, alpha, 16)


def _orient(image: LoadedImage, orientation: int) -> LoadedImage:
    """Apply an EXIF orientation (1-8) to colour and alpha, as ImageOps.exif_transpose does."""
    def fix(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or orientation in (1, 0):
            return t
        t = t.flip(-1) if orientation in (2, 5, 7) else t
        t = {3: t.rot90(2, (1, 2)), 4: t.flip(-2), 5: t.rot90(1, (1, 2)), 6: t.rot90(-1, (1, 2)),
             7: t.rot90(-1, (1, 2)), 8: t.rot90(1, (1, 2))}.get(orientation, t)
        return t.contiguous()
    return LoadedImage(fix(image.color), fix(image.alpha), image.bit_depth)


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read any image PIL reads (8/16-bit; 1, L, LA, P, RGB, RGBA, CMYK, I;16, I, F), EXIF-rotated.

    Raises ImageError with a one-line reason for corrupt, truncated, empty, non-image or
    oversized files. Values are never clipped silently: a float (F) image in [0, 1] is read as it
    is, one in 0-255 or 0-65535 is scaled by that peak (with a warning), a 32-bit integer (I)
    image in 0-65535 is 16-bit data; any other range (NaN, negative, larger) is an ImageError
    (_float_plane, _int_plane). `path` may be an fsspec URL (see is_url): it is fetched to a
    temporary file first.
    """
    if is_url(path):
        with tempfile.TemporaryDirectory(prefix="genapps-get-") as tmp:
            local = Path(tmp) / (Path(url_fs(path)[1]).name or "image")
            try:
                download(path, local)
            except OSError as e:
                raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
            try:
                return read_image(local, max_pixels)
            except ImageError as e:
                raise ImageError(str(e).replace(str(local), str(path))) from None
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{path}: {w}x{h} exceeds the pixel limit of {max_pixels}")
            if _png_tiff_is_16bit_colour(path, im):
                return _orient(_read_16bit_colour(path), im.getexif().get(0x0112, 1))
            if getattr(im, "n_frames", 1) > 1:
                log.warning("%s: %d frames; only the first is used", path, im.n_frames)
            im.load()
            im = ImageOps.exif_transpose(im)
            return _pil_to_loaded(im, path)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (format not recognised)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable image ({e})") from None


FLOAT_SCALES = (1.0, 255.0, 65535.0)  # the value ranges a float image is read as: [0, 1], 0-255, 0-65535


def _float_plane(arr: np.ndarray, path: Path) -> np.ndarray:
    """A float (mode F) plane -> float32 in [0, 1]. [0, 1] is read as it is; a maximum in [2, 255]
    or (255, 65535] is 8- or 16-bit data stored as float, scaled by that peak (with a warning
    saying so); NaN, inf, negative values, a maximum in (1, 2) (overshoot or HDR: no scale fits)
    or above 65535 are an ImageError: never clipped."""
    if not np.isfinite(arr).all():
        raise ImageError(f"{path}: float image with NaN or infinite values; genapps reads finite values in "
                         f"[0, 1], 0-255 or 0-65535")
    lo, hi = float(arr.min()), float(arr.max())
    peak = next((p for p in FLOAT_SCALES if hi <= p), None)
    if lo < 0 or peak is None or 1 < hi < 2:  # (1, 2): [0, 1] data overshooting, or HDR; not 0-255 data
        raise ImageError(f"{path}: float image with values in [{lo:.4g}, {hi:.4g}], not within [0, 1], 0-255 or "
                         f"0-65535; genapps does not clip or guess a scale: convert it to one of those ranges first")
    if peak > 1:
        log.warning("%s: float image with values up to %.4g, read as 0-%d data (divided by %d)", path, hi, peak, peak)
    return (arr / peak).astype(np.float32)


def _int_plane(arr: np.ndarray, path: Path) -> np.ndarray:
    """A 32-bit integer (mode I) plane -> uint16: 0..65535 is 16-bit data; values outside it are an
    ImageError (genapps reads up to 16 bits per channel and never clips silently)."""
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:
        raise ImageError(f"{path}: 32-bit integer image with values in [{lo}, {hi}], outside 0-65535; genapps "
                         f"reads up to 16 bits per channel and does not clip: convert it to 16-bit first")
    return arr.astype(np.uint16)


def _pil_to_loaded(im: Image.Image, path: Path) -> LoadedImage:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im)
        if mode == "F":
            return LoadedImage(torch.from_numpy(_float_plane(arr, path))[None], None, 16)
        return LoadedImage(_from_uint(_int_plane(arr, path) if mode == "I" else arr.astype(np.uint16)), None, 16)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L"):
        im = im.convert("L")
    elif mode in ("LA", "La", "PA"):
        im = im.convert("LA")
    elif mode in ("RGBA", "RGBa"):
        im = im.convert("RGBA")
    elif mode != "RGB":
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    has_alpha = im.mode in ("LA", "RGBA")
    color, alpha = _split_alpha(_from_uint(np.asarray(im)), has_alpha)
    return LoadedImage(color, alpha, 8)


# ---------------------------------------------------------------- writing


TEMP_NAME = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")  # atomic_write's temporary names: .NAME.XXXXXXXX.tmp


@contextlib.contextmanager
def atomic_write(path: str | Path, before_replace: Callable[[Path], None] | None = None,
                 fence: Fence | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A killed or failing writer leaves no half-written file under the final name (only a hidden
    `.NAME.XXXXXXXX.tmp`, which `remove_stale_temps` deletes). `before_replace(tmp)` runs on the
    finished temporary file just before the rename (batch records it in the output manifest);
    if it raises, nothing is renamed. With `fence` (genapps.paths.Fence), a `path` whose folder
    resolves (through symbolic links) outside the output folder is refused (OutsideOutput, a
    ValueError) before anything is created, and checked again just before the rename. A final
    name that is a symbolic link is replaced by the file, never written through.
    """
    path = Path(path)
    if fence is not None:
        fence.check(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual mode
        if before_replace is not None:
            before_replace(Path(tmp))
        if fence is not None:  # a link made while the file was written
            fence.check(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str, fence: Fence | None = None) -> None:
    with atomic_write(path, fence=fence) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=str) + "\n")


def _to_uint(t: torch.Tensor, bits: int) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, C) or (H, W) uint8/uint16 array, rounded."""
    peak = 65535 if bits == 16 else 255
    arr = (t.detach().float().clamp(0, 1) * peak).round().cpu().numpy()
    arr = arr.astype(np.uint16 if bits == 16 else np.uint8).transpose(1, 2, 0)
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def write_image(path: str | Path, image: LoadedImage, quality: int = 95,
                before_replace: Callable[[Path], None] | None = None, fence: Fence | None = None) -> None:
    """Write atomically; the format follows the extension (PNG, JPEG, WebP, TIFF, BMP).

    16-bit is kept for PNG and TIFF; JPEG/WebP/BMP are 8-bit. JPEG has no alpha: it is dropped
    with a warning. A disk error (full, read-only, a folder in the way) raises OSError.
    `before_replace`, `fence`: see atomic_write. `path` may be an fsspec URL: the file is encoded locally,
    then uploaded (see upload; `before_replace` runs on the local file before the upload).
    """
    if is_url(path):
        with tempfile.TemporaryDirectory(prefix="genapps-put-") as tmp:
            local = Path(tmp) / Path(url_fs(path)[1]).name
            write_image(local, image, quality, before_replace)
            upload(local, path)
        return
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output extension (use one of {sorted(WRITE_FORMATS)})")
    alpha = image.alpha
    if alpha is not None and fmt == "JPEG":
        log.warning("%s: JPEG has no alpha channel; alpha dropped", path)
        alpha = None
    bits = image.bit_depth if fmt in ("PNG", "TIFF") else 8
    planes = image.color if alpha is None else torch.cat([image.color, alpha.to(image.color)], 0)
    arr = _to_uint(planes, bits)
    with atomic_write(path, before_replace, fence) as tmp:
        if bits == 16 and arr.ndim == 3:  # 16-bit colour or grey+alpha: PIL can't, OpenCV can
            import cv2

            if arr.shape[2] == 2:
                arr = np.dstack([arr[:, :, 0]] * 3 + [arr[:, :, 1]])
            code = cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
            ok, buf = cv2.imencode(path.suffix.lower(), cv2.cvtColor(arr, code))
            if not ok:
                raise ImageError(f"{path}: OpenCV failed to encode a 16-bit image")
            buf.tofile(str(tmp))
            return
        im = Image.fromarray(arr)  # L, LA, RGB, RGBA from the shape; 16-bit grey becomes I;16
        options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        try:
            im.save(tmp, format=fmt, **options)
        except OSError as e:
            if e.errno is not None:  # the disk, not the encoder
                raise
            raise ImageError(f"{path}: cannot write {im.mode} as {fmt} ({e})") from None
        except ValueError as e:
            raise ImageError(f"{path}: cannot write {im.mode} as {fmt} ({e})") from None


# ---------------------------------------------------------------- folders


def list_images(root: str | Path, exts: tuple[str, ...] = IMAGE_EXTS, recursive: bool = True) -> list[Path]:
    """Image files under `root` (by extension, case-insensitive), sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder not found: {root}")
    walker = root.rglob("*") if recursive else root.glob("*")
    files = [p for p in walker if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def unsupported_files(root: str | Path, exts: tuple[str, ...] = IMAGE_EXTS, exclude: Path | None = None) -> str:
    """What `list_images` leaves out of `root`, counted by extension ("2 .txt, 1 .xcf"; "" if
    nothing); hidden files and folders and anything under `exclude` are not counted."""
    root, exclude = Path(root), exclude.resolve() if exclude is not None else None
    counts = collections.Counter(
        p.suffix.lower() or "(no extension)" for p in root.rglob("*")
        if p.suffix.lower() not in exts and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and (exclude is None or exclude not in p.resolve().parents))
    return ", ".join(f"{n} {ext}" for ext, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def output_path(src: Path, input_root: Path, output_root: Path, ext: str | None = None, suffix: str = "",
                keep_ext: bool = False) -> Path:
    """Mirror `src`'s place under `input_root` into `output_root`, with optional suffix/new extension.

    `keep_ext` puts the source's extension into the name (`a.jpg` -> `a_jpg.png`): map_images does
    it for files whose outputs would otherwise share one name (`a.png` and `a.jpg` with ext png).
    """
    rel = src.relative_to(input_root)
    new_ext = ext if ext is None or ext.startswith(".") else f".{ext}"
    stem = f"{rel.stem}_{rel.suffix.lstrip('.')}" if keep_ext else rel.stem
    if new_ext is None and rel.suffix.lower() not in WRITE_FORMATS:  # read-only formats (GIF) become PNG
        new_ext = ".png"
    return output_root / rel.parent / f"{stem}{suffix}{new_ext or rel.suffix}"


def output_paths(files: list[Path], input_root: Path, output_root: Path, ext: str | None = None,
                 suffix: str = "") -> dict[Path, Path]:
    """src -> output path for a batch. Files whose mirrored names collide (same folder and stem,
    same output extension) keep their extension in the name (`a_png.png`, `a_jpg.png`); a name
    that still collides is a one-line ValueError naming both files."""
    first = {src: output_path(src, input_root, output_root, ext, suffix) for src in files}
    count: dict[Path, int] = {}
    for dest in first.values():
        count[dest] = count.get(dest, 0) + 1
    dests: dict[Path, Path] = {}
    owner: dict[Path, Path] = {}
    for src, dest in first.items():
        if count[dest] > 1:
            dest = output_path(src, input_root, output_root, ext, suffix, keep_ext=True)
            log.warning("%s: another input has the same name; written as %s", src, dest.name)
        if dest in owner:
            raise ValueError(f"{owner[dest]} and {src} would both be written to {dest}; rename one of them")
        owner[dest], dests[src] = src, dest
    return dests


class ImageIndex(dict):
    """The images of a folder as a dict {relative path without extension: file} (`sub/a` ->
    `.../sub/a.png`), the key by which two folders' images pair up. A key that two files share
    (`a.png` and `a.jpg`) is left out of the dict (with a warning) rather than picking one; `find`
    still pairs them by full name. Also: `by_name` {`sub/a.png`: file}, `by_key` {`sub/a`: [files]}.
    """

    def __init__(self, root: str | Path):
        super().__init__()
        self.root = Path(root)
        self.by_name: dict[str, Path] = {}
        self.by_key: dict[str, list[Path]] = {}
        for p in list_images(root):
            rel = p.relative_to(root).as_posix()
            self.by_name[rel] = p
            self.by_key.setdefault(_key(rel), []).append(p)
        for key, paths in self.by_key.items():
            if len(paths) == 1:
                self[key] = paths[0]
            else:
                log.warning("%s: %s share one name; each pairs only with an image of its full name (%s with "
                            "%s), others of that name are ambiguous", self.root, ", ".join(p.name for p in paths),
                            paths[0].name, paths[0].name)

    def find(self, rel: str) -> tuple[Path | None, str]:
        """The image that pairs with relative name `rel` (`sub/a.png`), and why not if none.

        The same name wins; else the one image of the same stem (`a.jpg` for `a.png`); else, for
        a name map_images gave to a collision (`a_jpg.png`), the file it came from (`a.jpg`).
        Two images of the same stem and neither of the same name pair with nothing.
        """
        if rel in self.by_name:
            return self.by_name[rel], ""
        candidates = self.by_key.get(_key(rel), [])
        if len(candidates) == 1:
            return candidates[0], ""
        if candidates:
            return None, f"ambiguous: {', '.join(str(c) for c in candidates)} have the same name"
        stem, _, tag = _key(rel).rpartition("_")
        if stem and f".{tag.lower()}" in IMAGE_EXTS and f"{stem}.{tag}" in self.by_name:
            return self.by_name[f"{stem}.{tag}"], ""
        return None, f"no image named {_key(rel)}.* in {self.root}"


def _key(rel: str) -> str:
    """Relative name without extension, the key by which two folders' images pair up."""
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


def image_index(root: str | Path) -> ImageIndex:
    """The images under `root` by relative path without extension (see ImageIndex)."""
    return ImageIndex(root)


def pair_files(pred_dir: str | Path, ref_dir: str | Path) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Pair the images of two folders: (pairs, unpaired files of either folder with the reason).

    A prediction pairs with the reference of the same relative name, else of the same name
    without extension when that is unique on both sides (see ImageIndex.find); nothing is paired
    twice. A prediction named `x_out.png` does not match `x.png`: write predictions without a
    suffix to evaluate them.
    """
    preds, refs = image_index(pred_dir), image_index(ref_dir)
    pairs, unpaired, used = [], [], set()
    for rel, p in preds.by_name.items():
        ref, why = refs.find(rel)
        if ref is not None and ref.relative_to(refs.root).as_posix() != rel and len(preds.by_key[_key(rel)]) > 1:
            ref, why = None, (f"ambiguous: {', '.join(str(q) for q in preds.by_key[_key(rel)])} "
                              f"have the same name and no reference of exactly that name")
        if ref is not None and ref in used:
            ref, why = None, f"{ref} is already paired with another prediction"
        if ref is None:
            unpaired.append((p, why))
        else:
            used.add(ref)
            pairs.append((p, ref))
    unpaired += [(r, "no prediction pairs with this reference") for r in refs.by_name.values() if r not in used]
    return pairs, unpaired


def check_writable(folder: str | Path, create: bool = True) -> Path:
    """Prove `folder` writable (creating it and its parents), else raise ImageError (one line).

    With create=False the folders it had to create are removed again: a check before long work
    (loading a model) leaves no empty output folder behind when that work fails.
    """
    if is_url(folder):
        return folder  # a remote folder: the first upload proves it (object stores have no folders)
    folder = Path(folder)
    created: list[Path] = []
    try:
        make_dirs(folder, created)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".genapps-probe-"):
            pass
    except OSError as e:
        raise ImageError(f"output folder not writable: {folder} ({e.strerror or e})") from None
    finally:
        for made in reversed(created if not create else []):
            with contextlib.suppress(OSError):
                made.rmdir()
    return folder


def remove_stale_temps(finals) -> int:
    """Delete the temporary files (`.NAME.XXXXXXXX.tmp`) a killed atomic_write left for the given
    final paths; other files, other programs' temporary files included, are never touched."""
    by_dir: dict[Path, set[str]] = {}
    for final in map(Path, finals):
        by_dir.setdefault(final.parent, set()).add(final.name)
    removed = 0
    for folder, names in by_dir.items():
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            match = TEMP_NAME.match(p.name)
            if match and match.group(1) in names and p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed += 1
    if removed:
        log.info("removed %d temporary file(s) of an interrupted run", removed)
    return removed


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of a JSON-lines file; a torn or foreign line (a killed writer) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows


def append_jsonl(path: str | Path, row: dict, fence: Fence | None = None) -> None:
    """Append one JSON line and flush it to disk (a kill keeps every finished line). Never through
    a symbolic link (OSError); with `fence`, only inside the output folder (see atomic_write)."""
    line = json.dumps(row, allow_nan=False, default=str, sort_keys=True)
    if fence is not None:
        fence.check(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    with open(os.open(path, flags, 0o666), "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: str | Path, rows: list[dict], fence: Fence | None = None) -> None:
    """Rewrite a JSON-lines file atomically."""
    write_text(path, "".join(json.dumps(r, allow_nan=False, default=str, sort_keys=True) + "\n" for r in rows),
               fence)


def read_idx(path: str | Path) -> np.ndarray:
    """An MNIST idx file (optionally .gz) as a numpy array: uint8 (N, 28, 28) images or (N,) labels."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {arr.size} values, header says {dims}")
    return arr.reshape(dims)


# ---------------------------------------------------------------- remote folders (fsspec URLs)

ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})  # a PUT is all or nothing


def url_fs(url: str):
    """(fsspec file system, path inside it) of `url`; an unknown protocol or a missing driver
    (s3fs, gcsfs, adlfs) is a one-line ValueError."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise ValueError(f"{url}: cannot open this URL ({str(e).splitlines()[0]})") from None


def url_join(url: str, rel: str) -> str:
    return f"{url.rstrip('/')}/{rel}"


def remote_files(url: str) -> dict[str, int]:
    """{relative posix path: size} of every file under the remote folder `url` ({} if there is none)."""
    fs, root = url_fs(url)
    root = root.rstrip("/")
    if not fs.exists(root):
        return {}
    found = fs.find(root, detail=True)
    return {name[len(root) + 1:]: int(info.get("size") or 0) for name, info in found.items()
            if info.get("type", "file") == "file" and name.startswith(root + "/")}


def list_remote_images(url: str, exts: tuple[str, ...] = IMAGE_EXTS) -> list[str]:
    """Relative paths of the images under remote folder `url`, as list_images sorts and filters them."""
    rels = [r for r in remote_files(url) if Path(r).suffix.lower() in exts and not Path(r).name.startswith(".")]
    if not rels and not url_fs(url)[0].exists(url_fs(url)[1]):
        raise FileNotFoundError(f"input folder not found: {url}")
    return sorted(rels)


def download(url: str, dest: Path) -> Path:
    """Copy remote file `url` to local `dest` (atomically: a torn download never has `dest`'s name)."""
    fs, path = url_fs(url)
    with atomic_write(dest) as tmp:
        fs.get_file(path, str(tmp))
    return dest


def upload(src: Path, url: str) -> None:
    """Put finished local file `src` at `url`. Object stores (ATOMIC_PUT: s3, gs, az, memory) take
    it in one PUT, so the object appears whole or not at all; other file systems get a hidden
    temporary name first and a move (atomic where the file system's rename is)."""
    fs, path = url_fs(url)
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    parent, _, name = path.rstrip("/").rpartition("/")
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if protocols & ATOMIC_PUT:
        fs.put_file(str(src), path)
        return
    tmp = f"{parent}/.{name}.{os.urandom(4).hex()}.tmp"
    fs.put_file(str(src), tmp)
    try:
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.rm(tmp)
        raise


# ---------------------------------------------------------------- training states and torch files


def save_state(path: str | Path, state: dict) -> None:
    """Training state for resume (weights, optimizer, step); plain tensors and numbers only, so
    that `load_torch` reads it back with weights_only=True."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_torch(path: str | Path):
    """A torch file (training state, public .pth weights) without unpickling code: weights_only=True.

    Any failure is a one-line ValueError naming the file (never torch's advice to drop weights_only).
    """
    import pickle
    import re

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise ValueError(f"{path}: refused, it would import {found.group(1)} when loaded (genapps loads only "
                             f"plain tensors and numbers)") from None
        raise ValueError(f"{path}: not a readable torch weights file (not a torch file of plain tensors, "
                         f"or damaged)") from None
    except Exception as e:  # EOFError of an empty file, RuntimeError of a torn one, ...
        lines = [line for line in str(e).splitlines() if line.strip() and "weights_only" not in line]
        reason = lines[0][:200] if lines else type(e).__name__
        raise ValueError(f"{path}: not a readable torch weights file ({reason})") from None
