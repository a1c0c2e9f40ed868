"""Click classes of the `genapps` command line: what users bring from other tools keeps working.

`Group` (the `genapps` group and its subgroups) makes every command a `Command`, which
- takes -v/--verbose and -q/--quiet after the subcommand too (`genapps upscale IN OUT -q`);
- reads Real-ESRGAN's `inference_realesrgan.py` / realesrgan-ncnn-vulkan spellings as the genapps
  options (hidden aliases, rewritten before parsing, each only where the command has the genapps
  option and not the alias itself): `-i IN -o OUT` are the INPUT OUTPUT arguments, `-n NAME`
  (`--model_name`) is `-m`, `--tile_pad` is `--tile-overlap`, `-g N` (`--gpu-id`) is
  `--device cuda:N`, `-f FMT` is `--ext`, `--alpha_upsampler realesrgan` is `--alpha model`,
  `--fp32` and `--ext auto` are genapps's defaults (dropped), and any `--snake_case` option is
  its `--kebab-case` form;
- answers the options genapps has no counterpart for with a one-line hint.
"""

from __future__ import annotations

import logging

import click

LOGGER = "genapps"

ALIASES = {"-n": "--model", "--model_name": "--model", "--tile_pad": "--tile-overlap", "-f": "--ext",
           "--gpu-id": "--device", "-g": "--device", "--alpha_upsampler": "--alpha"}
VALUES = {"--device": lambda v: "cpu" if v == "-1" else f"cuda:{v}" if v.isdigit() else v,
          "--alpha": lambda v: {"realesrgan": "model"}.get(v, v)}
HINTS = {"--face_enhance": "face enhancement (GFPGAN) is not part of genapps",
         "-dn": "genapps has no denoise strength; `genapps translate -m restore` removes blur, noise and JPEG",
         "--denoise_strength": "genapps has no denoise strength; `genapps translate -m restore` removes blur, "
                               "noise and JPEG"}


def set_verbosity(verbose: bool, quiet: bool) -> None:
    """Level of genapps's loggers: DEBUG with verbose, WARNING with quiet, else INFO."""
    logging.getLogger(LOGGER).setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _verbosity_option(flag: str, long: str, help: str) -> click.Option:
    def apply(ctx, param, value):
        if value:  # `genapps -q cmd` stays quiet: only a given flag changes the level
            set_verbosity(long == "--verbose", long == "--quiet")
    return click.Option([flag, long], is_flag=True, expose_value=False, help=help, callback=apply)


class Command(click.Command):
    """A genapps command: -v/-q after it, Real-ESRGAN's option spellings, hints (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        taken = self._names()
        self.params += [_verbosity_option(f, long, h) for f, long, h in (
            ("-v", "--verbose", "Debug logging (also before the command)."),
            ("-q", "--quiet", "Warnings and errors only (also before the command)."))
            if f not in taken and long not in taken]

    def _names(self) -> dict[str, bool]:
        """Option string -> whether it takes a value."""
        return {o: not (p.is_flag or p.count) for p in self.params if isinstance(p, click.Option)
                for o in [*p.opts, *p.secondary_opts]}

    def _files_as_arguments(self) -> bool:
        args = [p.name for p in self.params if isinstance(p, click.Argument)]
        return args[:2] == ["input_dir", "output_dir"]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, self.translate(args))
        except click.NoSuchOption as e:
            hint = HINTS.get(e.option_name)
            if hint is None and e.option_name in ("-i", "--input", "-o", "--output") and not e.possibilities:
                hint = "genapps takes the folders or files as arguments, see --help"
            if hint is None:
                raise
            raise click.NoSuchOption(e.option_name, f"No such option: {e.option_name} ({hint}).", ctx=ctx) from None

    def translate(self, args: list[str]) -> list[str]:
        """`args` with Real-ESRGAN's spellings rewritten to this command's options (see the module)."""
        names, out, files = self._names(), [], {}
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                out += args[i:]
                break
            name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
            given = value if eq else args[i + 1] if i + 1 < len(args) else None
            if (token == "--fp32" and "--half" in names) or (name == "--ext" and given == "auto" and name in names):
                i += 1 if token == "--fp32" or eq else 2  # Real-ESRGAN's flags for what genapps does by default
                continue
            if name in names or not token.startswith("-") or token == "-":
                out.append(token)
                i += 1
                if names.get(name) and not eq and i < len(args):  # the option's value, whatever it looks like
                    out.append(args[i])
                    i += 1
                continue
            target = ALIASES.get(name) or (name.replace("_", "-") if name.startswith("--") else None)
            role = {"-i": "in", "--input": "in", "-o": "out", "--output": "out"}.get(name)
            if role and self._files_as_arguments():
                target = role
            elif target not in names:
                out.append(token)
                i += 1
                continue
            if target in ("in", "out") or names[target]:
                if given is None:
                    out.append(token)  # no value: let click say so
                    i += 1
                    continue
                i += 1 if eq else 2
                if target in ("in", "out"):
                    files[target] = given
                else:
                    out += [target, VALUES.get(target, str)(given)]
            else:
                out.append(target)
                i += 1
        if files:  # INPUT first, OUTPUT after the other arguments
            out = ([files["in"]] if "in" in files else []) + out + ([files["out"]] if "out" in files else [])
        return out


class Group(click.Group):
    """The genapps group: its commands are `Command`s, its subgroups `Group`s."""

    command_class = Command
    group_class = type


# ---------------------------------------------------------------- options from a task's Config

COMMON_FIELDS = {  # metadata of the fields many Configs share (a field's own metadata wins)
    "ext": {"help": "Output extension (png, jpg, webp, tif); default: the input's."},
    "suffix": {"help": "Appended to output file names."},
    "quality": {"range": (1, 100), "help": "JPEG/WebP quality."},
    "resume": {"invert": "--overwrite", "help": "Redo files whose output exists (default: skip them)."},
    "fail_fast": {"help": "Stop at the first bad file."},
    "seed": {},
}
PATH_TYPES = {"dir": lambda: click.Path(file_okay=False), "file": lambda: click.Path(dir_okay=False),
              "path": lambda: click.Path()}


def _scalar(hint) -> type | None:
    """int/float/str/bool of a field's type hint (X | None -> X); None for anything else (str | int ...)."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return args[0] if len(args) == 1 and args[0] in (int, float, str, bool) else None
    return hint if hint in (int, float, str, bool) else None


