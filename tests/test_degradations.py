"""genapps.degradations: each op's statistics (kernel sums and sigmas, noise std, JPEG blocks,
resize sizes), the second-order model's shapes, ranges and determinism, and its two users
(`pairs --kind realworld`, `train sr --degrade realworld`)."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import photo
from genapps import degradations as D
from genapps.tasks.translate import pairs
from genapps.tasks.upscale import training


def _moments(k: np.ndarray) -> np.ndarray:
    """The 2x2 covariance (x = column, y = row) of a kernel taken as a distribution."""
    xx, yy = D._grid(k.shape[0])
    return np.array([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])


def test_isotropic_gaussian_kernel_sums_to_one_and_has_its_sigma():
    k = D.gaussian_kernel(41, 2.5)
    assert k.shape == (41, 41) and k.dtype == np.float32
    assert abs(k.sum() - 1) < 1e-5 and np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])
    assert np.allclose(_moments(k), np.diag([2.5 ** 2] * 2), atol=1e-3)
    assert k.argmax() == k.size // 2  # centred


def test_anisotropic_gaussian_kernel_has_the_rotated_covariance():
    theta, sx, sy = 0.6, 3.0, 1.2
    k = D.gaussian_kernel(51, sx, sy, theta)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    assert abs(k.sum() - 1) < 1e-5
    assert np.allclose(_moments(k), rot @ np.diag([sx ** 2, sy ** 2]) @ rot.T, atol=2e-3)


def test_generalized_and_plateau_kernels():
    g1 = D.gaussian_kernel(21, 2.0, 1.5, 0.3, beta=1.0, shape="generalized")
    assert np.allclose(g1, D.gaussian_kernel(21, 2.0, 1.5, 0.3), atol=1e-7)  # beta 1 = Gaussian
    flat, peaked = (D.gaussian_kernel(41, 2.0, beta=b, shape="generalized") for b in (4.0, 0.5))
    for k in (flat, peaked, D.gaussian_kernel(21, 2.0, 1.0, 1.0, beta=1.5, shape="plateau")):
        assert abs(k.sum() - 1) < 1e-5 and (k >= 0).all() and k.argmax() == k.size // 2
    centre = 41 // 2
    # beta > 1: a flat top (the values near the centre stay close to the peak); beta < 1: a sharp peak
    assert flat[centre, centre + 1] / flat.max() > 0.99 and peaked[centre, centre + 1] / peaked.max() < 0.8
    with pytest.raises(ValueError, match="gaussian, generalized or plateau"):
        D.gaussian_kernel(7, 1.0, shape="box")


def test_sinc_kernel_rings_and_pads():
    k = D.sinc_kernel(21, np.pi / 3)
    assert abs(k.sum() - 1) < 1e-5 and k.argmax() == k.size // 2 and k.min() < 0  # negative lobes: ringing
    padded = D.sinc_kernel(7, np.pi / 2, pad_to=21)
    assert padded.shape == (21, 21) and abs(padded.sum() - 1) < 1e-5 and padded[:7].sum() == 0
    with pytest.raises(ValueError, match="odd"):
        D.sinc_kernel(8, 1.0)


def test_random_kernels_are_padded_normalised_kernels():
    r = D.REALESRGAN
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = D.random_kernel(rng, r.kernel_sizes, r.kernel_probs, r.blur_sigma, r.betag, r.betap, 0.3)
        assert k.shape == (21, 21) and abs(k.sum() - 1) < 1e-4


def test_filter2d_delta_is_identity_and_blur_keeps_the_mean():
    x = photo((40, 50)).astype(np.float32) / 255
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    assert np.allclose(D.filter2d(x, delta), x)
    shifted = np.zeros((3, 3), np.float32)
    shifted[1, 2] = 1  # a convolution (flipped kernel): output(y, x) = input(y, x - 1)
    assert np.allclose(D.filter2d(x, shifted)[:, 1:], x[:, :-1])
    blurred = D.filter2d(x, D.gaussian_kernel(9, 1.5))
    assert blurred.shape == x.shape and abs(blurred.mean() - x.mean()) < 2e-3 and blurred.std() < x.std()


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(13, 29), (80, 61)])
def test_resize_hits_its_size(mode, size):
    x = photo((40, 50)).astype(np.float32) / 255
    y = D.resize(x, size, mode)
    assert y.shape == (*size, 3) and y.dtype == np.float32
    assert abs(y.mean() - x.mean()) < 0.02
    with pytest.raises(ValueError, match="area, bilinear, bicubic"):
        D.resize(x, size, "nearest")


@pytest.mark.parametrize("gray", [False, True])
def test_gaussian_noise_has_its_std(gray):
    x = np.full((200, 200, 3), 0.5, np.float32)
    y = D.add_gaussian_noise(x, 0.05, gray, np.random.default_rng(0))
    noise = y - x
    assert abs(noise.std() - 0.05) < 0.002 and abs(noise.mean()) < 0.002
    if gray:
        assert np.array_equal(noise[..., 0], noise[..., 2])
    else:
        assert abs(np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]) < 0.03
    assert D.add_gaussian_noise(np.ones_like(x), 0.3, gray, np.random.default_rng(0)).max() <= 1  # clamped


@pytest.mark.parametrize("gray", [False, True])
def test_poisson_noise_is_shot_noise(gray):
    """Variance scale^2 * x / levels (levels = 256 for an 8-bit image using many values)."""
    rng = np.random.default_rng(0)
    x = np.tile(np.linspace(0.2, 0.8, 200, dtype=np.float32)[None, :, None], (300, 1, 3))
    x = np.round(x * 255) / 255
    y = D.add_poisson_noise(x, 2.0, gray, rng)
    noise = (y - x)[..., 1]
    expect = 2.0 ** 2 * x[..., 1].mean() / 256
    assert abs(noise.var() / expect - 1) < 0.05 and abs(noise.mean()) < 0.002
    if gray:
        assert np.array_equal((y - x)[..., 0], (y - x)[..., 1])
    brighter = (y - x)[:, 150:, 1].std() > (y - x)[:, :50, 1].std()
    assert brighter  # shot noise grows with the signal


def test_jpeg_makes_8x8_blocks():
    """At low quality, jumps across block boundaries (every 8 px) are larger than inside blocks."""
    x = photo((128, 128), seed=3).astype(np.float32) / 255
    y = D.jpeg(x, 10)
    assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    d = np.abs(np.diff(y.mean(2), axis=1)).mean(0)  # mean horizontal jump between columns j and j+1
    boundary = d[7::8].mean()
    inside = np.delete(d, np.arange(7, d.size, 8)).mean()
    assert boundary > 1.5 * inside
    assert np.abs(D.jpeg(x, 95) - x).mean() < np.abs(y - x).mean()


def test_realworld_shapes_ranges_and_determinism():
    hr = photo((96, 128), seed=1)
    lr = D.realworld(hr, D.file_rng(0, "a/b"))
    assert lr.shape == (24, 32, 3) and lr.dtype == np.uint8
    assert np.array_equal(lr, D.realworld(hr, D.file_rng(0, "a/b")))  # seeded
    others = [D.realworld(hr, D.file_rng(s, k)) for s, k in [(1, "a/b"), (0, "a/c")]]
    assert all(not np.array_equal(lr, o) for o in others)
    assert D.realworld(hr[..., :1], D.file_rng(0, "g")).shape == (24, 32, 1)  # grey
    same = D.realworld(hr, D.file_rng(0, "s"), D.RealWorld(scale=1))
    assert same.shape == hr.shape
    # the degradation is strong: far from a plain downscale on average, but the same picture
    plain = np.asarray(Image.fromarray(hr).resize((32, 24), Image.BICUBIC)).astype(float)
    lrs = [D.realworld(hr, D.file_rng(0, "k", i)).astype(float) for i in range(8)]
    errors = [np.abs(x - plain).mean() for x in lrs]
    assert 2 < np.mean(errors) < 60 and all(abs(x.mean() - plain.mean()) < 25 for x in lrs)


def test_realworld_ranges_are_checked():
    assert D.REALESRGAN.noise_sigma == (1.0, 30.0) and D.REALESRGAN.final_sinc_prob == 0.8
    with pytest.raises(ValueError, match="sum to 1"):
        D.RealWorld(resize_probs=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="odd"):
        D.RealWorld(kernel_sizes=(7, 8))
    with pytest.raises(ValueError, match="smaller than the scale"):
        D.realworld(np.zeros((3, 3, 3), np.uint8), np.random.default_rng(0))


def test_first_order_degrade_is_the_one_pairs_uses():
    assert pairs.degrade is D.degrade and pairs.file_rng is D.file_rng and pairs.DEGRADE_RANGES is D.DEGRADE_RANGES
    rgb = photo((32, 40))
    a = D.degrade(rgb, **D.random_degradation(D.file_rng(0, "k")), rng=D.file_rng(0, "k"))
    assert a.shape == rgb.shape and a.dtype == np.uint8


def test_pairs_realworld_keeps_the_photo_size(tmp_path, cli, photo_dir):
    assert cli("pairs", photo_dir, tmp_path / "p", "--kind", "realworld").exit_code == 0
    a = np.asarray(Image.open(tmp_path / "p/A/sub/c.png"))
    b = np.asarray(Image.open(tmp_path / "p/B/sub/c.png"))
    assert a.shape == b.shape == (48, 64, 3) and not np.array_equal(a, b)
    assert cli("pairs", photo_dir, tmp_path / "q", "--kind", "realworld").exit_code == 0
    assert np.array_equal(a, np.asarray(Image.open(tmp_path / "q/A/sub/c.png")))  # seeded per file


def test_train_sr_realworld_batches_and_validation():
    images = [torch.from_numpy(photo((64, 64), seed=i)).permute(2, 0, 1).contiguous() for i in range(2)]
    cfg = training.SRTrainConfig(data=".", out="m.safetensors", scale=4, patch=12, batch_size=3, degrade="realworld")
    lr, hr = training.make_batches(images, cfg, torch.Generator().manual_seed(0))()
    again, _ = training.make_batches(images, cfg, torch.Generator().manual_seed(0))()
    assert lr.shape == (3, 3, 12, 12) and hr.shape == (3, 3, 48, 48) and torch.equal(lr, again)
    assert torch.equal(lr, (lr * 255).round() / 255) and 0 <= lr.min() and lr.max() <= 1
    real = training.SRTrainConfig(data=".", out="m.safetensors", scale=2, patch=12, batch_size=2, degrade="real")
    lr, hr = training.make_batches(images, real, torch.Generator().manual_seed(0))()
    assert lr.shape == (2, 3, 12, 12) and hr.shape == (2, 3, 24, 24)
