"""The `genapps` command line: a thin click layer (parse, call the library, report).

Heavy imports (torch, the tasks) happen inside the commands so that `--help` answers at once.
Errors a user can fix become one red line and exit status 2, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from genapps.cli_conventions import Command, Group, set_verbosity

log = logging.getLogger("genapps")

DEVICE = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
SHARD = click.option("--shard", metavar="I/N", help="Do only shard I of N of the files (0-based; split by relative "
                     "path; e.g. a Slurm array); the last shard to finish merges the report. Under torchrun "
                     "each rank takes its own shard without it.")


def _raised(e: Exception, module: str, name: str) -> bool:
    """Whether `e` is genapps's module.name error, without importing `module` (a command that never
    imported it cannot have raised it; a rerun with nothing to do imports no torch)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(e, cls)


def user_errors(fn):
    """Turn the errors a user can fix into one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.secho("interrupted; finished files are kept, run again to resume", fg="yellow", err=True)
            sys.exit(130)
        except Exception as e:
            if _raised(e, "genapps.train", "NotMainRank"):  # torchrun: this rank's share is done; rank 0 saves
                return None
            if _raised(e, "genapps.batch", "BatchAborted"):
                click.secho(f"error: stopped at the first bad file (--fail-fast): {e}", fg="red", err=True)
                sys.exit(1)
            if (isinstance(e, (FileNotFoundError, NotADirectoryError, ValueError, KeyError))
                    or _raised(e, "genapps.io", "ImageError") or _raised(e, "genapps.train", "TrainingDiverged")):
                click.secho(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", fg="red", err=True)
                sys.exit(2)
            if isinstance(e, OSError):  # permissions, a full disk, ... outside the per-file loop
                click.secho(f"error: {f'{e.filename}: ' if e.filename else ''}{e.strerror or e}", fg="red", err=True)
                sys.exit(2)
            raise

    return wrapper


def _sharding(shard: str | None):
    """The context in which batch runs do shard `shard` ("I/N") of their files (torchrun's rank without it)."""
    from genapps.distributed import sharding

    return sharding(shard)


def _device(spec: str):
    from genapps.device import select_device

    return select_device(spec)


def _finish(stages, report_html: Path | None, report_wanted: bool = True) -> None:
    """Print a summary line per stage and each failed file; exit 1 if any file failed or the
    report was wanted but could not be written (report_html None)."""
    from genapps.report import failure_line, summarize

    failed = 0
    for st in stages:
        s = summarize(st)
        means = "  ".join(f"{k}={v['mean']:.4f}" for k, v in s.get("metrics", {}).items()
                          if v.get("mean") is not None and k != "output_mp")
        click.echo(f"{st.name}: {s['ok']} ok, {s['skipped']} skipped, {s['error']} failed  {means}")
        for r in st.failed:
            click.secho(f"  failed: {failure_line(st, r)}", fg="red", err=True)
        for u in (st.summary or {}).get("unpaired", []) if isinstance(st.summary, dict) else []:
            click.secho(f"  not paired: {u['file']} ({u['reason']})", fg="yellow", err=True)
        failed += len(st.failed)
    if report_html is not None:
        click.echo(f"report: {report_html}")
    if failed or (report_html is None and report_wanted):
        sys.exit(1)


def _write_report(out_dir, stages, run_config: dict, title: str) -> Path | None:
    """report.json/html into `out_dir`; a disk error is one red line and None (the run's files stay)."""
    from genapps.distributed import current
    from genapps.paths import OutsideOutput
    from genapps.report import write_report, write_sharded

    try:
        if current().active:  # this shard's part; the merged report once every shard's part is there
            return write_sharded(Path(out_dir), stages, run_config, title=title)
        return write_report(Path(out_dir), stages, run_config, title=title)[1]
    except (OSError, OutsideOutput) as e:
        click.secho(f"error: report not written to {out_dir} ({getattr(e, 'strerror', None) or e})", fg="red", err=True)
        return None


class Main(Group):
    """The `genapps` group: the commands below plus one per task spec with a command (genapps.tasks.TASKS),
    built from its Config when it is used, so that `genapps --help` imports no task (nor torch)."""

    group_class = Group  # `models`, `report`: plain groups

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *task_specs()])

    def get_command(self, ctx, name):
        spec = task_specs().get(name)
        return task_command(spec) if spec else super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = [(n, task_specs()[n].summary if n in task_specs() else super(Main, self).get_command(ctx, n)
                 .get_short_help_str(formatter.width)) for n in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def task_specs() -> dict:
    """Name -> TaskSpec of every task with a `genapps NAME` command (light: no task module imported)."""
    from genapps.tasks import TASKS, load_spec

    return {name: spec for name in TASKS if (spec := load_spec(name)).command}


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genapps")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging (also after the command: genapps upscale ... -v).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only (also after the command).")
def main(verbose: bool, quiet: bool) -> None:
    """genapps: generative image models put to work (augment, upscale, inpaint, translate)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    set_verbosity(verbose, quiet)  # also when logging was configured before (tests, embedding programs)


BATCH_OPTIONS = [  # the folder loop's options that are not Config fields (Real-ESRGAN / IOPaint batch conventions)
    SHARD,
    click.option("--report", type=click.Path(file_okay=False),
                 help="Folder for report.json/html (default: OUTPUT; none when OUTPUT is one image file)."),
    click.option("--no-report", is_flag=True, help="Write no report.json/html."),
]


def _params(decorators) -> list[click.Parameter]:
    """The click parameters that option decorators would add (in their order)."""
    return [decorate(lambda: None).__click_params__[0] for decorate in decorators]


def task_command(spec) -> click.Command:
    """`genapps NAME ARGS... [OPTIONS]` of a task: its arguments, its Config's fields as options
    (genapps.cli_conventions.config_options), the batch options, then run_task."""
    from genapps.cli_conventions import config_options, config_values

    config = spec.config_class()
    params = [click.Argument([arg], metavar=metavar, type=click.Path() if spec.batch or i == 0
                             else click.Path(file_okay=False))
              for i, (arg, metavar) in enumerate(zip(spec.arguments, spec.metavars))]
    params += config_options(config) + _params(BATCH_OPTIONS if spec.batch else [])
    params += _params([DEVICE]) if spec.batch or spec.device else []

    @user_errors
    def callback(**values):
        source, target = (values.pop(a) for a in spec.arguments)
        device = values.pop("device", "cpu")
        extra = {k: values.pop(k) for k in ("shard", "report", "no_report") if k in values}
        run_task(spec.name, source, target, device, config_values(config, values) | extra)

    return Command(spec.name, params=params, callback=callback, help=spec.help)


def run_task(task: str, input_dir: str, output_dir: str, device: str, options: dict, report_dir=None,
             writes_output: bool = True) -> None:
    """Validate options with the task's Config (as pipelines do), run it, write the report.

    The report goes to `report_dir` (or options' `report`), else to OUTPUT when it is a folder;
    options' `no_report` (or OUTPUT one image file, `genapps upscale a.png b.png`) writes none.
    Paths (genapps.paths): `file://` URLs are local paths; OUTPUT must not be INPUT nor contain
    it, nor overlap a side input (--reference, --masks, ...), checked before any work; the run holds
    OUTPUT's lock (evaluate: the report's). Nothing to do (genapps.stamps): done before torch loads.
    """
    import contextlib
    from dataclasses import asdict

    from genapps import paths, stamps
    from genapps.distributed import current
    from genapps.tasks import TASKS, load_spec, make_config

    input_dir, output_dir = paths.normalize(input_dir), paths.normalize(output_dir)
    if not paths.is_url(input_dir) and not Path(input_dir).exists():
        raise FileNotFoundError(f"input not found: {input_dir}")
    spec = load_spec(task)
    if (paths.is_url(input_dir) or paths.is_url(output_dir)) and not spec.remote:
        remote = ", ".join(n for n in TASKS if load_spec(n).remote)
        raise ValueError(f"{task} works on local folders only (remote URLs: {remote})")
    config_class = spec.config_class()  # light: a rerun with nothing to do imports no torch
    click.get_current_context().with_resource(_sharding(options.pop("shard", None)))
    target = paths.file_output(input_dir, output_dir)
    if target is None and Path(output_dir).suffix.lower() in paths.WRITE_FORMATS and not Path(output_dir).exists():
        log.warning("OUTPUT %s is a folder of that name: INPUT is a folder (an image file name needs one input "
                    "image)", output_dir)
    no_report, report_dir = options.pop("no_report", False), paths.normalize(options.pop("report", None) or report_dir)
    if no_report:
        report_dir = None
    elif report_dir is None and target is None:
        report_dir = output_dir
    options = paths.normalize_options(config_class, {k: v for k, v in options.items() if v is not None})
    if report_dir is not None and paths.is_url(report_dir):
        raise ValueError(f"the report is written to a local folder: give --report DIR (or --no-report) with {report_dir}")
    cfg = make_config(config_class, options, where=task)
    local_output = writes_output and not paths.is_url(output_dir)
    if local_output:  # before the model loads: OUTPUT apart from what the task reads
        paths.check_output(target.parent if target else output_dir, input=None if target else input_dir,
                           sides=paths.side_inputs(cfg), input_name=spec.arguments[0].removesuffix("_dir"))
    stamp = stamps.for_task(task, cfg, input_dir, output_dir, device, report_dir, local_output and target is None)
    if stamp and (done := stamp.current()):
        return click.echo(f"{task}: nothing to do, {done['done']} file(s) up to date in {output_dir}")
    from genapps import io
    module, dev = spec.load(), _device(device)
    io.check_writable(report_dir or (target.parent if target else output_dir), create=False)  # leaves no empty folder
    lock_dir = (target.parent if target else output_dir) if local_output else report_dir
    with paths.output_lock(lock_dir, current()) if lock_dir is not None else contextlib.nullcontext():
        if report_dir:
            io.remove_stale_temps(Path(report_dir) / n for n in ("report.json", "report.html"))
        result = module.run(cfg, input_dir, output_dir, dev)
        result.view = spec.view
        run_config = {"command": " ".join(sys.argv), "task": task, "options": asdict(cfg), "device": str(dev)}
        html = _write_report(report_dir, [result], run_config, f"genapps {task}") if report_dir else None
        if stamp and not result.failed and (html or not report_dir):
            stamp.write(len(result.records))
        _finish([result], html, report_wanted=report_dir is not None)


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--input", "input_dir", type=click.Path(), help="Input folder of the first stage.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (one subfolder per stage).")
@click.option("--set", "overrides", multiple=True, metavar="STAGE.OPTION=VALUE", help="Override a stage option.")
@SHARD
@DEVICE
@user_errors
def run(pipeline: str, input_dir: str | None, out: str | None, overrides: tuple[str, ...], shard: str | None,
        device: str) -> None:
    """Run a YAML pipeline of stages, measuring each, and write report.json/html."""
    with _sharding(shard):
        _run_pipeline(pipeline, input_dir, out, overrides, device)


def _run_pipeline(pipeline, input_dir, out, overrides, device) -> None:
    from genapps.pipeline import ReportNotWritten, load_pipeline, pipeline_stamp, run_pipeline

    p = load_pipeline(pipeline, input=input_dir, out=out, overrides=overrides)
    if (stamp := pipeline_stamp(p, device)) and (done := stamp.current()):
        return click.echo(f"{p.name}: nothing to do, {done['done']} file(s) up to date\nreport: {p.output / 'report.html'}")
    try:
        _finish(run_pipeline(p, _device(device), stamp), p.output / "report.html")
    except ReportNotWritten as e:
        click.secho(f"error: {e}", fg="red", err=True)
        _finish(e.results, None)


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@DEVICE
@user_errors
def demo(out: str, device: str) -> None:
    """Run pipelines/demo.yaml on the embedded data (a few minutes on 2 CPU cores)."""
    from genapps.pipeline import demo_pipeline

    _run_pipeline(str(demo_pipeline()), None, out, (), device)


@main.command()
@click.argument("pred_dir", type=click.Path())
@click.argument("ref_dir", type=click.Path())
@click.option("--y-channel", is_flag=True, help="Measure the BT.601 Y channel (SR protocol).")
@click.option("--crop-border", type=int, default=0, show_default=True, help="Pixels shaved each side.")
@click.option("--masks", type=click.Path(file_okay=False), help="Measure only inside these masks (white = in).")
@click.option("--report", "--out", "out", type=click.Path(file_okay=False),
              help="Folder for report.json/html (default: a new runs/evaluate-YYYYmmdd-HHMMSS; never PRED_DIR "
                   "unless given).")
@click.option("--no-report", is_flag=True, help="Only print the means and failures.")
@SHARD
@DEVICE
@user_errors
def evaluate(pred_dir: str, ref_dir: str, y_channel: bool, crop_border: int, masks: str | None,
             out: str | None, no_report: bool, shard: str | None, device: str) -> None:
    """PSNR/SSIM of predictions against references, paired by relative path and stem."""
    from genapps import paths
    from genapps.distributed import world

    pred_dir, ref_dir, masks, out = (paths.normalize(p) for p in (pred_dir, ref_dir, masks, out))
    for folder in (pred_dir, ref_dir, masks):
        if folder and not Path(folder).is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
    if (shard or world() > 1) and not out and not no_report:
        raise ValueError("a sharded evaluate needs --report DIR, one folder every shard writes its part to")
    if not out and not no_report:
        out = paths.new_run_folder("evaluate", avoid={"PRED_DIR": pred_dir, "REF_DIR": ref_dir, "--masks": masks})
    run_task("evaluate", pred_dir, pred_dir, device, {"reference": ref_dir, "y_channel": y_channel,
             "crop_border": crop_border, "masks": masks, "no_report": no_report, "shard": shard},
             report_dir=out, writes_output=False)


@main.command()
@user_errors
def info() -> None:
    """Versions, devices, and the bundled weights with their recorded metrics."""
    import platform

    import torch

    import genapps
    from genapps import ncnn_files, weights, zoo

    click.echo(f"genapps {genapps.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    click.echo(f"devices: cpu ({torch.get_num_threads()} threads)" + "".join(f", cuda:{i} {n}" for i, n in enumerate(cuda)))
    bundled = weights.bundled_weights()
    click.echo(f"bundled weights ({len(bundled)}):")
    for name, path in bundled.items():
        card = weights.bundled_card(name)
        bench = card.get("benchmark") or card.get("validation") or {}
        numbers = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in bench.items())
        click.echo(f"  {name:<12} {path.stat().st_size / 1e6:5.2f} MB  {card.get('arch', '?')}  {numbers}")
    click.echo(f"model zoo and imported models ({zoo.home()}):")
    for name, state in zoo.status().items():
        click.echo(f"  {name:<24} {zoo.ZOO.get(name, '')}\n  {'':<24} {state}")
    click.echo("ncnn wheels' models (pip install 'genapps[zoo]'; generic graphs, converted on first use):")
    for name, m in ((n, m) for n, m in ncnn_files.MODELS.items() if n not in zoo.ZOO):
        path = zoo.cached(name)
        state = f"converted: {path}" if path else "installed" if ncnn_files.wheel_folder(m.wheel) \
            else f"needs {ncnn_files.WHEELS[m.wheel].distribution}"
        click.echo(f"  {name:<28} {m.purpose} [{state}]")


# ---------------------------------------------------------------- models


@main.group()
def models() -> None:
    """Pretrained models: Real-ESRGAN's (pip install 'genapps[zoo]') and ncnn imports."""


