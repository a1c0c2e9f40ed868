"""report.html really renders: every embedded image decodes, the tables hold the right rows, the
sort script is there (and sorts, in a real headless Chromium when one is installed)."""
import base64
import io
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genapps.records import Record, StageResult
from genapps.report import CROP, failure_line, pick_region, write_report
from genapps.tasks import load_spec
from tests.conftest import photo

CHROMIUM = Path("/usr/bin/chromium")
HR_NAMES = ["a.png", "b.png", "sub/c.png"]


class Page(HTMLParser):
    """The parts of report.html the tests look at: images, scripts, tables (cells with data-v), headings."""

    def __init__(self, text: str):
        super().__init__()
        self.imgs, self.scripts, self.tables, self.headings, self.captions = [], [], {}, [], []
        self._stack, self._script, self._cell, self._text = [], None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "script":
            self._script = ""
        elif tag == "table":
            key = a.get("id") or a.get("class") or f"table{len(self.tables)}"
            self.tables[key] = table = {"class": a.get("class", ""), "head": [], "rows": []}
            self._stack.append(table)
        elif tag == "tr" and self._stack:
            self._row = []
            self._stack[-1]["rows"].append(self._row)
        elif tag in ("td", "th") and self._stack:
            self._cell = {"tag": tag, "text": "", "v": a.get("data-v"), "imgs": 0, "attrs": a}
            self._row.append(self._cell)
        elif tag in ("h2", "h3", "figcaption"):
            self._text = ""
        if tag == "img" and self._cell is not None:
            self._cell["imgs"] += 1

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append(self._script)
            self._script = None
        elif tag == "table" and self._stack:
            self._stack.pop()
        elif tag in ("td", "th"):
            self._cell = None
        elif tag in ("h2", "h3") and self._text is not None:
            self.headings.append(self._text.strip())
            self._text = None
        elif tag == "figcaption" and self._text is not None:
            self.captions.append(self._text.strip())
            self._text = None

    def handle_data(self, data):
        if self._script is not None:
            self._script += data
        if self._cell is not None:
            self._cell["text"] += data
        if self._text is not None:
            self._text += data

    def body_rows(self, key):
        """Rows made of td cells (header rows of th only are left out)."""
        return [r for r in self.tables[key]["rows"] if any(c["tag"] == "td" for c in r)]


def check_images(page: Page) -> list[Image.Image]:
    """Every <img> is an inline data: URI that PIL decodes; returns the decoded images."""
    out = []
    for img in page.imgs:
        src = img["src"]
        assert src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), src[:40]
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        im.load()
        assert im.width > 0 and im.height > 0
        out.append(im)
    return out


@pytest.fixture
def sr_pipeline(tmp_path, cli):
    """downscale x4 -> bicubic x4 (--reference HR) -> evaluate, on three 128x160 photos and one broken file."""
    hr = tmp_path / "hr"
    for i, name in enumerate(HR_NAMES):
        (hr / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo((128, 160), seed=i)).save(hr / name)
    (hr / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"""name: look
input: {hr}
output: {tmp_path / 'run'}
stages:
  - name: lr
    task: downscale
    options: {{scale: 4}}
  - name: bicubic
    task: upscale
    options: {{model: bicubic, scale: 4, reference: {hr}}}
  - name: eval
    task: evaluate
    options: {{reference: {hr}, y_channel: true, crop_border: 4}}
""")
    result = cli("run", yaml)
    return tmp_path / "run", result


