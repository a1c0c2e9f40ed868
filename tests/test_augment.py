"""augment task: seed vectors, models, filter, metrics, and run() on the embedded digits."""

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genapps import io, weights
from genapps.losses import elbo_loss
from genapps.nn.discriminators import ProjectionDiscriminator
from genapps.tasks import make_config
from genapps.tasks.augment.task import Config, run
from genapps.tasks.augment.data import load_imagefolder
from genapps.tasks.augment.evaluate import frechet_distance, precision_recall, verdict
from genapps.tasks.augment.models import (
    CVAE,
    Classifier,
    Generator,
    define_model,
    reparameterize,
)
from genapps.tasks.augment.training import synthesize

DIGITS = Path(__file__).resolve().parent.parent / "data" / "digits"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- the seed's vectors


@pytest.mark.parametrize("mu, sigma, eps, z", [
    ([0.5, -0.2], [0.1, 0.3], [0.5, -1.0], [0.55, -0.5]),
    ([0.2, 0.7, -0.3], [0.4, 0.1, 0.5], [1.0, -0.5, 0.2], [0.6, 0.65, -0.2]),
])
def test_reparameterize_seed_vectors(mu, sigma, eps, z):
    mu = torch.tensor(mu, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(sigma, dtype=torch.float64, requires_grad=True)
    eps = torch.tensor(eps, dtype=torch.float64, requires_grad=True)
    out = reparameterize(mu, sigma, eps)
    torch.testing.assert_close(out, torch.tensor(z, dtype=torch.float64))
    out.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(sigma.grad, eps.detach())
    assert eps.grad is None


# ---------------------------------------------------------------- models


def test_cvae_shapes_and_elbo():
    torch.manual_seed(0)
    m = CVAE(channels=1, num_classes=10, image_size=28, z_dim=8)
    x = torch.rand(4, 1, 28, 28)
    y = F.one_hot(torch.tensor([0, 1, 2, 3]), 10).float()
    logits, mu, logvar = m(x, y)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (4, 8)
    loss, rec, kl = elbo_loss(logits, x, mu, logvar, beta=1.0)
    assert torch.isfinite(loss) and rec > 0 and kl >= 0
    torch.testing.assert_close(loss, rec + kl)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    out = m.generate(torch.randn(3, 8), y[:3])
    assert out.shape == (3, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    _, mse, _ = elbo_loss(logits, x, mu, logvar, recon="mse")
    assert mse > 0
    with pytest.raises(ValueError, match="bce, mse"):
        elbo_loss(logits, x, mu, logvar, recon="l1")


def test_gan_shapes_and_hinge_losses():
    from genapps import losses

    torch.manual_seed(0)
    g, d = Generator(channels=3, num_classes=5, image_size=16, z_dim=8), ProjectionDiscriminator(3, 5, 16)
    y = F.one_hot(torch.tensor([0, 4]), 5).float()
    fake = g(torch.randn(2, 8), y)
    assert fake.shape == (2, 3, 16, 16) and 0 <= fake.min() and fake.max() <= 1
    logits = d(fake, y)
    assert logits.shape == (2,)
    ld = losses.hinge_d_loss(d(torch.rand(2, 3, 16, 16), y), logits.detach())
    lg = losses.hinge_g_loss(logits)
    assert torch.isfinite(ld) and ld >= 0 and torch.isfinite(lg)
    soft = g(torch.randn(1, 8), torch.full((1, 5), 0.2))  # soft labels interpolate
    assert soft.shape == (1, 3, 16, 16)


def test_classifier_and_factory():
    c = define_model("classifier", channels=1, num_classes=3, image_size=12)
    assert isinstance(c, Classifier)
    x = torch.rand(5, 1, 12, 12)
    assert c(x).shape == (5, 3) and c.features(x).shape == (5, 128)
    with pytest.raises(ValueError, match="valid: cvae, vaegan, cgan"):
        define_model("vqvae")


# ---------------------------------------------------------------- filter and metrics


class _AlwaysZero(torch.nn.Module):
    """A 'classifier' that puts everything in class 0 (p = 1 / (1 + exp(-margin)))."""

    def __init__(self, margin: float = 20.0):
        super().__init__()
        self.margin = margin

    def forward(self, x):
        return torch.tensor([[self.margin, 0.0]]).expand(len(x), -1)


def test_filter_drops_confident_other_class_samples():
    g = CVAE(channels=1, num_classes=2, image_size=8, z_dim=4).eval()
    syn = synthesize(g, {0: 5, 1: 3}, seed=0, device=CPU, filter_net=_AlwaysZero(), filter_confidence=0.9,
                     max_rounds=2)
    assert (syn.y == 0).sum() == 5 and (syn.y == 1).sum() == 0
    assert syn.dropped[0] == 0 and syn.dropped[1] > 0
    assert torch.all(syn.score[syn.y == 0] > 0.99)
    kept = synthesize(g, {0: 2, 1: 2}, seed=0, device=CPU, filter_net=_AlwaysZero(2.0), filter_confidence=0.9)
    assert len(kept.y) == 4 and sum(kept.dropped.values()) == 0  # p = 0.88 < 0.9: not confident enough


def test_frechet_distance_and_precision_recall():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 4, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(a, a)) < 1e-6
    shifted = a + torch.tensor([3.0, 0, 0, 0], dtype=torch.float64)
    assert frechet_distance(a, shifted) == pytest.approx(9.0, rel=1e-3)
    assert precision_recall(a, a) == (1.0, 1.0)
    p, r = precision_recall(a, a + 100)
    assert p == 0.0 and r == 0.0
    sentence = verdict({"a": {"mean": 70.0, "std": 1.0}, "c": {"mean": 80.0, "std": 1.0},
                        "b": {"mean": 90.0, "std": 1.0}, "d": {"mean": 89.0, "std": 1.0}})
    assert sentence.startswith("synthesis did not help: the best generative arm d") and "-1.0 points" in sentence
    assert "arm c vs a +10.0 (> 2 std)" in sentence and "arm d vs b -1.0" in sentence


def test_read_idx(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in arr.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())
    np.testing.assert_array_equal(io.read_idx(path), arr)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x09\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="idx"):
        io.read_idx(tmp_path / "bad")


