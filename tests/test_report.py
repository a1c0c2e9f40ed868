import json
import math

import numpy as np
import pytest
from PIL import Image

from genapps.records import Record, StageResult
from genapps.report import _sample, summarize, write_report


def _strict(name):
    raise ValueError(f"non-strict JSON constant {name}")


@pytest.fixture
def stage(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L").save(src / "digit.png")
    Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)).save(dst / "digit.png")
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(src / "photo.png")
    Image.fromarray(rng.integers(0, 255, (200, 300, 4), dtype=np.uint8), "RGBA").save(dst / "photo.png")
    Image.fromarray(rng.integers(0, 65535, (40, 40), dtype=np.uint16)).save(src / "deep.png")  # 16-bit grey
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(dst / "deep.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(src / "gone.png")
    (src / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (96, 64), "gray").save(tmp_path / "grid.png")
    records = [
        Record(str(src / "digit.png"), str(dst / "digit.png"), "ok", None,
               {"psnr": 30.0, "ssim": 0.9, "output_mp": 0.003136}, 0.5),
        Record(str(src / "photo.png"), str(dst / "photo.png"), "ok", None, {"psnr": 20.0, "ssim": 0.8}, 1.0),
        Record(str(src / "deep.png"), str(dst / "deep.png"), "ok", None, {"psnr": math.inf, "ssim": 1.0}, 0.25),
        Record(str(src / "gone.png"), str(dst / "missing.png"), "ok", None, {"psnr": 40.0, "ssim": 0.7}, 0.25),
        Record(str(src / "broken.png"), None, "error", "cannot read <b>broken</b> & co", {}, 0.01),
        Record(str(src / "old.png"), str(dst / "old.png"), "skipped", None, {}, 0.0),
    ]
    summary = {"accuracy": {"top1": 0.75, "per_class": [0.5, 1.0]}, "fid": math.nan, "best": math.inf}
    figures = [("interpolation grid", str(tmp_path / "grid.png")), ("lost", str(tmp_path / "nope.png"))]
    return StageResult("upscale", "upscale", str(src), str(dst), {"scale": 2}, records, 3.0, summary, figures)


def test_summarize_counts_and_means(stage):
    s = summarize(stage)
    assert (s["total"], s["ok"], s["error"], s["skipped"]) == (6, 4, 1, 1)
    psnr = s["metrics"]["psnr"]
    assert psnr["n"] == 3 and psnr["inf"] == 1  # inf excluded from mean, counted apart
    assert psnr["mean"] == pytest.approx((30 + 20 + 40) / 3) and psnr["median"] == pytest.approx(30.0)
    assert s["metrics"]["ssim"]["mean"] == pytest.approx((0.9 + 0.8 + 1.0 + 0.7) / 4)
    assert s["images_per_s"] == pytest.approx(4 / 2.0)  # ok records / their summed seconds
    assert s["output_mp"] == pytest.approx(0.003136) and s["mp_per_s"] == pytest.approx(0.003136 / 2.0)


def test_write_report(stage, tmp_path):
    out = tmp_path / "rep"
    jp, hp = write_report(out, [stage], {"pipeline": "demo", "gamma": math.inf}, title="demo <run>")
    assert jp.is_file() and hp.is_file()
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json"]  # no temp files left

    doc = json.loads(jp.read_text(), parse_constant=_strict)
    assert doc["title"] == "demo <run>" and doc["config"]["gamma"] == "inf"
    assert {"python", "genapps", "torch", "numpy", "pillow"} <= set(doc["versions"])
    st = doc["stages"][0]
    assert st["name"] == "upscale" and st["config"] == {"scale": 2}
    assert st["summary"]["fid"] is None and st["summary"]["best"] == "inf"
    assert st["stats"]["ok"] == 4 and st["stats"]["metrics"]["psnr"]["mean"] == pytest.approx(30.0)
    assert st["records"][2]["metrics"]["psnr"] == "inf" and len(st["records"]) == 6

    page = hp.read_text()
    assert "upscale" in page and "demo &lt;run&gt;" in page
    assert "cannot read &lt;b&gt;broken&lt;/b&gt; &amp; co" in page and "<b>broken</b>" not in page
    # 4 rows of 2 minus 1 missing output, 2 crops (only the 300 px photo is larger than a crop), 1 figure
    assert page.count('src="data:image/') == 7 + 2 + 1
    assert "picked by most detail" in page  # no reference: the crop goes where the detail is
    assert "missing or unreadable" in page and "missing: " in page
    assert 'src="http' not in page and "http://" not in page and "https://" not in page
    assert "top1" in page and "interpolation grid" in page
    assert len(page) < 2_000_000


def test_sample_evenly_spread():
    assert _sample(list(range(10)), 3) == [0, 4, 9]
    assert _sample(list(range(10)), 6) == [0, 2, 4, 5, 7, 9]
    assert _sample(list(range(4)), 6) == [0, 1, 2, 3] and _sample(list(range(4)), 0) == []
