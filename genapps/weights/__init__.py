"""The weights layer and the bundled weights: reading, validating, saving, resolving, building.

This folder holds the weights shipped with genapps (NAME.safetensors + NAME.json cards); this
module is everything between a weights file and a model ready for inference:

- saving: `save_weights` (safetensors, genapps metadata beside the tensors), `save_trained`
  (the same plus the JSON card: command, licence, validation);
- reading: `load_weights` (genapps files), `read_state_dict` (any other file, without running
  code from it);
- resolving a name: `resolve_weights` (a file, a bundled name, then the resolvers handed in);
- validating and building: `load_model`, the one loader every task uses. It checks what a file
  declares (task, architecture among the task's builders, typed config) and builds it under an
  allocation budget (`build_from_weights`: a meta-device skeleton compared with the file's
  tensors before anything is allocated; foreign files through spandrel within the same kind of
  budget), so that every file a user can hand in fails in one line before a crafted declaration
  allocates memory. It returns one `ModelInfo` for every task.

Layers: this module imports genapps.io (disk) only, and genapps.nn.sr for one measured number
(ESRGAN's receptive radius). Other name sources (genapps.zoo's Real-ESRGAN models and ncnn
imports) sit above it and are not imported here: a source is a
`Resolver` value, and the code above both (a task's load function) passes it to
`resolve_weights`/`load_model`, e.g. `load_model(name, ..., resolvers=(zoo.RESOLVER,))`. No
import-time registry and no import cycle, lazy imports included.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import reprlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from genapps import io

CHECKPOINT_FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).parent  # the bundled NAME.safetensors and NAME.json


# ---------------------------------------------------------------- files


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Safetensors file with `meta` (task, arch, config, ...) and the format version beside the weights."""
    from safetensors.torch import save_file

    header = {"genapps": json.dumps({"format_version": CHECKPOINT_FORMAT_VERSION, **meta})}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with io.atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of save_weights: (tensors on CPU, meta). A foreign or damaged file is a one-line ValueError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get("genapps")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError on a torn or foreign file
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    if header is None:
        raise ValueError(f"{path}: not a genapps checkpoint (no 'genapps' metadata)")
    try:
        meta = json.loads(header)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("config", {}), dict):
        raise ValueError(f"{path}: damaged genapps metadata (not a JSON object with a config object)")
    if meta.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta.get('format_version')} not supported "
                         f"(this genapps reads {CHECKPOINT_FORMAT_VERSION})")
    return tensors, meta


