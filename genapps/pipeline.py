"""Pipelines: a YAML file of stages, validated whole before any work, then run in order.

    name: demo                      # optional
    input: ../data/photos           # input of the first stage (relative to this file)
    output: ../runs/demo            # optional; default runs/<name> beside the working directory
    stages:
      - name: lr                    # optional, default: the task name (must be unique)
        task: downscale
        options: {scale: 4}
      - task: upscale
        input: lr                   # optional: a previous stage's name or a folder
        options: {model: sr-x4, reference: ../data/photos}

Each stage writes to OUTPUT/<stage name>/ and, unless it names its input, reads what the
previous stage produced. Path options resolve against the YAML's folder (`file://` URLs are local
paths). No stage folder may be, contain or lie inside a folder the pipeline reads (its input, a
stage's input folder, a --reference, masks, ...): refused when the file is loaded, whatever
`resume` says.

The YAML is read with a safe loader that refuses duplicate keys, more than MAX_ALIASES aliases
(`*name`) and documents that expand to more than MAX_VALUES values (an alias bomb); merge keys
(`<<: *defaults`) are supported. Every field is typed: a wrong type is one line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genapps import paths, stamps
from genapps.tasks import TASKS, load_spec, make_config

log = logging.getLogger(__name__)

TOP_KEYS = {"name", "description", "input", "output", "stages"}
STAGE_KEYS = {"name", "task", "input", "options"}
RESERVED_NAMES = {"report.json", "report.html"}  # the run's report files live beside the stage folders
MAX_ALIASES = 100  # `*name` references in one YAML document
MAX_VALUES = 100_000  # values of a YAML document with every alias expanded
MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects a mapping with the same key twice (YAML itself keeps the last)
    and more than MAX_ALIASES aliases; merge keys (`<<`) merge, the mapping's own keys winning."""

    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name)",
                                                  self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r}", key_node.start_mark)
                    seen.add(key)
            self.flatten_mapping(node)  # `<<: *x` / `<<: [*x, *y]`: their keys first, the mapping's own after
        return super().construct_mapping(node, deep=deep)


def _yaml_load(text: str):
    """The document of `text`, bounded (see the module doc); a yaml.YAMLError or a one-line ValueError."""
    data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    stack, count = [data], 0
    while stack:  # every alias expanded, as str() or a walk of it would: stop at the bound
        count += 1
        if count > MAX_VALUES:
            raise ValueError(f"the YAML expands to more than {MAX_VALUES} values (an alias bomb?)")
        item = stack.pop()
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return data


def _check_strings(mapping: dict, keys: tuple[str, ...], where: str) -> None:
    """A one-line ValueError when one of `keys` of a YAML mapping is set to something else than a
    string (a list as a stage name must never become a folder "['a', 'b']")."""
    for key in keys:
        value = mapping.get(key)
        if value is not None and not isinstance(value, str):
            shown = f" {value!r}" if isinstance(value, (int, float, bool)) else ""
            raise ValueError(f"{where}'{key}' must be a string, got {type(value).__name__}{shown}")


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error as one short line: its problem and where."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else str(problem)


def check_segment(name: str, what: str) -> str:
    """`name` as one plain path segment (a folder directly under the output), else a one-line ValueError."""
    if (not isinstance(name, str) or not name.strip() or name.startswith(".") or "/" in name or "\\" in name
            or "\0" in name or Path(name).is_absolute() or name.casefold() in RESERVED_NAMES):
        raise ValueError(f"{what} {name!r} must be one plain folder name (no '/', '\\', leading '.', "
                         f"nor {' or '.join(sorted(RESERVED_NAMES))})")
    return name


@dataclass(frozen=True)
class Stage:
    name: str
    task: str
    config: Any  # the task's frozen Config
    input: str | None  # a previous stage's name, a folder, or None (the previous stage's output)


@dataclass(frozen=True)
class Pipeline:
    path: Path
    name: str
    input: Path
    output: Path
    stages: tuple[Stage, ...]
    raw: dict = field(repr=False)


def _parse_set(item: str) -> tuple[str, str, Any]:
    """'stage.option=value' -> (stage, option, YAML-parsed value)."""
    key, sep, value = item.partition("=")
    stage, dot, option = key.partition(".")
    if not sep or not dot or not stage or not option:
        raise ValueError(f"--set {item!r}: expected STAGE.OPTION=VALUE")
    try:
        return stage, option, _yaml_load(value)
    except yaml.YAMLError as e:
        raise ValueError(f"--set {item!r}: invalid value ({_yaml_problem(e)})") from None
    except ValueError as e:
        raise ValueError(f"--set {item!r}: {e}") from None