def config_options(cls) -> list[click.Option]:
    """One click option per field of the Config dataclass `cls`, from its type, default and metadata.

    Metadata keys (all optional): help; flags (option strings, "--x/--no-x" for a pair); choices;
    range (lo, hi) for ints and floats; type ("dir" | "file" | "path"); required (on the command line, where a
    pipeline has another way); invert ("--overwrite": a flag that sets the field False);
    flag_values ({"--half": "fp16", ...}: several flags that set one field); cli False (not an option).
    Choices of an int field are given as strings and turned back into ints. Defaults: a field without
    one is a required option; None leaves click's default; "" and False are not shown in --help.
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    options = []
    for f in dataclasses.fields(cls):
        meta = {**COMMON_FIELDS.get(f.name, {}), **f.metadata}
        if meta.get("cli") is False:
            continue
        hint, default = _scalar(hints[f.name]), f.default
        required = default is dataclasses.MISSING or bool(meta.get("required"))
        kwargs = {"help": meta.get("help"), "required": required}
        if "flag_values" in meta:
            options += [click.Option([flag, f.name], flag_value=value, help=help)
                        for flag, (value, help) in meta["flag_values"].items()]
            continue
        if "invert" in meta:  # e.g. --overwrite for resume; config_values turns it back
            options.append(click.Option([meta["invert"]], is_flag=True, help=meta.get("help")))
            continue
        flags = list(meta.get("flags") or [f"--{f.name.replace('_', '-')}"])
        if hint is bool:
            if default is not True and default is not None:  # a plain flag
                options.append(click.Option([*flags, f.name], is_flag=True, **kwargs))
                continue
            kwargs["is_flag"] = True
            if "/" not in flags[-1]:
                flags[-1] = f"{flags[-1]}/--no-{flags[-1].lstrip('-')}"
            kwargs["default"] = default
        elif "choices" in meta:
            kwargs["type"] = click.Choice([str(c) for c in meta["choices"]])
            if hint is int:
                kwargs["callback"] = lambda ctx, param, v: None if v is None else int(v)
        elif "range" in meta:
            kwargs["type"] = (click.FloatRange if hint is float else click.IntRange)(*meta["range"])
        elif meta.get("type") in PATH_TYPES:
            kwargs["type"] = PATH_TYPES[meta["type"]]()
        elif hint in (int, float):
            kwargs["type"] = hint
        if hint is not bool and default not in (dataclasses.MISSING, None) and not meta.get("required"):
            kwargs["default"] = str(default) if "choices" in meta else default
        shown = kwargs.get("default")
        kwargs["show_default"] = shown is not None and shown is not False and shown != ""
        options.append(click.Option([*flags, f.name], **kwargs))
    return options


def config_values(cls, values: dict) -> dict:
    """The Config field values of a command's parsed options: inverted flags (--overwrite) back to
    their field (resume=False); options left at None dropped (the Config's default applies)."""
    import dataclasses

    values = dict(values)
    for f in dataclasses.fields(cls):
        flag = {**COMMON_FIELDS.get(f.name, {}), **f.metadata}.get("invert")
        if flag and f.metadata.get("cli") is not False:
            if values.pop(flag.lstrip("-").replace("-", "_"), False):
                values[f.name] = False
    return {k: v for k, v in values.items() if v is not None}
