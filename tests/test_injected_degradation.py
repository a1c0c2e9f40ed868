"""Restoration pairs from unpaired data (issue 29): the degradation of a folder of degraded photos
estimated without their originals (genapps.degradations.injected_from: noise patches of flat
regions, a blur range fitted on the spectrum) and `train pix2pix --synthesize injected`."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from genapps import degradations as D
from genapps.tasks.translate.training import JitterConfig, synthesized_batches


def scene(seed: int, size: int = 160) -> np.ndarray:
    """(size, size, 3) uint8, size a multiple of 5: a smooth gradient on the left half (flat at 16 px), sharp
    random texture (stripes and edges) on the right."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    left = 60 + 0.4 * y[:, :, None] + 20 * np.arange(3)[None, None] + 0 * x[:, :, None]
    blocks = rng.uniform(40, 220, (size // 5, size // 5, 3)).repeat(5, 0).repeat(5, 1)  # off JPEG's 8-px grid
    right = blocks + 30 * np.sin(x / 1.3 + rng.uniform(0, 6))[:, :, None]
    out = np.where((x < size // 2)[:, :, None], left, right)
    return np.clip(out, 0, 255).astype(np.uint8)


def add_noise(im: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noisy = im.astype(np.float32) + np.random.default_rng(seed).normal(0, sigma, im.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def test_noise_patches_come_from_flat_regions_and_carry_the_noise():
    p = D.NOISE_PATCH
    patches = D.noise_patches(add_noise(scene(0), 6.0, 1))
    assert patches.ndim == 4 and patches.shape[1:] == (p, p, 3) and len(patches) >= 8
    assert abs(float(patches.std()) - 6.0) < 0.9  # the noise, not the texture (whose std is ~50)
    assert np.abs(patches.mean(axis=(1, 2))).max() < 1e-3  # the plane (and mean) removed
    clean = D.noise_patches(scene(0))
    assert float(np.abs(clean).max()) < 1.0  # a noiseless gradient: no noise (within 8-bit rounding)
    assert len(D.noise_patches(np.zeros((8, 8, 3), np.uint8))) == 0  # smaller than a patch


def test_noise_field_tiles_patches_on_the_grid():
    p = D.NOISE_PATCH
    patches = np.random.default_rng(0).normal(0, 1, (5, p, p, 3)).astype(np.float32)
    field = D.noise_field(patches, 40, 50, np.random.default_rng(1))
    assert field.shape == (40, 50, 3)
    versions = [np.ascontiguousarray(v) for q in patches for t in (q, q.transpose(1, 0, 2))
                for v in (t, t[::-1], t[:, ::-1], t[::-1, ::-1])]
    for y in (0, p):
        for x in (0, p, 2 * p):
            cell = field[y:y + p, x:x + p]
            assert any(np.array_equal(cell, v) for v in versions)  # one patch, flipped or transposed


def test_injected_from_fits_the_blur_and_copies_the_noise():
    clean = [scene(s) for s in range(6)]
    others = [scene(s) for s in range(10, 16)]  # the degraded photos are other scenes: no pairs
    blurred = [add_noise(cv2.GaussianBlur(im, (0, 0), 1.5), 4.0, s) for s, im in enumerate(others)]
    sharp = [add_noise(im, 4.0, s) for s, im in enumerate(others)]
    compressed = [D.jpeg_uint8(im, 25) for im in sharp]
    fit_blurred, fit_sharp = D.injected_from(blurred, clean), D.injected_from(sharp, clean)
    assert fit_blurred.blur_max >= 1.5 and fit_sharp.blur_max <= 0.5
    assert fit_sharp.jpeg_min == 0 or fit_sharp.jpeg_min >= 80  # no JPEG: none, or a light one
    assert 0 < D.injected_from(compressed, clean).jpeg_min <= 50
    assert abs(fit_sharp.summary()["noise_std"] - 4.0) < 0.8 and fit_sharp.summary()["noise_photos"] == 6
    rng = np.random.default_rng(0)
    made = fit_blurred(clean[0], rng)
    assert made.shape == clean[0].shape and made.dtype == np.uint8
    assert 2.0 < float(np.abs(made.astype(float) - clean[0]).mean()) < 30  # degraded, still the scene
    with pytest.raises(ValueError, match="no flat regions"):
        D.injected_from([np.zeros((8, 8, 3), np.uint8)], clean)


def test_blockiness_grows_with_jpeg():
    im = scene(3)
    plain, light, heavy = (D.blockiness(x) for x in (im, D.jpeg_uint8(im, 90), D.jpeg_uint8(im, 15)))
    assert abs(plain - 1) < 0.15 and heavy > light and heavy > 1.2


def test_synthesized_batches_take_a_degradation():
    clean = [scene(s, 80) for s in range(3)]
    model = D.InjectedDegradation((np.full((2, D.NOISE_PATCH, D.NOISE_PATCH, 3), 5.0, np.float32),), 0.0)
    a, b = synthesized_batches(clean, JitterConfig("crop", 0, 32), 2, model, seed=0)()
    assert a.shape == b.shape == (2, 3, 32, 32)
    assert np.allclose((a - b).numpy(), 5 / 255, atol=1e-6)  # + 5 everywhere (no pixel clips in these scenes)


def test_train_pix2pix_synthesize_injected(tmp_path, cli):
    data, noisy = tmp_path / "clean", tmp_path / "noisy"
    data.mkdir()
    noisy.mkdir()
    for s in range(4):
        Image.fromarray(scene(s)).save(data / f"c{s}.png")
        Image.fromarray(add_noise(scene(s + 10), 5.0, s)).save(noisy / f"n{s}.png")
    out = tmp_path / "r.safetensors"
    tiny = ["--netg", "nafnet", "--ngf", 4, "--num-downs", 2, "--blocks", 1, "--gan-weight", 0, "--preprocess", "crop",
            "--crop-size", 32, "--batch-size", 2, "--ema", 0, "--steps", 2, "--val-split", 1]
    r = cli("train", "pix2pix", "--data", data, "--synthesize", "injected", "--noise-from", noisy, "--out", out, *tiny)
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["injected_degradation"]["noise_photos"] == 4 and card["stages"][0]["synthesize"] == "injected"
    assert card["stages"][0]["noise_from"].startswith("4 files")
    assert card["validation_identity"]["val_identity_psnr"] < 60  # the held-out photo got the injected noise
    r = cli("train", "pix2pix", "--data", data, "--synthesize", "injected", "--out", out, *tiny)
    assert r.exit_code == 2 and "--noise-from" in r.output and "Traceback" not in r.output
    (tmp_path / "empty").mkdir()
    r = cli("train", "pix2pix", "--data", data, "--synthesize", "injected", "--noise-from", tmp_path / "empty",
            "--out", out, *tiny)
    assert r.exit_code == 2 and "no images" in r.output and "Traceback" not in r.output
