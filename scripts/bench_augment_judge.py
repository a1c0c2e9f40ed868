"""The outside judge of `genapps augment`'s synthetic digits (issue 31): does a digit classifier
that genapps never sees recognise the samples as their folder's class, and are they new digits
rather than near-copies of the labeled ones?

Splits of MNIST's t10k file (pool = first 5,000, test = last 5,000; the test half is never used
here, not even to score the judge):
- D: the 100 labeled digits of the default run, `data/digits/train` (the first 10 of each class
  in the pool; their file names carry the MNIST index).
- V: a VALIDATION labeled set, 10 other random pool digits per class (selection seed 1, drawn
  outside D): the generators that chose the defaults trained on V, never on D.
- H: 1,000 held-out pool digits (outside D and V): the judges' accuracy, the near-copy threshold's
  calibration, the proof's arms (b)/(d) with --arms, and (without labels) the pool of --unlabeled.
- J: the remaining 3,800 pool digits: the outside judge's training set, disjoint from D, V and H,
  so no generator ever trains on a digit the judge learned from.

The outside judge is a network of another family than genapps' small CNN (the guide, the filter's
judge and the proof all use that one): 3x3 convolutions with batch norm, 16, max-pool, 32, 32,
max-pool, 64, dense 256 + dropout, 2,000 Adam steps (one-cycle, batch 64) on J with random
rotation (+-12 deg), scale (0.9-1.1), shear and shift (+-10%); 99.2% on H. Recognised = its arg
max is the sample's class.

Near-copy: a sample whose L2 distance (pixels in [0, 1], 28 x 28) to the closest image of the
labeled set (all 100 digits of D or V, the generator's and the judge's halves alike), minimised over
shifts of up to 2 px in x and y, is below the 1st percentile of the same distance for the held-out
real digits H (other people's digits of the same classes): a new real digit counts as a copy 1% of
the time. The thresholds: 2.40 for D, 2.23 for V.

    python scripts/bench_augment_judge.py judge             # train/cache the judge (runs/bench_judge), its accuracy
    python scripts/bench_augment_judge.py run NAME [KEY=VALUE ...] [--labeled V|D] [--seed 0] [--per-class 50] \
        [--samplings posterior@2 prior mixed@1/2 ...] [--unlabeled] [--arms]
        # one generator (augment Config options; state cached by NAME), scored as the run made its samples,
        # and re-sampled (SAMPLING@T_PRIOR[/T_POSTERIOR], 4 x per-class draws per class) under every filter rule
    python scripts/bench_augment_judge.py score OUTPUT      # a `genapps augment` OUTPUT folder, against D

Every result is a JSON line appended to --out (benchmarks/augment_judge.jsonl).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MNIST = next((p / "shared/datasets/mnist" for p in ROOT.parents if (p / "shared/datasets/mnist").is_dir()),
             ROOT.parent / "shared/datasets/mnist")  # ../shared from the main checkout or a worktree
DIGITS = ROOT / "data/digits"
CACHE = ROOT / "runs/bench_judge"
SHIFT = 2  # px, near-copy distance is minimised over shifts of up to SHIFT
COPY_QUANTILE = 0.01  # share of held-out real digits called copies by the threshold


# ---------------------------------------------------------------- data and splits


def load_pool(folder: Path = MNIST):
    """(x (5000, 1, 28, 28) in [0, 1], y (5000,)): the first 5,000 t10k digits; the test half is not loaded."""
    from genapps.io import read_idx

    x = torch.from_numpy(read_idx(folder / "t10k-images-idx3-ubyte.gz")[:5000].copy()).float()[:, None] / 255
    y = torch.from_numpy(read_idx(folder / "t10k-labels-idx1-ubyte.gz")[:5000].astype("int64"))
    return x, y


def default_indices(folder: Path = DIGITS / "train") -> torch.Tensor:
    """MNIST indices of data/digits/train (file names mnistNNNNN.png), class by class."""
    idx = [int(re.fullmatch(r"mnist(\d+)\.png", p.name).group(1)) for p in sorted(folder.glob("*/*.png"))]
    return torch.tensor(idx)


def splits(y: torch.Tensor, val_seed: int = 1, held_out: int = 1000) -> dict[str, torch.Tensor]:
    """Pool indices of D, V, H, J (see the module docstring); pairwise disjoint."""
    d = default_indices()
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[d] = False
    g = torch.Generator().manual_seed(val_seed)
    v = []
    for k in range(10):
        members = torch.nonzero(rest & (y == k))[:, 0]
        v.append(members[torch.randperm(len(members), generator=g)[:10]])
    v = torch.cat(v)
    rest[v] = False
    others = torch.nonzero(rest)[:, 0]
    others = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(0))]
    return {"D": d, "V": v, "H": others[:held_out].sort().values, "J": others[held_out:].sort().values}


# ---------------------------------------------------------------- the outside judge


class OutsideCNN(nn.Module):
    """(B, 1, 28, 28) in [0, 1] -> logits (B, 10): conv-BN-ReLU 16, pool, 32, 32, pool, 64, dense 256."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.net = nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32), *block(32, 32), nn.MaxPool2d(2),
                                 *block(32, 64), nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(True),
                                 nn.Dropout(0.5), nn.Linear(256, num_classes))

    def forward(self, x):
        return self.net((x - 0.13) / 0.31)


