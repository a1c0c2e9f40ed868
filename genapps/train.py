"""The one training loop of genapps: a reconstruction step (L1/VAE) or a GAN step, for every task.

A task describes its training as a `TrainSpec`: the generator (and optionally a discriminator),
a batch source, how the generator runs on a batch, and its losses. `fit` does the rest:
optimisers, cosine learning rate, EMA of the generator, divergence checks, periodic validation,
atomic checkpoints and resume, and progress logs with an ETA.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from genapps import io

log = logging.getLogger(__name__)

Losses = tuple[torch.Tensor, dict[str, float]]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    lr: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup: int = 0
    cosine: bool = True  # cosine decay of both learning rates to 1% over `steps`
    linear_from: int = 0  # > 0: constant rate until this step, then linear decay to 0 at `steps` (pix2pix); overrides cosine
    ema: float = 0.999  # decay of the generator's EMA copy; 0 disables it
    grad_clip: float = 0.0  # max grad norm of each network; 0 disables it
    log_every: int = 100
    val_every: int = 0  # 0: validate only at the end (when a validate function is given)
    ckpt_every: int = 500
    seed: int = 0


@dataclass
class TrainSpec:
    """What a task hands to `fit`.

    forward(g, batch) -> out; g_loss(batch, out, d) -> (loss, logs);
    d_loss(d, batch, out.detach()) -> (loss, logs), only for GANs.
    validate(g_ema) -> {metric: value}, evaluated in eval mode under no_grad.
    select_by: a validation metric (higher is better); with EMA on, the final generator is
    whichever of the EMA and the raw weights scores higher on it (EMA lags on short runs).
    """

    generator: nn.Module
    next_batch: Callable[[], Any]
    forward: Callable[[nn.Module, Any], Any]
    g_loss: Callable[[Any, Any, nn.Module | None], Losses]
    discriminator: nn.Module | None = None
    d_loss: Callable[[nn.Module, Any, Any], Losses] | None = None
    validate: Callable[[nn.Module], dict[str, float]] | None = None
    select_by: str | None = None


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf, or the discriminator collapsed; the message says at which step."""


@dataclass
class TrainResult:
    generator: nn.Module  # the EMA copy when EMA is on (unless select_by chose the raw weights)
    history: list[dict] = field(default_factory=list)
    validation: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # training time over all resumed runs


def _detach(out):
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, (tuple, list)):
        return type(out)(_detach(o) for o in out)
    return out


def _check_finite(step: int, loss: torch.Tensor, what: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"step {step}: {what} loss is {loss.item()}; lower the learning rate "
                               f"or resume from the last checkpoint")


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if cfg.warmup and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.linear_from:
        return 1.0 - max(0, step - cfg.linear_from) / max(1, cfg.steps - cfg.linear_from + 1)
    if not cfg.cosine:
        return 1.0
    t = min(1.0, step / max(1, cfg.steps))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor, net: nn.Module, clip: float) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()


@torch.no_grad()
def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p, 1 - decay)
    for e, b in zip(ema.buffers(), net.buffers()):
        e.copy_(b)


@torch.no_grad()
def _validate(spec: TrainSpec, g: nn.Module) -> dict[str, float]:
    was_training = g.training
    g.eval()
    try:
        return spec.validate(g) if spec.validate else {}
    finally:
        g.train(was_training)


def fit(spec: TrainSpec, cfg: TrainConfig, state_path: str | Path | None = None, resume: bool = True) -> TrainResult:
    """Train `spec` for cfg.steps steps; resume from `state_path` when it exists and `resume` is set."""
    torch.manual_seed(cfg.seed)
    g, d = spec.generator, spec.discriminator
    opt_g = torch.optim.AdamW(g.parameters(), cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    opt_d = torch.optim.AdamW(d.parameters(), cfg.lr_d, betas=cfg.betas) if d is not None else None
    ema = copy.deepcopy(g).requires_grad_(False) if cfg.ema else None
    history: list[dict] = []
    start_step, seconds_before = 0, 0.0
    state_path = Path(state_path) if state_path else None
    if state_path and resume and state_path.exists():
        state = io.load_torch(state_path)
        g.load_state_dict(state["g"])
        opt_g.load_state_dict(state["opt_g"])
        if d is not None:
            d.load_state_dict(state["d"])
            opt_d.load_state_dict(state["opt_d"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_step, history = state["step"], list(state.get("history", []))
        seconds_before = float(state.get("seconds", 0.0))
        torch.set_rng_state(state["rng"])
        log.info("resumed from %s at step %d", state_path, start_step)

    def save(step: int) -> None:
        if not state_path:
            return
        state = {"step": step, "g": g.state_dict(), "opt_g": opt_g.state_dict(), "history": history,
                 "rng": torch.get_rng_state(), "config": asdict(cfg),
                 "seconds": seconds_before + time.perf_counter() - t0}
        if d is not None:
            state |= {"d": d.state_dict(), "opt_d": opt_d.state_dict()}
        if ema is not None:
            state["ema"] = ema.state_dict()
        io.save_state(state_path, state)

    g.train()
    if d is not None:
        d.train()
    t0, running = time.perf_counter(), {}
    for step in range(start_step, cfg.steps):
        factor = _lr_factor(step, cfg)
        for group in opt_g.param_groups:
            group["lr"] = cfg.lr * factor
        batch = spec.next_batch()
        out = spec.forward(g, batch)
        logs: dict[str, float] = {}
        if d is not None:
            for group in opt_d.param_groups:
                group["lr"] = cfg.lr_d * factor
            d.requires_grad_(True)
            loss_d, logs_d = spec.d_loss(d, batch, _detach(out))
            _check_finite(step, loss_d, "discriminator")
            _update(opt_d, loss_d, d, cfg.grad_clip)
            d.requires_grad_(False)  # G's step must not fill D's grads
            logs |= logs_d
        loss_g, logs_g = spec.g_loss(batch, out, d)
        _check_finite(step, loss_g, "generator")
        _update(opt_g, loss_g, g, cfg.grad_clip)
        if ema is not None:
            _ema_update(ema, g, cfg.ema if step >= cfg.warmup else 0.0)
        for k, v in (logs | logs_g).items():
            running[k] = running.get(k, 0.0) + float(v)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            n = done - (history[-1]["step"] if history else start_step)
            entry = {"step": done, "lr": cfg.lr * factor} | {k: v / max(1, n) for k, v in running.items()}
            if cfg.val_every and done % cfg.val_every == 0 and done != cfg.steps:
                entry |= _validate(spec, ema or g)
            history.append(entry)
            running = {}
            rate = (done - start_step) / (time.perf_counter() - t0)
            eta = (cfg.steps - done) / rate if rate else 0
            log.info("step %d/%d  %s  (%.1f steps/s, ETA %s)", done, cfg.steps,
                     "  ".join(f"{k}={v:.4g}" for k, v in entry.items() if k != "step"),
                     rate, time.strftime("%H:%M:%S", time.gmtime(eta)))
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            save(done)
    final, validation = ema or g, _validate(spec, ema or g)
    if ema is not None and spec.select_by:
        raw = _validate(spec, g)
        log.info("final %s: EMA %.4f, raw %.4f", spec.select_by, validation[spec.select_by], raw[spec.select_by])
        if raw[spec.select_by] > validation[spec.select_by]:
            final, validation = g, raw
        validation = validation | {"weights": "ema" if final is ema else "raw"}
    result = TrainResult(final, history, validation, seconds_before + time.perf_counter() - t0)
    if result.validation:
        log.info("validation: %s", "  ".join(f"{k}={v}" for k, v in result.validation.items()))
    return result
