"""The task interface every application implements, and the table of tasks.

A task is a folder under genapps/tasks/ with
  __init__.py  one light `TaskSpec` per task it provides (no torch import): its command, what the
               core needs to know about it (remote folders, renamed outputs, its report view) and
               its training commands; the CLI and the pipeline read it;
  config.py    (`TaskSpec.config`, light: no torch) its Config, a frozen dataclass of its options;
               field metadata makes the CLI options (see genapps.cli_conventions.config_options:
               help, flags, choices), and path-valued fields carry {"path": True} (name-or-path
               ones {"path": "if_exists"}) so that pipelines resolve them against the YAML's
               folder. Light, so that options, --help and a rerun with nothing to do
               (genapps.stamps) never import torch;
  task.py      (`TaskSpec.module`, imported only when used: models pull in torch) with
    Config     the same class (imported from config.py);
    run(cfg, input_dir, output_dir, device, name) -> genapps.records.StageResult;
  models.py, training.py, ...  its networks (shared ones live in genapps.nn) and trainers.

Adding an application = its folder + one line in TASKS. Tasks never import each other.
tests/template_task.py is the template, and tests/test_fifth_task.py registers it in TASKS and runs
it through the CLI and a pipeline.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from genapps.views import View

TASKS = {  # task name -> "module:SPEC" of its TaskSpec
    "augment": "genapps.tasks.augment:AUGMENT",
    "downscale": "genapps.tasks.upscale:DOWNSCALE",
    "evaluate": "genapps.tasks.evaluate:EVALUATE",
    "inpaint": "genapps.tasks.inpaint:INPAINT",
    "masks": "genapps.tasks.inpaint:MASKS",
    "pairs": "genapps.tasks.translate:PAIRS",
    "upscale": "genapps.tasks.upscale:UPSCALE",
    "translate": "genapps.tasks.translate:TRANSLATE",
}


def _never(cfg) -> bool:
    return False


@dataclass(frozen=True)
class TrainCommand:
    """`genapps train NAME`: its options are the fields of `config` ("module:Class"), which
    `function` ("module:function", called as function(cfg, device, resume=...)) trains."""

    name: str
    config: str
    function: str
    help: str


@dataclass(frozen=True)
class TaskSpec:
    """What the core (CLI, pipeline, report) knows of a task, without importing it."""

    name: str
    module: str  # "genapps.tasks.upscale.task": its Config and run()
    help: str  # the command's help; its first line is what `genapps --help` lists
    command: bool = True  # a `genapps NAME` command (False: pipeline stage only, or a command of its own in cli.py)
    arguments: tuple[str, ...] = ("input_dir", "output_dir")  # the command's arguments -> run(input, output)
    metavars: tuple[str, ...] = ("INPUT", "OUTPUT")
    batch: bool = True  # the folder loop's options (--ext, --suffix, ..., --report, --shard, --device)
    device: bool = True  # a --device option (batch commands have it anyway)
    remote: bool = False  # INPUT/OUTPUT may be fsspec URLs (s3://, memory://, ...)
    renames_outputs: Callable[[Any], bool] = _never  # (cfg) -> a later stage cannot find outputs by input name
    view: View = View()  # how its records appear in reports
    train: tuple[TrainCommand, ...] = ()  # its `genapps train ...` commands
    config: str = ""  # "module:Class" of its Config in a light module (default: `module`'s Config)

    @property
    def summary(self) -> str:
        return self.help.strip().splitlines()[0]

    def config_class(self) -> type:
        """The task's Config class, without importing torch when `config` names a light module."""
        return resolve(self.config) if self.config else self.load().Config

    def load(self) -> types.ModuleType:
        """The task's module (Config, run): imports torch and the models."""
        return importlib.import_module(self.module)


def resolve(ref: str):
    """The object named by "package.module:attribute"."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_spec(name: str) -> TaskSpec:
    """The spec of task `name`; an unknown name lists the valid ones."""
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(sorted(TASKS))}")
    return resolve(TASKS[name])


def load_task(name: str) -> types.ModuleType:
    """The module of task `name` (its Config and run); an unknown name lists the valid ones."""
    return load_spec(name).load()


def _check_type(value, hint, where: str):
    """Return `value` converted to `hint` (int -> float, list -> tuple) or raise a clear ValueError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(value, arg, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_check_type(v, a, where) for v, a in zip(value, args))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
        return value
    return value


def make_config(cls, options: dict, where: str = "options", base: Path | None = None):
    """Build the frozen dataclass `cls` from a dict: unknown keys and wrong types are errors.

    Relative values of fields marked {"path": True} are resolved against `base` (a pipeline's folder).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in options.items():
        value = _check_type(value, hints[key], f"{where}.{key}")
        kind = fields[key].metadata.get("path")  # True, or "if_exists" for a name-or-path option
        if base is not None and isinstance(value, str) and kind and not Path(value).is_absolute():
            candidate = (base / value).resolve()
            value = str(candidate) if kind is True or candidate.exists() else value
        if kind is True and value is not None and not Path(value).exists():
            raise ValueError(f"{where}.{key}: not found: {value}")
        values[key] = value
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: missing required option(s) {', '.join(missing)}")
    try:
        return cls(**values)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
