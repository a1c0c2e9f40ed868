"""Running an image model on one image: the one home of what every task's inference shares.

- Size requirements: a model declares once what input sizes it takes, as attributes
  `input_multiple` (H and W must be multiples of it; default 1) and, when it has one,
  `input_minimum` (smallest H and W in px; default 0). `size_requirements` is the one reader
  (after spandrel's SizeRequirements and IOPaint's pad-to-modulo).
- Receptive radius: a model may declare `receptive_radius`, the input px of context beyond
  which its output changes by less than the tiling promise of 2/255 (exact for a plain conv
  stack, measured for deep ones); the tiled runner hides at least that much context at every
  tile edge (`receptive_radius` is the reader, `margin` the reach of a tile).
- `pad_to_multiple`: reflect padding (mirrored context, never zeros) to the requirement, with
  replicate for what a reflection cannot reach (images smaller than the padding).
- `infer`: pad, run whole or in overlapping tiles (batched, cross-faded, at any `scale`), crop
  back, and refuse a NaN/inf output (`NonFiniteOutput`: damaged weights or an overflow).
- `auto_tile`: the tile size for `infer` within a memory budget (`memory_profile` measures a
  model's activation memory per input px once, on a small probe; `choose_tile` picks the largest tile).
- `dihedral_tta`: the mean over the 8 flips and transposes.
- `round_trip`: one image's planes through a task's step: colour as the model's channels
  (grey runs as RGB and comes back grey), alpha through the step, bicubic or unchanged, bit depth kept.

Tensors are float in [0, 1] unless a caller's `forward` maps them (translate's [-1, 1] models).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from genapps import io
from genapps.batch import progress as batch_progress
from genapps.device import autocast

log = logging.getLogger(__name__)

TILE_PROGRESS = 2  # forward passes over one image's tiles from which `infer` shows their progress...
TILE_DELAY = 3.0  # ...once they have taken this many seconds (a bar on a terminal, log lines elsewhere)

LUMA = (0.299, 0.587, 0.114)  # colour -> grey for a model that reads one channel (ITU-R BT.601)


def progress(chunks, total: int, desc: str):
    """The progress over one image's tile passes: nothing for TILE_DELAY s, then genapps.batch's."""
    return batch_progress(chunks, total=total, desc=desc, delay=TILE_DELAY, unit="pass")


@dataclass(frozen=True)
class SizeRequirements:
    """Input sizes a model takes: H and W multiples of `multiple` and at least `minimum` px."""

    multiple: int = 1
    minimum: int = 0

    def __post_init__(self):
        if self.multiple < 1 or self.minimum < 0:
            raise ValueError(f"size requirements need multiple >= 1 and minimum >= 0, got {self}")

    def fit(self, size: int) -> int:
        """The smallest allowed size >= `size`."""
        return max(size + -size % self.multiple, self.minimum + -self.minimum % self.multiple)


def size_requirements(model: nn.Module) -> SizeRequirements:
    """What `model` declares (`input_multiple`, `input_minimum`); none declared: any size."""
    return SizeRequirements(int(getattr(model, "input_multiple", 1)), int(getattr(model, "input_minimum", 0)))


def pad_to_multiple(x: torch.Tensor, req: SizeRequirements, context: int = 0,
                    centre: bool = False) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, C, h, w) -> (B, C, H, W) with H and W allowed by `req`, and the (top, left) of the image in it.

    `context` px of mirrored context go on every side (at most the smaller side - 1); what the
    requirement adds more goes at the bottom/right, or is split over both ends with `centre`.
    Reflect where the image is large enough, replicate for the rest.
    """
    h, w = x.shape[-2:]
    context = max(0, min(context, h - 1, w - 1))
    pads = []  # left, right, top, bottom (F.pad's order)
    for n in (w, h):
        extra = req.fit(n + 2 * context) - n - 2 * context
        first = extra // 2 if centre else 0
        pads += [context + first, context + extra - first]
    reflect = [min(p, (w if i < 2 else h) - 1) for i, p in enumerate(pads)]
    x = F.pad(x, reflect, mode="reflect") if any(reflect) else x
    rest = [p - r for p, r in zip(pads, reflect)]
    return (F.pad(x, rest, mode="replicate") if any(rest) else x), (pads[2], pads[0])


