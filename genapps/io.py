"""All disk I/O of genapps: images, folders, atomic writes, checkpoints, bundled weights.

Images become float32 tensors in [0, 1], shape (C, H, W) with C = 1 (grayscale) or 3 (colour);
alpha travels beside the colour as (1, H, W) so that models never see it, and the bit depth is
kept so that a 16-bit input is written back as 16-bit.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                 ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
MAX_PIXELS = 178_956_970  # PIL's own decompression-bomb limit (2x its warning level)
CHECKPOINT_FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"

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
    oversized files.
    """
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
            im.load()
            im = ImageOps.exif_transpose(im)
            return _pil_to_loaded(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (format not recognised)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable image ({e})") from None


def _pil_to_loaded(im: Image.Image) -> LoadedImage:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im)
        if mode == "F":
            arr = np.clip(arr, 0, 1) if arr.max() <= 1.0 else np.clip(arr, 0, 65535) / 65535.0
            return LoadedImage(torch.from_numpy(arr.astype(np.float32))[None], None, 16)
        return LoadedImage(_from_uint(np.clip(arr, 0, 65535).astype(np.uint16)), None, 16)
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


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A killed or failing writer leaves no half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=str) + "\n")


def _to_uint(t: torch.Tensor, bits: int) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, C) or (H, W) uint8/uint16 array, rounded."""
    peak = 65535 if bits == 16 else 255
    arr = (t.detach().float().clamp(0, 1) * peak).round().cpu().numpy()
    arr = arr.astype(np.uint16 if bits == 16 else np.uint8).transpose(1, 2, 0)
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def write_image(path: str | Path, image: LoadedImage, quality: int = 95) -> None:
    """Write atomically; the format follows the extension (PNG, JPEG, WebP, TIFF, BMP).

    16-bit is kept for PNG and TIFF; JPEG/WebP/BMP are 8-bit. JPEG has no alpha: it is dropped
    with a warning.
    """
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
    with atomic_write(path) as tmp:
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
        except (OSError, ValueError) as e:
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


def output_path(src: Path, input_root: Path, output_root: Path, ext: str | None = None, suffix: str = "") -> Path:
    """Mirror `src`'s place under `input_root` into `output_root`, with optional suffix/new extension."""
    rel = src.relative_to(input_root)
    new_ext = ext if ext is None or ext.startswith(".") else f".{ext}"
    return output_root / rel.parent / f"{rel.stem}{suffix}{new_ext or rel.suffix}"


def image_index(root: str | Path) -> dict[str, Path]:
    """Relative path without extension -> file, the key by which two folders' images pair up."""
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in list_images(root)}


def pair_files(pred_dir: str | Path, ref_dir: str | Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pair images of two folders by relative path without extension.

    Returns (pairs, unmatched predictions). A prediction named `x_out.png` does not match `x.png`:
    write predictions without a suffix to evaluate them.
    """
    refs = image_index(ref_dir)
    pairs, unmatched = [], []
    for key, p in image_index(pred_dir).items():
        (pairs.append((p, refs[key])) if key in refs else unmatched.append(p))
    return pairs, unmatched


def check_writable(folder: str | Path) -> Path:
    """Create `folder` if needed and prove it writable, else raise ImageError (one line)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".genapps-probe-"):
            pass
    except OSError as e:
        raise ImageError(f"output folder not writable: {folder} ({e.strerror or e})") from None
    return folder


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


# ---------------------------------------------------------------- checkpoints and weights


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Safetensors file with `meta` (task, arch, config, ...) and the format version beside the weights."""
    from safetensors.torch import save_file

    header = {"genapps": json.dumps({"format_version": CHECKPOINT_FORMAT_VERSION, **meta})}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of save_weights: (tensors on CPU, meta). Raises ImageError-like ValueError on a foreign file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get("genapps")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError on a torn or foreign file
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    if header is None:
        raise ValueError(f"{path}: not a genapps checkpoint (no 'genapps' metadata)")
    meta = json.loads(header)
    if meta.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta.get('format_version')} not supported "
                         f"(this genapps reads {CHECKPOINT_FORMAT_VERSION})")
    return tensors, meta


def save_state(path: str | Path, state: dict) -> None:
    """Training state for resume (weights, optimizer, step); plain tensors and numbers only, so
    that `load_torch` reads it back with weights_only=True."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_torch(path: str | Path):
    """A torch file (training state, public .pth weights) without unpickling code: weights_only=True."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # UnpicklingError, RuntimeError of a torn file, ...
        raise ValueError(f"{path}: not a readable torch weights file ({str(e).splitlines()[0][:200]})") from None


def bundled_weights() -> dict[str, Path]:
    """Name -> path of the weights shipped inside the package."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))}


def bundled_card(name: str) -> dict:
    """The JSON card beside a bundled weight: training command, measured metrics."""
    card = WEIGHTS_DIR / f"{name}.json"
    return json.loads(card.read_text()) if card.is_file() else {}


def resolve_weights(name_or_path: str | Path) -> Path:
    """A bundled weight name (e.g. 'sr-x4') or a file path -> existing path; lists valid names if neither."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = bundled_weights()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    from genapps import zoo  # Real-ESRGAN's models and imported ncnn ones, converted on first use

    converted = zoo.resolve(str(name_or_path))
    if converted is not None:
        return converted
    raise FileNotFoundError(f"no weights file or bundled model named {str(name_or_path)!r}; "
                            f"bundled: {', '.join(bundled) or 'none'}; zoo: {', '.join(zoo.ZOO)}")
