"""Label-scarce benchmark of `genapps augment` (issues 6 and 19): MNIST, or a colour set.

Pool = first 5,000 digits of MNIST's t10k file, test = last 5,000; with --data, the pool/ and
test/ ImageFolders of a folder made by scripts/make_color_set.py (crops of the natural photos,
classes = source photos). For L labels per class (a
fixed random subset of the pool, selection seed 0) the rest of the pool is the unlabeled set.
Arms (the same small CNN, `--clf-steps` Adam steps, `--seeds` seeds): (a) real only, (b) real +
albumentations random affine, (c) real + synthetic, (d) real + synthetic + albumentations, for
every generator (cvae, cgan) with and without the unlabeled pool; with the pool also (e)
self-training (real + pseudo-labeled pool + affine) and (f) = (e) + synthetic. The targets compare
the best generative arm with the best non-generative one, with per-class deltas. Each synthetic set is also
measured: Frechet distance and precision/recall vs the test digits in the features of the
arm-(b)-style classifier, class fidelity (share recognised as their class by an oracle CNN
trained on all 5,000 pool labels, a judge the generators never see) and copying (pixel
distance of each sample to its nearest labeled image, relative to test digits' distance).

Resumable: each finished job is written to the JSON at once and skipped when rerun; synthetic
sets and generator states are cached in --cache.

    python scripts/bench_augment.py [--labels 10 50] [--models cvae cgan] [--seeds 3] [--workers 2]
    python scripts/bench_augment.py --quick conv:steps=1500 res:decoder=residual --seeds 1  # compare generators
    python scripts/make_color_set.py --out runs/color_set
    python scripts/bench_augment.py --data runs/color_set --image-size 64 --labels 10 --cache runs/bench_color \
        --out benchmarks/augment_color.json --md benchmarks/augment_color.md
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_augment")


def load_mnist(folder: Path):
    from genapps.io import read_idx

    x = torch.from_numpy(read_idx(folder / "t10k-images-idx3-ubyte.gz").copy()).float()[:, None] / 255
    y = torch.from_numpy(read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype("int64"))
    return (x[:5000], y[:5000]), (x[5000:], y[5000:])


def load_folder(folder: Path, size: int):
    """A set as scripts/make_color_set.py writes it: FOLDER/pool and FOLDER/test ImageFolders."""
    from genapps.tasks.augment.data import load_imagefolder

    pool = load_imagefolder(folder / "pool", size)
    test = load_imagefolder(folder / "test", size, pool.x.shape[1], classes=pool.classes)
    return (pool.x, pool.y), (test.x, test.y)


def load_data(args):
    """(pool, test): MNIST (first/last 5,000 of t10k), or the --data folder's pool/ and test/."""
    return load_folder(Path(args.data), args.image_size) if args.data else load_mnist(Path(args.mnist))


def n_classes(y: torch.Tensor) -> int:
    return int(y.max()) + 1


