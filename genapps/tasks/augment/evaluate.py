"""The proof that synthesis helps (or not): the same small CNN trained on four arms, several seeds,
and distribution metrics between real and synthetic images in the classifier's feature space.

Arms: (a) real only, (b) real + albumentations random affine, (c) real + synthetic,
(d) real + synthetic + albumentations; with an unlabeled pool also (e) real + pseudo-labeled pool
+ albumentations (self-training, the honest alternative), (f) = (e) + synthetic, and on request
(g) the semi-supervised GAN (the CNN is the discriminator of a GAN on the pool). Accuracy in
percent on a labeled test set; the verdict compares the best generative arm with the best other one.
"""

from __future__ import annotations

import logging
import statistics

import numpy as np
import torch

from genapps.tasks.augment.training import (ClassifierConfig, accuracy, features, predict_proba, self_training_steps,
                                            train_classifier, train_semigan_classifier)

log = logging.getLogger(__name__)

ARMS = {  # name, synthetic images, albumentations affine, pseudo-labeled pool
    "a": ("real only", False, False, False),
    "b": ("real + albumentations", False, True, False),
    "c": ("real + synthetic", True, False, False),
    "d": ("real + synthetic + albumentations", True, True, False),
    "e": ("real + pseudo-labeled pool + albumentations (self-training)", False, True, True),
    "f": ("real + pseudo-labeled pool + synthetic + albumentations", True, True, True),
    "g": ("real + albumentations, the CNN as a GAN discriminator on the pool (semi-supervised GAN)", True, True, True),
}
SEMIGAN_LR = 3e-4  # arm g: Adam (0.5, 0.999), chosen on the validation split (benchmarks/augment_semigan.md)


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D), (N2, D) (FID's formula).

    tr sqrt(S1 S2) is computed as the sum of sqrt(eigenvalues of S1^1/2 S2 S1^1/2), a symmetric PSD
    matrix, which stays exact when the covariances are singular (fewer samples than dimensions).
    """
    a, b = f1.double().numpy(), f2.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _kth_radius(f: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(f, f)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

    precision: share of fake samples inside the real manifold (some real sample's k-NN ball);
    recall: share of real samples inside the fake manifold. real (N, D), fake (M, D).
    """
    r_rad, f_rad = _kth_radius(real, k), _kth_radius(fake, k)
    d = torch.cdist(fake, real)  # (M, N)
    precision = (d <= r_rad[None, :]).any(1).double().mean()
    recall = (d.T <= f_rad[None, :]).any(1).double().mean()
    return float(precision), float(recall)


def feature_metrics(net, real: torch.Tensor, fake: torch.Tensor, device, max_n: int = 2000,
                    seed: int = 0) -> dict[str, float]:
    """FD and precision/recall (k=3) between real and synthetic images in `net`'s features.

    Both sets are subsampled to the same size (at most max_n) so that the k-NN radii compare.
    """
    g = torch.Generator().manual_seed(seed)
    n = min(len(real), len(fake), max_n)
    real = real[torch.randperm(len(real), generator=g)[:n]]
    fake = fake[torch.randperm(len(fake), generator=g)[:n]]
    fr, ff = features(net, real, device), features(net, fake, device)
    p, r = precision_recall(fr, ff, 3)
    return {"frechet_distance": round(frechet_distance(fr, ff), 3), "precision": round(p, 4),
            "recall": round(r, 4), "n": n}


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
            "runs": [round(v, 2) for v in values]}


def per_class_accuracy(net, x: torch.Tensor, y: torch.Tensor, num_classes: int, device) -> torch.Tensor:
    """(K,) accuracy in percent of each class of the test set (NaN for a class without test images;
    evaluate_arms reports it as None)."""
    hit = (predict_proba(net, x, device).argmax(1) == y).double()
    total = torch.bincount(y, minlength=num_classes).double()
    return 100 * torch.bincount(y, weights=hit, minlength=num_classes) / total


def run_arm(arm: str, real: tuple[torch.Tensor, torch.Tensor], synthetic: tuple[torch.Tensor, torch.Tensor] | None,
            test: tuple[torch.Tensor, torch.Tensor], num_classes: int, seed: int, steps: int,
            device: torch.device, pool: tuple[torch.Tensor, torch.Tensor] | None = None,
            per_class: bool = False, unlabeled: torch.Tensor | None = None, semigan_steps: int = 0,
            return_net: bool = False):
    """Test accuracy (percent) of the small CNN trained on one arm with one seed; with per_class,
    (accuracy, (K,) per-class accuracies), with return_net also the trained CNN last. Arms e/f need
    `pool` (the pseudo-labeled images), arm g the `unlabeled` images (M, C, S, S) and its own
    `semigan_steps`."""
    _, use_syn, use_aug, use_pool = ARMS[arm]
    if arm == "g":
        if unlabeled is None or not len(unlabeled) or semigan_steps < 1:
            raise ValueError("arm g needs the unlabeled images and semigan_steps >= 1")
        cfg = ClassifierConfig(steps=semigan_steps, augment=use_aug, seed=seed, lr=SEMIGAN_LR)
        net = train_semigan_classifier(real[0], real[1], unlabeled, num_classes, cfg, device)
    elif use_pool:
        if pool is None:
            raise ValueError(f"arm {arm} needs the pseudo-labeled pool")
        cfg = ClassifierConfig(steps=self_training_steps(steps, len(pool[0])), augment=use_aug, seed=seed)
        sets = (((*pool, 0.75),) if not use_syn else ((*pool, 0.5), (*synthetic, 0.25)))
        net = train_classifier(real[0], real[1], num_classes, cfg, device, extra_sets=sets)
    else:
        cfg = ClassifierConfig(steps=steps, augment=use_aug, seed=seed)
        net = train_classifier(real[0], real[1], num_classes, cfg, device, *(synthetic if use_syn else (None, None)))
    acc = 100 * accuracy(net, test[0], test[1], device)
    out = (acc, per_class_accuracy(net, test[0], test[1], num_classes, device)) if per_class else (acc,)
    out += (net,) if return_net else ()
    return out if len(out) > 1 else out[0]


