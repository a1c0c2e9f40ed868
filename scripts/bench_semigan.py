"""Arm g (the semi-supervised GAN) against self-training (e) on the MNIST benchmark's split
(scripts/bench_augment.py: 10 labels/class from the first 5,000 t10k digits, the rest of them the
unlabeled pool, the last 5,000 the test set), one (arm, seed, steps) per invocation so that two
processes share the two cores. Appends a JSON line to benchmarks/augment_semigan.jsonl.
usage: python scripts/bench_semigan.py g|e SEED STEPS [--val]
  g: STEPS of the semi-supervised GAN; e: self-training with STEPS classifier steps (the arm's own
  rule doubles the proof's 600 for a pool of 2,000+: pass 5000 for 10,000).
  --val: score on the validation split (bench_augment.validation_split) instead of the test half."""
import sys, json, time
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "scripts"))
torch.set_num_threads(1)
import bench_augment as B
from genapps.tasks.augment.evaluate import run_arm
from genapps.tasks.augment.training import pseudo_label, self_training_steps

arm, seed, steps, val = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), "--val" in sys.argv
dev = torch.device("cpu")
pool, test = B.load_mnist(ROOT.parent / "shared/datasets/mnist")
(xl, yl), x_unl = B.split_pool(pool, 10)
target = B.validation_split(pool, 10) if val else test
w0, c0 = time.perf_counter(), time.process_time()
pl = None
if arm == "e":  # the benchmark's pseudo-labels (the same rule and seed as bench_augment's generators)
    p = pseudo_label(xl, yl, x_unl, 10, dev, 0.95, steps=self_training_steps(600, len(x_unl)), seed=0)
    pl = (x_unl[p.keep], p.labels[p.keep])
acc, pc = run_arm(arm, (xl, yl), None, target, 10, seed, steps, dev, pool=pl, per_class=True, unlabeled=x_unl,
                  semigan_steps=steps)
r = {"arm": arm, "seed": seed, "steps": steps if arm == "g" else self_training_steps(steps, len(x_unl)),
     "split": "validation" if val else "test", "accuracy": round(acc, 2),
     "per_class": [round(float(v), 2) for v in pc], "cpu_s": round(time.process_time() - c0),
     "wall_s": round(time.perf_counter() - w0)}
print(json.dumps(r), flush=True)
with (ROOT / "benchmarks/augment_semigan.jsonl").open("a") as f:
    f.write(json.dumps(r) + "\n")