def _labeled_index(y: torch.Tensor, labels: int, seed: int) -> torch.Tensor:
    """Indices of `labels` random images per class (the labeled set), class by class."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([(m := torch.nonzero(y == k)[:, 0])[torch.randperm(len(m), generator=g)[:labels]]
                      for k in range(n_classes(y))])


def split_pool(pool, labels: int, seed: int = 0):
    """`labels` random images per class as the labeled set, the rest of the pool unlabeled."""
    x, y = pool
    idx = _labeled_index(y, labels, seed)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[idx] = False
    return (x[idx], y[idx]), x[mask]


def validation_split(pool, labels: int, n: int = 2000, seed: int = 0):
    """The first n pool images outside split_pool's labeled set, with their true labels: the split
    on which design experiments choose (scripts/augment_*_exp.py), never the test half."""
    x, y = pool
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[_labeled_index(y, labels, seed)] = False
    return x[mask][:n], y[mask][:n]


# ---------------------------------------------------------------- jobs (run in worker processes)


_DATA = {}


def _setup(args):
    """One thread per worker process (small convolutions scale badly over threads); data loaded once."""
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    key = args.data or args.mnist
    if key not in _DATA:
        _DATA[key] = load_data(args)
    return _DATA[key]


def job(spec: dict) -> tuple[str, dict]:
    """One unit of work, identified by spec["key"]; returns (key, result)."""
    args = argparse.Namespace(**spec["args"])
    pool, test = _setup(args)
    K = n_classes(pool[1])
    dev = torch.device("cpu")
    kind, t0 = spec["kind"], time.perf_counter()
    cache = Path(args.cache)
    from genapps import io
    from genapps.tasks.augment.task import Config, augment_tensors
    from genapps.tasks.augment.evaluate import feature_metrics, run_arm
    from genapps.tasks.augment.training import ClassifierConfig, accuracy, predict_proba, train_classifier

    if kind == "oracle":
        net = oracle_net(args, pool, test, dev)  # shared by every run with the same cache
        result = {"test_accuracy": round(100 * accuracy(net, test[0], test[1], dev), 2)}
    elif kind == "arm":
        (xl, yl), _ = split_pool(pool, spec["labels"])
        syn = io.load_torch(cache / f"{spec['gen']}.syn.pt") if spec.get("gen") else None
        pool_l = (syn["pool_x"], syn["pool_y"]) if syn and "pool_x" in syn else None
        acc, per_class = run_arm(spec["arm"], (xl, yl), (syn["x"], syn["y"]) if syn else None, test, K, spec["seed"],
                                 args.clf_steps, dev, pool=pool_l, per_class=True)
        result = {"accuracy": round(acc, 2), "per_class": [round(float(v), 2) for v in per_class]}
    elif kind == "generator":
        (xl, yl), x_unl = split_pool(pool, spec["labels"])
        vae = spec["model"] in ("cvae", "vaegan")  # the VAE-GAN takes the CVAE's steps and batch
        steps = args.steps_cvae if vae else args.steps_cgan
        batch = args.batch_cvae if vae else args.batch_cgan
        cfg = Config(model=spec["model"], per_class=args.per_class, steps=steps, batch_size=batch, seed=0,
                     eval_steps=args.clf_steps, unlabeled="pool" if spec["unlabeled"] else None,
                     image_size=args.image_size, **set_options(args))
        aug = augment_tensors(xl, yl, K, cfg, dev, x_unl if spec["unlabeled"] else None,
                              cache / f"{spec['key'].replace('/', '_')}.state.pt")
        syn = aug.synthetic
        saved = {"x": syn.x, "y": syn.y}
        if aug.pseudo is not None:  # the pseudo-labeled pool, for arms e and f
            saved |= {"pool_x": x_unl[aug.pseudo.keep], "pool_y": aug.pseudo.labels[aug.pseudo.keep]}
        io.save_state(cache / f"{spec['key'].replace('/', '_')}.syn.pt", saved)
        oracle = oracle_net(args, pool, test, dev)
        fidelity = (predict_proba(oracle, syn.x, dev).argmax(1) == syn.y).float().mean()
        feat_net = aug.guide_net or train_classifier(xl, yl, K, ClassifierConfig(steps=args.clf_steps, augment=True), dev)
        # copying: nearest labeled image (pixels) of each sample vs of each test digit
        d_syn = torch.cdist(syn.x.flatten(1), xl.flatten(1)).min(1).values
        d_test = torch.cdist(test[0][:1000].flatten(1), xl.flatten(1)).min(1).values
        result = {
            "train_images": aug.train_size, "dropped_by_filter": int(sum(aug.synthetic.dropped.values())),
            "synthetic": len(syn.y), "oracle_fidelity": round(100 * float(fidelity), 2),
            "nn_distance_ratio": round(float(d_syn.median() / d_test.median()), 3),
            "near_copies": round(100 * float((d_syn < d_test.quantile(0.01)).float().mean()), 2),
            "generator_final": aug.generator.history[-1] if aug.generator.history else {}, "sampling": aug.sampling,
            "d_collapse": aug.generator.collapse if spec["model"] in ("cgan", "vaegan") else None,
            "seconds_parts": aug.seconds,
        } | feature_metrics(feat_net, test[0], syn.x, dev)
        if aug.pseudo is not None:
            p = aug.pseudo
            result["pseudo_labels"] = {"kept": int(p.keep.sum()), "of": len(p.labels)}
            result["pseudo_labels"] |= _pseudo_accuracy(pool, spec["labels"], p)
            result["pseudo_labeler_test_accuracy"] = round(100 * accuracy(p.classifier, test[0], test[1], dev), 2)
    else:
        raise ValueError(kind)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return spec["key"], result


def _pseudo_accuracy(pool, labels, p) -> dict:
    """Accuracy of the pseudo-labels (all, and the kept ones) against the pool's true labels."""
    x, y = pool
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(len(y), dtype=torch.bool)
    for k in range(n_classes(y)):
        members = torch.nonzero(y == k)[:, 0]
        mask[members[torch.randperm(len(members), generator=g)[:labels]]] = False
    truth = y[mask]
    kept = p.labels[p.keep] == truth[p.keep]
    return {"accuracy_all": round(100 * float((p.labels == truth).float().mean()), 2),
            "accuracy_kept": round(100 * float(kept.float().mean()), 2) if len(kept) else None}


