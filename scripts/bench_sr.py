"""Super-resolution benchmark: Y-PSNR/SSIM on Set5 and BSD68 at x2/x3/x4, sharpness, perceptual
quality, speed, GFLOP/s against the measured 3x3-convolution peak.

Protocol (as REFERENCE-POINTS.md and the SR literature): HR cropped to a multiple of the scale,
LR by PIL's antialiased bicubic, output rounded to 8 bits, BT.601 Y channel, `scale` px of
border shaved. Bicubic is PIL's (MATLAB-like, a = -0.5). Sharpness: the mean squared Laplacian
of Y over the HR's (1 = as much fine detail as the original). Perceptual: HaarPSI (higher is
better, 1 = identical) and GMSD (lower is better) of piq, full-reference, no learned weights
(`pip install -e .[bench]`; left out when piq is missing).

Speed: output megapixels per second on a 128x128 LR input, --threads threads (default 2),
channels_last, inference mode, median of --repeat runs. The peak is measured by the same run:
a stack of 12 plain 3x3 convolutions of the model's width on the same 128x128 input, timed
interleaved with the model (so a loaded machine slows both alike); `of peak` = the model's
achieved GFLOP/s over it. --profile adds where each model's time goes (per operator).

    python scripts/bench_sr.py --val ../shared/datasets/natural/val --out benchmarks/sr

Writes OUT.json and OUT.md, and records each bundled model's numbers in its weights card
(genapps/weights/NAME.json, shown by `genapps info`) unless --no-cards.
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
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from genapps import io, weights
from genapps.tasks.upscale.task import benchmark_pairs, load_model, sr_measure, upscale_tensor

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


def perceptual(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict:
    """HaarPSI and GMSD of piq on RGB (8-bit rounded, `scale` px border shaved); {} without piq."""
    try:
        import piq
    except ImportError:
        return {}
    sr = (sr.clamp(0, 1) * 255).round()[None, :, scale:-scale, scale:-scale] / 255
    hr = hr[None, :, scale:-scale, scale:-scale]
    return {"haarpsi": float(piq.haarpsi(sr, hr, data_range=1.0)), "gmsd": float(piq.gmsd(sr, hr, data_range=1.0))}


def score(upscaler, pairs, scale: int) -> dict:
    measure = sr_measure(scale)
    rows = []
    for _, lr, hr in pairs:
        sr = upscaler(lr)
        rows.append(measure(sr, hr) | {"hf_ratio": hf_energy(sr) / hf_energy(hr)} | perceptual(sr, hr, scale))
    return {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}


def conv_stack(width: int, depth: int = 12) -> nn.Module:
    """The peak reference: `depth` plain 3x3 convolutions width -> width (no activations)."""
    return nn.Sequential(*[nn.Conv2d(width, width, 3, padding=1) for _ in range(depth)]).eval()


def model_width(model: nn.Module) -> int:
    """The most common output width of the model's 3x3 convolutions (its feature width)."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    return statistics.mode(widths) if widths else 64


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def speed(model, scale: int, threads: int = 2, repeat: int = 5, size: int = 128) -> dict:
    """Output MP/s and achieved GFLOP/s of `model` on a (1, 3, size, size) input, and the same for
    a plain 3x3 convolution stack of its width, timed interleaved (median of `repeat` each)."""
    torch.set_num_threads(threads)
    model = model.to(memory_format=torch.channels_last)
    width = model_width(model)
    peak_net = conv_stack(width).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, size, size).to(memory_format=torch.channels_last)
    f = torch.rand(1, width, size, size).to(memory_format=torch.channels_last)
    runs = {"model": lambda: model(x), "peak": lambda: peak_net(f)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        flops = {k: _flops(fn) for k, fn in runs.items()}  # also the warm-up
        for _ in range(repeat):
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    t = {k: statistics.median(v) for k, v in times.items()}
    gflops = {k: flops[k] / t[k] / 1e9 for k in runs}
    return {"mp_per_s": size * size * scale * scale / 1e6 / t["model"], "gflops_per_s": gflops["model"],
            "peak_gflops_per_s": gflops["peak"], "of_peak": gflops["model"] / gflops["peak"], "peak_width": width,
            "threads": threads, "params": sum(p.numel() for p in model.parameters())}


def time_split(model, threads: int = 2, repeat: int = 5, size: int = 128) -> dict[str, float]:
    """Share of the model's CPU time per operator (torch.profiler, self time, `repeat` runs)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, size, size).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeat):
                model(x)
    rows = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(rows.values())
    return {k: v / total for k, v in sorted(rows.items(), key=lambda kv: -kv[1]) if v / total >= 0.002}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", default="../shared/datasets/natural/val")
    ap.add_argument("--out", default="benchmarks/sr")
    ap.add_argument("--models", nargs="*", help="bundled names or files (default: all bundled SR weights)")
    ap.add_argument("--datasets", nargs="*", default=["Set5", "BSD68"])
    ap.add_argument("--scales", nargs="*", type=int, default=[2, 3, 4])
    ap.add_argument("--threads", type=int, default=2, help="threads of the speed runs (and the scoring)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each model and of its peak stack")
    ap.add_argument("--profile", action="store_true", help="add each model's per-operator time split")
    ap.add_argument("--no-cards", action="store_true", help="do not write the numbers into the bundled cards")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    names = args.models or [n for n in weights.bundled_weights() if n.startswith("sr")]
    results = []
    for scale in args.scales:
        for dataset in args.datasets:
            pairs = benchmark_pairs(Path(args.val) / dataset, scale)
            row = {"dataset": dataset, "scale": scale, "model": "bicubic (PIL)"}
            results.append(row | score(lambda lr: pil_bicubic_up(lr, scale), pairs, scale))
            log.info("%s", results[-1])
            for name in names:
                model, info = load_model(name)
                if info.scale != scale:
                    continue
                with torch.inference_mode():
                    r = score(lambda lr: upscale_tensor(model, lr[None], scale)[0], pairs, scale)
                results.append({"dataset": dataset, "scale": scale, "model": name} | r)
                log.info("%s", results[-1])
    speeds, splits = {}, {}
    for name in names:
        model, info = load_model(name)
        speeds[name] = speed(model, info.scale, args.threads, args.repeat) | {"scale": info.scale}
        log.info("%s %s", name, speeds[name])
        if args.profile:
            splits[name] = time_split(model, args.threads, args.repeat)
            log.info("%s time split %s", name, {k: round(v, 3) for k, v in splits[name].items()})
    out = Path(args.out)
    io.write_json(out.with_suffix(".json"), {"results": results, "speed": speeds, "time_split": splits,
                                             "threads": args.threads})
    lines = ["| dataset | scale | model | Y-PSNR | Y-SSIM | HF energy / HR | HaarPSI | GMSD |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | x{r['scale']} | {r['model']} | {r['psnr_y']:.2f} | {r['ssim_y']:.4f} | "
              f"{r['hf_ratio']:.2f} | {r.get('haarpsi', float('nan')):.4f} | {r.get('gmsd', float('nan')):.4f} |"
              for r in results]
    lines += ["", f"| model | params | output MP/s (128 px LR, {args.threads} threads) | achieved GFLOP/s | "
              f"3x3-conv peak GFLOP/s (same width, same run) | of peak |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {s['params']:,} | {s['mp_per_s']:.2f} | {s['gflops_per_s']:.0f} | "
              f"{s['peak_gflops_per_s']:.0f} ({s['peak_width']} ch) | {s['of_peak']:.0%} |" for n, s in speeds.items()]
    for name, split in splits.items():
        lines += ["", f"{name}: share of CPU time per operator", "", "| operator | share |", "|---|---|"]
        lines += [f"| {op} | {share:.1%} |" for op, share in split.items()]
    io.write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    for name in (n for n in names if n in weights.bundled_weights() and not args.no_cards):
        card_path = weights.WEIGHTS_DIR / f"{name}.json"
        card = weights.bundled_card(name)
        card["benchmark"] = {f"{r['dataset']}_x{r['scale']}_psnr_y": round(r["psnr_y"], 3)
                             for r in results if r["model"] == name}
        card["benchmark"] |= {f"{r['dataset']}_x{r['scale']}_ssim_y": round(r["ssim_y"], 4)
                              for r in results if r["model"] == name}
        card["benchmark"] |= {f"{r['dataset']}_x{r['scale']}_{k}": round(r[k], 4) for r in results
                              if r["model"] == name for k in ("hf_ratio", "haarpsi", "gmsd") if k in r}
        card["benchmark"] |= {"mp_per_s": round(speeds[name]["mp_per_s"], 2),
                              "gflops_per_s": round(speeds[name]["gflops_per_s"], 1),
                              "of_peak": round(speeds[name]["of_peak"], 3), "threads": args.threads}
        io.write_json(card_path, card)


if __name__ == "__main__":
    main()
