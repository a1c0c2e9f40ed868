"""Run reports: per-stage statistics plus one strict ``report.json`` and one
self-contained ``report.html`` (inline CSS and JavaScript, images as base64 data URIs, no network).

Conventions:
* Metric statistics use only *ok* records with finite values; +/-inf values
  (e.g. PSNR of identical images) and NaN are counted apart ("inf", "nan").
* In report.json, +inf/-inf are written as the strings "inf"/"-inf" and NaN as
  null, so the file is strict JSON (no NaN/Infinity tokens).
* Throughput is ok records per second of their summed ``Record.seconds``
  (falling back to the stage wall time); if ok records carry the metric
  "output_mp" (output megapixels), its sum and output MP/s are reported too.
* Several stages: the page opens with one table comparing the stages (main metrics' mean and
  median, images/s, ok/skipped/failed). Whenever a stage has a per-image quality metric
  (its View's main, else MAIN_METRICS), a per-image table compares the stages side by side (rows: the input's path
  relative to its stage input, without extension), worst first, sortable by clicking a header.
* Each stage shows rows of images for an evenly spread sample of ok records (skipped ones when a
  resumed run has no ok record): input | output | reference | extra images, labelled per task
  (the stage's View, which its task declares: evaluate shows prediction | reference). The reference is the stage config's
  ``reference`` folder (evaluate: the record's input); extra images come from the config keys
  in EXTRA_IMAGES (e.g. masks) or from ``summary["report_images"]`` ({label: folder or file});
  all pair up by relative path without extension. Beside them, crops of one CROP x CROP region
  at the output's resolution (1:1 pixels, shown x CROP_ZOOM; a lower-resolution input is scaled
  to it with nearest neighbour): where the box-filtered |output - reference| is largest, else
  where the local variance (detail) is. Only tiny sources (<= TINY px) get nearest-upscaled
  thumbnails.
* By-class tasks (augment) show one row per class instead: a few real images | a few synthetic
  ones (the class is the output's parent folder, OUTPUT/<class>/).
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import json
import logging
import math
import numbers
import platform
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageOps

from genapps.io import image_index, write_text
from genapps.records import Record
from genapps.views import Metric, View

log = logging.getLogger(__name__)

THUMB = 256      # thumbnail long side, px
FIGURE_W = 768   # max figure width, px
TINY = 64        # sources with long side <= this are nearest-upscaled and kept PNG
CROP = 96        # side of the zoomed crops, px of the output
CROP_ZOOM = 2    # crops are shown this many times larger (pixelated)
SLACK = 8        # images up to this many px larger than the output share its pixel grid (SR references)
CLASS_REAL, CLASS_SYN, CLASS_CELL = 4, 8, 84  # by-class rows: real and synthetic images per class, cell px
PER_IMAGE_ROWS = 5000  # per-image table: at most this many (worst) rows

LABELS = {  # the report's own stats keys and genapps.metrics' metrics -> what the page shows (tasks: their View)
    "psnr_y": "PSNR (Y) dB", "ssim_y": "SSIM (Y)", "psnr": "PSNR dB", "ssim": "SSIM", "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS", "mae": "MAE", "mse": "MSE", "fid": "FID",
    "output_mp": "output MP", "output_mp_per_s": "output MP/s", "mp_per_s": "output MP/s",
    "images_per_s": "images/s", "seconds": "wall s", "processing_seconds": "processing s",
    "total": "files", "error": "failed", "n": "n (finite)",
}
MAIN_METRICS = ("psnr_y", "psnr", "ssim_y", "ssim", "ms_ssim", "lpips", "mae", "mse")  # a View's main overrides
LOWER_IS_BETTER = frozenset({"lpips", "mae", "mse", "fid"})  # the others: higher is better (tasks: Metric)
EXTRA_IMAGES = {"masks": "mask", "mask": "mask"}  # stage config key (a folder or one file) -> column label
PIXEL_METRICS = frozenset({"psnr", "ssim", "ms_ssim", "mae", "mse", "l1", "hole_psnr", "hole_l1"})  # per colour plane
BASELINE = "baseline_"  # a record's baseline_<metric>: its input (the task's baseline) against the same reference


def metric_names(stages: list) -> dict[str, Metric]:
    """Key -> Metric of every task-declared metric or summary key of these stages (their Views)."""
    names: dict[str, Metric] = {}
    for st in stages:
        for m in _view(st).metrics:
            names.setdefault(m.key, m)
    return names


def label(key: str, names: dict[str, Metric] | None = None) -> str:
    """Human label of a stats/metric key: the stage's View, else LABELS, else the key itself."""
    m = (names or {}).get(key)
    return m.label if m else LABELS.get(key, key)


def lower_is_better(key: str, names: dict[str, Metric] | None = None) -> bool:
    key = key.removeprefix(BASELINE)
    m = (names or {}).get(key)
    return m.lower_is_better if m else key in LOWER_IS_BETTER


def colour_space(stage, key: str) -> str | None:
    """'Y' or 'RGB': the planes a stage's pixel metric `key` was measured on (keys ending in _y:
    BT.601 luma; evaluate's with y_channel too), None for metrics that have no colour space."""
    key = key.removeprefix(BASELINE)
    if key.endswith("_y"):
        return "Y"
    if key in PIXEL_METRICS:
        cfg = stage.config if isinstance(stage.config, dict) else {}
        return "Y" if cfg.get("y_channel") else "RGB"
    return None


def stage_label(stage, key: str, names: dict[str, Metric] | None = None) -> str:
    """label() saying the colour space of a pixel metric: PSNR (Y) dB, PSNR dB (RGB), SSIM (RGB),
    hole L1 (0-255) (RGB), ...; a baseline key: "baseline " and its metric's label."""
    base = key.removeprefix(BASELINE)
    text, space = label(base, names), colour_space(stage, key)
    text = text if not space or f"({space})" in text else f"{text} ({space})"
    return f"baseline {text}" if key.startswith(BASELINE) else text


def summarize(stage) -> dict:
    """Counts, per-metric mean/median (finite values of every output there: ok and skipped
    records, so a resumed run's report covers the folder), seconds and throughput (ok records)."""
    recs = stage.records
    ok = [r for r in recs if r.status == "ok"]
    there = [r for r in recs if r.status in ("ok", "skipped")]
    stats: dict[str, Any] = {"total": len(recs)}
    stats.update({s: sum(r.status == s for r in recs) for s in ("ok", "error", "skipped")})
    metrics, finite = {}, {}
    for name in sorted({k for r in there for k in r.metrics}):
        vals = [float(r.metrics[name]) for r in (ok if name == "output_mp" else there)
                if isinstance(r.metrics.get(name), numbers.Real)]
        fin = finite[name] = [v for v in vals if math.isfinite(v)]
        metrics[name] = {"n": len(fin), "mean": statistics.fmean(fin) if fin else None,
                         "median": statistics.median(fin) if fin else None,
                         "inf": sum(math.isinf(v) for v in vals), "nan": sum(math.isnan(v) for v in vals)}
    busy = sum(r.seconds for r in ok)
    t = busy if busy > 0 else stage.seconds
    stats.update(metrics=metrics, seconds=stage.seconds, processing_seconds=busy,
                 images_per_s=len(ok) / t if ok and t > 0 else None)
    if "output_mp" in finite:
        stats["output_mp"] = sum(finite["output_mp"])
        stats["mp_per_s"] = stats["output_mp"] / t if t > 0 else None
    return stats


