"""The task interface every application implements, and the table of tasks.

A task is a module with:
  TASK: str                       its name
  Config                          a frozen dataclass of its options (path-valued fields carry
                                  metadata {"path": True}, name-or-path ones {"path": "if_exists"},
                                  so that pipelines resolve them against the YAML's folder)
  run(cfg, input_dir, output_dir, device, name=TASK) -> genapps.batch.StageResult

Tasks are imported only when used (their models pull in torch) and never import each other.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from pathlib import Path

TASKS = {
    "augment": "genapps.tasks.augment",
    "downscale": "genapps.tasks.upscale.downscale",
    "evaluate": "genapps.tasks.evaluate",
    "inpaint": "genapps.tasks.inpaint",
    "masks": "genapps.tasks.inpaint.masks",
    "pairs": "genapps.tasks.translate.pairs",
    "upscale": "genapps.tasks.upscale",
    "translate": "genapps.tasks.translate",
}


def load_task(name: str) -> types.ModuleType:
    """The module of task `name`; an unknown name lists the valid ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[name])


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
