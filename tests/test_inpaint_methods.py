"""inpaint round 2's user requests: FSR (OpenCV-contrib) as --method fsr-fast / fsr-best, and --grow N."""

import numpy as np
import pytest
import torch
from PIL import Image

from genapps.tasks.inpaint import masks as M
from genapps.tasks.inpaint.classical import FSR_MISSING, fill
from genapps.tasks.inpaint.config import CLASSICAL

try:
    import cv2

    HAS_XPHOTO = hasattr(cv2, "xphoto")
except ImportError:  # pragma: no cover
    HAS_XPHOTO = False

needs_contrib = pytest.mark.skipif(not HAS_XPHOTO, reason="OpenCV without its contrib modules (cv2.xphoto)")


def _smooth(c=3, h=40, w=48):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([(0.2 + 0.6 * xx), (0.3 + 0.4 * yy), 0.5 * (xx + yy)][:c])


def test_fsr_methods_are_listed():
    assert {"fsr-fast", "fsr-best"} <= set(CLASSICAL)


@needs_contrib
@pytest.mark.parametrize("method", ["fsr-fast", "fsr-best"])
@pytest.mark.parametrize("channels", [3, 1])
def test_fsr_fills_smooth_images_and_keeps_the_outside(method, channels):
    image = _smooth(channels)
    mask = torch.zeros(40, 48, dtype=torch.bool)
    mask[12:22, 15:30] = True
    out = fill(method, torch.where(mask, torch.ones(()), image), mask)  # the hole's content is ignored
    assert out.shape == image.shape
    assert torch.equal(out[:, ~mask], torch.where(mask, torch.ones(()), image)[:, ~mask])
    assert (out[:, mask] - image[:, mask]).abs().mean() < 0.05


@pytest.mark.skipif(HAS_XPHOTO, reason="this OpenCV has its contrib modules")
def test_fsr_without_contrib_says_what_to_install():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:4, 2:4] = True
    with pytest.raises(RuntimeError, match="opencv-contrib-python-headless"):
        fill("fsr-fast", torch.rand(3, 8, 8), mask)
    assert "opencv-contrib-python-headless" in FSR_MISSING


def test_grow_dilates_by_a_disc():
    mask = torch.zeros(21, 21, dtype=torch.bool)
    mask[10, 10] = True
    assert torch.equal(M.grow(mask, 0), mask)
    grown = M.grow(mask, 3)
    assert grown[10, 7] and grown[10, 13] and grown[7, 10] and not grown[10, 6] and not grown[6, 6]
    assert int(grown.sum()) > 20
    empty = torch.zeros(5, 5, dtype=torch.bool)
    assert not M.grow(empty, 2).any()


def test_cli_grow_fills_the_edge_pixels_too(cli, photo_dir, tmp_path):
    m = np.zeros((48, 64), np.uint8)
    m[20:24, 30:34] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    out0, out3 = tmp_path / "g0", tmp_path / "g3"
    for out, grow in ((out0, 0), (out3, 3)):
        r = cli("inpaint", photo_dir, out, "--masks", tmp_path / "m.png", "--method", "telea", "--grow", grow)
        assert r.exit_code == 0, r.output
    src = np.asarray(Image.open(photo_dir / "a.png")).astype(int)
    a0 = np.asarray(Image.open(out0 / "a.png")).astype(int)
    a3 = np.asarray(Image.open(out3 / "a.png")).astype(int)
    ring = np.zeros((48, 64), bool)
    ring[17:27, 27:37] = True
    ring[20:24, 30:34] = False
    assert np.array_equal(a0[ring], src[ring])  # without --grow the ring is the input's
    assert not np.array_equal(a3[ring], src[ring])  # with --grow 3 it is filled
    far = np.ones((48, 64), bool)
    far[16:28, 26:38] = False
    assert np.array_equal(a3[far], src[far])  # and nothing beyond it changes
    r = cli("inpaint", photo_dir, tmp_path / "bad", "--masks", tmp_path / "m.png", "--grow", -1)
    assert r.exit_code == 2
