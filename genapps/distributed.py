"""Several processes, one job, on PyTorch's own engine: torchrun's ranks, `--shard I/N`, the process group.

Batch runs split their files by shard: a file belongs to shard `shard_of(rel, N)`, the SHA-1 of
its relative path without extension (`sub/a.png` -> `sub/a`) modulo N, so the split is
deterministic, every file lands in exactly one shard, and files whose outputs could share a name
(`a.png`, `a.jpg`) land in the same one. The shard of a process is, in this order: the one a
`sharding(...)` block sets (the CLI's `--shard I/N`), else torchrun's RANK of WORLD_SIZE, else
0 of 1. `--shard I/N` under torchrun with W processes composes: rank r works on shard I*W + r of N*W.

Training uses the process group (`init_process_group`: NCCL on CUDA, gloo on CPU) that torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) describes.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Iterator

log = logging.getLogger(__name__)

BATCH_TIMEOUT = datetime.timedelta(hours=24)  # ranks of a batch run may finish their shards far apart


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    @property
    def active(self) -> bool:
        return self.count > 1

    def owns(self, rel: str) -> bool:
        """Whether the file at relative path `rel` (posix) belongs to this shard."""
        return self.count == 1 or shard_of(rel, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_key(rel: str) -> str:
    """The relative path without extension: `sub/a.png` -> `sub/a`."""
    head, _, name = rel.replace("\\", "/").rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return f"{head}/{stem}" if head else stem


def shard_of(rel: str, count: int) -> int:
    """The shard (0..count-1) of relative path `rel`: SHA-1 of shard_key(rel), modulo count."""
    return int(hashlib.sha1(shard_key(rel).encode("utf-8")).hexdigest()[:15], 16) % count


def parse_shard(text: str) -> Shard:
    """'I/N' (0-based I) -> Shard; a one-line ValueError otherwise."""
    index, sep, count = str(text).partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N (e.g. 0/4; a Slurm array: "
                         f"--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)") from None


_alone: list[bool] = []  # set by leave(): this process goes on by itself


def env_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it (or after leave())."""
    if _alone:
        return 0, 1, 0
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK {rank} / WORLD_SIZE {world} from the environment are inconsistent")
    return rank, world, local


_override: list[Shard] = []


@contextlib.contextmanager
def sharding(shard: Shard | str | None) -> Iterator[Shard]:
    """Within the block, batch runs work on `shard` (composed with torchrun's rank, see the module doc)."""
    if isinstance(shard, str):
        shard = parse_shard(shard)
    if shard is None:
        yield current()
        return
    rank, world, _ = env_rank()
    _override.append(Shard(shard.index * world + rank, shard.count * world))
    try:
        yield _override[-1]
    finally:
        _override.pop()


@contextlib.contextmanager
def unsharded() -> Iterator[None]:
    """Within the block, batch runs see every file (the files were already selected)."""
    _override.append(Shard())
    try:
        yield
    finally:
        _override.pop()


def current() -> Shard:
    """The shard of this process (see the module doc)."""
    if _override:
        return _override[-1]
    rank, world, _ = env_rank()
    return Shard(rank, world)


# ---------------------------------------------------------------- the process group


def world() -> int:
    return env_rank()[1]


def rank() -> int:
    """This process's rank in the process group (0 without torchrun)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else env_rank()[0]


def is_main() -> bool:
    """Rank 0: the process that writes checkpoints, cards, logs, merged reports."""
    return rank() == 0


def init_process_group(device=None, timeout: datetime.timedelta | None = None) -> bool:
    """Join torchrun's process group (NCCL on a CUDA device, gloo otherwise) once; False without torchrun.

    On CUDA the process's device is cuda:LOCAL_RANK (the caller selects it with local_device).
    """
    import torch
    import torch.distributed as dist

    if world() == 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    cuda = device is not None and torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    kwargs = {"timeout": timeout} if timeout is not None else {}
    if cuda:
        torch.cuda.set_device(local_device(device))
    dist.init_process_group(backend, **kwargs)
    log.info("process group: %s, rank %d of %d", backend, dist.get_rank(), dist.get_world_size())
    return True


def local_device(device):
    """Under torchrun each process takes its own GPU: `cuda` becomes cuda:LOCAL_RANK; others unchanged."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None and world() > 1:
        return torch.device("cuda", env_rank()[2])
    return device


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave() -> None:
    """End this process's part in torchrun's job: the process group is closed and from now on the
    process works alone (world 1). A data-parallel training calls it when its steps are done: rank
    0 then validates and saves by itself (and trains any later model of the command alone). Every
    rank waits for the others first: gloo aborts a rank (`terminate called without an active
    exception`) whose peer closes the connection under it (seen once in 4 CI runs)."""
    barrier()
    destroy_process_group()
    _alone.append(True)