# ---------------------------------------------------------------- quick generator comparison


def parse_value(text: str):
    """A command-line KEY=VALUE value: int, float, true/false, none, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:key=value,key=value' -> (name, {key: value}) of augment Config options."""
    name, _, rest = text.partition(":")
    return name, {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in rest.split(",") if kv)}


def set_options(args) -> dict:
    """--set KEY=VALUE ... as augment Config options."""
    return parse_variant(":" + ",".join(args.set or []))[1]


def oracle_net(args, pool, test, dev):
    """The independent judge: the small CNN on all the pool labels (MNIST: 5,000) (cached in --cache)."""
    from genapps import io
    from genapps.tasks.augment.models import define_model
    from genapps.tasks.augment.training import ClassifierConfig, train_classifier

    path = Path(args.cache) / "oracle.pt"
    if path.is_file():
        net = define_model("classifier", channels=pool[0].shape[1], num_classes=n_classes(pool[1]),
                           image_size=pool[0].shape[-1])
        net.load_state_dict(io.load_torch(path))
        return net.eval()
    net = train_classifier(pool[0], pool[1], n_classes(pool[1]), ClassifierConfig(steps=args.oracle_steps, augment=True,
                                                                 batch_size=64, seed=123), dev)
    io.save_state(path, net.state_dict())
    return net


def quick(args) -> None:
    """One generator per (labels, variant), --seeds classifier seeds per arm: a cheap way to choose
    between generator options. Judged by the oracle (fidelity, FD/precision/recall in its features
    vs test images), copying, and --quick-arms (with the pool also e and f); CPU seconds per part."""
    from genapps.tasks.augment.task import Config, augment_tensors, class_counts
    from genapps.tasks.augment.evaluate import feature_metrics, run_arm
    from genapps.tasks.augment.training import predict_proba, synthesize

    torch.set_num_threads(1)
    dev = torch.device("cpu")
    pool, test = load_data(args)
    K = n_classes(pool[1])
    oracle = oracle_net(args, pool, test, dev)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for L in args.labels:
        (xl, yl), x_unl = split_pool(pool, L)
        for name, options in map(parse_variant, args.quick):
            for unl in {"both": (False, True), "no": (False,), "yes": (True,)}[args.unlabeled]:
                key = f"L{L}/{name}/{'unl' if unl else 'lab'}"
                if key in results:
                    continue
                cfg = Config(**({"per_class": args.per_class, "eval_steps": args.clf_steps, "image_size": args.image_size,
                                 "unlabeled": "pool" if unl else None} | options))
                w0, c0 = time.perf_counter(), time.process_time()
                aug = augment_tensors(xl, yl, K, cfg, dev, x_unl if unl else None)
                res = {"options": options, "generator_cpu_s": round(time.process_time() - c0, 1),
                       "generator_wall_s": round(time.perf_counter() - w0, 1), "seconds_parts": aug.seconds,
                       "steps": cfg.generator_config().steps, "by_temperature": {}}
                temps = [cfg.temperature or 1.0] if unl else sorted(set(args.temperatures) | {cfg.temperature or 1.0})
                d_test = torch.cdist(test[0][:1000].flatten(1), xl.flatten(1)).min(1).values
                for t in temps:
                    syn = aug.synthetic if t == (cfg.temperature or 1.0) else synthesize(
                        aug.generator.generator, class_counts(yl, K, cfg), cfg.seed, dev, aug.filter_net,
                        cfg.filter_confidence, temperature=t)
                    fid = (predict_proba(oracle, syn.x, dev).argmax(1) == syn.y).float().mean()
                    d_syn = torch.cdist(syn.x.flatten(1), xl.flatten(1)).min(1).values
                    r = {"oracle_fidelity": round(100 * float(fid), 2),
                         "nn_distance_ratio": round(float(d_syn.median() / d_test.median()), 3)}
                    r |= {f"oracle_{k}": v for k, v in feature_metrics(oracle, test[0], syn.x, dev).items()}
                    pool_l = (x_unl[aug.pseudo.keep], aug.pseudo.labels[aug.pseudo.keep]) if unl else None
                    for arm in args.quick_arms + ("ef" if unl else ""):
                        accs = [run_arm(arm, (xl, yl), (syn.x, syn.y), test, K, s, args.clf_steps, dev, pool=pool_l)
                                for s in range(args.seeds)]
                        r[f"arm_{arm}"] = round(statistics.fmean(accs), 2)
                    res["by_temperature"][str(t)] = r
                    log.warning("%s T=%s: %s", key, t, r)
                res["total_cpu_s"] = round(time.process_time() - c0, 1)
                results[key] = res
                _write_json(out, results)
    from genapps import io

    io.write_text(out.with_suffix(".md"), quick_table(results, args))


