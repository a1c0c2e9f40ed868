"""The command line: evaluate agrees with scikit-image, --help stays light, info, devices."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.data import astronaut
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from genapps.device import select_device


@pytest.fixture
def pred_ref(tmp_path):
    """Real photo crops and degraded copies, saved as 8-bit PNG (what users evaluate)."""
    rng = np.random.default_rng(0)
    (tmp_path / "ref" / "s").mkdir(parents=True)
    (tmp_path / "pred" / "s").mkdir(parents=True)
    img = astronaut()
    pairs = {}
    for i, name in enumerate(["a", "b", "s/c"]):
        ref = img[40 * i:40 * i + 72, 60 * i:60 * i + 80]
        pred = np.clip(ref + rng.normal(0, 8 + 4 * i, ref.shape), 0, 255).astype(np.uint8)
        Image.fromarray(ref).save(tmp_path / "ref" / f"{name}.png")
        Image.fromarray(pred).save(tmp_path / "pred" / f"{name}.png")
        pairs[name] = (pred, ref)
    return tmp_path, pairs


def skimage_scores(pred, ref, y=False, border=0):
    if y:
        pred, ref = (rgb2ycbcr(x)[..., 0] / 255 for x in (pred, ref))
        axis = None
    else:
        pred, ref, axis = pred / 255, ref / 255, 2
    if border:
        pred, ref = pred[border:-border, border:-border], ref[border:-border, border:-border]
    return (peak_signal_noise_ratio(ref, pred, data_range=1.0),
            structural_similarity(ref, pred, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, channel_axis=axis))


@pytest.mark.parametrize("flags,y,border", [((), False, 0), (("--y-channel", "--crop-border", "4"), True, 4)])
def test_evaluate_matches_skimage(cli, pred_ref, flags, y, border):
    root, pairs = pred_ref
    result = cli("evaluate", root / "pred", root / "ref", *flags, "--out", root / "report")
    assert result.exit_code == 0, result.output
    records = json.loads((root / "report" / "report.json").read_text())["stages"][0]["records"]
    assert len(records) == 3
    for r in records:
        name = r["output"].split("pred/")[1].removesuffix(".png")
        psnr, ssim = skimage_scores(*pairs[name], y=y, border=border)
        assert abs(r["metrics"]["psnr"] - psnr) < 1e-3 and abs(r["metrics"]["ssim"] - ssim) < 1e-3


def test_evaluate_with_masks_measures_inside_only(cli, pred_ref):
    root, pairs = pred_ref
    for name in pairs:
        mask = np.zeros((72, 80), np.uint8)
        mask[10:40, 20:60] = 255
        (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    result = cli("evaluate", root / "pred", root / "ref", "--masks", root / "masks", "--report", root / "pred")
    assert result.exit_code == 0
    rec = json.loads((root / "pred" / "report.json").read_text())["stages"][0]["records"][0]
    pred, ref = pairs["a"]
    inside = peak_signal_noise_ratio(ref[10:40, 20:60] / 255, pred[10:40, 20:60] / 255, data_range=1.0)
    assert abs(rec["metrics"]["psnr"] - inside) < 1e-3 and "mae" in rec["metrics"]


def test_help_is_light():
    code = "import sys; from genapps.cli import main; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_info_lists_bundled_weights(cli):
    from genapps import weights

    result = cli("info")
    assert result.exit_code == 0 and "devices: cpu" in result.output
    for name in weights.bundled_weights():
        assert name in result.output


def test_device_selection():
    assert select_device("auto").type in ("cpu", "cuda")
    assert select_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="use auto, cpu"):
        select_device("tpu")


def test_ci_runs_exactly_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    ci_command = (root / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in (root / "README.md").read_text()