def has_genapps_metadata(path: str | Path) -> bool:
    """Whether a .safetensors file is genapps's own (carries the 'genapps' header), read from the
    header only; an unreadable file counts as genapps's so that load_weights says what is wrong."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return "genapps" in (f.metadata() or {})
    except Exception:
        return True


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a foreign weights file, never running code from it: .safetensors through
    safetensors, anything else through torch.load(weights_only=True) (io.load_torch; a pickle that
    would import code is refused, TorchScript is not loaded). Wrappers (params_ema, params,
    state_dict, model, net, ...) and common prefixes (module., netG.) are removed as spandrel does."""
    from spandrel import canonicalize_state_dict

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path))
        except Exception as e:  # SafetensorError of a torn or foreign file
            raise ValueError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:200]})") from None
    else:
        raw = io.load_torch(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a state dict")
    state = canonicalize_state_dict(raw)
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return state


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return io.sha256_file(path)


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of a (weights) file, hashed once per process while its size and mtime stay the same."""
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def command_line() -> str:
    """The `genapps ...` command of this process, shell-quoted (recorded in weight cards)."""
    import shlex
    import sys

    return "genapps " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""


def save_trained(out: str | Path, tensors: dict[str, torch.Tensor], card: dict, extra_meta: dict | None = None) -> dict:
    """Write trained weights (safetensors: task, arch, config, validation and `extra_meta` in the
    metadata) and their JSON card beside them (OUT.json); return the card.

    Every card says the command that made it and the licence: weights genapps trains are
    released under genapps's own MIT licence; `card["provenance"]` says on what they were trained.
    """
    card = {"command": command_line(), "license": "MIT"} | card
    meta = {k: card[k] for k in ("task", "arch", "config")} | {"validation": card.get("validation", {})}
    save_weights(out, tensors, meta | (extra_meta or {}))
    io.write_json(Path(out).with_suffix(".json"), card)
    return card


# ---------------------------------------------------------------- names


def bundled_weights() -> dict[str, Path]:
    """Name -> path of the weights shipped inside the package."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))}


def bundled_card(name: str) -> dict:
    """The JSON card beside a bundled weight: training command, measured metrics."""
    card = WEIGHTS_DIR / f"{name}.json"
    if not card.is_file():
        return {}
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{card}: not valid JSON ({e})") from None


@dataclass(frozen=True)
class Resolver:
    """A source of model names beyond files and the bundled weights (genapps.zoo.RESOLVER).

    find(name) -> the weights file of `name` (converted or fetched as needed), or None when the
    name is not this source's; `names` are listed when a name is found nowhere.
    """

    label: str
    names: tuple[str, ...]
    find: Callable[[str], Path | None]
    hint: Callable[[str], str] | None = None  # a sentence for a name found nowhere ('' for none)


def bundled_names(task: str | None = None) -> list[str]:
    """The bundled weight names, only those whose card says `task` when one is given."""
    return [n for n in bundled_weights() if task is None or bundled_card(n).get("task") == task]


def resolve_weights(name_or_path: str | Path, resolvers: Iterable[Resolver] = (), task: str | None = None) -> Path:
    """A file path, a bundled weight name (e.g. 'sr-x4') or a name one of `resolvers` knows ->
    an existing path; FileNotFoundError listing the valid names otherwise (with `task`, only the
    bundled names made for that task: their cards carry it)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = bundled_weights()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    resolvers = tuple(resolvers)
    for resolver in resolvers:
        found = resolver.find(str(name_or_path))
        if found is not None:
            return found
    fits = bundled_names(task)
    others = "".join(f"; {r.label}: {', '.join(r.names)}" for r in resolvers)
    hints = "".join(f"; {h}" for h in (r.hint(str(name_or_path)) for r in resolvers if r.hint) if h)
    raise FileNotFoundError(f"no weights file or {task + ' ' if task else ''}model named {str(name_or_path)!r}; "
                            f"bundled: {', '.join(fits) or 'none'}{others}{hints}")


# ---------------------------------------------------------------- building within a budget


def shape_mismatch(module: nn.Module, tensors: dict) -> str | None:
    """Why `tensors` cannot load into `module` (missing/unexpected keys, other shapes), or None."""
    expected = module.state_dict()
    if not isinstance(tensors, dict):
        return "not a state dict"
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [f"{k} {tuple(getattr(tensors[k], 'shape', ()))} != {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and (not isinstance(tensors[k], torch.Tensor) or tensors[k].shape != v.shape)]
    parts = [f"missing {', '.join(missing[:3])}" if missing else "",
             f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
             f"shape {', '.join(wrong[:2])}" if wrong else ""]
    return "; ".join(p for p in parts if p) or None


class _Oversized(ValueError):
    pass


def _config_numbers(config: dict, prefix: str = ""):
    """(dotted key, value) of every number or list of numbers in a (nested) config."""
    for k, v in config.items():
        if isinstance(v, dict):
            yield from _config_numbers(v, f"{prefix}{k}.")
        elif any(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (v if isinstance(v, list) else [v])):
            yield f"{prefix}{k}", v


def _held(state: dict[str, torch.Tensor]) -> int:
    """Elements the file really stores (an expanded, stride-0 tensor counts its storage only)."""
    storages = {}
    for t in state.values():
        s = t.untyped_storage()
        storages[s.data_ptr(), s.nbytes()] = s.nbytes() // max(1, t.element_size())
    return sum(storages.values())


SLACK = 1 << 24  # elements any model may allocate beyond twice what its file holds (buffers, padding)


def build_from_weights(build: Callable[[], nn.Module], tensors: dict[str, torch.Tensor], where: str,
                       config: dict | None = None) -> nn.Module:
    """Build the model a weights file declares, only once the declaration matches its tensors.

    `build()` constructs the model from the file's declared `config`. Every number of `config`
    must be at most the file's tensor count or its largest tensor (a channel or block count the
    file cannot hold is refused before anything is built), and the tensors may not claim more
    elements than the file stores (expanded tensors of a crafted .pth); the model is then built
    on the meta device (no memory; stopped once it registers over twice as many parameters as
    the file has tensors) and its state-dict keys and shapes compared with `tensors`; only a
    match is built for real and loaded. Errors are one-line ValueErrors starting with `where`.
    Use it for every weights file a user can hand in.
    """
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ValueError(f"{where}: no weight tensors in the file")
    if sum(t.numel() for t in tensors.values()) > 2 * _held(tensors) + SLACK:
        raise ValueError(f"{where}: the tensors claim more elements than the file stores (expanded tensors)")
    bound = max(len(tensors), max(t.numel() for t in tensors.values()))
    for k, v in _config_numbers(config or {}):
        numbers = v if isinstance(v, list) else [v]
        if any(isinstance(n, (int, float)) and not isinstance(n, bool) and abs(n) > bound for n in numbers):
            raise ValueError(f"{where}: config {k}={reprlib.repr(v)} is not a size this file's tensors can hold")
    from torch.nn.modules.module import register_module_parameter_registration_hook

    registered = 0

    def count(_module, _name, _param):
        nonlocal registered
        registered += 1
        if registered > 2 * len(tensors) + 16:  # stop building long before a model the file cannot fill
            raise _Oversized(f"{where}: the declared model has more parameters than the file holds tensors")

    handle = register_module_parameter_registration_hook(count)
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. zero-element tensors of a nonsense config
            skeleton = build()
    except _Oversized as e:
        raise ValueError(str(e)) from None
    except Exception as e:  # a constructor fed an untrusted config may raise anything
        raise ValueError(f"{where}: cannot build the declared model ({str(e).splitlines()[0] if str(e) else e!r})") from None
    finally:
        handle.remove()
    problem = shape_mismatch(skeleton, tensors)
    if problem:
        raise ValueError(f"{where}: the weights do not fit the declared model ({problem})")
    model = build()
    model.load_state_dict(tensors)
    return model


class _OverBudget(Exception):
    pass


class _AllocationBudget(TorchFunctionMode):
    """Refuse tensor constructors once they would allocate more than `elements` in total: a
    crafted file cannot make a model builder allocate more than it holds (sizes are taken from
    a meta-device dry call, before the real allocation)."""

    CONSTRUCTORS = {torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.rand,
                    torch.randn, torch.randint, torch.eye, torch.arange, torch.linspace}

    def __init__(self, elements: int):
        super().__init__()
        self.left = elements

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.CONSTRUCTORS:
            self.left -= func(*args, **(kwargs | {"device": "meta"})).numel()
            if self.left < 0:
                raise _OverBudget
        return func(*args, **kwargs)


# ---------------------------------------------------------------- foreign files through spandrel


def spandrel_model(state: dict[str, torch.Tensor], where: str):
    """spandrel's ModelDescriptor for `state` (architecture and hyperparameters read off the keys
    and shapes), or None when no architecture of spandrel's matches the keys. A file whose declared
    model would need more memory than it holds, or whose tensors do not fit it, is a one-line ValueError."""
    from spandrel import MAIN_REGISTRY

    try:
        arch = next((a.architecture for a in MAIN_REGISTRY.architectures("detection") if a.detect(state)), None)
    except Exception:  # a detector tripping over a malformed tensor: no known architecture
        arch = None
    if arch is None:
        return None
    try:
        with _AllocationBudget(2 * _held(state) + SLACK), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return arch.load(state)
    except _OverBudget:
        raise ValueError(f"{where}: the declared model has more parameters than the file holds "
                         f"({arch.name} layout)") from None
    except Exception as e:  # a builder fed untrusted shapes may raise anything
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ValueError(f"{where}: the weights do not fit the declared model ({arch.name}: {msg})") from None


def describe(desc) -> str:
    """'SwinIR (SR, x2)': what a spandrel model is."""
    return f"{desc.architecture.name} ({desc.purpose}, x{desc.scale})"


class SpandrelModel(nn.Module):
    """A spandrel model as a genapps model: (B, 3, h, w) in [0, 1] [, mask (B, 1, h, w) for
    inpainting] -> (B, 3, h*s, w*s) in [0, 1]. It declares the architecture's size requirements
    (genapps.inference pads to them); spandrel pads what remains (square-only architectures)."""

    def __init__(self, desc):
        super().__init__()
        self.net = desc.model  # registered, so .to() and .eval() reach it
        self.desc = desc
        self.scale = desc.scale
        self.supports_bfloat16 = desc.supports_bfloat16
        self.input_multiple, self.input_minimum = desc.size_requirements.multiple_of, desc.size_requirements.minimum
        self.receptive_radius = spandrel_receptive_radius(desc)

    def forward(self, *inputs):
        return self.desc(*inputs)


def spandrel_receptive_radius(desc) -> int:
    """The receptive radius (input px, see genapps.inference) of the spandrel architectures
    genapps knows it for: ESRGAN (RRDBNet, measured; genapps.nn.sr.rrdb_receptive_radius) and
    Compact (SRVGGNetCompact, exact); 0 (undeclared) for the others."""
    net = desc.model
    try:
        if desc.architecture.id == "ESRGAN":
            from genapps.nn.sr import rrdb_receptive_radius

            return rrdb_receptive_radius(len(net.model[1].sub) - 1, int(net.shuffle_factor or 1))
        if desc.architecture.id == "Compact":
            return int(net.num_conv) + 2
    except (AttributeError, IndexError, TypeError):  # another spandrel version's layout
        pass
    return 0


def as_model(desc, where: str, purposes: tuple[str, ...], task: str) -> tuple[SpandrelModel, ModelInfo]:
    """(model, info) for `task`, after checking the descriptor's purpose ("SR", "Restoration",
    "Inpainting", "FaceSR") and channels; one-line errors naming what the file is."""
    if desc.purpose not in purposes:
        raise ValueError(f"{where}: {describe(desc)} is made for {desc.purpose}, not for {task} "
                         f"({task} runs {' or '.join(purposes)} models)")
    if desc.output_channels != 3 or (desc.input_channels != 3 and desc.purpose != "Inpainting"):
        raise ValueError(f"{where}: {describe(desc)} maps {desc.input_channels} to {desc.output_channels} "
                         f"channels; {task} runs RGB (3 -> 3) models")
    info = ModelInfo(arch=desc.architecture.id, source=where, sha256=weights_sha256(where), scale=desc.scale,
                     config={"loader": "spandrel", "purpose": desc.purpose, "tags": list(desc.tags)})
    return SpandrelModel(desc).eval(), info


# ---------------------------------------------------------------- the one loader


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is, the same for every task.

    arch: the architecture name (a key of the task's builders, spandrel's id, or e.g. "bicubic");
    source: the weights file (str path; "bicubic" for the classical baseline); config: the
    arguments it was built with (None when nothing was built from a config); sha256: of the
    source file (None without one), what resumed runs compare; scale: the native factor of an
    upscaling model (None for other tasks); extra: what a task reads beyond these (upscale:
    outscale; translate: direction, trained_direction, reference_netg).
    """

    arch: str
    source: str
    config: dict | None = None
    sha256: str | None = None
    scale: int | None = None
    extra: dict = field(default_factory=dict)

    def as_report(self) -> dict:
        """The description report.json records as `model_info` (arch, scale, source, config, extra)."""
        out = {"arch": self.arch} | ({"scale": self.scale} if self.scale is not None else {})
        out |= {"source": self.source} | ({"config": self.config} if self.config is not None else {})
        return out | self.extra


