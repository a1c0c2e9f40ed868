"""Start a pluralistic inpainting stage from two trained models: the U-Net of a newer deterministic
`inpaint` (a GAN model of the same ngf / num_downs) with the prior, posterior, latent injection and
colour field of a trained `inpaint-pluralistic`.

Why: the bundled pluralistic model started from stage 3 of `inpaint`; the deterministic model has
had four stages since, and a pluralistic model started from it afresh needs its encoders trained
from zero again (the 128-px then 256-px schedule, ~1.8 CPU-hours). The grafted file is a normal
pluralistic checkpoint: `genapps train inpaint --model pluralistic --init GRAFT` continues it.

    python scripts/graft_pluralistic.py --unet inpaint --pluralistic inpaint-pluralistic --out GRAFT.safetensors
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from genapps import weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--unet", default="inpaint", help="a GAN inpainting model (arch unet): the decoder")
    ap.add_argument("--pluralistic", default="inpaint-pluralistic", help="a pluralistic model: its encoders")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    unet_path = weights.resolve_weights(args.unet, task="inpaint")
    plural_path = weights.resolve_weights(args.pluralistic, task="inpaint")
    unet, unet_meta = weights.load_weights(unet_path)
    plural, plural_meta = weights.load_weights(plural_path)
    if unet_meta.get("arch") != "unet" or plural_meta.get("arch") != "pluralistic":
        raise SystemExit(f"need a unet and a pluralistic model, got {unet_meta.get('arch')} and {plural_meta.get('arch')}")
    shape = {k: plural_meta["config"][k] for k in ("ngf", "num_downs")}
    refine = unet_meta["config"].get("refine", [])  # the U-Net's refine levels come with it
    if {k: v for k, v in unet_meta["config"].items() if k != "refine"} != shape or plural_meta["config"].get("latent_map") \
            or not set(plural_meta["config"].get("refine", [])) <= set(refine):  # (the U-Net brings its levels)
        raise SystemExit(f"the U-Nets differ: {unet_meta['config']} vs {plural_meta['config']}")
    grafted = dict(plural)
    for key, tensor in unet.items():
        new_level = ".refine." in key and f"net.{key}" not in plural
        if not new_level and (f"net.{key}" not in plural or plural[f"net.{key}"].shape != tensor.shape):
            raise SystemExit(f"{key} of {args.unet} has no place in the pluralistic model")
        grafted[f"net.{key}"] = tensor
    card = json.loads(plural_path.with_suffix(".json").read_text())
    unet_card = json.loads(unet_path.with_suffix(".json").read_text())
    card["stages"] = list(card.get("stages", [])) + [{
        "command": "python scripts/graft_pluralistic.py " + shlex.join(sys.argv[1:]), "steps": 0, "init": None,
        "note": f"graft: the U-Net of {args.unet} ({len(unet_card.get('stages', []))} stages; last: "
                f"{unet_card.get('stages', [{}])[-1].get('command', '?')}) with the prior, posterior, latent injection "
                f"and colour field of {args.pluralistic}"}]
    if refine:
        card["config"] = dict(card["config"], refine=refine)
    card["provenance"] = f"grafted from {args.unet} and {args.pluralistic} (scripts/graft_pluralistic.py)"
    weights.save_trained(args.out, grafted, card)
    print(f"wrote {args.out}: {sum(1 for k in unet)} U-Net tensors from {args.unet}, "
          f"{len(grafted) - len(unet)} from {args.pluralistic}")


if __name__ == "__main__":
    main()
