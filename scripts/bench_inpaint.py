"""Inpainting benchmark: hole L1 / PSNR / SSIM inside the hole and over the image, seconds per MP.

Protocol (as REFERENCE-POINTS.md): the first 20 BSD68 images (and all of Set5), cropped to
multiples of 16; seeded masks per kind (thin/medium/thick strokes; thick = 4 strokes of 2-4
segments, 14-31 px wide) and per hole-area bucket (area10 = 0-10% of the image, ..., area60),
the mask of image NAME in set KIND drawn with seed_for(0, "KIND/NAME"); outputs composited
(pixels outside the hole are the original's) and rounded to 8 bits; hole L1 in /255 units.
Methods: the round-1 models (`model` = the U-Net GAN, with its 8-transform TTA; `pluralistic`:
its first sample as `genapps inpaint` gives it, the most likely fill (the prior's mean; before
2026-12-05 a draw), averaged over the same 8 transforms, plus best-of-K and mean over K samples (the first
that fill, the others drawn) and their diversity = mean pairwise hole L1 between samples), the round-2 FFC model (`ffc`, one pass; `ffc-tta` with the 8 transforms;
--ffc-model), against OpenCV's Telea and Navier-Stokes (radius 5), scikit-image's biharmonic,
`mean3` (the mean of those three fills: the round-1 models' pre-fill), OpenCV-contrib's FSR
(`fsr-fast`, `fsr-best`) and PatchMatch (`patchmatch`: patchmatch-cython's inpaint_pyramid, patch
5, seed 0; measured when it imports). A third set, `heldout`, is the last 8 photos of
natural/train at 0.45 of their size (about 460x345): the photos the trainings hold out, where
models are selected; BSD68 and Set5 are only reported.
One thread (the machine is shared); seconds per megapixel of image. The log has each image's
hole L1 too (a bucket's mean over 8 held-out photos can turn on one or two of them).

    python scripts/bench_inpaint.py --val ../shared/datasets/natural/val --out benchmarks/inpaint
    python scripts/bench_inpaint.py --visual benchmarks/inpaint_visual --ffc-model W.safetensors  # crops page

Results of methods already in OUT.json are kept unless --redo names them (classical methods can
be measured first, the models once trained). Writes OUT.json and OUT.md and records each bundled
model's numbers in its weights card.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from genapps import io, metrics
from genapps.tasks.inpaint.task import WorkCrop, load_model, model_fill, needs_prefill, work_crops
from genapps.tasks.inpaint import masks as M
from genapps.tasks.inpaint.classical import fill, prefill
from genapps.weights import WEIGHTS_DIR

log = logging.getLogger("bench_inpaint")

MASK_SETS = ("thin", "medium", "thick", *M.BUCKETS)
CLASSICAL = ("mean3", "telea", "ns", "biharmonic", "fsr-fast", "fsr-best", "patchmatch")
MODELS = {"model": "inpaint", "pluralistic": "inpaint-pluralistic"}
MODEL_METHODS = ("ffc", "ffc-tta", "model", "pluralistic")
SETS = {"BSD68": 20, "Set5": 5, "heldout": -8}  # the first N images, or the last -N (heldout: scaled 0.45)
HELDOUT_SCALE = 0.45


def load_set(folder: Path, limit: int) -> list[tuple[str, torch.Tensor]]:
    out = []
    paths = io.list_images(folder)
    for path in paths[:limit] if limit > 0 else paths[limit:]:
        im = io.read_image(path).color.expand(3, -1, -1)
        if limit < 0:  # held-out training photos, at about the benchmark's size
            size = (round(im.shape[1] * HELDOUT_SCALE), round(im.shape[2] * HELDOUT_SCALE))
            im = torch.nn.functional.interpolate(im[None], size=size, mode="bicubic", antialias=True,
                                                 align_corners=False)[0].clamp(0, 1)
            im = (im * 255).round() / 255
        h, w = im.shape[1] // 16 * 16, im.shape[2] // 16 * 16
        out.append((path.stem, im[:, :h, :w].contiguous()))
    return out


def patchmatch_fill(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(fill, failed): patchmatch-cython's multi-scale PatchMatch (patch 5, seed 0) on the 8-bit image.
    It refuses holes that cover a whole coarse pyramid level ("mask covers the entire image"): then
    Telea's fill stands in and `failed` is True (counted in the tables)."""
    import numpy as np
    from patchmatch_cython import inpaint_pyramid

    src = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    try:
        out = inpaint_pyramid(src, mask.numpy(), patch_size=5, seed=0)
    except ValueError:
        return fill("telea", image, mask), True
    return torch.from_numpy(np.asarray(out, dtype=np.float32) / 255).permute(2, 0, 1), False


