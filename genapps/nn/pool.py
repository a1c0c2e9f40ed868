"""CycleGAN's image pool: a history of generated images shown to the discriminator (Shrivastava
et al. 2017), so that it does not only judge the generator's latest outputs."""

from __future__ import annotations

import torch


class ImagePool:
    """The reference's history of generated images: with probability 1/2 the discriminator sees
    an older fake (which replaces it in the pool). Not saved in checkpoints: a resume refills it."""

    def __init__(self, size: int):
        self.size, self.images = size, []

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) fakes -> (B, C, H, W) for the discriminator: each image, or (p = 1/2 once the
        pool is full) an older one it replaces. Draws from torch's global RNG."""
        if self.size == 0:
            return batch
        out = []
        for im in batch:
            im = im[None]
            if len(self.images) < self.size:
                self.images.append(im)
                out.append(im)
            elif torch.rand(()) < 0.5:
                i = int(torch.randint(self.size, ()))
                out.append(self.images[i])
                self.images[i] = im
            else:
                out.append(im)
        return torch.cat(out)
