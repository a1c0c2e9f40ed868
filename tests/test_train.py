"""The shared training loop: reconstruction and GAN steps, EMA, divergence, checkpoints and resume."""

import pytest
import torch
from torch import nn

from genapps import io
from genapps.train import TrainConfig, TrainingDiverged, TrainSpec, fit


def regression_spec(target=3.0):
    g = nn.Linear(1, 1)
    x = torch.ones(8, 1)
    return TrainSpec(g, lambda: x, lambda net, b: net(b),
                     lambda b, out, d: (((out - target) ** 2).mean(), {"mse": 0.0}))


def test_reconstruction_step_learns_and_ema_follows():
    res = fit(regression_spec(), TrainConfig(steps=300, lr=0.05, ema=0.9, log_every=100, cosine=False))
    assert abs(float(res.generator(torch.ones(1, 1))) - 3.0) < 0.05
    assert [h["step"] for h in res.history] == [100, 200, 300]


def test_nan_loss_is_reported_with_the_step():
    spec = regression_spec()
    spec.g_loss = lambda b, out, d: (out.sum() * float("nan"), {})
    with pytest.raises(TrainingDiverged, match="step 0: generator loss is nan"):
        fit(spec, TrainConfig(steps=5))


def test_gan_step_updates_both_and_resumes(tmp_path):
    torch.manual_seed(0)
    g, d = nn.Linear(2, 2), nn.Linear(2, 1)
    d_before = [p.detach().clone() for p in d.parameters()]
    real = torch.randn(16, 2) + 2
    spec = TrainSpec(
        g, lambda: real, lambda net, b: net(torch.randn_like(b)),
        g_loss=lambda b, fake, disc: (nn.functional.softplus(-disc(fake)).mean(), {}),
        discriminator=d,
        d_loss=lambda disc, b, fake: (nn.functional.softplus(-disc(b)).mean()
                                      + nn.functional.softplus(disc(fake)).mean(), {"d": 0.0}),
    )
    state = tmp_path / "s.pt"
    first = fit(spec, TrainConfig(steps=4, ckpt_every=2, log_every=2), state_path=state)
    assert any(not torch.equal(a, b) for a, b in zip(d_before, d.parameters()))
    saved = io.load_torch(state)
    assert 0 < saved["cpu_seconds"] <= first.cpu_seconds and 0 < saved["seconds"] <= first.seconds
    again = fit(spec, TrainConfig(steps=6, ckpt_every=2, log_every=2), state_path=state)
    assert [h["step"] for h in again.history] == [2, 4, 6]  # continued from step 4
    # wall and CPU time count every run of a resumed training, not the last one only
    assert again.seconds > saved["seconds"] and again.cpu_seconds > saved["cpu_seconds"]


def test_select_by_keeps_the_better_of_ema_and_raw():
    spec = regression_spec()
    spec.validate = lambda net: {"score": -abs(float(net(torch.ones(1, 1))) - 3.0)}
    spec.select_by = "score"
    res = fit(spec, TrainConfig(steps=60, lr=0.05, ema=0.999, cosine=False, log_every=60))
    assert res.validation["weights"] == "raw"  # a 0.999 EMA lags far behind after 60 steps
    assert res.validation["score"] > -0.5


def made_batch_spec(seen: list):
    """A spec whose batches come from make_batch: (8, 1) draws of its generator, plus the maker's pid."""
    def make_batch(gen):
        import os
        import time

        c0 = time.process_time()
        while time.process_time() - c0 < 0.05:  # a batch that costs CPU (as inpainting's pre-fill)
            pass
        return torch.rand(8, 1, generator=gen), torch.tensor(os.getpid())

    def forward(net, batch):
        seen.append(batch)
        return net(batch[0])
    return TrainSpec(nn.Linear(1, 1), None, forward, lambda b, out, d: (((out - 3.0) ** 2).mean(), {}),
                     make_batch=make_batch)


def test_made_batches_come_from_a_worker_and_resume_to_the_same_stream(tmp_path):
    import os

    ahead, inline = [], []
    result = fit(made_batch_spec(ahead), TrainConfig(steps=6, batch_workers=1, log_every=3))
    after_ahead = torch.get_rng_state()
    assert result.cpu_seconds >= 6 * 0.05  # the worker's CPU counts (the card's CPU-hours)
    state = tmp_path / "s.pt"
    fit(made_batch_spec(inline), TrainConfig(steps=3, batch_workers=0, ckpt_every=3, log_every=3), state_path=state)
    fit(made_batch_spec(inline), TrainConfig(steps=6, batch_workers=0, ckpt_every=3, log_every=3), state_path=state)
    assert len(ahead) == len(inline) == 6
    # made in a background process, or here; each step its own draw; a resumed run gets the same batches
    assert all(int(b[1]) != os.getpid() for b in ahead) and all(int(b[1]) == os.getpid() for b in inline)
    assert not torch.equal(ahead[0][0], ahead[1][0])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(ahead, inline))
    # the loader's workers take no draw from torch's global stream (the task's, e.g. a VAE's samples)
    fit(regression_spec(), TrainConfig(steps=6, log_every=3))  # no loader at all
    assert torch.equal(after_ahead, torch.get_rng_state())


def test_a_spec_takes_next_batch_or_make_batch():
    with pytest.raises(ValueError, match="exactly one of next_batch and make_batch"):
        TrainSpec(nn.Linear(1, 1), None, lambda net, b: net(b), lambda b, out, d: (out.sum(), {}))
    with pytest.raises(ValueError, match="exactly one"):
        TrainSpec(nn.Linear(1, 1), lambda: torch.ones(1, 1), lambda net, b: net(b), lambda b, out, d: (out.sum(), {}),
                  make_batch=lambda gen: torch.ones(1, 1))
    with pytest.raises(ValueError, match="batch_workers must be >= 0"):
        TrainConfig(batch_workers=-1)