GENERATIVE, CLASSICAL = "cdfg", "abe"  # arms with synthetic images, arms without


def best_arms(arms: dict) -> tuple[str, str] | None:
    """(best generative arm, best non-generative arm) by mean accuracy, or None if either is missing."""
    gen = [a for a in GENERATIVE if a in arms]
    base = [a for a in CLASSICAL if a in arms]
    if not gen or not base:
        return None
    return max(gen, key=lambda a: arms[a]["mean"]), max(base, key=lambda a: arms[a]["mean"])


def _gain(arms: dict, syn: str, base: str) -> tuple[float, bool]:
    gain = arms[syn]["mean"] - arms[base]["mean"]
    return gain, gain > 2 * max(arms[syn]["std"], arms[base]["std"])


def verdict(arms: dict, per_class_delta: dict | None = None, generator_minutes: float | None = None) -> str:
    """A plain sentence: did synthesis help, by how much, and beyond noise (2 std) or not.

    The headline compares the best generative arm (c, d, f) with the best non-generative one
    (a, b, e: real only, classical augmentation, self-training), then names the classes that lost
    accuracy, the generator's cost, and each pair (c vs a, d vs b, f vs e).
    """
    best = best_arms(arms)
    if best is None:
        return "no comparison"
    syn, base = best
    gain, sig = _gain(arms, syn, base)
    word = "helped" if gain > 0 and sig else ("did not help" if gain <= 0 else "helped within noise")
    text = (f"synthesis {word}: the best generative arm {syn} ({ARMS[syn][0]}) {arms[syn]['mean']:.1f} +- "
            f"{arms[syn]['std']:.1f} vs the best non-generative arm {base} ({ARMS[base][0]}) {arms[base]['mean']:.1f} "
            f"+- {arms[base]['std']:.1f}: {gain:+.1f} points{', more than 2 std' if sig else ''}")
    hurt = {k: v for k, v in (per_class_delta or {}).items() if v < 0}
    if per_class_delta is not None:
        text += ("; classes it hurt: " + ", ".join(f"{k} ({v:+.1f})" for k, v in sorted(hurt.items(), key=lambda kv: kv[1]))
                 if hurt else "; no class lost accuracy")
    if generator_minutes is not None:
        text += f"; the generator cost {generator_minutes:.1f} min of wall time"
    pairs = []
    for s_arm, b_arm in (("c", "a"), ("d", "b"), ("f", "e"), ("g", "e")):
        if s_arm in arms and b_arm in arms:
            g, sg = _gain(arms, s_arm, b_arm)
            pairs.append(f"arm {s_arm} vs {b_arm} {g:+.1f}{' (> 2 std)' if sg else ''}")
    return text + (". Pairs: " + ", ".join(pairs) if pairs else "")


def evaluate_arms(real, synthetic, test, num_classes: int, device: torch.device, seeds: int = 3,
                  steps: int = 600, arms: str | None = None, pool=None, classes: list[str] | None = None,
                  generator_minutes: float | None = None, unlabeled: torch.Tensor | None = None,
                  semigan_steps: int = 0, keep: str = "") -> dict:
    """Accuracy mean +- std (percent) per arm over `seeds` seeds, per-class accuracies, the per-class
    delta of the best generative arm over the best non-generative one, and the verdict sentence.

    arms: default abcd, ef too when `pool` (pseudo-labeled images (x, y)) is given, and g when the
    `unlabeled` images and semigan_steps > 0 are given. The trained CNNs of the arms in `keep` are
    returned under "classifiers" ({arm: [CNN of seed 0, seed 1, ...]}; not JSON: pop it before saving).
    """
    arms = arms or ("abcdef" if pool is not None and len(pool[0]) else "abcd")
    if semigan_steps and unlabeled is not None and len(unlabeled) and "g" not in arms:
        arms += "g"
    classes = classes or [str(k) for k in range(num_classes)]
    results, nets = {}, {}
    for arm in arms:
        runs = [run_arm(arm, real, synthetic, test, num_classes, seed, steps, device, pool, per_class=True,
                        unlabeled=unlabeled, semigan_steps=semigan_steps, return_net=True) for seed in range(seeds)]
        if arm in keep:
            nets[arm] = [r[2] for r in runs]
        pc = torch.stack([r[1] for r in runs]).mean(0)
        results[arm] = ({"name": ARMS[arm][0]} | mean_std([r[0] for r in runs])
                        | {"per_class": {c: round(float(v), 2) if v == v else None for c, v in zip(classes, pc)}})
        log.info("arm %s (%s): %.2f +- %.2f", arm, ARMS[arm][0], results[arm]["mean"], results[arm]["std"])
    out = {"arms": results, "seeds": seeds, "steps": steps}
    best = best_arms(results)
    delta = None
    if best:
        syn, base = best
        delta = {c: round(results[syn]["per_class"][c] - results[base]["per_class"][c], 2) for c in classes
                 if results[syn]["per_class"][c] is not None}  # None: no test images of the class
        out["per_class_delta"] = {"compared": f"{syn} vs {base}", "points": delta}
    out["verdict"] = verdict(results, delta, generator_minutes)
    return out | ({"classifiers": nets} if keep else {})
