"""The proof that synthesis helps (or not): the same small CNN trained on four arms, several seeds,
and distribution metrics between real and synthetic images in the classifier's feature space.

Arms: (a) real only, (b) real + albumentations random affine, (c) real + synthetic,
(d) real + synthetic + albumentations. Accuracy in percent on a labeled test set.
"""

from __future__ import annotations

import logging
import statistics

import numpy as np
import torch

from genapps.tasks.augment.training import ClassifierConfig, accuracy, features, train_classifier

log = logging.getLogger(__name__)

ARMS = {
    "a": ("real only", False, False),
    "b": ("real + albumentations", False, True),
    "c": ("real + synthetic", True, False),
    "d": ("real + synthetic + albumentations", True, True),
}


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


def run_arm(arm: str, real: tuple[torch.Tensor, torch.Tensor], synthetic: tuple[torch.Tensor, torch.Tensor] | None,
            test: tuple[torch.Tensor, torch.Tensor], num_classes: int, seed: int, steps: int,
            device: torch.device) -> float:
    """Test accuracy (percent) of the small CNN trained on one arm with one seed."""
    _, use_syn, use_aug = ARMS[arm]
    cfg = ClassifierConfig(steps=steps, augment=use_aug, seed=seed)
    extra = synthetic if use_syn else (None, None)
    net = train_classifier(real[0], real[1], num_classes, cfg, device, *extra)
    return 100 * accuracy(net, test[0], test[1], device)


def verdict(arms: dict) -> str:
    """A plain sentence: did synthesis help, by how much, and beyond noise (2 std) or not."""
    parts = []
    for syn, base in (("c", "a"), ("d", "b")):
        if syn not in arms or base not in arms:
            continue
        gain = arms[syn]["mean"] - arms[base]["mean"]
        noise = max(arms[syn]["std"], arms[base]["std"])
        sig = gain > 2 * noise
        word = "helped" if gain > 0 and sig else ("did not help" if gain <= 0 else "helped within noise")
        parts.append(f"synthesis {word}: {gain:+.1f} points (arm {syn} vs {base}"
                     f"{', more than 2 std' if sig else ''})")
    return "; ".join(parts) if parts else "no comparison"


def evaluate_arms(real, synthetic, test, num_classes: int, device: torch.device, seeds: int = 3,
                  steps: int = 600, arms: str = "abcd") -> dict:
    """Accuracy mean +- std (percent) per arm over `seeds` seeds, and the verdict sentence."""
    results = {}
    for arm in arms:
        runs = [run_arm(arm, real, synthetic, test, num_classes, seed, steps, device) for seed in range(seeds)]
        results[arm] = {"name": ARMS[arm][0]} | mean_std(runs)
        log.info("arm %s (%s): %.2f +- %.2f", arm, ARMS[arm][0], results[arm]["mean"], results[arm]["std"])
    return {"arms": results, "verdict": verdict(results), "seeds": seeds, "steps": steps}
