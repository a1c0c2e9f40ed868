"""inpaint: fill the masked holes of image folders (IOPaint/LaMa mask conventions).

Methods: the bundled model (`model`, default), the pluralistic VAE-family variant (several
plausible fills per image with `samples`, the first its most likely one: the prior's mean), a
community inpainting model spandrel reads (`-m big-lama.pt`: LaMa, MAT, ...), and the classical
`telea`, `ns` (OpenCV), `biharmonic` (scikit-image), `fsr-fast` and `fsr-best` (OpenCV-contrib).
`grow` dilates the masks first.
Whatever the method, the output keeps the input's pixels outside the hole exactly (same bit
depth, alpha passed through).

The model path: each connected hole, dilated by `margin` px, is cut out as a crop, resized down
when its longer side exceeds `work_size`; the round-1 U-Nets get the crop's hole pre-filled by
the mean of Telea, NS and biharmonic at that size (the FFC model and spandrel's models fill it
themselves from the zeroed hole); the crop is reflect-padded to the network's multiple, corrected
by the network and pasted back inside the hole only.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genapps import io, metrics, weights
from genapps.batch import Manifest, file_output, map_images
from genapps.inference import check_finite, dihedral, dihedral_tta, pad_to_multiple, round_trip, size_requirements
from genapps.records import StageResult
from genapps.tasks.inpaint import masks as M
from genapps.tasks.inpaint.classical import check_fillable, fill, prefill
from genapps.tasks.inpaint.config import Config
from genapps.tasks.inpaint.models import ARCHS

log = logging.getLogger(__name__)

TASK = "inpaint"
DEFAULT_MODELS = {False: "inpaint", True: "inpaint-pluralistic"}  # by "several samples wanted"


class MissingMask(ValueError):
    """An image without a mask (skipped with skip_missing_masks)."""


def load_model(name_or_path: str) -> tuple[nn.Module, weights.ModelInfo]:
    """A model in eval mode and its ModelInfo: a bundled name or a genapps .safetensors of this task,
    or a community inpainting model spandrel reads (LaMa, MAT, ...: purpose "Inpainting"),
    validated and built within the file's allocation budget (genapps.weights.load_model)."""
    return weights.load_model(name_or_path, TASK, ARCHS, spandrel=("Inpainting",), infer=_refuse_foreign)


def _refuse_foreign(tensors: dict, where: str) -> weights.Declared:
    """A file that is neither genapps's nor spandrel's: inpaint reads no other key layout (ValueError)."""
    what = ("not a genapps checkpoint (no genapps metadata)" if where.endswith(".safetensors")
            else "not a readable safetensors file (genapps's format)")
    raise ValueError(f"{where}: {what}, nor inpainting weights spandrel reads (LaMa, MAT, ...)")


def needs_prefill(model: nn.Module) -> bool:
    """Whether the model's input hole holds classical.prefill (the round-1 U-Nets); the FFC model and
    spandrel's models take the image with its hole zeroed and fill it themselves."""
    return bool(getattr(model, "classical_prefill", False))


def _run_model(model: nn.Module, inp: torch.Tensor, generator, tta: bool, mode: bool = False) -> torch.Tensor:
    """One crop (1, 4, h, w) = [RGB, mask] through the model: spandrel's take (image, mask); a
    pluralistic model decodes its code z (pluralistic_code)."""
    if isinstance(model, weights.SpandrelModel):
        return model(inp[:, :3], inp[:, 3:])
    if hasattr(model, "prior_params"):
        return sample_with_tta(model, inp, generator, mode) if tta else model.decode(
            inp, pluralistic_code(model, inp, generator, mode))
    return dihedral_tta(model, inp) if tta else model(inp)


def pluralistic_code(model: nn.Module, inp: torch.Tensor, generator, mode: bool = False) -> torch.Tensor:
    """The pluralistic model's z for the crop: drawn from its prior with `generator`, or with `mode`
    the prior's mean (the most likely fill, no draw)."""
    mu, logvar = model.prior_params(inp)
    return mu if mode else model.sample_z(mu, logvar, generator)


