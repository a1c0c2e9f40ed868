"""Translation generators: pix2pix's U-Net, CycleGAN's ResNet (both directions in one module),
the U-Net colouriser that classifies ab colours (Zhang et al. 2016), and loading of genapps files
and of the reference implementation's `.pth` checkpoints.

All generators map (B, in_ch, H, W) in [-1, 1] to (B, out_ch, H, W) in [-1, 1] (tanh), with H
and W multiples of `input_multiple`; the keys are the reference's, so its files load unchanged.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from genapps import weights
from genapps.nn import ResnetGenerator, UnetGenerator
from genapps.nn.color import annealed_mean, colour_from_ab
from genapps.nn.nafnet import NAFNet
from genapps.tasks.translate.config import NETG


class _ResidualOutput:
    """Optional global skip: out = clamp(x + net(x), -1, 1) (a 1-channel x broadcasts to colour).

    Restoration and colourisation outputs are close to their inputs; learning only the
    correction converges much faster in short CPU trainings. No parameters: keys unchanged.
    """

    residual: bool
    model: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return (x + y).clamp(-1, 1) if self.residual else y


class UnetTranslator(_ResidualOutput, UnetGenerator):
    def __init__(self, in_ch: int = 3, out_ch: int = 3, num_downs: int = 7, ngf: int = 64, norm: str = "batch",
                 dropout: bool = False, residual: bool = False):
        super().__init__(in_ch, out_ch, num_downs, ngf, norm, dropout)
        _check_residual(residual, in_ch, out_ch)
        self.residual = residual


class InputNoise(nn.Module):
    """Gaussian noise added to a (B, C, H, W) input in [-1, 1] in train mode, its std drawn per image
    uniformly in [0, sigma] ([0, 1] scale: photos come with every noise level); none in eval mode
    unless switched on like dropout (translate --stochastic, seeded per file). A deterministic
    generator cannot draw noise: a learned degradation (CycleGAN's G_B with --b-noise) gets it here
    and shapes it. No parameters: keys unchanged."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.sigma):
            return x
        std = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * (2 * self.sigma)
        return x + torch.randn_like(x) * std


class ResnetTranslator(_ResidualOutput, ResnetGenerator):
    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, n_blocks: int = 9, norm: str = "instance",
                 dropout: bool = False, residual: bool = False, input_noise: float = 0.0):
        super().__init__(in_ch, out_ch, ngf, n_blocks, norm, dropout)
        _check_residual(residual, in_ch, out_ch)
        self.residual = residual
        self.noise = InputNoise(input_noise) if input_noise else None

    def forward(self, x: torch.Tensor, noise: bool = True) -> torch.Tensor:
        """noise=False: without the input noise even in train mode (CycleGAN's identity term)."""
        return super().forward(self.noise(x) if self.noise is not None and noise else x)


def _check_residual(residual: bool, in_ch: int, out_ch: int) -> None:
    if residual and in_ch not in (1, out_ch):
        raise ValueError(f"a residual generator needs in_ch 1 or {out_ch}, got {in_ch}")


class CycleGenerators(nn.Module):
    """CycleGAN's two generators in one module (one file, one EMA, one checkpoint in train.fit):
    G_A maps domain A to B (in_ch -> out_ch), G_B maps B back to A (b_noise > 0: Gaussian input noise
    of a std up to b_noise in training and under translate --stochastic, InputNoise)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, b_noise: float = 0.0, **config):
        super().__init__()
        self.G_A = ResnetTranslator(in_ch, out_ch, **config)
        self.G_B = ResnetTranslator(out_ch, in_ch, input_noise=b_noise, **config)  # G_B may be a degrader
        self.input_multiple = self.G_A.input_multiple

    def direction(self, name: str) -> nn.Module:
        return {"AtoB": self.G_A, "BtoA": self.G_B}[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.G_A(x)


class NAFNetTranslator(NAFNet):
    """NAFNet for restoration (genapps.nn.nafnet): always residual (input + correction), clamped
    to [-1, 1] like the tanh generators; `local_window` (TLC) keeps tiles equal to the whole."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, width: int = 16, enc_blocks=(1, 1, 1, 2),
                 middle_blocks: int = 4, dec_blocks=(1, 1, 1, 1), local_window: int = 0):
        super().__init__(in_ch, out_ch, width, tuple(enc_blocks), middle_blocks, tuple(dec_blocks), local_window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).clamp(-1, 1)


