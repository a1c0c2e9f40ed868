"""augment: class-conditional generators (CVAE or cGAN) that add labeled images to a small
ImageFolder, with an optional unlabeled pool, a quality filter, an interpolation figure, and
the downstream-classifier proof (--eval) that says whether the synthetic images helped.

DATA is an ImageFolder (one subfolder per class). OUTPUT receives OUTPUT/<class>/*.png,
OUTPUT/manifest.csv (class, file, seed, model, filter score), OUTPUT/generator.safetensors,
the figures samples.png and interpolation.png, generator.state.pt (resume), and with an
unlabeled pool OUTPUT/pseudo_labels.csv (file, class, confidence, kept).
"""

from __future__ import annotations

import csv
import io as _stdio
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from genapps import io, paths, weights
from genapps.records import Record, StageResult
from genapps.tasks.augment.data import LabeledImages, load_imagefolder, load_unlabeled
from genapps.tasks.augment.evaluate import SEMIGAN_LR, evaluate_arms, feature_metrics, per_class_accuracy
from genapps.tasks.augment.config import (DEFAULT_PER_CLASS, ENCODER_MODELS, POSTERIOR_FRACTION,
                                          POSTERIOR_TEMPERATURE, Config)
from genapps.tasks.augment.models import GENERATORS
from genapps.tasks.augment.training import (ClassifierConfig, GeneratorResult, PseudoLabels,
                                            Synthetic, generator_meta, judge_split, judge_steps, pseudo_label,
                                            self_training_steps, synthesize, train_classifier, train_generator,
                                            train_judge)
from genapps.train import check_resume, data_fingerprint

log = logging.getLogger(__name__)

TASK = "augment"
@dataclass
class Augmented:
    """What `augment_tensors` made: the kept samples and how."""

    synthetic: Synthetic
    generator: GeneratorResult
    guide_net: torch.nn.Module | None  # the real-data classifier that guided the generator
    judge: torch.nn.Module | None  # the filter's judge, trained on judge_index only (None: the filter used guide_net)
    pseudo: PseudoLabels | None
    train_size: int  # images the generator trained on (labeled + kept pseudo-labeled)
    # labeled images (indices into x) the generator trained on, and its guide without a pool (with one, the guide is
    # the self-training classifier of every labeled image)
    generator_index: torch.Tensor
    judge_index: torch.Tensor  # labeled images the judge trained on: disjoint from generator_index
    seconds: dict = field(default_factory=dict)
    sampling: str = "prior"  # prior | mixed | posterior (see POSTERIOR_FRACTION)

    @property
    def filter_net(self) -> torch.nn.Module | None:
        """The classifier the filter used: the judge, or the guide without one."""
        return self.judge if self.judge is not None else self.guide_net


def class_counts(y: torch.Tensor, num_classes: int, cfg: Config) -> dict[int, int]:
    """Synthetic images to make per class: per_class, or ratio x the class's real images."""
    real = torch.bincount(y, minlength=num_classes).tolist()
    if cfg.ratio is not None:
        return {k: max(1, round(cfg.ratio * n)) for k, n in enumerate(real)}
    return {k: cfg.per_class or DEFAULT_PER_CLASS for k in range(num_classes)}


