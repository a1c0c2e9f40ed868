"""Build the colour texture benchmark of `genapps augment` (issue 19) from the natural photos.

Classes are source photos: class k is "a crop of photo k", a texture/scene recognition task
with tens of images per class. The photos are every `--every`-th of the sorted file list of
`--src` (by default 10 classes out of the 80 photos of ../shared/datasets/natural/train;
the class name is the photo's SUN scene name, e.g. `barn_sun`). Each photo is cut in two
halves side by side: crops for training come from the left half, test crops from the right
half, so no test pixel was ever seen in training. A crop is a random square of `--crop` times
the photo's shorter side, area-resized to `--size` px (default 64); positions are seeded.

Written to OUT (keep it outside the repository, e.g. runs/color_set, which git ignores):
- pool/<class>/NNN.png: `--pool` crops per class from the left halves (the benchmark draws its
  labeled images from them and treats the rest as unlabeled, like the MNIST pool);
- test/<class>/NNN.png: `--test` crops per class from the right halves;
- train/<class>/: the first `--labels` pool crops of each class, and unlabeled/: the rest of the
  pool without labels, for a direct `genapps augment OUT/train ... --unlabeled OUT/unlabeled
  --eval OUT/test`;
- README.txt: this recipe and the exact command.

    python scripts/make_color_set.py --out runs/color_set [--classes 10] [--pool 60] [--test 40]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def crops(photo: torch.Tensor, n: int, side_px: int, size: int, right: bool, g: torch.Generator) -> torch.Tensor:
    """`n` random square crops (side_px) of the left or right half of photo (3, H, W) -> (n, 3, size, size)."""
    _, h, w = photo.shape
    x0, x1 = (w // 2, w) if right else (0, w // 2)
    side = min(side_px, h, x1 - x0)
    ys = torch.randint(0, h - side + 1, (n,), generator=g).tolist()
    xs = torch.randint(x0, x1 - side + 1, (n,), generator=g).tolist()
    out = [photo[:, y:y + side, x:x + side] for y, x in zip(ys, xs)]
    return F.interpolate(torch.stack(out), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT.parent / "shared/datasets/natural/train"))
    ap.add_argument("--out", required=True, help="Output folder (outside the repository or under runs/).")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--every", type=int, default=8, help="Take every N-th photo of the sorted list.")
    ap.add_argument("--pool", type=int, default=60, help="Crops per class from the left halves.")
    ap.add_argument("--test", type=int, default=40, help="Crops per class from the right halves.")
    ap.add_argument("--labels", type=int, default=10, help="Labeled crops per class in train/.")
    ap.add_argument("--crop", type=float, default=0.25, help="Crop side as a fraction of the shorter side.")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from genapps import io

    out = Path(args.out)
    if out.resolve() == ROOT or ROOT in out.resolve().parents and "runs" not in out.resolve().relative_to(ROOT).parts:
        raise SystemExit(f"write the set outside the repository or under runs/ (git-ignored), not {out}")
    photos = io.list_images(args.src)[::args.every][:args.classes]
    if len(photos) < 2:
        raise SystemExit(f"{args.src}: fewer than 2 photos to make classes of")
    if not 0 < args.labels <= args.pool:
        raise SystemExit("--labels must be between 1 and --pool")
    g = torch.Generator().manual_seed(args.seed)
    classes = []
    for k, path in enumerate(photos):
        photo = io.read_image(path).color
        photo = photo.expand(3, -1, -1) if photo.shape[0] == 1 else photo
        name = path.stem.rsplit("_", 1)[0] if "_" in path.stem else path.stem
        name = name if name not in classes else f"{name}{k}"
        classes.append(name)
        side = round(args.crop * min(photo.shape[1:]))
        for split, n, right in (("pool", args.pool, False), ("test", args.test, True)):
            for i, x in enumerate(crops(photo, n, side, args.size, right, g)):
                im = io.LoadedImage(x.contiguous())
                io.write_image(out / split / name / f"{i:03d}.png", im)
                if split == "pool":
                    io.write_image(out / ("train" if i < args.labels else "unlabeled") /
                                   (name if i < args.labels else "") / f"{name}_{i:03d}.png", im)
    cmd = "python scripts/make_color_set.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    io.write_text(out / "README.txt", "\n".join([
        "Colour texture set of genapps augment's benchmark (scripts/make_color_set.py).", "",
        f"Command: {cmd}", "",
        f"Classes = source photos (every {args.every}th of the sorted {args.src}): " + ", ".join(
            f"{c} ({p.name})" for c, p in zip(classes, photos)), "",
        f"Crops: random squares of {args.crop} x the shorter side, resized to {args.size} px; pool/ and train/ "
        f"from the left half of each photo ({args.pool} per class, the first {args.labels} in train/, the rest "
        f"unlabeled in unlabeled/), test/ from the right half ({args.test} per class).", ""]))
    print(f"{len(classes)} classes written to {out}: {', '.join(classes)}")


if __name__ == "__main__":
    main()
