"""Choose inpaint-pluralistic's sampling temperature on the held-out validation crops.

For each temperature of a grid, 3 samples per crop (seeds 0-2) of the thick-stroke crops (and of
the mixed ones, reported): one sample's hole L1, the best of 3, and the diversity (mean pairwise
hole L1 between the samples), all /255, per crop then mean; beside them the deterministic
`inpaint` model (one pass and with its 8-transform TTA, as `genapps inpaint` runs it). The rule
(issue 28): the hottest temperature whose best-of-3 on thick strokes stays below the
deterministic model's TTA fill. Validation only: the held-out photos of every inpainting
training (the last 8 of natural/train); BSD68 and Set5 are only reported by bench_inpaint.py.

    python scripts/select_temperature.py CHECKPOINT [--write] [--grid 1,2,3,4,5,6]

--write stores the chosen temperature in CHECKPOINT's config (card and safetensors metadata).
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from genapps import losses, weights
from genapps.inference import dihedral_tta
from genapps.tasks.inpaint import training as T
from genapps.tasks.inpaint.task import load_model


def per_crop_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) hole L1 /255 of each crop."""
    return losses.per_crop_hole_l1(a, b, mask) * 255


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default="../shared/datasets/natural/train")
    ap.add_argument("--grid", default="1,2,3,4,5,6")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.checkpoint)
    det, _ = load_model("inpaint")
    _, val_paths = T.split_validation(T.InpaintTrainConfig(data=args.data, out="unused.safetensors"))
    x, target, mask = T.validation_set(val_paths, classical=True)
    rows, kinds = [], {"thick": slice(0, None, 2), "mixed": slice(1, None, 2)}
    ref = {}
    for kind, sl in kinds.items():
        ref[kind] = {"inpaint": float(per_crop_l1(det(x[sl]), target[sl], mask[sl]).mean()),
                     "inpaint_tta": float(per_crop_l1(dihedral_tta(det, x[sl]), target[sl], mask[sl]).mean())}
    print(json.dumps(ref))
    for tau in (float(t) for t in args.grid.split(",")):
        model.temperature = tau
        row = {"temperature": tau}
        for kind, sl in kinds.items():
            samples = [model(x[sl], torch.Generator().manual_seed(s)) for s in range(3)]
            per = torch.stack([per_crop_l1(s, target[sl], mask[sl]) for s in samples])
            pairs = [per_crop_l1(a, b, mask[sl]) for a, b in itertools.combinations(samples, 2)]
            row |= {f"{kind}_one": float(per[0].mean()), f"{kind}_best_of_3": float(per.min(0).values.mean()),
                    f"{kind}_diversity": float(torch.stack(pairs).mean())}
        rows.append(row)
        print(" ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    ok = [r for r in rows if r["thick_best_of_3"] < ref["thick"]["inpaint_tta"]]
    if not ok:
        print("no temperature keeps best-of-3 below the deterministic model")
        return
    chosen = max(ok, key=lambda r: r["temperature"])
    print(f"chosen temperature {chosen['temperature']}: thick diversity {chosen['thick_diversity']:.2f}, "
          f"best-of-3 {chosen['thick_best_of_3']:.2f} vs inpaint (TTA) {ref['thick']['inpaint_tta']:.2f}")
    if args.write:
        path = weights.resolve_weights(args.checkpoint)
        tensors, meta = weights.load_weights(path)
        card_path = path.with_suffix(".json")
        card = json.loads(card_path.read_text()) if card_path.is_file() else meta
        card["config"] = dict(card["config"], temperature=chosen["temperature"])
        card["temperature_selection"] = {"rule": "the hottest temperature whose best-of-3 hole L1 on the held-out "
                                                 "thick strokes stays below inpaint's (TTA)",
                                         "reference": ref, "grid": rows,
                                         "command": "python scripts/select_temperature.py " + args.checkpoint
                                                    + " --grid " + args.grid + " --write"}
        weights.save_trained(path, tensors, card)
        print("written:", path)


if __name__ == "__main__":
    main()