@models.command("import-ncnn")
@click.argument("param", type=click.Path(dir_okay=False))
@click.argument("bin_path", metavar="BIN", type=click.Path(dir_okay=False))
@click.option("--name", help="Name for -m (default: PARAM's file name without extension).")
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default: $GENAPPS_HOME/models).")
@click.option("--range", "value_range", type=click.Choice(["1", "255"]), default="1", help="Graph values 0-1 or 0-255.")
@click.option("--license", "license_name", help="The model's licence, for its card (default: not declared).")
@user_errors
def models_import_ncnn(param, bin_path, name, out, value_range, license_name) -> None:
    """Convert an ncnn model (.param + .bin, any graph of the layer types genapps runs) to .safetensors."""
    from genapps import zoo

    path = zoo.import_ncnn(param, bin_path, name, out, license_name=license_name, value_range=int(value_range))
    click.echo(zoo.import_usage(path, by_name=out is None))


# ---------------------------------------------------------------- train


class TrainGroup(Group):
    """`genapps train`: one command per TrainCommand of the task specs, built when used."""

    def list_commands(self, ctx):
        return sorted(train_commands())

    def get_command(self, ctx, name):
        return train_command(train_commands()[name]) if name in train_commands() else None

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl([(n, c.help.splitlines()[0]) for n, c in sorted(train_commands().items())])