def sample_with_tta(model: nn.Module, inp: torch.Tensor, generator, mode: bool = False) -> torch.Tensor:
    """One pluralistic sample (B, 3, H, W) averaged over the 8 flips/transposes: z is chosen once
    (pluralistic_code: the same draw as without TTA, or the mode), the U-Net runs on each transform
    (a latent map transformed with it), and the colour field is added once in the image's own frame."""
    z = pluralistic_code(model, inp, generator, mode)
    passes = (dihedral(model.decode_net(dihedral(inp, k), dihedral(z, k) if z.dim() == 4 else z), k, inverse=True)
              for k in range(8))
    return model.add_field(sum(passes) / 8, inp, z)


# ---------------------------------------------------------------- the model on crops around holes


def hole_crops(mask: torch.Tensor, margin: int) -> list[tuple[int, int, int, int, torch.Tensor]]:
    """(y, x, h, w, hole) per connected hole region, dilated by `margin`: the crop box and the hole
    pixels (bool (h, w)) that this crop fills (each hole pixel belongs to exactly one crop)."""
    m = mask.numpy().astype(np.uint8)
    grown = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1,) * 2)) if margin else m
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    crops = []
    for i in range(1, count):
        x, y, w, h = (int(v) for v in stats[i, :4])
        region = torch.from_numpy(labels[y:y + h, x:x + w] == i) & mask[y:y + h, x:x + w]
        if region.any():
            crops.append((y, x, h, w, region))
    return crops


@dataclass(frozen=True)
class WorkCrop:
    """One connected hole's crop as the network takes it: box (y, x, h, w) in the image, `region`
    the hole pixels (bool (h, w)) this crop fills, `input` (4, sh, sw) = [RGB, hole] at the work
    resolution (sh, sw <= work_size; the hole pre-filled for the round-1 U-Nets, zero otherwise)."""

    y: int
    x: int
    h: int
    w: int
    region: torch.Tensor
    input: torch.Tensor


def work_crops(rgb: torch.Tensor, mask: torch.Tensor, classical: bool, work_size: int = 512,
               margin: int = 48) -> list[WorkCrop]:
    """The crops of `hole_crops`, each resized down (area) when longer than `work_size` (a pixel
    partly in the hole is hole) and, when `classical`, its hole pre-filled by classical.prefill at
    that resolution: the pre-fill costs the crop's pixels, not the photo's (a 5% hole of a 12-MP
    photo: one 512-px crop, not 12 MP of biharmonic), and the network sees it as in training (crops
    pre-filled at their own scale). The hole's content is never read."""
    check_fillable(mask)
    crops = []
    for y, x, h, w, region in hole_crops(mask, margin):
        hole = mask[y:y + h, x:x + w]
        img = torch.where(hole, torch.zeros(()), rgb[:, y:y + h, x:x + w])[None]
        m = hole[None, None].float()
        scale = min(1.0, work_size / max(h, w))
        if scale < 1:
            size = (max(8, round(h * scale)), max(8, round(w * scale)))
            m = (F.interpolate(m, size=size, mode="area") > 0).float()
            img = F.interpolate(img, size=size, mode="area") * (1 - m)
        if classical:
            small = m[0, 0].bool()
            if small.all():  # the crop's few known pixels vanish at this scale: pre-fill at full size
                full = prefill(rgb[:, y:y + h, x:x + w], hole)[None]
                img = F.interpolate(full, size=tuple(small.shape), mode="area")
            else:
                img = prefill(img[0], small)[None]
        crops.append(WorkCrop(y, x, h, w, region, torch.cat([img, m], 1)[0]))
    return crops


