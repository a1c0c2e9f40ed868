"""The one training loop of genapps: a reconstruction step (L1/VAE) or a GAN step, for every task.

A task describes its training as a `TrainSpec`: the generator (and optionally a discriminator),
a batch source, how the generator runs on a batch, and its losses. `fit` does the rest:
optimisers, cosine learning rate, EMA of the generator, divergence checks, periodic validation,
atomic checkpoints and resume, and progress logs with an ETA.

A resume only continues a training of the same setup: the state carries `TrainSpec.meta` (what
the run is trained on and its architecture) and a mismatch is a one-line ValueError naming what
differs. A SIGTERM/SIGINT during `fit` saves the state at the end of the current step and raises
KeyboardInterrupt, so no more than one step's work is lost.

Several processes (`torchrun --nproc_per_node N -m genapps train ...`): `fit` joins torchrun's
process group (NCCL on CUDA, gloo on CPU) and trains data-parallel, with DistributedDataParallel's
arithmetic: every rank draws its own batches (the global RNG is seeded with seed + rank;
make_batch's generators with the seed, the rank and the step), after each backward the gradients are
averaged over the ranks (torch.distributed.all_reduce, bucketed, before clipping and the optimiser
step), and buffers (BatchNorm statistics) follow rank 0's, so the networks stay identical on every
rank and the global batch is the per-rank batch x N (logged; learning rates are not scaled). Rank 0
alone validates, logs, saves the state; the other ranks end `fit` with NotMainRank (the CLI exits 0
on it), so only rank 0 writes weights and cards; the first `fit` of a process is the data-parallel
one (distributed.leave: a later training of the same command, e.g. augment's classifiers, runs on
rank 0 alone). A state resumes on any number of ranks.
(The DistributedDataParallel module wrapper itself is not used: tasks' forward functions call
submodules and methods, e.g. CycleGAN's G_A/G_B or the pluralistic encoder, which its forward
hook would not see, and GAN steps switch the discriminator's requires_grad, which its reducer
does not allow.) `genapps train --precision
bf16|fp16 --compile` run the steps under autocast (fp16 with a gradient scaler) and torch.compile.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import multiprocessing
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.utils.data
from torch import nn

from genapps import device as devices
from genapps import distributed, io
from genapps.weights import shape_mismatch

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
    batch_workers: int = 1  # background processes making TrainSpec.make_batch's batches (0: made in this one)

    def __post_init__(self):
        rules = {"steps": (self.steps >= 1, ">= 1"), "lr": (self.lr > 0, "> 0"), "lr_d": (self.lr_d > 0, "> 0"),
                 "weight_decay": (self.weight_decay >= 0, ">= 0"), "warmup": (self.warmup >= 0, ">= 0"),
                 "linear_from": (self.linear_from >= 0, ">= 0"), "ema": (0 <= self.ema < 1, "in [0, 1)"),
                 "grad_clip": (self.grad_clip >= 0, ">= 0"), "log_every": (self.log_every >= 1, ">= 1"),
                 "batch_workers": (self.batch_workers >= 0, ">= 0"),
                 "val_every": (self.val_every >= 0, ">= 0"), "ckpt_every": (self.ckpt_every >= 1, ">= 1"),
                 "betas": (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "two values in [0, 1)")}
        for name, (ok, rule) in rules.items():
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)}")


@dataclass
class TrainSpec:
    """What a task hands to `fit`.

    next_batch() -> batch, drawn from torch's global random stream; or, when making a batch costs
    CPU time (inpainting's classical pre-fill), make_batch(generator) -> batch, a function of the
    generator alone, which fit seeds from the seed, the rank and the step: the batches are then made
    ahead in TrainConfig.batch_workers background processes while the networks train, and a
    resumed run gets the batches an uninterrupted one would (next_batch may then be None).
    forward(g, batch) -> out; g_loss(batch, out, d) -> (loss, logs);
    d_loss(d, batch, out.detach()) -> (loss, logs), only for GANs.
    validate(g_ema) -> {metric: value}, evaluated in eval mode under no_grad.
    select_by: a validation metric (higher is better); with EMA on, the final generator is
    whichever of the EMA and the raw weights scores higher on it (EMA lags on short runs).
    meta: what this run is trained on and how it is built, as JSON-able values, e.g.
    {"arch": "srresnet", "config": {...}, "data": data_fingerprint(files, root)}. It is saved in
    the state; resuming a state whose meta differs (in any key either side has) raises a one-line
    ValueError naming the keys and suggesting --no-resume/--overwrite, instead of continuing a
    model of another setup or data. Put in it everything a resumed run must share (architecture,
    class names, image size, data), not what may change on a resume (steps, logging).
    """

    generator: nn.Module
    next_batch: Callable[[], Any] | None
    forward: Callable[[nn.Module, Any], Any]
    g_loss: Callable[[Any, Any, nn.Module | None], Losses]
    discriminator: nn.Module | None = None
    d_loss: Callable[[nn.Module, Any, Any], Losses] | None = None
    validate: Callable[[nn.Module], dict[str, float]] | None = None
    select_by: str | None = None
    meta: dict = field(default_factory=dict)
    make_batch: Callable[[torch.Generator], Any] | None = None

    def __post_init__(self):
        if (self.next_batch is None) == (self.make_batch is None):
            raise ValueError("a TrainSpec needs exactly one of next_batch and make_batch")


class _MadeBatches(torch.utils.data.Dataset):
    """Step -> (TrainSpec.make_batch(a generator seeded from the seed, the rank and the step), the
    CPU seconds it took: a worker's time, which the training's own process_time does not see)."""

    def __init__(self, make: Callable[[torch.Generator], Any], seed: int):
        self.make, self.seed = make, seed

    def __getitem__(self, step: int):
        c0 = time.process_time()
        batch = self.make(torch.Generator().manual_seed(self.seed + 1_000_003 * step))
        return batch, time.process_time() - c0


def _leave_stopping_to_the_trainer(_worker: int) -> None:
    """A batch worker ignores SIGINT/SIGTERM (Ctrl-C reaches the whole process group): the training
    process saves its state after the step (_StopSignals), and its workers end with it."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _made_batches(make: Callable[[torch.Generator], Any], seed: int, start: int, steps: int, workers: int):
    """An iterator of (batch, CPU seconds of a worker) for steps start .. steps - 1: made ahead (2 per
    worker) in `workers` forked processes (torch's DataLoader), or here (0 s: this process's own time
    counts them) when workers is 0 or fork is unavailable. The loader's own seed comes from a private
    generator: torch's global stream stays the task's."""
    made = _MadeBatches(make, seed)
    if not workers or "fork" not in multiprocessing.get_all_start_methods():
        return ((made[step][0], 0.0) for step in range(start, steps))
    return iter(torch.utils.data.DataLoader(
        made, batch_size=None, sampler=range(start, steps), num_workers=workers, prefetch_factor=2,
        multiprocessing_context="fork", worker_init_fn=_leave_stopping_to_the_trainer,
        generator=torch.Generator().manual_seed(seed)))


def data_fingerprint(files, root: str | Path) -> str:
    """'N files, sha256 <12 hex>' of the sorted relative paths and byte sizes of `files` under `root`:
    the data's identity for TrainSpec.meta (a renamed, added, removed or resized file changes it)."""
    root = Path(root)
    lines = sorted(f"{Path(f).relative_to(root).as_posix()}\t{Path(f).stat().st_size}" for f in files)
    return f"{len(lines)} files, sha256 {hashlib.sha256(chr(10).join(lines).encode()).hexdigest()[:12]}"


def _jsonable(obj):
    """Meta as it reads back from a state (tuples become lists): comparable on resume."""
    return json.loads(json.dumps(obj, default=str))


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _flat(meta: dict, prefix: str = "") -> dict:
    """{"config": {"channels": 8}} -> {"config.channels": 8}: a difference names the inner key."""
    out = {}
    for k, v in meta.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v}
    return out