def load_pipeline(path: str | Path, input: str | Path | None = None, out: str | Path | None = None,
                  overrides: tuple[str, ...] = ()) -> Pipeline:
    """Read and validate a pipeline file (tasks, options, types, inputs, the folders it reads and
    writes) without running anything."""
    path, input, out = Path(paths.normalize(path)), paths.normalize(input), paths.normalize(out)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline file not found: {path}")
    try:
        raw = _yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML ({_yaml_problem(e)})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason})") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with a 'stages' list")
    unknown = sorted(set(map(str, raw)) - TOP_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(TOP_KEYS))}")
    _check_strings(raw, ("name", "description", "input", "output"), f"{path}: ")
    entries = raw.get("stages")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'stages' must be a non-empty list")
    base = path.parent.resolve()
    name = raw.get("name") or path.stem

    sets: dict[str, dict] = {}
    for item in overrides:
        stage, option, value = _parse_set(item)
        sets.setdefault(stage, {})[option] = value

    stages: list[Stage] = []
    for i, entry in enumerate(entries):
        where = f"{path.name}: stage {i + 1}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with 'task' and 'options'")
        bad = sorted(set(map(str, entry)) - STAGE_KEYS)
        if bad:
            raise ValueError(f"{where}: unknown key(s) {', '.join(bad)}; valid: {', '.join(sorted(STAGE_KEYS))}")
        task = entry.get("task")
        if not isinstance(task, str) or task not in TASKS:
            shown = repr(task) if isinstance(task, str) or task is None else f"of type {type(task).__name__}"
            raise ValueError(f"{where}: unknown task {shown}; valid: {', '.join(sorted(TASKS))}")
        _check_strings(entry, ("name", "input"), f"{where}: ")
        stage_name = check_segment(entry.get("name") or task, f"{where}: stage name")
        if any(s.name == stage_name for s in stages):
            raise ValueError(f"{where}: duplicate stage name {stage_name!r}; give each stage a unique 'name'")
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError(f"{where} ({stage_name}): 'options' must be a mapping")
        options = options | sets.pop(stage_name, {})
        config_class = load_spec(task).config_class()  # light: no torch before a stage runs
        options = paths.normalize_options(config_class, {str(k): v for k, v in options.items()})
        config = make_config(config_class, options, where=f"{path.name}: {stage_name}", base=base)
        stage_input = paths.normalize(entry.get("input"))
        if stage_input is not None:
            if not any(s.name == stage_input for s in stages):
                folder = (base / stage_input).resolve()
                if not folder.is_dir():
                    raise ValueError(f"{where} ({stage_name}): input {stage_input!r} is neither an earlier "
                                     f"stage nor a folder ({folder})")
                stage_input = str(folder)
        stages.append(Stage(stage_name, task, config, stage_input))
    if sets:
        raise ValueError(f"--set: no stage named {', '.join(sets)}; stages: {', '.join(s.name for s in stages)}")

    raw_input, raw_output = paths.normalize(raw.get("input")), paths.normalize(raw.get("output"))
    first_input = Path(input) if input else (base / raw_input).resolve() if raw_input else None
    if stages[0].input is None:
        if first_input is None:
            raise ValueError(f"{path}: no input: give 'input:' in the file or --input")
        if not first_input.is_dir():
            raise FileNotFoundError(f"input folder not found: {first_input}")
    output = (Path(out) if out else (base / raw_output).resolve() if raw_output
              else Path("runs") / check_segment(name, f"{path.name}: pipeline name (the default output runs/NAME)"))
    _check_folders(path, output, first_input if stages[0].input is None else None, stages)
    return Pipeline(path, name, first_input or Path(stages[0].input), output, tuple(stages), raw)


def _check_folders(path: Path, output: Path, first_input: Path | None, stages: list[Stage]) -> None:
    """One-line ValueError when a stage's folder OUTPUT/<stage> is, contains or lies inside a folder
    the pipeline reads (its input, a stage's input folder, a stage's reference, masks, ...): its
    outputs would overwrite (or, on a rerun, be read as) those files, whatever resume says."""
    names = {s.name for s in stages}
    reads = {"pipeline's input": first_input}
    for s in stages:
        if s.input is not None and s.input not in names:
            reads[f"stage {s.name!r} input"] = s.input
        reads |= {f"stage {s.name!r} {key}": value for key, value in paths.side_inputs(s.config).items()}
    for s in stages:
        try:
            paths.check_output(output / s.name, sides=reads, why="rename the stage or choose another output folder")
        except ValueError as e:
            raise ValueError(f"{path.name}: stage {s.name!r}: {e}") from None


class ReportNotWritten(Exception):
    """The stages ran but report.json/html could not be written (disk full, ...)."""

    def __init__(self, message: str, results: list):
        super().__init__(message)
        self.results = results