def scores(pred: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    pred, ref, m = metrics.quantize(pred[None]), ref[None], mask[None, None].float()
    return {"hole_l1": float(metrics.mae(pred, ref, m)[0]) * 255,
            "hole_psnr": float(metrics.psnr(pred, ref, mask=m)[0]),
            "hole_ssim": float(metrics.ssim(pred, ref, mask=m)[0]),
            "psnr": float(metrics.psnr(pred, ref)[0]), "ssim": float(metrics.ssim(pred, ref)[0])}


def mean_rows(rows: list[dict]) -> dict[str, float]:
    return {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}


def cached_crops(holed: torch.Tensor, mask: torch.Tensor, key: str,
                 cache: Path | None) -> tuple[list[WorkCrop], float, float]:
    """work_crops with the round-1 pre-fill (as genapps inpaint makes them) and the (wall, CPU) seconds
    they took, kept in `cache` so that both round-1 models and later runs reuse them."""
    path = cache / f"crops-{key.replace('/', '_')}.pt" if cache else None
    if path is not None and path.is_file():
        saved = io.load_torch(path)
        crops = [WorkCrop(*(int(v) for v in box), region, inp)
                 for box, region, inp in zip(saved["boxes"].tolist(), saved["regions"], saved["inputs"])]
        return crops, float(saved["seconds"]), float(saved["cpu_seconds"])
    t0, c0 = time.perf_counter(), time.process_time()
    crops = work_crops(holed, mask, classical=True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if path is not None:
        io.save_state(path, {"boxes": torch.tensor([[c.y, c.x, c.h, c.w] for c in crops]),
                             "regions": [c.region for c in crops], "inputs": [c.input for c in crops],
                             "seconds": seconds, "cpu_seconds": cpu})
    return crops, seconds, cpu


def run_method(method: str, images, mask_set: str, model=None, samples: int = 5, cache: Path | None = None,
               dataset: str = "") -> dict:
    rows, extra, seconds, cpu, mp, failed = [], [], 0.0, 0.0, 0.0, 0
    for name, im in images:
        mask = torch.from_numpy(M.generate(mask_set, tuple(im.shape[1:]), M.seed_for(0, f"{mask_set}/{name}")))
        holed = torch.where(mask, torch.zeros(()), im)  # nothing of the original leaks into the hole
        t0, c0 = time.perf_counter(), time.process_time()
        if method == "mean3":  # the models' classical starting point
            outs = [prefill(holed, mask)]
        elif method == "patchmatch":
            pm, refused = patchmatch_fill(holed, mask)
            outs, failed = [torch.where(mask, pm, holed)], failed + refused
        elif model is None:
            outs = [fill(method, holed, mask)]
        elif not needs_prefill(model):  # the FFC model fills the hole itself
            outs = [model_fill(model, holed, mask, tta=method == "ffc-tta")]
        else:
            k = samples if method == "pluralistic" else 1
            gens = [torch.Generator().manual_seed(M.seed_for(0, f"{name}#{i}")) for i in range(k)]
            crops, pre_seconds, pre_cpu = cached_crops(holed, mask, f"{dataset}/{mask_set}/{name}", cache)
            t0, c0 = time.perf_counter(), time.process_time()
            outs = [model_fill(model, holed, mask, generator=g, crops=crops, tta=method in ("model", "pluralistic"),
                               mode=method == "pluralistic" and i == 0)  # (genapps inpaint's first sample)
                    for i, g in enumerate(gens)]
            t0 -= pre_seconds * len(outs)  # each fill costs the pre-fill (once per image) + the network
            c0 -= pre_cpu * len(outs)
        seconds += (time.perf_counter() - t0) / len(outs)
        cpu += (time.process_time() - c0) / len(outs)
        mp += im.shape[1] * im.shape[2] / 1e6
        per = [scores(torch.where(mask, o, im), im, mask) for o in outs]
        rows.append(per[0] | {"area": float(mask.float().mean())})
        log.info("  %s %s %s %s: hole_l1=%.2f area=%.3f", dataset, mask_set, method, name,
                 per[0]["hole_l1"], rows[-1]["area"])
        if len(outs) > 1:
            pair = [float((outs[i] - outs[j]).abs()[:, mask].mean()) * 255 for i, j in itertools.combinations(range(len(outs)), 2)]
            extra.append({f"best_of_{len(outs)}_hole_l1": min(p["hole_l1"] for p in per),
                          f"mean_of_{len(outs)}_hole_l1": statistics.fmean(p["hole_l1"] for p in per),
                          "diversity_hole_l1": statistics.fmean(pair)})
    result = mean_rows(rows) | {"sec_per_mp": seconds / mp, "cpu_sec_per_mp": cpu / mp}
    if method == "patchmatch":
        result["failed"] = failed  # images patchmatch refused (Telea's fill stands in)
    return result | (mean_rows(extra) if extra else {})


MD_METRICS = (("hole_l1", "hole L1 (/255, lower is better)", 2), ("hole_psnr", "PSNR inside the hole (dB)", 2),
              ("hole_ssim", "SSIM inside the hole", 3), ("psnr", "PSNR over the image (dB)", 2),
              ("ssim", "SSIM over the image", 4))


def write_md(results: dict, path: Path) -> None:
    lines = ["# Inpainting benchmark", "", results["protocol"], ""]
    for dataset, table in results["sets"].items():
        methods = [m for m in (*MODEL_METHODS, *CLASSICAL) if any(m in row for row in table.values())]
        for key, title, digits in MD_METRICS:
            lines += [f"## {dataset}: {title}", "", "| masks | area | " + " | ".join(methods) + " |",
                      "|---" * (len(methods) + 2) + "|"]
            for mask_set, row in table.items():
                vals = [row[m].get(key) if m in row else None for m in methods]
                present = [v for v in vals if v is not None]
                best = (min if key == "hole_l1" else max)(present) if present else None
                cells = ["" if v is None else (f"**{v:.{digits}f}**" if v == best else f"{v:.{digits}f}") for v in vals]
                area = next(iter(row.values()))["area"]
                lines.append(f"| {mask_set} | {area * 100:.0f}% | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"## {dataset}: seconds per megapixel (1 thread; CPU seconds where measured, else wall: see the protocol)",
                  "", "| masks | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for mask_set, row in table.items():
            lines.append(f"| {mask_set} | " + " | ".join(
                (f"{row[m]['cpu_sec_per_mp']:.2f}" if "cpu_sec_per_mp" in row[m] else f"{row[m]['sec_per_mp']:.2f} (wall)")
                if m in row else "" for m in methods) + " |")
        lines.append("")
        plural = {k: r["pluralistic"] for k, r in table.items() if "pluralistic" in r and "diversity_hole_l1" in r["pluralistic"]}
        if plural:
            n = next(int(key.split("_")[2]) for key in next(iter(plural.values())) if key.startswith("best_of_"))
            lines += [f"## {dataset}: pluralistic samples (K = {n})", "",
                      f"| masks | GAN single fill | pluralistic 1 sample | mean of {n} | best of {n} | diversity (mean pairwise hole L1) |",
                      "|---|---|---|---|---|---|"]
            for k, r in plural.items():
                gan = table[k].get("model", {}).get("hole_l1")
                lines.append(f"| {k} | {'' if gan is None else f'{gan:.2f}'} | {r['hole_l1']:.2f} | "
                             f"{r[f'mean_of_{n}_hole_l1']:.2f} | {r[f'best_of_{n}_hole_l1']:.2f} | {r['diversity_hole_l1']:.2f} |")
            lines.append("")
    io.write_text(path, "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--val", default="../shared/datasets/natural/val")
    ap.add_argument("--out", default="benchmarks/inpaint")
    ap.add_argument("--methods", default="telea,ns,biharmonic,mean3,model,pluralistic")
    ap.add_argument("--redo", default="", help="Comma-separated methods to measure again.")
    ap.add_argument("--sets", default="BSD68,Set5")
    ap.add_argument("--masks", default=",".join(MASK_SETS))
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--gan-model", default=MODELS["model"], help="Weights measured as 'model'.")
    ap.add_argument("--pluralistic-model", default=MODELS["pluralistic"], help="Weights measured as 'pluralistic'.")
    ap.add_argument("--ffc-model", default=None, help="Weights measured as 'ffc' and 'ffc-tta' (FFC model).")
    ap.add_argument("--heldout", default="../shared/datasets/natural/train",
                    help="The training photos whose last 8 are the 'heldout' set.")
    ap.add_argument("--cache", default="/tmp/genapps-bench-inpaint", help="Pre-fills kept for reuse ('' = none).")
    ap.add_argument("--speed", default=None, help="Weights whose speed on one 12-MP photo with a 5%% hole to "
                                                   "measure (with and without TTA), instead of the tables.")
    ap.add_argument("--visual", default=None, help="Write the side-by-side page of large holes to VISUAL.md "
                                                   "and VISUAL/*.jpg instead of measuring.")
    ap.add_argument("--visual-samples", default=None, help="Write the page of the pluralistic model's samples side "
                                                           "by side to VISUAL_SAMPLES.md and VISUAL_SAMPLES/*.jpg.")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    if args.visual:
        return visual_page(args)
    if args.visual_samples:
        return samples_page(args)
    if args.speed:
        return speed_12mp(args)
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    results["protocol"] = (
        "First 20 BSD68 images and Set5 (cropped to multiples of 16); seeded masks per kind and per hole-area bucket "
        "(areaN: N-10% to N% of the image); outputs composited and rounded to 8 bits; hole L1 in /255; 1 thread. "
        "model = bundled `inpaint` (U-Net GAN correcting mean3, averaged over 8 flips/transposes as `genapps inpaint` does), pluralistic = bundled `inpaint-pluralistic` "
        "(its first sample, the most likely fill = the prior's mean as `genapps inpaint` gives it since 2026-12-05 "
        "(earlier rows: one prior draw), averaged over the 8 transforms; best/mean of K samples below: the first that "
        "fill, the others drawn); mean3 = the mean of the Telea, NS and biharmonic fills "
        "(the models' pre-fill); ffc = the round-2 FFC model (no classical pre-fill, one pass; ffc-tta: "
        "averaged over the 8 flips/transposes); fsr-fast/fsr-best = OpenCV-contrib's cv2.xphoto.inpaint FSR on "
        "the 8-bit RGB image; patchmatch = patchmatch-cython's inpaint_pyramid (patch 5, seed 0); heldout = the "
        "last 8 photos of natural/train at 0.45 of their size (where the models are selected); patchmatch refuses "
        "some large holes (a coarse pyramid level all hole): those images get Telea's fill (the count is 'failed'). "
        "Speed: seconds per "
        "megapixel of image; round 2 (2026-12-03) measured CPU seconds of the process (cpu_sec_per_mp: the machine "
        "was shared by about 10 busy processes, so wall time said little), earlier rows wall seconds (sec_per_mp). "
        "Command: python scripts/bench_inpaint.py")
    sets = results.setdefault("sets", {})
    redo = set(filter(None, args.redo.split(",")))
    cards = {}
    for method in args.methods.split(","):
        model = None
        weights = {"model": args.gan_model, "pluralistic": args.pluralistic_model, "ffc": args.ffc_model,
                   "ffc-tta": args.ffc_model}.get(method)
        if method in ("ffc", "ffc-tta") and weights is None:
            log.warning("no --ffc-model: %s skipped", method)
            continue
        if method == "patchmatch":
            if importlib.util.find_spec("patchmatch_cython") is None:
                log.warning("patchmatch-cython is not installed: patchmatch skipped")
                continue
        if weights is not None:
            try:
                model, _ = load_model(weights)
            except FileNotFoundError:
                log.warning("no %s weights: %s skipped", weights, method)
                continue
        for dataset in args.sets.split(","):
            images = load_set(Path(args.heldout) if dataset == "heldout" else Path(args.val) / dataset, SETS[dataset])
            for mask_set in args.masks.split(","):
                row = sets.setdefault(dataset, {}).setdefault(mask_set, {})
                if method in row and method not in redo:
                    continue
                row[method] = run_method(method, images, mask_set, model, args.samples,
                                         Path(args.cache) if args.cache else None, dataset)
                log.info("%s %s %s: %s", dataset, mask_set, method,
                         "  ".join(f"{k}={v:.3f}" for k, v in row[method].items()))
                io.write_json(json_path, results)
        if weights in MODELS.values() and method != "ffc-tta":  # a bundled model: its card gets the numbers
            cards[weights] = {f"{d}_{m}_hole_l1": round(sets[d][m][method]["hole_l1"], 2)
                                     for d in sets for m in ("thin", "thick", "area30", "area50") if method in sets[d].get(m, {})}
    # the order of mask sets in the tables: kinds then buckets
    results["sets"] = {d: {m: sets[d][m] for m in MASK_SETS if m in sets[d]} for d in sets}
    io.write_json(json_path, results)
    write_md(results, out.with_suffix(".md"))
    for name, numbers in cards.items():
        card_path = WEIGHTS_DIR / f"{name}.json"
        if card_path.is_file():
            card = json.loads(card_path.read_text())
            card["benchmark"] = numbers
            io.write_json(card_path, card)
    log.info("wrote %s and %s", json_path, out.with_suffix(".md"))


def speed_12mp(args) -> None:
    """CPU and wall seconds of model_fill (as `genapps inpaint` runs it) on one 12-MP photo (the
    first held-out training photo upscaled to 4000x3000) with a seeded area10 mask covering about 5%."""
    paths = io.list_images(args.heldout)[-8:]
    im = io.read_image(paths[0]).color.expand(3, -1, -1)
    im = torch.nn.functional.interpolate(im[None], size=(3000, 4000), mode="bilinear", align_corners=False)[0]
    for seed in range(50):
        mask = torch.from_numpy(M.generate("area10", (3000, 4000), seed))
        if 0.04 <= float(mask.float().mean()) <= 0.06:
            break
    model, _ = load_model(args.speed)
    for tta in (False, True):
        t0, c0 = time.perf_counter(), time.process_time()
        model_fill(model, im, mask, tta=tta)
        log.info("12 MP, %.1f%% hole, tta %s: %.1f s CPU, %.1f s wall (threads %d)", float(mask.float().mean()) * 100,
                 tta, time.process_time() - c0, time.perf_counter() - t0, torch.get_num_threads())


VISUAL_METHODS = ("telea", "fsr-fast", "patchmatch", "model", "ffc")
VISUAL_IMAGES = 4  # BSD68 images on the page, each with its area40 and area50 mask


def visual_page(args) -> None:
    """Side-by-side 1:1 crops (192 px around the largest hole) of large holes (area40, area50) on the
    first BSD68 images: input with the hole | each of VISUAL_METHODS that runs here | original."""
    out_dir = Path(args.visual)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = {"model": load_model(args.gan_model)[0]}
    if args.ffc_model:
        models["ffc"] = load_model(args.ffc_model)[0]
    methods = [m for m in VISUAL_METHODS if m != "ffc" or "ffc" in models]
    if importlib.util.find_spec("patchmatch_cython") is None:
        methods.remove("patchmatch")
    try:
        fill("fsr-fast", torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool))
    except RuntimeError:
        methods.remove("fsr-fast")
    size = 192
    lines = ["# Inpainting: large holes side by side", "",
                        "First BSD68 images with their benchmark area40 and area50 masks (30-50% of the image), "
                        f"1:1 crops of {size} px around the largest hole. Columns: input (hole in magenta) | "
                        + " | ".join(methods) + " | original. model = round-1 `inpaint` (with TTA), ffc = the "
                        "round-2 FFC model (one pass); a grey patchmatch tile: patchmatch-cython refused the hole. "
                        "Command: python scripts/bench_inpaint.py --visual "
                        f"{args.visual}" + (f" --ffc-model {args.ffc_model}" if args.ffc_model else ""), ""]
    for name, im in load_set(Path(args.val) / "BSD68", VISUAL_IMAGES):
        for mask_set in ("area40", "area50"):
            mask = torch.from_numpy(M.generate(mask_set, tuple(im.shape[1:]), M.seed_for(0, f"{mask_set}/{name}")))
            holed = torch.where(mask, torch.zeros(()), im)
            fills = {}
            for m in methods:
                if m == "patchmatch":
                    pm, refused = patchmatch_fill(holed, mask)
                    fills[m] = torch.where(mask, torch.full_like(pm, 0.5) if refused else pm, holed)  # grey: refused
                elif m in models:
                    fills[m] = model_fill(models[m], holed, mask, tta=m == "model")
                else:
                    fills[m] = fill(m, holed, mask)
            file = out_dir / f"{name}_{mask_set}.jpg"
            crop_strip(im, mask, fills, size, file)
            lines += [f"## {name}, {mask_set} ({float(mask.float().mean()) * 100:.0f}% of the image)", "",
                      f"![{name} {mask_set}]({out_dir.name}/{file.name})", ""]
            log.info("wrote %s", file)
    io.write_text(out_dir.with_suffix(".md"), "\n".join(lines))


def crop_strip(im: torch.Tensor, mask: torch.Tensor, fills: dict[str, torch.Tensor], size: int, file: Path) -> None:
    """One JPEG row of 1:1 crops (size px, centred on the hole's median pixel): the input with the
    hole in magenta | each fill of `fills` (labelled with its key) | the original."""
    import numpy as np
    from PIL import Image, ImageDraw

    ys, xs = np.nonzero(mask.numpy())
    cy = int(np.clip(np.median(ys), size // 2, im.shape[1] - size // 2))
    cx = int(np.clip(np.median(xs), size // 2, im.shape[2] - size // 2))
    box = (slice(cy - size // 2, cy + size // 2), slice(cx - size // 2, cx + size // 2))
    shown = torch.where(mask, torch.tensor([1.0, 0, 1.0])[:, None, None], im)
    tiles = [shown, *fills.values(), im]
    strip = torch.cat([t[:, box[0], box[1]] for t in tiles], 2)
    pic = Image.fromarray((strip.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    for i, label in enumerate(["input", *fills, "original"]):
        draw.text((i * size + 4, 4), label, fill=(255, 255, 0))
    file.parent.mkdir(parents=True, exist_ok=True)
    pic.save(file, quality=90)


def samples_page(args) -> None:
    """Side-by-side 1:1 crops of the pluralistic model's samples (issue 28: fills that differ in
    structure or texture, not only colour): thick strokes and area30 holes on the first held-out
    photos and BSD68 images: input | `inpaint` (one deterministic fill, TTA) | K samples (the first
    the most likely fill, as `genapps inpaint` gives it; then draws of seeds 1..K-1 at the model's own
    temperature) | original, with each sample's hole L1 and the diversity."""
    out_dir = Path(args.visual_samples)
    gan, _ = load_model(args.gan_model)
    plural, info = load_model(args.pluralistic_model)
    size, k = 160, min(args.samples, 4)
    lines = ["# Inpainting: the pluralistic model's samples side by side", "",
             f"Columns: input (hole in magenta) | `inpaint` (deterministic, with its TTA) | {k} samples of "
             f"`{Path(args.pluralistic_model).stem}` (sample 1: its most likely fill; then draws of seeds 1-{k - 1}; each "
             f"with its TTA, temperature "
             f"{getattr(plural, 'temperature', 1.0):g}) | original; 1:1 crops of {size} px around the hole. "
             "Under each row: hole L1 (/255) of each fill and the samples' diversity (mean pairwise hole L1). "
             f"Command: python scripts/bench_inpaint.py --visual-samples {args.visual_samples} --samples {k}"
             + ("" if args.pluralistic_model == MODELS["pluralistic"] else f" --pluralistic-model {args.pluralistic_model}"), ""]
    for dataset, folder, limit in (("heldout", Path(args.heldout), -3), ("BSD68", Path(args.val) / "BSD68", 3)):
        for name, im in load_set(folder, limit):
            for mask_set in ("thick", "area30"):
                mask = torch.from_numpy(M.generate(mask_set, tuple(im.shape[1:]), M.seed_for(0, f"{mask_set}/{name}")))
                holed = torch.where(mask, torch.zeros(()), im)
                crops = work_crops(holed, mask, classical=True)
                fills = {"inpaint": model_fill(gan, holed, mask, crops=crops, tta=True)}
                for i in range(k):
                    g = torch.Generator().manual_seed(M.seed_for(0, f"{name}#{i}"))
                    fills[f"sample {i + 1}"] = model_fill(plural, holed, mask, generator=g, crops=crops, tta=True,
                                                          mode=i == 0)
                fills = {key: torch.where(mask, v, im) for key, v in fills.items()}
                l1 = {key: scores(v, im, mask)["hole_l1"] for key, v in fills.items()}
                outs = [v for key, v in fills.items() if key.startswith("sample")]
                div = statistics.fmean(float((a - b).abs()[:, mask].mean()) * 255 for a, b in itertools.combinations(outs, 2))
                file = out_dir / f"{dataset}_{name}_{mask_set}.jpg"
                crop_strip(im, mask, fills, size, file)
                lines += [f"## {dataset} {name}, {mask_set} ({float(mask.float().mean()) * 100:.0f}% of the image)", "",
                          f"![{name} {mask_set}]({out_dir.name}/{file.name})", "",
                          "hole L1: " + ", ".join(f"{key} {v:.2f}" for key, v in l1.items()) + f"; diversity {div:.2f}", ""]
                log.info("wrote %s (diversity %.2f)", file, div)
    io.write_text(out_dir.with_suffix(".md"), "\n".join(lines))


if __name__ == "__main__":
    main()
