"""Translation benchmark: the bundled restore / restore-unpaired / colorize models against the
identity (input as output) and classical filters, on pairs made from BSD68.

Protocol: every BSD68 image (RGB, full size) is the target B; its A is made exactly as
`genapps pairs` does (seeded per file: restore = blur U(0, 1.5) + noise U(0, 20) + JPEG U(30, 90),
colorize = BT.601 luma). Outputs are rounded to 8 bits; PSNR (dB), SSIM and L1 (0-1 scale) are
over RGB, averaged over the images. Colourfulness is Hasler & Suesstrunk's (0-255 scale).
Speed: seconds per megapixel of the whole-image forward pass, THREADS threads, median of 3.
The fixed degradation of REFERENCE-POINTS.md (blur 1.2, noise 6, JPEG 35 on the top-left
256 px crops of the first 20 BSD68 images) is reported too, to compare with its plain net.
The classical filters' strengths are picked on the validation split (the last 8 photos of
natural/train, never BSD68).

    python scripts/bench_translate.py --bsd68 ../shared/datasets/natural/val/BSD68 \
        --val ../shared/datasets/natural/train --out benchmarks/translate

Writes OUT.json and OUT.md, and records each bundled model's numbers in its weights card.
`--part colorize` runs only the colourisation tables (BSD68 and the validation split, whose 8
photos are used whole), e.g. with an earlier colouriser beside the bundled one:

    python scripts/bench_translate.py --part colorize --out benchmarks/translate_colorize \
        --colorize-extra "colorize round 1 (pix2pix L1+GAN)=/tmp/colorize-round1.safetensors"

`--visual DIR` writes DIR.md instead: held-out photos (the validation split) side by side, grey |
each colouriser | truth, as small JPEGs in DIR/. `--visual-restore DIR` likewise for restoration:
a 1:1 crop of each held-out photo, degraded as the benchmark degrades | bilateral | each restorer
(--restorer, the bundled restore, and restore -x) | truth, shown at 2x (nearest) so that noise,
blocking and blur can be judged.

`--heldout` measures restorers where they are selected instead: the validation split's 8 photos
whole (about 6 MP), each degraded as `genapps pairs` does with seed 0 by `degrade` (the benchmark's
family) and by `realworld` (the second-order chain): the identity, the bundled restore and every
--restorer, PSNR/SSIM/L1 per family (stdout and OUT.json). A training's own validation crops are
drawn with its --seed, so stages trained with different seeds compare only here.

    python scripts/bench_translate.py --heldout --restorer "stage 5=/work/runs/restore-s5/restore.safetensors" \
        --out /tmp/heldout
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from genapps import io, metrics, weights
from genapps.tasks.translate.task import translate_tensor
from genapps.tasks.translate.models import load_model
from genapps.tasks.translate.pairs import degrade, from_uint8, gray, make_a, to_uint8

log = logging.getLogger("bench_translate")


def colourfulness(img: torch.Tensor) -> float:
    """Hasler & Suesstrunk (2003) colourfulness of a (3, H, W) [0, 1] image, 0-255 scale."""
    return float(metrics.colourfulness(img)[0])


def scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    pred, target = metrics.quantize(pred.expand(3, -1, -1)[None]), target[None]
    return {"psnr": float(metrics.psnr(pred, target)[0]), "ssim": float(metrics.ssim(pred, target)[0]),
            "l1": float(metrics.mae(pred, target)[0])}


def photos(folder: Path, crop: int = 0) -> list[tuple[str, torch.Tensor]]:
    out = []
    for p in io.list_images(folder):
        im = io.read_image(p).color.expand(3, -1, -1)
        out.append((p.relative_to(folder).with_suffix("").as_posix(), im[:, :crop, :crop] if crop else im))
    return out


def nlm(h: float):
    def run(x: torch.Tensor) -> torch.Tensor:
        return from_uint8(cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(to_uint8(x)), None, h, h, 7, 21))
    return run


def bilateral(sigma: float):
    def run(x: torch.Tensor) -> torch.Tensor:
        return from_uint8(cv2.bilateralFilter(np.ascontiguousarray(to_uint8(x)), 9, sigma, sigma))
    return run


def model_fn(g, tta: bool = False):
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return translate_tensor(g, x[None], tta=tta)[0]
    return run


def evaluate(fn, pairs, colour: bool = False) -> dict:
    rows, seconds, mp = [], [], 0.0
    for _, a, b in pairs:
        t0 = time.perf_counter()
        out = fn(a)
        seconds.append(time.perf_counter() - t0)
        mp += a.shape[1] * a.shape[2] / 1e6
        row = scores(out, b)
        if colour:
            row["colourfulness"] = colourfulness(out.expand(3, -1, -1))
        rows.append(row)
    res = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    res["seconds_per_mp"] = sum(seconds) / mp
    return res


def speed(fn, x: torch.Tensor) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / (x.shape[1] * x.shape[2] / 1e6)


def zoo_model(name: str, noise: float | None = None):
    """A zoo upscaler as an x1 restorer: x1 models as they are, x2 models followed by an antialiased
    bicubic x1/2 (how a user gets a same-size result from them); SRMD with its noise level."""
    import torch.nn.functional as F

    from genapps.tasks.upscale.task import load_model as load_upscaler, upscale_tensor

    model, info = load_upscaler(name)
    if noise is not None:
        model.noise = float(noise)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            y = upscale_tensor(model, x[None], info.scale)
            if info.scale != 1:
                y = F.interpolate(y, size=x.shape[-2:], mode="bicubic", antialias=True, align_corners=False)
            return y[0].clamp(0, 1)
    return run


def zoo_peers(val) -> dict:
    """The offline peers of issue 29: waifu2x CUNet x1 denoise, waifu2x UpConv7 photo x2 denoise and
    SRMD x2 (each + a x1/2 resize), the level picked on the validation split."""
    peers = {}
    for label, names in (("waifu2x CUNet x1 (noise {})", {f"{n}": (f"waifu2x-cunet-noise{n}-x1", None) for n in range(4)}),
                         ("waifu2x photo x2 + resize (noise {})",
                          {f"{n}": (f"waifu2x-photo-noise{n}-x2", None) for n in range(4)}),
                         ("SRMD x2 + resize (noise {})", {f"{n}": ("srmd-x2", n) for n in (5, 10, 15, 25)})):
        val_psnr = {level: evaluate(zoo_model(*spec), val)["psnr"] for level, spec in names.items()}
        best = max(val_psnr, key=val_psnr.get)
        log.info("%s on the validation split: %s -> %s", label.format("?"), val_psnr, best)
        peers[label.format(best)] = zoo_model(*names[best])
    return peers


def restoration(results: dict, bundled: dict, restore_pairs, fixed_pairs, val, extra: list[str] = (),
                with_zoo: bool = False, tta: bool = False) -> dict:
    """The restoration tables (BSD68, the fixed degradation) into `results`; the filter strengths
    picked on the validation split are returned. `extra`: NAME=WEIGHTS translate models (candidates);
    `with_zoo`: the zoo's denoisers too (zoo_peers); `tta`: every model also with -x (a row "NAME -x")."""
    picks = {}
    for name, make, grid in (("nlm", nlm, (3, 5, 7, 10, 15)), ("bilateral", bilateral, (10, 25, 50, 75))):
        val_psnr = {p: evaluate(make(p), val)["psnr"] for p in grid}
        picks[name] = max(val_psnr, key=val_psnr.get)
        log.info("%s on the validation split: %s -> %s", name, val_psnr, picks[name])
    restorers = {"identity": lambda x: x,
                 f"OpenCV fastNlMeansDenoisingColored (h {picks['nlm']})": nlm(picks["nlm"]),
                 f"OpenCV bilateralFilter (d 9, sigma {picks['bilateral']})": bilateral(picks["bilateral"])}
    models = {name: name for name in ("restore", "restore-unpaired") if name in bundled}  # label: weights
    models |= dict(item.partition("=")[::2] for item in extra)
    generators = {name: load_model(path)[0] for name, path in models.items()}
    restorers |= {name: model_fn(g) for name, g in generators.items()}
    if tta:
        restorers |= {f"{name} -x": model_fn(g, tta=True) for name, g in generators.items()}
    if with_zoo:
        restorers |= zoo_peers(val)
    for name, fn in restorers.items():
        results["restore"][name] = evaluate(fn, restore_pairs)
        results["restore_fixed"][name] = evaluate(fn, fixed_pairs)
        log.info("restore %s: %s  fixed: %s", name, results["restore"][name], results["restore_fixed"][name])
    return picks