class UnetAbClassifier(UnetGenerator):
    """Grey -> colour as classification (Zhang et al. 2016) on pix2pix's U-Net: the network predicts,
    at half resolution, a distribution over the Q quantized ab colours `bins` (a flat list a0, b0,
    a1, b1, ...: the config stays plain JSON); the annealed mean at `temperature` gives ab, which is
    upsampled (bilinear, x2; colour is smooth) and joined to the input's lightness, keeping its
    BT.601 luma (genapps.nn.color.colour_from_ab).

    The body is the U-Net of `unet` with in_ch 1 and the same keys; only the outermost
    up-convolution (to full resolution, tanh) is replaced by a per-pixel classifier of its input
    (model.model.3 and .5: 1x1 convolutions 2*ngf -> 4*ngf -> ReLU -> Q), so a pix2pix
    colouriser's body can start it. forward:
    (B, 1, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1]; `logits` gives the (B, Q, H/2, W/2) scores.
    Per pixel and deterministic: tiles join as the U-Net's do.

    The rebalanced cross-entropy trains the scores towards p(colour | grey) * w(colour) (w: the
    training's `rebalance_weights`, large for rare, saturated colours); `undo_rebalance` alpha in
    [0, 1] divides w^alpha out again before decoding (0: as trained, most colourful; 1: the plain
    posterior), a strength chosen on validation with the temperature.
    """

    def __init__(self, bins: tuple[int, ...] = (), temperature: float = 0.38, ngf: int = 24, num_downs: int = 5,
                 norm: str = "batch", rebalance_weights: tuple[float, ...] = (), undo_rebalance: float = 0.0):
        if len(bins) < 4 or len(bins) % 2:
            raise ValueError(f"bins must be a flat list of at least 2 (a, b) pairs, got {len(bins)} numbers")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(1, 2, num_downs, ngf, norm, dropout=False)
        outer = self.model.model  # [downconv, inner levels, ReLU, up-conv, tanh]
        self.model.model = nn.Sequential(outer[0], outer[1], nn.ReLU(True), nn.Conv2d(2 * ngf, 4 * ngf, 1),
                                         nn.ReLU(True), nn.Conv2d(4 * ngf, len(bins) // 2, 1))
        self.register_buffer("bins", torch.tensor(bins, dtype=torch.float32).reshape(-1, 2), persistent=False)
        self.temperature = float(temperature)
        self.set_rebalance(rebalance_weights, undo_rebalance)

    def set_rebalance(self, weights, undo: float) -> None:
        """The training's rebalancing weights (Q,) and the share alpha of them divided out at decoding."""
        if len(weights) not in (0, len(self.bins)) or not 0 <= undo <= 1 or (undo and not len(weights)):
            raise ValueError(f"rebalance_weights must hold one weight per bin ({len(self.bins)}) and "
                             f"undo_rebalance be in [0, 1] (with weights), got {len(weights)} and {undo}")
        log_w = torch.as_tensor(weights, dtype=torch.float32).clamp_min(1e-8).log() if len(weights) else None
        self.register_buffer("log_weights", log_w, persistent=False)
        self.undo_rebalance = float(undo)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [-1, 1] -> (B, Q, H/2, W/2) unnormalised log-probabilities of the bins."""
        return self.model(x)

    def decode(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The colour image (B, 3, H, W) in [-1, 1] of `logits` over the grey input `x` (B, 1, H, W)."""
        if self.undo_rebalance:
            logits = logits - self.undo_rebalance * self.log_weights.to(logits).view(1, -1, 1, 1)
        ab = annealed_mean(logits, self.bins, self.temperature)
        ab = nn.functional.interpolate(ab, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return colour_from_ab((x.float() + 1) / 2, ab) * 2 - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.logits(x), x)


ARCHS = {"unet": UnetTranslator, "resnet": ResnetTranslator, "cycle": CycleGenerators, "unet-ab": UnetAbClassifier,
         "nafnet": NAFNetTranslator}

# The reference's --netG names and the arguments they stand for.
def define_G(arch: str, **config) -> nn.Module:
    """Build a generator by architecture name (unet | resnet | cycle | nafnet | unet-ab); unknown names list the valid ones."""
    if arch not in ARCHS:
        raise ValueError(f"unknown translation architecture {arch!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[arch](**config)


def netg_name(arch: str, config: dict) -> str:
    """The reference's --netG name of a config (unet_<2**num_downs>, resnet_<n>blocks)."""
    if arch == "unet":
        return f"unet_{2 ** config['num_downs']}"
    return f"resnet_{config['n_blocks']}blocks"


def _conv_weight(state: dict[str, torch.Tensor], key: str, generator: str) -> torch.Tensor:
    """state[key], a convolution weight (4 dims), or a ValueError saying what is wrong with the file."""
    t = state.get(key)
    if t is None:
        raise ValueError(f"not a complete reference {generator}: the tensor {key} is missing (an incomplete file, "
                         f"or weights of another model)")
    if not isinstance(t, torch.Tensor) or t.ndim != 4:
        raise ValueError(f"{key} has shape {tuple(getattr(t, 'shape', ()))}, a convolution weight has 4 dimensions "
                         f"(a damaged file, or weights of another model)")
    return t


def infer_reference_arch(state: dict[str, torch.Tensor]) -> tuple[str, dict]:
    """(arch, config) of a reference `UnetGenerator` / `ResnetGenerator` state dict, read off its keys.

    Batch norm shows as running_mean; instance norm (affine=False) as conv biases with no norm
    parameters. U-Net dropout leaves no key (only --dropout can say it); ResNet dropout shifts
    each block's second conv from conv_block.5 to conv_block.6. A missing or misshapen tensor
    the reading needs is a ValueError naming it.
    """
    batch = any(k.endswith("running_mean") for k in state)
    if "model.model.0.weight" in state:
        first = _conv_weight(state, "model.model.0.weight", "U-Net generator")
        last = _conv_weight(state, "model.model.3.weight", "U-Net generator")
        convs = [k for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
        return "unet", {"in_ch": first.shape[1], "out_ch": last.shape[1],
                        "num_downs": len(convs) // 2, "ngf": first.shape[0],
                        "norm": "batch" if batch else "instance", "dropout": False}
    if "model.1.weight" in state and _conv_weight(state, "model.1.weight", "ResNet generator").shape[-1] == 7:
        first = state["model.1.weight"]
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
        last = max(int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.weight$", k)))
        return "resnet", {"in_ch": first.shape[1],
                          "out_ch": _conv_weight(state, f"model.{last}.weight", "ResNet generator").shape[0],
                          "ngf": first.shape[0], "n_blocks": len(blocks), "norm": "batch" if batch else "instance",
                          "dropout": any(".conv_block.6." in k for k in state)}
    raise ValueError("unrecognised weights: not a pix2pix/CycleGAN UnetGenerator or ResnetGenerator state dict "
                     "(expected keys like model.model.0.weight or model.1.weight)")


def _check_flags(path: Path, arch: str, config: dict, flags: dict) -> dict:
    """Apply the user's --netg/--ngf/--norm/--dropout to an inferred config; a mismatch is one line."""
    right = f"--netg {netg_name(arch, config)} --ngf {config['ngf']} --norm {config['norm']}"
    given_netg = flags.get("netg")
    if given_netg is not None:
        if given_netg not in NETG:
            raise ValueError(f"unknown --netg {given_netg!r}; valid: {', '.join(NETG)}")
        want_arch, want = NETG[given_netg]
        if want_arch != arch or any(config[k] != v for k, v in want.items()):
            raise ValueError(f"{path}: the weights are {netg_name(arch, config)}, not --netg {given_netg}; "
                             f"use {right} (or leave the flags out: they are read from the weights)")
    if flags.get("ngf") is not None and flags["ngf"] != config["ngf"]:
        raise ValueError(f"{path}: the weights have ngf {config['ngf']}, not --ngf {flags['ngf']}; use {right}")
    norm = flags.get("norm")
    if norm is not None and norm != config["norm"]:
        if {norm, config["norm"]} != {"instance", "none"}:  # only these two leave identical keys
            raise ValueError(f"{path}: the weights use {config['norm']} norm, not --norm {norm}; use {right}")
        config = config | {"norm": norm}
    dropout = flags.get("dropout")
    if dropout is not None and dropout != config["dropout"]:
        if arch == "resnet":
            raise ValueError(f"{path}: the weights were trained {'with' if config['dropout'] else 'without'} "
                             f"dropout; {'pass' if config['dropout'] else 'drop'} --dropout")
        config = config | {"dropout": dropout}
    return config


def _reference(flags: dict):
    """How a file without genapps metadata is read: the reference implementation's generator,
    its arch and config inferred from the keys and checked against the user's flags."""
    def infer(tensors: dict[str, torch.Tensor], where: str) -> weights.Declared:
        arch, config = infer_reference_arch(tensors)
        config = _check_flags(Path(where), arch, config, flags)
        return weights.Declared(arch, config, {"reference_netg": netg_name(arch, config)})
    return infer


GENERATORS = {"AtoB": "G_A", "BtoA": "G_B"}  # CycleGAN's generator of each direction


def reference_generator(path: str | Path) -> str | None:
    """Which CycleGAN generator a reference checkpoint is, by its file name as the reference saves
    it (`latest_net_G_A.pth`, `200_net_G_B.pth`): "G_A" (A->B), "G_B" (B->A), or None
    (`latest_net_G.pth`: pix2pix's generator, or a pretrained CycleGAN's one direction)."""
    found = re.search(r"(?:^|_)(G_[AB])$", Path(path).stem)
    return found.group(1) if found else None


def _check_reference_direction(source: str, direction: str) -> str:
    """The generator a reference file holds, when it is the one `direction` runs; else a
    one-line ValueError naming the file to give (a reference file holds one direction)."""
    generator = reference_generator(source)
    if generator is None:
        if direction != "AtoB":
            raise ValueError(f"{source}: a reference checkpoint holds one generator, which runs the way it was "
                             f"trained, and its name does not say it is G_B (B->A); for --direction BtoA give "
                             f"latest_net_G_B.pth of a CycleGAN run")
        return "G"
    if GENERATORS[direction] != generator:
        own = next(d for d, g in GENERATORS.items() if g == generator)
        other = Path(source).with_stem(Path(source).stem[:-len(generator)] + GENERATORS[direction]).name
        raise ValueError(f"{source}: the {own[0]}->{own[-1]} generator ({generator}) of a CycleGAN run; for "
                         f"--direction {direction} give {other} (or run this one with --direction {own})")
    return generator


def load_model(name_or_path: str, direction: str = "AtoB", flags: dict | None = None) -> tuple[nn.Module, weights.ModelInfo]:
    """A generator ready for inference (eval mode, CPU) and its ModelInfo (extra: direction,
    generator, ...: what runs).

    Accepts a bundled name, a genapps .safetensors (pix2pix: one direction; cycle: both, picked
    by `direction`), or the reference implementation's latest_net_G*.pth (read with
    weights_only=True; `flags` = {netg, ngf, norm, dropout} checked against the keys; one
    direction: `latest_net_G_A.pth` is AtoB, `latest_net_G_B.pth` BtoA, `latest_net_G.pth` its
    own, AtoB). Either is validated and built within the file's allocation budget
    (genapps.weights.load_model); a direction the file does not hold is a one-line ValueError.
    """
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
    model, info = weights.load_model(name_or_path, "translate", ARCHS, extra_keys=("kind", "trained_direction"),
                                     infer=_reference(flags or {}))
    if "reference_netg" in info.extra:  # a latest_net_G*.pth: one direction, the file's own
        generator = _check_reference_direction(info.source, direction)
    elif info.arch == "cycle":
        model, generator = model.direction(direction), GENERATORS[direction]
    elif direction != "AtoB":
        raise ValueError(f"{info.source}: a pix2pix model translates one way (its training input to its target); "
                         f"--direction BtoA needs a CycleGAN model")
    else:
        generator = "G"
    return model, replace(info, extra={"direction": direction, "generator": generator} | info.extra)