def test_pipeline_page(sr_pipeline):
    run, result = sr_pipeline
    assert result.exit_code == 1  # the broken file failed
    text = (run / "report.html").read_text()
    page = Page(text)
    imgs = check_images(page)
    assert "http://" not in text and "https://" not in text and 'src="//' not in text  # self-contained

    # one table comparing the three stages, first on the page
    assert page.headings[:2] == ["Stages", "Per image"]
    stages = page.body_rows("grid compare")
    assert [r[0]["text"] for r in stages] == ["lr", "bicubic", "eval"]
    assert [r[1]["text"] for r in stages] == ["downscale", "upscale", "evaluate"]
    head = " ".join(c["text"] for r in page.tables["grid compare"]["rows"][:2] for c in r)
    assert "PSNR (Y) dB" in head and "PSNR dB" in head and "images/s" in head and "median" in head
    assert [r[-2]["text"] for r in stages] == ["1", "0", "0"]  # failed: the broken file, in lr only

    # per-image table: a row per image, a column per measured stage, worst first, sortable
    rows = page.body_rows("per-image")
    heads = [c["text"] for c in page.tables["per-image"]["rows"][0]]
    assert heads[0] == "file" and heads[1].startswith("bicubic") and heads[2].startswith("eval")
    assert sorted(r[0]["text"] for r in rows) == ["a", "b", "sub/c"]
    worst_first = [float(r[2]["v"]) for r in rows]
    assert worst_first == sorted(worst_first)
    assert page.tables["per-image"]["rows"][0][2]["attrs"].get("aria-sort") == "ascending"
    assert any("sortable" in s and "addEventListener" in s for s in page.scripts)
    doc = json.loads((run / "report.json").read_text())
    assert [c["stage"] for c in doc["per_image"]["columns"]] == ["bicubic", "eval"]
    assert [s["main_metric"] for s in doc["stages"]] == [None, "psnr_y", "psnr"]

    # rows: input | output | reference with 1:1 crops; evaluate says prediction | reference
    assert "Input | output | reference (3 of 3)" in page.headings
    assert "Prediction | reference (3 of 3)" in page.headings
    assert "input ×4 nearest" in page.captions and "output 1:1" in page.captions
    assert "prediction 1:1" in page.captions and "reference 1:1" in page.captions
    assert not any(c.startswith(("before", "after")) for c in page.captions)
    crops = [im for im, a in zip(imgs, page.imgs) if a.get("alt", "").endswith(" crop")]
    assert len(crops) == 3 * 3 + 3 * 2 and {im.size for im in crops} == {(CROP, CROP)}
    assert "largest local error" in text and "PSNR (Y) dB" in text and "output MP/s" in text

    # the failure names the file once, on the page and on the terminal
    items = [re.sub("<[^>]+>", "", li) for li in re.findall(r"<li>.*?</li>", text)]  # as shown
    assert len(items) == 1 and items[0].count("broken.png") == 1
    lines = [ln for ln in result.stderr.splitlines() if "failed:" in ln]
    assert len(lines) == 1 and lines[0].count("broken.png") == 1


def test_failures_name_the_file_once(tmp_path):
    src, pred = tmp_path / "in" / "x.png", tmp_path / "pred" / "y.png"
    up = StageResult("up", "upscale", str(src.parent), str(tmp_path / "out"), {}, [
        Record(str(src), None, "error", f"{src}: {src}: cannot identify image", {}, 0.0)], 0.1)
    ev = StageResult("ev", "evaluate", str(pred.parent), str(pred.parent), {}, [
        Record(str(tmp_path / "ref" / "y.png"), str(pred), "error", "sizes differ", {}, 0.0)], 0.1,
        view=load_spec("evaluate").view)  # what run_task and pipelines attach
    assert failure_line(up, up.records[0]) == f"{src}: cannot identify image"
    assert failure_line(ev, ev.records[0]) == f"{pred}: sizes differ"  # evaluate: the prediction is the file
    text = write_report(tmp_path / "rep", [up, ev], {})[1].read_text()
    items = [re.sub("<[^>]+>", "", li) for li in re.findall(r"<li>.*?</li>", text)]  # as shown
    assert [i.count(".png") for i in items] == [1, 1] and "x.png" in items[0] and "y.png" in items[1]


