"""augment round 2 (issue 19): the VAE-GAN (the CVAE plus an adversarial loss on its decoded prior
samples) and sampling from the class's aggregate posterior (sampling "posterior")."""

from pathlib import Path

import pytest
import torch

from genapps import io, weights
from genapps.tasks.augment.task import Config, run
from genapps.tasks.augment.models import CVAE, define_model
from genapps.tasks.augment.training import GeneratorConfig, synthesize, train_generator
from test_augment_round2 import _toy  # two classes a CNN separates at once

DIGITS = Path(__file__).resolve().parent.parent / "data" / "digits"
CPU = torch.device("cpu")


def test_vaegan_trains_a_discriminator_on_decoded_prior_samples(tmp_path):
    x, y = _toy()
    cfg = GeneratorConfig(model="vaegan", steps=4, batch_size=6, z_dim=4, adversarial_weight=1.0)
    res = train_generator(x, y, 2, cfg, CPU, state_path=tmp_path / "g.state.pt")
    last = res.history[-1]
    assert {"recon", "kl", "d", "g"} <= set(last) and all(torch.isfinite(torch.tensor(v)) for v in last.values())
    state = io.load_torch(tmp_path / "g.state.pt")
    assert "d" in state and state["meta"]["model"] == "vaegan"
    assert isinstance(res.generator, CVAE)
    g = define_model("vaegan", **res.arch)
    g.load_state_dict(res.generator.state_dict())  # the same network as the CVAE
    # the adversarial term changes the generator's training: same seed, different weights without it
    plain = train_generator(x, y, 2, GeneratorConfig(model="cvae", steps=4, batch_size=6, z_dim=4), CPU)
    assert any(not torch.equal(a, b) for a, b in zip(res.generator.state_dict().values(),
                                                     plain.generator.state_dict().values()))


def test_vaegan_state_does_not_resume_as_cvae(tmp_path):
    x, y = _toy()
    path = tmp_path / "g.state.pt"
    train_generator(x, y, 2, GeneratorConfig(model="vaegan", steps=2, batch_size=4, z_dim=4, adversarial_weight=1.0),
                    CPU, state_path=path)
    with pytest.raises(ValueError, match="vaegan"):
        train_generator(x, y, 2, GeneratorConfig(model="cvae", steps=4, batch_size=4, z_dim=4), CPU, state_path=path)


def test_config_vaegan_and_sampling_options():
    assert Config(model="vaegan").generator_config().adversarial_weight == 10.0
    assert Config(model="vaegan", adversarial_weight=2).generator_config().adversarial_weight == 2
    assert Config(model="vaegan").generator_config().decoder == "residual"
    assert Config().generator_config().adversarial_weight == 0.0
    for bad, match in (({"adversarial_weight": 1.0}, "vaegan"), ({"model": "vaegan", "adversarial_weight": 0}, "> 0"),
                       ({"model": "cgan", "sampling": "posterior"}, "needs an encoder"),
                       ({"sampling": "aggregate"}, "prior, mixed, posterior")):
        with pytest.raises(ValueError, match=match):
            Config(**bad)


def test_posterior_sampling_encodes_a_source_image_of_the_class_for_every_sample(monkeypatch):
    torch.manual_seed(0)
    g = CVAE(channels=1, num_classes=2, image_size=8, z_dim=4).eval()
    x, y = _toy()
    seen = []
    encode = g.encode

    def spy(xs, ys):
        seen.append((xs.clone(), ys.argmax(1)))
        return encode(xs, ys)

    monkeypatch.setattr(g, "encode", spy)
    syn = synthesize(g, {0: 5, 1: 7}, seed=3, device=CPU, source=(x, y), posterior_fraction=1.0)
    assert sorted(syn.y.tolist()) == [0] * 5 + [1] * 7
    xs = torch.cat([s[0] for s in seen])
    labels = torch.cat([s[1] for s in seen])
    assert len(xs) == 12  # every sample, not half
    for img, lab in zip(xs, labels):  # each encoded image is a training image of the sample's class
        assert any(torch.equal(img, x[i]) and int(y[i]) == int(lab) for i in range(len(x)))


def test_run_vaegan_with_posterior_sampling_from_the_cli(tmp_path, cli):
    out = tmp_path / "out"
    result = cli("augment", DIGITS / "train", out, "--model", "vaegan", "--adversarial-weight", "2",
                 "--sampling", "posterior", "--steps", 3, "--batch-size", 8, "--per-class", 2, "--image-size", 12,
                 "--eval-steps", 3, "--no-interpolate")
    assert result.exit_code == 0, result.output
    tensors, meta = weights.load_weights(out / "generator.safetensors")
    assert meta["arch"] == "vaegan"
    define_model(meta["arch"], **meta["config"]).load_state_dict(tensors)
    bad = cli("augment", DIGITS / "train", tmp_path / "o2", "--model", "cgan", "--sampling", "posterior")
    assert bad.exit_code != 0 and "needs an encoder" in bad.output


def test_run_records_the_sampling_mode(tmp_path):
    cfg = Config(model="cvae", sampling="posterior", steps=3, batch_size=8, per_class=2, image_size=12,
                 eval_steps=3, interpolate=False)
    result = run(cfg, DIGITS / "train", tmp_path / "out", CPU)
    assert result.summary["sampling"] == "posterior"
    assert result.summary["training"]["discriminator"] is None
    vg = run(Config(model="vaegan", steps=3, batch_size=8, per_class=1, image_size=12, eval_steps=3,
                    interpolate=False), DIGITS / "train", tmp_path / "out2", CPU)
    # auto: posterior variants for the encoder models since round 3 (issue 31; the cGAN samples the prior)
    assert vg.summary["sampling"] == "posterior" and "longest_d_win_streak" in vg.summary["training"]["discriminator"]
