"""Scaling (issue 30): N small images through a 3-stage pipeline, for several N.

    python scripts/bench_scaling.py --counts 250 500 1000 2000 --out benchmarks/scaling.json

Each N: N crops (64x48) cut from BSD68 photos, then `genapps run` of a pipeline downscale x2 ->
upscale bicubic x2 (measured against the crops) -> upscale sr-x2 (measured), in a fresh process
with OMP_NUM_THREADS=1, timed for wall and CPU seconds with its peak RSS, and the size of what
the report wrote (report.html and its image folder). Linear scaling = seconds per image flat
across N; flat memory = peak RSS not growing with N; a bounded report = its size flat beyond the
thumbnail sample.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_daily_use import env, timed  # noqa: E402  (the same fresh-process timing)

PIPELINE = """name: scaling
input: {input}
output: {output}
stages:
  - name: lr
    task: downscale
    options: {{scale: 2}}
  - name: bicubic
    task: upscale
    input: lr
    options: {{model: bicubic, scale: 2, reference: {input}}}
  - name: sr-x2
    task: upscale
    input: lr
    options: {{model: sr-x2, scale: 2, reference: {input}}}
"""


def make_crops(src: Path, out: Path, n: int) -> None:
    from PIL import Image

    out.mkdir(parents=True)
    photos = sorted(src.iterdir())
    for i in range(n):
        im = Image.open(photos[i % len(photos)]).convert("RGB")
        k = i // len(photos)  # a different crop per pass over the photos
        x, y = (k * 37) % (im.width - 64), (k * 23) % (im.height - 48)
        im.crop((x, y, x + 64, y + 48)).save(out / f"{i:05d}.png")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bsd68", type=Path, default=ROOT.parent / "shared/datasets/natural/val/BSD68")
    ap.add_argument("--counts", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/scaling.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        for n in args.counts:
            base = Path(tmp) / str(n)
            make_crops(args.bsd68, base / "in", n)
            yaml = base / "p.yaml"
            yaml.write_text(PIPELINE.format(input=base / "in", output=base / "run"))
            run = timed([sys.executable, "-m", "genapps", "-q", "run", str(yaml)], env() | {"OMP_NUM_THREADS": "1"})
            report = [p for p in (base / "run").rglob("report.html")]
            report_bytes = sum(p.stat().st_size for p in report)
            report_dirs = [d for d in (base / "run").rglob("*") if d.is_dir() and "report" in d.name]
            row = {"images": n, **run, "s_per_image": round(run["wall_s"] / n, 4),
                   "cpu_s_per_image": round(run["cpu_s"] / n, 4), "report_html_bytes": report_bytes,
                   "report_assets_bytes": sum(folder_bytes(d) for d in report_dirs),
                   "outputs_bytes": folder_bytes(base / "run"), "time": time.strftime("%H:%M:%S")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
