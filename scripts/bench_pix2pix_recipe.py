"""pix2pix training, genapps's defaults vs the reference recipe (issue 29), at equal steps and batch.

    # the data: natural/train resized to 286x286 (the reference's load size), edges -> photo pairs
    python scripts/bench_pix2pix_recipe.py prepare --photos ../shared/datasets/natural/train --out /tmp/p2p
    # the two trainings (one thread each, 600 steps of batch 1; the commands are printed and recorded)
    python scripts/bench_pix2pix_recipe.py train --out /tmp/p2p --steps 600
    # held-out L1/PSNR, speed and the side-by-side page
    python scripts/bench_pix2pix_recipe.py report --out /tmp/p2p --md benchmarks/pix2pix_recipe.md

The reference recipe is the pix2pix paper's and code's (junyanz/pytorch-CycleGAN-and-pix2pix, train.py
--model pix2pix): U-Net 256 (ngf 64, dropout), PatchGAN 70x70 (ndf 64, batch norm), vanilla GAN,
lambda L1 100, Adam 2e-4 with beta1 0.5, constant then linear decay over the second half, batch 1,
random 256 crops of 286 px, no EMA; run through `genapps train pix2pix` (whose networks load the
reference's checkpoints key for key and whose losses are the reference's). Held-out = the last 8
pairs (never trained on), centre 256 crops, outputs rounded to 8 bits; L1 on the 0-1 scale.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["--layout", "folders", "--val-split", "8", "--preprocess", "crop", "--crop-size", "256",
          "--batch-size", "1", "--seed", "0"]
RECIPES = {
    "genapps": [],  # its defaults: U-Net 128 (ngf 32), PatchGAN ndf 32 with spectral norm, EMA 0.999
    "reference": ["--ngf", "64", "--num-downs", "8", "--dropout", "--ndf", "64", "--n-layers-d", "3", "--d-norm",
                  "batch", "--gan-mode", "vanilla", "--gan-weight", "1", "--l1-weight", "100", "--lr", "2e-4",
                  "--beta1", "0.5", "--ema", "0"],
}


def prepare(photos: Path, out: Path) -> None:
    from PIL import Image

    (out / "photos").mkdir(parents=True, exist_ok=True)
    for p in sorted(photos.iterdir()):
        Image.open(p).convert("RGB").resize((286, 286), Image.BICUBIC).save(out / "photos" / (p.stem + ".png"))
    subprocess.run([sys.executable, "-m", "genapps", "-q", "pairs", str(out / "photos"), str(out / "edges"),
                    "--kind", "edges"], check=True, cwd=ROOT)


def train(out: Path, steps: int) -> None:
    for name, options in RECIPES.items():
        cmd = [sys.executable, "-m", "genapps", "train", "pix2pix", "--data", str(out / "edges"), *COMMON,
               "--steps", str(steps), "--val-every", str(max(1, steps // 4)), *options,
               "--out", str(out / "runs" / f"{name}.safetensors")]
        print(shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, env=os.environ | {"OMP_NUM_THREADS": "1"})


def report(out: Path, md: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from genapps import metrics
    from genapps.tasks.translate.models import load_model
    from genapps.tasks.translate.pairs import read_pairs
    from genapps.tasks.translate.training import run_generator

    val = read_pairs(out / "edges", "folders")[-8:]
    rows, outputs = {}, {}
    for name in RECIPES:
        path = out / "runs" / f"{name}.safetensors"
        card = json.loads(path.with_suffix(".json").read_text())
        g, _ = load_model(str(path))
        psnr, l1, outs = [], [], []
        for _, a, b in val:
            y0, x0 = (a.shape[0] - 256) // 2, (a.shape[1] - 256) // 2
            ta = torch.from_numpy(a[y0:y0 + 256, x0:x0 + 256]).permute(2, 0, 1)[None].float() / 255
            tb = torch.from_numpy(b[y0:y0 + 256, x0:x0 + 256]).permute(2, 0, 1)[None].float() / 255
            with torch.inference_mode():
                y = metrics.quantize(run_generator(g, ta).clamp(0, 1))
            psnr.append(float(metrics.psnr(y, tb)[0]))
            l1.append(float(metrics.mae(y, tb)[0]))
            outs.append((ta, y, tb))
        minutes = card["training"]["minutes"]
        rows[name] = {"held_out_psnr": round(float(np.mean(psnr)), 3), "held_out_l1": round(float(np.mean(l1)), 4),
                      "steps": card["training"]["steps"], "minutes": minutes,
                      "steps_per_s": round(card["training"]["steps"] / (minutes * 60), 3),
                      "params_M": round(card["params"] / 1e6, 2), "weights": card["validation"].get("weights"),
                      "command": card.get("command")}
        outputs[name] = outs
    pages = md.parent / md.stem
    pages.mkdir(parents=True, exist_ok=True)
    lines = [f"# pix2pix: genapps's defaults vs the reference recipe, {rows['genapps']['steps']} steps of batch 1",
             "", __doc__.split("\n\n")[2].replace("\n", " "), "",
             "| recipe | held-out PSNR | held-out L1 | steps/s (1 thread) | G params (M) | weights |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['held_out_psnr']:.2f} | {r['held_out_l1']:.4f} | {r['steps_per_s']:.2f} "
                     f"| {r['params_M']} | {r['weights']} |")
    lines += ["", "Held-out pairs: edges | genapps | reference | photo", ""]
    for i in range(len(val)):
        ta, yg, tb = outputs["genapps"][i]
        yr = outputs["reference"][i][1]
        strip = torch.cat([ta.expand(-1, 3, -1, -1), yg, yr, tb], 3)[0]
        name = f"{i}.jpg"
        Image.fromarray((strip.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(pages / name, quality=85)
        lines.append(f"![{i}]({pages.name}/{name})")
    md.write_text("\n".join(lines) + "\n")
    md.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines[:8]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "train", "report"))
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared/datasets/natural/train")
    ap.add_argument("--out", type=Path, default=Path("/tmp/p2p"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--md", type=Path, default=ROOT / "benchmarks/pix2pix_recipe.md")
    args = ap.parse_args()
    {"prepare": lambda: prepare(args.photos, args.out), "train": lambda: train(args.out, args.steps),
     "report": lambda: report(args.out, args.md)}[args.step]()


if __name__ == "__main__":
    main()