START_OVER = "run with --no-resume (train) or --overwrite (augment) to start over"


def check_meta(saved: dict, current: dict, where: str | Path) -> None:
    """ValueError (one line) naming every key whose value differs between a state's meta and this run's."""
    saved, current = _flat(saved), _flat(_jsonable(current))
    diff = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diff:
        what = ", ".join(f"{k} {_short(saved.get(k))} -> {_short(current.get(k))}" for k in diff)
        raise ValueError(f"{where} was trained with another setup ({what}); {START_OVER}")


def _read_state(path: str | Path):
    try:
        return io.load_torch(path)
    except ValueError as e:
        raise ValueError(f"{e}; {START_OVER}") from None


def check_resume(state_path: str | Path | None, meta: dict, resume: bool = True) -> None:
    """The resume check of `fit`, done early: a task calls it before long work that precedes `fit`
    (pseudo-labelling, data preparation) so that a mismatch fails at once."""
    if state_path and resume and Path(state_path).exists():
        state = _read_state(state_path)
        if isinstance(state, dict) and state.get("meta") is not None:
            check_meta(state["meta"], meta, state_path)


class NotMainRank(Exception):
    """Raised by `fit` on torchrun ranks other than 0 once training is done: rank 0 alone goes on
    to save the weights and cards (the CLI exits 0 on it)."""


