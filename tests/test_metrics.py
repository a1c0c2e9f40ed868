"""Tests for genapps.metrics: cross-checks against scikit-image (and torchmetrics if present).

Real images come from scikit-image's bundled data (astronaut, camera) so the
suite does not depend on any dataset outside the repository.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import data as skdata
from skimage.color import rgb2ycbcr
from skimage.filters import gaussian as sk_gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from genapps import metrics as M

TOL = 1e-3


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(shape, seed=0, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(shape, generator=_gen(seed), dtype=dtype)


def _noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=_gen(seed), dtype=x.dtype)
    return (x + sigma * noise).clamp(0.0, 1.0)


def _np(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor -> (C, H, W) array, or (H, W) for grayscale."""
    arr = img.detach().cpu().double().numpy()
    return arr[0] if arr.shape[0] == 1 else arr


def _sk_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return peak_signal_noise_ratio(_np(y), _np(x), data_range=1.0)


def _sk_ssim(x: torch.Tensor, y: torch.Tensor, full: bool = False):
    a, b = _np(x), _np(y)
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=0 if a.ndim == 3 else None,
        full=full,
    )


def _assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b.to(a.dtype), rtol=tol, atol=tol), (a, b)


def _to_chw(arr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) -> float64 (C, H, W) in [0, 1]."""
    t = torch.from_numpy(arr.astype(np.float64) / 255.0)
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """Tiny tensors: one intra-op thread is faster and avoids fighting other jobs for cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """96x96 colour crop (face and suit edges), (3, 96, 96) float64."""
    return _to_chw(skdata.astronaut()[40:136, 170:266])


@pytest.fixture(scope="module")
def camera() -> torch.Tensor:
    """96x96 grayscale crop (camera and tripod), (1, 96, 96) float64."""
    return _to_chw(skdata.camera()[100:196, 180:276])


@pytest.fixture(scope="module")
def astronaut_large() -> torch.Tensor:
    """192x192 colour crop for MS-SSIM (needs >= 176 px)."""
    return _to_chw(skdata.astronaut()[100:292, 150:342])


def _blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    arr = x.numpy()
    out = sk_gaussian(arr, sigma=sigma, channel_axis=0, preserve_range=True)
    return torch.from_numpy(np.ascontiguousarray(out))


