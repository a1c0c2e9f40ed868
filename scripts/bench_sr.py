"""Super-resolution benchmark: Y-PSNR/SSIM on Set5 and BSD68 at x2/x4, sharpness, speed, GFLOP/s.

Protocol (as REFERENCE-POINTS.md and the SR literature): HR cropped to a multiple of the scale,
LR by PIL's antialiased bicubic, output rounded to 8 bits, BT.601 Y channel, `scale` px of
border shaved. Bicubic is PIL's (MATLAB-like, a = -0.5). Speed: output megapixels per second on
a 128x128 LR input, 2 threads, channels_last, inference mode, median of 5 runs.

    python scripts/bench_sr.py --val ../shared/datasets/natural/val --out benchmarks/sr

Writes OUT.json and OUT.md, and records each bundled model's numbers in its weights card
(genapps/weights/NAME.json, shown by `genapps info`).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from genapps import io
from genapps.tasks.upscale import benchmark_pairs, load_model, sr_measure, upscale_tensor

log = logging.getLogger("bench_sr")


def pil_bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    arr = (lr * 255).round().byte().permute(1, 2, 0).numpy()
    up = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.BICUBIC)
    return torch.from_numpy(np.asarray(up).copy()).permute(2, 0, 1).float() / 255


def hf_energy(img: torch.Tensor) -> float:
    """Mean squared Laplacian of the Y channel: how much fine detail an image carries."""
    y = (img * torch.tensor([65.481, 128.553, 24.966]).view(3, 1, 1)).sum(0, keepdim=True) / 255
    k = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float32).view(1, 1, 3, 3)
    return float(F.conv2d(y[None], k).pow(2).mean())


def score(upscaler, pairs, scale: int) -> dict:
    measure = sr_measure(scale)
    rows, sharp = [], []
    for _, lr, hr in pairs:
        sr = upscaler(lr)
        rows.append(measure(sr, hr))
        sharp.append(hf_energy(sr) / hf_energy(hr))
    return {"psnr_y": statistics.fmean(r["psnr_y"] for r in rows),
            "ssim_y": statistics.fmean(r["ssim_y"] for r in rows),
            "hf_ratio": statistics.fmean(sharp)}


def speed(model, scale: int) -> dict:
    torch.set_num_threads(2)
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 128, 128).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        with FlopCounterMode(display=False) as counter:
            model(x)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    mp = 128 * 128 * scale * scale / 1e6
    return {"mp_per_s": mp / t, "gflops_per_s": counter.get_total_flops() / t / 1e9,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", default="../shared/datasets/natural/val")
    ap.add_argument("--out", default="benchmarks/sr")
    ap.add_argument("--models", nargs="*", help="bundled names or files (default: all bundled SR weights)")
    ap.add_argument("--datasets", nargs="*", default=["Set5", "BSD68"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    names = args.models or [n for n in io.bundled_weights() if n.startswith("sr")]
    results = []
    for scale in (2, 4):
        for dataset in args.datasets:
            pairs = benchmark_pairs(Path(args.val) / dataset, scale)
            row = {"dataset": dataset, "scale": scale, "model": "bicubic (PIL)"}
            results.append(row | score(lambda lr: pil_bicubic_up(lr, scale), pairs, scale))
            log.info("%s", results[-1])
            for name in names:
                model, info = load_model(name)
                if info["scale"] != scale:
                    continue
                with torch.inference_mode():
                    r = score(lambda lr: upscale_tensor(model, lr[None], scale)[0], pairs, scale)
                results.append({"dataset": dataset, "scale": scale, "model": name} | r)
                log.info("%s", results[-1])
    speeds = {}
    for name in names:
        model, info = load_model(name)
        speeds[name] = speed(model, info["scale"]) | {"scale": info["scale"]}
        log.info("%s %s", name, speeds[name])
    out = Path(args.out)
    io.write_json(out.with_suffix(".json"), {"results": results, "speed": speeds})
    lines = ["| dataset | scale | model | Y-PSNR | Y-SSIM | HF energy / HR |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | x{r['scale']} | {r['model']} | {r['psnr_y']:.2f} | {r['ssim_y']:.4f} | "
              f"{r['hf_ratio']:.2f} |" for r in results]
    lines += ["", "| model | params | output MP/s (128 px LR, 2 threads) | achieved GFLOP/s |", "|---|---|---|---|"]
    lines += [f"| {n} | {s['params']:,} | {s['mp_per_s']:.2f} | {s['gflops_per_s']:.0f} |" for n, s in speeds.items()]
    io.write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    for name in (n for n in names if n in io.bundled_weights()):
        card_path = io.WEIGHTS_DIR / f"{name}.json"
        card = io.bundled_card(name)
        card["benchmark"] = {f"{r['dataset']}_x{r['scale']}_psnr_y": round(r["psnr_y"], 3)
                             for r in results if r["model"] == name}
        card["benchmark"] |= {f"{r['dataset']}_x{r['scale']}_ssim_y": round(r["ssim_y"], 4)
                              for r in results if r["model"] == name}
        card["benchmark"]["mp_per_s"] = round(speeds[name]["mp_per_s"], 2)
        io.write_json(card_path, card)


if __name__ == "__main__":
    main()
