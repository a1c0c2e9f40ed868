"""Run reports: per-stage statistics plus one strict ``report.json`` and one
self-contained ``report.html`` (inline CSS, images as base64 data URIs).

Conventions:
* Metric statistics use only *ok* records with finite values; +/-inf values
  (e.g. PSNR of identical images) and NaN are counted apart ("inf", "nan").
* In report.json, +inf/-inf are written as the strings "inf"/"-inf" and NaN as
  null, so the file is strict JSON (no NaN/Infinity tokens).
* Throughput is ok records per second of their summed ``Record.seconds``
  (falling back to the stage wall time); if ok records carry the metric
  "output_mp" (output megapixels), its sum and output MP/s are reported too.
* Before/after thumbnails show an evenly spread sample of ok records (skipped
  ones when a resumed run has no ok record).
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import logging
import math
import numbers
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from genapps.io import write_text

log = logging.getLogger(__name__)

THUMB = 256      # thumbnail long side, px
FIGURE_W = 768   # max figure width, px
TINY = 64        # sources with long side <= this are nearest-upscaled and kept PNG


def summarize(stage) -> dict:
    """Counts, per-metric mean/median (finite ok values), seconds and throughput."""
    recs = stage.records
    ok = [r for r in recs if r.status == "ok"]
    stats: dict[str, Any] = {"total": len(recs)}
    stats.update({s: sum(r.status == s for r in recs) for s in ("ok", "error", "skipped")})
    metrics, finite = {}, {}
    for name in sorted({k for r in ok for k in r.metrics}):
        vals = [float(r.metrics[name]) for r in ok if isinstance(r.metrics.get(name), numbers.Real)]
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


def _thumb(im: Image.Image) -> tuple[Image.Image, bool]:
    """Fit in THUMB px; tiny images are integer-upscaled with nearest neighbour."""
    w, h = im.size
    if max(w, h) > THUMB:
        im = im.copy()
        im.thumbnail((THUMB, THUMB), Image.LANCZOS)
    elif max(w, h) * 2 <= THUMB:
        f = THUMB // max(w, h)
        im = im.resize((w * f, h * f), Image.NEAREST)
    return im, max(w, h) <= TINY


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


def _dict_html(d: Any, depth: int = 0) -> str:
    if not isinstance(d, dict):
        return _pre(d)
    if not d:
        return '<p class="muted">(empty)</p>'
    rows = []
    for k, v in d.items():
        if isinstance(v, dict) and depth < 3:
            cell = _dict_html(v, depth + 1)
        elif isinstance(v, (list, tuple)) and len(v) <= 20 and all(isinstance(x, (int, float, str)) for x in v):
            cell = html.escape(", ".join(_fmt(x) for x in v))
        elif isinstance(v, (dict, list, tuple)):
            cell = _pre(v)
        else:
            cell = html.escape(_fmt(v))
        rows.append(f"<tr><th>{html.escape(str(k))}</th><td>{cell}</td></tr>")
    return '<table class="kv">' + "".join(rows) + "</table>"


def _stats_html(st: dict) -> str:
    head = {k: st.get(k) for k in ("total", "ok", "error", "skipped", "seconds", "processing_seconds",
                                     "images_per_s", "output_mp", "mp_per_s") if k in st}
    out = _dict_html(head)
    if st["metrics"]:
        cols = ("n", "mean", "median", "inf", "nan")
        rows = "".join(f"<tr><th>{html.escape(n)}</th>"
                       + "".join(f"<td>{html.escape(_fmt(m[c]))}</td>" for c in cols) + "</tr>"
                       for n, m in st["metrics"].items())
        out += ('<table class="grid"><tr><th>metric</th><th>n (finite)</th><th>mean</th>'
                f"<th>median</th><th>inf</th><th>nan</th></tr>{rows}</table>")
    return out


def _pair_html(stage, rec) -> str:
    cells = []
    for label, p, base in (("before", rec.input, stage.input_dir), ("after", rec.output, stage.output_dir)):
        path = _resolve(p, base)
        im = _load(path) if path else None
        name = html.escape(path.name if path else "(none)")
        if im is None:
            cells.append((label, f'<div class="ph">{label}: missing or unreadable</div>', 0, name))
            continue
        th, tiny = _thumb(im)
        cells.append((label, _data_uri(th, png=tiny), th.height, f"{name} ({im.width}×{im.height})"))
    h = max(c[2] for c in cells)
    parts = []
    for label, uri, th_h, cap in cells:
        if th_h == 0:
            parts.append(f"<figure>{uri}<figcaption>{cap}</figcaption></figure>")
        else:  # same display height; browser upscaling of the smaller one stays nearest-neighbour
            cls = ' class="px"' if th_h < h else ""
            parts.append(f'<figure><img{cls} src="{uri}" style="height:{h}px" alt="{label}">'
                         f"<figcaption>{label}: {cap}</figcaption></figure>")
    metr = " · ".join(f"{html.escape(k)} {html.escape(_fmt(v))}"
                      for k, v in rec.metrics.items() if k != "output_mp")
    return f'<div class="pair">{"".join(parts)}<div class="m">{metr}</div></div>'


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
pre{background:#f7f7f7;padding:.5em;overflow:auto;max-height:30em}.muted{color:#888}
.err{color:#b00}.pair{display:flex;gap:1em;align-items:flex-end;margin:1em 0;flex-wrap:wrap}
figure{margin:0}figcaption{font-size:12px;color:#555}img.px{image-rendering:pixelated}
.ph{width:128px;height:128px;border:1px dashed #aaa;color:#888;font-size:12px;padding:4px}
.m{font-family:monospace;font-size:12px}"""


