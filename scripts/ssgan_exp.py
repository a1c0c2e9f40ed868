"""Design experiment (issue 19): the GAN semi-supervised classifier of Salimans et al. 2016
("Improved techniques for training GANs": the discriminator is the classifier with K real classes
and an implicit fake class, the generator trained by feature matching), judged on the VALIDATION
split (scripts/bench_augment.validation_split), never on the MNIST test half.
usage: python scripts/ssgan_exp.py NAME STEPS [key=value ...]"""
import sys, json, time
from pathlib import Path
import torch
import torch.nn.functional as F
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "scripts"))
torch.set_num_threads(1)
import bench_augment as B
from genapps.tasks.augment.models import define_model
from genapps.tasks.augment.training import (accuracy, affine_augmenter, apply_albumentations, pseudo_label,
                                            self_training_steps)

name, steps = sys.argv[1], int(sys.argv[2])
opt = {"lr_d": 3e-4, "lr_g": 3e-4, "bl": 32, "bu": 64, "aug_unl": 1, "w_unsup": 1.0, "seed": 0, "width": 16,
       "eval_every": 500, "pseudo": 0}
opt |= {k: type(opt[k])(v) for k, v in (a.split("=") for a in sys.argv[3:])}
dev = torch.device("cpu")
pool, _ = B.load_mnist(ROOT.parent / "shared/datasets/mnist")
(xl, yl), x_unl = B.split_pool(pool, 10)
xv, yv = B.validation_split(pool, 10)
if opt["pseudo"]:  # arm e's pseudo-labeled pool joins the supervised batches (3/4 of them, as in e)
    pl = pseudo_label(xl, yl, x_unl, 10, dev, 0.95, steps=self_training_steps(600, len(x_unl)), seed=0)
    xp, yp = x_unl[pl.keep], pl.labels[pl.keep]
torch.manual_seed(opt["seed"])
D = define_model("classifier", channels=1, num_classes=10, image_size=28, width=opt["width"])
G = define_model("cgan", channels=1, num_classes=10, image_size=28)
od = torch.optim.Adam(D.parameters(), opt["lr_d"], betas=(0.5, 0.999))
og = torch.optim.Adam(G.parameters(), opt["lr_g"], betas=(0.5, 0.999))
aug = affine_augmenter(opt["seed"])
rng = torch.Generator().manual_seed(opt["seed"])
t0 = time.process_time()
log = []
for step in range(1, steps + 1):
    i = torch.randint(len(xl), (opt["bl"],), generator=rng)
    xb, yb = xl[i], yl[i]
    if opt["pseudo"]:
        n = 3 * opt["bl"] // 4
        j = torch.randint(len(xp), (n,), generator=rng)
        xb, yb = torch.cat([xb[: opt["bl"] - n], xp[j]]), torch.cat([yb[: opt["bl"] - n], yp[j]])
    xb = apply_albumentations(aug, xb)
    xu = x_unl[torch.randint(len(x_unl), (opt["bu"],), generator=rng)]
    if opt["aug_unl"]:
        xu = apply_albumentations(aug, xu)
    z = torch.randn(opt["bu"], G.z_dim)
    yz = F.one_hot(torch.randint(10, (opt["bu"],)), 10).float()
    fake = G(z, yz)
    # D: supervised CE + unsupervised real/fake with D(x) = Z / (Z + 1), Z = sum_k exp(l_k)
    D.train()
    lu, lf = D(xu), D(fake.detach())
    lse_u, lse_f = lu.logsumexp(1), lf.logsumexp(1)
    loss_d = F.cross_entropy(D(xb), yb) + opt["w_unsup"] * (
        -lse_u.mean() + F.softplus(lse_u).mean() + F.softplus(lse_f).mean())
    od.zero_grad(); loss_d.backward(); od.step()
    # G: feature matching on D's penultimate features
    fr = D.features(xu).detach().mean(0)
    ff = D.features(fake).mean(0)
    loss_g = (fr - ff).pow(2).mean()
    og.zero_grad(); loss_g.backward(); og.step()
    if step % opt["eval_every"] == 0 or step == steps:
        acc = 100 * accuracy(D, xv, yv, dev)
        log.append([step, round(acc, 2)])
        print(step, round(acc, 2), round(loss_d.item(), 3), round(loss_g.item(), 4),
              round(time.process_time() - t0), flush=True)
r = {"name": name, "steps": steps, "opt": opt, "val": log, "cpu_s": round(time.process_time() - t0)}
with (ROOT / "benchmarks/augment_r2_validation_ssgan.jsonl").open("a") as f:
    f.write(json.dumps(r) + "\n")
print(json.dumps(r))