# ---------------------------------------------------------------- config and data


def test_config_validation():
    with pytest.raises(ValueError, match="not both"):
        Config(per_class=3, ratio=1.0)
    with pytest.raises(ValueError, match="cvae, vaegan, cgan"):
        Config(model="diffusion")
    with pytest.raises(ValueError, match="multiple of 4"):
        Config(image_size=30)
    assert Config(channels="3").channels == 3
    cfg = make_config(Config, {"model": "cgan", "ratio": 2, "channels": 1, "eval": "test"}, base=DIGITS)
    assert cfg.ratio == 2.0 and cfg.eval == str((DIGITS / "test").resolve())
    with pytest.raises(ValueError, match="eval: not found"):
        make_config(Config, {"eval": "no-such-folder"}, base=DIGITS)


def test_data_without_class_folders_is_a_clear_error(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next(DIGITS.glob("train/3/*.png")), flat / "a.png")
    with pytest.raises(ValueError, match="not an ImageFolder.*one subfolder per class"):
        run(Config(steps=2), flat, tmp_path / "out", CPU)


def test_load_imagefolder_resizes_and_converts(tmp_path):
    data = load_imagefolder(DIGITS / "train", 16, 3)
    assert data.x.shape == (100, 3, 16, 16) and data.classes == [str(k) for k in range(10)]
    assert 0 <= data.x.min() and data.x.max() <= 1
    with pytest.raises(ValueError, match="not among the training classes"):
        load_imagefolder(DIGITS / "train", 16, 1, classes=["0", "1"])


# ---------------------------------------------------------------- run() on the embedded digits


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("augment") / "out"
    cfg = Config(model="cvae", steps=30, per_class=3, eval=str(DIGITS / "test"), eval_seeds=3, eval_steps=15,
                 image_size=16)
    return cfg, out, run(cfg, DIGITS / "train", out, CPU)


