"""genapps: generative image models put to work (augment, upscale, inpaint, translate)."""

__version__ = "0.1.0"