@torch.inference_mode()
def model_fill(model: nn.Module, rgb: torch.Tensor, mask: torch.Tensor, work_size: int = 512, margin: int = 48,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               crops: list[WorkCrop] | None = None, tta: bool = False, name: str | None = None,
               mode: bool = False) -> torch.Tensor:
    """(3, H, W) in [0, 1], bool (H, W) hole -> (3, H, W) filled; outside the hole equals `rgb`.

    `generator` seeds the pluralistic model's sample (ignored by the GAN model), `mode` takes its
    most likely fill instead (the prior's mean: no draw); `crops` are
    work_crops(rgb, mask, needs_prefill(model), work_size, margin) when already made (several
    samples of one image share their pre-fill); `tta` averages the GAN model, and each pluralistic
    sample (sample_with_tta), over the 8 flips and transposes (lower hole L1, 8x the network time).
    A NaN/inf prediction is a NonFiniteOutput naming the model (`name`); a hole covering the whole
    image a ValueError (nothing to fill from).
    """
    if not mask.any():
        return rgb.clone()
    if crops is None:
        crops = work_crops(rgb, mask, needs_prefill(model), work_size, margin)
    out = rgb.clone()
    req = size_requirements(model)
    for c in crops:
        sh, sw = c.input.shape[-2:]
        inp = pad_to_multiple(c.input[None], req)[0].to(device)
        pred = check_finite(_run_model(model, inp, generator, tta, mode)[..., :sh, :sw].float().cpu(), name)
        if (sh, sw) != (c.h, c.w):
            pred = F.interpolate(pred, size=(c.h, c.w), mode="bicubic", align_corners=False).clamp(0, 1)
        window = out[:, c.y:c.y + c.h, c.x:c.x + c.w]
        out[:, c.y:c.y + c.h, c.x:c.x + c.w] = torch.where(c.region, pred[0], window)
    return torch.where(mask, out, rgb)


# ---------------------------------------------------------------- one image


def inpaint_image(image: io.LoadedImage, mask: torch.Tensor, cfg: Config, model: nn.Module | None,
                  name: str, device: torch.device) -> list[io.LoadedImage]:
    """`cfg.samples` filled copies of `image` (grey runs as RGB and comes back grey; alpha untouched)."""
    outs, crops = [], None
    for k in range(cfg.samples):
        if not mask.any():
            color = image.color.clone()  # nothing to fill: the image passes through
        elif cfg.method != "model":
            color = fill(cfg.method, image.color, mask)
        else:
            gen = torch.Generator(device=device).manual_seed(M.seed_for(cfg.seed, f"{name}#{k}"))

            def step(rgb: torch.Tensor) -> torch.Tensor:
                nonlocal crops
                if crops is None:  # the same for every sample (the pre-fill too)
                    crops = work_crops(rgb, mask, needs_prefill(model), cfg.work_size, cfg.margin)
                return model_fill(model, rgb, mask, cfg.work_size, cfg.margin, gen, device, crops, cfg.tta,
                                  cfg.model or DEFAULT_MODELS[cfg.samples > 1], mode=cfg.mode_first and k == 0)

            color = round_trip(image, step).color  # grey runs as RGB and comes back grey
        color = torch.where(mask, color, image.color)  # exactly the input outside the hole
        outs.append(io.LoadedImage(color, image.alpha, image.bit_depth))
    return outs


def side_by_side(image: io.LoadedImage, mask: torch.Tensor, result: io.LoadedImage) -> io.LoadedImage:
    """image | mask (white = hole) | result, one image three times as wide."""
    c = image.color.shape[0]
    white = mask.float()[None].expand(c, -1, -1)
    color = torch.cat([image.color, white, result.color], 2)
    alpha = None
    if image.alpha is not None:
        alpha = torch.cat([image.alpha, torch.ones_like(image.alpha), result.alpha], 2)
    return io.LoadedImage(color, alpha, image.bit_depth)


class HoleMasks:
    """The hole mask of each output made in this run, by output tensor. The batch's writer threads
    measure an output while the model already fills the next images (batch._run_files), so one
    "last mask" slot paired outputs with no mask (their hole metrics lost, more or fewer per run);
    outputs are held by weak reference only."""

    def __init__(self):
        self._lock = threading.Lock()
        self._masks: dict[int, tuple[weakref.ref, torch.Tensor | None]] = {}

    def put(self, color: torch.Tensor, mask: torch.Tensor | None) -> None:
        with self._lock:
            self._masks = {k: v for k, v in self._masks.items() if v[0]() is not None}
            self._masks[id(color)] = (weakref.ref(color), mask)

    def take(self, color: torch.Tensor) -> torch.Tensor | None:
        with self._lock:
            ref, mask = self._masks.pop(id(color), (None, None))
        return mask if ref is not None and ref() is color else None


