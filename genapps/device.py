"""Device selection: one place that turns --device into a torch.device."""

from __future__ import annotations

import contextlib

import torch


def select_device(spec: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:N' are checked to exist."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
    return device


def autocast(device: torch.device, precision: str = "fp32"):
    """Mixed precision context: fp16/bf16 only on CUDA (fp16 on CPU is slow and crash-prone)."""
    if precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    if dtype is None:
        raise ValueError(f"unknown precision {precision!r}; use fp32, fp16 or bf16")
    return torch.autocast("cuda", dtype=dtype)