def train_commands() -> dict:
    from genapps.tasks import TASKS, load_spec

    return {t.name: t for name in TASKS for t in load_spec(name).train}


def train_command(spec) -> click.Command:
    """`genapps train NAME`: the fields of the training Config as options, --resume, --device."""
    from genapps.cli_conventions import config_options, config_values
    from genapps.tasks import resolve

    config = resolve(spec.config)
    params = config_options(config) + _params([
        click.option("--resume/--no-resume", default=True, show_default=True, help="Continue from OUT's .state.pt."),
        DEVICE])

    @user_errors
    def callback(device: str, resume: bool, **values):
        card = resolve(spec.function)(config(**config_values(config, values)), _device(device), resume=resume)
        click.echo(f"saved {values['out']}  validation: {card['validation']}")

    return Command(spec.name, params=params, callback=callback, help=spec.help)


@main.group(cls=TrainGroup)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Automatic mixed precision of the training steps (fp16: CUDA only, with loss scaling).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the networks (slower start, faster steps).")
@click.pass_context
def train(ctx: click.Context, precision: str, compile_: bool) -> None:
    """Train the models genapps ships (and your own). Several processes or GPUs:
    torchrun --nproc_per_node N -m genapps train ... (see README, Scale)."""
    from genapps.device import using

    ctx.with_resource(using(precision=precision, compile=compile_))


# ---------------------------------------------------------------- report


@main.group("report")
def report_group() -> None:
    """Reports of sharded runs (--shard I/N, or several torchrun jobs)."""


@report_group.command("merge")
@click.argument("dirs", metavar="DIR...", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Where report.json/html go (default: the first DIR).")
@user_errors
def report_merge(dirs: tuple[str, ...], out: str | None) -> None:
    """Merge the shards' report parts (DIR/.genapps-parts) into one report.json/html."""
    from genapps import paths
    from genapps.report import merge_reports

    stages, _, html_path = merge_reports([paths.normalize(d) for d in dirs], paths.normalize(Path(out)) if out else None)
    _finish(stages, html_path)


if __name__ == "__main__":  # pragma: no cover
    main()