def _jsonable(obj: Any) -> Any:
    """Recursively make ``obj`` strict-JSON-safe (see module docstring for inf/NaN)."""
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy / torch scalars and arrays
        return _jsonable(obj.tolist())
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
        return obj
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    return str(obj)  # Path and anything else


def _versions() -> dict[str, str]:
    """Versions without importing heavy modules (uses them only if already loaded)."""
    from importlib import metadata
    v = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        import genapps
        v["genapps"] = str(getattr(genapps, "__version__", "unknown"))
    except Exception:
        v["genapps"] = "unknown"
    for key, mod, dist in (("torch", "torch", "torch"), ("torchvision", "torchvision", "torchvision"),
                           ("numpy", "numpy", "numpy"), ("pillow", "PIL", "pillow")):
        ver = getattr(sys.modules.get(mod), "__version__", None)
        try:
            ver = ver or metadata.version(dist)
        except Exception:
            ver = "missing"
        v[key] = str(ver)
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return "" if v is None else str(v)


def _to_display(im: Image.Image) -> Image.Image:
    """Any PIL mode (16-bit, float, palette, gray, CMYK...) -> 8-bit RGB or RGBA."""
    if im.mode.startswith("I") or im.mode == "F":
        import numpy as np
        a = np.asarray(im, dtype=np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
        if im.mode == "F":
            lo, hi = (0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, max(hi, lo + 1e-12))
        else:
            lo, hi = 0.0, (65535.0 if im.mode.startswith("I;16") or hi > 255 else 255.0)
        a = np.clip((a - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(a).convert("RGB")
    alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
    return im if im.mode in ("RGB", "RGBA") else im.convert("RGBA" if alpha else "RGB")


def _load(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as src:
            src.load()
            return _to_display(ImageOps.exif_transpose(src))
    except Exception as e:  # missing or unreadable: caller shows a placeholder
        log.warning("report: cannot read image %s: %s", path, e)
        return None


def _data_uri(im: Image.Image, png: bool) -> str:
    buf = io.BytesIO()
    if png or im.mode == "RGBA":
        im.save(buf, "PNG", optimize=True)
        mime = "png"
    else:
        im.save(buf, "JPEG", quality=85)
        mime = "jpeg"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumb(im: Image.Image, height: int | None = None) -> tuple[Image.Image, bool]:
    """Fit in THUMB px; only tiny sources (<= TINY px) are upscaled, by an integer factor with
    nearest neighbour (to about `height` px high if given, else to about THUMB px)."""
    w, h = im.size
    tiny = max(w, h) <= TINY
    if max(w, h) > THUMB:
        im = im.copy()
        im.thumbnail((THUMB, THUMB), Image.LANCZOS)
    elif tiny:
        f = max(1, round(height / h)) if height else THUMB // max(w, h)
        im = im.resize((w * f, h * f), Image.NEAREST)
    return im, tiny


def _row_height(images: list[Image.Image]) -> int:
    """Common display height of a row: that of its largest non-tiny thumbnail (so no image is
    shown above its own resolution), else of its tiny ones nearest-upscaled to about THUMB px."""
    big = [max(1, round(im.height * min(1.0, THUMB / max(im.size)))) for im in images if max(im.size) > TINY]
    return max(big) if big else max((im.height * (THUMB // max(im.size)) for im in images), default=0)


def _small(im: Image.Image, side: int = CLASS_CELL) -> Image.Image:
    """Fit in `side` px: tiny sources nearest-upscaled by an integer factor, large ones downscaled."""
    w, h = im.size
    if max(w, h) > side:
        im = im.copy()
        im.thumbnail((side, side), Image.LANCZOS)
    elif max(w, h) <= TINY and side // max(w, h) > 1:
        f = side // max(w, h)
        im = im.resize((w * f, h * f), Image.NEAREST)
    return im


def _resolve(p: str | None, base: str) -> Path | None:
    if not p:
        return None
    path = Path(p)
    if not path.is_absolute() and not path.exists() and (Path(base) / path).exists():
        path = Path(base) / path
    return path


def _sample(records: list, k: int) -> list:
    """Up to k records evenly spread (first and last included), deterministic."""
    n = len(records)
    if k <= 0 or n == 0:
        return []
    if n <= k:
        return list(records)
    if k == 1:
        return [records[n // 2]]
    return [records[round(i * (n - 1) / (k - 1))] for i in range(k)]


def _pre(obj: Any) -> str:
    return f"<pre>{html.escape(json.dumps(_jsonable(obj), indent=1))}</pre>"


def _dict_html(d: Any, depth: int = 0, names: dict | None = None) -> str:
    if not isinstance(d, dict):
        return _pre(d)
    if not d:
        return '<p class="muted">(empty)</p>'
    rows = []
    for k, v in d.items():
        if isinstance(v, dict) and 0 < len(v) <= 30 and all(isinstance(x, (int, float, str)) for x in v.values()):
            cell = html.escape(" · ".join(f"{label(str(a), names)} {_fmt(b)}" for a, b in v.items()))  # e.g. per class
        elif isinstance(v, dict) and depth < 3:
            cell = _dict_html(v, depth + 1, names)
        elif isinstance(v, (list, tuple)) and len(v) <= 20 and all(isinstance(x, (int, float, str)) for x in v):
            cell = html.escape(", ".join(_fmt(x) for x in v))
        elif isinstance(v, (dict, list, tuple)):
            cell = _pre(v)
        else:
            cell = html.escape(_fmt(v))
        rows.append(f"<tr><th>{html.escape(label(str(k), names))}</th><td>{cell}</td></tr>")
    return '<table class="kv">' + "".join(rows) + "</table>"


def _stats_html(st: dict, names: dict | None = None, stage=None) -> str:
    keys = [k for k in ("total", "ok", "error", "skipped", "seconds", "processing_seconds",
                        "images_per_s", "output_mp", "mp_per_s") if k in st]
    out = ('<table class="grid"><tr>' + "".join(f"<th>{html.escape(label(k))}</th>" for k in keys) + "</tr><tr>"
           + "".join(f"<td{' class=err' if k == 'error' and st[k] else ''}>{html.escape(_fmt(st[k]))}</td>"
                     for k in keys) + "</tr></table>")
    if st["metrics"]:
        cols = ("n", "mean", "median", "inf", "nan")
        rows = "".join(f"<tr><th>{html.escape(stage_label(stage, n, names) if stage else label(n, names))}</th>"
                       + "".join(f"<td>{html.escape(_fmt(m[c]))}</td>" for c in cols) + "</tr>"
                       for n, m in st["metrics"].items())
        out += ('<table class="grid"><tr><th>metric</th><th>n (finite)</th><th>mean</th>'
                f"<th>median</th><th>inf</th><th>nan</th></tr>{rows}</table>")
    return out


def main_metric(stats: dict, view: View | None = None) -> str | None:
    """The stage's main per-image quality metric: the first its View's `main` (default MAIN_METRICS) lists
    that it measured."""
    return next((m for m in (view.main if view and view.main else MAIN_METRICS) if m in stats["metrics"]), None)


# ---------------------------------------------------------------- which images a record shows


def _view(stage) -> View:
    return getattr(stage, "view", None) or View()


def _rel(stage, rec) -> str:
    """The record's input path relative to its stage folder (evaluate: the prediction's)."""
    tries = [(rec.input, stage.input_dir), (rec.output, stage.output_dir), (rec.output, stage.input_dir)]
    if _view(stage).input_is_reference:  # evaluate: the prediction (under input_dir) names the record
        tries = tries[1:] + tries[:1]
    for p, base in tries:
        if p and base:
            try:
                return Path(p).relative_to(base).as_posix()
            except ValueError:
                pass
    return Path(rec.input or rec.output or "?").name


def _key(stage, rec) -> str:
    """`_rel` without extension: the name by which stages and folders pair up."""
    return Path(_rel(stage, rec)).with_suffix("").as_posix()


def _find(index, rel: str) -> Path | None:
    """The image of a folder index (io.image_index) that pairs with relative name `rel` (or, as
    IOPaint names masks, with `<stem>_mask<ext>`)."""
    p = Path(rel)
    for cand in (p.as_posix(), p.with_name(f"{p.stem}_mask{p.suffix}").as_posix()):
        found = index.find(cand)[0] if hasattr(index, "find") else index.get(Path(cand).with_suffix("").as_posix())
        if found is not None:
            return found
    return None


def _image_sources(stage) -> list[tuple[str, str, Any]]:
    """(label, role, folder index {key: path} or one file) of the images shown beside input/output."""
    cfg = stage.config if isinstance(stage.config, dict) else {}
    named = []
    if cfg.get("reference") and not _view(stage).input_is_reference:
        named.append(("reference", "reference", cfg["reference"]))
    named += [(lab, "extra", cfg[k]) for k, lab in EXTRA_IMAGES.items() if cfg.get(k)]
    extra = (stage.summary or {}).get("report_images") if isinstance(stage.summary, dict) else None
    if isinstance(extra, dict):
        named += [(str(k), "extra", v) for k, v in extra.items() if v]
    sources = []
    for lab, role, where in named:
        p = Path(str(where))
        try:
            src = p if p.is_file() else image_index(p) if p.is_dir() else None
        except (OSError, ValueError) as e:
            log.warning("report: cannot list %s images in %s: %s", lab, p, e)
            src = None
        if src is None:
            log.warning("report: %s folder not found: %s", lab, p)
        else:
            sources.append((lab, role, src))
    return sources


@dataclass
class _Cell:
    label: str
    path: Path | None
    role: str  # input | output | reference | extra
    image: Image.Image | None = None


def _sample_name(path: str) -> str:
    """'s1' of NAME_s1.png: how a record's several outputs (inpaint --samples) are told apart."""
    return Path(path).stem.rsplit("_", 1)[-1]


def _cells(stage, rec, sources, siblings: dict | None = None) -> list[_Cell]:
    view = _view(stage)
    inp = _Cell(view.input, _resolve(rec.input, stage.input_dir), "reference" if view.input_is_reference else "input")
    outs = (siblings or {}).get(rec.output) or [rec.output]
    if len(outs) > 1:  # every sample of the input: output s0, output s1, ...
        outputs = [_Cell(f"{view.output} {_sample_name(o)}", _resolve(o, stage.output_dir), "output" if o == rec.output
                         else "sample") for o in outs]
    else:
        outputs = [_Cell(view.output, _resolve(rec.output, stage.output_dir), "output")]
    cells = [*outputs, inp] if view.input_is_reference else [inp, *outputs]
    rel = _rel(stage, rec)
    cells += [_Cell(lab, src if isinstance(src, Path) else _find(src, rel), role) for lab, role, src in sources]
    for c in cells:
        c.image = _load(c.path) if c.path else None
    return cells


# ---------------------------------------------------------------- zoomed crops


def _same_grid(im: Image.Image, out: Image.Image) -> bool:
    """`im` has the output's pixel grid (equal, or up to SLACK px larger as an SR reference)."""
    return 0 <= im.width - out.width <= SLACK and 0 <= im.height - out.height <= SLACK


def pick_region(out: Image.Image, ref: Image.Image | None = None) -> tuple[tuple[int, int, int, int], str]:
    """The CROP x CROP box (x, y, w, h) of `out` to zoom into, and why it was picked.

    With a reference on the same grid: the largest box-filtered mean |out - ref| (RGB, [0, 1]);
    otherwise the most detail (mean local variance of the grey image in 7x7 windows). Deterministic.
    """
    import cv2
    import numpy as np

    w, h = min(CROP, out.width), min(CROP, out.height)
    a = np.asarray(out.convert("RGB"), dtype=np.float32) / 255.0
    if ref is not None and _same_grid(ref, out):
        r = np.asarray(ref.convert("RGB"), dtype=np.float32)[:out.height, :out.width] / 255.0
        score, how = np.abs(a - r).mean(-1), "largest local error |output − reference|"
    else:
        g = a.mean(-1)
        mu = cv2.blur(g, (7, 7))
        score, how = np.maximum(cv2.blur(g * g, (7, 7)) - mu * mu, 0.0), "most detail (local variance)"
    ii = np.pad(score.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = ii[h:, w:] - ii[:-h, w:] - ii[h:, :-w] + ii[:-h, :-w]  # box sums at every top-left corner
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return (int(x), int(y), w, h), how


def _same_aspect(im: Image.Image, out: Image.Image) -> bool:
    """`im` covers the same scene as the output at another scale (within 5% or SLACK px)."""
    sx, sy = im.width / out.width, im.height / out.height
    return _same_grid(im, out) or abs(sx / sy - 1) <= 0.05


def _crop(im: Image.Image, box: tuple[int, int, int, int], out: Image.Image) -> tuple[Image.Image, str] | None:
    """The output-grid `box` of `im` at the output's resolution and how it was scaled (None: other aspect)."""
    x, y, w, h = box
    if _same_grid(im, out):
        return im.crop((x, y, x + w, y + h)), "1:1"
    if not _same_aspect(im, out):
        return None
    sx, sy = im.width / out.width, im.height / out.height
    region = (x * sx, y * sy, (x + w) * sx, (y + h) * sy)
    if sx * sy < 1:  # lower resolution (an SR input): nearest, so its pixels stay visible
        return im.resize((w, h), Image.NEAREST, box=region), f"×{1 / math.sqrt(sx * sy):.3g} nearest"
    return im.resize((w, h), Image.BOX, box=region), f"÷{math.sqrt(sx * sy):.3g}"


def _outline(th: Image.Image, box: tuple[int, int, int, int], out: Image.Image) -> Image.Image:
    """The thumbnail with the crop box (output coordinates) drawn on it."""
    fx, fy = th.width / out.width, th.height / out.height
    x, y, w, h = box
    th = th.copy()
    ImageDraw.Draw(th).rectangle((round(x * fx), round(y * fy), round((x + w) * fx) - 1, round((y + h) * fy) - 1),
                                 outline=(255, 0, 200))
    return th


# ---------------------------------------------------------------- record rows


def _metrics_line(metrics: dict, names: dict | None = None, stage=None) -> str:
    return " · ".join(f"{html.escape(stage_label(stage, k, names) if stage else label(k, names))} "
                      f"{html.escape(_fmt(v))}" for k, v in metrics.items() if k != "output_mp")


def _row_html(stage, rec, sources, anchor: str = "", worst: bool = False, siblings: dict | None = None) -> str:
    """One record: its images at a common height, then crops of one region of each at output resolution."""
    cells = _cells(stage, rec, sources, siblings)
    out = next((c.image for c in cells if c.role == "output"), None)
    ref = next((c.image for c in cells if c.role == "reference"), None)
    box, how = pick_region(out, ref) if out is not None and max(out.size) > CROP else (None, "")
    thumbs, h = [], _row_height([c.image for c in cells if c.image is not None])
    for c in cells:
        if c.image is None:
            thumbs.append((c, None, False))
            continue
        th, tiny = _thumb(c.image, h)
        thumbs.append((c, _outline(th, box, out) if box and _same_aspect(c.image, out) else th, tiny))
    parts = []
    for c, th, tiny in thumbs:
        name = html.escape(c.path.name if c.path else "(none)")
        if th is None:
            parts.append(f'<figure><div class="ph">{html.escape(c.label)}: missing or unreadable</div>'
                         f"<figcaption>{name}</figcaption></figure>")
            continue
        cls = ' class="px"' if tiny else ""
        parts.append(f'<figure><img{cls} src="{_data_uri(th, png=tiny)}" style="height:{h}px" '
                     f'alt="{html.escape(c.label)}"><figcaption><b>{html.escape(c.label)}</b>: {name} '
                     f"({c.image.width}×{c.image.height})</figcaption></figure>")
    crops = ""
    if box:
        figs = []
        for c in cells:
            crop = _crop(c.image, box, out) if c.image is not None else None
            if crop is None:
                continue
            im, how_scaled = crop
            figs.append(f'<figure><img class="px" src="{_data_uri(im, png=True)}" width="{im.width * CROP_ZOOM}" '
                        f'height="{im.height * CROP_ZOOM}" alt="{html.escape(c.label)} crop">'
                        f"<figcaption>{html.escape(c.label)} {html.escape(how_scaled)}</figcaption></figure>")
        x, y, w, hh = box
        parts.append(f'<div class="crops">{"".join(figs)}</div>')
        crops = (f'<p class="muted">crops: {w}×{hh} px of the {html.escape(_view(stage).output)} at ({x}, {y}), '
                 f"picked by {html.escape(how)}; shown ×{CROP_ZOOM}, outlined on the images</p>")
    metr = _metrics_line(rec.metrics, metric_names([stage]), stage)
    tag = '<span class="worst">worst</span> ' if worst else ""
    tag += {"skipped": '<span class="muted">resumed</span> ', "earlier": '<span class="muted">earlier run</span> '}.get(
        rec.status, "")
    warning = f'<p class="warn">warning: {html.escape(rec.warning)}</p>' if rec.warning else ""
    return (f'<div class="rec" id="{anchor}"><div class="m">{tag}<b>{html.escape(_key(stage, rec))}</b>'
            f'{" · " + metr if metr else ""}</div>{warning}<div class="pair">{"".join(parts)}</div>{crops}</div>')


def _class_rows_html(stage, records: list) -> str:
    """By-class view: one row per class (the output's parent folder): a few real | a few synthetic images."""
    view = _view(stage)
    groups: dict[str, tuple[list, list]] = {}
    for r in records:
        if not r.output:
            continue
        real, syn = groups.setdefault(Path(r.output).parent.name, ([], []))
        if r.input and r.input not in real:
            real.append(r.input)
        syn.append(r)
    summary = stage.summary if isinstance(stage.summary, dict) else {}
    n_real, n_syn = summary.get("real_per_class") or {}, summary.get("synthetic_per_class") or {}

    def imgs(paths: list, base: str, titles: list) -> str:
        out = []
        for p, title in zip(paths, titles):
            im = _load(_resolve(p, base))
            if im is None:
                out.append('<span class="ph sm">missing</span>')
                continue
            tiny = max(im.size) <= TINY
            sm = _small(im)
            out.append(f'<img{" class=px" if tiny else ""} src="{_data_uri(sm, png=tiny)}" '
                       f'title="{html.escape(title)}" alt="{html.escape(Path(p).name)}">')
        return "".join(out)

    rows = []
    for cls, (real, syn) in groups.items():
        syn_show = syn[:CLASS_SYN]
        titles = [Path(r.output).name + (f" · {_metrics_line(r.metrics, metric_names([stage]))}" if r.metrics else "") for r in syn_show]
        rows.append(f"<tr><th>{html.escape(cls)}<div class='muted'>{n_real.get(cls, len(real))} real, "
                    f"{n_syn.get(cls, len(syn))} synthetic</div></th>"
                    f"<td>{imgs(real[:CLASS_REAL], stage.input_dir, [Path(p).name for p in real[:CLASS_REAL]])}</td>"
                    f"<td>{imgs([r.output for r in syn_show], stage.output_dir, titles)}</td></tr>")
    return (f'<table class="grid cls"><tr><th>class</th><th>{html.escape(view.input)} (up to {CLASS_REAL})</th>'
            f"<th>{html.escape(view.output)} (up to {CLASS_SYN})</th></tr>{''.join(rows)}</table>")


def failure_parts(stage, rec) -> tuple[str, str]:
    """(file, message) of a failed record; the message without the file's path prefix(es)."""
    file = (rec.output if _view(stage).input_is_reference and rec.output else rec.input) or rec.output or "?"
    msg = str(rec.error or "failed")
    prefixes = [f"{p}: " for p in (rec.input, rec.output) if p]
    while any(msg.startswith(p) for p in prefixes):
        msg = msg[len(next(p for p in prefixes if msg.startswith(p))):]
    return str(file), msg


def failure_line(stage, rec) -> str:
    """'file: message', naming the failed file exactly once."""
    file, msg = failure_parts(stage, rec)
    return msg if file in msg else f"{file}: {msg}"


def _errors_html(stage) -> str:
    items = []
    for r in stage.failed:
        file, msg = failure_parts(stage, r)
        try:
            shown = Path(file).relative_to(stage.input_dir).as_posix()
        except ValueError:
            shown = file
        items.append(f'<li><code title="{html.escape(file)}">{html.escape(shown)}</code>: {html.escape(msg)}</li>')
    return f"<h3>Failed ({len(items)})</h3><ul class='err'>" + "".join(items) + "</ul>" if items else ""


# ---------------------------------------------------------------- stage comparison


def _columns(stages: list, stats: list[dict]) -> list[tuple[str, bool, dict[int, str]]]:
    """The comparison's metric columns: (label with colour space, lower is better, {stage index:
    metric key}), in main-metric order; a Y PSNR and an RGB PSNR never share a column."""
    names = metric_names(stages)
    order = dict.fromkeys(m for st in stages for m in (_view(st).main or MAIN_METRICS))
    cols: dict[str, tuple[str, bool, dict[int, str]]] = {}
    for m in order:
        for i, (st, s) in enumerate(zip(stages, stats)):
            if m in s["metrics"]:
                text = stage_label(st, m, names)
                cols.setdefault(text, (text, lower_is_better(m, names), {}))[2].setdefault(i, m)
    return list(cols.values())


def _compare_html(stages: list, stats: list[dict]) -> str:
    """One table: per stage its task, main metrics' mean and median (and the baseline's mean,
    the input against the same reference, when measured), images/s, ok/skipped/failed."""
    e = html.escape
    cols = _columns(stages, stats)
    based = [any(BASELINE + key in stats[i]["metrics"] for i, key in keys.items()) for _, _, keys in cols]
    head1 = "".join(f'<th colspan="{3 if b else 2}">{e(text)}</th>' for (text, _, _), b in zip(cols, based))
    head2 = "".join("<th>mean</th><th>median</th>" + ("<th>baseline</th>" if b else "") for b in based)
    rest = ("images/s", "ok", "skipped", "failed", "wall s")
    rows = []
    for i, (st, s) in enumerate(zip(stages, stats)):
        vals = ""
        for (_, _, keys), b in zip(cols, based):
            m = keys.get(i)
            vals += "".join(f"<td>{e(_fmt(s['metrics'].get(m, {}).get(k)))}</td>" for k in ("mean", "median"))
            if b:
                vals += f"<td class='muted'>{e(_fmt(s['metrics'].get(BASELINE + (m or ''), {}).get('mean')))}</td>"
        failed = f"<td class='err'>{s['error']}</td>" if s["error"] else "<td>0</td>"
        rows.append(f"<tr><th><a href='#stage-{i}'>{e(st.name)}</a></th><td>{e(st.task)}</td>{vals}"
                    f"<td>{e(_fmt(s['images_per_s']))}</td><td>{s['ok']}</td><td>{s['skipped']}</td>{failed}"
                    f"<td>{e(_fmt(st.seconds))}</td></tr>")
    note = ("<p class='muted'>baseline: the stage's input measured against the same reference "
            "(upscale: resized bicubic to the output's size; translate: as it is).</p>" if any(based) else "")
    return ('<h2>Stages</h2><table class="grid compare"><thead><tr><th rowspan="2">stage</th><th rowspan="2">task</th>'
            + head1 + "".join(f'<th rowspan="2">{r}</th>' for r in rest) + f"</tr><tr>{head2}</tr></thead>"
            + "<tbody>" + "".join(rows) + "</tbody></table>" + note)


def per_image(stages: list, stats: list[dict]) -> dict:
    """Per-image main metric of every stage that has one, worst first by the last such stage.

    {"columns": [{"stage", "metric", "label", "space", ...}], "rows": [{"file": key, "values":
    [float | None], "baselines": [...], "status": [...]}], "sorted_by": i, "baseline_columns": [...],
    "stages": [names]} (None: not measured or failed). `baseline_columns` are the columns' stages
    that measured their input against the reference too (rows' "baselines", in that order);
    "status" is the image's record status in every stage ("" where it has none): one row follows an
    image through the whole pipeline.
    """
    cols = [(i, st, m) for i, (st, s) in enumerate(zip(stages, stats)) if (m := main_metric(s, _view(st)))]
    names = metric_names(stages)
    bases = [(c, i, st, BASELINE + m) for c, (i, st, m) in enumerate(cols) if BASELINE + m in stats[i]["metrics"]]
    table: dict[str, list] = {}
    baselines: dict[str, list] = {}
    status: dict[str, list] = {}
    for c, (_, st, m) in enumerate(cols):
        for r in st.records:
            row = table.setdefault(_key(st, r), [None] * len(cols))
            row[c] = _value(r, m) if row[c] is None else row[c]
    for b, (_, _, st, m) in enumerate(bases):
        for r in st.records:
            row = baselines.setdefault(_key(st, r), [None] * len(bases))
            row[b] = _value(r, m) if row[b] is None else row[b]
    for i, st in enumerate(stages):
        for r in st.records:
            status.setdefault(_key(st, r), [""] * len(stages))[i] = r.status
    last = len(cols) - 1
    order = sorted(table.items(), key=lambda kv: (_badness(kv[1][last], cols[last][2], names), kv[0])) if cols else []
    return {"columns": [{"stage": st.name, "stage_index": i, "metric": m, "label": label(m, names),
                         "space": colour_space(st, m), "lower_is_better": lower_is_better(m, names)}
                        for i, st, m in cols],
            "baseline_columns": [{"stage": st.name, "stage_index": i, "column": c, "metric": m,
                                  "label": stage_label(st, m, names)} for c, i, st, m in bases],
            "stages": [st.name for st in stages],
            "sorted_by": last + 1, "rows": [{"file": k, "values": v, "baselines": baselines.get(k, [None] * len(bases)),
                                             "status": status.get(k, [""] * len(stages))} for k, v in order]}


def _folder_outputs(stage) -> tuple[dict[str, list[str]], list]:
    """({record output: every output of its input (inpaint's samples)}, records of the folder's
    other outputs that its manifest lists with the same task and settings: status "earlier", no
    metrics): what the folder holds beyond this run's records (genapps.batch.folder_outputs)."""
    from genapps.batch import folder_outputs  # lazy: batch imports torch; reports are read without it

    outputs = [r.output for r in stage.records if r.output and r.status in ("ok", "skipped")]
    if not outputs or _view(stage).input_is_reference or _view(stage).by_class:
        return {}, []
    try:
        siblings, others = folder_outputs(stage.output_dir, outputs)
    except OSError as e:
        log.warning("report: cannot read the manifest of %s: %s", stage.output_dir, e)
        return {}, []
    earlier = [Record(str(Path(stage.input_dir) / str(o.get("input"))), str(Path(stage.output_dir) / o["output"]),
                      "earlier") for o in others]
    return siblings, earlier


def _through_html(stages: list, table: dict, sample: int) -> str:
    """A pipeline's images through every stage, one row each: the first stage's input, each
    stage's output (with its main metric), the last reference; for the first `sample` images of
    the per-image table (worst first), else of the first stage."""
    e = html.escape
    by_stage = [{_key(st, r): r for r in st.records if r.output and r.status != "error"} for st in stages]
    keys = [row["file"] for row in table["rows"]] or list(by_stage[0])
    keys = [k for k in keys if sum(k in recs for recs in by_stage) > 1][:sample]
    if not keys:
        return ""
    names = metric_names(stages)
    rows = []
    for k in keys:
        figs, first = [], next(i for i, recs in enumerate(by_stage) if k in recs)
        rec = by_stage[first][k]
        cells = [(_view(stages[first]).input, _resolve(rec.input, stages[first].input_dir), "")]
        ref = None
        for i, (st, recs) in enumerate(zip(stages, by_stage)):
            r = recs.get(k)
            if r is None:
                continue
            m = main_metric({"metrics": r.metrics}, _view(st))
            value = f"{stage_label(st, m, names)} {_fmt(r.metrics[m])}" if m else ""
            cells.append((st.name, _resolve(r.output, st.output_dir), value))
            found = next((src for lab, role, src in _image_sources(st) if role == "reference"), None)
            ref = (found if isinstance(found, Path) else _find(found, _rel(st, r))) if found is not None else ref
        if ref is not None:
            cells.append(("reference", ref, ""))
        for lab, path, value in cells:
            im = _load(path) if path else None
            if im is None:
                figs.append(f'<figure><div class="ph">{e(lab)}: missing</div></figure>')
                continue
            th, tiny = _small(im, THUMB // 2), max(im.size) <= TINY
            figs.append(f'<figure><img{" class=px" if tiny else ""} src="{_data_uri(th, png=tiny)}" alt="{e(lab)}">'
                        f"<figcaption><b>{e(lab)}</b>{' · ' + e(value) if value else ''}</figcaption></figure>")
        rows.append(f'<div class="rec"><div class="m"><b>{e(k)}</b></div><div class="pair">{"".join(figs)}</div></div>')
    return (f"<h2>Through the stages</h2><p class='muted'>{len(keys)} image(s), worst first: each stage's output "
            "of the same image, with its main metric.</p>" + "".join(rows))


def _value(rec, metric: str) -> float | None:
    """The record's finite-or-inf value of `metric`; None when failed, not measured or NaN."""
    v = rec.metrics.get(metric) if rec.status != "error" else None
    return float(v) if isinstance(v, numbers.Real) and not math.isnan(v) else None


def _badness(v: float | None, metric: str, names: dict | None = None) -> tuple[bool, float]:
    """Sort key putting the worst value of `metric` first and missing values last."""
    return v is None, (0.0 if v is None else -v if lower_is_better(metric, names) else v)


def _picks(ok: list, metric: str | None, k: int, names: dict | None = None) -> tuple[list, set]:
    """Records to show: with a metric, the k // 2 worst, the others evenly spread; (in record order, worst ids)."""
    measured = [r for r in ok if metric and _value(r, metric) is not None]
    worst = sorted(measured, key=lambda r: _badness(_value(r, metric), metric, names))[:k // 2] if len(ok) > k else []
    ids = {id(r) for r in worst}
    spread = {id(r) for r in _sample([r for r in ok if id(r) not in ids], k - len(worst))}
    return [r for r in ok if id(r) in ids | spread], ids


def _sort_value(v: float | None) -> str:
    """A number as JavaScript's parseFloat reads it ("" = missing, sorted last)."""
    if v is None:
        return ""
    return repr(v) if math.isfinite(v) else "Infinity" if v > 0 else "-Infinity"


def _per_image_html(table: dict, shown: dict) -> str:
    """The sortable per-image table; a value links to its record's row when the page shows it
    (`shown`: {(stage index, key): anchor id})."""
    e = html.escape
    cols = table["columns"]
    if not cols or not table["rows"]:
        return ""
    heads = ['<th data-type="text">file</th>']
    for i, c in enumerate(cols, 1):
        better = "low" if c["lower_is_better"] else "high"
        sort = ' aria-sort="%s"' % ("descending" if better == "low" else "ascending") if i == table["sorted_by"] else ""
        text = c["label"] if not c.get("space") or f"({c['space']})" in c["label"] else f"{c['label']} ({c['space']})"
        heads.append(f'<th data-better="{better}"{sort}>{e(c["stage"])}<br>'
                     f'<span class="muted">{e(text)}</span></th>')
    for b in table.get("baseline_columns", []):  # after the stages' columns: the input against the reference
        better = "low" if cols[b["column"]]["lower_is_better"] else "high"
        heads.append(f'<th data-better="{better}">{e(b["stage"])}<br><span class="muted">{e(b["label"])}</span></th>')
    rows = []
    for row in table["rows"][:PER_IMAGE_ROWS]:
        vals = []
        for c, v in zip(cols, row["values"]):
            text = e(_fmt(v)) if v is not None else "–"
            anchor = shown.get((c["stage_index"], row["file"]))
            vals.append(f'<td data-v="{_sort_value(v)}">'
                        + (f'<a href="#{anchor}">{text}</a>' if anchor else text) + "</td>")
        vals += [f'<td data-v="{_sort_value(v)}" class="muted">{e(_fmt(v)) if v is not None else "–"}</td>'
                 for v in row.get("baselines", [])]
        vals = "".join(vals)
        rows.append(f'<tr><td data-v="{e(row["file"])}">{e(row["file"])}</td>{vals}</tr>')
    more = len(table["rows"]) - PER_IMAGE_ROWS
    note = f"<p class='muted'>{more} better images not listed.</p>" if more > 0 else ""
    c = cols[table["sorted_by"] - 1]
    return (f"<h2>Per image</h2><p class='muted'>Worst first by {e(c['stage'])} {e(c['label'])}; "
            "click a header to sort (again to reverse), a linked value to see the images. "
            "– : not measured or failed.</p>"
            f'<table class="grid sortable" id="per-image"><thead><tr>{"".join(heads)}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>{note}")


SORT_JS = """document.querySelectorAll("table.sortable").forEach(function (t) {
  var heads = t.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var num = th.dataset.type !== "text", cur = th.getAttribute("aria-sort");
      var dir = cur === "ascending" ? -1 : cur === "descending" ? 1 : (num && th.dataset.better === "low" ? -1 : 1);
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        if (!num) return dir * x.localeCompare(y);
        x = x === "" ? NaN : parseFloat(x); y = y === "" ? NaN : parseFloat(y);
        if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
        return dir * (x - y) || 0;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});"""


def _figure_html(caption: str, path: str) -> str:
    im = _load(Path(path))
    cap = html.escape(caption)
    if im is None:
        return (f'<figure><div class="ph">missing: {html.escape(str(path))}</div>'
                f"<figcaption>{cap}</figcaption></figure>")
    if im.width > FIGURE_W:
        im = im.resize((FIGURE_W, max(1, round(im.height * FIGURE_W / im.width))), Image.LANCZOS)
    elif max(im.size) <= TINY:
        im, _ = _thumb(im)
    uri = _data_uri(im, png=im.width * im.height <= 512 * 512)
    return (f'<figure><img src="{uri}" style="max-width:100%" alt="{cap}">'
            f"<figcaption>{cap}</figcaption></figure>")


CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h2{border-bottom:1px solid #ccc;margin-top:2em}table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}
pre{background:#f7f7f7;padding:.5em;overflow:auto;max-height:30em}.muted{color:#888;font-weight:normal}
.err{color:#b00}.pair,.crops{display:flex;gap:1em;align-items:flex-end;margin:.3em 0;flex-wrap:wrap}
.crops{margin:0;padding-left:1em;border-left:2px solid #ccc}
.rec{margin:1em 0 1.5em;padding-top:.5em;border-top:1px solid #eee}.rec p{margin:.2em 0;font-size:12px}
figure{margin:0}figcaption{font-size:12px;color:#555}img.px{image-rendering:pixelated}
.ph{width:128px;height:128px;border:1px dashed #aaa;color:#888;font-size:12px;padding:4px}
.ph.sm{display:inline-block;width:60px;height:60px}
.worst{background:#b00;color:#fff;padding:0 4px;border-radius:3px}.warn{color:#a60}.rec:target{background:#fffbe6}
.m{font-family:monospace;font-size:12px}
table.cls img{margin:1px;vertical-align:middle}table.cls td{white-space:nowrap}
table.compare td,table.sortable td{font-variant-numeric:tabular-nums}
table.compare td:nth-child(n+3),table.sortable td:nth-child(n+2){text-align:right}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#e8e8e8}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}"""


def write_report(out_dir: Path, stages: list, run_config: dict, *, title: str = "genapps report",
                 sample: int = 6) -> tuple[Path, Path]:
    """Write ``out_dir/report.json`` and ``out_dir/report.html`` atomically; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    versions = _versions()
    stats = [summarize(st) for st in stages]
    table = per_image(stages, stats)
    entries, body, shown, e = [], [], {}, html.escape
    for i, (st, s) in enumerate(zip(stages, stats)):
        view, names = _view(st), metric_names([st])
        siblings, earlier = _folder_outputs(st)
        entries.append({"name": st.name, "task": st.task, "input_dir": st.input_dir,
                        "output_dir": st.output_dir, "config": st.config, "seconds": st.seconds,
                        "summary": st.summary, "stats": s, "main_metric": main_metric(s, view), "figures": st.figures,
                        "records": [dataclasses.asdict(r) for r in st.records],
                        "metric_labels": {k: stage_label(st, k, names) for k in s["metrics"]},
                        "earlier_outputs": [r.output for r in earlier],
                        "samples": {k: v for k, v in siblings.items() if len(v) > 1}})
        body.append(f"<h2 id='stage-{i}'>{e(st.name)} <span class='muted'>({e(st.task)})</span></h2>"
                    f"<p>{e(str(st.input_dir))} → {e(str(st.output_dir))}</p>"
                    f"<details><summary>stage config</summary>{_pre(st.config)}</details>"
                    f"<h3>Stats</h3>{_stats_html(s, names, st)}")
        if st.summary:
            body.append(f"<h3>Summary</h3>{_dict_html(st.summary, names=names)}")
        body.append(_errors_html(st))
        if st.figures:
            body.append("<h3>Figures</h3>" + "".join(_figure_html(c, p) for c, p in st.figures))
        ok = [r for r in st.records if r.status == "ok"] or [r for r in st.records if r.status == "skipped"]
        if view.by_class and ok:
            body.append(f"<h3>{e(view.input.capitalize())} | {e(view.output)} per class</h3>"
                        + _class_rows_html(st, ok))
            continue
        main = main_metric(s, view)
        covered = [r for r in st.records if r.status in ("ok", "skipped")] + earlier  # every output there
        picks, worst = _picks(covered, main, sample, names)
        if picks:
            sources = _image_sources(st)
            several = max((len(v) for v in siblings.values()), default=1)
            outs = f"{view.output} (all {several} samples)" if several > 1 else view.output
            labels = ([outs, view.input] if view.input_is_reference else [view.input, outs])
            labels += [lab for lab, _, _ in sources]
            how = f": the {len(worst)} worst by {label(main, names)}, the others spread" if worst else ""
            made = {k: sum(r.status == k for r in covered) for k in ("ok", "skipped", "earlier")}
            origin = "" if made["ok"] == len(covered) else "; " + ", ".join(
                f"{n} {what}" for what, n in (("made by this run", made["ok"]), ("resumed", made["skipped"]),
                                              ("from earlier runs", made["earlier"])) if n)
            rows = []
            for n, r in enumerate(picks):
                shown[(i, _key(st, r))] = anchor = f"s{i}-r{n}"
                rows.append(_row_html(st, r, sources, anchor, id(r) in worst, siblings))
            body.append(f"<h3>{e(' | '.join(labels)).capitalize()} ({len(picks)} of {len(covered)}{e(how)}{e(origin)})"
                        "</h3>" + "".join(rows))
    doc = {"title": title, "created": created, "versions": versions, "config": run_config, "stages": entries,
           "per_image": table}
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    write_text(json_path, json.dumps(_jsonable(doc), indent=1, allow_nan=False) + "\n")
    vers = " · ".join(f"{e(k)} {e(v)}" for k, v in versions.items())
    top = ((_compare_html(stages, stats) if len(stages) > 1 else "") + _per_image_html(table, shown)
           + (_through_html(stages, table, sample) if len(stages) > 1 else ""))
    script = f"<script>{SORT_JS}</script>" if 'class="grid sortable"' in top else ""
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{e(title)}</h1>"
            f"<p>Created {e(created)} · {len(stages)} stage(s)</p><p class='muted'>{vers}</p>"
            f"<details><summary>run config</summary>{_pre(run_config)}</details>"
            + top + "".join(body) + script + "</body></html>\n")
    write_text(html_path, page)
    log.info("report written: %s (%.1f kB), %s", html_path, len(page) / 1024, json_path)
    return json_path, html_path


# ---------------------------------------------------------------- sharded runs: parts and merge

PARTS_DIR = ".genapps-parts"  # OUT/.genapps-parts/report.shard-I-of-N.json: one per shard of a sharded run
PART_FORMAT = 1
REPORT_FILES = ("report.json", "report.html")


def part_path(out_dir: Path, shard) -> Path:
    return Path(out_dir) / PARTS_DIR / f"report.shard-{shard.index}-of-{shard.count}.json"


def _input_key(folder: Any) -> str:
    """A stage's input folder as parts compare it: resolved through links (a URL as it is)."""
    from genapps import paths

    return folder if not isinstance(folder, str) or paths.is_url(folder) else str(paths.resolve(folder))


def run_signature(stages: list[dict], inputs: list | None = None) -> str:
    """What makes report parts (and a merged report) one run's: per stage its name, task, settings
    (the stage config: options and model identity) and input folder. `stages` as report.json or a
    part holds them; `inputs` the parts' stamped input folders (default: the stages' own)."""
    inputs = inputs or [_input_key(s.get("input_dir")) for s in stages]
    rows = [[s.get("name"), s.get("task"), s.get("config"), i] for s, i in zip(stages, inputs)]
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def write_part(out_dir: Path, stages: list, run_config: dict, shard, *, title: str = "genapps report") -> Path:
    """This shard's stages and records, for a merge into one report (atomic, strict JSON), stamped
    with its stages' resolved input folders and the run signature (run_signature)."""
    from genapps import paths

    doc = _jsonable({"format": PART_FORMAT, "shard": shard.index, "count": shard.count, "title": title,
                     "config": run_config, "inputs": [_input_key(st.input_dir) for st in stages],
                     "stages": [{f.name: getattr(st, f.name) for f in dataclasses.fields(st)} for st in stages]})
    doc["run"] = run_signature(doc["stages"], doc["inputs"])
    path = part_path(out_dir, shard)
    write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n", fence=paths.Fence.of(out_dir))
    return path


def _unjson(v: Any) -> Any:
    """Inverse of _jsonable for metric values: "inf"/"-inf" back to floats, null to NaN."""
    return float(v) if v in ("inf", "-inf") else math.nan if v is None else v


def _merge_summary(summaries: list) -> Any:
    """Equal values kept; lists concatenated; differing counts (int) summed; else the first part's."""
    first = summaries[0]
    if all(s == first for s in summaries):
        return first
    if all(isinstance(s, dict) for s in summaries):
        keys = list(dict.fromkeys(k for s in summaries for k in s))
        return {k: _merge_summary([s[k] for s in summaries if k in s]) for k in keys}
    if all(isinstance(s, list) for s in summaries):
        return [v for s in summaries for v in s]
    if all(isinstance(s, int) and not isinstance(s, bool) for s in summaries):
        return sum(summaries)
    return first


RECORD_KEYS = {f.name for f in dataclasses.fields(Record)}  # input, output, status, error, metrics, seconds, warning


def _part_problem(doc: Any) -> str:
    """What makes `doc` no report part ('' when it is one)."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("format") != PART_FORMAT:
        return f"report part format {doc.get('format')!r} not supported"
    count, index = doc.get("count"), doc.get("shard")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (count, index)) or not 0 <= index < count:
        return f"shard {index!r} of {count!r} is not a shard I of N"
    stages = doc.get("stages")
    if not isinstance(stages, list) or not stages:
        return "'stages' is not a non-empty list"
    inputs = doc.get("inputs", [])
    if not isinstance(doc.get("config"), dict) or not isinstance(inputs, list) or len(inputs) not in (0, len(stages)):
        return "'config' or 'inputs' of the wrong type"
    for i, st in enumerate(stages):
        if not isinstance(st, dict):
            return f"stage {i + 1} is not a JSON object"
        wrong = [k for k, kind in (("name", str), ("task", str), ("input_dir", str), ("output_dir", str),
                                   ("config", dict), ("records", list), ("seconds", (int, float)))
                 if not isinstance(st.get(k), kind) or isinstance(st.get(k), bool)]
        wrong += [k for k, kind in (("summary", dict), ("figures", list), ("view", dict))
                  if st.get(k) is not None and not isinstance(st.get(k), kind)]
        if wrong:
            return f"stage {i + 1}: {', '.join(wrong)} missing or of the wrong type"
        for r in st["records"]:
            if (not isinstance(r, dict) or set(r) - RECORD_KEYS or not isinstance(r.get("status"), str)
                    or not isinstance(r.get("metrics") or {}, dict) or not isinstance(r.get("warning") or "", str)):
                return f"stage {st['name']}: a record is not {{{', '.join(f.name for f in dataclasses.fields(Record))}}}"
    return ""


def read_parts(dirs: list, run: str | None = None) -> tuple[list[dict], int, list[int]]:
    """The newest complete-or-not set of parts under DIR/.genapps-parts of each of `dirs`:
    (parts sorted by shard, their shard count N, the missing shard indices). A malformed part is
    a one-line ValueError naming it. With `run` (a run_signature), the parts of other runs (other
    settings or input folders) are left out, with one log line."""
    found: dict[int, dict[int, tuple[float, dict]]] = {}
    others = 0
    for folder in dirs:
        for path in sorted((Path(folder) / PARTS_DIR).glob("report.shard-*-of-*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ValueError(f"{path}: not a readable report part ({e})") from None
            problem = _part_problem(doc)
            if problem:
                raise ValueError(f"{path}: not a readable report part ({problem})")
            if run is not None and _signature(doc) != run:
                others += 1
                continue
            count, index = doc["count"], doc["shard"]
            mtime = path.stat().st_mtime
            if mtime >= found.setdefault(count, {}).get(index, (-1.0, None))[0]:
                found[count][index] = (mtime, doc)
    if others:
        log.warning("%d report part(s) of another run (other settings, model or input folder) left out; the shards "
                    "of this run replace them", others)
    if not found:
        raise FileNotFoundError(f"no report parts ({PARTS_DIR}/report.shard-I-of-N.json) in "
                                f"{', '.join(map(str, dirs))}")
    count = max(found, key=lambda n: max(m for m, _ in found[n].values()))  # the newest run's shard count
    parts = [found[count][i][1] for i in sorted(found[count])]
    return parts, count, [i for i in range(count) if i not in found[count]]


def _signature(part: dict) -> str:
    return run_signature(part["stages"], part.get("inputs"))


def _differs(a: dict, b: dict) -> str:
    """The keys whose values differ between two stage configs ("model_info, scale")."""
    keys = [k for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
    return ", ".join(map(str, keys[:4])) + (", ..." if len(keys) > 4 else "")


def merge_parts(parts: list[dict]) -> list:
    """One StageResult per stage from the parts of every shard: records of all shards (sorted by
    input, as one process lists them), wall seconds of the slowest shard, summaries merged. Parts
    of different stages, settings or input folders are a one-line ValueError."""
    from genapps.records import StageResult

    names = [[s["name"] for s in p["stages"]] for p in parts]
    if any(n != names[0] for n in names):
        raise ValueError(f"the shards ran different stages ({names[0]} vs {next(n for n in names if n != names[0])})")
    stages = []
    for i, name in enumerate(names[0]):
        docs = [p["stages"][i] for p in parts]
        inputs = [(p.get("inputs") or [None] * len(names[0]))[i] or _input_key(d["input_dir"])
                  for p, d in zip(parts, docs)]
        if any(x != inputs[0] for x in inputs):
            raise ValueError(f"stage {name}: the shards read different input folders ({inputs[0]} vs "
                             f"{next(x for x in inputs if x != inputs[0])}); merge the parts of one run only")
        configs = [d["config"] for d in docs]
        odd = next((c for c in configs if c != configs[0]), None)
        if odd is not None:
            raise ValueError(f"stage {name}: the shards ran with different settings ({_differs(configs[0], odd)}); "
                             f"rerun them alike")
        try:
            records = [Record(**(r | {"metrics": {k: _unjson(v) for k, v in (r.get("metrics") or {}).items()}}))
                       for d in docs for r in d["records"]]
            records.sort(key=lambda r: (str(r.input or ""), str(r.output or "")))
            first = docs[0]
            stages.append(StageResult(first["name"], first["task"], first["input_dir"], first["output_dir"],
                                      first["config"], records, max(float(d["seconds"]) for d in docs),
                                      _merge_summary([d.get("summary") or {} for d in docs]),
                                      [tuple(f) for f in first.get("figures") or []], View.from_dict(first.get("view"))))
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise ValueError(f"stage {name}: a report part is malformed ({type(e).__name__}: {e})") from None
    return stages


def merge_reports(dirs: list, out_dir: Path | None = None) -> tuple[list, Path, Path]:
    """`genapps report merge DIR...`: one report.json/html (in `out_dir`, default the first DIR)
    from the parts of every shard: (merged stages, json path, html path). A missing shard, or
    parts of different runs (settings, model, input folder), is a one-line ValueError."""
    parts, count, missing = read_parts(dirs)
    if missing:
        raise ValueError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} have not written their part yet "
                         f"(found {len(parts)} of {count}); run them (resume skips finished files) and merge again")
    return _merged(parts, count, Path(out_dir or dirs[0]))


def _merged(parts: list[dict], count: int, out_dir: Path) -> tuple[list, Path, Path]:
    stages = merge_parts(parts)
    config = parts[0]["config"] | {"shards": count}
    return stages, *write_report(out_dir, stages, config, title=parts[0].get("title") or "genapps report")


def _drop_stale_report(out_dir: Path, run: str) -> None:
    """Remove OUT/report.json/html when they report another run (other settings, model or input):
    they no longer describe OUTPUT once a shard of this run rewrote its files."""
    path = Path(out_dir) / "report.json"
    try:
        stages = json.loads(path.read_text(encoding="utf-8")).get("stages")
        stale = isinstance(stages, list) and all(isinstance(s, dict) for s in stages) and run_signature(stages) != run
    except (OSError, ValueError, AttributeError):
        return  # none, or not genapps's: left alone
    if stale:
        for name in REPORT_FILES:
            (Path(out_dir) / name).unlink(missing_ok=True)
        log.warning("%s: removed report.json/html of an earlier run with other settings, model or input folder; the "
                    "report is merged again once every shard has run with these", out_dir)


def write_sharded(out_dir: Path, stages: list, run_config: dict, *, title: str = "genapps report") -> Path:
    """The report step of a sharded run (distributed.current() active): write this shard's part
    (removing a merged report of another run); under torchrun wait for every rank and let rank 0
    merge; an independent shard (--shard) merges when it finds every part of its run (so the last
    shard to finish writes the report; parts of other runs are left out). Returns report.html, or
    this part's path while other shards are still missing."""
    from genapps import distributed

    shard = distributed.current()
    part = write_part(out_dir, stages, run_config, shard, title=title)
    run = _signature(json.loads(part.read_text(encoding="utf-8")))
    _drop_stale_report(out_dir, run)
    grouped = distributed.init_process_group(timeout=distributed.BATCH_TIMEOUT)
    distributed.barrier()  # every rank's part is written
    try:
        if grouped and not distributed.is_main():
            return part
        parts, count, missing = read_parts([out_dir], run=run)
        if missing or count != shard.count:
            log.info("report part %s written; %d of %d shard(s) still missing: the last one to finish writes "
                     "the report, or run: genapps report merge %s", part, len(missing), count, out_dir)
            return part
        try:
            return _merged(parts, count, Path(out_dir))[2]
        except ValueError as e:  # an independent shard found another run's parts: the others will merge
            if grouped:
                raise
            log.warning("report part %s written; not merged yet (%s)", part, e)
            return part
    finally:
        distributed.barrier()  # nobody exits (and lets torchrun stop the group) before rank 0 has merged