def test_run_writes_imagefolder_manifest_generator(cvae_run):
    cfg, out, result = cvae_run
    for k in range(10):
        files = sorted((out / str(k)).glob("*.png"))
        assert len(files) == 3
        assert io.read_image(files[0]).color.shape == (1, 16, 16)
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 30 and set(rows[0]) == {"class", "file", "seed", "model", "filter_score"}
    assert all((out / r["file"]).is_file() and r["model"] == "cvae" for r in rows)
    tensors, meta = weights.load_weights(out / "generator.safetensors")
    assert meta["task"] == "augment" and meta["arch"] == "cvae" and meta["classes"] == [str(k) for k in range(10)]
    g = define_model("cvae", **meta["config"])
    g.load_state_dict(tensors)
    assert len(result.records) == 30 and all(r.status == "ok" for r in result.records)
    assert Path(result.records[0].input).parent.name == "0" and "filter_confidence" in result.records[0].metrics


def test_run_summary_figures_and_eval(cvae_run):
    cfg, out, result = cvae_run
    s = result.summary
    assert s["synthetic_per_class"] == {str(k): 3 for k in range(10)} and s["synthetic_total"] == 30
    assert s["filter"]["enabled"] and isinstance(s["filter"]["dropped"], int)
    assert {"recon", "kl"} <= set(s["training"]["final"])
    arms = s["eval"]["arms"]
    assert set(arms) == {"a", "b", "c", "d"}
    assert all(len(a["runs"]) == 3 and 0 <= a["mean"] <= 100 and a["std"] >= 0 for a in arms.values())
    assert s["synthesis"].startswith("synthesis ") and "arm c vs a" in s["synthesis"]
    rvs = s["eval"]["real_vs_synthetic"]
    assert rvs["frechet_distance"] >= 0 and 0 <= rvs["precision"] <= 1 and 0 <= rvs["recall"] <= 1
    captions = [c for c, _ in result.figures]
    assert len(captions) == 2 and any("interpolation" in c for c in captions)
    for _, path in result.figures:
        assert io.read_image(path).color.shape[1] > 16
    assert result.config["model"] == "cvae"


def test_run_resumes(cvae_run, tmp_path):
    cfg, out, first = cvae_run
    state = io.load_torch(out / "generator.state.pt")
    assert state["step"] == 30
    again = run(Config(model="cvae", steps=30, per_class=3, image_size=16, eval_steps=15), DIGITS / "train", out, CPU)
    assert all(r.status == "skipped" for r in again.records) and len(again.records) == 30
    assert again.summary["training"]["final"] == first.summary["training"]["final"]  # nothing retrained


def test_cgan_run_with_unlabeled_pool(tmp_path):
    cfg = Config(model="cgan", steps=8, batch_size=8, ratio=0.5, image_size=12, unlabeled=str(DIGITS / "test"),
                 eval_steps=8, pseudo_threshold=0.1, interpolate=True)
    result = run(cfg, DIGITS / "train", tmp_path / "out", CPU)
    s = result.summary
    assert s["synthetic_total"] == 50 and s["unlabeled"]["images"] == 300
    assert s["unlabeled"]["pseudo_labeled"] > 0 and s["training"]["images"] > 100
    assert {"d", "g"} <= set(s["training"]["final"]) and "longest_d_win_streak" in s["training"]["discriminator"]
    assert (tmp_path / "out" / "interpolation.png").is_file()


def test_posterior_sampling_makes_variants_of_source_images():
    torch.manual_seed(0)
    g = CVAE(channels=1, num_classes=2, image_size=8, z_dim=4).eval()
    src = (torch.rand(6, 1, 8, 8), torch.tensor([0, 0, 0, 1, 1, 1]))
    a = synthesize(g, {0: 4, 1: 4}, seed=1, device=CPU, source=src, posterior_fraction=1.0)
    b = synthesize(g, {0: 4, 1: 4}, seed=1, device=CPU)
    assert a.x.shape == b.x.shape == (8, 1, 8, 8) and a.y.tolist() == [0] * 4 + [1] * 4
    assert not torch.equal(a.x, b.x)
    with pytest.raises(ValueError, match="needs an encoder"):
        Config(model="cgan", sampling="mixed")