def hole_measure(holes: HoleMasks):
    """Per-image metrics: hole L1 (/255) and PSNR inside the hole when the mask of that output is
    known (processed in this run), and PSNR/SSIM over the whole image."""
    def measure(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
        mask = holes.take(pred)
        pred, ref = metrics.quantize(pred[None]), ref[None]
        out = {"psnr": float(metrics.psnr(pred, ref)[0])}
        if min(pred.shape[-2:]) >= 11:
            out["ssim"] = float(metrics.ssim(pred, ref)[0])
        if mask is not None and mask.any():
            m = mask[None, None].float()
            out["hole_l1"] = float(metrics.mae(pred, ref, m)[0]) * 255
            out["hole_psnr"] = float(metrics.psnr(pred, ref, mask=m)[0])
        return out
    return measure


def other_samples(cfg: Config, input_dir: str | Path, output_dir: str | Path) -> dict[Path, dict]:
    """{output file: its manifest line} of the outputs an earlier run of this task wrote into the
    output folder with another `samples` (`a_s2.png` of `--samples 3`, `a.png` of `--samples 1`)
    and otherwise the same names (suffix, ext), for inputs that still exist, unchanged since
    written: what a run with `cfg.samples` would leave mixed in with its own fills."""
    if io.is_url(input_dir) or io.is_url(output_dir):
        return {}
    target = file_output(input_dir, output_dir)
    out_root = target.parent if target is not None else Path(output_dir)
    in_root = Path(input_dir) if Path(input_dir).is_dir() else Path(input_dir).parent
    if not out_root.is_dir():
        return {}
    found = {}
    for rel, entry in Manifest(out_root, TASK, {}).entries.items():
        fingerprint = entry.get("fingerprint") if isinstance(entry.get("fingerprint"), dict) else {}
        path, source = out_root / rel, entry.get("input")
        if (entry.get("task") == TASK and fingerprint.get("samples", cfg.samples) != cfg.samples
                and fingerprint.get("suffix") == cfg.suffix and fingerprint.get("ext") == cfg.ext
                and isinstance(source, str) and (in_root / source).is_file() and path.is_file()
                and entry.get("sha256") == io.sha256_file(path)):
            found[path] = entry
    return found


def remove_other_samples(result: StageResult, cfg: Config, input_dir: str | Path, output_dir: str | Path) -> list[str]:
    """After a run: delete the outputs of `other_samples` whose input this run filled (a folder
    never mixes the fills of two runs); returns their names."""
    root = Path(input_dir) if Path(input_dir).is_dir() else Path(input_dir).parent
    done = {Path(r.input).relative_to(root).as_posix() for r in result.records if r.status == "ok"}
    removed = []
    for path, entry in other_samples(cfg, input_dir, output_dir).items():
        if entry.get("input") in done:
            path.unlink()
            removed.append(path.relative_to(result.output_dir).as_posix())
    if removed:
        log.warning("%s: removed %d output(s) an earlier run wrote with other samples for the same inputs (%s)",
                    result.output_dir, len(removed), ", ".join(removed[:5]) + (" ..." if len(removed) > 5 else ""))
    return removed


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device: torch.device,
        name: str = TASK) -> StageResult:
    """Inpaint every image under `input_dir` into `output_dir` (mirrored tree)."""
    source = M.MaskSource(cfg.masks, cfg.mask_threshold, cfg.invert_mask) if cfg.masks else None
    model, info, model_info = None, None, {"arch": cfg.method}
    if cfg.method == "model":
        model_name = cfg.model or DEFAULT_MODELS[cfg.samples > 1]
        model, info = load_model(model_name)
        model_info = info.as_report() | {"name": model_name}
        if cfg.samples > 1 and info.arch != "pluralistic":
            raise ValueError(f"--samples {cfg.samples} needs a pluralistic model (e.g. inpaint-pluralistic); "
                             f"{model_name} is a {info.arch} model and gives one fill")
        if cfg.temperature is not None:
            if not hasattr(model, "temperature"):
                raise ValueError(f"--temperature needs a pluralistic model (e.g. inpaint-pluralistic); {model_name} "
                                 f"is a {info.arch} model and gives one fill")
            model.temperature = cfg.temperature
        model = model.to(device)
    root = Path(input_dir) if Path(input_dir).is_dir() else Path(input_dir).parent
    stale = other_samples(cfg, input_dir, output_dir)
    if stale and cfg.resume:  # fills of another --samples would stay mixed in with this run's
        first, entry = next(iter(stale.items()))
        raise ValueError(f"{len(stale)} existing output(s) in {first.parent} were written with samples "
                         f"{entry['fingerprint'].get('samples')} (first: {first.name}) and this run writes samples "
                         f"{cfg.samples}; redo with --overwrite (in a pipeline: --set {name}.resume=false), which "
                         f"removes them, or choose another output folder")
    suffixes = tuple(f"_s{k}" for k in range(cfg.samples)) if cfg.samples > 1 else None
    holes = HoleMasks()

    def process(image: io.LoadedImage, src: Path):
        rel = src.relative_to(root)
        if source is not None:
            try:
                mask = source.mask_for(rel, image.size)
            except FileNotFoundError as e:
                raise MissingMask(str(e)) from None
        else:
            mask = torch.from_numpy(M.generate(cfg.mask_kind, image.size, M.seed_for(cfg.mask_seed, rel.as_posix())))
        mask = M.grow(mask, cfg.grow)
        outs = inpaint_image(image, mask, cfg, model, rel.as_posix(), device)
        if cfg.concat:
            outs = [side_by_side(image, mask, o) for o in outs]
        holes.put(outs[0].color, None if cfg.concat else mask)
        return dict(zip(suffixes, outs)) if suffixes else outs[0]

    fingerprint = {"method": cfg.method, "arch": model_info["arch"],
                   "model_sha256": info.sha256 if info is not None else None,
                   "masks": "file" if source is not None else f"{cfg.mask_kind}/{cfg.mask_seed}",
                   **({"grow": cfg.grow} if cfg.grow else {}),  # (absent at 0: earlier runs still resume)
                   **({"temperature": cfg.temperature} if cfg.temperature is not None else {}),
                   **({"sample_tta": True} if cfg.tta and model_info["arch"] == "pluralistic" else {}),  # (its
                   # samples were one pass each before 2026-12-05: such outputs are redone, not kept)
                   **({"mode_first": True} if cfg.mode_first and model_info["arch"] == "pluralistic" else {}),  # (the
                   # first sample was a draw before 2026-12-05: redone)
                   **{k: getattr(cfg, k) for k in ("samples", "seed", "concat", "mask_threshold", "invert_mask", "tta",
                                                    "work_size", "margin", "ext", "suffix", "quality")}}

    def mask_file(src: Path) -> list[Path]:  # editing a mask redoes its image on resume
        found = source.path_for(src.relative_to(root)) if source is not None else None
        return [found] if found is not None else []

    t0 = time.perf_counter()
    result = map_images(
        input_dir, output_dir, process, name=name, task=TASK, config=asdict(cfg) | {"model_info": model_info},
        fingerprint=fingerprint, extra_inputs=mask_file,
        ext=cfg.ext, suffix=cfg.suffix, quality=cfg.quality, resume=cfg.resume, fail_fast=cfg.fail_fast,
        reference=cfg.reference, measure=hole_measure(holes), pass_source=True, output_suffixes=suffixes,
    )
    stale = remove_other_samples(result, cfg, input_dir, output_dir)
    if cfg.skip_missing_masks:  # images without a mask are skipped, not failed
        for r in result.records:
            if r.status == "error" and r.error and "no mask for" in r.error:
                r.status = "skipped"
    ok = [r for r in result.records if r.status == "ok"]
    mp = sum(r.metrics.get("output_mp", 0.0) for r in ok) / (3 if cfg.concat else 1)
    result.summary = {"method": cfg.method, "model": model_info.get("name"), "arch": model_info["arch"],
                      "samples": cfg.samples, "input_mp": round(mp, 3),
                      **({"removed_stale_outputs": stale} if stale else {}),
                      "seconds_per_mp": round(sum(r.seconds for r in ok) / max(mp, 1e-9), 3) if ok else None,
                      "seconds": round(time.perf_counter() - t0, 2)}
    return result
