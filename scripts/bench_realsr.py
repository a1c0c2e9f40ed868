"""Real-world x4 super-resolution benchmark: photos degraded by Real-ESRGAN's second-order model.

Protocol: the first --bsd images of BSD68 (sorted names) and Set5 from --val, each centre-cropped
to at most --crop px (a multiple of 4) as HR; LR = genapps.degradations.realworld(HR) with
Real-ESRGAN's default ranges (degradations.REALESRGAN, x4), seeded by (--seed, "folder/name") so
every run sees the same inputs (written to CACHE/lr/). Every model runs as `genapps upscale` runs
it on the CPU (fp32, Winograd-accelerated, CONTEXT px of reflect padding); bicubic is PIL's.

Figures (mean over the images): Y-PSNR and Y-SSIM against HR (BT.601, 4 px border shaved, output
rounded to 8 bits); blockiness, a no-reference figure of the JPEG blocks left in the output (the
mean step of Y across the LR's 8x8 block boundaries over the mean step elsewhere, 1 = none; piq's
BRISQUE would be the usual choice but downloads its SVR weights at first use, so is not offline);
hf_ratio = the output's mean squared Laplacian of Y over the HR's (1 = as much fine detail as
the original; bench_sr.hf_energy); hf_vs_teacher = hf_ratio over the teacher's; psnr_teacher =
Y-PSNR against the teacher's outputs (fidelity to the teacher). Speed: output MP/s on a 64x64 LR
input, one thread, the models timed interleaved (median of --repeat runs), so a loaded machine
slows them alike.

    OMP_NUM_THREADS=1 python scripts/bench_realsr.py --val ../shared/datasets/natural/val \\
        --out benchmarks/realsr --cache /tmp/realsr-bench

Model outputs are cached in CACHE/<model>-<sha256 12>/ (with their seconds): a rerun only runs
models it has not seen, e.g. a new student. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sr import hf_energy, pil_bicubic_up  # noqa: E402  (one definition of the sharpness figure)

from genapps import degradations, io, metrics  # noqa: E402
from genapps.nn.winograd import accelerate  # noqa: E402
from genapps.tasks.upscale.task import load_model, sr_measure, upscale_tensor  # noqa: E402

SCALE = 4
TEACHER = "realesrgan-x4plus"
MODELS = ("bicubic", "sr-x4", "srgan-x4", TEACHER, "realesr-animevideov3-x4", "realsr-x4")


def protocol_images(val: Path, bsd: int, crop: int, seed: int, cache: Path) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(key, LR (3, h, w), HR (3, 4h, 4w)) in [0, 1], 8-bit values; LR written to cache/lr/."""
    files = io.list_images(val / "BSD68")[:bsd] + io.list_images(val / "Set5")
    out = []
    for path in files:
        key = path.relative_to(val).with_suffix("").as_posix()
        hr = (io.read_image(path).color.expand(3, -1, -1) * 255).round().byte().permute(1, 2, 0).numpy()
        h, w = (min(s, crop) // SCALE * SCALE for s in hr.shape[:2])
        y, x = (hr.shape[0] - h) // 2, (hr.shape[1] - w) // 2
        hr = np.ascontiguousarray(hr[y:y + h, x:x + w])
        lr = degradations.realworld(hr, degradations.file_rng(seed, key))
        (cache / "lr" / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(lr).save((cache / "lr" / key).with_suffix(".png"))
        out.append((key, torch.from_numpy(lr).permute(2, 0, 1).float() / 255,
                    torch.from_numpy(hr).permute(2, 0, 1).float() / 255))
    return out


def runner(name: str):
    """(upscale function (3, h, w) -> (3, 4h, 4w), cache tag) of a model as `genapps upscale` runs it."""
    if name == "bicubic":
        return (lambda lr: pil_bicubic_up(lr, SCALE)), "bicubic"
    model, info = load_model(name, SCALE)
    if info.scale != SCALE:
        raise ValueError(f"{name} is x{info.scale}, not x{SCALE}")
    model = accelerate(model.to(memory_format=torch.channels_last))

    def run(lr):
        with torch.inference_mode():
            return upscale_tensor(model, lr[None], SCALE)[0]
    return run, f"{Path(name).stem}-{(info.sha256 or 'none')[:12]}"


def outputs(name: str, images, cache: Path) -> tuple[dict[str, torch.Tensor], float, str]:
    """{key: output} (8-bit values), total seconds, cache tag; from cache when there."""
    run, tag = runner(name)
    folder = cache / tag
    seconds_file = folder / "seconds.json"
    seconds = json.loads(seconds_file.read_text()) if seconds_file.exists() else {}
    result = {}
    for key, lr, _ in images:
        path = (folder / key).with_suffix(".png")
        if path.exists() and key in seconds:
            result[key] = io.read_image(path).color
            continue
        t0 = time.perf_counter()
        sr = run(lr)
        seconds[key] = time.perf_counter() - t0
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((sr.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
        result[key] = io.read_image(path).color
        seconds_file.write_text(json.dumps(seconds))
        print(f"  {name} {key}: {seconds[key]:.1f} s", flush=True)
    return result, sum(seconds[k] for k, _, _ in images), tag


def blockiness(img: torch.Tensor, period: int = 8 * SCALE) -> float:
    """No-reference JPEG blockiness of an x4 output: the mean absolute step of Y across the LR's
    8x8 block boundaries (every 32 output px) over the mean step elsewhere, both directions
    (1 = no blocks; the LR's own JPEG blocks, magnified, score above 1)."""
    y = metrics.rgb_to_y(img[None])[0, 0]
    steps = []
    for d in (y.diff(dim=1).abs().mean(0), y.diff(dim=0).abs().mean(1)):
        on = torch.zeros_like(d, dtype=torch.bool)
        on[period - 1::period] = True
        steps.append(float(d[on].mean() / d[~on].mean()))
    return statistics.fmean(steps)


def speed(names: list[str], repeat: int, size: int = 64) -> dict[str, float]:
    """Output MP/s per model on a size x size LR input, one thread, interleaved runs, median."""
    torch.set_num_threads(1)
    runs = {n: runner(n)[0] for n in names}
    x = torch.rand(3, size, size)
    times = {n: [] for n in names}
    for n in names:
        runs[n](x)  # warm up
    for _ in range(repeat):
        for n in names:
            t0 = time.perf_counter()
            runs[n](x)
            times[n].append(time.perf_counter() - t0)
    mp = (size * SCALE) ** 2 / 1e6
    return {n: mp / statistics.median(t) for n, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--val", type=Path, default=Path("../shared/datasets/natural/val"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/realsr"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/realsr-bench"))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--bsd", type=int, default=10, help="the first N BSD68 images (plus all of Set5)")
    ap.add_argument("--crop", type=int, default=256, help="HR centre crop, px")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    images = protocol_images(args.val, args.bsd, args.crop, args.seed, args.cache)
    measure = sr_measure(SCALE)
    teacher_out = outputs(TEACHER, images, args.cache)[0] if TEACHER in args.models else None
    rows = {}
    for name in args.models:
        print(f"{name} ...", flush=True)
        outs, seconds, tag = outputs(name, images, args.cache)
        per = []
        for key, lr, hr in images:
            sr = outs[key]
            r = measure(sr, hr) | {"hf_ratio": hf_energy(sr) / hf_energy(hr), "blockiness": blockiness(sr)}
            if teacher_out is not None:
                r["psnr_teacher"] = float(metrics.psnr_y(sr[None], teacher_out[key][None], SCALE)[0]) \
                    if name != TEACHER else None
                r["hf_vs_teacher"] = hf_energy(sr) / hf_energy(teacher_out[key])
            per.append(r)
        mp = sum(outs[k].shape[1] * outs[k].shape[2] for k in outs) / 1e6
        rows[name] = {k: statistics.fmean(r[k] for r in per) if per[0][k] is not None else None for k in per[0]}
        rows[name] |= {"cache": tag, "mp_per_s_protocol": mp / seconds if seconds else None}
        print(f"  {rows[name]}", flush=True)
    if not args.no_speed:
        for name, s in speed([n for n in args.models if n != "bicubic"], args.repeat).items():
            rows[name]["mp_per_s"] = s
        if TEACHER in rows:
            for name in rows:
                if rows[name].get("mp_per_s"):
                    rows[name]["speedup"] = rows[name]["mp_per_s"] / rows[TEACHER]["mp_per_s"]
    result = {"protocol": {"images": [k for k, _, _ in images], "crop": args.crop, "seed": args.seed, "scale": SCALE,
                           "degradation": degradations.REALESRGAN.as_dict(), "threads": 1},
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table(rows, len(images), args) + "\n")
    print(table(rows, len(images), args))


def table(rows: dict, n: int, args) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    lines = [f"Real-world x4 ({n} images: the first {args.bsd} BSD68 + Set5, centre {args.crop} px HR, LR by "
             f"Real-ESRGAN's second-order degradation, seed {args.seed}; 1 thread)", "",
             "| model | Y-PSNR | Y-SSIM | blockiness (1 = none) | HF energy / HR | HF / teacher's | "
             "Y-PSNR vs teacher | output MP/s | x teacher's speed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {f(r['psnr_y'], '.2f')} | {f(r['ssim_y'], '.4f')} | {f(r['blockiness'], '.3f')} | "
                     f"{f(r['hf_ratio'], '.2f')} | {f(r.get('hf_vs_teacher'), '.2f')} | "
                     f"{f(r.get('psnr_teacher'), '.2f')} | {f(r.get('mp_per_s'), '.3f')} | {f(r.get('speedup'), '.1f')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
