"""What `genapps upscale -x` (test-time augmentation: the mean over the 8 flips and transposes)
buys per model, on the SR protocol of bench_sr.py (LR by PIL bicubic, 8-bit output, BT.601 Y-PSNR/
SSIM with `scale` px of border shaved) and its CPU cost.

    python scripts/bench_tta.py --models sr-x2 sr-x3 sr-x4 span-x4 --out benchmarks/tta

Writes OUT.json and OUT.md: per model and set, Y-PSNR/SSIM without and with -x, and seconds per
output megapixel of both (1 thread unless --threads). Only reported: nothing is selected on these sets.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from genapps import io
from genapps.nn.winograd import accelerate
from genapps.tasks.upscale.task import benchmark_pairs, load_model, sr_measure, upscale_tensor

log = logging.getLogger("bench_tta")


def score(model, pairs, scale: int, tta: bool) -> dict[str, float]:
    measure, rows, seconds, mp = sr_measure(scale), [], 0.0, 0.0
    for _, lr, hr in pairs:
        t0 = time.process_time()
        with torch.inference_mode():
            sr = upscale_tensor(model, lr[None], scale, tta=tta)[0]
        seconds += time.process_time() - t0
        mp += hr.shape[1] * hr.shape[2] / 1e6
        rows.append(measure(sr, hr))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"cpu_seconds_per_output_mp": seconds / mp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--val", default="../shared/datasets/natural/val")
    ap.add_argument("--models", nargs="+", default=["sr-x2", "sr-x3", "sr-x4"])
    ap.add_argument("--datasets", nargs="+", default=["Set5", "BSD68"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/tta")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    results = {"threads": args.threads, "models": {}}
    for name in args.models:
        model, info = load_model(name, 4)
        scale = info.scale
        model = accelerate(model.to(memory_format=torch.channels_last))  # as `genapps upscale` runs it on CPU
        for ds in args.datasets:
            pairs = benchmark_pairs(Path(args.val) / ds, scale)
            row = {"scale": scale, "plain": score(model, pairs, scale, False), "tta": score(model, pairs, scale, True)}
            results["models"].setdefault(name, {})[ds] = row
            log.info("%s %s: %s", name, ds, row)
    out = Path(args.out)
    io.write_json(out.with_suffix(".json"), results)
    lines = ["| model | set | Y-PSNR | with -x | Y-SSIM | with -x | CPU s / output MP | with -x |", "|---|---|---|---|---|---|---|---|"]
    for name, sets in results["models"].items():
        for ds, r in sets.items():
            p, t = r["plain"], r["tta"]
            lines.append(f"| `{name}` | {ds} | {p['psnr_y']:.2f} | **{t['psnr_y']:.2f}** ({t['psnr_y'] - p['psnr_y']:+.2f}) | "
                         f"{p['ssim_y']:.4f} | {t['ssim_y']:.4f} | {p['cpu_seconds_per_output_mp']:.2f} | "
                         f"{t['cpu_seconds_per_output_mp']:.2f} |")
    io.write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