def pipeline_stamp(pipeline: Pipeline, device: str) -> stamps.Stamp | None:
    """The "nothing to do" stamp of a pipeline run (genapps.stamps), or None where it does not apply:
    a sharded run, or a stage with resume off."""
    from genapps.distributed import current

    if current().active or any(getattr(s.config, "resume", True) is False for s in pipeline.stages):
        return None
    what = {"pipeline": [{"name": s.name, "task": s.task, "input": s.input, "options": asdict(s.config)}
                         for s in pipeline.stages], "input": str(pipeline.input), "device": device}
    reads = [pipeline.input, *(s.input for s in pipeline.stages if s.input and Path(s.input).is_absolute()),
             *(p for s in pipeline.stages for p in stamps.option_paths(s.config))]
    return stamps.Stamp.of(pipeline.output, what, reads)


def run_pipeline(pipeline: Pipeline, device, stamp: stamps.Stamp | None = None) -> list:
    """Run every stage; write OUTPUT/report.json and report.html (also when a stage raises), then
    `stamp` (pipeline_stamp) when no file failed.

    A report that cannot be written raises ReportNotWritten (carrying the stages' results) after
    the stages, or is logged when a stage raised (that error is the one reported).
    """
    from genapps import distributed

    shard = distributed.current()
    renaming = [s.name for s in pipeline.stages[:-1] if load_spec(s.task).renames_outputs(s.config)]
    if shard.active and renaming:  # the next stage's split is by name: it must see the names it was given
        raise ValueError(f"stage(s) {', '.join(renaming)} rename their outputs (suffix, samples) for a later stage; "
                         f"a sharded pipeline needs the names kept (move the renaming to the last stage)")
    from genapps import io

    io.check_writable(pipeline.output, create=False)
    with paths.output_lock(pipeline.output, shard):  # a second run on OUTPUT is refused
        results = _run_stages(pipeline, device, shard)
        if stamp is not None and not any(r.failed for r in results):
            stamp.write(sum(len(r.records) for r in results))
        return results


def _run_stages(pipeline: Pipeline, device, shard) -> list:
    """run_pipeline's stages and report, under the output folder's lock."""
    from genapps import io
    from genapps.report import write_part, write_report, write_sharded

    io.remove_stale_temps(pipeline.output / n for n in RESERVED_NAMES)  # a killed run's half reports
    results, outputs = [], {}
    current = pipeline.input
    run_config = {"pipeline": str(pipeline.path), "input": str(pipeline.input), "output": str(pipeline.output),
                  "device": str(device), "stages": [{"name": s.name, "task": s.task, "input": s.input,
                                                     "options": asdict(s.config)} for s in pipeline.stages]}
    start = time.perf_counter()

    def report(done: bool = False) -> str:
        run_config["seconds"] = round(time.perf_counter() - start, 2)
        title = f"genapps pipeline: {pipeline.name}"
        try:
            if results and shard.active and done:  # this shard's part; merged once every shard's part is there
                write_sharded(pipeline.output, results, run_config, title=title)
            elif results and shard.active:
                write_part(pipeline.output, results, run_config, shard, title=title)
            elif results:
                write_report(pipeline.output, results, run_config, title=title)
        except (OSError, paths.OutsideOutput) as e:
            return f"report not written to {pipeline.output} ({getattr(e, 'strerror', None) or e})"
        return ""

    try:
        for stage in pipeline.stages:
            src = Path(outputs.get(stage.input, stage.input)) if stage.input else current
            log.info("stage %s (%s): %s -> %s", stage.name, stage.task, src, pipeline.output / stage.name)
            spec = load_spec(stage.task)
            result = spec.load().run(stage.config, src, pipeline.output / stage.name, device, name=stage.name)
            result.view = spec.view
            results.append(result)
            outputs[stage.name] = current = Path(result.output_dir)
    except BaseException:
        problem = report()
        if problem:
            log.error("%s", problem)
        raise
    problem = report(done=True)
    if problem:
        raise ReportNotWritten(problem, results)
    return results


def demo_pipeline() -> Path:
    """The demo's YAML: genapps/demo/ of an installed wheel (setup.py copies it there), else the
    checkout's pipelines/demo.yaml (an editable install); its ../data paths hold in both."""
    here = Path(__file__).resolve().parent
    candidates = [here / "demo" / "pipelines" / "demo.yaml", here.parent / "pipelines" / "demo.yaml"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"the demo files are not installed (looked for {candidates[0]} and {candidates[1]}): "
                                f"install genapps from a wheel or the checkout, or run `genapps run YOUR.yaml`")
    return path