def augment_tensors(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: Config, device: torch.device,
                    x_unlabeled: torch.Tensor | None = None, state_path: str | Path | None = None,
                    meta: dict | None = None) -> Augmented:
    """The whole augmentation in memory: (pseudo-labels), generator training, (filtered) sampling.

    x: (N, C, S, S) in [0, 1], y: (N,) class indices; x_unlabeled: (M, C, S, S) or None.
    `meta` describes the data for the generator's resume check (class names, file fingerprints).
    """
    gen_index, judge_index = judge_split(y, num_classes, cfg.judge_holdout if cfg.filter else 0.0, cfg.seed)
    if cfg.filter and cfg.judge_holdout > 0 and not len(judge_index) and num_classes > 1:
        log.warning("a class has a single labeled image: no held-out judge, the filter uses the guide classifier")
    if len(judge_index):  # the generator trains on the rest only: a resume must hold out the same images
        meta = (meta or {}) | {"judge_holdout": cfg.judge_holdout, "judge_split_seed": cfg.seed}
    check_resume(state_path, generator_meta(x, num_classes, cfg.generator_config(), meta), cfg.resume)
    seconds = {}
    t = time.perf_counter()
    pseudo, guide_net, judge = None, None, None
    xa, ya = x[gen_index], y[gen_index]  # the generator's labeled images (and its guide's)
    xg, yg = xa, ya
    if x_unlabeled is not None and len(x_unlabeled):
        # self-training on every labeled image: its labels are a product of their own (pseudo_labels.csv, arms e/f)
        pseudo = pseudo_label(x, y, x_unlabeled, num_classes, device, cfg.pseudo_threshold,
                              steps=self_training_steps(cfg.eval_steps, len(x_unlabeled)),
                              seed=cfg.seed)
        xg = torch.cat([xa, x_unlabeled[pseudo.keep]])
        yg = torch.cat([ya, pseudo.labels[pseudo.keep]])
        guide_net = pseudo.classifier
        seconds["pseudo_labels"] = round(time.perf_counter() - t, 1)
    elif (cfg.filter or cfg.guide) and num_classes > 1:
        guide_net = train_classifier(xa, ya, num_classes, ClassifierConfig(steps=cfg.eval_steps, augment=True,
                                                                           seed=cfg.seed), device)
        seconds["guide_classifier"] = round(time.perf_counter() - t, 1)
    if len(judge_index):
        t = time.perf_counter()
        judge = train_judge(x[judge_index], y[judge_index], num_classes, device, cfg.seed, judge_steps(cfg.eval_steps))
        seconds["judge"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    gen = train_generator(xg, yg, num_classes, cfg.generator_config(), device, state_path, cfg.resume,
                          guide=guide_net if cfg.guide else None, meta=meta)
    seconds["generator"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    use_filter = (judge if judge is not None else guide_net) if cfg.filter and num_classes > 1 else None
    sampling = cfg.sampling
    if sampling == "auto":  # posterior variants: 96-99% recognised by an outside judge, prior draws 83-93%
        sampling = "posterior" if cfg.model in ENCODER_MODELS else "prior"
    fraction = POSTERIOR_FRACTION[sampling]
    syn = synthesize(gen.generator, class_counts(y, num_classes, cfg), cfg.seed, device, use_filter,
                     cfg.filter_confidence, source=(xg, yg) if fraction else None, posterior_fraction=fraction,
                     temperature=cfg.temperature or 1.0, posterior_temperature=cfg.temperature or POSTERIOR_TEMPERATURE,
                     fill_short=True)
    seconds["sampling"] = round(time.perf_counter() - t, 1)
    return Augmented(syn, gen, guide_net, judge, pseudo, len(xg), gen_index, judge_index, seconds, sampling)


# ---------------------------------------------------------------- figures


def _grid(rows: list[list], zoom: int = 2, pad: int = 2) -> torch.Tensor:
    """Rows of (C, S, S) images (None: an empty cell) -> one (C, H, W) grid on a mid-grey
    background, nearest-zoomed."""
    first = next(im for row in rows for im in row if im is not None)
    c, s = first.shape[0], first.shape[-1]
    cols = max(len(r) for r in rows)
    cell = s * zoom + pad
    grid = torch.full((c, pad + len(rows) * cell, pad + cols * cell), 0.5)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            if im is None:
                continue
            big = F.interpolate(im[None], scale_factor=zoom, mode="nearest")[0]
            grid[:, pad + i * cell: pad + i * cell + s * zoom, pad + j * cell: pad + j * cell + s * zoom] = big
    return grid


def sample_grid(real: LabeledImages, syn: Synthetic, n_real: int = 3, n_syn: int = 9, max_rows: int = 20) -> torch.Tensor:
    """One row per class: n_real real images, a gap, n_syn synthetic ones. (C, H, W) in [0, 1]."""
    rows = []
    for k in range(min(len(real.classes), max_rows)):
        r = list(real.x[real.y == k][:n_real])
        r += [None] * (n_real - len(r))
        rows.append(r + [None] + list(syn.x[syn.y == k][:n_syn]))
    return _grid(rows)


@torch.no_grad()
def interpolation_grid(g: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, device: torch.device,
                       steps: int = 9, max_rows: int = 10, seed: int = 0) -> torch.Tensor:
    """Decoded latent interpolations between class prototypes, class k -> class k+1, one row each.

    CVAE: a class's prototype is (mean encoder mu of its real images, its one-hot label); cGAN: (a
    fixed random z, the one-hot label). Latent and label move linearly together. (C, H, W) in [0, 1].
    """
    g.eval()
    protos = []
    rng = torch.Generator().manual_seed(seed)
    for k in range(num_classes):
        onehot = F.one_hot(torch.tensor([k]), num_classes).float()
        if hasattr(g, "encode"):
            xs = x[y == k].to(device)
            mu, _ = g.encode(xs, onehot.expand(len(xs), -1).to(device))
            z = mu.mean(0, keepdim=True).cpu()
        else:
            z = torch.randn(1, g.z_dim, generator=rng)
        protos.append((z, onehot))
    rows = []
    pairs = [(k, (k + 1) % num_classes) for k in range(min(num_classes, max_rows))] if num_classes > 1 else [(0, 0)]
    for a, b in pairs:
        t = torch.linspace(0, 1, steps)[:, None]
        z = (1 - t) * protos[a][0] + t * protos[b][0]
        lab = (1 - t) * protos[a][1] + t * protos[b][1]
        rows.append(list(g.generate(z.to(device), lab.to(device)).cpu()))
    return _grid(rows)


# ---------------------------------------------------------------- the task


def _manifest_csv(rows: list[dict]) -> str:
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["class", "file", "seed", "model", "filter_score"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _pseudo_labels_csv(files: list[Path], root: Path, pseudo, classes: list[str]) -> str:
    """One row per unlabeled image: its file (relative to the pool folder), the self-training
    classifier's class and confidence, and whether it passed the threshold (kept = 1)."""
    buf = _stdio.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "class", "confidence", "kept"])
    for f, k, c, kept in zip(files, pseudo.labels.tolist(), pseudo.confidence.tolist(), pseudo.keep.tolist(),
                              strict=True):
        writer.writerow([Path(f).relative_to(root).as_posix(), classes[k], f"{c:.4f}", int(kept)])
    return buf.getvalue()


def _same_image(path: Path, x: torch.Tensor) -> bool:
    """Whether `path` already holds the 8-bit image x (C, S, S) in [0, 1]."""
    try:
        old = io.read_image(path).color
    except io.ImageError:
        return False
    return old.shape == x.shape and torch.equal((old * 255).round(), (x * 255).round())


def _remove_stale(output_dir: Path, keep: set[Path]) -> int:
    """Delete the samples (names as this task writes them) an earlier run left that this run did not write."""
    pattern = re.compile(rf"({'|'.join(GENERATORS)})_s\d+_\d{{5}}\.png")
    stale = [f for d in output_dir.iterdir() if d.is_dir() for f in d.iterdir()
             if f.is_file() and pattern.fullmatch(f.name) and f not in keep]
    for f in stale:
        f.unlink()
        if not any(f.parent.iterdir()):
            f.parent.rmdir()
    if stale:
        log.warning("removed %d samples of an earlier run that this run does not make", len(stale))
    return len(stale)


def _judge_text(aug: Augmented, cfg: Config, real: LabeledImages) -> str:
    """Which classifier the filter asked, on which images: the report's answer to "who judged?"."""
    if not cfg.filter or len(real.classes) < 2:
        return "none (no filter)"
    if aug.judge is None:
        return "the guide classifier (the one the generator was trained to satisfy; no held-out judge)"
    never = "the generator never trained on" if aug.pseudo is not None else "the generator and its guide never saw"
    text = (f"a held-out judge: the small CNN trained with strong augmentation on {len(aug.judge_index)} labeled "
            f"images ({cfg.judge_holdout:.0%} of each class) that {never}; the generator trained on the other "
            f"{len(aug.generator_index)}")
    if aug.pseudo is not None:
        text += " and the pseudo-labeled pool (labeled by the self-training classifier of every labeled image)"
    return text


def _write_figures(cfg: Config, real: LabeledImages, aug: Augmented, output_dir: Path,
                   device: torch.device) -> list[tuple[str, str]]:
    """The report's figures: the sample grid and (cfg.interpolate) the latent interpolation grid."""
    path = output_dir / "samples.png"
    io.write_image(path, io.LoadedImage(sample_grid(real, aug.synthetic)))
    figures = [("Samples per class: 3 real images, then synthetic ones", str(path))]
    if cfg.interpolate:
        path = output_dir / "interpolation.png"
        grid = interpolation_grid(aug.generator.generator, real.x, real.y, len(real.classes), device, seed=cfg.seed)
        io.write_image(path, io.LoadedImage(grid))
        figures.append(("Latent interpolation between class prototypes (class k -> k+1, left to right)", str(path)))
    return figures


def run(cfg: Config, input_dir: str | Path, output_dir: str | Path, device: torch.device,
        name: str = TASK) -> StageResult:
    """Train a generator on the ImageFolder `input_dir`, write synthetic images per class to `output_dir`.

    OUTPUT then holds exactly this run's samples (those of an earlier run that differ are rewritten,
    extra ones removed); the generator's state resumes only for the same classes, data and setup.
    """
    start = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    paths.check_output(output_dir, sides={"data": input_dir, "unlabeled": cfg.unlabeled, "eval": cfg.eval},
                       why="synthetic images would mix with the real ones")
    real = load_imagefolder(input_dir, cfg.image_size, cfg.channels)
    num_classes, channels = len(real.classes), real.x.shape[1]
    log.info("augment: %d real images in %d classes (%d channel(s), %d px)", len(real.x), num_classes,
             channels, cfg.image_size)
    if num_classes == 1 and (cfg.filter or cfg.eval):
        log.warning("one class only: no filter and no classifier proof are possible")
    io.check_writable(output_dir)
    x_unl, unl_files = load_unlabeled(cfg.unlabeled, cfg.image_size, channels) if cfg.unlabeled else (None, [])
    data_meta = {"classes": real.classes, "data": data_fingerprint(real.files, input_dir),
                 "unlabeled": data_fingerprint(io.list_images(cfg.unlabeled), cfg.unlabeled) if cfg.unlabeled else None}
    aug = augment_tensors(real.x, real.y, num_classes, cfg, device, x_unl, output_dir / "generator.state.pt",
                          data_meta)
    gen_cfg = cfg.generator_config()
    meta = {"task": TASK, "arch": cfg.model, "config": aug.generator.arch, "classes": real.classes,
            "training": asdict(gen_cfg)}
    weights.save_weights(output_dir / "generator.safetensors", aug.generator.generator.state_dict(), meta)

    syn = aug.synthetic
    records, manifest = [], []
    index = {k: 0 for k in range(num_classes)}
    examples = {k: [f for f, yy in zip(real.files, real.y.tolist()) if yy == k] for k in range(num_classes)}
    for x, k, score in zip(syn.x, syn.y.tolist(), syn.score.tolist()):
        cls = real.classes[k]
        dest = output_dir / cls / f"{cfg.model}_s{cfg.seed}_{index[k]:05d}.png"
        src = examples[k][index[k] % len(examples[k])]  # a real image of the class, for the report
        index[k] += 1
        t0 = time.perf_counter()
        metrics = {} if score != score else {"filter_confidence": round(score, 4)}  # NaN: no filter
        if cfg.resume and dest.exists() and _same_image(dest, x):
            records.append(Record(src, str(dest), "skipped", None, metrics))
        else:
            io.write_image(dest, io.LoadedImage(x))
            records.append(Record(src, str(dest), "ok", None, metrics, time.perf_counter() - t0))
        manifest.append({"class": cls, "file": dest.relative_to(output_dir).as_posix(), "seed": cfg.seed,
                         "model": cfg.model, "filter_score": "" if score != score else f"{score:.4f}"})
    _remove_stale(output_dir, {Path(r.output) for r in records})
    io.write_text(output_dir / "manifest.csv", _manifest_csv(manifest))

    figures = _write_figures(cfg, real, aug, output_dir, device)
    per_class = torch.bincount(syn.y, minlength=num_classes).tolist()
    real_per_class = torch.bincount(real.y, minlength=num_classes).tolist()
    history = aug.generator.history
    summary = {
        "model": cfg.model,
        "classes": real.classes,
        "real_per_class": dict(zip(real.classes, real_per_class)),
        "synthetic_per_class": dict(zip(real.classes, per_class)),
        "synthetic_total": int(sum(per_class)),
        "sampling": aug.sampling,
        "filter": {"enabled": bool(cfg.filter and num_classes > 1), "confidence": cfg.filter_confidence,
                   "judge": _judge_text(aug, cfg, real), "dropped": int(sum(syn.dropped.values())),
                   "dropped_per_class": {real.classes[k]: v for k, v in syn.dropped.items()},
                   # a class the filter would have left short gets its best-scored dropped samples back
                   "taken_back_per_class": {real.classes[k]: v for k, v in syn.topped_up.items()}},
        "training": {"steps": gen_cfg.steps, "images": aug.train_size, "final": history[-1] if history else {},
                     "decoder": gen_cfg.decoder if cfg.model in ENCODER_MODELS else None,
                     "temperature": {"prior": cfg.temperature or 1.0,
                                     "posterior": cfg.temperature or POSTERIOR_TEMPERATURE},
                     "discriminator": aug.generator.collapse if cfg.model in ("cgan", "vaegan") else None},
        "seconds": aug.seconds,
    }
    if aug.pseudo is None:
        (output_dir / "pseudo_labels.csv").unlink(missing_ok=True)  # an earlier run's, with a pool
    else:
        p = aug.pseudo
        # the honest alternative's own product: the pool's labels, for training on them directly
        io.write_text(output_dir / "pseudo_labels.csv", _pseudo_labels_csv(unl_files, Path(cfg.unlabeled), p,
                                                                          real.classes))
        summary["unlabeled"] = {"images": len(p.labels), "pseudo_labeled": int(p.keep.sum()),
                                "threshold": cfg.pseudo_threshold, "method": "self-training pseudo-labels",
                                "file": "pseudo_labels.csv",
                                "rounds": p.rounds}
    (output_dir / SEMIGAN_FILE).unlink(missing_ok=True)  # an earlier run's, never left beside other samples
    (output_dir / SEMIGAN_FILE).with_suffix(".json").unlink(missing_ok=True)
    if cfg.eval and num_classes > 1:
        pool = (x_unl[aug.pseudo.keep], aug.pseudo.labels[aug.pseudo.keep]) if aug.pseudo is not None else None
        summary["eval"] = evaluate(cfg, real, syn, aug.guide_net, device, pool, aug.seconds.get("generator"), x_unl,
                                   feature_images=len(real.y) if aug.pseudo is not None else len(aug.generator_index))
        semigan = summary["eval"].pop("semigan_net", None)
        if semigan is not None:
            summary["semigan_classifier"] = write_semigan_classifier(output_dir / SEMIGAN_FILE, semigan, cfg, real,
                                                                     summary["eval"], data_meta, input_dir)
        summary["synthesis"] = summary["eval"]["verdict"]
        if "per_class_delta" in summary["eval"]:
            summary["synthesis_per_class"] = summary["eval"]["per_class_delta"]
    return StageResult(name, TASK, str(input_dir), str(output_dir), asdict(cfg), records,
                       time.perf_counter() - start, summary, figures)


SEMIGAN_FILE = "semigan_classifier.safetensors"


def write_semigan_classifier(path: Path, trained: tuple[torch.nn.Module, dict], cfg: Config, real: LabeledImages,
                             result: dict, data_meta: dict, input_dir: Path) -> dict:
    """Write arm g's classifier (seed 0) to `path` (safetensors) with its card (`path` .json): how it
    was trained, on what, and its accuracy on the --eval folder; returns what the report records.

    It loads with `weights.load_model(path, "augment", MODELS)` (arch "classifier") or
    define_model("classifier", **card["config"]); input (B, C, S, S) in [0, 1] resized like DATA,
    output logits over card["classes"].
    """
    net, score = trained
    arms = result["arms"]
    config = {"channels": int(real.x.shape[1]), "num_classes": len(real.classes), "image_size": cfg.image_size}
    card = {
        "task": TASK, "arch": "classifier", "config": config, "classes": real.classes,
        "what": "the semi-supervised GAN classifier of `genapps augment --semigan-steps` (arm g of the proof): "
                "input (B, C, S, S) in [0, 1] resized to image_size, output logits over the classes",
        "training": {"method": "semi-supervised GAN (Salimans et al. 2016): the small CNN is the discriminator, "
                               "cross-entropy on the labeled images + real/fake log-likelihood of the unlabeled images "
                               "and of a generator trained by feature matching",
                     "steps": cfg.semigan_steps, "lr": SEMIGAN_LR, "betas": [0.5, 0.999],
                     "labeled_batch": ClassifierConfig.batch_size, "unlabeled_batch": 64,
                     "augmentation": "albumentations random affine (labeled and unlabeled)",
                     "seed": 0},
        "data": {"labeled": str(input_dir), "labeled_images": len(real.y),
                 "labeled_fingerprint": data_meta.get("data"), "unlabeled": cfg.unlabeled,
                 "unlabeled_fingerprint": data_meta.get("unlabeled"), "image_size": cfg.image_size},
        "validation": {"test": cfg.eval, "test_images": score["test_images"], "accuracy": score["accuracy"],
                       "per_class": score["per_class"],
                       "arm_g_all_seeds": {k: arms["g"][k] for k in ("mean", "std", "runs")},
                       "compared_with": {a: {k: arms[a][k] for k in ("name", "mean", "std")} for a in "abe"
                                         if a in arms}},
        "provenance": "trained by genapps augment on the user's DATA and --unlabeled images",
    }
    weights.save_trained(path, net.state_dict(), card)
    return {"file": path.name, "card": path.with_suffix(".json").name, "seed": 0, "accuracy": score["accuracy"]}


def evaluate(cfg: Config, real: LabeledImages, syn: Synthetic, feature_net, device: torch.device,
             pool: tuple[torch.Tensor, torch.Tensor] | None = None, generator_seconds: float | None = None,
             unlabeled: torch.Tensor | None = None, feature_images: int | None = None) -> dict:
    """The --eval proof: accuracy per arm on TEST_DIR (arms e/f with the pseudo-labeled `pool`, arm g
    with the `unlabeled` images when cfg.semigan_steps), per-class deltas, FD and precision/recall
    in the features of `feature_net` (trained on `feature_images` labeled images; None: one is
    trained on all of them)."""
    test = load_imagefolder(cfg.eval, cfg.image_size, real.x.shape[1], classes=real.classes)
    t = time.perf_counter()
    result = evaluate_arms((real.x, real.y), (syn.x, syn.y), (test.x, test.y), len(real.classes), device,
                           cfg.eval_seeds, cfg.eval_steps, pool=pool, classes=real.classes,
                           generator_minutes=None if generator_seconds is None else generator_seconds / 60,
                           unlabeled=unlabeled, semigan_steps=cfg.semigan_steps, keep="g")
    nets = result.pop("classifiers", {})
    if nets.get("g"):  # arm g's seed-0 classifier is the one written to OUTPUT (never chosen by its test score)
        net = nets["g"][0]
        per_class = per_class_accuracy(net, test.x, test.y, len(real.classes), device)
        result["semigan_net"] = (net, {"accuracy": result["arms"]["g"]["runs"][0],
                                       "per_class": {c: round(float(v), 2) if v == v else None
                                                     for c, v in zip(real.classes, per_class)},
                                       "test_images": len(test.x)})
    if feature_net is None:
        feature_net = train_classifier(real.x, real.y, len(real.classes),
                                       ClassifierConfig(steps=cfg.eval_steps, augment=True, seed=cfg.seed), device)
        feature_images = len(real.y)
    labeled = ("real labeled images" if feature_images in (None, len(real.y)) else
               f"{feature_images} real labeled images the generator trained on")
    result["features"] = (f"penultimate layer of the small CNN trained on the {labeled}"
                          + (" and the pseudo-labeled pool" if cfg.unlabeled else "") + " (random affine)")
    result["real_vs_synthetic"] = feature_metrics(feature_net, test.x, syn.x, device, seed=cfg.seed)
    result["test_images"] = len(test.x)
    result["seconds"] = round(time.perf_counter() - t, 1)
    return result