def random_affine(x: torch.Tensor, g: torch.Generator, degrees=12.0, scale=(0.9, 1.1), shear=0.15,
                  shift=0.1) -> torch.Tensor:
    """Each image of (B, C, S, S) rotated, scaled, sheared and shifted at random (bilinear, zero fill)."""
    b = len(x)
    a = torch.deg2rad((torch.rand(b, generator=g) * 2 - 1) * degrees)
    s = scale[0] + torch.rand(b, generator=g) * (scale[1] - scale[0])
    sh = (torch.rand(b, generator=g) * 2 - 1) * shear
    t = (torch.rand(b, 2, generator=g) * 2 - 1) * shift * 2
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack([torch.stack([cos, -sin + sh, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def train_outside_judge(x: torch.Tensor, y: torch.Tensor, steps: int = 2000, seed: int = 7) -> OutsideCNN:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = OutsideCNN()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    net.train()
    for _ in range(steps):
        i = torch.randint(len(x), (64,), generator=g)
        loss = F.cross_entropy(net(random_affine(x[i], g)), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 10) probabilities."""
    net.eval()
    return torch.cat([F.softmax(net(x[i:i + 500]), 1) for i in range(0, len(x), 500)])


def outside_judge(pool, split) -> tuple[OutsideCNN, dict]:
    """The judge trained on J (cached in runs/bench_judge/outside.pt) and its accuracy on H."""
    from genapps import io

    path = CACHE / "outside.pt"
    x, y = pool
    if path.is_file():
        net = OutsideCNN()
        net.load_state_dict(io.load_torch(path))
        net.eval()
    else:
        t = time.process_time()
        net = train_outside_judge(x[split["J"]], y[split["J"]])
        io.save_state(path, net.state_dict())
        print(f"judge trained in {time.process_time() - t:.0f} CPU-s", file=sys.stderr)
    h = split["H"]
    acc = float((predict(net, x[h]).argmax(1) == y[h]).float().mean())
    return net, {"trained_on": f"J: {len(split['J'])} pool digits", "accuracy_on_H": round(100 * acc, 2)}


# ---------------------------------------------------------------- near-copies


def shifted_nn_distance(a: torch.Tensor, b: torch.Tensor, shift: int = SHIFT) -> torch.Tensor:
    """(N,) min over b's images and over shifts |dx|, |dy| <= shift of ||a_i - shift(b_j)||_2 (pixels in [0, 1])."""
    s = a.shape[-1]
    pad = F.pad(b, (shift,) * 4)
    best = torch.full((len(a),), float("inf"))
    af = a.flatten(1)
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            bs = pad[..., dy:dy + s, dx:dx + s].flatten(1)
            best = torch.minimum(best, torch.cdist(af, bs).min(1).values)
    return best


def copy_threshold(pool, split, labeled: torch.Tensor) -> float:
    """The COPY_QUANTILE quantile of held-out real digits' shifted NN distance to the labeled set."""
    x = pool[0]
    return float(shifted_nn_distance(x[split["H"]], x[labeled]).quantile(COPY_QUANTILE))


# ---------------------------------------------------------------- one generator, scored


def score(judge: nn.Module, x: torch.Tensor, y: torch.Tensor, labeled_x: torch.Tensor, threshold: float) -> dict:
    """Outside recognition (% whose judge arg max is y) and near-copies (% closer than `threshold`)."""
    p = predict(judge, x)
    rec = p.argmax(1) == y
    d = shifted_nn_distance(x, labeled_x)
    new = d >= threshold
    return {"n": len(y), "recognised": round(100 * float(rec.float().mean()), 2),
            "near_copies": round(100 * float((~new).float().mean()), 2),
            "recognised_and_new": round(100 * float((rec & new).float().mean()), 2),
            "worst_class": min(range(10), key=lambda k: float(rec[y == k].float().mean())),
            "per_class": [round(100 * float(rec[y == k].float().mean()), 1) for k in range(10)]}


FILTER_RULES = {  # name -> keep mask from the filter network's probabilities p (N, K) and the classes y (N,)
    "none": lambda p, y: torch.ones(len(y), dtype=torch.bool),
    "other>=0.9": lambda p, y: ~((p.argmax(1) != y) & (p.max(1).values >= 0.9)),  # genapps' rule until round 3
    "other>=0.5": lambda p, y: ~((p.argmax(1) != y) & (p.max(1).values >= 0.5)),
    "argmax": lambda p, y: p.argmax(1) == y,
    "own>=0.5": lambda p, y: p.gather(1, y[:, None])[:, 0] >= 0.5,
    "own>=0.7": lambda p, y: p.gather(1, y[:, None])[:, 0] >= 0.7,
    "own>=0.9": lambda p, y: p.gather(1, y[:, None])[:, 0] >= 0.9,
}


def rule_scores(judge_p, copies, filters: dict, y) -> dict:
    """Outside recognition and near-copies among the samples each (filter network, rule) keeps, as
    rejection sampling would: per class (each class gets its per_class samples), then averaged."""
    out = {}
    for net_name, p in filters.items():
        for rule, keep_fn in FILTER_RULES.items():
            if net_name != "judge" and rule != "none" and rule not in ("other>=0.9", "argmax"):
                continue
            if rule == "none" and net_name != "judge":
                continue
            keep = keep_fn(p, y)
            rec, cop, kept = [], [], []
            for k in range(10):
                m = keep & (y == k)
                kept.append(float(m.sum()) / float((y == k).sum()))
                if m.any():
                    rec.append(float(judge_p[m].argmax(1).eq(k).float().mean()))
                    cop.append(float(copies[m].float().mean()))
            out[f"{'-' if rule == 'none' else net_name} {rule}"] = {
                "recognised": round(100 * sum(rec) / max(1, len(rec)), 2),
                "near_copies": round(100 * sum(cop) / max(1, len(cop)), 2),
                "kept": round(100 * sum(kept) / 10, 1), "min_class_kept": round(100 * min(kept), 1)}
    return out


def downstream(arm: str, labeled, synthetic, target, seeds: int = 3) -> dict:
    """Arm (b) or (d) of the proof (600 steps, `seeds` seeds) scored on `target` = H, never the test half."""
    import statistics

    from genapps.tasks.augment.evaluate import run_arm

    accs = [run_arm(arm, labeled, synthetic, target, 10, s, 600, torch.device("cpu")) for s in range(seeds)]
    return {"mean": round(statistics.fmean(accs), 2), "std": round(statistics.stdev(accs), 2)}


def run_generator(name: str, options: dict, labeled: str, seed: int, per_class: int, samplings: list[str],
                  out: Path, draws: int = 4, arms: bool = False, unlabeled: bool = False) -> dict:
    """Train one generator (augment_tensors with `options`; its state cached in runs/bench_judge, so a
    rerun with the same name only samples) on the labeled set D or V and score its samples with the
    outside judge: as the run made them, and for every sampling in `samplings` `draws` x per_class
    unfiltered samples per class, with what every filter rule would keep. With `arms`, also the
    proof's arm (d) on H for 100 filtered samples per class of every sampling, and arm (b)."""
    from genapps.tasks.augment.task import POSTERIOR_FRACTION, Config, augment_tensors, class_counts
    from genapps.tasks.augment.training import generate, predict_proba, synthesize

    pool = load_pool()
    split = splits(pool[1])
    judge, info = outside_judge(pool, split)
    xl, yl = pool[0][split[labeled]], pool[1][split[labeled]]
    thr = copy_threshold(pool, split, split[labeled])
    cfg = Config(**({"per_class": per_class, "seed": seed} | options))
    dev = torch.device("cpu")
    w0, c0 = time.perf_counter(), time.process_time()
    # the pool: H without its labels (J trained the outside judge: a generator must never see it)
    x_unl = pool[0][split["H"]] if unlabeled else None
    aug = augment_tensors(xl, yl, 10, cfg, dev, x_unl, state_path=CACHE / f"{labeled}_{name}_s{seed}.state.pt")
    res = {"name": name, "options": options, "labeled": labeled, "unlabeled": "H" if unlabeled else None, "seed": seed,
           "per_class": per_class,
           "cpu_s": round(time.process_time() - c0, 1), "wall_s": round(time.perf_counter() - w0, 1),
           "seconds_parts": aug.seconds, "sampling": aug.sampling, "copy_threshold": round(thr, 4),
           "generator_images": len(aug.generator_index), "judge_images": len(aug.judge_index),
           "outside_judge": info, "as_configured": score(judge, aug.synthetic.x, aug.synthetic.y, xl, thr)
           | {"dropped": int(sum(aug.synthetic.dropped.values()))}, "variants": {}}
    ga = aug.generator_index
    source = (xl[ga], yl[ga])
    if unlabeled:  # posterior variants come from the generator's training set: labeled + kept pseudo-labeled
        p = aug.pseudo
        source = (torch.cat([source[0], x_unl[p.keep]]), torch.cat([source[1], p.labels[p.keep]]))
    if aug.judge is not None:  # how good the run's judge and guide are on real digits (H, never the test half)
        h = split["H"]
        res["run_judge_accuracy_on_H"] = round(100 * float(
            predict_proba(aug.judge, pool[0][h], dev).argmax(1).eq(pool[1][h]).float().mean()), 2)
    if aug.guide_net is not None:
        h = split["H"]
        res["guide_accuracy_on_H"] = round(100 * float(
            predict_proba(aug.guide_net, pool[0][h], dev).argmax(1).eq(pool[1][h]).float().mean()), 2)
    for spec in samplings:  # SAMPLING[@T_PRIOR[/T_POSTERIOR]]
        sampling, _, temps = spec.partition("@")
        t_prior, _, t_post = (temps or "1.0").partition("/")
        t_prior, t_post = float(t_prior), float(t_post or t_prior)
        fraction = POSTERIOR_FRACTION[sampling]
        y = torch.arange(10).repeat_interleave(draws * per_class)
        post = torch.rand(len(y), generator=torch.Generator().manual_seed(seed + 77)) < fraction if fraction else None
        x = generate(aug.generator.generator, y, seed + 1000, dev, temperature=t_prior,
                     source=source if fraction else None, posterior=post, posterior_temperature=t_post)
        judge_p = predict(judge, x)
        copies = shifted_nn_distance(x, xl) < thr
        filters = {"guide": predict_proba(aug.guide_net, x, dev)} if aug.guide_net is not None else {}
        if aug.judge is not None:
            filters["judge"] = predict_proba(aug.judge, x, dev)
        key = spec
        res["variants"][key] = rule_scores(judge_p, copies, filters, y)
        if arms:
            syn = synthesize(aug.generator.generator, class_counts(yl, 10, Config(per_class=100)), seed, dev,
                             aug.filter_net if cfg.filter else None, cfg.filter_confidence,
                             source=source if fraction else None, posterior_fraction=fraction,
                             temperature=t_prior, posterior_temperature=t_post)
            h = split["H"]
            res.setdefault("arm_d_on_H", {})[key] = downstream("d", (xl, yl), (syn.x, syn.y), (pool[0][h], pool[1][h]))
            log_line = f"{key}: arm d on H {res['arm_d_on_H'][key]}"
            print(log_line, flush=True)
    if arms:
        h = split["H"]
        res["arm_b_on_H"] = downstream("b", (xl, yl), None, (pool[0][h], pool[1][h]))
    with out.open("a") as f:
        f.write(json.dumps(res) + "\n")
    return res


def score_folder(folder: Path, labeled: str = "D") -> dict:
    """Score a `genapps augment` OUTPUT folder (OUTPUT/<class>/*.png, classes 0-9) with the outside
    judge: the share recognised as their folder's class and the near-copies of the labeled set."""
    from genapps.tasks.augment.data import load_imagefolder

    pool = load_pool()
    split = splits(pool[1])
    judge, info = outside_judge(pool, split)
    syn = load_imagefolder(folder, 28, 1, classes=[str(k) for k in range(10)])
    xl = pool[0][split[labeled]]
    thr = copy_threshold(pool, split, split[labeled])
    return {"folder": str(folder), "labeled": labeled, "copy_threshold": round(thr, 4), "outside_judge": info} | score(
        judge, syn.x, syn.y, xl, thr)


# ---------------------------------------------------------------- main


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["judge", "run", "score"])
    ap.add_argument("name", nargs="?", default="default", help="run: a name for the generator; score: OUTPUT")
    ap.add_argument("options", nargs="*", metavar="KEY=VALUE", help="augment Config options of the generator")
    ap.add_argument("--labeled", choices=["D", "V"], help="the labeled set (default: V for run, D for score)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--samplings", nargs="*", default=["prior", "mixed", "posterior"],
                    help="re-sample as prior|mixed|posterior[@temperature]")
    ap.add_argument("--unlabeled", action="store_true", help="H (without labels) as the --unlabeled pool")
    ap.add_argument("--arms", action="store_true", help="also arms (b) and (d) of the proof on H (3 seeds)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/augment_judge.jsonl"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.command == "judge":
        pool = load_pool()
        split = splits(pool[1])
        _, info = outside_judge(pool, split)
        info["copy_threshold"] = {k: round(copy_threshold(pool, split, split[k]), 4) for k in "DV"}
        print(json.dumps(info))
        return
    if args.command == "score":
        res = score_folder(Path(args.name), args.labeled or "D")
        print(json.dumps(res))
        with Path(args.out).open("a") as f:
            f.write(json.dumps(res) + "\n")
        return
    from bench_augment import parse_value  # scripts/ is this script's folder

    options = {k: parse_value(v) for k, v in (o.split("=", 1) for o in args.options)}
    res = run_generator(args.name, options, args.labeled or "V", args.seed, args.per_class, args.samplings, Path(args.out),
                        arms=args.arms, unlabeled=args.unlabeled)
    print(json.dumps({k: v for k, v in res.items() if k != "variants"}), flush=True)
    for sampling, rules in res["variants"].items():
        for rule, v in rules.items():
            print(f"{sampling:14s} {rule:18s} rec {v['recognised']:6.2f} copies {v['near_copies']:6.2f} "
                  f"kept {v['kept']:5.1f} (min class {v['min_class_kept']:5.1f})")


if __name__ == "__main__":
    main()