# --------------------------------------------------------------------------
# cross-checks against scikit-image
# --------------------------------------------------------------------------
SHAPES = [(4, 1, 32, 32), (3, 3, 48, 40), (2, 3, 17, 23), (2, 1, 11, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_psnr_ssim_match_skimage_random(shape, dtype):
    target = _rand(shape, seed=3, dtype=dtype)
    # different noise level per image so per-image results differ
    sigmas = torch.linspace(0.02, 0.3, shape[0], dtype=dtype).view(-1, 1, 1, 1)
    noise = torch.randn(shape, generator=_gen(4), dtype=dtype)
    pred = (target + sigmas * noise).clamp(0, 1)

    p, s = M.psnr(pred, target), M.ssim(pred, target)
    assert p.shape == s.shape == (shape[0],)
    assert p.dtype == s.dtype == dtype
    for i in range(shape[0]):
        assert p[i].item() == pytest.approx(_sk_psnr(pred[i], target[i]), abs=TOL)
        assert s[i].item() == pytest.approx(_sk_ssim(pred[i], target[i]), abs=TOL)
    # per-image values really differ (no accidental batch averaging)
    assert len(set(np.round(p.tolist(), 3))) == shape[0]


@pytest.mark.parametrize("which", ["astronaut", "camera"])
@pytest.mark.parametrize("degrade", ["noise", "blur", "blur+noise", "quantize"])
def test_psnr_ssim_match_skimage_real(which, degrade, request):
    target = request.getfixturevalue(which)
    if degrade == "noise":
        pred = _noisy(target, 0.05)
    elif degrade == "blur":
        pred = _blur(target, 1.2)
    elif degrade == "blur+noise":
        pred = _noisy(_blur(target, 0.8), 0.02)
    else:  # 4-bit posterisation: a structured, non-Gaussian error
        pred = M.quantize(target, bits=4)
    p, s = M.psnr(pred, target).item(), M.ssim(pred, target).item()
    assert p == pytest.approx(_sk_psnr(pred, target), abs=TOL)
    assert s == pytest.approx(_sk_ssim(pred, target), abs=TOL)
    assert 10 < p < 60 and 0 < s < 1


def test_three_dim_input_is_batch_of_one(camera):
    pred = _noisy(camera, 0.1)
    assert M.psnr(pred, camera).shape == (1,)
    assert M.ssim(pred, camera).shape == (1,)
    _assert_close(M.ssim(pred, camera), M.ssim(pred[None], camera[None]))


def test_rgb_to_y_matches_skimage(astronaut):
    y = M.rgb_to_y(astronaut)
    assert y.shape == (1, 1, 96, 96)
    ref = rgb2ycbcr(astronaut.permute(1, 2, 0).numpy())[..., 0] / 255.0
    np.testing.assert_allclose(y[0, 0].numpy(), ref, atol=1e-6)
    # range of studio-swing luma
    assert M.rgb_to_y(torch.zeros(3, 4, 4)).allclose(torch.tensor(16 / 255))
    assert M.rgb_to_y(torch.ones(3, 4, 4)).allclose(torch.tensor(235 / 255))
    # grayscale passes through unchanged
    g = _rand((2, 1, 8, 8))
    assert torch.equal(M.rgb_to_y(g), g)


@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_y_ssim_y_match_skimage(astronaut, crop_border):
    pred = _noisy(_blur(astronaut, 1.0), 0.02)
    pred, target = torch.stack([pred, astronaut]), torch.stack([astronaut, astronaut])
    py, sy = M.psnr_y(pred, target, crop_border), M.ssim_y(pred, target, crop_border)

    def y_np(x):
        y = rgb2ycbcr(x.permute(1, 2, 0).numpy())[..., 0] / 255.0
        b = crop_border
        return y[b : y.shape[0] - b, b : y.shape[1] - b] if b else y

    ref_p = peak_signal_noise_ratio(y_np(astronaut), y_np(pred[0]), data_range=1.0)
    ref_s = structural_similarity(
        y_np(pred[0]), y_np(astronaut), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0,
    )
    assert py[0].item() == pytest.approx(ref_p, abs=TOL)
    assert sy[0].item() == pytest.approx(ref_s, abs=TOL)
    assert math.isinf(py[1].item()) and sy[1].item() == pytest.approx(1.0, abs=1e-6)
    # the Y protocol differs from plain RGB PSNR (it is a different metric)
    assert py[0].item() != pytest.approx(M.psnr(pred[:1], target[:1]).item(), abs=1e-2)


def test_shave():
    x = _rand((2, 3, 10, 12))
    assert M.shave(x, 0) is x
    assert M.shave(x, 2).shape == (2, 3, 6, 8)
    assert torch.equal(M.shave(x, 2), x[..., 2:8, 2:10])
    with pytest.raises(ValueError):
        M.shave(x, 5)
    with pytest.raises(ValueError):
        M.shave(x, -1)


# --------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------
def test_masked_rectangle_equals_crop():
    target = _rand((3, 3, 32, 32), seed=5)
    pred = _noisy(target, 0.1, seed=6)
    rects = [(0, 10, 0, 32), (4, 20, 7, 30), (16, 32, 16, 32)]  # per image (y0, y1, x0, x1)
    mask = torch.zeros(3, 1, 32, 32)
    for i, (y0, y1, x0, x1) in enumerate(rects):
        mask[i, :, y0:y1, x0:x1] = 1
    for fn in (M.mse, M.mae, M.psnr):
        got = fn(pred, target, mask=mask)
        for i, (y0, y1, x0, x1) in enumerate(rects):
            crop_p, crop_t = pred[i, :, y0:y1, x0:x1], target[i, :, y0:y1, x0:x1]
            assert got[i].item() == pytest.approx(fn(crop_p, crop_t).item(), rel=1e-9)
    # skimage on the crop, for psnr
    y0, y1, x0, x1 = rects[1]
    ref = _sk_psnr(pred[1, :, y0:y1, x0:x1], target[1, :, y0:y1, x0:x1])
    assert M.psnr(pred, target, mask=mask)[1].item() == pytest.approx(ref, abs=TOL)


def test_mask_forms_and_weights():
    target = _rand((2, 3, 16, 16), seed=7)
    pred = _noisy(target, 0.2, seed=8)
    full = M.mse(pred, target)
    # all-ones mask in several broadcastable forms, bool or float, equals unmasked
    for mask in (
        torch.ones(2, 1, 16, 16),
        torch.ones(16, 16, dtype=torch.bool),
        torch.ones(1, 1, 16, 16),
        torch.ones(2, 3, 16, 16),
        torch.full((2, 1, 16, 16), 0.5),  # constant weights cancel out
    ):
        _assert_close(M.mse(pred, target, mask=mask), full)
        _assert_close(M.ssim(pred, target, mask=mask), M.ssim(pred, target))
    # weights: half weight on the left half equals the weighted combination
    w = torch.ones(2, 1, 16, 16)
    w[..., :8] = 0.5
    left = M.mse(pred[..., :8], target[..., :8])
    right = M.mse(pred[..., 8:], target[..., 8:])
    _assert_close(M.mse(pred, target, mask=w), (0.5 * left + right) / 1.5)


def test_masked_ssim_matches_skimage_map(astronaut):
    pred = _noisy(_blur(astronaut, 1.0), 0.03)
    mask = torch.zeros(1, 1, 96, 96)
    mask[..., 20:60, 30:90] = 1
    got = M.ssim(pred, astronaut, mask=mask).item()
    _, smap = _sk_ssim(pred, astronaut, full=True)  # (3, H, W) map
    pad = 5
    if smap.shape[-1] == 96:  # skimage returns the uncropped map: crop like its mean does
        smap = smap[..., pad:-pad, pad:-pad]
    m = mask[0, 0, pad:-pad, pad:-pad].numpy().astype(bool)
    ref = smap.mean(axis=0)[m].mean()
    assert got == pytest.approx(ref, abs=TOL)
    assert got != pytest.approx(M.ssim(pred, astronaut).item(), abs=1e-3)


def test_empty_mask_gives_nan_not_crash():
    target = _rand((2, 1, 16, 16), seed=9)
    pred = _noisy(target, 0.1)
    mask = torch.ones(2, 1, 16, 16)
    mask[1] = 0
    for fn in (M.mse, M.mae, M.psnr, M.ssim):
        out = fn(pred, target, mask=mask)
        assert torch.isfinite(out[0]) and torch.isnan(out[1]), fn.__name__
    res = M.image_metrics(pred, target, mask=mask)
    assert math.isnan(res["mae"][1]) and math.isfinite(res["mae"][0])


# --------------------------------------------------------------------------
# identities, MS-SSIM
# --------------------------------------------------------------------------
def test_identical_images():
    x = _rand((2, 3, 24, 24))
    assert torch.isinf(M.psnr(x, x)).all() and (M.psnr(x, x) > 0).all()
    _assert_close(M.ssim(x, x), torch.ones(2, dtype=x.dtype))
    assert (M.mse(x, x) == 0).all() and (M.mae(x, x) == 0).all()
    res = M.image_metrics(x, x)
    assert res["psnr"] == [math.inf, math.inf] and res["ssim"] == pytest.approx([1.0, 1.0])


def _np_ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Independent scipy reference of Wang 2003 MS-SSIM on (C, H, W) arrays (valid region)."""
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    c1, c2 = 0.01**2, 0.03**2
    terms = []
    for scale in range(5):
        ssims, css = [], []
        for a, b in zip(x, y):
            f = lambda im: gaussian_filter(im, 1.5, truncate=3.5, mode="reflect")[5:-5, 5:-5]
            ua, ub = f(a), f(b)
            va, vb, cov = f(a * a) - ua**2, f(b * b) - ub**2, f(a * b) - ua * ub
            cs = (2 * cov + c2) / (va + vb + c2)
            ssims.append(((2 * ua * ub + c1) / (ua**2 + ub**2 + c1) * cs).mean())
            css.append(cs.mean())
        terms.append(np.mean(ssims) if scale == 4 else np.mean(css))
        h, w = x.shape[1] // 2, x.shape[2] // 2
        x = x[:, : 2 * h, : 2 * w].reshape(-1, h, 2, w, 2).mean(axis=(2, 4))
        y = y[:, : 2 * h, : 2 * w].reshape(-1, h, 2, w, 2).mean(axis=(2, 4))
    return float(np.prod([max(t, 0.0) ** wt for t, wt in zip(terms, weights)]))


def test_ms_ssim(astronaut_large):
    x = astronaut_large
    preds = torch.stack([x, _noisy(x, 0.02), _noisy(x, 0.1), _noisy(_blur(x, 2.0), 0.1)])
    target = x.expand_as(preds)
    v = M.ms_ssim(preds, target)
    assert v.shape == (4,)
    assert v[0].item() == pytest.approx(1.0, abs=1e-6)
    assert 1.0 > v[1] > v[2] > v[3] > 0.0
    for i in range(1, 4):
        ref = _np_ms_ssim(preds[i].numpy(), target[i].numpy())
        assert v[i].item() == pytest.approx(ref, abs=1e-6)
    # odd sizes (floor pooling) and grayscale
    g = M.rgb_to_y(x)[0, :, :181, :179]
    assert M.ms_ssim(_noisy(g, 0.05), g).item() == pytest.approx(
        _np_ms_ssim(_noisy(g, 0.05).numpy(), g.numpy()), abs=1e-6
    )


def test_ms_ssim_close_to_torchmetrics(astronaut_large):
    tm = pytest.importorskip("torchmetrics.functional.image")
    x = astronaut_large[None]
    for pred in (_noisy(x, 0.02), _noisy(x, 0.1)):
        ref = tm.multiscale_structural_similarity_index_measure(
            pred, x, data_range=1.0, reduction="none"
        )
        # torchmetrics averages its coarsest-scale SSIM over a reflect-padded map
        # (no border crop), hence small differences from Wang's valid-region form.
        assert M.ms_ssim(pred, x).item() == pytest.approx(ref.item(), abs=5e-3)


def test_ms_ssim_too_small_raises():
    x = _rand((1, 3, 175, 200))
    with pytest.raises(ValueError, match="176"):
        M.ms_ssim(x, x)


# --------------------------------------------------------------------------
# quantize, image_metrics, validation, dtype/device/grad
# --------------------------------------------------------------------------
def test_quantize_matches_uint8_roundtrip():
    x = torch.cat([_rand((1, 3, 16, 16)).flatten(), torch.tensor([-0.2, 0.0, 1.0, 1.3, 0.5 / 255])])
    q = M.quantize(x)
    ref = np.floor(np.clip(x.numpy(), 0, 1) * 255 + 0.5).astype(np.uint8) / 255.0
    np.testing.assert_allclose(q.numpy(), ref, atol=1e-12)
    assert (q - x.clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-12
    assert torch.equal(M.quantize(q), q)  # idempotent
    assert M.quantize(x, bits=1).unique().tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        M.quantize(x, bits=0)


def test_image_metrics(camera):
    pred = torch.stack([_noisy(camera, 0.05), _blur(camera)])
    target = camera.expand_as(pred)
    res = M.image_metrics(pred, target)
    assert set(res) == {"psnr", "ssim"}
    assert all(isinstance(v, float) for v in res["psnr"] + res["ssim"])
    assert res["psnr"] == pytest.approx(M.psnr(pred, target).tolist())
    assert res["ssim"] == pytest.approx(M.ssim(pred, target).tolist())

    rgb = torch.stack([_noisy(_rand((3, 32, 32)), 0.05), _rand((3, 32, 32), seed=2)])
    tgt = _rand((3, 32, 32)).expand_as(rgb)
    res = M.image_metrics(rgb, tgt, y_channel=True, crop_border=2)
    assert res["psnr"] == pytest.approx(M.psnr_y(rgb, tgt, 2).tolist())
    assert res["ssim"] == pytest.approx(M.ssim_y(rgb, tgt, 2).tolist())

    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    res = M.image_metrics(rgb, tgt, mask=mask)
    assert set(res) == {"psnr", "ssim", "mae"}
    assert res["mae"] == pytest.approx(M.mae(rgb[..., 8:24, 8:24], tgt[..., 8:24, 8:24]).tolist())
    assert res["psnr"] == pytest.approx(M.psnr(rgb[..., 8:24, 8:24], tgt[..., 8:24, 8:24]).tolist())


def test_bad_inputs_raise():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(1, 3, 16, 16\).*\(1, 3, 16, 15\)"):
        M.image_metrics(a, torch.rand(1, 3, 16, 15))
    bad = [
        (a, torch.rand(1, 3, 16, 15)),  # shape mismatch
        (torch.rand(16, 16), torch.rand(16, 16)),  # 2 dims
        (torch.rand(1, 1, 3, 16, 16), torch.rand(1, 1, 3, 16, 16)),  # 5 dims
        (torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16)),  # 2 channels
        (torch.rand(1, 4, 16, 16), torch.rand(1, 4, 16, 16)),  # RGBA
    ]
    for fn in (M.mse, M.mae, M.psnr, M.ssim, M.psnr_y, M.ssim_y):
        for p, t in bad:
            with pytest.raises(ValueError):
                fn(p, t)
    with pytest.raises(ValueError, match="mask"):
        M.mse(a, a, mask=torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="11x11"):
        M.ssim(torch.rand(1, 1, 10, 30), torch.rand(1, 1, 10, 30))
    with pytest.raises(TypeError):
        M.psnr(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_dtype_and_gradient():
    t = _rand((2, 3, 16, 16), dtype=torch.float32)
    p = _noisy(t, 0.1).requires_grad_(True)
    s = M.ssim(p, t)
    assert s.dtype == torch.float32
    (1 - s).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    assert M.psnr(t.half(), t.half()).dtype == torch.float32
    assert M.mse(t, t.double()).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_stays_on_device():
    t = _rand((2, 3, 32, 32)).cuda()
    p = _noisy(t.cpu(), 0.1).cuda()
    mask = torch.ones(2, 1, 32, 32, device="cuda")
    for fn in (M.mse, M.psnr, M.ssim):
        out = fn(p, t, mask=mask)
        assert out.device == t.device
        _assert_close(out.cpu(), fn(p.cpu(), t.cpu()))


@pytest.mark.parametrize("clamp", [False, True])
def test_psnr_decreases_with_noise(clamp):
    # each pixel's error grows with sigma (clamping keeps that monotone), so PSNR must fall
    target = _rand((2, 3, 16, 16), seed=11)
    noise = torch.randn(target.shape, generator=_gen(12), dtype=target.dtype)
    sigmas = torch.logspace(-3, 0.3, 25, dtype=target.dtype)
    values = []
    for s in sigmas:
        pred = target + s * noise
        values.append(M.psnr(pred.clamp(0, 1) if clamp else pred, target))
    values = torch.stack(values)  # (n_sigmas, B)
    assert (values[1:] < values[:-1]).all()
    if not clamp:  # mse scales exactly with sigma^2
        step = 20 * torch.log10(sigmas[1:] / sigmas[:-1])
        assert torch.allclose(values[:-1] - values[1:], step[:, None].expand(-1, 2))
