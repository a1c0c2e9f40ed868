"""Daily-use overhead benchmarks (issue 30): genapps's folder loop against a bare PIL loop, a
rerun with nothing to do, and the peak memory of a big model on a 1-MP photo.

    python scripts/bench_daily_use.py --bsd68 ../shared/datasets/natural/val/BSD68 --repeat 2 \
        --out benchmarks/daily_use.json
    python scripts/bench_daily_use.py --x4plus-image photo.png   # realesrgan-x4plus peak RSS (slow)

Every run is a fresh process (`python -m genapps ...`, as a user runs it), timed for wall and CPU
(user + sys of the child, from its rusage) with its peak RSS; runs of the two sides alternate so
that a changing machine load hits both. The machine's load average is recorded beside each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

BARE_PIL = """
import sys
from pathlib import Path
from PIL import Image
src, dst, scale = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
dst.mkdir(parents=True, exist_ok=True)
for p in sorted(src.iterdir()):
    im = Image.open(p)
    im.load()
    im.resize((im.width * scale, im.height * scale), Image.BICUBIC).save(dst / (p.stem + ".png"))
"""


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd` in a child process: wall s, CPU s (user + sys), peak RSS MB, load average before."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err_file:  # not a pipe: a chatty child would block on a full one
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "load": round(load, 2)}


def genapps(*args: str) -> list[str]:
    return [PY, "-m", "genapps", "-q", *map(str, args)]


def env() -> dict:
    return os.environ | {"PYTHONPATH": str(ROOT)}


def bicubic_vs_pil(bsd68: Path, tmp: Path, n: int, repeat: int) -> dict:
    """genapps upscale -m bicubic --scale 4 --no-report over the first n photos vs the bare PIL loop."""
    src = tmp / "bsd"
    src.mkdir()
    for p in sorted(bsd68.iterdir())[:n]:
        os.symlink(p.resolve(), src / p.name)
    runs = {"pil": [], "genapps": []}
    for _ in range(repeat):
        for side in ("pil", "genapps"):
            out = tmp / f"out_{side}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [PY, "-c", BARE_PIL, str(src), str(out), "4"] if side == "pil" else \
                genapps("upscale", src, out, "-m", "bicubic", "--scale", "4", "--no-report")
            runs[side].append(timed(cmd, env()))
    ratio = [g["wall_s"] / p["wall_s"] for p, g in zip(runs["pil"], runs["genapps"])]
    cpu = [g["cpu_s"] / p["cpu_s"] for p, g in zip(runs["pil"], runs["genapps"])]
    return runs | {"wall_ratio": [round(r, 3) for r in ratio], "cpu_ratio": [round(r, 3) for r in cpu]}


MINIMAL_SR = """
import sys
from pathlib import Path
import numpy as np, torch
from PIL import Image
from genapps.tasks.upscale.task import load_model
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
model, _ = load_model("sr-x4")
with torch.inference_mode():
    for p in sorted(src.iterdir()):
        x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        y = model(x).clamp(0, 1)[0].mul(255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(y).save(dst / (p.stem + ".png"))
"""


def bundled_vs_minimal(bsd68: Path, tmp: Path, n: int, repeat: int) -> dict:
    """`genapps upscale -m sr-x4 --no-report` over n x4-downscaled BSD68 photos vs a minimal script
    running the same net (load, forward, save: no tiling, hashing, manifest), fresh processes."""
    from PIL import Image

    src = tmp / "lr"
    src.mkdir()
    for p in sorted(bsd68.iterdir())[:n]:
        im = Image.open(p).convert("RGB")
        im.resize((im.width // 4, im.height // 4), Image.BICUBIC).save(src / (p.stem + ".png"))
    runs = {"minimal": [], "genapps": []}
    for _ in range(repeat):
        for side in ("minimal", "genapps"):
            out = tmp / f"sr_{side}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [PY, "-c", MINIMAL_SR, str(src), str(out)] if side == "minimal" else \
                genapps("upscale", src, out, "-m", "sr-x4", "--no-report")
            runs[side].append(timed(cmd, env()))
    speed = [m["wall_s"] / g["wall_s"] for m, g in zip(runs["minimal"], runs["genapps"])]
    return runs | {"speed_vs_minimal": [round(r, 3) for r in speed]}


def rerun_nothing_to_do(tmp: Path, n: int, repeat: int) -> dict:
    """A rerun over n small files (64x48 PNG) whose outputs are all done, with and without a report."""
    import numpy as np
    from PIL import Image

    src = tmp / "small"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(src / f"{i:03d}.png")
    old = time.time() - 3600  # inputs made before the first run, as a user's photos are
    for p in src.iterdir():
        os.utime(p, (old, old))
    out = tmp / "small_out"
    first = timed(genapps("upscale", src, out, "-m", "bicubic", "-s", "2"), env())
    runs = {"first_run": first, "no_report": [], "report": [], "import_torch": []}
    for _ in range(repeat):
        runs["no_report"].append(timed(genapps("upscale", src, out, "-m", "bicubic", "-s", "2", "--no-report"), env()))
        runs["report"].append(timed(genapps("upscale", src, out, "-m", "bicubic", "-s", "2"), env()))
        runs["import_torch"].append(timed([PY, "-c", "import torch"]))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bsd68", type=Path, default=ROOT.parent / "shared/datasets/natural/val/BSD68")
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only-minimal", action="store_true", help="only the bundled-model vs minimal-script runs")
    ap.add_argument("--x4plus-image", type=Path, help="also run realesrgan-x4plus on this image (slow)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/daily_use.json")
    args = ap.parse_args()
    result = {"cores": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    with tempfile.TemporaryDirectory(prefix="bench-daily-") as tmp:
        tmp = Path(tmp)
        result["bundled_vs_minimal"] = bundled_vs_minimal(args.bsd68, tmp, args.photos, args.repeat)
        print(json.dumps(result["bundled_vs_minimal"], indent=1), flush=True)
        if args.only_minimal:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
            return
        result["bicubic_vs_pil"] = bicubic_vs_pil(args.bsd68, tmp, args.photos, args.repeat)
        print(json.dumps(result["bicubic_vs_pil"], indent=1), flush=True)
        result["rerun_nothing_to_do"] = rerun_nothing_to_do(tmp, args.small, args.repeat + 1)
        print(json.dumps(result["rerun_nothing_to_do"], indent=1), flush=True)
        if args.x4plus_image:
            (tmp / "x4").mkdir()
            os.symlink(args.x4plus_image.resolve(), tmp / "x4" / args.x4plus_image.name)
            result["x4plus"] = timed(genapps("upscale", tmp / "x4", tmp / "x4out", "-m", "realesrgan-x4plus",
                                             "--no-report"), env() | {"OMP_NUM_THREADS": "1"})
            print(json.dumps(result["x4plus"], indent=1), flush=True)
    result["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