def colorization(results: dict, gray_pairs, val_gray, extra: list[str]) -> None:
    """The colourisation tables: BSD68 (`colorize`) and the validation split (`colorize_val`)."""
    colorizers = {"identity (grey)": lambda x: x} | {k: model_fn(g) for k, g in colorizers_named(extra).items()}
    for table, pairs in (("colorize", gray_pairs), ("colorize_val", val_gray)):
        results[table] = {}
        for name, fn in colorizers.items():
            results[table][name] = evaluate(fn, pairs, colour=True)
            log.info("%s %s: %s", table, name, results[table][name])
        results[table]["target"] = {"colourfulness": float(np.mean([colourfulness(b) for _, _, b in pairs]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bsd68", default="../shared/datasets/natural/val/BSD68")
    ap.add_argument("--val", default="../shared/datasets/natural/train", help="its last 8 photos pick the filters")
    ap.add_argument("--out", default="benchmarks/translate")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="only the first N BSD68 images (quick runs)")
    ap.add_argument("--part", choices=("all", "restore", "colorize"), default="all")
    ap.add_argument("--restorer", action="append", default=[], metavar="NAME=WEIGHTS",
                    help="also a translate model file (e.g. a candidate before it is bundled); repeatable")
    ap.add_argument("--tta", action="store_true", help="also every restoring model with -x (8 flips/transposes)")
    ap.add_argument("--zoo-peers", action="store_true", help="also the zoo's x1/x2 denoisers (waifu2x, SRMD), "
                                                             "their noise level picked on the validation split")
    ap.add_argument("--colorize-extra", action="append", default=[], metavar="NAME=WEIGHTS",
                    help="another colouriser to measure beside the bundled one (repeatable)")
    ap.add_argument("--visual", default=None, help="write the side-by-side page of held-out photos to VISUAL.md")
    ap.add_argument("--visual-restore", default=None, help="write the restoration page of held-out crops to DIR.md")
    ap.add_argument("--heldout", action="store_true", help="restorers on the validation split's photos whole "
                                                           "(degrade and realworld): where they are selected")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    if args.visual:
        return visual_page(args)
    if args.visual_restore:
        return visual_restore_page(args)
    if args.heldout:
        return heldout_selection(args)

    bsd = photos(Path(args.bsd68))[:args.limit or None]
    restore_pairs = [(k, make_a(b, "degrade", args.seed, k), b) for k, b in bsd]
    gray_pairs = [(k, gray(b), b) for k, b in bsd]
    rng = np.random.default_rng(args.seed)
    fixed_pairs = [(k, from_uint8(degrade(to_uint8(b), 1.2, 6.0, 35, rng)), b) for k, b in photos(Path(args.bsd68), 256)[:20]]
    val = [(k, make_a(b, "degrade", args.seed, k), b) for k, b in photos(Path(args.val), 384)[-8:]]

    bundled = weights.bundled_weights()
    results = {"protocol": __doc__.split("\n\n")[1:4], "threads": args.threads, "part": args.part,
               "restore": {}, "restore_fixed": {}, "colorize": {}}
    if args.part != "colorize":
        results["filters_picked_on_val"] = restoration(results, bundled, restore_pairs, fixed_pairs, val,
                                                               args.restorer, args.zoo_peers, args.tta)
    if args.part != "restore":
        val_gray = [(k, gray(b), b) for k, b in photos(Path(args.val))[-8:]]
        colorization(results, gray_pairs, val_gray, args.colorize_extra)
    x = restore_pairs[0][1]
    for name in ("restore", "restore-unpaired", "colorize"):
        if name in bundled and (args.part == "all" or (name == "colorize") == (args.part == "colorize")):
            g = load_model(name)[0]
            inp = gray(x) if name == "colorize" else x
            results.setdefault("speed_seconds_per_mp", {})[name] = speed(model_fn(g), inp)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(out.with_suffix(".json"), results)
    io.write_text(out.with_suffix(".md"), markdown(results, len(bsd)))
    record_in_cards(results, bundled)
    print(markdown(results, len(bsd)))


def heldout_selection(args) -> None:
    """The identity, the bundled restore and each --restorer on the validation split's 8 photos whole,
    degraded (seed 0) by each family of the training's `mixed` synthesis."""
    val = photos(Path(args.val))[-8:]
    restorers = {"identity": lambda x: x, "restore (bundled)": model_fn(load_model("restore")[0])}
    restorers |= {name: model_fn(load_model(path)[0]) for name, path in
                  (item.partition("=")[::2] for item in args.restorer)}
    results = {"photos": [k for k, _ in val], "seed": 0}
    for kind in ("degrade", "realworld"):
        pairs = [(k, make_a(b, kind, 0, k), b) for k, b in val]
        results[kind] = {name: evaluate(fn, pairs) for name, fn in restorers.items()}
        for name, r in results[kind].items():
            print(f"{kind:9s} {name:40s} PSNR {r['psnr']:.3f}  SSIM {r['ssim']:.4f}  L1 {r['l1']:.5f}", flush=True)
    io.write_json(Path(args.out).with_suffix(".json"), results)


VISUAL_PHOTOS = 6  # of the validation split's 8
VISUAL_HEIGHT = 200  # px of each panel


def colorizers_named(extra: list[str]) -> dict:
    """{label: generator} of the --colorize-extra models and the bundled colorize."""
    models = {}
    for spec in extra:
        name, _, path = spec.partition("=")
        models[name] = load_model(path)[0]
    if "colorize" in weights.bundled_weights():
        models["colorize"] = load_model("colorize")[0]
    return models


def visual_page(args) -> None:
    """grey | each colouriser | truth of VISUAL_PHOTOS held-out photos, one JPEG strip each."""
    from PIL import Image, ImageDraw

    out_dir = Path(args.visual)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = colorizers_named(args.colorize_extra)
    labels = ["grey (input)", *models, "truth"]
    command = "python scripts/bench_translate.py --visual " + args.visual + "".join(
        f' --colorize-extra "{e}"' for e in args.colorize_extra)
    lines = ["# Colourisation: held-out photos side by side", "",
             f"The first {VISUAL_PHOTOS} photos of the validation split (the last 8 of natural/train, never trained "
             f"on), whole, shown {VISUAL_HEIGHT} px high. Columns: " + " | ".join(labels) + " (colorize: the bundled model). The colourisers see "
             "only the BT.601 luma. Colourfulness (Hasler-Suesstrunk, 0-255) of each panel in its caption.",
             "", f"Command: `{command}`", ""]
    for key, truth in photos(Path(args.val))[-8:][:VISUAL_PHOTOS]:
        grey = gray(truth)
        panels = [grey.expand(3, -1, -1)] + [model_fn(g)(grey).expand(3, -1, -1) for g in models.values()] + [truth]
        w = round(truth.shape[2] * VISUAL_HEIGHT / truth.shape[1])
        tiles = [Image.fromarray(to_uint8(p)).resize((w, VISUAL_HEIGHT), Image.LANCZOS) for p in panels]
        strip = Image.new("RGB", (w * len(tiles) + 4 * (len(tiles) - 1), VISUAL_HEIGHT + 16), "white")
        draw = ImageDraw.Draw(strip)
        for i, (tile, label, p) in enumerate(zip(tiles, labels, panels)):
            strip.paste(tile, (i * (w + 4), 16))
            draw.text((i * (w + 4) + 2, 2), f"{label}  C {colourfulness(p):.0f}", fill="black")
        name = Path(key).name
        strip.save(out_dir / f"{name}.jpg", quality=85, optimize=True)
        lines += [f"## {name}", "", f"![{name}]({out_dir.name}/{name}.jpg)", ""]
    io.write_text(out_dir.with_suffix(".md"), "\n".join(lines))
    print(f"wrote {out_dir.with_suffix('.md')} and {VISUAL_PHOTOS} images in {out_dir}")


VISUAL_CROP = 160  # px of each photo's centre, shown at 2x


def visual_restore_page(args) -> None:
    """degraded | bilateral | --restorer models | restore-unpaired | restore | restore -x | truth on a centre
    crop of VISUAL_PHOTOS held-out photos."""
    from PIL import Image, ImageDraw

    out_dir = Path(args.visual_restore)
    out_dir.mkdir(parents=True, exist_ok=True)
    restorers = {"bilateral (d 9, sigma 50)": bilateral(50)}
    restorers |= {name: model_fn(load_model(path)[0]) for name, path in (e.partition("=")[::2] for e in args.restorer)}
    restorers |= {"restore-unpaired": model_fn(load_model("restore-unpaired")[0])}
    g = load_model("restore")[0]
    restorers |= {"restore": model_fn(g), "restore -x": model_fn(g, tta=True)}
    labels = ["degraded (input)", *restorers, "truth"]
    command = "python scripts/bench_translate.py --visual-restore " + args.visual_restore + "".join(
        f' --restorer "{e}"' for e in args.restorer)
    lines = ["# Restoration: held-out crops side by side", "",
             f"The first {VISUAL_PHOTOS} photos of the validation split (the last 8 of natural/train, never trained "
             f"on), degraded as the benchmark does (`genapps pairs --kind degrade`, seeded per file: blur, noise, "
             f"JPEG), restored whole; a {VISUAL_CROP} px centre crop of each, shown at 2x (nearest neighbour). "
             "Columns: " + " | ".join(labels) + ". PSNR (dB) of the crop against the truth in each caption.",
             "", f"Command: `{command}`", ""]
    for key, truth in photos(Path(args.val))[-8:][:VISUAL_PHOTOS]:
        degraded = make_a(truth, "degrade", args.seed, key)
        outs = [degraded] + [fn(degraded) for fn in restorers.values()] + [truth]
        h, w = truth.shape[1:]
        y0, x0 = (h - VISUAL_CROP) // 2, (w - VISUAL_CROP) // 2
        crops = [o[:, y0:y0 + VISUAL_CROP, x0:x0 + VISUAL_CROP].clamp(0, 1) for o in outs]
        size = 2 * VISUAL_CROP
        strip = Image.new("RGB", (size * len(crops) + 4 * (len(crops) - 1), size + 16), "white")
        draw = ImageDraw.Draw(strip)
        for i, (crop, label) in enumerate(zip(crops, labels)):
            tile = Image.fromarray(to_uint8(crop)).resize((size, size), Image.NEAREST)
            strip.paste(tile, (i * (size + 4), 16))
            if label != "truth":
                label += f"  {float(metrics.psnr(metrics.quantize(crop[None]), crops[-1][None])[0]):.2f} dB"
            draw.text((i * (size + 4) + 2, 2), label, fill="black")
        name = Path(key).name
        strip.save(out_dir / f"{name}.jpg", quality=92, optimize=True)
        lines += [f"## {name}", "", f"![{name}]({out_dir.name}/{name}.jpg)", ""]
    io.write_text(out_dir.with_suffix(".md"), "\n".join(lines))
    print(f"wrote {out_dir.with_suffix('.md')} and {VISUAL_PHOTOS} images in {out_dir}")


def markdown(r: dict, n: int) -> str:
    lines = []
    if r["restore"]:
        lines += restoration_markdown(r, n)
    for table, title in (("colorize", f"Colourisation on BSD68 ({n} images, input = BT.601 luma):"),
                         ("colorize_val", "Colourisation on the validation split (the last 8 photos of natural/train, "
                                          "whole; input = BT.601 luma):")):
        if r.get(table):
            lines += ["", title, "", "| method | PSNR | SSIM | L1 | colourfulness | s/MP |", "|---|---|---|---|---|---|"]
            for name, v in r[table].items():
                if name == "target":
                    lines.append(f"| target (the colour photos) | | | | {v['colourfulness']:.1f} | |")
                else:
                    lines.append(f"| {name} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['l1']:.4f} | "
                                 f"{v['colourfulness']:.1f} | {v['seconds_per_mp']:.2f} |")
    lines += ["", f"Speed: whole-image forward, {r['threads']} thread(s), median of 3 (s/MP): "
              + ", ".join(f"{k} {v:.2f}" for k, v in r.get("speed_seconds_per_mp", {}).items())]
    return "\n".join(lines).lstrip("\n") + "\n"


def restoration_markdown(r: dict, n: int) -> list[str]:
    lines = [f"Restoration on BSD68 ({n} images, degradation per file: blur U(0, 1.5), noise U(0, 20), "
             "JPEG U(30, 90)):", "", "| method | PSNR | SSIM | L1 | s/MP |", "|---|---|---|---|---|"]
    for name, v in r["restore"].items():
        lines.append(f"| {name} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['l1']:.4f} | {v['seconds_per_mp']:.2f} |")
    lines += ["", "Fixed degradation of REFERENCE-POINTS.md (blur 1.2, noise 6, JPEG 35; 256 px crops of the "
              "first 20 BSD68; its plain residual net: 27.13 = identity + 0.76 dB):", "",
              "| method | PSNR | SSIM | L1 |", "|---|---|---|---|"]
    for name, v in r["restore_fixed"].items():
        lines.append(f"| {name} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['l1']:.4f} |")
    return lines


def record_in_cards(r: dict, bundled: dict) -> None:
    """Put each bundled model's benchmark numbers (and the identity's) into its weights card."""
    for name, table, base in (("restore", "restore", "identity"), ("restore-unpaired", "restore", "identity"),
                              ("colorize", "colorize", "identity (grey)")):
        if name not in bundled or name not in r[table]:
            continue
        card_path = bundled[name].with_suffix(".json")
        card = weights.bundled_card(name)
        bench = {k: round(v, 4) for k, v in r[table][name].items()}
        bench |= {"identity_psnr": round(r[table][base]["psnr"], 4), "dataset": "BSD68 pairs (bench_translate.py)"}
        if name != "colorize":
            fixed = r["restore_fixed"]
            bench |= {"fixed_psnr": round(fixed[name]["psnr"], 4), "fixed_identity_psnr": round(fixed["identity"]["psnr"], 4)}
        else:
            bench["target_colourfulness"] = round(r["colorize"]["target"]["colourfulness"], 2)
            val = r["colorize_val"]
            bench["validation_split"] = {k: round(v, 4) for k, v in val[name].items()} | {
                "identity_psnr": round(val[base]["psnr"], 4),
                "target_colourfulness": round(val["target"]["colourfulness"], 2),
                "dataset": "the last 8 photos of natural/train, whole (bench_translate.py)"}
        card["benchmark"] = bench
        io.write_json(card_path, card)


if __name__ == "__main__":
    main()
