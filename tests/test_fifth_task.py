"""Adding an application is one folder and one line in the task table: a tiny task registered in
genapps.tasks.TASKS gets its command, options, report view and pipeline stage with no other change."""

import json

import numpy as np
import pytest
from PIL import Image

from genapps import tasks


@pytest.fixture
def posterize_registered(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, "posterize", "template_task:SPEC")  # the one line


def test_the_new_task_has_a_command_with_its_config_as_options(posterize_registered, cli):
    listing = cli("--help").output
    assert "posterize" in listing and "Keep a few bits per channel" in listing
    helped = cli("posterize", "--help")
    assert helped.exit_code == 0
    for option in ("--bits", "--ext", "--suffix", "--quality", "--overwrite", "--fail-fast", "--report",
                   "--no-report", "--shard", "--device", "Bits kept per channel."):
        assert option in helped.output, option
    bad = cli("posterize", "in", "out", "--bits", "9")
    assert bad.exit_code == 2 and "9" in bad.output


def test_the_new_task_runs_through_the_cli(posterize_registered, cli, photo_dir, tmp_path):
    out = tmp_path / "out"
    result = cli("posterize", photo_dir, out, "--bits", "1")
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(out / "a.png"))
    assert set(np.unique(image)) <= {0, 255}
    assert (out / "sub" / "c.png").is_file() and (out / "b.jpg").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["stages"][0]["task"] == "posterize" and report["stages"][0]["stats"]["ok"] == 3
    again = cli("posterize", photo_dir, out, "--bits", "2")  # other settings: refused, nothing replaced
    assert again.exit_code != 0 and "bits" in again.output
    assert set(np.unique(np.asarray(Image.open(out / "a.png")))) <= {0, 255}


def test_the_new_task_is_a_pipeline_stage_with_its_report_view(posterize_registered, cli, photo_dir, tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(f"""
name: poster
input: {photo_dir}
output: {tmp_path / "run"}
stages:
  - task: posterize
    options: {{bits: 2}}
  - name: measured
    task: evaluate
    input: posterize
    options: {{reference: {photo_dir}}}
""")
    result = cli("run", yaml_file)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Input | posterized" in page  # the View the task declared
    doc = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [s["task"] for s in doc["stages"]] == ["posterize", "evaluate"]
    assert doc["stages"][1]["stats"]["metrics"]["psnr"]["mean"] < 40  # 2 bits per channel lose detail
    yaml_file.write_text(yaml_file.read_text().replace("{bits: 2}", "{bits: 2, colours: 5}"))
    refused = cli("run", yaml_file)
    assert refused.exit_code == 2 and "unknown option(s) colours" in refused.output


def test_listing_the_commands_imports_no_task():
    """`genapps --help` and `genapps train --help` read the specs (genapps/tasks/<task>/__init__.py),
    not the task modules: no torch."""
    import subprocess
    import sys

    code = ("import sys; from genapps.cli import main\n"
            "for args in (['--help'], ['train', '--help']):\n"
            "    try: main(args)\n"
            "    except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "upscale" in out.stdout and "pix2pix" in out.stdout