def write_report(out_dir: Path, stages: list, run_config: dict, *, title: str = "genapps report",
                 sample: int = 6) -> tuple[Path, Path]:
    """Write ``out_dir/report.json`` and ``out_dir/report.html`` atomically; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    versions = _versions()
    entries, body, e = [], [], html.escape
    for st in stages:
        stats = summarize(st)
        entries.append({"name": st.name, "task": st.task, "input_dir": st.input_dir,
                        "output_dir": st.output_dir, "config": st.config, "seconds": st.seconds,
                        "summary": st.summary, "stats": stats, "figures": st.figures,
                        "records": [dataclasses.asdict(r) for r in st.records]})
        body.append(f"<h2>{e(st.name)} <span class='muted'>({e(st.task)})</span></h2>"
                    f"<p>{e(str(st.input_dir))} → {e(str(st.output_dir))}</p>"
                    f"<details><summary>stage config</summary>{_pre(st.config)}</details>"
                    f"<h3>Stats</h3>{_stats_html(stats)}")
        if st.summary:
            body.append(f"<h3>Summary</h3>{_dict_html(st.summary)}")
        errs = [r for r in st.records if r.status == "error"]
        if errs:
            body.append("<h3>Errors</h3><ul class='err'>" + "".join(
                f"<li><code>{e(str(r.input))}</code>: {e(str(r.error))}</li>" for r in errs) + "</ul>")
        if st.figures:
            body.append("<h3>Figures</h3>" + "".join(_figure_html(c, p) for c, p in st.figures))
        ok = [r for r in st.records if r.status == "ok"] or [r for r in st.records if r.status == "skipped"]
        picks = _sample(ok, sample)
        if picks:
            body.append(f"<h3>Before / after ({len(picks)} of {len(ok)})</h3>"
                        + "".join(_pair_html(st, r) for r in picks))
    doc = {"title": title, "created": created, "versions": versions, "config": run_config, "stages": entries}
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    write_text(json_path, json.dumps(_jsonable(doc), indent=1, allow_nan=False) + "\n")
    vers = " · ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in versions.items())
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>Created {html.escape(created)} · {len(stages)} stage(s)</p><p class='muted'>{vers}</p>"
            f"<details><summary>run config</summary>{_pre(run_config)}</details>"
            + "".join(body) + "</body></html>\n")
    write_text(html_path, page)
    log.info("report written: %s (%.1f kB), %s", html_path, len(page) / 1024, json_path)
    return json_path, html_path
