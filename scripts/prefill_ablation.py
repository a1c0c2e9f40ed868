"""Does the bundled inpainting model still need its slow pre-fill? (issue 28: "keep it only if it
still helps, and then use a fast one").

On the held-out validation crops of every inpainting training (the last 8 photos of natural/train,
one thick and one mixed mask each, training.validation_set), hole L1 /255 of:
- the pre-fills: mean3 (Telea, Navier-Stokes, biharmonic: the model's), the mean of Telea, NS and the
  push-pull pyramid fill (milliseconds), Telea + NS only, and mean3 with biharmonic solved at 1/2 size;
- the model (one pass) given each pre-fill instead of mean3, without retraining;
and the CPU seconds of each pre-fill over the 16 crops (one thread). Validation only.

    python scripts/prefill_ablation.py [--model inpaint]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genapps import losses
from genapps.tasks.inpaint import classical as C
from genapps.tasks.inpaint import training as T
from genapps.tasks.inpaint.models import push_pull_fill
from genapps.tasks.inpaint.task import load_model


def _holed(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, torch.zeros(()), image)


def biharmonic_half(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Biharmonic on a 2x smaller image (cells with any hole pixel unknown), bilinear back up."""
    known = (~mask).float()[None, None]
    den = F.avg_pool2d(known, 2, ceil_mode=True)
    small = (F.avg_pool2d(image[None] * known, 2, ceil_mode=True) / den.clamp(min=1e-8))[0]
    hole = den[0, 0] < 0.999
    small = C.biharmonic(small, hole) if hole.any() else small
    return F.interpolate(small[None], size=image.shape[1:], mode="bilinear", align_corners=False)[0]


PREFILLS = {
    "mean3": C.prefill,  # the model's own pre-fill
    "telea+ns+push-pull": lambda im, m: (C.telea(im, m) + C.navier_stokes(im, m)
                                         + push_pull_fill(im[None], (~m)[None, None].float())[0]) / 3,
    "telea+ns": lambda im, m: (C.telea(im, m) + C.navier_stokes(im, m)) / 2,
    "mean3, biharmonic at 1/2": lambda im, m: (C.telea(im, m) + C.navier_stokes(im, m) + biharmonic_half(im, m)) / 3,
}


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="inpaint")
    ap.add_argument("--data", default="../shared/datasets/natural/train")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, target, mask = T.validation_set(sorted(Path(args.data).iterdir())[-8:])
    model = load_model(args.model)[0].float().eval()
    print(f"| pre-fill | its hole L1 | model on it (one pass) | pre-fill CPU s (16 crops of {x.shape[-1]} px) |")
    print("|---|---|---|---|")
    for name, fill in PREFILLS.items():
        t0 = time.process_time()
        filled = torch.stack([torch.where(m[0] > 0.5, fill(_holed(t, m[0] > 0.5), m[0] > 0.5), t)
                              for t, m in zip(target, mask)])
        seconds = time.process_time() - t0
        l1 = float(losses.hole_l1(filled, target, mask)) * 255
        fixed = float(losses.hole_l1(model(torch.cat([filled, mask], 1)), target, mask)) * 255
        print(f"| {name} | {l1:.2f} | {fixed:.2f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
