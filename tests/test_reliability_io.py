"""Issue 12, the shared folder mechanisms: nothing written outside OUT, nothing stale, nothing
silently dropped, one line instead of a traceback (through the CLI)."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import photo


def one_error_line(result):
    """The CLI's one-line user error: exit 2, a single 'error: ...' line, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def pipeline(tmp_path, stages, extra=""):
    (tmp_path / "in").mkdir(parents=True, exist_ok=True)
    if not list((tmp_path / "in").iterdir()):
        Image.fromarray(photo((16, 16))).save(tmp_path / "in" / "a.png")
    path = tmp_path / "p.yaml"
    path.write_text(f"input: in\n{extra}stages:\n{stages}")
    return path


# ---------------------------------------------------------------- 1. stage names are one folder name


@pytest.mark.parametrize("name", ["../../victim", "/tmp/abs", ".", "..", "a/b", "a\\\\b", ".hidden",
                                  "report.html", "REPORT.json"])
def test_stage_name_must_be_one_plain_folder_name(tmp_path, cli, name):
    path = pipeline(tmp_path / "w", f"  - {{name: '{name}', task: downscale, options: {{scale: 2}}}}\n")
    out = tmp_path / "w" / "out"
    message = one_error_line(cli("run", path, "--out", out))
    assert "one plain folder name" in message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["w"]
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["in", "p.yaml"]


def test_pipeline_name_is_checked_when_it_names_the_output(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = pipeline(tmp_path, "  - {task: downscale, options: {scale: 2}}\n", extra="name: ../escape\n")
    assert "pipeline name" in one_error_line(cli("run", path))
    assert not (tmp_path.parent / "escape").exists()


# ---------------------------------------------------------------- 10. --set values, duplicate keys


@pytest.mark.parametrize("value", ["[1", "!!python/object/apply:os.system ['echo pwned']", "{a: 1, a: 2}"])
def test_bad_set_values_are_one_line(tmp_path, cli, value):
    path = pipeline(tmp_path, "  - {name: lr, task: downscale, options: {scale: 2}}\n")
    message = one_error_line(cli("run", path, "--out", tmp_path / "out", "--set", f"lr.scale={value}"))
    assert "--set" in message and not (tmp_path / "out").exists()


def test_duplicate_yaml_keys_are_rejected(tmp_path, cli):
    path = pipeline(tmp_path, "  - name: lr\n    task: downscale\n    options: {scale: 2}\n    options: {scale: 4}\n")
    message = one_error_line(cli("run", path, "--out", tmp_path / "out"))
    assert "duplicate key 'options'" in message and "line 6" in message