@dataclass(frozen=True)
class Declared:
    """What a weights file says it is: an architecture, the config to build it with, and extra
    metadata (ModelInfo.extra) - read from genapps metadata or inferred from a foreign file's keys."""

    arch: str
    config: dict
    extra: dict = field(default_factory=dict)


_TYPE_WORDS = {int: "integers", float: "numbers", str: "strings", bool: "true or false"}


def _typed(value, default) -> bool:
    """Whether a config value has the type of the builder's default for it (int for int, a list of
    ints for a tuple of ints, any plain JSON scalar where the default says nothing)."""
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and all(_typed(v, default[0] if default else None) for v in value)
    kind = type(default)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    return value is None or isinstance(value, (bool, int, float, str))


def check_declared(declared: Declared, builders: Mapping[str, Callable[..., nn.Module]], task: str,
                   where: str) -> None:
    """A one-line ValueError unless `declared` names one of `builders` with a config of known keys
    (when the builder's signature lists them) and values of its parameters' types."""
    if declared.arch not in builders:
        raise ValueError(f"{where}: unknown {task} architecture {declared.arch!r}; valid: {', '.join(builders)}")
    params = inspect.signature(builders[declared.arch]).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(declared.config) - set(named))
    if unknown and not open_ended:
        raise ValueError(f"{where}: {declared.arch}: unknown config keys {', '.join(map(str, unknown))}; "
                         f"valid: {', '.join(named)}")
    for key, value in declared.config.items():
        default = params[key].default if key in params else None
        default = None if default is inspect.Parameter.empty else default
        if not _typed(value, default):
            kind = type(default[0] if isinstance(default, (list, tuple)) and default else default)
            raise ValueError(f"{where}: config {key} must be {_TYPE_WORDS.get(kind, 'plain values')}, "
                             f"got {reprlib.repr(value)}")


