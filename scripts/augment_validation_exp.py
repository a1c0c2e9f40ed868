"""Design experiment (issue 19): generator variants judged on a VALIDATION split (2,000 pool digits
outside the labeled set, with their true labels), never on the MNIST test half.
usage: python scripts/augment_validation_exp.py lab|unl NAME:opt=v,... [...]
A NAME ending in "post" reuses the generator state of NAME without it (a sampling variant). The
benchmark's table: cvae (copy runs/bench_augment/L10_cvae_{lab,unl}.state.pt to
runs/augment_validation/cvae_{lab,unl}.state.pt), cvaepost:sampling=posterior, vaegan:model=vaegan,
vaeganpost:model=vaegan,sampling=posterior."""
import sys, json, statistics, time
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "scripts"))
torch.set_num_threads(1)
import bench_augment as B
from genapps.tasks.augment.task import Config, augment_tensors
from genapps.tasks.augment.evaluate import run_arm
from genapps.tasks.augment.training import predict_proba

dev = torch.device("cpu")
unl = sys.argv[1] == "unl"
pool, test = B.load_mnist(ROOT.parent / "shared/datasets/mnist")
(xl, yl), x_unl = B.split_pool(pool, 10)
xv, yv = B.validation_split(pool, 10)
oracle = B.oracle_net(type("A", (), {"cache": str(ROOT / "runs/bench_augment"), "oracle_steps": 1500})(), pool, test, dev)
CACHE = ROOT / "runs/augment_validation"  # generator states (sampling variants share one)
CACHE.mkdir(parents=True, exist_ok=True)
out = ROOT / f"benchmarks/augment_r2_validation_{sys.argv[1]}.jsonl"
for variant in sys.argv[2:]:
    name, opts = B.parse_variant(variant)
    c0 = time.process_time()
    state = CACHE / f"{name.removesuffix('post')}_{sys.argv[1]}.state.pt"  # sampling variants share it
    cfg = Config(**({"per_class": 500, "batch_size": 64, "seed": 0, "eval_steps": 600,
                     "unlabeled": "pool" if unl else None} | opts))
    aug = augment_tensors(xl, yl, 10, cfg, dev, x_unl if unl else None, state)
    syn = aug.synthetic
    pool_l = (x_unl[aug.pseudo.keep], aug.pseudo.labels[aug.pseudo.keep]) if unl else None
    fid = float((predict_proba(oracle, syn.x, dev).argmax(1) == syn.y).float().mean())
    r = {"variant": variant, "setting": sys.argv[1], "kept": len(syn.y), "oracle_fid": round(100 * fid, 1),
         "gen_cpu_s": round(time.process_time() - c0, 1), "sampling": aug.sampling}
    for arm in ("bd" + ("ef" if unl else "")):
        accs = [run_arm(arm, (xl, yl), (syn.x, syn.y), (xv, yv), 10, sd, 600, dev, pool=pool_l) for sd in range(3)]
        r[arm] = [round(statistics.fmean(accs), 2), round(statistics.stdev(accs), 2)]
    print(json.dumps(r), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(r) + "\n")
