"""Device and precision: one place that turns --device into a torch.device and says how models run on it.

`Runtime` is the one device/precision helper: automatic mixed precision (bf16/fp16 on CUDA; bf16
on CPU too, where it is native), channels_last for convolutions on CUDA, pinned host memory and
non-blocking copies, optional torch.compile, and the fp16 gradient scaler. The CLI sets it for a
command (`genapps train --precision bf16 --compile sr ...`) with `using`; the training loop reads
it with `current`. On CPU everything falls back to plain fp32 eager execution unless asked
(bf16 autocast on CPU is allowed; fp16 on CPU becomes fp32 with a warning).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


def select_device(spec: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:N' are checked to exist."""
    from genapps.distributed import local_device

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return local_device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return local_device(device)  # under torchrun, `cuda` is this process's GPU (cuda:LOCAL_RANK)


def autocast(device: torch.device, precision: str = "fp32"):
    """Inference's mixed precision context: fp16/bf16 only on CUDA (on CPU, callers cast bf16 models
    themselves; fp16 there is slow and crash-prone). The Runtime's autocast on CUDA, else none."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use fp32, fp16 or bf16")
    return Runtime(torch.device(device), precision if torch.device(device).type == "cuda" else "fp32").autocast()


@dataclass(frozen=True)
class Runtime:
    """How models run: device, autocast precision, memory format, compilation."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 trains with a gradient scaler)
    compile: bool = False  # torch.compile the trained networks
    channels_last: bool | None = None  # None: on CUDA only (where cuDNN prefers NHWC)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use {', '.join(PRECISIONS)}")

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None (fp32; fp16 on CPU)."""
        if self.precision == "bf16":
            return torch.bfloat16
        if self.precision == "fp16" and self.cuda:
            return torch.float16
        return None

    def autocast(self):
        """Mixed-precision context for forward passes and losses (a no-op in fp32)."""
        dtype = self.amp_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 on CUDA (bf16 and fp32 need none: the scaler is then disabled)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    @property
    def memory_format(self) -> torch.memory_format | None:
        """channels_last on CUDA (or when asked), contiguous when refused, None: leave it as it is."""
        last = self.cuda or None if self.channels_last is None else self.channels_last
        return None if last is None else torch.channels_last if last else torch.contiguous_format

    def module(self, net: nn.Module) -> nn.Module:
        """`net` on the device in the runtime's memory format (parameters stay fp32: autocast casts)."""
        fmt = self.memory_format
        return net.to(self.device) if fmt is None else net.to(self.device, memory_format=fmt)

    def compiled(self, net: nn.Module) -> nn.Module:
        """torch.compile(net) when asked, else `net`. The compiled module shares `net`'s parameters,
        so checkpoints and EMA keep using `net`."""
        return torch.compile(net) if self.compile else net

    def to(self, batch: Any) -> Any:
        """Move a batch (tensors, or tuples/lists/dicts of them) to the device: from pinned memory
        with non_blocking copies on CUDA; 4-D tensors in the runtime's memory format."""
        if isinstance(batch, torch.Tensor):
            fmt = {"memory_format": self.memory_format} if batch.dim() == 4 and self.memory_format else {}
            if batch.device == self.device:
                return batch.contiguous(**fmt) if fmt else batch
            if self.cuda and batch.device.type == "cpu":
                batch = batch.pin_memory()
            return batch.to(self.device, non_blocking=self.cuda, **fmt)
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.to(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.to(v) for k, v in batch.items()}
        return batch


def runtime(device: torch.device | str = "cpu", precision: str = "fp32", compile: bool = False,
            channels_last: bool | None = None) -> Runtime:
    """A checked Runtime: fp16 on CPU falls back to fp32 with a warning; --compile needs a compiler."""
    device = torch.device(device)
    if precision == "fp16" and device.type != "cuda":
        log.warning("fp16 runs on CUDA only; using fp32 on %s (bf16 works on CPU)", device)
        precision = "fp32"
    return Runtime(device, precision, compile, channels_last)


_stack: list[dict] = []


@contextlib.contextmanager
def using(**options) -> Iterator[None]:
    """Within the block, `current(device)` applies these options (precision, compile, channels_last)."""
    _stack.append({k: v for k, v in options.items() if v is not None})
    try:
        yield
    finally:
        _stack.pop()


def current(device: torch.device | str = "cpu") -> Runtime:
    """The runtime for `device` with the options of the innermost `using` block (defaults outside)."""
    options = _stack[-1] if _stack else {}
    return runtime(device, **options)