def _ramp(length: int, start_fade: int, end_fade: int, hide: int = 0) -> torch.Tensor:
    """1-D blending weights of one tile: 0 over the outer part of a faded side's margin, then a
    linear rise over the rest of the margin and as far into the core, 1 between.

    `start_fade`/`end_fade` are the overlap margins (0 at the image border: nothing to blend).
    The zero part is half the margin, or `hide` px when more (at most the margin): it hides the
    pixels that saw the tile's own zero padding, so every weighted pixel has that much real
    context. Neighbours' ramps mirror each other; `infer` divides by the summed weights.
    """
    w = torch.ones(length)
    for fade, flip in ((start_fade, False), (end_fade, True)):
        if fade:
            zeros = max(fade // 2, min(fade, hide))
            rise = fade - zeros + min(zeros, fade - zeros)  # = fade when zeros is half the margin
            side = torch.cat([torch.zeros(zeros), torch.arange(1, rise + 1) / (rise + 1)])[:length]
            side = side.flip(0) if flip else side
            if flip:
                w[length - len(side):] = torch.minimum(w[length - len(side):], side)
            else:
                w[:len(side)] = torch.minimum(w[:len(side)], side)
    return w


def _spans(size: int, tile: int, overlap: int, req: SizeRequirements) -> list[tuple[int, int, int, int]]:
    """(start, end, start_fade, end_fade) of the tiles along one axis of `size` px (an allowed size;
    `tile` a multiple of the model's).

    The fewest tiles of at most `tile` + 2 `overlap` px (a core plus its margins; `overlap` rounded
    up to the model's multiple) that cover the axis, all of one length (the shortest that keeps
    margins of at least `overlap` px between neighbours): one shape per image, so passes can be
    batched and reuse the same memory, and no sliver of a last tile. The tiles sit on the model's
    multiple (a strided network sees every tile as it sees the whole image), evenly spread;
    neighbours meet in the middle of their overlap. The fades are the margins beyond the core (0
    at the image's borders).
    """
    m = req.multiple
    overlap = -(-overlap // m) * m  # margins on the multiple, as the tiles
    if size <= tile + 2 * overlap:
        return [(0, size, 0, 0)]
    count = max(2, -(-(size - 2 * overlap) // tile))
    length = -(-(size + 2 * (count - 1) * overlap) // count)
    while True:
        length = min(size, req.fit(-(-length // m) * m))
        starts = [i * (size - length) // (count - 1) // m * m for i in range(count - 1)] + [size - length]
        cuts = [0] + [(a + length + b) // 2 for a, b in zip(starts, starts[1:])] + [size]
        spans = [(a, a + length, cuts[i] - a, a + length - cuts[i + 1]) for i, a in enumerate(starts)]
        inner_margins = [f for _, _, f, _ in spans[1:]] + [f for *_, f in spans[:-1]]
        if length == size or min(inner_margins) >= overlap:
            return spans
        length += m


def receptive_radius(model: nn.Module) -> int:
    """What `model` declares as `receptive_radius` (input px of context its output needs to stay
    within 2/255 of the whole-image result); 0 when it declares nothing."""
    return max(0, int(getattr(model, "receptive_radius", 0) or 0))


def margin(overlap: int, radius: int) -> int:
    """Input px a tile reaches beyond its core: `overlap` (half of it hidden, half blended), or
    the model's `radius` hidden plus half the overlap blended when the radius is larger."""
    return overlap if radius <= overlap // 2 else radius + overlap - overlap // 2


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_freed_memory(device: torch.device) -> None:
    """Give the memory freed by tile passes back to the system (glibc malloc_trim; CPU only): a
    model that keeps freed memory (genapps.nn.winograd) would otherwise grow its heap pass after
    pass with the fragments of differently shaped tiles (realesrgan-x4plus: 7.3 GB peak RSS in
    a 4 GB budget). Called when the tile shape changes: passes of one shape reuse the kept blocks
    (trimming after every pass page-faulted them in again: 1/4 of the time in system time)."""
    libc = _libc() if device.type == "cpu" else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


class NonFiniteOutput(ValueError):
    """A model's output holds NaN or inf (damaged weights, or an overflow in fp16/bf16)."""


def check_finite(y: torch.Tensor, name: str | None = None, precision: str = "fp32") -> torch.Tensor:
    """`y` unchanged, or NonFiniteOutput naming the model when any value is NaN or inf: such a
    value would be written as black or white pixels and the file reported as done."""
    finite = torch.isfinite(y)
    if bool(finite.all()):
        return y
    bad = int((~finite).sum())
    why = ("an overflow in reduced precision (run without --half/--bf16)" if precision != "fp32"
           else "damaged weights (NaN or inf in the file) or an overflow")
    who = f"model {name}" if name else "the model"
    raise NonFiniteOutput(f"{who} gave NaN or infinite values ({bad} of {y.numel()} output values): {why}; "
                          f"nothing written")


def _forward(forward: Callable, x: torch.Tensor, precision: str) -> torch.Tensor:
    if precision == "bf16" and x.device.type == "cpu":  # the model was cast to bf16; no autocast
        with torch.inference_mode():
            return forward(x.to(torch.bfloat16)).float()
    with torch.inference_mode(), autocast(x.device, precision):
        return forward(x).float()


def infer(model: nn.Module, x: torch.Tensor, scale: int = 1, tile: int = 0, overlap: int = 16,
          batch_size: int = 4, precision: str = "fp32", context: int = 0, centre: bool = False,
          forward: Callable | None = None, name: str | None = None, tta: bool = False) -> torch.Tensor:
    """(B, C, h, w) -> (B, C', h*scale, w*scale): `model` run on `x` padded to its size
    requirements (pad_to_multiple's `context` and `centre`), cropped back; not clamped.

    With `tile` > 0 the padded image runs in tiles (`batch_size` tiles per forward pass; tile
    and margins rounded to the model's multiple) cross-faded by linear ramps. A tile reaches
    `margin(overlap, radius)` px beyond its core, radius = the model's declared
    receptive_radius: every pixel that counts has at least max(overlap / 2, radius) px of real
    context, so the tiles equal the whole-image result when the model's receptive radius is
    below that (exactly for a plain conv stack; within 2/255 for the declared, measured radius
    of deep models). `forward` (default: the model) is what runs, e.g. a wrapper that maps
    [0, 1] to the model's range. `precision` "bf16" on CPU expects a model already cast to
    bf16; fp16/bf16 autocast on CUDA. A NaN/inf output raises NonFiniteOutput naming the
    model (`name`, e.g. its file). `tta`: every pass is the mean over the 8 flips and transposes
    of its input (dihedral_tta; BasicSR's self-ensemble, the ncnn programs' -x): 8x the time,
    the same memory per pass; a padded tile's sides are both multiples of the model's, so its
    transposes suit the model too.
    """
    forward = model if forward is None else forward
    if tta:
        forward = functools.partial(dihedral_tta, forward)
    req = size_requirements(model)
    radius = receptive_radius(model)
    reach = margin(overlap, radius)
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    xp, (top, left) = pad_to_multiple(x, req, context, centre)
    H, W = xp.shape[-2:]
    if not tile or (H <= tile + 2 * reach and W <= tile + 2 * reach):
        out = _forward(forward, xp, precision)
        release_freed_memory(x.device)
    else:
        tile = max(req.multiple, tile - tile % req.multiple)
        jobs = [(ys, xs) for ys in _spans(H, tile, reach, req) for xs in _spans(W, tile, reach, req)]
        by_shape: dict[tuple[int, int], list] = {}
        for ys, xs in jobs:
            by_shape.setdefault((ys[1] - ys[0], xs[1] - xs[0]), []).append((ys, xs))
        step = max(1, batch_size // b)
        chunks = [group[i:i + step] for group in by_shape.values() for i in range(0, len(group), step)]
        # the heap is trimmed when the next tiles differ in shape (and after the last pass): passes of one
        # tile shape reuse the memory the previous one freed (a last, smaller batch fits in it)
        shapes = [(c[0][0][1] - c[0][0][0], c[0][1][1] - c[0][1][0]) for c in chunks]
        trim_after = {i for i in range(len(chunks)) if i + 1 == len(chunks) or shapes[i + 1] != shapes[i]}
        if len(chunks) >= TILE_PROGRESS:  # a bar (terminal) or lines (pipes, logs) once the image takes TILE_DELAY s
            chunks = progress(chunks, total=len(chunks), desc=f"{len(jobs)} tiles")
        out, weight = None, torch.zeros(1, 1, H * scale, W * scale, device=x.device)
        for i, chunk in enumerate(chunks):
            inp = torch.cat([xp[..., y0:y1, x0:x1] for (y0, y1, _, _), (x0, x1, _, _) in chunk])
            res = _forward(forward, inp, precision).split(b)
            if out is None:
                out = torch.zeros(b, res[0].shape[1], H * scale, W * scale, device=x.device)
            for ((y0, y1, ry, fy), (x0, x1, rx, fx)), r in zip(chunk, res):
                wy = _ramp((y1 - y0) * scale, ry * scale, fy * scale, radius * scale).to(x.device)
                wx = _ramp((x1 - x0) * scale, rx * scale, fx * scale, radius * scale).to(x.device)
                wt = wy[:, None] * wx[None, :]
                out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] += r * wt
                weight[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] += wt
            del res
            if i in trim_after:
                release_freed_memory(x.device)
        out = out / weight
    out = out[..., top * scale:(top + h) * scale, left * scale:(left + w) * scale]
    return check_finite(out, name, precision)


# ---------------------------------------------------------------- tile size by a memory budget
#
# A model's activation memory grows with its input's pixels (convolutions keep per-pixel feature
# maps), so it is measured once per model on a small probe and extrapolated: the peak of the tensor
# storages alive at once during one forward pass (every torch function's outputs, freed with their
# last reference), per input px. What that count cannot see (convolution workspaces, the
# allocator's slack) made the real peak RSS 1.0-1.5x the tracked peak for plain models: HIDDEN
# covers it. A model whose memory torch cannot see (genapps.zoo.on_engine: the ncnn engine's) names a
# `memory_twin` that is measured instead. A model may declare its own factor as `hidden_memory`:
# genapps.nn.winograd.accelerate's models keep freed memory (glibc) and run NNPACK with its own
# workspaces, 2.4-4.4x the tracked peak (benchmarks/ncnn_graph.md, "Memory-safe tiling per family"). A model that pads its input itself
# (an ncnn family's context) needs memory for more px than it is given: two probes (PROBE and
# PROBE + PROBE_STEP px) fit peak = per_px * (side + 2 * context)^2, and every pass is counted on its
# padded size. On CUDA the allocator's own peak is exact.

PROBE = 32  # px: side of the probe input (rounded up to the model's requirement)
PROBE_STEP = 16  # px: the second probe is this much larger
HIDDEN = 2.0  # real peak / tracked tensor bytes (measured 1.1-1.6, see above), with margin
TILE_GRID = 16  # auto tiles are multiples of this (and of the model's multiple): stable choices
MIN_TILE = 64  # px: below this, tiles would be mostly overlap; a budget that small runs them anyway
GB = 1e9


class _LiveTensorBytes(TorchFunctionMode):
    """While active: `peak`, the largest total of tensor storages alive at once that torch
    functions returned (a TorchFunctionMode: what a composite function allocates inside is not
    seen; a TorchDispatchMode would see it but costs seconds of imports on first use)."""

    def __init__(self):
        super().__init__()
        self.live: dict[tuple[int, int], tuple[StorageWeakRef, int]] = {}
        self.now = self.peak = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.now -= self.live.pop(key)[1]
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = (storage.data_ptr(), storage.nbytes())
                if storage.nbytes() and key not in self.live:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)
        return out


def process_memory(device: torch.device) -> int:
    """Bytes in use now: the process's resident set (CPU; Linux /proc, else its peak so far) or
    the CUDA allocator's allocated bytes."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def machine_memory() -> int:
    """Physical RAM in bytes, or the cgroup's limit when lower (containers); 0 when unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 0
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = int(open(limit).read().strip())
        except (OSError, ValueError):
            continue
        if 0 < value < (total or value + 1):
            total = value
    return total


DEFAULT_SHARE, DEFAULT_CAP = 0.25, int(4 * GB)  # of RAM; at most 4 GB (a 16-GB laptop's quarter)


def default_max_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, why) the process may use when --max-memory is not given: a quarter of RAM, at most
    4 GB, so one run leaves most of an ordinary machine to everything else; on CUDA what is
    allocated now plus half of the free GPU memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return torch.cuda.memory_allocated(device) + free // 2, "half the free GPU memory"
    total = machine_memory()
    if not total:
        return DEFAULT_CAP, "4 GB (RAM size unknown)"
    return min(int(total * DEFAULT_SHARE), DEFAULT_CAP), \
        f"a quarter of {total / GB:.0f} GB RAM, at most {DEFAULT_CAP / GB:.1f} GB"


@dataclass
class MemoryProfile:
    """What one forward pass of a model costs: `per_px` bytes per input px (padded; measured on
    the probe, times HIDDEN on CPU), `baseline` the process's memory when measured (the model,
    its transformed weights, the runtime), `out_channels` of its output."""

    per_px: float
    baseline: int
    out_channels: int
    logged: bool = False
    context: int = 0  # px the model pads on every side itself: per_px counts the padded px


_PROFILES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(device, precision, C): profile}


def memory_profile(model: nn.Module, channels: int, device: torch.device, precision: str = "fp32",
                   forward: Callable | None = None) -> MemoryProfile:
    """The model's MemoryProfile, measured on two probe inputs of `channels` (PROBE and PROBE +
    PROBE_STEP px) on the first call (the random streams are left as they were: seeded dropout
    stays reproducible)."""
    twin = getattr(model, "memory_twin", model)  # a model whose own allocations torch cannot see names one it can
    forward = twin if forward is None else forward
    cache = _PROFILES.setdefault(model, {})
    key = (str(device), precision, channels)
    if key not in cache:
        req = size_requirements(model)
        sides = (req.fit(PROBE), req.fit(req.fit(PROBE) + PROBE_STEP))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            peaks, baseline = [], process_memory(device)
            for side in sides:
                probe = torch.rand(1, channels, side, side, device=device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                    out = _forward(forward, probe, precision)
                    peak, hidden = torch.cuda.max_memory_allocated(device) - baseline, 1.0
                else:
                    with _LiveTensorBytes() as live:
                        out = _forward(forward, probe, precision)
                    peak, hidden = live.peak, float(getattr(model, "hidden_memory", getattr(twin, "hidden_memory", HIDDEN)))
                peaks.append(max(1, peak))
        # sqrt(peak) = k * (side + c): k^2 bytes per px of the input padded by c / 2 px on every side
        k = (math.sqrt(peaks[1]) - math.sqrt(peaks[0])) / (sides[1] - sides[0])
        c = math.sqrt(peaks[1]) / k - sides[1] if k > 0 else 0.0
        if c <= 0:  # no context: the larger probe's bytes per px (a fixed part only overestimates)
            k, c = math.sqrt(peaks[1]) / sides[1], 0.0
        cache[key] = MemoryProfile(hidden * k * k, baseline, int(out.shape[1]), context=math.ceil(c / 2))
    return cache[key]


@dataclass(frozen=True)
class TilePlan:
    """What `choose_tile` picked: `tile` px (0: the whole image), `per_pass` tiles per forward pass,
    and whether it `fits` the budget (False: even MIN_TILE px tiles need more)."""

    tile: int
    per_pass: int
    fits: bool = True


def choose_tile(profile: MemoryProfile, size: tuple[int, int], scale: int, overlap: int, batch_size: int,
                budget: int, multiple: int = 1) -> TilePlan:
    """The tiles for a padded (H, W) input within `budget` bytes of process memory: the whole
    image when it fits, else the largest tile (a multiple of TILE_GRID and of `multiple`, at
    least MIN_TILE) whose pass fits beside the whole-image output buffers.

    Whole: the pass plus the output and two copies (crop, clamp, resize). Tiled: each pass of
    (tile + 2 * overlap + the model's rounding)^2 px, plus the tiled runner's accumulators (the
    output sum and its weights) and the same copies: 4 output-sized float buffers.
    """
    h, w = size
    free = budget - profile.baseline
    out_bytes = 4 * profile.out_channels * h * w * scale ** 2
    padded = 2 * profile.context  # what the model adds to every pass's input itself
    if profile.per_px * (h + padded) * (w + padded) + 2 * out_bytes <= free:
        return TilePlan(0, batch_size)
    free -= 4 * out_bytes
    grid = math.lcm(TILE_GRID, multiple)
    margin = 2 * overlap + 2 * (multiple - 1) + padded
    side = math.isqrt(int(free / profile.per_px)) if free > 0 else 0
    tile = max((side - margin) // grid * grid, -(-MIN_TILE // grid) * grid)
    per_pass = int(free // (profile.per_px * (tile + margin) ** 2)) if free > 0 else 0
    return TilePlan(tile, max(1, min(batch_size, per_pass)), fits=per_pass >= 1)


def auto_tile(model: nn.Module, x: torch.Tensor, scale: int = 1, overlap: int = 16, batch_size: int = 4,
              precision: str = "fp32", context: int = 0, max_memory: float | None = None,
              forward: Callable | None = None, label: str = "the model") -> tuple[int, int]:
    """(tile, tiles per pass) for `infer` on (B, C, h, w) `x` within `max_memory` GB of process
    memory (None: default_max_memory; 0: no limit, the whole image): the whole image when it
    fits, else the largest tile that does. The first choice of tiles is one log line."""
    if max_memory == 0:
        return 0, batch_size
    profile = memory_profile(model, x.shape[1], x.device, precision, forward)
    budget, why = (int(max_memory * GB), "--max-memory") if max_memory else default_max_memory(x.device)
    req = size_requirements(model)
    h, w = x.shape[-2:]
    pad = max(0, min(context, h - 1, w - 1))
    size = (req.fit(h + 2 * pad), req.fit(w + 2 * pad))
    b = x.shape[0]  # B images go through every pass together: B times the memory, per tile too
    scaled = MemoryProfile(profile.per_px * b, profile.baseline, profile.out_channels * b, context=profile.context)
    plan = choose_tile(scaled, size, scale, overlap, max(1, batch_size // b), budget, req.multiple)
    if plan.tile and not profile.logged:
        profile.logged = True
        per_px = f"{profile.per_px / 1e3:.0f} kB" if profile.per_px >= 1e4 else f"{profile.per_px:.0f} bytes"
        log.info("tiles of %d px for a %.2f-MP image: %s needs ~%s per input px and the budget is "
                 "%.1f GB (%s; %.1f GB already in use); -t sets the tile, --max-memory the budget",
                 plan.tile, h * w / 1e6, label, per_px, budget / GB, why, profile.baseline / GB)
        if not plan.fits:
            log.warning("the memory budget (%.2f GB) is too small for %s even in %d-px tiles; running them anyway",
                        budget / GB, label, plan.tile)
    return plan.tile, plan.per_pass * b


def dihedral(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """One of the 8 flips/transposes of (..., H, W) (k in 0..7), or its inverse."""
    flips = ((), (-1,), (-2,), (-1, -2))[k % 4]
    if inverse:
        x = x.transpose(-1, -2) if k >= 4 else x
        return x.flip(flips) if flips else x
    x = x.flip(flips) if flips else x
    return x.transpose(-1, -2) if k >= 4 else x


def dihedral_tta(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: the mean of `forward` over the 8 flips/transposes of (B, C, H, W),
    each result mapped back (8x the network time; H and W must both suit the model)."""
    return sum(dihedral(forward(dihedral(x, k)), k, inverse=True) for k in range(8)) / 8


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, *size), bicubic with antialiasing when shrinking, clamped to [0, 1]."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def to_channels(planes: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, H, W) -> (channels, H, W): grey repeated as RGB, colour to grey by luma (BT.601)."""
    if planes.shape[0] == channels:
        return planes
    if channels == 3:
        return planes.expand(3, -1, -1)
    return (planes * torch.tensor(LUMA)[:, None, None]).sum(0, keepdim=True)


def round_trip(image: io.LoadedImage, step: Callable[[torch.Tensor], torch.Tensor], channels: int = 3,
               alpha: str = "keep") -> io.LoadedImage:
    """`image` through a task's per-image `step` ((channels, h, w) -> (C, H, W), CPU), faithfully.

    Colour is given as `channels` planes (to_channels); a grey image run as RGB comes back grey
    (the mean of the output's channels). Alpha: "model" runs it through `step` as a grey image,
    "bicubic" resizes it to the output size, "keep" passes it unchanged. The bit depth is kept.
    """
    if alpha not in ("keep", "model", "bicubic"):
        raise ValueError(f"alpha must be keep, model or bicubic, got {alpha!r}")

    def run(planes: torch.Tensor) -> torch.Tensor:
        y = step(to_channels(planes, channels))
        return y.mean(0, keepdim=True) if planes.shape[0] == 1 and channels == 3 and y.shape[0] == 3 else y

    color = run(image.color)
    kept = image.alpha
    if kept is not None and alpha == "model":
        kept = run(kept)
    elif kept is not None and alpha == "bicubic":
        kept = resize(kept[None], tuple(color.shape[-2:]))[0]
    return io.LoadedImage(color, kept, image.bit_depth)
