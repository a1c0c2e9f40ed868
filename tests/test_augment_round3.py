"""augment round 3 (issue 31): the filter's judge is trained on labeled images the generator never
sees, the filter asks it, the benchmark's outside judge is disjoint from every generator's data,
and arm g's classifier is written to OUTPUT with a card and loads."""

import json
import sys
from pathlib import Path

import pytest
import torch

from genapps import weights
from genapps.tasks.augment import task as augment_task
from genapps.tasks.augment.models import MODELS
from genapps.tasks.augment.task import Config, augment_tensors, run
from genapps.tasks.augment.training import judge_split

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "data" / "digits"
CPU = torch.device("cpu")


def _distinct(n_per_class=4, classes=3, size=8, seed=0):
    """Images all different from each other (random noise plus a class-coloured band), labels 0..classes-1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.rand(len(y), 1, size, size, generator=g) * 0.3
    for k in range(classes):
        x[y == k, :, k * size // classes:(k + 1) * size // classes] += 0.6
    return x.clamp(0, 1), y


def test_judge_split_holds_out_part_of_every_class_and_nothing_twice():
    y = torch.tensor([0] * 10 + [1] * 3 + [2] * 2)
    gen, judge = judge_split(y, 3, 0.5, seed=4)
    assert not set(gen.tolist()) & set(judge.tolist())
    assert sorted(gen.tolist() + judge.tolist()) == list(range(len(y)))
    assert torch.bincount(y[judge], minlength=3).tolist() == [5, 2, 1]  # round(share x n), at least 1
    assert torch.bincount(y[gen], minlength=3).tolist() == [5, 1, 1]  # at least 1 left for the generator
    assert torch.equal(judge_split(y, 3, 0.5, seed=4)[1], judge)  # the split is the seed's
    one = torch.tensor([0, 0, 1])  # a class with a single image cannot be split: no judge
    gen, judge = judge_split(one, 2, 0.5)
    assert gen.tolist() == [0, 1, 2] and judge.numel() == 0
    assert judge_split(y, 3, 0.0)[1].numel() == 0


def _spy_trainings(monkeypatch):
    """Record the images each network of augment_tensors trains on."""
    seen = {}

    def spy(name, fn):
        def wrapped(x, y, *args, **kw):
            seen.setdefault(name, []).append(x.clone())
            return fn(x, y, *args, **kw)
        monkeypatch.setattr(augment_task, name, wrapped)

    for name in ("train_generator", "train_classifier", "train_judge"):
        spy(name, getattr(augment_task, name))
    return seen


def test_the_judge_never_trains_on_an_image_the_generator_or_its_guide_trains_on(monkeypatch):
    x, y = _distinct()
    seen = _spy_trainings(monkeypatch)
    cfg = Config(steps=2, batch_size=4, per_class=2, image_size=8, eval_steps=2, seed=3)
    aug = augment_tensors(x, y, 3, cfg, CPU)
    judge_x, = seen["train_judge"]
    gen_x, = seen["train_generator"]
    guide_x, = seen["train_classifier"]
    as_set = lambda t: {tuple(v.flatten().tolist()) for v in t}  # noqa: E731
    assert as_set(judge_x) and as_set(gen_x)
    assert not as_set(judge_x) & as_set(gen_x) and not as_set(judge_x) & as_set(guide_x)
    assert as_set(judge_x) | as_set(gen_x) == as_set(x)  # every labeled image serves one of them
    assert not set(aug.judge_index.tolist()) & set(aug.generator_index.tolist())
    assert aug.judge is not None and aug.filter_net is aug.judge
    # with a pool: the generator trains on its labeled half and the pseudo-labeled pool, never on a judge image
    seen.clear()
    pool, _ = _distinct(n_per_class=3, seed=9)
    aug = augment_tensors(x, y, 3, Config(steps=2, batch_size=4, per_class=2, image_size=8, eval_steps=2, seed=3,
                                          pseudo_threshold=0.1), CPU, pool)
    judge_x, = seen["train_judge"]
    gen_x, = seen["train_generator"]
    assert len(gen_x) > len(aug.generator_index)  # pool images joined the generator's
    assert as_set(judge_x) == as_set(x[aug.judge_index]) and not as_set(judge_x) & as_set(gen_x)
    assert as_set(gen_x) <= as_set(x[aug.generator_index]) | as_set(pool)
    # without the filter, or with judge_holdout 0, the generator trains on every labeled image
    for off in ({"filter": False}, {"judge_holdout": 0.0}):
        seen.clear()
        aug = augment_tensors(x, y, 3, Config(steps=2, batch_size=4, per_class=2, image_size=8, eval_steps=2, **off),
                              CPU)
        assert len(seen["train_generator"][0]) == len(x) and "train_judge" not in seen and aug.judge is None


class _RejectClass(torch.nn.Module):
    """A 'judge' sure that every image belongs to class 0."""

    def forward(self, x):
        return torch.tensor([[20.0, 0.0, 0.0]]).expand(len(x), -1)


def test_the_filter_asks_the_judge(monkeypatch):
    x, y = _distinct()
    monkeypatch.setattr(augment_task, "train_judge", lambda *a, **k: _RejectClass())
    cfg = Config(steps=2, batch_size=4, per_class=3, image_size=8, eval_steps=2)
    aug = augment_tensors(x, y, 3, cfg, CPU)
    # the judge sends every sample to class 0: every draw of classes 1 and 2 is dropped (5 rounds), then
    # the classes are completed with their dropped samples (never left empty), scored by the judge
    syn = aug.synthetic
    assert syn.dropped[1] > 0 and syn.dropped[2] > 0 and syn.dropped[0] == 0
    assert torch.bincount(syn.y, minlength=3).tolist() == [3, 3, 3] and syn.topped_up == {1: 3, 2: 3}
    p = torch.softmax(torch.tensor([20.0, 0.0, 0.0]), 0)
    assert torch.allclose(syn.score, p[syn.y])  # the manifest's filter score is the judge's


def test_run_reports_which_judge_filtered(tmp_path):
    cfg = Config(steps=2, batch_size=8, per_class=1, image_size=12, eval_steps=2, interpolate=False)
    s = run(cfg, DIGITS / "train", tmp_path / "out", CPU).summary
    assert s["filter"]["judge"].startswith("a held-out judge") and "never saw" in s["filter"]["judge"]
    assert set(s["filter"]["taken_back_per_class"]) <= set(s["classes"])
    s = run(Config(steps=2, batch_size=8, per_class=1, image_size=12, eval_steps=2, interpolate=False,
                   judge_holdout=0.0, resume=False), DIGITS / "train", tmp_path / "out2", CPU).summary
    assert s["filter"]["judge"].startswith("the guide classifier")
    with pytest.raises(ValueError, match="judge_holdout"):
        Config(judge_holdout=1.0)


def test_the_outside_benchmark_judge_is_disjoint_from_every_generator_and_the_test_half():
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_augment_judge as bench

    d = bench.default_indices()
    assert len(d) == 100 and int(d.max()) < 5000  # data/digits/train: pool digits only
    y = torch.randint(10, (5000,), generator=torch.Generator().manual_seed(0))
    for k in range(10):  # the embedded digits' true classes (their folders)
        y[d[10 * k:10 * (k + 1)]] = k
    split = bench.splits(y)
    assert torch.equal(split["D"], d)
    parts = {k: set(v.tolist()) for k, v in split.items()}
    for a in parts:
        for b in parts:
            assert a == b or not parts[a] & parts[b], (a, b)
    assert set().union(*parts.values()) == set(range(5000))  # the pool only: no test digit anywhere
    assert len(parts["J"]) == 3800 and torch.bincount(y[split["V"]], minlength=10).tolist() == [10] * 10


def test_near_copies_are_found_under_small_shifts():
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_augment_judge as bench

    x, _ = _distinct(size=28)
    moved = torch.roll(x[:3], shifts=(2, -1), dims=(2, 3))
    d = bench.shifted_nn_distance(moved, x)
    assert torch.all(d < 0.5 * torch.cdist(moved.flatten(1), x.flatten(1)).min(1).values + 1e-6)
    assert bench.shifted_nn_distance(x[:3], x).max() < 1e-5


def test_semigan_classifier_is_written_with_its_card_and_loads(tmp_path):
    cfg = Config(model="cvae", steps=3, batch_size=8, per_class=1, image_size=12, unlabeled=str(DIGITS / "test"),
                 eval=str(DIGITS / "test"), eval_seeds=1, eval_steps=3, pseudo_threshold=0.1, interpolate=False,
                 semigan_steps=3)
    out = tmp_path / "out"
    s = run(cfg, DIGITS / "train", out, CPU).summary
    path = out / "semigan_classifier.safetensors"
    assert s["semigan_classifier"]["file"] == path.name
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["task"] == "augment" and card["arch"] == "classifier" and card["classes"] == [str(k) for k in range(10)]
    assert card["training"]["steps"] == 3 and "Salimans" in card["training"]["method"]
    assert card["data"]["labeled_images"] == 100 and card["data"]["unlabeled"] == str(DIGITS / "test")
    assert card["validation"]["accuracy"] == s["eval"]["arms"]["g"]["runs"][0]
    net, info = weights.load_model(path, "augment", MODELS)
    assert info.arch == "classifier"
    from genapps.tasks.augment.data import load_imagefolder

    test = load_imagefolder(DIGITS / "test", 12, 1)
    acc = 100 * float((net(test.x).argmax(1) == test.y).float().mean())
    assert acc == pytest.approx(card["validation"]["accuracy"], abs=0.01)  # the card's number is this file's
    # a later run without arm g leaves no stale classifier behind
    run(Config(steps=2, batch_size=8, per_class=1, image_size=12, eval_steps=2, interpolate=False, resume=False),
        DIGITS / "train", out, CPU)
    assert not path.exists() and not path.with_suffix(".json").exists()


def test_posterior_variants_spread_by_their_own_temperature_and_are_the_default():
    from genapps.tasks.augment.models import CVAE
    from genapps.tasks.augment.training import generate

    torch.manual_seed(0)
    g = CVAE(channels=1, num_classes=3, image_size=8, z_dim=4).eval()
    x, y = _distinct()
    post = torch.ones(len(y), dtype=torch.bool)
    kw = dict(seed=2, device=CPU, source=(x, y), posterior=post)
    centre = generate(g, y, posterior_temperature=1e-6, **kw)  # z = mu of each source image
    near, far = (generate(g, y, posterior_temperature=t, **kw) for t in (1.0, 2.0))
    assert (far - centre).abs().mean() > (near - centre).abs().mean()
    assert torch.equal(generate(g, y, temperature=2.0, **kw), far)  # without it, `temperature` spreads them
    prior = generate(g, y, seed=2, device=CPU)  # prior draws ignore the posterior spread
    assert torch.equal(generate(g, y, seed=2, device=CPU, posterior_temperature=5.0), prior)
    cfg = dict(steps=2, batch_size=4, per_class=1, image_size=8, eval_steps=2)
    assert augment_tensors(x, y, 3, Config(**cfg), CPU).sampling == "posterior"
    assert augment_tensors(x, y, 3, Config(model="cgan", **cfg), CPU).sampling == "prior"