def test_evaluate_with_masks_shows_a_mask_column(tmp_path, cli):
    """Extra images per record (here evaluate's masks) are columns and crops like the reference."""
    pred, ref, masks = tmp_path / "pred", tmp_path / "ref", tmp_path / "masks"
    for d in (pred, ref, masks):
        d.mkdir()
    for i in range(2):
        img = photo((120, 120), seed=i)
        Image.fromarray(img).save(ref / f"{i}.png")
        img[40:70, 50:90] = 0  # a hole the prediction got wrong: the crop must show it
        Image.fromarray(img).save(pred / f"{i}.png")
        m = np.zeros((120, 120), np.uint8)
        m[30:80, 40:100] = 255
        Image.fromarray(m).save(masks / f"{i}.png")
    result = cli("evaluate", pred, ref, "--masks", masks, "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    page = Page((tmp_path / "rep" / "report.html").read_text())
    check_images(page)
    assert "Prediction | reference | mask (2 of 2)" in page.headings
    assert page.captions.count("mask 1:1") == 2
    assert "Stages" not in page.headings  # one stage: no comparison table
    assert len(page.body_rows("per-image")) == 2


def test_pick_region_goes_to_the_error_else_to_the_detail():
    rng = np.random.default_rng(0)
    ref = np.full((200, 300, 3), 128, np.uint8)
    out = ref.copy()
    out[120:150, 220:260] = 0  # the error
    box, how = pick_region(Image.fromarray(out), Image.fromarray(ref))
    x, y, w, h = box
    assert (w, h) == (CROP, CROP) and "error" in how
    assert x <= 220 and 260 <= x + w and y <= 120 and 150 <= y + h
    flat = ref.copy()
    flat[10:50, 20:70] = rng.integers(0, 255, (40, 50, 3))  # the only detail
    box, how = pick_region(Image.fromarray(flat))
    x, y, w, h = box
    assert "detail" in how and x <= 20 and 70 <= x + w and y <= 10 and 50 <= y + h
    small = Image.fromarray(ref[:40, :60])
    assert pick_region(small)[0] == (0, 0, 60, 40)  # never larger than the image


def test_augment_rows_pair_each_class_with_its_synthetic_samples(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    records = []
    for k, cls in enumerate(["cat", "dog"]):
        (data / cls).mkdir(parents=True)
        (out / cls).mkdir(parents=True)
        reals = []
        for i in range(6):
            p = data / cls / f"r{i}.png"
            Image.fromarray(np.full((20, 20), 40 * k + i, np.uint8)).save(p)
            reals.append(p)
        for i in range(10):
            q = out / cls / f"cvae_s0_{i:05d}.png"
            Image.fromarray(np.full((20, 20), 200 - i, np.uint8)).save(q)
            records.append(Record(str(reals[i % 6]), str(q), "ok", None, {"filter_confidence": 0.9}, 0.01))
    stage = StageResult("augment", "augment", str(data), str(out), {"model": "cvae"}, records, 1.0,
                        {"real_per_class": {"cat": 6, "dog": 6}, "synthetic_per_class": {"cat": 10, "dog": 10}},
                        view=load_spec("augment").view)  # what run_task and pipelines attach
    _, hp = write_report(tmp_path / "rep", [stage], {})
    page = Page(hp.read_text())
    imgs = check_images(page)
    assert "Real | synthetic per class" in page.headings
    rows = page.body_rows("grid cls")
    assert [r[0]["text"] for r in rows] == ["cat6 real, 10 synthetic", "dog6 real, 10 synthetic"]
    assert [(r[1]["imgs"], r[2]["imgs"]) for r in rows] == [(4, 8), (4, 8)]
    assert {im.size for im in imgs} == {(80, 80)}  # 20 px digits, nearest-upscaled x4 (tiny sources)
    assert "filter confidence 0.9" in hp.read_text()  # human label in the image titles
    assert not any(c.startswith(("input", "before")) for c in page.captions)


def _chromium(*args, tmp: Path) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (headless screenshot check skipped)")
def test_chromium_renders_and_sorts(sr_pipeline, tmp_path):
    run, _ = sr_pipeline
    html_path = run / "report.html"
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,2000", html_path.resolve().as_uri(), tmp=tmp_path)
    im = Image.open(shot).convert("RGB")
    assert im.size == (1200, 2000)
    a = np.asarray(im)
    assert a.std() > 20 and len(np.unique(a.reshape(-1, 3), axis=0)) > 1000  # text, tables and photos drawn

    def after_clicks(script: str) -> list:
        clicked = tmp_path / "clicked.html"
        clicked.write_text(html_path.read_text().replace("</body>", f"<script>{script}</script></body>"))
        return Page(_chromium("--dump-dom", clicked.resolve().as_uri(), tmp=tmp_path).stdout).body_rows("per-image")

    # the "file" header sorts by name; the bicubic header once: worst (lowest PSNR) first, twice: best first
    assert [r[0]["text"] for r in after_clicks("document.querySelector('#per-image th').click()")] == \
        ["a", "b", "sub/c"]
    rows = after_clicks("var th = document.querySelectorAll('#per-image th')[1]; th.click(); th.click();")
    best_first = [float(r[1]["v"]) for r in rows]
    assert best_first == sorted(best_first, reverse=True) and best_first[0] > best_first[-1]


def test_rows_show_the_worst_images_and_the_table_links_to_them(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    records = []
    for i in range(10):
        Image.fromarray(photo((16, 16), seed=i)).save(src / f"{i}.png")
        Image.fromarray(photo((32, 32), seed=i)).save(dst / f"{i}.png")
        psnr = [30, 21, 33, 20, 35, 36, 22, 31, 32, 34][i]
        records.append(Record(str(src / f"{i}.png"), str(dst / f"{i}.png"), "ok", None, {"psnr": float(psnr)}, 0.1))
    stage = StageResult("up", "upscale", str(src), str(dst), {}, records, 1.0)
    text = write_report(tmp_path / "rep", [stage], {}, sample=6)[1].read_text()
    page = Page(text)
    check_images(page)
    assert "Input | output (6 of 10: the 3 worst by PSNR dB, the others spread)" in page.headings
    worst = re.findall(r'<span class="worst">worst</span> <b>(\d)</b>', text)
    assert sorted(worst) == ["1", "3", "6"]  # PSNR 21, 20, 22
    rows = page.body_rows("per-image")
    assert [r[0]["text"] for r in rows[:3]] == ["3", "1", "6"] and len(rows) == 10
    links = dict(re.findall(r'<td data-v="[^"]*"><a href="#(s0-r\d)">([\d.]+)</a></td>', text))
    assert len(links) == 6 and all(f'<div class="rec" id="{a}">' in text for a in links)


def test_tiny_sources_are_nearest_upscaled_to_the_row_height(tmp_path):
    """28 px digits x4: the 112 px output is shown at its own size, the input nearest-upscaled x4 to it."""
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    Image.fromarray(photo((28, 28))).save(src / "d.png")
    Image.fromarray(photo((112, 112))).save(dst / "d.png")
    stage = StageResult("up", "upscale", str(src), str(dst), {}, [
        Record(str(src / "d.png"), str(dst / "d.png"), "ok", None, {}, 0.1)], 1.0)
    page = Page(write_report(tmp_path / "rep", [stage], {})[1].read_text())
    imgs = check_images(page)
    thumbs = {a["alt"]: (im, a) for im, a in zip(imgs, page.imgs)}
    assert thumbs["input"][0].size == (112, 112) and thumbs["input"][1].get("class") == "px"
    assert thumbs["output"][0].size == (112, 112) and "class" not in thumbs["output"][1]
    assert thumbs["input crop"][0].size == (CROP, CROP)  # 96 px of the output; the input's 24 px, x4 nearest
    assert "input ×4 nearest" in page.captions


def test_an_input_of_another_shape_gets_no_crop(tmp_path):
    """A side-by-side A|B input (pix2pix data) does not cover the output's scene: no squashed crop of it."""
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    Image.fromarray(photo((128, 256))).save(src / "ab.png")
    Image.fromarray(photo((128, 128), seed=1)).save(dst / "ab.png")
    stage = StageResult("tr", "translate", str(src), str(dst), {}, [
        Record(str(src / "ab.png"), str(dst / "ab.png"), "ok", None, {"l1": 0.1}, 0.1)], 1.0,
        view=load_spec("translate").view)  # translate declares L1 (lower is better) and ranks by it
    text = write_report(tmp_path / "rep", [stage], {})[1].read_text()
    page = Page(text)
    check_images(page)
    assert [c for c in page.captions if "crop" in c or "1:1" in c or "nearest" in c] == ["output 1:1"]
    assert "L1" in page.tables["per-image"]["rows"][0][1]["text"]
