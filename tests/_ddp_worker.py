"""Run by tests/test_distributed.py under torchrun (2 gloo processes): a tiny deterministic regression
trained with train.fit, whose rank-r batch is a fixed half of the global batch.

usage: torchrun --nproc_per_node 2 tests/_ddp_worker.py OUT_DIR STEPS
"""

import logging
import sys
from pathlib import Path

import torch
from torch import nn

from genapps.train import NotMainRank, TrainConfig, TrainSpec, fit

GLOBAL = 8  # the global batch; each of W ranks takes GLOBAL / W rows of it


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(123)
    out = []
    for _ in range(5):
        x = torch.randn(GLOBAL, 4, generator=g)
        out.append((x, (x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])).tanh() + 0.1))
    return out


def regression_spec(rank: int = 0, world: int = 1) -> TrainSpec:
    """A 2-layer MLP; step k's batch is rows rank::world of global batch k % 5 (all rows in one process)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    batches, step = global_batches(), [0]

    def next_batch():
        x, y = batches[step[0] % len(batches)]
        step[0] += 1
        return x[rank::world], y[rank::world]

    return TrainSpec(net, next_batch, lambda m, b: m(b[0]),
                     lambda b, out, d: (((out - b[1]) ** 2).mean(), {"mse": float(((out - b[1]) ** 2).mean().detach())}),
                     meta={"what": "ddp test"})


CONFIG = dict(lr=0.02, ema=0.9, grad_clip=0.5, cosine=False, log_every=5, ckpt_every=5)


def main(out: Path, steps: int) -> None:
    import torch.distributed as dist

    from genapps import distributed

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    rank, world, _ = distributed.env_rank()
    spec = regression_spec(rank, world)
    try:
        result = fit(spec, TrainConfig(steps=steps, **CONFIG), state_path=out / "run.state.pt")
        assert not dist.is_initialized()
        torch.save({"raw": spec.generator.state_dict(), "final": result.generator.state_dict(),
                    "history": result.history}, out / f"rank{rank}.pt")
    except NotMainRank:
        torch.save({"raw": spec.generator.state_dict()}, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
