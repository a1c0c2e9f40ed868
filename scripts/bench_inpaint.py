"""Inpainting benchmark: hole L1 / PSNR / SSIM inside the hole and over the image, seconds per MP.

Protocol (as REFERENCE-POINTS.md): the first 20 BSD68 images (and all of Set5), cropped to
multiples of 16; seeded masks per kind (thin/medium/thick strokes; thick = 4 strokes of 2-4
segments, 14-31 px wide) and per hole-area bucket (area10 = 0-10% of the image, ..., area60),
the mask of image NAME in set KIND drawn with seed_for(0, "KIND/NAME"); outputs composited
(pixels outside the hole are the original's) and rounded to 8 bits; hole L1 in /255 units.
Methods: the bundled models (`inpaint` GAN; `inpaint-pluralistic`: one prior sample, plus
best-of-K and mean over K samples and their diversity = mean pairwise hole L1 between samples)
against OpenCV's Telea and Navier-Stokes (radius 5) and scikit-image's biharmonic, and `mean3`,
the mean of those three fills (the models' classical pre-fill).
One thread (the machine is shared); seconds per megapixel of image.

    python scripts/bench_inpaint.py --val ../shared/datasets/natural/val --out benchmarks/inpaint

Results of methods already in OUT.json are kept unless --redo names them (classical methods can
be measured first, the models once trained). Writes OUT.json and OUT.md and records each bundled
model's numbers in its weights card.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from genapps import io, metrics
from genapps.tasks.inpaint.task import load_model, model_fill
from genapps.tasks.inpaint import masks as M
from genapps.tasks.inpaint.classical import fill, prefill
from genapps.weights import WEIGHTS_DIR

log = logging.getLogger("bench_inpaint")

MASK_SETS = ("thin", "medium", "thick", *M.BUCKETS)
CLASSICAL = ("mean3", "telea", "ns", "biharmonic")
MODELS = {"model": "inpaint", "pluralistic": "inpaint-pluralistic"}
SETS = {"BSD68": 20, "Set5": 5}


def load_set(folder: Path, limit: int) -> list[tuple[str, torch.Tensor]]:
    out = []
    for path in io.list_images(folder)[:limit]:
        im = io.read_image(path).color.expand(3, -1, -1)
        h, w = im.shape[1] // 16 * 16, im.shape[2] // 16 * 16
        out.append((path.stem, im[:, :h, :w].contiguous()))
    return out


def scores(pred: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    pred, ref, m = metrics.quantize(pred[None]), ref[None], mask[None, None].float()
    return {"hole_l1": float(metrics.mae(pred, ref, m)[0]) * 255,
            "hole_psnr": float(metrics.psnr(pred, ref, mask=m)[0]),
            "hole_ssim": float(metrics.ssim(pred, ref, mask=m)[0]),
            "psnr": float(metrics.psnr(pred, ref)[0]), "ssim": float(metrics.ssim(pred, ref)[0])}


def mean_rows(rows: list[dict]) -> dict[str, float]:
    return {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}


def cached_prefill(holed: torch.Tensor, mask: torch.Tensor, key: str, cache: Path | None) -> tuple[torch.Tensor, float]:
    """classical.prefill and the seconds it took, kept in `cache` so that both models reuse it."""
    path = cache / f"{key.replace('/', '_')}.pt" if cache else None
    if path is not None and path.is_file():
        saved = io.load_torch(path)
        return saved["pre"], float(saved["seconds"])
    t0 = time.perf_counter()
    pre = prefill(holed, mask)
    seconds = time.perf_counter() - t0
    if path is not None:
        io.save_state(path, {"pre": pre, "seconds": seconds})
    return pre, seconds


def run_method(method: str, images, mask_set: str, model=None, samples: int = 5, cache: Path | None = None,
               dataset: str = "") -> dict:
    rows, extra, seconds, mp = [], [], 0.0, 0.0
    for name, im in images:
        mask = torch.from_numpy(M.generate(mask_set, tuple(im.shape[1:]), M.seed_for(0, f"{mask_set}/{name}")))
        holed = torch.where(mask, torch.zeros(()), im)  # nothing of the original leaks into the hole
        t0 = time.perf_counter()
        if method == "mean3":  # the models' classical starting point
            outs = [prefill(holed, mask)]
        elif model is None:
            outs = [fill(method, holed, mask)]
        else:
            k = samples if method == "pluralistic" else 1
            gens = [torch.Generator().manual_seed(M.seed_for(0, f"{name}#{i}")) for i in range(k)]
            pre, pre_seconds = cached_prefill(holed, mask, f"{dataset}/{mask_set}/{name}", cache)
            t0 = time.perf_counter()
            outs = [model_fill(model, holed, mask, generator=g, pre=pre, tta=method == "model") for g in gens]
            t0 -= pre_seconds * len(outs)  # each fill costs the pre-fill (once per image) + the network
        seconds += (time.perf_counter() - t0) / len(outs)
        mp += im.shape[1] * im.shape[2] / 1e6
        per = [scores(torch.where(mask, o, im), im, mask) for o in outs]
        rows.append(per[0] | {"area": float(mask.float().mean())})
        if len(outs) > 1:
            pair = [float((outs[i] - outs[j]).abs()[:, mask].mean()) * 255 for i, j in itertools.combinations(range(len(outs)), 2)]
            extra.append({f"best_of_{len(outs)}_hole_l1": min(p["hole_l1"] for p in per),
                          f"mean_of_{len(outs)}_hole_l1": statistics.fmean(p["hole_l1"] for p in per),
                          "diversity_hole_l1": statistics.fmean(pair)})
    result = mean_rows(rows) | {"sec_per_mp": seconds / mp}
    return result | (mean_rows(extra) if extra else {})


MD_METRICS = (("hole_l1", "hole L1 (/255, lower is better)", 2), ("hole_psnr", "PSNR inside the hole (dB)", 2),
              ("hole_ssim", "SSIM inside the hole", 3), ("psnr", "PSNR over the image (dB)", 2),
              ("ssim", "SSIM over the image", 4))


def write_md(results: dict, path: Path) -> None:
    lines = ["# Inpainting benchmark", "", results["protocol"], ""]
    for dataset, table in results["sets"].items():
        methods = [m for m in ("model", "pluralistic", *CLASSICAL) if any(m in row for row in table.values())]
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
        lines += [f"## {dataset}: seconds per megapixel (1 thread)", "", "| masks | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for mask_set, row in table.items():
            lines.append(f"| {mask_set} | " + " | ".join(f"{row[m]['sec_per_mp']:.2f}" if m in row else "" for m in methods) + " |")
        lines.append("")
        plural = {k: r["pluralistic"] for k, r in table.items() if "pluralistic" in r and "diversity_hole_l1" in r["pluralistic"]}
        if plural:
            lines += [f"## {dataset}: pluralistic samples (K = 5)", "",
                      "| masks | GAN single fill | pluralistic 1 sample | mean of 5 | best of 5 | diversity (mean pairwise hole L1) |",
                      "|---|---|---|---|---|---|"]
            for k, r in plural.items():
                gan = table[k].get("model", {}).get("hole_l1")
                lines.append(f"| {k} | {'' if gan is None else f'{gan:.2f}'} | {r['hole_l1']:.2f} | "
                             f"{r['mean_of_5_hole_l1']:.2f} | {r['best_of_5_hole_l1']:.2f} | {r['diversity_hole_l1']:.2f} |")
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
    ap.add_argument("--cache", default="/tmp/genapps-bench-inpaint", help="Pre-fills kept for reuse ('' = none).")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    results["protocol"] = (
        "First 20 BSD68 images and Set5 (cropped to multiples of 16); seeded masks per kind and per hole-area bucket "
        "(areaN: N-10% to N% of the image); outputs composited and rounded to 8 bits; hole L1 in /255; 1 thread. "
        "model = bundled `inpaint` (U-Net GAN correcting mean3, averaged over 8 flips/transposes as `genapps inpaint` does), pluralistic = bundled `inpaint-pluralistic` "
        "(one prior sample; best/mean of 5 samples below); mean3 = the mean of the Telea, NS and biharmonic fills "
        "(the models' pre-fill). Command: python scripts/bench_inpaint.py")
    sets = results.setdefault("sets", {})
    redo = set(filter(None, args.redo.split(",")))
    cards = {}
    for method in args.methods.split(","):
        model = None
        weights = {"model": args.gan_model, "pluralistic": args.pluralistic_model}.get(method)
        if weights is not None:
            try:
                model, _ = load_model(weights)
            except FileNotFoundError:
                log.warning("no %s weights: %s skipped", weights, method)
                continue
        for dataset in args.sets.split(","):
            images = load_set(Path(args.val) / dataset, SETS[dataset])
            for mask_set in args.masks.split(","):
                row = sets.setdefault(dataset, {}).setdefault(mask_set, {})
                if method in row and method not in redo:
                    continue
                row[method] = run_method(method, images, mask_set, model, args.samples,
                                         Path(args.cache) if args.cache else None, dataset)
                log.info("%s %s %s: %s", dataset, mask_set, method,
                         "  ".join(f"{k}={v:.3f}" for k, v in row[method].items()))
                io.write_json(json_path, results)
        if weights in MODELS.values():  # a bundled model: its card gets the numbers
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


if __name__ == "__main__":
    main()
