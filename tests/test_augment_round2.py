"""augment round 2 (issue 19): the honest arms (self-training e, e + synthetic f), per-class
deltas, the residual CVAE decoder, truncated sampling, the cheaper guidance."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genapps import io, weights
from genapps.tasks.augment.task import Config, run
from genapps.tasks.augment.evaluate import ARMS, evaluate_arms, run_arm, verdict
from genapps.tasks.augment.models import CVAE, define_model
from genapps.tasks.augment.training import (ClassifierConfig, GeneratorConfig, generate, synthesize,
                                            train_classifier, train_generator)

DIGITS = Path(__file__).resolve().parent.parent / "data" / "digits"
CPU = torch.device("cpu")


def _toy(n_per_class=6, size=8, seed=0):
    """Two classes a CNN separates at once: bright top half (0) or bright bottom half (1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n_per_class, 1, size, size, generator=g) * 0.2
    y = torch.tensor([0] * n_per_class + [1] * n_per_class)
    x[y == 0, :, : size // 2] += 0.7
    x[y == 1, :, size // 2:] += 0.7
    return x.clamp(0, 1), y


# ---------------------------------------------------------------- arms e and f


def test_classifier_batches_mix_every_extra_set(monkeypatch):
    x, y = _toy()
    seen = []
    real_x = torch.zeros_like(x)  # real images all black, extra sets all white / grey: count them per batch
    sets = ((torch.ones(5, 1, 8, 8), torch.zeros(5, dtype=torch.long), 0.5),
            (torch.full((5, 1, 8, 8), 0.5), torch.ones(5, dtype=torch.long), 0.25))
    import genapps.tasks.augment.training as training

    orig = training.fit

    def spy(spec, tcfg, **kw):
        batch = spec.next_batch()
        seen.append(sorted(batch[0].flatten(1).mean(1).tolist()))
        return orig(spec, tcfg, **kw)

    monkeypatch.setattr(training, "fit", spy)
    train_classifier(real_x, y, 2, ClassifierConfig(steps=1, batch_size=8), CPU, extra_sets=sets)
    assert seen[0] == [0.0] * 2 + [0.5] * 2 + [1.0] * 4
    with pytest.raises(ValueError, match="no room"):
        train_classifier(x, y, 2, ClassifierConfig(steps=1, batch_size=8), CPU, extra_sets=((*sets[0][:2], 1.0),))


def test_pool_arms_need_the_pool_and_give_per_class_accuracy():
    x, y = _toy()
    test = _toy(seed=1)
    pool = _toy(n_per_class=10, seed=2)
    with pytest.raises(ValueError, match="pseudo-labeled pool"):
        run_arm("e", (x, y), None, test, 2, 0, 2, CPU)
    for arm in "ef":
        acc, per_class = run_arm(arm, (x, y), (x, y), test, 2, 0, 4, CPU, pool=pool, per_class=True)
        assert 0 <= acc <= 100 and per_class.shape == (2,)
        assert abs(per_class.mean().item() - acc) < 1e-6  # equal class sizes: the mean of the per-class ones


def test_evaluate_arms_with_pool_compares_best_generative_with_best_other():
    x, y = _toy()
    res = evaluate_arms((x, y), _toy(seed=3), _toy(seed=1), 2, CPU, seeds=2, steps=3, pool=_toy(seed=2),
                        classes=["top", "bottom"], generator_minutes=0.5)
    assert set(res["arms"]) == set("abcdef") == set(ARMS) - {"g"}  # g only on request
    assert all(set(a["per_class"]) == {"top", "bottom"} and len(a["runs"]) == 2 for a in res["arms"].values())
    syn, base = res["per_class_delta"]["compared"].split(" vs ")
    assert syn in "cdf" and base in "abe"
    assert res["arms"][syn]["mean"] == max(res["arms"][a]["mean"] for a in "cdf")
    assert res["arms"][base]["mean"] == max(res["arms"][a]["mean"] for a in "abe")
    for cls, d in res["per_class_delta"]["points"].items():
        assert d == pytest.approx(res["arms"][syn]["per_class"][cls] - res["arms"][base]["per_class"][cls], abs=0.02)
    assert f"best non-generative arm {base}" in res["verdict"] and "generator cost 0.5 min" in res["verdict"]
    assert "arm f vs e" in res["verdict"]
    assert set(evaluate_arms((x, y), _toy(seed=3), _toy(seed=1), 2, CPU, seeds=1, steps=2)["arms"]) == set("abcd")


def test_verdict_names_self_training_and_the_classes_synthesis_hurt():
    arms = {k: {"mean": m, "std": 0.3} for k, m in zip("abcdef", [80.0, 90.0, 82.0, 91.0, 95.0, 94.0])}
    text = verdict(arms, {"3": -2.5, "5": 1.0, "8": -0.5}, generator_minutes=1.25)
    assert text.startswith("synthesis did not help: the best generative arm f")
    assert "best non-generative arm e (real + pseudo-labeled pool" in text and "-1.0 points" in text
    assert "classes it hurt: 3 (-2.5), 8 (-0.5)" in text and "generator cost 1.2 min" in text
    assert "arm c vs a +2.0 (> 2 std)" in text and "arm f vs e -1.0" in text
    arms["f"]["mean"] = 97.0
    assert verdict(arms, {"0": 0.5}).startswith("synthesis helped: ") and "no class lost accuracy" in verdict(arms, {})


def test_run_with_pool_reports_arms_e_f_and_per_class_deltas(tmp_path):
    cfg = Config(model="cvae", steps=6, batch_size=8, per_class=2, image_size=12, unlabeled=str(DIGITS / "test"),
                 eval=str(DIGITS / "test"), eval_seeds=1, eval_steps=4, pseudo_threshold=0.1, interpolate=False,
                 semigan_steps=3)
    s = run(cfg, DIGITS / "train", tmp_path / "out", CPU).summary
    assert set(s["eval"]["arms"]) == set("abcdefg")
    assert set(s["synthesis_per_class"]["points"]) <= {str(k) for k in range(10)}
    assert s["synthesis"].startswith("synthesis ") and "generator cost" in s["synthesis"]
    assert s["eval"]["arms"]["e"]["name"].endswith("(self-training)")


def test_run_with_pool_writes_the_pseudo_labels_of_every_readable_pool_image(tmp_path):
    import csv
    import shutil

    pool = tmp_path / "pool"
    shutil.copytree(DIGITS / "test", pool / "digits")  # pool/digits/<true class>/*.png
    (pool / "digits" / "broken.png").write_bytes(b"not a png")  # skipped, so not listed
    cfg = Config(model="cvae", steps=4, batch_size=8, per_class=1, image_size=12, unlabeled=str(pool),
                 pseudo_threshold=0.9, interpolate=False)
    s = run(cfg, DIGITS / "train", tmp_path / "out", CPU).summary
    csv_path = tmp_path / "out" / "pseudo_labels.csv"
    rows = list(csv.DictReader(csv_path.open()))
    readable = [p for p in io.list_images(pool) if p.name != "broken.png"]
    assert [r["file"] for r in rows] == [p.relative_to(pool).as_posix() for p in readable]
    # the classes belong to their files: most agree with the folder of the true class (chance: 10%)
    assert sum(r["class"] == r["file"].split("/")[1] for r in rows) >= 0.7 * len(rows)
    kept = [int(r["kept"]) for r in rows]
    assert 0 < sum(kept) == s["unlabeled"]["pseudo_labeled"] < len(rows)
    for r, k in zip(rows, kept):  # kept exactly when the confidence reaches the threshold (4 decimals written)
        c = float(r["confidence"])
        assert (k == 1) == (c >= 0.9) or abs(c - 0.9) < 1e-4
    # a later run into the same folder without a pool leaves no stale pseudo-labels behind
    run(Config(model="cvae", steps=2, batch_size=8, per_class=1, image_size=12, eval_steps=5, interpolate=False,
               resume=False),
        DIGITS / "train", tmp_path / "out", CPU)
    assert not csv_path.exists()


# ---------------------------------------------------------------- generators


def test_residual_decoder_shapes_training_and_weights(tmp_path):
    torch.manual_seed(0)
    m = CVAE(channels=3, num_classes=4, image_size=16, z_dim=8, decoder="residual")
    assert any(type(b).__name__ == "ResidualBlock" for b in m.dec)
    y = F.one_hot(torch.tensor([0, 1, 2, 3]), 4).float()
    logits, mu, logvar = m(torch.rand(4, 3, 16, 16), y)
    assert logits.shape == (4, 3, 16, 16) and mu.shape == (4, 8)
    assert {"dec.0.weight", "dec.1.running_mean", "dec.3.weight"} <= set(CVAE(image_size=16).state_dict())  # as before
    with pytest.raises(ValueError, match="conv, residual"):
        CVAE(decoder="unet")
    x, lab = _toy(size=16)
    cfg = GeneratorConfig(model="cvae", steps=3, batch_size=4, z_dim=4, decoder="residual", guide_weight=1.0)
    guide = train_classifier(x, lab, 2, ClassifierConfig(steps=2), CPU)
    res = train_generator(x, lab, 2, cfg, CPU, state_path=tmp_path / "g.state.pt", guide=guide)
    assert res.arch["decoder"] == "residual" and "guide_ce" in res.history[-1]
    g = define_model("cvae", **res.arch)
    g.load_state_dict(res.generator.state_dict())
    a = synthesize(res.generator, {0: 3, 1: 3}, seed=5, device=CPU)
    b = synthesize(g, {0: 3, 1: 3}, seed=5, device=CPU)
    c = synthesize(g, {0: 3, 1: 3}, seed=6, device=CPU)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)  # deterministic by seed
    assert "decoder" not in train_generator(x, lab, 2, GeneratorConfig(steps=1, batch_size=4, z_dim=4), CPU).arch


def test_config_decoder_temperature_guide_fraction():
    assert Config(decoder="residual").generator_config().decoder == "residual"
    assert Config(guide_fraction=0.25).generator_config().guide_fraction == 0.25
    with pytest.raises(ValueError, match="cvae and vaegan only"):
        Config(model="cgan", decoder="residual")
    with pytest.raises(ValueError, match="decoder must be one of"):
        Config(decoder="unet")
    for bad in ({"temperature": 0}, {"temperature": 3}, {"guide_fraction": 0}):
        with pytest.raises(ValueError):
            Config(**bad)


def test_temperature_pulls_samples_towards_the_prior_mean():
    torch.manual_seed(0)
    g = define_model("cgan", channels=1, num_classes=2, image_size=8, z_dim=16).eval()
    y = torch.tensor([0, 1] * 20)
    centre = g(torch.zeros(len(y), 16), F.one_hot(y, 2).float())
    full = (generate(g, y, seed=1, device=CPU) - centre).abs().mean()
    low = (generate(g, y, seed=1, device=CPU, temperature=0.3) - centre).abs().mean()
    assert low < full


def test_run_writes_residual_generator_that_loads(tmp_path):
    cfg = Config(model="cvae", decoder="residual", temperature=0.8, steps=4, batch_size=8, per_class=1,
                 image_size=12, eval_steps=3, interpolate=False)
    run(cfg, DIGITS / "train", tmp_path / "out", CPU)
    tensors, meta = weights.load_weights(tmp_path / "out" / "generator.safetensors")
    assert meta["config"]["decoder"] == "residual"
    define_model("cvae", **meta["config"]).load_state_dict(tensors)


def test_cli_decoder_and_temperature(tmp_path, cli):
    out = tmp_path / "out"
    result = cli("augment", DIGITS / "train", out, "--decoder", "conv", "--temperature", "0.7", "--steps", 3,
                 "--batch-size", 8, "--per-class", 1, "--image-size", 12, "--eval-steps", 3, "--no-interpolate")
    assert result.exit_code == 0, result.output
    _, meta = weights.load_weights(out / "generator.safetensors")
    assert "decoder" not in meta["config"] and meta["training"]["decoder"] == "conv"
    bad = cli("augment", DIGITS / "train", tmp_path / "o2", "--model", "cgan", "--decoder", "residual")
    assert bad.exit_code == 2 and "vaegan only" in bad.output
    bad = cli("augment", DIGITS / "train", tmp_path / "o3", "--semigan-steps", 10)  # no --unlabeled/--eval
    assert bad.exit_code == 2 and "semigan_steps" in bad.output and "Traceback" not in bad.output


# ---------------------------------------------------------------- arm g: the semi-supervised GAN


def test_semigan_unsupervised_loss_is_the_real_fake_log_likelihood():
    from genapps.losses import semigan_unsupervised_loss

    big, small = torch.full((4, 3), 20.0), torch.full((4, 3), -20.0)
    assert semigan_unsupervised_loss(big, small) < 1e-6  # D(real) -> 1, D(fake) -> 0: nothing to learn
    assert semigan_unsupervised_loss(small, big) > 30  # the reverse: large
    logits_r, logits_f = torch.randn(5, 3), torch.randn(6, 3)
    d_r = logits_r.exp().sum(1) / (logits_r.exp().sum(1) + 1)
    d_f = logits_f.exp().sum(1) / (logits_f.exp().sum(1) + 1)
    direct = -(d_r.log().mean() + (1 - d_f).log().mean())
    assert torch.allclose(semigan_unsupervised_loss(logits_r, logits_f), direct, atol=1e-5)


def test_semigan_classifier_learns_from_few_labels_and_the_pool():
    from genapps.tasks.augment.training import train_semigan_classifier

    x, y = _toy(2, size=8)  # 2 labeled images per class
    x_unl, _ = _toy(40, size=8, seed=1)
    xt, yt = _toy(50, size=8, seed=2)
    net = train_semigan_classifier(x, y, x_unl, 2, ClassifierConfig(steps=60, lr=3e-4, seed=0), CPU,
                                   unlabeled_batch=16)
    assert not net.training
    assert (net(xt).argmax(1) == yt).float().mean() > 0.9


def test_arm_g_needs_the_unlabeled_images_and_joins_the_proof_and_its_verdict():
    x, y = _toy(4, size=8)
    x_unl, _ = _toy(20, size=8, seed=1)
    xt, yt = _toy(10, size=8, seed=2)
    with pytest.raises(ValueError, match="arm g needs"):
        run_arm("g", (x, y), None, (xt, yt), 2, 0, 5, CPU)
    out = evaluate_arms((x, y), (x, y), (xt, yt), 2, CPU, seeds=2, steps=5, pool=(x_unl, torch.zeros(len(x_unl)).long()),
                        unlabeled=x_unl, semigan_steps=5)
    assert set(out["arms"]) == set("abcdefg")
    assert "arm g vs e" in out["verdict"]
    assert ARMS["g"][1]  # counted among the generative arms
    with pytest.raises(ValueError, match="semigan_steps"):
        Config(semigan_steps=10)  # without unlabeled and eval
