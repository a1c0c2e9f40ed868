"""Where genapps reads and writes: every path and URL a command names is resolved here.

- `normalize`: a `file://` URL becomes the local path it names (INPUT, OUTPUT, --report,
  --reference, ... and pipeline paths alike); fsspec URLs (s3://, memory://, ...) stay URLs.
- `check_output` -> `Fence`: before any work, the output folder is checked against every folder
  the run reads, resolved through symbolic links: it must not be the input folder nor contain
  it (it may lie inside it: outputs are left out of the input listing), and must not overlap a
  side input (reference, masks, pipeline inputs, ...) at all. The fence then checks every file
  the run writes: its folder, resolved through links, must lie inside the output folder (a
  symbolic link in OUTPUT never makes genapps write outside it). Whatever the flags
  (--overwrite, resume=false): these are not settings.
- `output_lock`: an advisory lock per output folder, so that two runs never write one folder at
  the same time (the shards of one sharded run do, each with its own manifest).
- `WRITE_FORMATS`, `check_ext`, `file_output`: which output extensions genapps writes, and whether
  OUTPUT names one image file; task configs validate with them without importing torch.

This module is below io (io uses it) and imports no other genapps module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (documented)
    fcntl = None

log = logging.getLogger(__name__)

WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",  # extension -> PIL format
                 ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


def check_ext(ext: str | None) -> None:
    """A ValueError unless `ext` (an output extension, with or without its dot; None = the input's) is one
    genapps writes."""
    if ext is not None and f".{ext.lstrip('.').lower()}" not in WRITE_FORMATS:
        raise ValueError(f"ext must be one of {', '.join(sorted(WRITE_FORMATS))}, got {ext!r}")


def models_home() -> Path:
    """Where converted and imported models are cached: $GENAPPS_HOME/models (default ~/.cache/genapps/models)."""
    return Path(os.environ.get("GENAPPS_HOME") or Path.home() / ".cache" / "genapps") / "models"


def file_output(input_path: str | Path, output: str | Path) -> Path | None:
    """`output` as one image file, or None for an output folder.

    A file when `input_path` is a file and `output` ends with an image extension genapps writes
    (`genapps upscale a.png result.png`) and is not an existing folder.
    """
    output = Path(output)
    if Path(input_path).is_file() and output.suffix.lower() in WRITE_FORMATS and not output.is_dir():
        return output
    return None


# ---------------------------------------------------------------- URLs and local paths


def is_url(path) -> bool:
    """An fsspec URL (s3://, gs://, az://, http(s)://, memory://, ...); plain paths and file:// are local.
    (A URL must stay a str: pathlib would fold its '//'.)"""
    return (isinstance(path, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) is not None
            and not path.lower().startswith("file://"))


def normalize(path):
    """`path` with a `file://` URL turned into the local path it names (percent-decoded:
    `file:///tmp/a%20b` -> `/tmp/a b`; `file://localhost/x` -> `/x`); anything else unchanged
    (None, plain paths, fsspec URLs). A str stays a str, a Path a Path. A file URL naming another
    host is a one-line ValueError."""
    text = str(path) if isinstance(path, (str, Path)) else None
    if text is None or not text.lower().startswith("file:/"):  # (a Path folds file:///x to file:/x)
        return path
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{text}: a file URL of another host ({parts.netloc}); genapps reads local files as "
                         f"file:///PATH or PATH")
    local = unquote(parts.path)
    if not local:
        raise ValueError(f"{text}: a file URL without a path")
    return Path(local) if isinstance(path, Path) else local


def resolve(path) -> Path:
    """The absolute path `path` names, every symbolic link followed (also of a missing path's
    existing parents)."""
    return Path(normalize(path)).resolve()


def normalize_options(config_class, options: dict) -> dict:
    """`options` of a task Config with `file://` URLs in its path fields ({"path": ...} metadata,
    genapps.tasks) turned into local paths."""
    fields = {f.name for f in dataclasses.fields(config_class) if f.metadata.get("path")}
    return {k: normalize(v) if k in fields and isinstance(v, str) else v for k, v in options.items()}


def side_inputs(config) -> dict[str, str]:
    """{field: path} of the folders and files a task Config reads besides its input (its
    {"path": True} fields that are set: reference, masks, unlabeled, ...)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.metadata.get("path") is True and isinstance(getattr(config, f.name), (str, Path))}


def _inside(path: Path, folder: Path) -> bool:
    """Whether resolved `path` is `folder` or below it (both resolved)."""
    return path == folder or folder in path.parents


# ---------------------------------------------------------------- the output fence


class OutsideOutput(ValueError):
    """A path genapps would write resolves outside its output folder (or into what it reads)."""


@dataclass(frozen=True)
class Fence:
    """The output folder of a run, resolved through links. `check(path)` passes a file the run
    writes only if its folder, resolved through every link, is inside `root`; its own name is
    replaced, never followed (atomic writes rename onto it)."""

    root: Path  # resolved
    given: str  # as the user named it (messages)

    @classmethod
    def of(cls, folder) -> "Fence":
        return cls(resolve(folder), str(folder))

    def holds(self, path) -> bool:
        """Whether `path` (resolved) is inside the output folder: the input listing leaves it out."""
        return _inside(resolve(path), self.root)

    def check(self, path) -> Path:
        """`path` if writing it stays inside the output folder, else OutsideOutput (one line)."""
        path = Path(path)
        real = resolve(path.parent) / path.name
        if not _inside(real.parent, self.root) or real == self.root:
            raise OutsideOutput(f"{path}: refused, it resolves to {real}, outside the output folder {self.given} "
                                f"(a symbolic link in it?); genapps writes only inside its output folder")
        return path


def check_output(output, *, input=None, sides: dict | None = None, why: str = "", input_name: str = "input") -> Fence:
    """The Fence of output folder `output` once it is apart from what the run reads (resolved
    through links), else a one-line ValueError:

    - `input` (the folder, or file, the run reads): `output` must not be it nor contain it; it
      may lie inside it (the outputs are left out of the input listing); `input_name` names it;
    - `sides` {what: folder or file} (reference, masks, unlabeled, a pipeline's inputs, ...):
      `output` must not be, contain or lie inside any of them. `why` ends the message.
    """
    out = resolve(output)
    if input is not None and not is_url(input):
        src = resolve(input)
        if out == src or _inside(src, out):
            raise OutsideOutput(f"output folder {output} must not be the {input_name} folder or contain it (inputs "
                                f"would be overwritten)")
    for what, folder in (sides or {}).items():
        if folder is None or is_url(folder):
            continue
        side = resolve(folder)
        if side.is_file() and _inside(side, out):
            raise OutsideOutput(f"output folder {output} must not contain the {what} file {folder} "
                                f"({why or 'it would be overwritten'})")
        if not side.is_file() and (_inside(out, side) or _inside(side, out)):
            raise OutsideOutput(f"output folder {output} must not be the {what} folder {folder}, inside it or "
                                f"contain it ({why or 'its files would be overwritten or read back'})")
    return Fence(out, str(output))


# ---------------------------------------------------------------- the lock of an output folder

LOCK = ".genapps-lock"  # OUT/.genapps-lock; a shard also holds OUT/.genapps-lock.shard-I-of-N


class Busy(ValueError):
    """Another genapps run holds the lock of the output folder."""


@dataclass
class _Held:
    fd: int
    shared: bool
    depth: int = 1


_held: dict[str, _Held] = {}  # lock file -> held by this process (re-entered by nested calls)


def lock_name(shard=None) -> str:
    """The lock file of a shard (`shard`: genapps.distributed.Shard or None)."""
    return LOCK if shard is None or not shard.active else f"{LOCK}.shard-{shard.index}-of-{shard.count}"


@contextlib.contextmanager
def output_lock(folder, shard=None) -> Iterator[None]:
    """Hold the advisory lock of output folder `folder` for the block (creating the folder; the
    folders it created are removed again when the block fails and leaves them empty).

    An unsharded run holds OUT/.genapps-lock exclusively; a shard of a sharded run holds it
    shared (the shards of one run proceed together) and OUT/.genapps-lock.shard-I-of-N
    exclusively. A lock held by another process is Busy, a one-line ValueError naming that run's
    PID, start time and host; the lock of a process that died is free (the kernel releases it)
    and is taken over with a log line. Released on exit, error and KeyboardInterrupt; the same
    process may nest it. No lock on remote folders, nor where fcntl is missing (Windows).
    """
    if fcntl is None or is_url(folder):
        yield
        return
    folder = Path(normalize(folder))
    created: list[Path] = []
    make_dirs(folder, created)
    taken: list[str] = []
    failed = True
    try:
        if shard is not None and shard.active:
            taken.append(_acquire(folder / LOCK, shared=True, folder=folder))
        taken.append(_acquire(folder / lock_name(shard), shared=False, folder=folder))
        yield
        failed = False
    finally:
        for key in reversed(taken):
            _release(key)
        for made in reversed(created if failed else []):
            with contextlib.suppress(OSError):
                made.rmdir()


def make_dirs(folder: Path, created: list[Path]) -> None:
    """mkdir -p `folder`, appending each folder it creates to `created` (also when it fails midway)."""
    for parent in [*reversed(folder.parents), folder]:
        if not parent.is_dir():
            try:
                parent.mkdir()
            except FileExistsError:  # another process (a shard) made it meanwhile
                continue
            created.append(parent)


def _acquire(path: Path, shared: bool, folder: Path) -> str:
    key = str(resolve(path))
    if key in _held:
        _held[key].depth += 1
        return key
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            if e.errno == 40:  # ELOOP: the lock file is a symbolic link
                raise OutsideOutput(f"{path}: refused, the lock file is a symbolic link (remove it)") from None
            raise
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(f"output folder {folder} is in use by another genapps run ({_holders(folder, path)}); "
                       f"wait for it to finish or choose another output folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    stale = _read_holder(fd)
    if stale and stale.get("pid") != os.getpid():
        log.warning("%s: taking over the lock of genapps run PID %s (started %s on %s), which ended without "
                    "releasing it", folder, stale.get("pid"), stale.get("started"), stale.get("host"))
    os.ftruncate(fd, 0)
    if not shared:  # the holder's card: what a second run names
        card = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname()}
        os.pwrite(fd, json.dumps(card).encode(), 0)
    _held[key] = _Held(fd, shared)
    return key


def _read_holder(fd: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        card = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
        return card if isinstance(card, dict) else {}
    return {}


def _holders(folder: Path, path: Path) -> str:
    """'PID 123, started ..., host h' of the run(s) holding the locks of `folder`."""
    cards = []
    for lock in sorted(folder.glob(f"{LOCK}*")):
        with contextlib.suppress(OSError):
            fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                card = _read_holder(fd)
            finally:
                os.close(fd)
            if card.get("pid"):
                shard = lock.name.removeprefix(f"{LOCK}.shard-").replace("-of-", "/") if lock.name != LOCK else ""
                cards.append(f"{'shard ' + shard + ': ' if shard else ''}PID {card['pid']}, started "
                             f"{card.get('started')} on {card.get('host')}")
    return "; ".join(cards) or f"its lock {path.name} is held"


def _release(key: str) -> None:
    held = _held[key]
    held.depth -= 1
    if held.depth:
        return
    del _held[key]
    try:
        if held.shared:  # the last holder removes the file; others still holding keep it
            try:
                fcntl.flock(held.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
        with contextlib.suppress(OSError):
            os.unlink(key)
    finally:
        os.close(held.fd)


def new_run_folder(kind: str, avoid: dict | None = None) -> str:
    """runs/KIND-YYYYmmdd-HHMMSS (a -2, -3 ... suffix if taken), BasicSR's results/ habit: a run never
    overwrites another's report nor writes into its inputs (`avoid`: {what: folder} it must stay out of,
    e.g. evaluate run from inside PRED_DIR)."""
    base = Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    for what, folder in (avoid or {}).items():
        if folder and Fence.of(folder).holds(str(path)):
            raise ValueError(f"the default report folder {path} would be inside {what} {folder} (the command is run "
                             f"from inside it); give --report DIR or --no-report")
    return str(path)