def quick_table(results: dict, args) -> str:
    """The --quick results as a markdown table, one row per (generator, temperature)."""
    lines = ["# augment: quick generator comparison (scripts/bench_augment.py --quick)", "",
             f"One generator per row (seed 0, 10 labels per class unless the key says otherwise), {args.per_class} "
             "samples per class; judged by the oracle CNN (trained on all pool labels, never seen by the generators): "
             "fidelity = % of samples it assigns to their class, FD / precision / recall vs the test images in "
             "its features; NN ratio = copying measure (about 1: no copying); arms: test accuracy % with "
             f"{args.seeds} classifier seed(s) (noise about +-1 point); CPU = seconds of one thread for the "
             "filter/pseudo-label classifiers, the generator and sampling (measured on a loaded machine).", "",
             "| key | options | CPU s | T | oracle fidelity % | FD | precision | recall | NN ratio | arms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        for t, m in r.get("by_temperature", {}).items():
            arms = ", ".join(f"{k[4:]} {v}" for k, v in m.items() if k.startswith("arm_"))
            opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
            lines.append(f"| {key} | {opts} | {r['generator_cpu_s']} | {t} | {m['oracle_fidelity']} "
                         f"| {m['oracle_frechet_distance']} | {m['oracle_precision']} | {m['oracle_recall']} "
                         f"| {m['nn_distance_ratio']} | {arms} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- per-step costs


def speed(args) -> None:
    """CPU and wall milliseconds per training step of the default run's parts, back to back on the
    embedded digits (data/digits/train, 100 images), one thread: the filter/eval classifier (plain
    and with affine), the CVAE (guidance on the full / half batch, none, residual decoder), the cGAN,
    and filtered sampling of 1,000 images. Written to --out as JSON."""
    from genapps.tasks.augment.data import load_imagefolder
    from genapps.tasks.augment.training import (ClassifierConfig, GeneratorConfig, synthesize, train_classifier,
                                                train_generator)

    torch.set_num_threads(1)
    dev = torch.device("cpu")
    real = load_imagefolder(ROOT / "data/digits/train", 28)
    x, y, n = real.x, real.y, args.speed
    out = {}

    def timed(name, f, steps):
        w, c = time.perf_counter(), time.process_time()
        result = f()
        cw, cc = time.perf_counter() - w, time.process_time() - c
        out[name] = {"steps": steps, "cpu_ms_per_step": round(1000 * cc / steps, 2),
                     "wall_ms_per_step": round(1000 * cw / steps, 2), "steps_per_s_wall": round(steps / cw, 2),
                     "steps_per_s_cpu": round(steps / cc, 2)}
        log.warning("%s: %s", name, out[name])
        return result

    train_classifier(x, y, 10, ClassifierConfig(steps=30, augment=True), dev)  # warm-up (imports, kernels)
    guide = timed("classifier_affine", lambda: train_classifier(x, y, 10, ClassifierConfig(steps=n, augment=True), dev), n)
    timed("classifier_plain", lambda: train_classifier(x, y, 10, ClassifierConfig(steps=n), dev), n)
    cgan = {"model": "cgan", "lr": 2e-4, "z_dim": 64, "guide_weight": 0.5}
    for name, kw in [("cvae_conv_guide_full_batch (round 1)", {"guide_fraction": 1.0}),
                     ("cvae_conv_guide_half_batch", {"guide_fraction": 0.5}),
                     ("cvae_conv_no_guide", {"guide_weight": 0.0}),
                     ("cvae_residual_guide_half_batch (default)", {"decoder": "residual"}),
                     ("cgan_guide_full_batch (round 1)", cgan | {"guide_fraction": 1.0}),
                     ("cgan_guide_half_batch (default)", cgan)]:
        cfg = GeneratorConfig(**({"steps": n, "guide_weight": 20.0} | kw))
        g = timed(name, lambda: train_generator(x, y, 10, cfg, dev, guide=guide), n)
    timed("sampling_1000_filtered", lambda: synthesize(g.generator, {k: 100 for k in range(10)}, 0, dev, guide), 1)
    _write_json(Path(args.out), out)


# ---------------------------------------------------------------- orchestration


def run_jobs(specs: list[dict], results: dict, out: Path, workers: int) -> None:
    todo = [s for s in specs if s["key"] not in results]
    if not todo:
        return 0
    log.warning("running %d jobs on %d workers", len(todo), workers)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        for key, res in pool.imap_unordered(job, todo):
            results[key] = res
            _write_json(out, results)
            log.warning("done %s: %s", key, {k: v for k, v in res.items() if not isinstance(v, dict)})
    return len(todo)


def _write_json(out: Path, results: dict) -> None:
    from genapps import io

    io.write_json(out, results)


def mean_std(values):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(results: dict, args) -> str:
    lines = ["| labels/class | generator | unlabeled pool | (a) real | (b) real + affine | (c) real + synthetic "
             "| (d) real + synthetic + affine | (e) self-training | (f) (e) + synthetic | FD | precision | recall "
             "| oracle fidelity % | NN-distance ratio | generator minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(prefix, arm):
        runs = [results[k]["accuracy"] for k in results if k.startswith(f"{prefix}/{arm}/seed")]
        if len(runs) < args.seeds:
            return "-"
        m, s = mean_std(runs)
        return f"{m:.1f} +- {s:.1f}"

    for labels in args.labels:
        base = f"L{labels}/baseline"
        for model in args.models:
            for unl in {"both": (False, True), "no": (False,), "yes": (True,)}[args.unlabeled]:
                gen = f"L{labels}/{model}/{'unl' if unl else 'lab'}"
                g = results.get(gen, {})
                minutes = g.get("seconds", 0) / 60
                pool_cells = (f"{cell(f'L{labels}/selftrain', 'e')} | {cell(gen, 'f')}" if unl else "- | -")
                lines.append(f"| {labels} | {model} | {'yes' if unl else 'no'} | {cell(base, 'a')} | {cell(base, 'b')} "
                             f"| {cell(gen, 'c')} | {cell(gen, 'd')} | {pool_cells} | {g.get('frechet_distance', '-')} "
                             f"| {g.get('precision', '-')} | {g.get('recall', '-')} | {g.get('oracle_fidelity', '-')} "
                             f"| {g.get('nn_distance_ratio', '-')} | {minutes:.1f} |")
    return "\n".join(lines)


def _stats(results: dict, prefix: str, arm: str, seeds: int):
    keys = [k for k in results if k.startswith(f"{prefix}/{arm}/seed")]
    if len(keys) < seeds:
        return None
    m, sd = mean_std([results[k]["accuracy"] for k in keys])
    per_class = torch.tensor([results[k]["per_class"] for k in keys]).mean(0) if all(
        "per_class" in results[k] for k in keys) else None
    return m, sd, per_class


def targets(results: dict, args) -> list[str]:
    """Issue 19's targets, checked: the best generative arm vs the best non-generative one (without
    the pool: (a), (b); with it: (a), (b), (e)), with the per-class deltas of that comparison."""
    lines = []
    for L in args.labels:
        for unl in ("lab", "unl"):
            refs = [(_stats(results, f"L{L}/baseline", a, args.seeds), f"arm {a}") for a in "ab"]
            if unl == "unl":
                refs.append((_stats(results, f"L{L}/selftrain", "e", args.seeds), "arm e (self-training)"))
            cands = [(_stats(results, f"L{L}/{m}/{unl}", arm, args.seeds), f"{m} arm {arm}") for m in args.models
                     for arm in ("cdf" if unl == "unl" else "cd")]
            refs, cands = [r for r in refs if r[0]], [c for c in cands if c[0]]
            if not refs or not cands:
                continue
            (m, sd, pc), name = max(cands, key=lambda c: c[0][0])
            (rm, rsd, rpc), rname = max(refs, key=lambda c: c[0][0])
            gain, noise = m - rm, max(sd, rsd)
            ok = gain > 2 * noise
            per_class = ""
            if pc is not None and rpc is not None:
                per_class = "; per-class points: " + ", ".join(f"{k} {d:+.1f}" for k, d in enumerate((pc - rpc).tolist()))
            lines.append(f"- {L} labels/class, {'with' if unl == 'unl' else 'without'} the pool: best generative arm "
                         f"({name}) {m:.1f} +- {sd:.1f} vs the best non-generative ({rname}) {rm:.1f} +- {rsd:.1f}: "
                         f"{gain:+.1f} points, {'more than 2 std: target met' if ok else 'not beyond 2 std: target NOT met'}"
                         f"{per_class}.")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=str(ROOT.parent / "shared/datasets/mnist"))
    ap.add_argument("--data", help="Instead of MNIST: a folder with pool/ and test/ ImageFolders "
                                   "(scripts/make_color_set.py); give --image-size and --cache too.")
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--set", nargs="+", metavar="KEY=VALUE",
                    help="Extra augment Config options for every generator, e.g. decoder=residual.")
    ap.add_argument("--labels", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--models", nargs="+", default=["cvae", "cgan"])
    ap.add_argument("--unlabeled", choices=["both", "no", "yes"], default="both")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--clf-steps", type=int, default=600)
    ap.add_argument("--oracle-steps", type=int, default=1500)
    ap.add_argument("--steps-cvae", type=int, default=1000)
    ap.add_argument("--steps-cgan", type=int, default=1500)
    ap.add_argument("--batch-cvae", type=int, default=64)
    ap.add_argument("--batch-cgan", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/augment.json"))
    ap.add_argument("--md", default=str(ROOT / "benchmarks/augment.md"))
    ap.add_argument("--cache", default=str(ROOT / "runs/bench_augment"))
    ap.add_argument("--quick", nargs="+", metavar="NAME:KEY=VALUE,...",
                    help="Instead of the benchmark: compare generator variants (augment Config options, e.g. "
                         "'res:decoder=residual,steps=1000'), one generator each, --quick-arms over --seeds seeds.")
    ap.add_argument("--speed", type=int, metavar="STEPS",
                    help="Instead of the benchmark: per-step CPU/wall costs of the default run's parts (--out JSON).")
    ap.add_argument("--quick-arms", default="cd", help="--quick: the arms to train per synthetic set (c, d).")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0],
                    help="--quick: also sample each generator (without the pool) at these temperatures.")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.quick:
        Path(args.cache).mkdir(parents=True, exist_ok=True)
        return quick(args)
    if args.speed:
        return speed(args)
    out, cache = Path(args.out), Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "md", "cache", "workers", "mnist", "quick",
                                                                 "quick_arms", "temperatures", "data", "image_size", "set")}
    settings |= {k: getattr(args, k) for k in ("data", "set") if getattr(args, k)}
    settings |= {"image_size": args.image_size} if args.image_size != 28 else {}
    results = json.loads(out.read_text()) if out.is_file() else {}
    if results.get("_settings", settings) != settings:
        raise SystemExit(f"{out} holds results of other settings {results['_settings']}; move it away first")
    results["_settings"] = settings
    t0 = time.perf_counter()
    a = {"args": vars(args)}
    unl_opts = {"both": (False, True), "no": (False,), "yes": (True,)}[args.unlabeled]
    gens = [{"key": f"L{L}/{m}/{'unl' if u else 'lab'}", "kind": "generator", "labels": L, "model": m, "unlabeled": u} | a
            for L in args.labels for m in args.models for u in unl_opts]
    stage1 = [{"key": "oracle", "kind": "oracle"} | a]
    ran = run_jobs(stage1, results, out, args.workers)
    baseline = [{"key": f"L{L}/baseline/{arm}/seed{s}", "kind": "arm", "labels": L, "arm": arm, "seed": s} | a
                for L in args.labels for arm in "ab" for s in range(args.seeds)]
    ran += run_jobs(gens + baseline, results, out, args.workers)
    arms = [{"key": f"{g['key']}/{arm}/seed{s}", "kind": "arm", "labels": g["labels"], "arm": arm, "seed": s,
             "gen": g["key"].replace("/", "_")} | a for g in gens for arm in ("cdf" if g["unlabeled"] else "cd")
            for s in range(args.seeds)]
    first_unl = {}  # labels -> the first generator with the pool: its pseudo-labels serve arm e
    for g in gens:
        if g["unlabeled"]:
            first_unl.setdefault(g["labels"], g["key"].replace("/", "_"))
    arms += [{"key": f"L{L}/selftrain/e/seed{s}", "kind": "arm", "labels": L, "arm": "e", "seed": s, "gen": gen} | a
             for L, gen in first_unl.items() for s in range(args.seeds)]
    ran += run_jobs(arms, results, out, args.workers)
    if ran:  # a rerun that found everything done keeps the compute of the run that did it
        results["_minutes_this_run"] = round((time.perf_counter() - t0) / 60, 1)
    _write_json(out, results)
    cmd = "python scripts/bench_augment.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    pool_size = len(_setup(args)[0][1])
    data_line = (f"Data: {args.data} (scripts/make_color_set.py: classes = source photos, pool = {pool_size} crops "
                 f"from the photos' left halves, test = crops from their right halves; {args.image_size} px)."
                 if args.data else "Pool = first 5,000 digits of MNIST t10k, test = last 5,000.")
    md = [f"# augment benchmark: label-scarce {'colour crops' if args.data else 'MNIST'}", "",
          f"Command: `{cmd}` (2 CPU cores, {args.workers} worker processes of 1 thread)", "",
          f"{data_line} Test accuracy (%) of the same small CNN "
          f"({args.clf_steps} Adam steps, batch 32), mean +- std over {args.seeds} seeds; {args.per_class} synthetic "
          f"images per class; generators: cvae ({set_options(args).get('decoder', 'residual')} decoder) "
          f"{args.steps_cvae} steps of batch {args.batch_cvae}, cgan {args.steps_cgan} steps of "
          f"batch {args.batch_cgan}; one generator per row (seed 0), one labeled subset per labels/class "
          f"(selection seed 0): the std is over classifier seeds.", "",
          "Columns: FD = Frechet distance, precision/recall = improved precision/recall (k=3), all between the "
          "test images and the synthetic set in the penultimate features of the filter classifier; oracle "
          "fidelity = % of synthetic samples an independent CNN (trained on all the pool's labels) assigns to "
          "their class; NN-distance ratio = median pixel distance of a sample to its nearest labeled image / "
          "the same for test images (about 1: no copying; near 0: copies).", "",
          table(results, args), "", "Targets (issue 19: the best generative arm vs the best non-generative one):",
          *targets(results, args), "",
          f"Oracle CNN (all {pool_size} pool labels) test accuracy: {results.get('oracle', {}).get('test_accuracy', '-')}%.",
          "",
          "Method: generators are trained with a class-consistency loss (prior samples of class k must be "
          "classified as k by the filter classifier, trained on the real labeled images with random affine); "
          "the quality filter drops samples that classifier assigns to another class with p >= 0.9. With the "
          "unlabeled pool: self-training pseudo-labels (a classifier on the labeled images labels the pool; "
          "images at p >= 0.95 join its training set; two rounds), the generator trains on labeled + "
          "pseudo-labeled images, and the CVAE samples half from the prior, half as posterior variants "
          "(z ~ q(z|x, y), decoded) of its training images. The cGAN samples from the prior only. "
          "Arm (e) is self-training without synthesis: the classifier trains on the labeled images and the "
          "pseudo-labeled pool (p >= 0.95; 3/4 of each batch) with random affine, for up to twice the steps "
          "(the pseudo-labeler's rule); arm (f) = (e) with a quarter of each batch synthetic (1/4 real, 1/2 "
          "pool, 1/4 synthetic).",
          "",
          "Pseudo-labels (rows with the pool): " + "; ".join(
              f"L{L}: {results[k]['pseudo_labels']['kept']} of {results[k]['pseudo_labels']['of']} kept, "
              f"{results[k]['pseudo_labels']['accuracy_kept']}% correct; pseudo-labeler alone on test: "
              f"{results[k]['pseudo_labeler_test_accuracy']}%"
              for L in args.labels for k in [f"L{L}/{args.models[0]}/unl"] if "pseudo_labels" in results.get(k, {})),
          f"Total compute of this run: {results['_minutes_this_run']} minutes wall.", ""]
    Path(args.md).parent.mkdir(parents=True, exist_ok=True)
    from genapps import io

    io.write_text(args.md, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
