"""Pipeline files are validated whole, with clear messages, before any work starts."""

import pytest

from genapps.pipeline import load_pipeline


def write(tmp_path, text):
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


GOOD = """
input: in
stages:
  - {name: lr, task: downscale, options: {scale: 2}}
  - {name: up, task: upscale, input: lr, options: {model: bicubic, scale: 2, reference: in}}
"""


def test_valid_pipeline_resolves_paths_relative_to_the_file(tmp_path):
    p = load_pipeline(write(tmp_path, GOOD), out=tmp_path / "out")
    assert p.input == (tmp_path / "in").resolve()
    assert [s.name for s in p.stages] == ["lr", "up"]
    assert p.stages[1].config.reference == str((tmp_path / "in").resolve())
    assert p.stages[1].input == "lr"


@pytest.mark.parametrize("text,message", [
    ("input: in\nstages:\n  - {task: nope}\n", "unknown task 'nope'; valid: "),
    ("input: in\nstages:\n  - {task: downscale, options: {scael: 2}}\n", "unknown option(s) scael; valid: scale"),
    ("input: in\nstages:\n  - {task: downscale, options: {scale: two}}\n", "downscale.scale: expected int"),
    ("input: in\nstages:\n  - {task: downscale, options: {scale: 5}}\n", "scale must be 2, 3 or 4"),
    ("input: missing\nstages:\n  - {task: downscale}\n", "input folder not found"),
    ("stages:\n  - {task: downscale}\n", "no input"),
    ("input: in\nstages: []\n", "non-empty list"),
    ("input: in\nstagse: []\n", "unknown key(s) stagse"),
    ("input: in\nstages:\n  - {task: downscale}\n  - {task: downscale}\n", "duplicate stage name"),
    ("input: in\nstages:\n  - {task: upscale, input: later}\n", "neither an earlier stage nor a folder"),
    ("input: in\nstages:\n  - {task: evaluate}\n", "missing required option(s) reference"),
    ("input: [in\n", "invalid YAML"),
])
def test_invalid_pipelines_fail_before_work(tmp_path, text, message):
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_pipeline(write(tmp_path, text))
    assert message in str(err.value)


def test_set_overrides_and_typos(tmp_path):
    path = write(tmp_path, GOOD)
    p = load_pipeline(path, overrides=("up.tile=32", "lr.scale=3"))
    assert p.stages[1].config.tile == 32 and p.stages[0].config.scale == 3
    with pytest.raises(ValueError, match="no stage named upp"):
        load_pipeline(path, overrides=("upp.tile=32",))
    with pytest.raises(ValueError, match="STAGE.OPTION=VALUE"):
        load_pipeline(path, overrides=("tile=32",))


def test_run_cli_reports_bad_pipeline_in_one_line(tmp_path, cli):
    result = cli("run", write(tmp_path, "input: in\nstages:\n  - {task: nope}\n"))
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1


def test_missing_reference_folder_fails_before_work(tmp_path):
    text = "input: in\nstages:\n  - {task: upscale, options: {model: bicubic, reference: nope}}\n"
    with pytest.raises(ValueError, match="reference: not found"):
        load_pipeline(write(tmp_path, text))