def _declared_by_meta(meta: dict, task: str, where: str, extra_keys: tuple[str, ...]) -> Declared:
    if meta.get("task") != task:
        raise ValueError(f"{where}: weights of task {meta.get('task')!r}, not {task!r}")
    arch, config = meta.get("arch"), meta.get("config")
    if not isinstance(arch, str) or not isinstance(config, dict):
        raise ValueError(f"{where}: the metadata lacks the architecture name or its config")
    return Declared(arch, dict(config), {k: meta[k] for k in extra_keys if k in meta})


def _one_line(e: Exception, where: str) -> ValueError:
    """A task's key-layout reader failed on a file: one sentence naming the file."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, ValueError):
        return ValueError(text if text.startswith(where) else f"{where}: {text}")
    if isinstance(e, KeyError):
        return ValueError(f"{where}: the weights lack the tensor {e.args[0] if e.args else text} (an incomplete "
                          f"file, or weights of another model)")
    if isinstance(e, IndexError):
        return ValueError(f"{where}: a tensor has fewer dimensions than its layer needs (a damaged file, or "
                          f"weights of another model)")
    return ValueError(f"{where}: inconsistent weights ({type(e).__name__}: {text})")


def load_model(name_or_path: str | Path, task: str, builders: Mapping[str, Callable[..., nn.Module]], *,
               resolvers: Iterable[Resolver] = (), extra_keys: tuple[str, ...] = (),
               spandrel: tuple[str, ...] = (),
               infer: Callable[[dict[str, torch.Tensor], str], Declared] | None = None) -> tuple[nn.Module, ModelInfo]:
    """The model a weights file holds, in eval mode on the CPU, and its ModelInfo.

    `name_or_path`: a file, a bundled name, or a name one of `resolvers` knows. A genapps file
    must be of `task`, name an architecture of `builders` ({arch: factory}; an unknown one lists
    the valid ones) and declare a config of the factory's keys and types; `extra_keys` are the
    metadata keys copied to ModelInfo.extra. Any other file is read without running code
    (read_state_dict) when the task accepts foreign files: first by spandrel for the `spandrel`
    purposes (e.g. ("SR", "Restoration")), then by `infer(tensors, where)`, the task's reading
    of its public key layouts; without either, only genapps files load. Everything is built
    under the allocation budget (build_from_weights); every failure is a one-line ValueError
    starting with the file's path (FileNotFoundError for an unknown name).
    """
    path = resolve_weights(name_or_path, resolvers, task)
    where = str(path)
    genapps_file = path.suffix == ".safetensors" and has_genapps_metadata(path)
    if genapps_file or not (spandrel or infer):  # load_weights says why a foreign file is refused
        try:
            tensors, meta = load_weights(path)
        except ValueError as e:
            if genapps_file:
                raise
            runs = f"{task} runs genapps {task} models only (a bundled name, or a .safetensors file written by genapps)"
            if path.suffix.lower() == ".safetensors":
                raise ValueError(f"{e}: {runs}") from None
            raise ValueError(f"{where}: not a readable safetensors file: {runs}, not {path.suffix or 'other'} "
                             f"files") from None
        declared = _declared_by_meta(meta, task, where, extra_keys)
    else:
        tensors, refused = read_state_dict(path), None
        if spandrel:
            try:
                desc = spandrel_model(tensors, where)
            except ValueError as e:  # spandrel's layout, but not loadable by spandrel
                desc, refused = None, e
            if desc is not None:
                return as_model(desc, where, spandrel, task)
        if infer is None:
            raise refused or ValueError(f"{where}: not a model {task} runs (no architecture matches its keys)")
        try:
            declared = infer(tensors, where)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, ZeroDivisionError) as e:
            raise refused or _one_line(e, where) from None
    check_declared(declared, builders, task, where)
    build = builders[declared.arch]
    model = build_from_weights(lambda: build(**declared.config), tensors, where, declared.config)
    info = ModelInfo(arch=declared.arch, source=where, config=declared.config, sha256=weights_sha256(path),
                     extra=declared.extra)
    return model.eval(), info


def previous_stages(init: str | None, task: str | None = None) -> list[dict]:
    """The training stages of the --init weights, from the card beside them: its `stages`, or its
    one training (command, steps, minutes, data); [] without an init or a card."""
    if not init:
        return []
    card_path = resolve_weights(init, task=task).with_suffix(".json")
    if not card_path.is_file():
        return []
    card = json.loads(card_path.read_text())
    if card.get("stages"):
        return list(card["stages"])
    training = card.get("training") or {}
    if not training:
        return []
    return [{"command": card.get("command"), "steps": training.get("steps"), "minutes": training.get("minutes"),
             "data": card.get("provenance"), "arch": card.get("arch"), "validation": card.get("validation"),
             "note": card.get("note")}]
