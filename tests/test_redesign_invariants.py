"""What the redesign (issue 24) must not change: every command's options and defaults, and the
outputs of every bundled model on a fixed input, byte for byte.

The snapshots in tests/data/ were taken on the code before the redesign; regenerate them only for
a deliberate change of behaviour: `python tests/test_redesign_invariants.py`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click
import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

HERE = Path(__file__).parent
CLI_SNAPSHOT = HERE / "data" / "cli_options.json"
OUTPUT_SNAPSHOT = HERE / "data" / "bundled_outputs.json"


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def cli_options() -> dict[str, list[dict]]:
    """Command path ("train sr") -> its parameters: option strings, default, flag, choices, type."""
    from genapps.cli import main

    table: dict[str, list[dict]] = {}

    def walk(cmd: click.Command, path: str) -> None:
        rows = []
        for p in cmd.params:
            row = {"opts": sorted(p.opts), "secondary": sorted(getattr(p, "secondary_opts", [])),
                   "kind": type(p).__name__, "required": p.required, "nargs": p.nargs,
                   "multiple": p.multiple, "type": p.type.name,
                   "choices": list(getattr(p.type, "choices", []) or []) or None}
            if isinstance(p, click.Option):
                default = p.default() if callable(p.default) else p.default
                row |= {"default": _jsonable(default), "is_flag": p.is_flag, "hidden": p.hidden,
                        "flag_value": _jsonable(p.flag_value) if p.is_flag and not p.secondary_opts else None,
                        "show_default": bool(p.show_default)}
            rows.append(row)
        table[path] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
        if isinstance(cmd, click.Group):  # commands built on first use too (list_commands/get_command)
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), f"{path} {name}".strip())

    walk(main, "")
    return table


def _photo(h=24, w=32, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(x / 7 + c) * np.cos(y / 9 - c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


RUNS = {  # name -> genapps arguments after INPUT OUTPUT
    "sr-x2": ["upscale", "-s", "2"], "sr-x3": ["upscale", "-s", "3"], "sr-x4": ["upscale"],
    "srgan-x4": ["upscale", "-m", "srgan-x4"], "bicubic": ["upscale", "-m", "bicubic"],
    "realsr-x4": ["upscale", "-m", "realsr-x4"],
    "sr-x4-tiled": ["upscale", "-t", "8", "--tile-overlap", "8"],
    "inpaint": ["inpaint", "--masks", "MASK"], "inpaint-notta": ["inpaint", "--masks", "MASK", "--no-tta"],
    "inpaint-pluralistic": ["inpaint", "--masks", "MASK", "--samples", "2", "--seed", "3"],
    "telea": ["inpaint", "--masks", "MASK", "--method", "telea"],
    "restore": ["translate", "-m", "restore"], "restore-tiled": ["translate", "-m", "restore", "-t", "32",
                                                                  "--tile-overlap", "16"],
    "colorize": ["translate", "-m", "colorize"],
    "restore-unpaired": ["translate", "-m", "restore-unpaired"],
}


def bundled_outputs(tmp: Path) -> dict[str, list[str]]:
    """Name -> sha256 of every output image's decoded pixels (sorted by file name)."""
    from genapps.cli import main

    torch.set_num_threads(1)
    src = tmp / "in"
    src.mkdir()
    Image.fromarray(_photo()).save(src / "a.png")
    Image.fromarray(_photo(40, 44, seed=1)[..., 0]).save(src / "g.png")  # grey
    rgba = np.concatenate([_photo(20, 28, seed=2), np.full((20, 28, 1), 200, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(src / "t.png")
    mask = np.zeros((24, 32), np.uint8)
    mask[6:18, 9:22] = 255
    Image.fromarray(mask).save(tmp / "mask.png")
    hashes = {}
    for name, args in RUNS.items():
        out = tmp / name
        args = [str(tmp / "mask.png") if a == "MASK" else a for a in args]
        result = CliRunner().invoke(main, [args[0], str(src if args[0] != "inpaint" else src / "a.png"), str(out),
                                           *args[1:], "--no-report"], catch_exceptions=False)
        assert result.exit_code == 0, (name, result.output)
        files = sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
        assert files, name
        hashes[name] = [f"{p.relative_to(out)} " + hashlib.sha256(np.asarray(Image.open(p)).tobytes()).hexdigest()
                        for p in files]
    return hashes


def test_cli_options_unchanged():
    expected = json.loads(CLI_SNAPSHOT.read_text())
    actual = json.loads(json.dumps(cli_options()))
    assert sorted(actual) == sorted(expected), "commands differ"
    for path in expected:
        assert actual[path] == expected[path], f"options of `genapps {path}` differ"


def test_bundled_outputs_unchanged(tmp_path):
    expected = json.loads(OUTPUT_SNAPSHOT.read_text())
    actual = bundled_outputs(tmp_path)
    for name in expected:
        assert actual[name] == expected[name], f"{name}: outputs changed"


if __name__ == "__main__":
    import tempfile

    CLI_SNAPSHOT.write_text(json.dumps(cli_options(), indent=1, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory() as d:
        OUTPUT_SNAPSHOT.write_text(json.dumps(bundled_outputs(Path(d)), indent=1) + "\n")
    print("snapshots written", file=sys.stderr)
