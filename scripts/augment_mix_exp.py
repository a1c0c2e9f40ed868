"""Design experiment (issue 19): how much of each classifier batch should be synthetic, and how long
the classifier should train, chosen on the VALIDATION split of scripts/augment_validation_exp.py
(2,000 pool digits outside the labeled set), never on the MNIST test half.
usage: python scripts/augment_mix_exp.py lab|unl SAMPLING FRACTIONS STEPS
  e.g. lab posterior 0.1,0.25,0.5 600,1500   (the cached CVAE of the validation experiment)
lab: arm b (real + affine) vs arm d (+ synthetic at each fraction); unl: arm e (self-training) vs
arm f (+ synthetic at each fraction, the pool keeping half the batch). 3 classifier seeds each.
Rows are appended to benchmarks/augment_r2_validation_mix.jsonl (a rerun adds rows)."""
import sys, json, statistics
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "scripts"))
torch.set_num_threads(1)
import bench_augment as B
from genapps.tasks.augment.task import Config, augment_tensors
from genapps.tasks.augment.training import ClassifierConfig, accuracy, self_training_steps, train_classifier

dev = torch.device("cpu")
setting, sampling = sys.argv[1], sys.argv[2]
fractions = [float(v) for v in sys.argv[3].split(",")]
steps_list = [int(v) for v in sys.argv[4].split(",")]
unl = setting == "unl"
pool, _ = B.load_mnist(ROOT.parent / "shared/datasets/mnist")
(xl, yl), x_unl = B.split_pool(pool, 10)
xv, yv = B.validation_split(pool, 10)
cfg = Config(per_class=500, batch_size=64, seed=0, eval_steps=600, sampling=sampling,
             unlabeled="pool" if unl else None)
aug = augment_tensors(xl, yl, 10, cfg, dev, x_unl if unl else None,
                      ROOT / f"runs/augment_validation/cvae_{setting}.state.pt")
syn = (aug.synthetic.x, aug.synthetic.y)
pl = (x_unl[aug.pseudo.keep], aug.pseudo.labels[aug.pseudo.keep]) if unl else None


def acc(steps, sets, seed):
    net = train_classifier(xl, yl, 10, ClassifierConfig(steps=steps, augment=True, seed=seed), dev, extra_sets=sets)
    return 100 * accuracy(net, xv, yv, dev)


def row(name, steps, sets):
    accs = [acc(steps, sets, sd) for sd in range(3)]
    r = {"setting": setting, "sampling": sampling, "arm": name, "steps": steps,
         "acc": [round(statistics.fmean(accs), 2), round(statistics.stdev(accs), 2)]}
    print(json.dumps(r), flush=True)
    with (ROOT / "benchmarks/augment_r2_validation_mix.jsonl").open("a") as f:
        f.write(json.dumps(r) + "\n")


for steps in steps_list:
    st = self_training_steps(steps, len(x_unl)) if unl else steps
    row("e" if unl else "b", st, ((*pl, 0.75),) if unl else ())
    for fr in fractions:
        row(f"{'f' if unl else 'd'} syn={fr}", st, ((*pl, 0.5), (*syn, fr)) if unl else ((*syn, fr),))