class _Sync:
    """Data-parallel arithmetic over torchrun's process group; every method is a no-op in one process."""

    def __init__(self, device: torch.device):
        self.on = distributed.init_process_group(device)
        self.rank, self.world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if self.on else (0, 1)
        self.device = device
        if self.rank:  # rank 0 logs the training
            logging.getLogger("genapps").setLevel(logging.WARNING)

    def _buckets(self, tensors: list[torch.Tensor]):
        by_dtype: dict = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        return by_dtype.values()

    def broadcast(self, *nets: nn.Module | None) -> None:
        """Rank 0's parameters (and buffers) on every rank."""
        if self.on:
            for net in filter(None, nets):
                self._broadcast([t.data for t in [*net.parameters(), *net.buffers()]])

    def buffers(self, *nets: nn.Module | None) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank, as DDP's broadcast_buffers."""
        if self.on:
            self._broadcast([b.data for net in filter(None, nets) for b in net.buffers()])

    def _broadcast(self, tensors: list[torch.Tensor]) -> None:
        from torch._utils import _unflatten_dense_tensors

        tensors = [t for t in tensors if t.numel() <= 1 or 0 not in t.stride()]  # not expanded constants
        for group in self._buckets(tensors):
            flat = torch.cat([t.reshape(-1) for t in group])  # a copy (flatten may view a single tensor)
            torch.distributed.broadcast(flat, 0)
            for t, value in zip(group, _unflatten_dense_tensors(flat, group)):
                t.copy_(value)

    def grads(self, net: nn.Module) -> None:
        """Average the gradients of `net` over the ranks (a parameter no rank used keeps grad None)."""
        if not self.on:
            return
        from torch._utils import _unflatten_dense_tensors

        params = [p for p in net.parameters() if p.requires_grad]
        used = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        torch.distributed.all_reduce(used)
        grads = []
        for p, u in zip(params, used.tolist()):
            if u > 0:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        for group in self._buckets(grads):
            flat = torch.cat([g.reshape(-1) for g in group])
            torch.distributed.all_reduce(flat)
            flat /= self.world
            for g, value in zip(group, _unflatten_dense_tensors(flat, group)):
                g.copy_(value)

    def total(self, loss: torch.Tensor) -> torch.Tensor:
        """The sum of a loss over the ranks (non-finite when it is on any rank)."""
        if not self.on:
            return loss
        total = loss.detach().float().clone()
        torch.distributed.all_reduce(total)
        return total

    def any(self, flag: bool) -> bool:
        if not self.on:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(t)
        return bool(t.item() > 0)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Logged values averaged over the ranks that logged them (a rank may log a key others do not)."""
        if not self.on:
            return values
        every: list = [None] * self.world
        torch.distributed.all_gather_object(every, values)
        keys = list(dict.fromkeys(k for v in every for k in v))
        return {k: sum(v[k] for v in every if k in v) / sum(k in v for v in every) for k in keys}


def _batch_size(batch) -> int | None:
    """The leading size of the first tensor of a batch (a tensor, or a tuple/list/dict holding tensors)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (tuple, list)) else []
    return next((n for n in map(_batch_size, items) if n is not None), None)


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf, or the discriminator collapsed; the message says at which step."""


@dataclass
class TrainResult:
    generator: nn.Module  # the EMA copy when EMA is on (unless select_by chose the raw weights)
    history: list[dict] = field(default_factory=list)
    validation: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # training time over all resumed runs
    cpu_seconds: float = 0.0  # this process's CPU time in training, over all resumed runs (rank 0's)


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


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor, net: nn.Module, clip: float,
            sync: _Sync | None = None, scaler: torch.amp.GradScaler | None = None) -> None:
    """Backward, gradients averaged over the ranks, clip, step (fp16: through the gradient scaler)."""
    opt.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:
        scaler.unscale_(opt)
    if sync is not None:
        sync.grads(net)
    if clip:
        nn.utils.clip_grad_norm_(net.parameters(), clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
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


def _load_state(state_path: Path, spec: TrainSpec, nets: dict[str, nn.Module | None]) -> dict:
    """The state at `state_path`, checked against this run (meta, keys, shapes): ValueError otherwise."""
    state = _read_state(state_path)
    if not isinstance(state, dict):
        raise ValueError(f"{state_path}: not a training state; {START_OVER}")
    saved = state.get("meta")
    if saved is None:
        log.warning("%s has no record of what it was trained on (an older genapps); resuming unchecked", state_path)
    else:
        check_meta(saved, spec.meta, state_path)
    if nets.get("ema") is not None and "ema" not in state and "g" in state:
        state["ema"] = state["g"]  # saved without EMA: the EMA starts from the saved weights
    need = ["step", "g", "opt_g", "rng"] + [k for k, net in nets.items() if net is not None]
    need += ["opt_d"] if nets.get("d") is not None else []
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"{state_path}: the saved state lacks {', '.join(missing)} (another setup or a damaged "
                         f"file); {START_OVER}")
    for key, net in nets.items():
        problem = net is not None and shape_mismatch(net, state[key])
        if problem:
            raise ValueError(f"{state_path}: the saved '{key}' network does not fit this run's ({problem}); "
                             f"{START_OVER}")
    return state


class _StopSignals:
    """While active (main thread only), SIGTERM/SIGINT set `received` instead of killing the process;
    a second signal interrupts at once. The previous handlers come back on exit."""

    def __init__(self, active: bool):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.received: int | None = None
        self.previous: dict = {}

    def _handle(self, signum, _frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("%s received: saving the training state after this step", signal.Signals(signum).name)

    def __enter__(self):
        if self.active:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class _Fit:
    """One `fit`: the networks, their optimisers (and EMA copy), the progress counters, and the
    loop's parts in the order they run: setup (__init__), resume, begin, step, log, checkpoint,
    finish."""

    def __init__(self, spec: TrainSpec, cfg: TrainConfig, state_path: Path | None):
        self.spec, self.cfg, self.state_path = spec, cfg, state_path
        self.g, self.d = g, d = spec.generator, spec.discriminator
        where = next(g.parameters()).device
        self.sync, self.rt = _Sync(where), devices.current(where)
        torch.manual_seed(cfg.seed + self.sync.rank)  # each rank draws its own batches
        self.sync.broadcast(g, d)  # one starting point on every rank
        for net in filter(None, (g, d) if self.rt.cuda else ()):  # channels_last for cuDNN (CPU: the task's choice stands)
            self.rt.module(net)
        self.g_run, self.d_run = self.rt.compiled(g), self.rt.compiled(d) if d is not None else None
        self.scaler_g, self.scaler_d = self.rt.grad_scaler(), self.rt.grad_scaler()
        self.opt_g = torch.optim.AdamW(g.parameters(), cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.opt_d = torch.optim.AdamW(d.parameters(), cfg.lr_d, betas=cfg.betas) if d is not None else None
        self.ema = copy.deepcopy(g).requires_grad_(False) if cfg.ema else None
        self.history: list[dict] = []
        self.start_step, self.seconds_before, self.cpu_before = 0, 0.0, 0.0
        self.running, self.count = {}, 0  # sums of the logged losses since the last log entry, over `count` steps
        self.t0 = self.c0 = 0.0  # perf_counter and process_time at the first step of this run
        self.batches = None  # make_batch's batches (begin)
        self.worker_cpu = 0.0  # CPU seconds the batch workers spent on this run's batches

    def resume(self) -> None:
        """Continue from the state at `state_path` (checked by _load_state): ValueError if unusable."""
        g, d, ema, state_path = self.g, self.d, self.ema, self.state_path
        state = _load_state(state_path, self.spec, {"g": g, "d": d, "ema": ema})
        try:
            g.load_state_dict(state["g"])
            self.opt_g.load_state_dict(state["opt_g"])
            if d is not None:
                d.load_state_dict(state["d"])
                self.opt_d.load_state_dict(state["opt_d"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            torch.set_rng_state(state["rng"])
            self.start_step, self.history = int(state["step"]), list(state.get("history", []))
            self.running, self.count = dict(state.get("running", {})), int(state.get("running_steps", 0))
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{state_path}: unusable training state ({str(e).splitlines()[0] if str(e) else e!r}); "
                             f"{START_OVER}") from None
        self.seconds_before = float(state.get("seconds", 0.0))
        self.cpu_before = float(state.get("cpu_seconds", 0.0))  # (0 from states written before it was kept)
        if self.sync.rank:  # the state holds rank 0's random stream; the others start their own from here
            torch.manual_seed(self.cfg.seed + self.sync.rank + 1_000_003 * self.start_step)
        log.info("resumed from %s at step %d", state_path, self.start_step)

    def begin(self) -> None:
        self.g.train()
        if self.d is not None:
            self.d.train()
        if self.spec.make_batch is not None:
            self.batches = _made_batches(self.spec.make_batch, self.cfg.seed + 7_919 * self.sync.rank,
                                         self.start_step, self.cfg.steps, self.cfg.batch_workers)
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def step(self, step: int, factor: float) -> None:
        """One step at learning-rate `factor`: a batch, the discriminator's update (GANs), the
        generator's, rank 0's buffers, the EMA, and the running sums of the logged losses."""
        spec, cfg, sync, rt, g, d = self.spec, self.cfg, self.sync, self.rt, self.g, self.d
        for group in self.opt_g.param_groups:
            group["lr"] = cfg.lr * factor
        if self.batches is not None:
            batch, cpu = next(self.batches)
            self.worker_cpu += float(cpu)
        else:
            batch = spec.next_batch()
        batch = rt.to(batch)  # a batch made on the CPU goes pinned, non-blocking to the GPU
        if step == self.start_step and sync.world > 1:
            n = _batch_size(batch)
            log.info("data parallel over %d processes (%s): global batch = %s per rank x %d = %s; learning "
                     "rates as given", sync.world, torch.distributed.get_backend(), n, sync.world,
                     n * sync.world if n else "?")
        with rt.autocast():
            out = spec.forward(self.g_run, batch)
        logs: dict[str, float] = {}
        if d is not None:
            logs |= self._d_step(step, factor, batch, out)
        with rt.autocast():
            loss_g, logs_g = spec.g_loss(batch, out, self.d_run)
        _check_finite(step, sync.total(loss_g), "generator")
        _update(self.opt_g, loss_g, g, cfg.grad_clip, sync, self.scaler_g)
        sync.buffers(g, d)
        if self.ema is not None:
            _ema_update(self.ema, g, cfg.ema if step >= cfg.warmup else 0.0)
        for k, v in (logs | logs_g).items():
            self.running[k] = self.running.get(k, 0.0) + float(v)
        self.count += 1

    def _d_step(self, step: int, factor: float, batch, out) -> dict[str, float]:
        """The discriminator's update on the generator's detached output; its logged losses."""
        for group in self.opt_d.param_groups:
            group["lr"] = self.cfg.lr_d * factor
        self.d.requires_grad_(True)
        with self.rt.autocast():
            loss_d, logs_d = self.spec.d_loss(self.d_run, batch, _detach(out))
        _check_finite(step, self.sync.total(loss_d), "discriminator")
        _update(self.opt_d, loss_d, self.d, self.cfg.grad_clip, self.sync, self.scaler_d)
        self.d.requires_grad_(False)  # G's step must not fill D's grads
        return logs_d

    def log(self, done: int, factor: float) -> None:
        """A history entry after `done` steps: the learning rate, the mean logged losses since the
        last entry (over the ranks) and, every val_every steps, rank 0's validation; logged with an ETA."""
        cfg, sync = self.cfg, self.sync
        entry = {"step": done, "lr": cfg.lr * factor} | sync.mean({k: v / max(1, self.count)
                                                                   for k, v in self.running.items()})
        if cfg.val_every and done % cfg.val_every == 0 and done != cfg.steps and not sync.rank:
            entry |= _validate(self.spec, self.ema or self.g)
        self.history.append(entry)
        self.running, self.count = {}, 0
        rate = (done - self.start_step) / (time.perf_counter() - self.t0)
        eta = (cfg.steps - done) / rate if rate else 0
        log.info("step %d/%d  %s  (%.1f steps/s, ETA %s)", done, cfg.steps,
                 "  ".join(f"{k}={v:.4g}" for k, v in entry.items() if k != "step"),
                 rate, time.strftime("%H:%M:%S", time.gmtime(eta)))

    def checkpoint(self, done: int, stop: _StopSignals) -> None:
        """Save every ckpt_every steps and at the end; on a stop signal (on any rank: every rank
        stops at the same step) save and raise KeyboardInterrupt."""
        saved = done % self.cfg.ckpt_every == 0 or done == self.cfg.steps
        stopping = self.sync.any(stop.received is not None)
        if saved or stopping:
            self.save(done)
        if stopping:
            if not self.sync.rank:
                log.warning("training state saved at step %d in %s; run again to resume", done, self.state_path)
            raise KeyboardInterrupt

    def save(self, step: int) -> None:
        """The training state after `step` steps to `state_path` (atomically; rank 0 only)."""
        if not self.state_path or self.sync.rank:
            return
        g, d, ema = self.g, self.d, self.ema
        state = {"step": step, "g": g.state_dict(), "opt_g": self.opt_g.state_dict(), "history": self.history,
                 "rng": torch.get_rng_state(), "config": asdict(self.cfg), "meta": _jsonable(self.spec.meta),
                 "running": self.running, "running_steps": self.count,
                 "seconds": self.seconds_before + time.perf_counter() - self.t0,
                 "cpu_seconds": self.cpu_before + time.process_time() - self.c0 + self.worker_cpu}
        if d is not None:
            state |= {"d": d.state_dict(), "opt_d": self.opt_d.state_dict()}
        if ema is not None:
            state["ema"] = ema.state_dict()
        io.save_state(self.state_path, state)

    def finish(self) -> TrainResult:
        """Leave the process group (ranks other than 0: NotMainRank); rank 0 selects the final generator."""
        if self.sync.on:  # rank 0 validates, selects and saves, alone (as for any later training in this process)
            distributed.leave()
            if self.sync.rank:
                raise NotMainRank(f"rank {self.sync.rank}: training done; rank 0 saves the results")
        final, validation = self.select()
        return TrainResult(final, self.history, validation, self.seconds_before + time.perf_counter() - self.t0,
                           self.cpu_before + time.process_time() - self.c0 + self.worker_cpu)

    def select(self) -> tuple[nn.Module, dict]:
        """The final generator and its validation: the EMA copy (when on) unless `select_by` scores
        the raw weights higher."""
        spec, g, ema = self.spec, self.g, self.ema
        final, validation = ema or g, _validate(spec, ema or g)
        if ema is not None and spec.select_by:
            raw = _validate(spec, g)
            log.info("final %s: EMA %.4f, raw %.4f", spec.select_by, validation[spec.select_by], raw[spec.select_by])
            if raw[spec.select_by] > validation[spec.select_by]:
                final, validation = g, raw
            validation = validation | {"weights": "ema" if final is ema else "raw"}
        return final, validation


def fit(spec: TrainSpec, cfg: TrainConfig, state_path: str | Path | None = None, resume: bool = True) -> TrainResult:
    """Train `spec` for cfg.steps steps; resume from `state_path` when it exists and `resume` is set.

    With a state_path, SIGTERM/SIGINT save the state after the current step and raise KeyboardInterrupt.
    Under torchrun: data-parallel over the ranks (see the module doc); ranks other than 0 raise
    NotMainRank at the end.
    """
    run = _Fit(spec, cfg, Path(state_path) if state_path else None)
    if run.state_path and resume and run.state_path.exists():
        run.resume()
    run.begin()
    with _StopSignals(run.state_path is not None) as stop:
        for step in range(run.start_step, cfg.steps):
            factor = _lr_factor(step, cfg)
            run.step(step, factor)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                run.log(done, factor)
            run.checkpoint(done, stop)
    result = run.finish()
    if result.validation:
        log.info("validation: %s", "  ".join(f"{k}={v}" for k, v in result.validation.items()))
    return result
